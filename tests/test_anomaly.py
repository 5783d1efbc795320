"""Anomaly detection: one contract over every detector, explicit detectors, windows, state."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable

import pytest

from app.anomaly import (
    FEATURES,
    Detector,
    ErrorBurstDetector,
    HalfSpaceTreesDetector,
    MonitorConfig,
    NewErrorTemplateDetector,
    SilentSourceDetector,
    SourceMonitor,
    ThresholdDetector,
    VolumeSpikeDetector,
    WindowAccumulator,
    Windows,
)
from app.anomaly.features import Features
from app.anomaly.hst import model_input, river_pipeline

DETECTORS: list[Callable[[], ThresholdDetector]] = [
    lambda: HalfSpaceTreesDetector(window_size=20, warmup=40, seed=1),
    SilentSourceDetector,
    NewErrorTemplateDetector,
    VolumeSpikeDetector,
    ErrorBurstDetector,
]


def normal(rng: random.Random) -> Features:
    acc = WindowAccumulator(0.0)
    for _ in range(50 + rng.randint(-5, 5)):
        error = rng.random() < 0.02
        acc.add("ERROR" if error else "INFO", f"t{rng.randint(0, 4)}", False, "x" * 40)
    return acc.features()


def incident(kind: str) -> Features:
    acc = WindowAccumulator(0.0)
    if kind == "silent":
        return acc.features()
    n = 500 if kind == "spike" else 50
    for i in range(n):
        sev = "ERROR" if kind == "errors" and i < 40 else "INFO"
        acc.add(sev, "t1", kind == "new_error" and i == 0, "x" * 40)
    if kind == "new_error":
        acc.add("ERROR", "brand-new", True, "kernel panic")
    return acc.features()


def trained(make: Callable[[], ThresholdDetector], n: int = 300) -> ThresholdDetector:
    rng = random.Random(3)
    det = make()
    for _ in range(n):
        f = normal(rng)
        det.score_one(f)
        det.learn_one(f)
    return det


@pytest.mark.parametrize("make", DETECTORS)
def test_detector_contract(make: Callable[[], ThresholdDetector]) -> None:
    det = make()
    assert isinstance(det, Detector) and isinstance(det, ThresholdDetector)
    rng = random.Random(0)
    first = det.score_one(normal(rng))
    assert math.isfinite(first) and not det.ready  # scores before learning; not yet ready
    det = trained(make)
    assert det.ready and math.isfinite(det.threshold())
    f = normal(random.Random(99))
    score = det.score_one(f)
    assert math.isfinite(score) and score >= 0.0
    assert det.score_one(f) == score  # scoring does not learn
    clone = pickle.loads(pickle.dumps(det))
    assert clone.score_one(f) == score and clone.threshold() == det.threshold()
    assert all(isinstance(v, float) for v in det.baseline().values())


@pytest.mark.parametrize(
    ("make", "kind"),
    [(SilentSourceDetector, "silent"), (NewErrorTemplateDetector, "new_error"),
     (VolumeSpikeDetector, "spike"), (ErrorBurstDetector, "errors")],
)
def test_detector_fires_on_its_incident_and_not_on_normal(
    make: Callable[[], ThresholdDetector], kind: str
) -> None:
    det = trained(make)
    assert det.score_one(incident(kind)) > det.threshold()
    normal_scores = [det.score_one(normal(random.Random(s))) for s in range(20)]
    assert max(normal_scores) <= det.threshold()


@pytest.mark.parametrize("kind", ["spike", "silent", "errors"])
def test_half_space_trees_ranks_incidents_above_normal_windows(kind: str) -> None:
    det = trained(DETECTORS[0])
    normal_scores = [det.score_one(normal(random.Random(s))) for s in range(20)]
    assert det.score_one(incident(kind)) > max(normal_scores)


def test_volume_spike_ignores_slow_drift() -> None:
    det = VolumeSpikeDetector()
    for i in range(600):  # 50 -> 150 events per window over 100 minutes
        f = dict.fromkeys(FEATURES, 0.0) | {"count": 50.0 + i / 6}
        assert not (det.ready and det.score_one(f) > det.threshold())
        det.learn_one(f)


def test_windows_emit_empty_windows_and_roll_by_event_time() -> None:
    windows = Windows(size=10.0, lateness=1.0)
    windows.add("a", 1.0, "INFO", "t1", True, "hello")
    windows.add("a", 12.0, "ERROR", "t2", True, "boom")
    out = windows.close(41.0)
    assert [(w.start, w.features["count"]) for w in out] == [
        (0.0, 1.0), (10.0, 1.0), (20.0, 0.0), (30.0, 0.0)]
    assert out[1].features["new_error_templates"] == 1.0
    assert out[1].new_errors[0].message == "boom"
    windows.add("a", 5.0, "INFO", "t1", False, "late")
    assert windows.late_events == 1


def test_a_source_keeps_one_accumulator_and_closed_windows_keep_their_content() -> None:
    """The open window's accumulator is reset for the next window, not replaced (no new
    objects per source and window for the garbage collector); what a closed window carries
    is a copy, so later events do not change it."""
    windows = Windows(size=10.0, lateness=0.0)
    windows.add("a", 1.0, "ERROR", "e1", True, "first boom")
    windows.add("a", 2.0, "INFO", "t1", False, "ok")
    acc = windows._open["a"]
    first = windows.close(10.0)
    windows.add("a", 11.0, "ERROR", "e2", True, "second boom")
    second = windows.close(20.0)
    assert windows._open["a"] is acc and acc.start == 20.0 and acc.count == 0
    assert [s.message for s in first[0].samples] == ["first boom", "ok"]
    assert [s.message for s in first[0].new_errors] == ["first boom"]
    assert first[0].features["count"] == 2.0 and first[0].features["distinct_templates"] == 2.0
    assert [s.message for s in second[0].samples] == ["second boom"]
    assert second[0].features == {**WindowAccumulator(10.0).features(), **{
        "count": 1.0, "count_error": 1.0, "share_error": 1.0, "distinct_templates": 1.0,
        "new_templates": 1.0, "new_error_templates": 1.0, "error_templates": 1.0,
        "mean_length": float(len("second boom"))}}


def test_monitor_explains_findings_and_suppresses_repeats() -> None:
    monitor = SourceMonitor("t/svc/h", MonitorConfig(hst_window=20, hst_warmup=40))
    windows = Windows(size=10.0, lateness=0.0)
    rng = random.Random(5)
    t = 0.0
    for _ in range(200):
        for _ in range(30 + rng.randint(-3, 3)):
            windows.add("t/svc/h", t + 1, "INFO", "t1", False, "ok")
        t += 10.0
        for w in windows.close(t):
            assert monitor.observe(w) == []
    findings = []
    for _ in range(3):  # three silent windows: one finding, then cooldown
        t += 10.0
        windows.add("t/other/h", t - 1, "INFO", "t1", False, "keeps the clock")
        for w in windows.close(t):
            if w.source == "t/svc/h":
                findings += monitor.observe(w)
    assert [f.detector for f in findings] == ["silent_source"]
    f = findings[0]
    assert f.score > f.threshold and f.baseline["expected_count"] > 20
    assert f.features["count"] == 0.0 and "silent_source" in f.summary


def test_monitor_state_round_trip_and_size() -> None:
    monitor = SourceMonitor("s", MonitorConfig(hst_window=20, hst_warmup=40))
    rng = random.Random(1)
    from app.anomaly import Window
    for i in range(100):
        monitor.observe(Window("s", i * 10.0, i * 10.0 + 10, normal(rng)))
    light, model = monitor.light_state(), monitor.model_state()
    assert len(light) < 2_000 and len(model) < 20_000  # river's model was ~40 KB compressed
    restored = SourceMonitor.restore(light, model)
    f = normal(rng)
    assert restored.hst.score_one(f) == monitor.hst.score_one(f)
    assert restored.windows == monitor.windows
    fresh = SourceMonitor.restore(light, None)
    assert not fresh.hst.ready and fresh.explicit[0].ready


def errors_window(rng: random.Random, errors: int, others: int) -> Features:
    acc = WindowAccumulator(0.0)
    for i in range(errors + others):
        acc.add("ERROR" if i < errors else "INFO", f"t{i % 3}", False, "x" * 40)
    return acc.features()


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method (small lambda): the count a steady source sends in a window."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def noisy(rng: random.Random) -> Features:
    """A source already noisy in errors: ~40 events a window, about 60 % of them errors, and
    the share wanders (0.45-0.75) as the application goes through phases."""
    share = 0.6 + 0.15 * math.sin(rng.random() * 2 * math.pi)
    n = poisson(rng, 40.0)
    errors = sum(rng.random() < share for _ in range(n))
    return errors_window(rng, errors, n - errors)


def test_error_burst_found_within_two_windows_on_a_noisy_source() -> None:
    rng = random.Random(11)
    det = ErrorBurstDetector()
    for _ in range(400):
        det.learn_one(noisy(rng))
    base = det.baseline()
    mean, std = base["mean_count_error"], base["std_count_error"]
    assert 20 < mean < 30 and std > 5  # noisy: far wider than Poisson's sqrt(mean)
    det.learn_one(errors_window(rng, round(mean), 16))  # an ordinary window before the burst
    # 20 extra errors a window, under 3 standard deviations: not enough on one window ...
    first = errors_window(rng, round(mean) + 20, 16)
    assert det.score_one(first) <= det.threshold()
    det.learn_one(first)  # the monitor learns a window nothing fired on
    # ... but two such windows in a row are a burst
    second = errors_window(rng, round(mean) + 20, 16)
    assert det.score_one(second) > det.threshold()
    assert det.baseline()["previous_count_error"] == first["count_error"]


def test_error_burst_quiet_on_a_steady_noisy_source() -> None:
    monitor = SourceMonitor("t/ssh/h", MonitorConfig(hst_window=20, hst_warmup=40))
    rng = random.Random(7)
    from app.anomaly import Window
    fired = []
    for i in range(2000):  # 5.5 hours of 10 s windows
        findings = monitor.observe(Window("t/ssh/h", i * 10.0, i * 10.0 + 10, noisy(rng)))
        fired += [i for f in findings if f.detector == "error_burst"]
    assert len(fired) < 2000 / 360, fired  # target: under 1 false alert per source-hour


def test_error_burst_recurring_errors_become_normal() -> None:
    """12 errors every 33 windows on a source that otherwise has none: alerting at first,
    then the usual peak (median of 10-minute maxima) holds them and they stop alerting."""
    monitor = SourceMonitor("t/zk/h", MonitorConfig(hst_window=20, hst_warmup=40))
    rng = random.Random(3)
    from app.anomaly import Window
    fired = []
    for i in range(1440):  # 4 hours
        errors = 12 if i % 33 == 20 else 0
        f = errors_window(rng, errors, poisson(rng, 60.0))
        fired += [i for x in monitor.observe(Window("t/zk/h", i * 10.0, i * 10.0 + 10, f))
                  if x.detector == "error_burst"]
    assert fired and fired[0] < 360  # news at first ...
    assert not [i for i in fired if i >= 720]  # ... then the source's normal
    det = monitor.explicit[3]
    assert isinstance(det, ErrorBurstDetector) and det.baseline()["usual_peak"] == 12.0
    burst = errors_window(rng, 40, 60)  # a real burst on that source still counts
    assert det.score_one(burst) > det.threshold()


def test_error_burst_state_of_the_first_version_restores() -> None:
    """A snapshot written before the two-window rule (the spike rule on count_error) still
    restores: its baseline is kept, the current rule applies."""
    old = VolumeSpikeDetector(z=8.0, ratio=3.0, feature="count_error")
    rng = random.Random(2)
    for _ in range(100):
        old.learn_one(noisy(rng))
    det = ErrorBurstDetector.__new__(ErrorBurstDetector)
    det.__setstate__(dict(old.__dict__))  # what unpickling an old ErrorBurstDetector does
    assert det.ready and det.baseline()["mean_count_error"] == old.count.mean
    assert det.z == ErrorBurstDetector().z and det.previous is None
    f = noisy(rng)
    assert math.isfinite(det.score_one(f))
    det.learn_one(f)
    clone = pickle.loads(pickle.dumps(det))
    assert clone.score_one(f) == det.score_one(f)


# -- the compact Half-Space Trees: same scores as river's, young -> full, state ---------------


class RiverReference:
    """The previous detector, river's pipeline per source, taught the way the detector is."""

    def __init__(self, window: int) -> None:
        self.model = river_pipeline(window_size=window)
        self.seen = 0

    def score_one(self, f: Features) -> float:
        return float(self.model.score_one(model_input(f)))

    def learn_one(self, f: Features) -> None:
        x = model_input(f)
        if self.seen == 0:  # the detector's scaler floor
            self.model["MinMaxScaler"].learn_one(
                {k: v + (0.05 if k in ("share_error", "share_warn", "template_entropy")
                         else math.log1p(1.0)) for k, v in x.items()})
        self.model.learn_one(x)
        self.seen += 1


