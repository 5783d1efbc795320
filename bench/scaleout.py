"""Scale-out: 1, 2 and 3 Faust workers in one group on 6 partitions, throughput and start-up.

    python -m bench.scaleout [--events 20000]   (also `laas bench --scale`)

For each worker count a fresh deployment gets `events` records produced straight to `logs.raw`
first (aiokafka, acks=all; keys spread over the partitions), then the workers start together.
Figures: time from the start to the first searchable document (process start, group join and
the rebalance that hands out partitions, table recovery) and the indexing rate from the first to
the last document. On this 2-vCPU machine, Kafka, Elasticsearch and the workers share the two
cores, so more workers cannot add CPU: the figure shows the overhead and the per-core cost, not
what extra machines would give.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from app.elastic import esindex
from app.kafka.client import client_options
from app.kafka.topics import RAW
from bench.harness import BenchStack, Deployment, Sampler, loadavg
from bench.tenants import ensure_tenants

PARTITIONS = 6
STALL_AFTER = 240.0  # seconds without finishing: reported as a stall, not waited out


async def prefill(dep: Deployment, n: int) -> None:
    from app.kafka.stamp import Stamps
    from bench.pipeline import HEADERS, record

    stamps = Stamps.from_settings(dep.settings)  # the deployment's LAAS_SECRET_KEY
    producer = AIOKafkaProducer(**client_options(dep.settings), acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        values = [(f"1/svc{i % 64}".encode(), record(i).SerializeToString()) for i in range(n)]
        futures = [await producer.send(dep.topic(RAW), value, key=key,
                                       headers=stamps.sign(key, value, HEADERS))
                   for key, value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def leave(dep: Deployment, es: Any, alias: str, base: int, workers: int) -> float | None:
    """Seconds from a worker's graceful stop (scale-down) until every record acked before it,
    under a 200 records/s trickle, is searchable again: the rebalance plus the catch-up."""
    from app.kafka.stamp import Stamps
    from bench.pipeline import HEADERS, record

    stamps = Stamps.from_settings(dep.settings)
    producer = AIOKafkaProducer(**client_options(dep.settings), acks="all",
                                enable_idempotence=True)
    await producer.start()
    acked = [0]

    async def trickle() -> None:
        i = 0
        while True:
            key, value = f"1/svc{i % 64}".encode(), record(i).SerializeToString()
            await producer.send_and_wait(dep.topic(RAW), value, key=key,
                                         headers=stamps.sign(key, value, HEADERS))
            acked[0] += 1
            i += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(trickle())
    try:
        await asyncio.sleep(5)
        before = acked[0]
        stopped = time.monotonic()
        dep.procs[f"worker{workers}"].popen.terminate()
        deadline = stopped + 120
        while time.monotonic() < deadline:
            await es.indices.refresh(index=alias)
            if int((await es.count(index=alias))["count"]) >= base + before:
                return time.monotonic() - stopped
            await asyncio.sleep(0.2)
        return None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()


async def one(stack: BenchStack, workers: int, n: int) -> dict[str, Any]:
    from elasticsearch import AsyncElasticsearch

    dep = Deployment(stack.kafka_servers, stack.es_url, partitions=PARTITIONS,
                     tag=f"scale{workers}")
    es = AsyncElasticsearch(stack.es_url, request_timeout=30)
    alias = esindex.all_logs_pattern(dep.settings)  # tenant 1's documents only, either tier
    try:
        await dep.create_topics()
        await dep.create_tenants(0)  # migrates the run's user database (alert rules, webhooks)
        await ensure_tenants(dep.settings, {1: "bench"})  # the prefill's tenant (index checks)
        await prefill(dep, n)
        started = time.monotonic()
        for i in range(workers):
            dep.start("worker", f"worker{i + 1}")
        sampler = Sampler(lambda: {**dep.pids(), **stack.pids()}).start()
        first: tuple[float, int] | None = None
        count = 0
        deadline = time.monotonic() + STALL_AFTER
        while count < n and time.monotonic() < deadline:
            try:
                count = int((await es.count(index=alias, ignore_unavailable=True,
                                            allow_no_indices=True))["count"])
            except Exception:  # noqa: BLE001 - index not created yet
                count = 0
            if count and first is None:
                first = (time.monotonic(), count)
            await asyncio.sleep(0.25)
        done = time.monotonic()
        sampler.stop()
        stalled = count < n
        rebalance = (await leave(dep, es, alias, count, workers)
                     if workers > 1 and not stalled else None)
        cpu: dict[str, float] = {}
        for s in sampler.samples:
            cpu.setdefault(s.name, 0.0)
            cpu[s.name] += s.cpu / max(1, len({x.t for x in sampler.samples}))
        worker_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
        rate = (count - first[1]) / (done - first[0]) if first and done > first[0] else 0.0
        return {"workers": workers, "events": n, "indexed": count, "stalled": stalled,
                "first_doc_s": None if first is None else first[0] - started,
                "rate": rate, "worker_cpu_pct": worker_cpu, "rebalance_s": rebalance,
                "per_core": rate / (worker_cpu / 100) if worker_cpu else None,
                "cpu": cpu, "load": loadavg()}
    finally:
        await es.close()
        await dep.cleanup()


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{rows[0]['events']:,} records pre-produced to `logs.raw` ({PARTITIONS} partitions), "
        "then N workers started together in one consumer group (`bench/scaleout.py`). "
        "**2-vCPU machine**: Kafka, Elasticsearch and every worker share two cores, so this "
        "measures overhead and per-core cost, not the gain of extra machines.",
        "",
        "| workers | start → first searchable doc s (start-up + join + rebalance) | indexed/s | "
        "worker CPU % (sum, 100 = 1 core) | indexed/s per worker core | one worker leaves: "
        "searchable again after s | load |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        first = "—" if r["first_doc_s"] is None else f"{r['first_doc_s']:.1f}"
        per_core = "—" if not r["per_core"] or r.get("stalled") else f"{r['per_core']:,.0f}"
        leave_s = "—" if r.get("rebalance_s") is None else f"{r['rebalance_s']:.1f}"
        rate = (f"{r['rate']:,.0f}" if not r.get("stalled") else
                f"**stalled**: {r['indexed']:,} of {r['events']:,} after {STALL_AFTER:.0f} s")
        lines.append(f"| {r['workers']} | {first} | {rate} | "
                     f"{r['worker_cpu_pct']:.0f} | {per_core} | {leave_s} | {r['load']} |")
    lines += ["", "One worker leaves: with a 200 records/s trickle, the last worker is stopped "
              "gracefully (SIGTERM, it leaves the group); the figure is the time until every "
              "record acked before the stop is searchable (group rebalance, partition "
              "assignment, table recovery on the survivors, catch-up)."]
    return "\n".join(lines)


async def scaleout(stack: BenchStack | None = None, mode: str = "short",
                   events: int | None = None) -> dict[str, Any]:
    stack = stack or BenchStack()
    await stack.up()
    n = events or (20_000 if mode != "full" else 100_000)
    rows = []
    for workers in (1, 2, 3):
        rows.append(await one(stack, workers, n))
        print(f"  scale {workers}: {rows[-1]}", flush=True)
    return {"rows": rows, "markdown": render(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scaleout.md")
    args = ap.parse_args(argv)
    result = asyncio.run(scaleout(events=args.events))
    args.out.write_text("# Scale-out\n\n" + result["markdown"] + "\n")
    print(result["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
