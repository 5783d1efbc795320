"""Many sources on one analytics worker: memory per source and event-loop lag.

    python -m bench.sources [--sources 10000] [--burst 1000] [--windows 60] [--sample 200]
                            [--policy on off]

Drives the detect stage's own `Detection` (agents/detect.py: windows, monitors, eviction,
queued table writes) in one asyncio loop, as the analytics process runs it, on a virtual
clock: `--sources` sources all appear in the first window, send 1–3 events per 10 s window
(messages of 50 events per partition, the loop free between messages) and every window is
closed by the detect timer's `tick`. A lag probe (a task sleeping 5 ms and measuring how late
it wakes up) records the longest time anything held the loop, per phase:

- *arrival*: every source is new in the same window (its admission and first window);
- *young*: the first `window_size` (50) windows, one set of HST counters per source;
- *promotion*: the tick in which every source's HST gets its reference window;
- *full*: the remaining windows, the steady state measured for memory;
- *burst*: `--burst` further sources appear at once on top of the others (one window), then
  go silent;
- *eviction*: those are evicted after `detect_idle_seconds` (their state queued for the
  tables) and *return*: they come back and are restored from the queued snapshots.

The detect timer is driven once a (virtual) second, back to back, until the pass over the
sources that the window boundary started is over (a tick stops after half the timer's
interval, agents/detect.py): the longest tick and the ticks a pass took are reported. The
whole run is done twice in one process (`--policy on off`): with the analytics process's
garbage-collector policy (`tune_analytics_gc` and the detect stage's `Freezer`,
app/runtime/gc_tuning.py) and with the start-up freeze only, as before. `gc.callbacks` time every
collection (wall clock and CPU, and the garbage it freed), so the probe's figures are also
given without the intervals that held a gen1/gen2 collection; the bench's own collections
(memory measurement) are neither timed nor counted in any phase.

Memory: process RSS before the first source and with every source in its full state (after a
full garbage collection), divided by the number of sources; the bytes held by the table
stand-in (RocksDB and the changelog in a worker) are subtracted. Baseline measured in the same
run: the previous design's per-source model (river's `MinMaxScaler | HalfSpaceTrees` pipeline
and the two score quantiles) built and trained for `--sample` sources (bytes allocated per
model, by tracemalloc, and the time river takes for a new source's first window), against the
compact detector for the same sample (and the CPU a full garbage collection spends on them);
the previous design's per-source figure is this run's per-source RSS with the compact model
replaced by river's. The lag probe is paused while the
bench itself collects garbage to measure memory. Results: printed and written to `--out`
(bench/results/sources.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.detect import Detection  # noqa: E402
from agents.resources import Resources  # noqa: E402
from app.anomaly import WindowAccumulator  # noqa: E402
from app.anomaly.hst import HalfSpaceTreesDetector, model_input, river_pipeline  # noqa: E402
from app.kafka.topics import declare_topics  # noqa: E402
from app.pipeline.events import NS, LogEvent, RawPosition  # noqa: E402
from app.pipeline.faust_app import create_app  # noqa: E402
from app.runtime.gc_tuning import tune_analytics_gc, tune_gc  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402

W = 10.0
T0 = 1_800_000_000.0  # the virtual clock's start (a window boundary)
MESSAGE = 50  # events per logs.events message


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class TableStandIn(dict[str, bytes]):
    """A changelog-backed table's place: keeps values (restores read them back), counts bytes."""

    written = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        self.written += len(value)
        super().__setitem__(key, value)

    def held(self) -> int:
        return sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self.items())


@dataclass
class GcPauses:
    """The longest garbage collection per generation (gc.callbacks), wall clock and CPU."""

    worst: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    worst_cpu: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    count: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # objects the longest collection of each generation found to be garbage (and freed)
    worst_collected: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    major: int = 0  # gen1 and gen2 collections so far
    ignore: bool = False  # the bench's own collections (memory measurement) are not counted
    _t: tuple[float, float] = (0.0, 0.0)

    def __call__(self, stage: str, info: dict[str, int]) -> None:
        if self.ignore:
            return
        if stage == "start":
            self._t = (time.perf_counter(), time.process_time())
        else:
            g = info["generation"]
            took = time.perf_counter() - self._t[0]
            if took > self.worst[g]:
                self.worst[g] = took
                self.worst_collected[g] = info["collected"]
            self.worst_cpu[g] = max(self.worst_cpu[g], time.process_time() - self._t[1])
            self.count[g] += 1
            self.major += g > 0


