"""Whole-system benchmark: scenarios through the real processes, baselines from the same run.

    laas bench [--short|--full] [--faults] [--scale] [--soak MINUTES]
    python -m bench.system --short

    python -m bench.system --short --saturation   # the saturation search alone

A dedicated Kafka and Elasticsearch (`bench.harness.BenchStack`) carry one private deployment:
`laas worker`, `laas gateway` and `laas web` as subprocesses. Load goes through the gateway
(gRPC `Push`, API keys from the run's own SQLite user database); probes measure ack →
searchable and ack → tail. Results go to `bench/results/REPORT.md` (via `bench.report`) with
PNG plots next to it.

The steady phase is a saturation search (`bench.knee`): the mode's rate ladder, then ×`factor`
from the highest step that kept up until a step falls behind, two bisection steps, capped by
`max_rate` and stopped when the generator (or the gateway) no longer delivers the offered rate.
The load comes from a pool of prebuilt records in batches of `batch_for(rate, batch)` records
(at most `batch`, what a shipper flushing 20 times a second sends), `inflight` calls at once.
The raw Elasticsearch bulk rate of the same documents on the same node is measured just before
and just after the search; the knee's ratio to it is the figure of merit (issue 18: ≥ 0.6).
With `--saturation` only this phase runs and the results go to `bench/results/saturation.md`.
Each run starts the bench stack afresh (stopping one left running) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from app.elastic.client import es_client
from app.kafka.topics import RAW
from bench.harness import (
    BenchStack,
    Deployment,
    Pusher,
    Sampler,
    consumer_lag,
    exit_on_sigterm,
    loadavg,
    make_record,
    record_pool,
)
from bench.knee import (
    FELL_BEHIND,
    Plan,
    batch_for,
    knee,
    next_rate,
    verdict,
)
from bench.probes import Probe, raw_bulk_rate, raw_es_searchable, raw_kafka_delay, summary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

MODES: dict[str, dict[str, Any]] = {
    "smoke": {"step": 4, "rates": [1000], "max_rate": 2000, "burst_base": 100, "burst": 4,
              "burst_after": 3, "tenants": 30, "per_tenant": 3, "large": 20,
              "search_events": 5000, "search_repeat": 2, "baseline": 3, "raw_records": 2000,
              "drain": 60},
    "short": {"step": 10, "rates": [250, 500, 1000, 2000, 4000], "max_rate": 32_000,
              "burst_base": 100,
              "burst": 10, "burst_after": 10, "tenants": 200, "per_tenant": 5,
              "large": 200, "search_events": 100_000, "search_repeat": 8, "baseline": 8,
              "raw_records": 20_000, "drain": 120},
    "full": {"step": 60, "rates": [1000, 2500, 5000, 7500, 10000, 15000, 20000],
             "max_rate": 80_000,
             "burst_base": 500, "burst": 30, "burst_after": 30, "tenants": 1000,
             "per_tenant": 5, "large": 2000, "search_events": 1_000_000, "search_repeat": 30,
             "baseline": 30, "raw_records": 100_000, "drain": 180},
}
# The saturation search (every mode): ×FACTOR past the ladder, BISECTIONS halving steps,
# requests of up to BATCH records (real shippers send thousands: the OpenTelemetry Collector's
# batch processor 8,192, Vector's Elasticsearch sink up to 10 MB), INFLIGHT calls at once,
# records cycled from a pool of POOL distinct ones.
@dataclass(frozen=True)
class SearchLoad:
    factor: float = 2.0
    bisections: int = 2
    batch: int = 1000
    inflight: int = 8
    pool: int = 20_000


SEARCH = SearchLoad()
RAW_BULK_REPEAT = 3  # raw bulk measurements before and after the search (the best counts)


class Monitor:
    """Indexed documents (all of the run's log indices) and consumer lag, once a second."""

    def __init__(self, dep: Deployment, t0: float) -> None:
        self.dep, self.t0 = dep, t0
        self.es = es_client(dep.settings, request_timeout=10)
        self.pattern = esindex.all_logs_pattern(dep.settings)
        self.indexed: list[tuple[float, int]] = []
        self.lag: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def count(self) -> int:
        try:
            found = await self.es.count(index=self.pattern, ignore_unavailable=True,
                                        allow_no_indices=True)
            return int(found["count"])
        except Exception:  # noqa: BLE001 - ES down in a fault row
            return -1

    def start(self) -> Monitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        tick = 0
        while True:
            now = time.monotonic() - self.t0
            count = await self.count()
            if count >= 0:
                self.indexed.append((now, count))
            if tick % 2 == 0:
                try:
                    lag = await consumer_lag(self.dep.settings, self.dep.run, self.dep.topic(RAW))
                    self.lag.append((now, lag))
                except Exception:  # noqa: BLE001 - Kafka down in a fault row
                    pass
            tick += 1
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.es.close()

    def at(self, t: float) -> int:
        """Indexed count at (just before) `t` seconds after t0."""
        best = 0
        for when, count in self.indexed:
            if when <= t:
                best = count
        return best

    async def wait_indexed(self, total: int, timeout: float) -> float | None:
        """Seconds until the run's indices hold `total` documents (None: not within timeout)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                await self.es.indices.refresh(index=self.pattern, ignore_unavailable=True,
                                              allow_no_indices=True)
            except Exception:  # noqa: BLE001
                pass
            if await self.count() >= total:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        return None


async def start_processes(dep: Deployment, workers: int = 1) -> None:
    for i in range(workers):
        await dep.ready(dep.start("worker", f"worker{i + 1}" if workers > 1 else "worker"))
    await dep.ready(dep.start("gateway"))
    await dep.ready(dep.start("web"))


SINK_SERIES = ("laas_sink_batch_seconds_count", "laas_sink_batch_seconds_sum",
               "laas_sink_events_total")


async def sink_totals(dep: Deployment) -> dict[str, float]:
    """The index sink's totals (bulks, seconds in bulks, events) from the worker's `/metrics`
    (its index child's metrics are merged in); empty when the worker does not answer."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"http://127.0.0.1:{dep.procs['worker'].port}/metrics")
    except httpx.HTTPError:
        return {}
    found: dict[str, float] = {}
    for line in reply.text.splitlines():
        name = line.split("{", 1)[0]
        if name in SINK_SERIES and 'stage="index"' in line:
            found[name] = float(line.rsplit(" ", 1)[1])
    return found


def sink_step(before: dict[str, float], after: dict[str, float], seconds: float
              ) -> dict[str, float] | None:
    """Bulk requests of the index sink during a step: how many, mean seconds, documents per
    bulk and the share of the step spent waiting on them (1.0: one bulk after another)."""
    if not before or not after:
        return None
    count, secs, events = (after.get(n, 0.0) - before.get(n, 0.0) for n in SINK_SERIES)
    if count <= 0:
        return {"bulks": 0.0, "mean_s": 0.0, "docs_per_bulk": 0.0, "busy": 0.0}
    return {"bulks": count, "mean_s": secs / count, "docs_per_bulk": events / count,
            "busy": secs / seconds}


def plan_of(cfg: dict[str, Any]) -> Plan:
    return Plan(tuple(cfg["rates"]), SEARCH.factor, cfg["max_rate"], SEARCH.bisections)


def step_cpu(sampler: Sampler | None, since: float, until: float) -> dict[str, float]:
    """Mean CPU % per process in the window; `worker (main)` is the worker without its
    children (`worker:index`, `worker:analytics`)."""
    if sampler is None:
        return {}
    cpu = sampler.mean_cpu(since, until)
    if "worker" in cpu:
        children = sum(v for k, v in cpu.items() if k.startswith("worker:"))
        cpu["worker (main)"] = max(0.0, cpu["worker"] - children)
    return {k: round(v, 1) for k, v in cpu.items()}


async def steady(dep: Deployment, mon: Monitor, probe: Probe, key: str, cfg: dict[str, Any],
                 t0: float, expected: list[int], pool: list[bytes],
                 sampler: Sampler | None = None) -> list[dict[str, Any]]:
    """The saturation search: one step per rate of `bench.knee.next_rate`, draining between
    steps (a step that fell behind gets a second `drain` to settle before the next one)."""
    rows: list[dict[str, Any]] = []
    plan = plan_of(cfg)
    pusher = Pusher(dep.ports["gateway"], key, dep.run, inflight=SEARCH.inflight, pool=pool)
    while (rate := next_rate(rows, plan)) is not None:
        kind = ("bisect" if any(r["verdict"] == FELL_BEHIND for r in rows)
                else "ladder" if len(rows) < len(plan.ladder) else "rise")
        pusher.batch = batch_for(rate, SEARCH.batch)
        begin = time.monotonic()
        before_acked, before_indexed = pusher.stats.acked, mon.at(begin - t0)
        failed_before = pusher.stats.failed_calls
        sink_before = await sink_totals(dep)
        await pusher.run(rate, seconds=cfg["step"], t0=t0)
        end = time.monotonic()
        sink = sink_step(sink_before, await sink_totals(dep), end - begin)
        expected[0] += pusher.stats.acked - before_acked
        indexed_in_step = mon.at(end - t0) - before_indexed
        cpu = step_cpu(sampler, begin - t0 + 1, end - t0)
        drained = await mon.wait_indexed(expected[0] + len(probe.acked), cfg["drain"])
        settled = None
        if drained is None:
            settled = await mon.wait_indexed(expected[0] + len(probe.acked), cfg["drain"])
        search, tails = probe.window(begin, end)
        row: dict[str, Any] = {
            "kind": kind, "offered": rate, "batch": pusher.batch, "inflight": pusher.inflight,
            "seconds": round(end - begin, 1),
            "acked_per_s": (pusher.stats.acked - before_acked) / (end - begin),
            "failed_calls": pusher.stats.failed_calls - failed_before,
            "indexed_per_s": indexed_in_step / (end - begin),
            "drain_s": drained, "settled_s": settled, "searchable_ms": summary(search),
            "tail_ms": summary(tails), "cpu": cpu, "sink": sink, "load": loadavg(),
            "t": [begin - t0, end - t0],
        }
        base = rows[0]["searchable_ms"]["p50"] if rows else row["searchable_ms"]["p50"]
        row["verdict"] = verdict(row, base)
        rows.append(row)
        print(f"  steady {rate} ({kind}, batch {pusher.batch}): {row['acked_per_s']:,.0f} "
              f"acked/s, {row['indexed_per_s']:,.0f} indexed/s, drain {drained}, searchable "
              f"p50 {row['searchable_ms']['p50']:,.0f} ms: {row['verdict']}; cpu {cpu}",
              flush=True)
    pusher.close()
    return rows


async def burst(dep: Deployment, mon: Monitor, probe: Probe, key: str, cfg: dict[str, Any],
                t0: float, expected: list[int]) -> dict[str, Any]:
    base = cfg["burst_base"]
    pusher = Pusher(dep.ports["gateway"], key, dep.run, inflight=8)
    start = time.monotonic()
    await pusher.run(base, seconds=10, t0=t0)
    b0 = time.monotonic()
    acked_base = pusher.stats.acked
    await pusher.run(base * 10, seconds=cfg["burst"], t0=t0)
    b1 = time.monotonic()
    acked_burst = pusher.stats.acked
    await pusher.run(base, seconds=cfg["burst_after"], t0=t0)
    end = time.monotonic()
    expected[0] += pusher.stats.acked
    drained = await mon.wait_indexed(expected[0] + len(probe.acked), cfg["drain"])
    pusher.close()
    search, tails = probe.window(b0, end)
    return {"base": base, "burst_rate": base * 10, "burst_s": cfg["burst"],
            "burst_acked_per_s": (acked_burst - acked_base) / (b1 - b0),
            "drain_after_s": drained, "searchable_ms": summary(search), "tail_ms": summary(tails),
            "t": [start - t0, b0 - t0, b1 - t0, end - t0], "load": loadavg()}


async def tenants(dep: Deployment, mon: Monitor, probe: Probe, cfg: dict[str, Any],
                  expected: list[int]) -> dict[str, Any]:
    """`tenants` tenants × `per_tenant` events versus 5 tenants with the same total."""
    n, per = cfg["tenants"], cfg["per_tenant"]
    started = time.monotonic()
    many = await dep.create_tenants(n)
    setup_s = time.monotonic() - started
    total = n * per
    out: dict[str, Any] = {"tenants": n, "per_tenant": per, "setup_s": setup_s}
    for label, group in (("many", many), ("few", many[:5])):
        share = total // len(group)
        sem = asyncio.Semaphore(8)
        pushers = [Pusher(dep.ports["gateway"], key, f"{dep.run}t{tid}") for tid, key, _ in group]

        async def one(p: Pusher, count: int, sem: asyncio.Semaphore = sem) -> None:
            async with sem:
                await p.run(None, total=count)

        begin = time.monotonic()
        await asyncio.gather(*(one(p, share) for p in pushers))
        acked_s = time.monotonic() - begin
        expected[0] += share * len(group)
        done = await mon.wait_indexed(expected[0] + len(probe.acked), cfg["drain"])
        for p in pushers:
            p.close()
        out[label] = {"tenants": len(group), "events": share * len(group),
                      "acked_per_s": share * len(group) / acked_s,
                      "searchable_s": None if done is None else acked_s + done,
                      "end_to_end_per_s": None if done is None
                      else share * len(group) / (acked_s + done), "load": loadavg()}
        print(f"  tenants {label}: {out[label]}", flush=True)
    return out


async def large(dep: Deployment, mon: Monitor, probe: Probe, key: str, cfg: dict[str, Any],
                expected: list[int]) -> dict[str, Any]:
    """Records at 90 % of `ingest_max_record_bytes`, batches of 10."""
    size = int(dep.settings.ingest_max_record_bytes * 0.9)
    n = cfg["large"]
    pusher = Pusher(dep.ports["gateway"], key, dep.run, batch=10, size=size)
    pusher.next_seq = 10_000_000
    begin = time.monotonic()
    await pusher.run(None, total=n)
    acked_s = time.monotonic() - begin
    expected[0] += n
    done = await mon.wait_indexed(expected[0] + len(probe.acked), cfg["drain"])
    pusher.close()
    from bench.ingest_gateway import raw

    recs = [make_record("raw", i, size) for i in range(n)]
    raw_rate = await raw(dep.settings, dep.topic("bench.large"), recs, None)
    return {"bytes": len(recs[0]), "records": n, "acked_per_s": n / acked_s,
            "mb_per_s": n * len(recs[0]) / acked_s / 2**20,
            "end_to_end_per_s": None if done is None else n / (acked_s + done),
            "raw_producer_per_s": raw_rate, "load": loadavg()}


async def baselines(dep: Deployment, stack: BenchStack, cfg: dict[str, Any],
                    search_tenant: tuple[int, str, str]) -> dict[str, Any]:
    from bench import ingest_gateway
    from bench import search as search_bench

    out: dict[str, Any] = {}
    n = cfg["raw_records"]
    out["raw_producer_per_s"] = await ingest_gateway.raw(
        dep.settings, dep.topic("bench.raw"), ingest_gateway.records(n), None)
    out["raw_bulk_per_s"] = await raw_bulk_rate(stack.es_url, record_pool(dep.run, n))
    out["raw_kafka_delay_ms"] = summary(await raw_kafka_delay(stack.kafka_servers,
                                                              cfg["baseline"]))
    out["raw_es_searchable_ms"] = summary(await raw_es_searchable(stack.es_url, cfg["baseline"]))
    es = AsyncElasticsearch(stack.es_url, request_timeout=120)
    try:
        tid, _, read = search_tenant
        out["search_index_per_s"] = await search_bench.index_events(
            es, dep.settings, str(tid), cfg["search_events"], time.time_ns())
        out["search_events"] = cfg["search_events"]
        out["search"] = await search_bench.measure_queries(dep.settings, es, tid, read,
                                                           cfg["search_repeat"])
    finally:
        await es.close()
    out["load"] = loadavg()
    print(f"  baselines: producer {out['raw_producer_per_s']:,.0f}/s, bulk "
          f"{out['raw_bulk_per_s']:,.0f}/s", flush=True)
    return out


def analytics_baselines() -> dict[str, Any]:
    """drain3 (bench.patterns) and IsolationForest (bench.detection) on Loghub, this run."""
    from bench import detection, patterns

    out: dict[str, Any] = {}
    sets = patterns.load(patterns.default_data_dir())
    rows = []
    for name, (lines, truth) in sets.items():
        ours_ids, ours_speed = patterns.measure(patterns.ours, lines, 1)
        drain_ids, drain_speed = patterns.measure(patterns.drain3_defaults, lines, 1)
        rows.append((name, len(lines), patterns.grouping_accuracy(truth, ours_ids),
                     patterns.grouping_accuracy(truth, drain_ids), ours_speed, drain_speed))
    out["patterns_table"] = patterns.render(rows) if rows else "(no Loghub data)"
    out["patterns_rows"] = rows
    try:
        results, cost = detection.run(patterns.default_data_dir(), 7)
        out["detection_table"] = detection.render(results, cost)
    except Exception as exc:  # noqa: BLE001 - reported as missing, not hidden
        out["detection_table"] = f"(detection benchmark failed: {exc!r})"
    return out


def commit() -> str:
    """The commit the bench runs (`+ uncommitted changes` when the tree differs from it); a
    tree exported without .git carries it in a COMMIT file."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
        return f"{head} + uncommitted changes" if dirty else head
    except (OSError, subprocess.CalledProcessError):
        marker = ROOT / "COMMIT"
        return marker.read_text().strip() if marker.exists() else "unknown"


async def timed_bulk(stack: BenchStack, docs: list[bytes]) -> dict[str, float]:
    """`raw_bulk_rate` of `docs`, with the Elasticsearch process's CPU seconds per document
    (nothing else writes to it meanwhile: the pipeline is idle between steps)."""
    import psutil

    root = psutil.Process(stack.pids()["elasticsearch"])
    family = [root, *root.children(recursive=True)]  # the pid file's launcher and its JVM

    def cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in family)

    cpu0 = cpu()
    rate = await raw_bulk_rate(stack.es_url, docs)
    return {"per_s": rate, "es_cpu_us_per_doc": (cpu() - cpu0) / len(docs) * 1e6}


def rates(measured: list[dict[str, float]]) -> str:
    return ", ".join(f"{m['per_s']:,.0f}" for m in measured)


async def saturation(dep: Deployment, stack: BenchStack, mon: Monitor, probe: Probe, key: str,
                     cfg: dict[str, Any], t0: float, expected: list[int],
                     sampler: Sampler | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The saturation search between raw bulk measurements of the same documents on the same
    Elasticsearch (a first one warms it up: its JIT and caches are cold after the start; then
    `RAW_BULK_REPEAT` before and after); the knees with their ratios to the raw bulk rate, the
    best of those measurements (other sessions' load only ever slows a measurement down)."""
    pool = record_pool(dep.run, SEARCH.pool)
    n = min(cfg["raw_records"], len(pool))
    cold = await timed_bulk(stack, pool[:n])
    before = [await timed_bulk(stack, pool[:n]) for _ in range(RAW_BULK_REPEAT)]
    print(f"  raw bulk cold {cold['per_s']:,.0f}, before: {rates(before)} docs/s", flush=True)
    rows = await steady(dep, mon, probe, key, cfg, t0, expected, pool, sampler)
    after = [await timed_bulk(stack, pool[:n]) for _ in range(RAW_BULK_REPEAT)]
    print(f"  raw bulk after: {rates(after)} docs/s", flush=True)
    found = knee(rows)
    bulk = max(b["per_s"] for b in before + after)
    found.update(raw_bulk_records=n, raw_bulk_cold_per_s=cold["per_s"],
                 raw_bulk_before=[b["per_s"] for b in before],
                 raw_bulk_after=[b["per_s"] for b in after],
                 raw_bulk_before_per_s=max(b["per_s"] for b in before),
                 raw_bulk_after_per_s=max(b["per_s"] for b in after),
                 raw_bulk_es_cpu_us_per_doc=min(b["es_cpu_us_per_doc"] for b in before + after),
                 raw_bulk_per_s=bulk, ratio_to_raw_bulk=found["throughput_per_s"] / bulk,
                 latency_ratio_to_raw_bulk=found["sustained_per_s"] / bulk, load=loadavg())
    print(f"  throughput knee {found['throughput_per_s']:,.0f}/s = "
          f"{found['ratio_to_raw_bulk']:.2f} of raw bulk ({found['limit']}); latency knee "
          f"{found['sustained_per_s']:,.0f}/s", flush=True)
    return rows, found


async def run(mode: str, soak_minutes: float, faults: bool, scale: bool,
              out_dir: Path = RESULTS, saturation_only: bool = False) -> dict[str, Any]:
    cfg = MODES[mode]
    stack = BenchStack()
    print("starting the bench stack ...", flush=True)
    # Fresh JVMs every run: a stack left running by an earlier run kept its warm JIT and heap,
    # and runs on it were not comparable with runs on a new one. Stopped again at the end.
    await asyncio.to_thread(stack.down)
    await stack.up()
    results: dict[str, Any] = {"mode": mode, "config": cfg, "search": asdict(SEARCH),
                               "started": time.ctime(), "commit": commit(),
                               "load_start": loadavg()}
    dep = Deployment(stack.kafka_servers, stack.es_url, partitions=4)
    sampler: Sampler | None = None
    try:
        await dep.create_topics()
        load_t, probe_t, search_t = await dep.create_tenants(3)
        await start_processes(dep)
        # warm-up: the worker joins its group and creates the tenant's first index
        warm = Pusher(dep.ports["gateway"], load_t[1], dep.run)
        warm.next_seq = 20_000_000
        await warm.run(None, total=500)
        warm.close()
        mon = Monitor(dep, time.monotonic())
        warmed = await mon.wait_indexed(500, 180)
        results["warmup_s"] = warmed
        await mon.es.close()
        t0 = time.monotonic()
        children = dep.child_pids()  # started with the worker: known after the warm-up
        sampler = Sampler(lambda: {**dep.pids(), **children, **stack.pids(),
                                   "bench client": os.getpid()}, machine=True)
        sampler.t0 = t0
        sampler.start()
        mon = Monitor(dep, t0).start()
        probe = Probe(dep, probe_t)
        probe.start()
        expected = [500]
        print("steady (saturation search) ...", flush=True)
        results["steady"], results["knee"] = await saturation(
            dep, stack, mon, probe, load_t[1], cfg, t0, expected, sampler)
        if saturation_only:
            await probe.stop()
            await mon.stop()
            sampler.stop()
            results["samples"] = [asdict(s) for s in sampler.samples]
            results["loadavg"] = sampler.load
            results["timeline"] = {"indexed": mon.indexed, "lag": mon.lag}
            results["errors"] = {k: v[:20] for k, v in dep.log_errors().items()}
            results["load_end"] = loadavg()
            return results
        print("burst ...", flush=True)
        results["burst"] = await burst(dep, mon, probe, load_t[1], cfg, t0, expected)
        print("tenants ...", flush=True)
        results["tenants"] = await tenants(dep, mon, probe, cfg, expected)
        print("large records ...", flush=True)
        results["large"] = await large(dep, mon, probe, load_t[1], cfg, expected)
        await probe.stop()
        search, tails = probe.window(0, time.monotonic())
        results["probe"] = {"searchable_ms": summary(search), "tail_ms": summary(tails),
                            "searchable_raw": search, "tail_raw": tails}
        results["timeline"] = {"indexed": mon.indexed, "lag": mon.lag}
        await mon.stop()
        print("baselines ...", flush=True)
        results["baselines"] = await baselines(dep, stack, cfg, search_t)
        sampler.stop()
        results["samples"] = [asdict(s) for s in sampler.samples]
        results["loadavg"] = sampler.load
        results["errors"] = {k: v[:20] for k, v in dep.log_errors().items()}
    finally:
        if sampler:
            sampler.stop()
        await dep.cleanup()
        if saturation_only and "knee" in results:
            from bench.report import write_saturation

            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "saturation.json").write_text(json.dumps(results, indent=1,
                                                                default=str))
            write_saturation(results, out_dir)
        if saturation_only:
            await asyncio.to_thread(stack.down)
    print("analytics baselines ...", flush=True)
    results["analytics"] = await asyncio.to_thread(analytics_baselines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "system.json").write_text(json.dumps(results, indent=1, default=str))
    extras: list[tuple[str, Any]] = []
    if scale:
        from bench.scaleout import scaleout

        extras.append(("scaleout", lambda: scaleout(stack, mode)))
    if soak_minutes:
        from bench.soak import soak

        rate = results["knee"]["sustained_per_s"] / 2
        extras.append(("soak", lambda: soak(stack, soak_minutes, rate=rate, out=out_dir)))
    if faults:
        from bench.faults import run_matrix

        extras.append(("faults", lambda: run_matrix(stack)))
    for name, make in extras:
        print(f"{name} ...", flush=True)
        try:
            results[name] = await make()
        except Exception as exc:  # noqa: BLE001 - reported in the report, not hidden
            results[name] = {"markdown": f"**Run failed**: `{exc!r}`"}
        (out_dir / "system.json").write_text(json.dumps(results, indent=1, default=str))
    results["load_end"] = loadavg()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "system.json").write_text(json.dumps(results, indent=1, default=str))
    from bench.report import write_report

    write_report(results, out_dir)
    await asyncio.to_thread(stack.down)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="seconds-long run of every scenario")
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--soak", type=float, default=0.0, metavar="MINUTES")
    ap.add_argument("--saturation", action="store_true",
                    help="only the saturation search (results in saturation.md/.json)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="report directory")
    args = ap.parse_args(argv)
    exit_on_sigterm()
    mode = "full" if args.full else "smoke" if args.smoke else "short"
    asyncio.run(run(mode, args.soak, args.faults, args.scale, args.out, args.saturation))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
