"""Anomaly detection on replayed Loghub traffic with injected, labelled incidents.

    python bench/detection.py [--data DIR] [--out bench/results/detection.md] [--seed N ...]

Several sources (one per Loghub dataset) replay their real lines as steady Poisson traffic in
10 s windows through the real pipeline pieces (TenantMiner -> Windows -> SourceMonitor). After
a clean hour (warm-up; IsolationForest's training set) and two clean hours (false-alert
rate), every source gets each incident type three times (error burst, 10x volume spike,
silent source, new error template), then two hours of slow drift (rate 1x -> 3x) that must
not alert. The same window features are scored by scikit-learn's IsolationForest trained
per source on the clean first hour. Needs the `bench` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.anomaly import MonitorConfig, SourceMonitor, Window, Windows  # noqa: E402
from app.anomaly.hst import model_input  # noqa: E402
from app.templates import TenantMiner  # noqa: E402
from bench.patterns import default_data_dir  # noqa: E402

W = 10.0  # window seconds
PREFIX, CLEAN, SPACING, REPS, DRIFT = 360, 720, 90, 3, 720
KINDS = ("error_burst", "volume_spike", "silent_source", "new_error_template")
SOURCES = {  # dataset -> mean events per window
    "Apache": 25, "HDFS": 120, "Zookeeper": 60, "Spark": 200, "OpenSSH": 40, "Linux": 15,
    "HealthApp": 80,
}
RESERVED = "BGL"  # never background: its error lines are the brand-new error templates


def severity(level: str, content: str) -> str:
    lv = level.upper()
    if any(k in lv for k in ("ERR", "FATAL", "SEVERE", "FAIL")):
        return "ERROR"
    if "WARN" in lv:
        return "WARN"
    if not level and any(k in content.lower() for k in ("error", "fail")):
        return "ERROR"  # no level in this dataset: what a severity-from-text parser would say
    return "INFO"


def read(data: Path, name: str) -> list[tuple[str, str, str]]:
    """(content, severity, ground-truth event id) of a dataset's lines, in file order."""
    path = data / name / f"{name}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["Content"], severity(r.get("Level", ""), r["Content"]), r["EventId"])
                for r in csv.DictReader(fh)]


@dataclass
class Incident:
    kind: str
    source: str
    onset: int  # window index
    length: int


@dataclass
class Plan:
    windows: int
    incidents: list[Incident] = field(default_factory=list)
    drift_from: int = 0

    def rate_factor(self, w: int) -> float:
        if w < self.drift_from:
            return 1.0
        return 1.0 + 2.0 * min(1.0, (w - self.drift_from) / DRIFT)


def make_plan(sources: list[str]) -> Plan:
    plan = Plan(0)
    start = PREFIX + CLEAN
    k = 0
    for rep in range(REPS):
        for kind in KINDS:
            length = {"error_burst": 3, "volume_spike": 2, "silent_source": 6,
                      "new_error_template": 1}[kind]
            for i, source in enumerate(sources):  # stagger sources within the slot
                plan.incidents.append(Incident(kind, source, start + k * SPACING + i * 3, length))
            k += 1
        del rep
    plan.drift_from = start + k * SPACING
    plan.windows = plan.drift_from + DRIFT
    return plan


def generate(data: Path, plan: Plan, seed: int) -> Iterator[tuple[int, str, str, str]]:
    """Yield (window index, source, content, severity) in time order."""
    rng = np.random.default_rng(seed)
    lines = {s: read(data, s) for s in SOURCES}
    errors_all = [ln for s in SOURCES for ln in lines[s] if ln[1] == "ERROR"]
    errors = {s: [ln for ln in lines[s] if ln[1] == "ERROR"] or errors_all for s in SOURCES}
    novel: dict[str, tuple[str, str, str]] = {}
    for ln in read(data, RESERVED):  # one line per distinct error template, file order
        if ln[1] == "ERROR" and ln[2] not in novel:
            novel[ln[2]] = ln
    novel_iter = iter(novel.values())
    cursor = {s: int(rng.integers(0, 2000)) for s in SOURCES}
    active: dict[tuple[str, int], Incident] = {}
    for planned in plan.incidents:
        for w in range(planned.onset, planned.onset + planned.length):
            active[(planned.source, w)] = planned
    for w in range(plan.windows):
        batch: list[tuple[str, str, str]] = []
        for source, rate in SOURCES.items():
            inc = active.get((source, w))
            lam = rate * plan.rate_factor(w)
            if inc and inc.kind == "silent_source":
                continue
            if inc and inc.kind == "volume_spike":
                lam *= 10
            n = int(rng.poisson(lam))
            pool = lines[source]
            for _ in range(n):
                content, sev, _ = pool[cursor[source] % len(pool)]
                cursor[source] += 1
                batch.append((source, content, sev))
            if inc and inc.kind == "error_burst":
                extra = max(10, rate // 2)
                picks = rng.integers(0, len(errors[source]), extra)
                batch += [(source, errors[source][i][0], "ERROR") for i in picks]
            if inc and inc.kind == "new_error_template":
                content, _, _ = next(novel_iter)
                batch += [(source, content, "ERROR")] * 2
        order = rng.permutation(len(batch))
        for i in order:
            yield (w, *batch[i])


@dataclass
class Scored:
    alerts: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))