@dataclass
class LagProbe:
    """How late a 5 ms sleeper wakes up, per phase: the longest lateness (wall clock) and the
    longest CPU time this process spent within one lateness (on a loaded machine the wall
    figure also holds the time the process waited for a core)."""

    gc: GcPauses
    interval: float = 0.005
    phase: str = "start"
    worst: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    worst_cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # the same, over the sleeps with no gen1/gen2 garbage collection inside
    worst_no_gc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    worst_cpu_no_gc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lags: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    running: bool = True
    measured: int = 0  # measurement sections begun: a sleep that spans one is not the worker's

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """The bench's own work (memory measurement, its full collections): no sample that
        spans it counts for a phase, no collection inside it counts (before 2026-12-05 21:30
        they did: the bench's two measuring collections were the run's two "gen2 pauses")."""
        phase, self.phase = self.phase, "measuring"
        self.measured += 1
        self.gc.ignore = True
        try:
            yield
        finally:
            self.gc.ignore = False
            self.phase = phase

    async def run(self) -> None:
        while self.running:
            t, c, major = time.perf_counter(), time.process_time(), self.gc.major
            measured = self.measured
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - t - self.interval
            cpu = time.process_time() - c
            if self.measured != measured or self.phase == "measuring":
                continue
            self.worst[self.phase] = max(self.worst[self.phase], lag)
            self.worst_cpu[self.phase] = max(self.worst_cpu[self.phase], cpu)
            if self.gc.major == major:
                self.worst_no_gc[self.phase] = max(self.worst_no_gc[self.phase], lag)
                self.worst_cpu_no_gc[self.phase] = max(self.worst_cpu_no_gc[self.phase], cpu)
            self.lags[self.phase].append(lag)

    def p99(self, phase: str) -> float:
        values = sorted(self.lags.get(phase, [0.0]))
        return values[min(len(values) - 1, int(len(values) * 0.99))]


def event(source: int, t: float, error: bool, rng: random.Random) -> LogEvent:
    tenant = source // 10  # ten sources per tenant
    return LogEvent(tenant_id=str(tenant), tenant=f"t{tenant}", time=int(t * NS),
                    observed_time=int(t * NS), severity="ERROR" if error else "INFO",
                    severity_number=17 if error else 9,
                    message="request failed" if error else f"GET /item/{rng.randint(1, 99)} 200",
                    service=f"svc{source % 10}", host="h1", raw=RawPosition("logs.raw", 0, 0),
                    template_id="e1" if error else f"t{rng.randint(1, 4)}")


class Run:
    def __init__(self, settings: Settings, seed: int) -> None:
        self.settings = settings
        app = create_app(settings, store="memory://")
        self.detection = Detection(app, declare_topics(app, settings), Resources.build(settings))
        self.tables = (TableStandIn(), TableStandIn())
        self.detection.light, self.detection.model = self.tables  # type: ignore[assignment]
        self.rng = random.Random(seed)
        self.gc = GcPauses()
        self.probe = LagProbe(self.gc)
        self.tick_seconds: dict[str, float] = defaultdict(float)
        self.pass_ticks: dict[str, int] = defaultdict(int)  # timer ticks until a pass ended
        self.alerts = 0

    async def window(self, k: int, sources: range, phase: str) -> None:
        """One virtual window: the sources' events (as messages), then the closing tick."""
        self.probe.phase = phase
        start = T0 + k * W
        pending: dict[int, list[LogEvent]] = defaultdict(list)
        for s in sources:  # the producer's side, a message at a time, the loop free between
            partition = s % self.settings.partitions
            events = pending[partition]
            for _ in range(self.rng.randint(1, 3)):
                events.append(event(s, start + self.rng.random() * W, self.rng.random() < 0.02,
                                    self.rng))
            if len(events) >= MESSAGE:
                self.detection.observe(events, partition)
                pending[partition] = []
                await asyncio.sleep(0)
        for partition, events in pending.items():
            self.detection.observe(events, partition)
            await asyncio.sleep(0)
        # the detect timer, once a (virtual) second, back to back: a tick stops after its
        # share of the interval and the next one goes on with the same pass over the sources
        for j in range(int(W)):
            t = time.perf_counter()
            self.alerts += await self.detection.tick(now=start + W + 2.01 + j)
            self.tick_seconds[phase] = max(self.tick_seconds[phase], time.perf_counter() - t)
            await asyncio.sleep(0)
            if self.detection._closing is None:
                break
        self.pass_ticks[phase] = max(self.pass_ticks[phase], j + 1)

    def held(self) -> int:
        return sum(t.held() for t in self.tables)