def mixed(rng: random.Random, i: int) -> Features:
    """Normal windows with empty, tiny and incident windows mixed in."""
    if i % 29 == 0:
        return incident(rng.choice(["silent", "spike", "errors", "new_error"]))
    return normal(rng)


def test_compact_hst_scores_exactly_as_river() -> None:
    det = HalfSpaceTreesDetector(window_size=20, warmup=40)
    ref = RiverReference(window=20)
    rng = random.Random(8)
    for i in range(150):
        f = mixed(rng, i)
        assert det.score_one(f) == ref.score_one(f), i
        det.learn_one(f)
        ref.learn_one(f)
    assert ref.model["HalfSpaceTrees"].counter == det.counter


def test_young_source_promoted_to_full_at_its_first_reference_window() -> None:
    det = HalfSpaceTreesDetector(window_size=20, warmup=40)
    rng = random.Random(4)
    assert det.is_young and det.l_mass is None and det.r_mass is None  # nothing built yet
    for _ in range(19):
        f = normal(rng)
        assert det.score_one(f) == 0.0  # no reference window: river scores 0 too
        det.learn_one(f)
        assert det.is_young and det.r_mass is None
    young_bytes = len(pickle.dumps(det))
    f = normal(rng)
    det.score_one(f)
    det.learn_one(f)  # the 20th window completes the first reference window
    assert not det.is_young and det.r_mass is not None and det.l_mass is not None
    assert sum(det.r_mass) == 20 * det.params[0] * (det.params[1] + 1)  # every path counted
    assert sum(det.l_mass) == 0 and det.counter == 0
    assert young_bytes < len(pickle.dumps(det))  # a young source holds one set of counters
    assert det.score_one(normal(rng)) > 0.0