class Scores(TypedDict):
    """One detector's results: per incident kind (recall, mean delay in s), false alerts."""

    kinds: dict[str, tuple[float, float]]
    recall: float
    fp_clean_per_h: float
    fp_drift_per_h: float
    fp_all: int
    f1: float
    by_detector: NotRequired[dict[str, int]]


def evaluate(plan: Plan, alerts: dict[str, set[int]], sources: list[str]) -> Scores:
    """Per incident type recall and delay; false alerts per source-hour (clean, drift, all)."""
    covered: dict[str, set[int]] = defaultdict(set)
    per_kind: dict[str, list[float | None]] = defaultdict(list)
    for inc in plan.incidents:
        span = range(inc.onset, inc.onset + inc.length + 2)
        covered[inc.source].update(span)
        hits = [w for w in range(inc.onset, inc.onset + 2) if w in alerts[inc.source]]
        per_kind[inc.kind].append((hits[0] - inc.onset + 1) * W if hits else None)
    clean = range(PREFIX, PREFIX + CLEAN)
    drift = range(plan.drift_from, plan.windows)
    fp_clean = sum(1 for s in sources for w in alerts[s] if w in clean)
    fp_drift = sum(1 for s in sources for w in alerts[s] if w in drift)
    fp_all = sum(1 for s in sources for w in alerts[s] if w >= PREFIX and w not in covered[s])
    tp = sum(1 for v in per_kind.values() for d in v if d is not None)
    fn = sum(1 for v in per_kind.values() for d in v if d is None)
    hours = len(sources) * W / 3600
    return {
        "kinds": {k: (sum(d is not None for d in v) / len(v),
                      float(np.mean([d for d in v if d is not None] or [float("nan")])))
                  for k, v in per_kind.items()},
        "recall": tp / (tp + fn),
        "fp_clean_per_h": fp_clean / (hours * len(clean)),
        "fp_drift_per_h": fp_drift / (hours * len(drift)),
        "fp_all": fp_all,
        "f1": 2 * tp / (2 * tp + fp_all + fn),
    }