def measure_baseline(sample: int, windows: int, seed: int) -> dict[str, float]:
    """Per model of the previous (river) and the compact detector, for `sample` sources trained
    on `windows` windows each: bytes allocated (tracemalloc), objects the garbage collector
    tracks, CPU a full collection spends on them, and the time of a new source's first window
    (timed first: freeing river's models leaves the allocator slow for a while)."""
    from river import stats

    rng = random.Random(seed)
    vectors = []
    for _ in range(windows):
        acc = WindowAccumulator(0.0)
        for _ in range(rng.randint(1, 3)):
            acc.add("INFO", f"t{rng.randint(1, 4)}", False, "GET /item/1 200")
        vectors.append(acc.features())

    def build(name: str) -> Any:
        if name == "compact":
            return HalfSpaceTreesDetector(window_size=50, warmup=100)
        # the previous design: river's pipeline per source plus two quantiles
        return (river_pipeline(), stats.Quantile(0.999), stats.Quantile(0.5))

    def teach(name: str, det: Any, f: dict[str, float], i: int) -> None:
        if name == "compact":
            det.score_one(f)
            det.learn_one(f)
            return
        x = model_input(f)
        score = det[0].score_one(x)
        if i >= 50:
            det[1].update(score)
            det[2].update(score)
        det[0].learn_one(x)  # river builds the source's trees at the first one

    def collect_cpu() -> float:
        t = time.process_time()
        gc.collect()
        return time.process_time() - t

    out: dict[str, float] = {}
    build("compact")  # the shared splits, built once per process
    for name in ("compact", "river"):
        gc.collect()
        t = time.perf_counter()
        for _ in range(sample):
            teach(name, build(name), vectors[0], 0)
        out[f"{name}_first_window_ms"] = (time.perf_counter() - t) / sample * 1e3
    for name in ("compact", "river"):
        gc.collect()
        empty = min(collect_cpu() for _ in range(3))
        tracked = len(gc.get_objects())
        tracemalloc.start()
        models: list[Any] = []
        for _ in range(sample):
            det = build(name)
            for i, f in enumerate(vectors):
                teach(name, det, f, i)
            models.append(det)
        gc.collect()
        out[f"{name}_bytes_per_model"] = tracemalloc.get_traced_memory()[0] / sample
        tracemalloc.stop()
        out[f"{name}_tracked_per_model"] = (len(gc.get_objects()) - tracked) / sample
        out[f"{name}_gc_us_per_model"] = max(
            0.0, (min(collect_cpu() for _ in range(3)) - empty) / sample * 1e6)
        del models, det
    return out