def test_compact_hst_memory_is_a_small_fraction_of_rivers() -> None:
    import tracemalloc

    rng = random.Random(6)
    windows = [normal(rng) for _ in range(60)]
    HalfSpaceTreesDetector(window_size=50)  # the splits every source shares, built once
    sizes = []
    for make in (lambda: HalfSpaceTreesDetector(window_size=50), lambda: RiverReference(50)):
        tracemalloc.start()
        det = make()
        for f in windows:
            det.score_one(f)
            det.learn_one(f)
        sizes.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        del det
    compact, river = sizes
    assert compact * 10 <= river, sizes  # the target: ten times less per source


def test_compact_hst_state_round_trip_young_and_full() -> None:
    rng = random.Random(9)
    det = HalfSpaceTreesDetector(window_size=20, warmup=40)
    for n in (5, 40):  # young, then full
        while det.seen < n:
            f = normal(rng)
            det.score_one(f)
            det.learn_one(f)
        clone = pickle.loads(pickle.dumps(det))
        assert clone.is_young == det.is_young == (n < 20)
        mine, theirs = det.__getstate__(), clone.__getstate__()
        for q in ("q_hi", "q_mid"):  # river's quantiles have no __eq__
            assert mine.pop(q).get() == theirs.pop(q).get()
        assert mine == theirs
        for _ in range(30):  # both go on identically
            f = mixed(rng, rng.randint(0, 99))
            assert clone.score_one(f) == det.score_one(f)
            clone.learn_one(f)
            det.learn_one(f)