def run(data: Path, seed: int) -> tuple[dict[str, Scores], dict[str, float]]:
    sources = list(SOURCES)
    plan = make_plan(sources)
    miner = TenantMiner()
    windows = Windows(size=W, lateness=0.0)
    monitors = {s: SourceMonitor(s, MonitorConfig(seed=seed)) for s in sources}
    ours: dict[str, set[int]] = defaultdict(set)
    by_detector: dict[str, int] = defaultdict(int)
    feats: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
    t_mine = t_score = 0.0
    events = scored = 0
    current = 0

    def close(upto: int) -> None:
        nonlocal t_score, scored
        for win in windows.close(upto * W):
            _score(win)

    def _score(win: Window) -> None:
        nonlocal t_score, scored
        w = int(win.start // W)
        t0 = time.perf_counter()
        findings = monitors[win.source].observe(win)
        t_score += time.perf_counter() - t0
        scored += 1
        feats[win.source].append((w, list(model_input(win.features).values())))
        if findings and w >= PREFIX:
            ours[win.source].add(w)
            for f in findings:
                by_detector[f.detector] += 1

    for w, source, content, sev in generate(data, plan, seed):
        if w != current:
            close(w)
            current = w
        t0 = time.perf_counter()
        m = miner.add(content, now=w * W)
        windows.add(source, w * W + 5.0, sev, m.template_id, m.is_new, content)
        t_mine += time.perf_counter() - t0
        events += 1
    close(plan.windows)  # the last window is plan.windows - 1: no empty window after it

    results = {"LaaS (HST + explicit)": evaluate(plan, ours, sources)}
    results["LaaS (HST + explicit)"]["by_detector"] = dict(by_detector)
    results.update(isolation_forest(plan, feats, sources, seed))
    monitor = monitors["HDFS"]
    cost = {
        "events": events,
        "windows": scored,
        "mine_us_per_event": t_mine / events * 1e6,
        "score_us_per_window": t_score / scored * 1e6,
        "score_us_per_event": t_score / events * 1e6,
        "templates": len(miner),
        "light_state_bytes": len(monitor.light_state()),
        "model_state_bytes": len(monitor.model_state()),
        "model_pickle_bytes": len(__import__("pickle").dumps(monitor.hst)),
        "normalize_us_per_event": normalize_cost(data),
    }
    return results, cost


def isolation_forest(plan: Plan, feats: dict[str, list[tuple[int, list[float]]]],
                     sources: list[str], seed: int) -> dict[str, Scores]:
    from sklearn.ensemble import IsolationForest

    out: dict[str, Scores] = {}
    for label, contamination in (("IsolationForest (contamination=auto)", "auto"),
                                 ("IsolationForest (contamination=1/360)", 1 / 360)):
        alerts: dict[str, set[int]] = defaultdict(set)
        for s in sources:
            rows = feats[s]
            train = np.array([x for w, x in rows if w < PREFIX])
            model = IsolationForest(contamination=contamination, random_state=seed).fit(train)
            test = [(w, x) for w, x in rows if w >= PREFIX]
            flags = model.predict(np.array([x for _, x in test]))
            alerts[s] = {w for (w, _), f in zip(test, flags, strict=True) if f == -1}
        out[label] = evaluate(plan, alerts, sources)
    return out


def normalize_cost(data: Path) -> float:
    """µs per event of the normalize stage's pure function (JSON record -> LogEvent JSON)."""
    try:
        from app.pipeline.normalize import H_TENANT_ID, RawMessage, normalize
    except ImportError:
        return float("nan")
    import json

    lines = read(data, "HDFS")[:1000]
    from app.kafka.stamp import Stamps

    stamps = Stamps(b"laas-bench-secret")
    values = [json.dumps({"message": c, "severity": s, "service": "svc", "host": "h1"}).encode()
              for c, s, _ in lines]
    raws = [RawMessage("logs.raw", 0, i, 1_700_000_000_000, b"t/svc", v,
                       dict(stamps.sign(b"t/svc", v, [(H_TENANT_ID, b"t1")])))
            for i, v in enumerate(values)]
    t0 = time.perf_counter()
    n = 0
    for raw in raws:
        for ev in normalize(raw, now_ns=1_700_000_000_000_000_000, stamps=stamps).events:
            ev.to_json()
            n += 1
    return (time.perf_counter() - t0) / max(n, 1) * 1e6


def render(results: dict[str, Scores], cost: dict[str, float]) -> str:
    kinds = list(KINDS)
    out = "| detector | " + " | ".join(kinds) + " | recall | false/src-h clean | " \
          "false/src-h drift | false alerts (all) | F1 |\n"
    out += "|---|" + "---:|" * (len(kinds) + 5) + "\n"
    for name, r in results.items():
        cells = []
        for k in kinds:
            rec, delay = r["kinds"][k]
            cells.append(f"{rec:.2f} ({delay:.0f} s)" if rec else "0.00")
        out += (f"| {name} | " + " | ".join(cells)
                + f" | {r['recall']:.3f} | {r['fp_clean_per_h']:.2f} | {r['fp_drift_per_h']:.2f}"
                f" | {r['fp_all']} | {r['f1']:.3f} |\n")
    out += ("\nCells: share of incidents alerted within two windows (mean delay from onset to"
            " the end of the alerting window).\n\n")
    by_det = results["LaaS (HST + explicit)"].get("by_detector", {})
    out += f"Findings by detector (after the prefix): {by_det}\n\n"
    out += "| cost | value |\n|---|---:|\n"
    for k, v in cost.items():
        out += f"| {k} | {v:,.2f} |\n" if isinstance(v, float) else f"| {k} | {v:,} |\n"
    mine, score, norm = (cost["mine_us_per_event"], cost["score_us_per_event"],
                         cost["normalize_us_per_event"])
    out += (f"\nMining + scoring: {mine + score:.1f} µs/event; normalize stage alone: "
            f"{norm:.1f} µs/event, so analytics is {(mine + score) / (mine + score + norm):.0%}"
            " of normalize + analytics (Kafka and Elasticsearch client costs not counted).\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "detection.md")
    ap.add_argument("--seed", type=int, nargs="+", default=[7],
                    help="one or more seeds; one table per seed")
    args = ap.parse_args(argv)
    sections = []
    for seed in args.seed:
        results, cost = run(args.data, seed)
        text = render(results, cost)
        print(f"seed {seed}\n{text}")
        sections.append(f"## Seed {seed}\n\n{text}" if len(args.seed) > 1 else text)
    seeds = " ".join(str(s) for s in args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Anomaly detection on replayed Loghub traffic\n\n"
        f"Generated by `python bench/detection.py --seed {seeds}`. {len(SOURCES)} sources "
        f"({', '.join(f'{k} ~{v}/window' for k, v in SOURCES.items())}), 10 s windows; "
        f"{PREFIX} windows warm-up/training, {CLEAN} clean windows, each incident type "
        f"{REPS}x per source, {DRIFT} windows of drift (rate 1x -> 3x). Data: Loghub "
        "(https://github.com/logpai/loghub), under its licence notice.\n\n"
        + "\n".join(sections)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