def frozen_and_tracked() -> int:
    """Objects the collector tracks, frozen ones included (`gc.get_objects` omits those)."""
    return len(gc.get_objects()) + gc.get_freeze_count()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Both runs, the collector policy first (its memory figures are the report's: a second
    run in the same process starts with the first one's freed memory in its RSS), then the
    baseline models."""
    out: dict[str, Any] = {}
    thresholds = gc.get_threshold()
    for policy in args.policy:
        result = await run_once(args, policy == "on")
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        # cyclic garbage at the end, the run still alive: with the policy, this includes
        # what the freezes kept for good
        result["garbage_at_end"] = gc.collect()
        del result["_run"]
        gc.collect()
        out.setdefault("first", result)
        out[policy] = result
    out["baseline"] = measure_baseline(args.sample, args.windows, args.seed)
    return out


async def run_once(args: argparse.Namespace, policy: bool) -> dict[str, Any]:
    """One run: with the analytics process's collector policy (`tune_analytics_gc` and the
    detect stage's `Freezer`) or with the start-up one only (`tune_gc`, as before)."""
    state = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    settings = load_settings(state_dir=state, app_id=f"bench-sources-{uuid.uuid4().hex[:8]}",
                             detect_max_sources=args.sources + args.burst,
                             detect_max_sources_per_tenant=1000,
                             detect_idle_seconds=args.idle,
                             kafka_local_auth=False)  # no broker: the tables are stand-ins
    run = Run(settings, args.seed)
    run.detection.freezer.enabled = policy
    # as the worker's analytics process does once started
    (tune_analytics_gc if policy else tune_gc)(settings)
    gc.collect()
    rss_empty = rss()
    tracked_empty = frozen_and_tracked()
    walked_empty = len(gc.get_objects())
    pauses = run.gc
    gc.callbacks.append(pauses)
    probe = asyncio.create_task(run.probe.run())
    detection = run.detection
    main = range(args.sources)
    burst = range(args.sources, args.sources + args.burst)
    t_start = time.perf_counter()
    young_rss = 0
    window_size = detection.config.hst_window
    for k in range(args.windows):
        phase = ("arrival" if k == 0 else "young" if k < window_size - 1
                 else "promotion" if k == window_size - 1 else "full")
        await run.window(k, main, phase)
        if k == window_size - 2:
            with run.probe.measuring():  # the bench's own collection is not the worker's
                gc.collect()
                young_rss = rss() - run.held()
    with run.probe.measuring():
        tracked_per_source = (frozen_and_tracked() - tracked_empty) / args.sources
        walked_per_source = (len(gc.get_objects()) - walked_empty) / args.sources
        t = time.process_time()
        gc.collect()  # what a full collection costs now (the policy's frozen objects unwalked)
        full_gc_cpu = time.process_time() - t
        full_rss = rss() - run.held()
        hsts = [m.hst for m in detection.monitors.values()]
        full = sum(1 for h in hsts if not h.is_young)
        model_bytes = [len(m.model_state()) for m in list(detection.monitors.values())[:200]]
        light_bytes = [len(m.light_state()) for m in list(detection.monitors.values())[:200]]
    k = args.windows
    await run.window(k, range(args.sources + args.burst), "burst")
    live_after_burst = len(detection.monitors)
    idle_windows = int(args.idle // W) + 2
    for j in range(1, idle_windows + 1):
        await run.window(k + j, main, "eviction")
    evicted = sum(1 for s in burst if f"{s // 10}/svc{s % 10}/h1" not in detection.monitors)
    # the queued snapshots reach the tables with the partitions' next events
    k += idle_windows + 1
    await run.window(k, main, "full")
    written_evicted = sum(1 for s in burst if f"{s // 10}/svc{s % 10}/h1" in run.tables[1])
    await run.window(k + 1, burst, "return")
    restored = [detection.monitors.get(f"{s // 10}/svc{s % 10}/h1") for s in burst]
    restored_ok = sum(1 for m in restored if m is not None and m.windows >= 2)
    elapsed = time.perf_counter() - t_start
    run.probe.running = False
    await probe
    gc.callbacks.remove(pauses)
    return {"_run": run, "policy": policy, "freezes": detection.freezer.freezes,
            "walked_per_source": walked_per_source, "full_gc_cpu_ms": full_gc_cpu * 1e3,
            "pass_ticks": dict(run.pass_ticks),
        "sources": args.sources, "burst": args.burst, "windows": args.windows,
        "rss_empty": rss_empty, "young_bytes_per_source": young_rss_per(young_rss, rss_empty,
                                                                         args.sources),
        "full_bytes_per_source": (full_rss - rss_empty) / args.sources,
        "rss_full": full_rss, "full_models": full,
        "lag_ms": {p: v * 1e3 for p, v in run.probe.worst.items()},
        "lag_cpu_ms": {p: v * 1e3 for p, v in run.probe.worst_cpu.items()},
        "lag_no_gc_ms": {p: v * 1e3 for p, v in run.probe.worst_no_gc.items()},
        "lag_cpu_no_gc_ms": {p: v * 1e3 for p, v in run.probe.worst_cpu_no_gc.items()},
        "lag_p99_ms": {p: run.probe.p99(p) * 1e3 for p in run.probe.lags},
        "probe_samples": {p: len(v) for p, v in run.probe.lags.items()},
        "gc_ms": {g: v * 1e3 for g, v in sorted(pauses.worst.items())},
        "gc_cpu_ms": {g: v * 1e3 for g, v in sorted(pauses.worst_cpu.items())},
        "gc_count": dict(sorted(pauses.count.items())),
        "gc_collected": dict(pauses.worst_collected),
        "tracked_per_source": tracked_per_source,
        "load": os.getloadavg(),
        "tick_s": dict(run.tick_seconds),
        "model_state_bytes": sum(model_bytes) / len(model_bytes),
        "light_state_bytes": sum(light_bytes) / len(light_bytes),
        "changelog_bytes_per_window": run.tables[0].written / (k + 2),
        "live_after_burst": live_after_burst, "evicted": evicted,
        "evicted_written": written_evicted, "restored": restored_ok,
        "alerts": run.alerts, "elapsed_s": elapsed,
    }


def young_rss_per(young_rss: int, empty: int, sources: int) -> float:
    return (young_rss - empty) / sources


PHASES = ("arrival", "young", "promotion", "full", "burst", "eviction", "return")


def worst(values: dict[str, float]) -> float:
    return max(v for p, v in values.items() if p != "measuring")


def render(out: dict[str, Any]) -> str:
    r, b = out["first"], out["baseline"]
    old = b["river_bytes_per_model"] - b["compact_bytes_per_model"] + r["full_bytes_per_source"]
    ratio = old / r["full_bytes_per_source"]
    runs = [(name, out[name]) for name in ("on", "off") if name in out]
    label = {"on": "with the policy", "off": "without (start-up freeze only)"}
    lines = [
        f"{r['sources']:,} sources on one analytics worker ({r['windows']} windows of 10 s each, "
        f"1–3 events per source and window), then {r['burst']:,} new sources at once; runs: "
        + ", ".join(label[n] for n, _ in runs) + " (memory figures: the first run).",
        "",
        "| figure | value |", "|---|---:|",
        f"| analytics RSS before the first source | {r['rss_empty'] / 2**20:,.0f} MB |",
        f"| analytics RSS with {r['sources']:,} full sources (table stand-in subtracted) | "
        f"{r['rss_full'] / 2**20:,.0f} MB |",
        f"| bytes per source, young (first 50 windows) | {r['young_bytes_per_source']:,.0f} |",
        f"| **bytes per source, full** | **{r['full_bytes_per_source']:,.0f}** |",
        f"| sources with a full HST (both mass sets) | {r['full_models']:,} |",
        f"| previous design per source (same run: this figure − compact HST + river HST) | "
        f"{old:,.0f} |",
        f"| **reduction per source** | **{ratio:.0f}x** |",
        f"| river HST model + quantiles per source ({b['river_first_window_ms']:.1f} ms for a new "
        f"source's first window) | {b['river_bytes_per_model']:,.0f} |",
        f"| compact HST per source ({b['compact_first_window_ms']:.3f} ms for a new source's "
        f"first window) | {b['compact_bytes_per_model']:,.0f} |",
        f"| objects the garbage collector tracks per HST model: river / compact | "
        f"{b['river_tracked_per_model']:,.0f} / {b['compact_tracked_per_model']:,.1f} |",
        f"| CPU a full garbage collection spends per river model (the compact one's 3 "
        f"objects are within the noise) | {b['river_gc_us_per_model']:,.0f} µs |",
        f"| model snapshot (zlib) / light snapshot, mean | {r['model_state_bytes']:,.0f} / "
        f"{r['light_state_bytes']:,.0f} bytes |",
        f"| light-state changelog writes per window (all sources; every 60 s per source and "
        f"after a window that fired) | {r['changelog_bytes_per_window'] / 2**20:,.2f} MB |",
        "| machine load average at the end (1, 5, 15 min; 2 cores shared) | "
        + ", ".join(f"{v:.1f}" for v in out[runs[-1][0]]["load"]) + " |",
        f"| monitors after the burst / evicted idle / snapshots written / restored on return | "
        f"{r['live_after_burst']:,} / {r['evicted']:,} / {r['evicted_written']:,} / "
        f"{r['restored']:,} |",
        f"| anomaly alerts raised (synthetic steady traffic) | {r['alerts']:,} |",
        "",
        "| collector, per run | " + " | ".join(label[n] for n, _ in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]

    def row(title: str, cell: Any) -> None:
        lines.append(f"| {title} | " + " | ".join(cell(x) for _, x in runs) + " |")

    row("**longest event-loop lag, any phase** (wall clock; CPU time of this process within "
        "it)", lambda x: f"**{worst(x['lag_ms']):,.1f} ms** ({worst(x['lag_cpu_ms']):,.1f} ms "
        "CPU)")
    row("longest lag without a gen1/gen2 collection in it (wall; CPU)",
        lambda x: f"{worst(x['lag_no_gc_ms']):,.1f} ms ({worst(x['lag_cpu_no_gc_ms']):,.1f} ms)")
    row("longest collection by generation, wall (CPU) [garbage objects it freed], and how "
        "many", lambda x: "; ".join(
            f"gen{g} {v:,.1f} ({x['gc_cpu_ms'][g]:,.1f}) ms [{x['gc_collected'][g]:,}], "
            f"{x['gc_count'][g]:,}x" for g, v in x["gc_ms"].items()))
    row("objects tracked per source (frozen ones included)",
        lambda x: f"{x['tracked_per_source']:,.1f}")
    row("of which a collection still walks (not frozen)",
        lambda x: f"{x['walked_per_source']:,.1f}")
    row(f"CPU of one full collection with {r['sources']:,} full sources",
        lambda x: f"{x['full_gc_cpu_ms']:,.1f} ms")
    row("freezes (every 500 admitted sources)", lambda x: f"{x['freezes']:,}")
    row("cyclic garbage found at the end, once unfrozen (objects; what freezes kept is in "
        "it)", lambda x: f"{x['garbage_at_end']:,}")
    row("longest tick (wall); most 1 s timer ticks one pass took",
        lambda x: f"{max(x['tick_s'].values()):,.2f} s; {max(x['pass_ticks'].values())}")
    row("bench wall time", lambda x: f"{x['elapsed_s']:,.0f} s")
    for name, x in runs:
        lines += [
            "",
            f"Per phase, {label[name]}:",
            "",
            "| phase | longest loop lag (wall) | its CPU | without collections (wall / CPU) "
            "| p99 lag | longest tick | ticks per pass | probe samples |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for phase in PHASES:
            lines.append(
                f"| {phase} | {x['lag_ms'].get(phase, 0):,.1f} ms | "
                f"{x['lag_cpu_ms'].get(phase, 0):,.1f} ms | "
                f"{x['lag_no_gc_ms'].get(phase, 0):,.1f} / "
                f"{x['lag_cpu_no_gc_ms'].get(phase, 0):,.1f} ms | "
                f"{x['lag_p99_ms'].get(phase, 0):,.1f} ms | "
                f"{x['tick_s'].get(phase, 0):,.2f} s | {x['pass_ticks'].get(phase, 0)} | "
                f"{x['probe_samples'].get(phase, 0):,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=1_000)
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--idle", type=float, default=120.0,
                    help="detect_idle_seconds of the run (the burst's sources are evicted)")
    ap.add_argument("--sample", type=int, default=200, help="sources of the baseline")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--policy", nargs="+", choices=("on", "off"), default=["on", "off"],
                    help="runs, in order: with the analytics collector policy, without")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sources.md")
    args = ap.parse_args(argv)
    result = asyncio.run(main_async(args))
    text = render(result)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Analytics state per source\n\n"
        f"Generated by `python -m bench.sources --sources {args.sources} --burst {args.burst} "
        f"--windows {args.windows} --idle {args.idle:g} --sample {args.sample} "
        f"--policy {' '.join(args.policy)}` "
        f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC). How it is measured: the "
        "module docstring of bench/sources.py.\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