def test_snapshot_of_the_river_detector_restores_as_compact() -> None:
    """A model snapshot written by the river-based detector (its pickled __dict__: model,
    warmup, margin, q_hi, q_mid, seen, _last) restores into the compact detector with the
    same scores, threshold and baseline."""
    import copyreg

    from river import stats

    ref = RiverReference(window=20)
    q_hi, q_mid = stats.Quantile(0.995), stats.Quantile(0.5)
    rng = random.Random(12)
    for i in range(70):
        f = mixed(rng, i)
        score = ref.score_one(f)
        if ref.seen >= 20:
            q_hi.update(score)
            q_mid.update(score)
        ref.learn_one(f)
    state = {"model": ref.model, "warmup": 40, "margin": 0.5, "q_hi": q_hi, "q_mid": q_mid,
             "seen": ref.seen, "_last": None}

    class OldSnapshot:  # pickles exactly as an instance of the old class did
        def __reduce__(self) -> tuple[object, ...]:
            # copyreg._reconstructor is what pickle writes for such an instance (not in typeshed)
            return (copyreg._reconstructor,  # type: ignore[attr-defined]
                    (HalfSpaceTreesDetector, object, None), state)

    det = pickle.loads(pickle.dumps(OldSnapshot()))
    assert isinstance(det, HalfSpaceTreesDetector) and det.params[2] == 20
    assert det.ready and det.threshold() < 1.0 and det.baseline()["score_quantile_hi"] > 0
    for i in range(40):
        f = mixed(rng, i)
        assert det.score_one(f) == ref.score_one(f), i
        det.learn_one(f)
        ref.learn_one(f)
