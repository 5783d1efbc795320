"""Fault matrix: steady load with a known set of records, one fault per row, then an audit.

    python -m bench.faults [--rate 300] [--rows worker,gateway,...]   (also `laas bench --faults`)

Runs on the benchmark's dedicated Kafka and Elasticsearch (`bench.harness.BenchStack`, ports
19092/19200), never on the shared stack. Each row is a fresh deployment (worker, gateway, web as
subprocesses; own topics, indices, user database). Records go through the gateway with a
retrying client that gives every batch an idempotency key and resends a failed batch under the
same key (`LogBatch.idempotency_key`); each record carries a sequence number
(`attributes.seq`), and only the numbers the gateway acknowledged count as produced. After the
load the run waits for the pipeline to drain and audits:

- acked: records the gateway acknowledged;
- in Kafka: occurrences of those numbers on `logs.raw` (a retried call whose ack was lost
  writes its records twice: at-least-once at the edge, visible here as "resent");
- indexed: documents in the tenant's indices; lost = acked numbers with no document (must be 0);
- duplicated: documents beyond one per sequence number, i.e. what a user searching would see
  twice (must be 0: resent copies carry the batch key and overwrite their first document);
- recovery: seconds from the fault until a probe record (one every 0.25 s, own tenant) acked
  after the heal is searchable within 3 s of its ack (web row: received by the tail socket).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from elasticsearch.helpers import async_scan

from app.elastic import esindex
from app.elastic.client import es_client
from app.kafka.client import client_options
from app.kafka.topics import RAW
from bench.harness import BenchStack, Deployment, Pusher, exit_on_sigterm, loadavg, until
from bench.probes import Probe

ROOT = Path(__file__).resolve().parent.parent
ES_OUTAGE = 60.0
Fault = Callable[[BenchStack, Deployment], Awaitable[None]]


async def kill_worker(stack: BenchStack, dep: Deployment) -> None:
    dep.kill("worker", signal.SIGKILL)
    await asyncio.sleep(2)
    await dep.ready(dep.start("worker"))  # same state directory (RocksDB) as before


async def kill_gateway(stack: BenchStack, dep: Deployment) -> None:
    dep.kill("gateway", signal.SIGKILL)
    await asyncio.sleep(3)  # clients see UNAVAILABLE / connection refused and retry
    await dep.ready(dep.start("gateway"))


async def restart_kafka(stack: BenchStack, dep: Deployment) -> None:
    await stack.restart_kafka()


async def stop_es(stack: BenchStack, dep: Deployment) -> None:
    await asyncio.to_thread(stack.es.stop)
    await asyncio.sleep(ES_OUTAGE)
    await asyncio.to_thread(stack.es.start)
    await until(lambda: asyncio.to_thread(stack.es.ready), 240, "Elasticsearch back", 1)


WATERMARKS = ("low", "high", "flood_stage")


async def flood_stage(stack: BenchStack, dep: Deployment) -> None:
    """Elasticsearch's own flood-stage reaction: the watermarks are lowered to 1 % on the
    dedicated node, so its disk monitor puts `index.blocks.read_only_allow_delete` on every
    index (writes answered 429); held 30 s, then the watermarks are reset and ES releases the
    block itself, as it does when disk is freed."""
    index = esindex.all_logs_pattern(dep.settings)  # the tenant's indices, either tier
    cluster = f"{stack.es_url}/_cluster/settings"
    prefix = "cluster.routing.allocation.disk.watermark."
    async with httpx.AsyncClient(timeout=30) as client:

        async def blocked() -> bool:
            found = (await client.get(f"{stack.es_url}/{index}/_settings",
                                      params={"flat_settings": "true"})).json()
            return any(v["settings"].get("index.blocks.read_only_allow_delete") == "true"
                       for v in found.values())

        (await client.put(cluster, json={"persistent": {
            "cluster.info.update.interval": "10s",  # its minimum
            **{prefix + w: "1%" for w in WATERMARKS}}})).raise_for_status()
        await until(blocked, 60, "the flood-stage block", 0.5)
        await asyncio.sleep(30)
        (await client.put(cluster, json={"persistent": {
            **{prefix + w: None for w in WATERMARKS}}})).raise_for_status()
        try:
            await until(lambda: _not(blocked()), 90, "Elasticsearch releasing the block", 0.5)
        finally:
            (await client.put(cluster, json={"persistent": {
                "cluster.info.update.interval": None}})).raise_for_status()


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def restart_web(stack: BenchStack, dep: Deployment) -> None:
    dep.kill("web", signal.SIGTERM)
    await dep.ready(dep.start("web"))


class IdempotentPusher(Pusher):
    """The harness's retrying `Pusher`, with a fresh idempotency key per batch.

    The key is appended to the prebuilt `LogBatch` bytes as field 4 (`idempotency_key`;
    protobuf merges concatenated messages), so every retry of the call sends the same key.
    """

    async def push(self, body: bytes, n: int) -> None:
        key = uuid.uuid4().hex.encode()  # 32 bytes: a one-byte length
        await super().push(body + b"\x22" + bytes([len(key)]) + key, n)


ROWS: dict[str, tuple[str, Fault]] = {
    "worker": ("SIGKILL the Faust worker (restart on the same state dir)", kill_worker),
    "gateway": ("SIGKILL the gateway mid-stream (clients retry)", kill_gateway),
    "kafka": ("restart the Kafka broker", restart_kafka),
    "es": (f"stop Elasticsearch for {ES_OUTAGE:.0f} s", stop_es),
    "flood": ("ES at its flood-stage watermark (read-only-allow-delete block) 30 s, then "
              "released", flood_stage),
    "web": ("restart the web process with a tail connected (client reconnects)", restart_web),
}


async def kafka_counts(dep: Deployment, tenant_id: int, timeout: float = 90) -> Counter[int]:
    """How often each sequence number of the load tenant is on `logs.raw`."""
    from aiokafka import TopicPartition

    from app.ingest.wire import pb

    consumer = AIOKafkaConsumer(**client_options(dep.settings),
                                enable_auto_commit=False)
    await consumer.start()
    parts = [TopicPartition(dep.topic(RAW), p) for p in range(dep.partitions)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    wanted = str(tenant_id).encode()
    counts: Counter[int] = Counter()
    try:
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for msg in records:
                    if dict(msg.headers).get("laas-tenant-id") != wanted:
                        continue
                    record = pb.LogRecord()
                    record.ParseFromString(msg.value)
                    counts[int(record.attributes["seq"].string_value)] += 1
            positions = [await consumer.position(tp) for tp in parts]
            if all(pos >= ends[tp] for pos, tp in zip(positions, parts, strict=True)):
                break
    finally:
        await consumer.stop()
    return counts


async def es_counts(dep: Deployment, tenant_id: int) -> Counter[int]:
    es = es_client(dep.settings, request_timeout=60)
    request = esindex.tenant_search(dep.settings, tenant_id)
    counts: Counter[int] = Counter()
    try:
        await es.indices.refresh(index=request["index"], ignore_unavailable=True)
        async for hit in async_scan(es, index=request["index"], ignore_unavailable=True,
                                    query={"query": request["query"]},
                                    _source=["attributes.seq"], size=5000):
            counts[int(hit["_source"]["attributes"]["seq"])] += 1
    finally:
        await es.close()
    return counts


async def indexed_total(dep: Deployment, tenant_id: int) -> int:
    es = es_client(dep.settings, request_timeout=10)
    request = esindex.tenant_search(dep.settings, tenant_id)
    try:
        await es.indices.refresh(index=request["index"], ignore_unavailable=True)
        return int((await es.count(index=request["index"], query=request["query"],
                                   ignore_unavailable=True))["count"])
    except Exception:  # noqa: BLE001 - not there yet
        return -1
    finally:
        await es.close()


def recovery(probe: Probe, fault_at: float, healed: float, web: bool) -> float | None:
    """Seconds from the fault until a probe acked after the heal arrived within 3 s of its ack
    (searchable; for the web row, on the reconnected tail)."""
    seen = probe.tailed if web else probe.searchable
    for seq, acked in sorted(probe.acked.items(), key=lambda kv: kv[1]):
        if acked >= healed and seq in seen and seen[seq] - acked <= 3.0:
            return seen[seq] - fault_at
    return None


async def run_row(stack: BenchStack, key: str, rate: float, before: float = 10,
                  after: float = 15) -> dict[str, Any]:
    title, fault = ROWS[key]
    await stack.up()
    dep = Deployment(stack.kafka_servers, stack.es_url, partitions=2, tag=f"fault{key}",
                     extra={"LAAS_ES_RETRY_MAX": "2", "LAAS_WORKER_SESSION_TIMEOUT": "10"})
    row: dict[str, Any] = {"row": key, "fault": title}
    try:
        await dep.create_topics()
        (load_id, load_key, _), probe_t = await dep.create_tenants(2)
        for kind in ("worker", "gateway", "web"):
            await dep.ready(dep.start(kind))
        probe = Probe(dep, probe_t)
        probe.start()
        pusher = IdempotentPusher(dep.ports["gateway"], load_key, dep.run, batch=50,
                                  keep_seqs=True)
        producing = asyncio.create_task(pusher.run(rate, seconds=before + after + 1e6))
        await asyncio.sleep(before)
        fault_at = time.monotonic()
        await fault(stack, dep)
        healed = time.monotonic()
        await asyncio.sleep(after)
        producing.cancel()
        await asyncio.gather(producing, return_exceptions=True)
        load_end = time.monotonic()
        # in-flight calls were cancelled: their records may be in Kafka, unacknowledged
        acked = set(pusher.stats.acked_seqs)
        pusher.close()
        drained_at = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if await indexed_total(dep, load_id) >= len(acked):
                drained_at = time.monotonic()
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # anything extra (a duplicate) would show up by now
        await probe.stop(grace=10)
        in_kafka = await kafka_counts(dep, load_id)
        docs = await es_counts(dep, load_id)
        lost = sorted(s for s in acked if docs[s] == 0)
        dup_docs = sum(max(0, c - 1) for c in docs.values())  # per sequence number
        resent = sum(c - 1 for s, c in in_kafka.items() if c > 1)
        row.update({
            "acked": len(acked), "in_kafka": sum(in_kafka[s] for s in acked),
            "resent": resent, "unacked_in_kafka": sum(c for s, c in in_kafka.items()
                                                       if s not in acked),
            "indexed": sum(docs.values()), "lost": len(lost), "lost_sample": lost[:10],
            "duplicated": dup_docs, "failed_calls": pusher.stats.failed_calls,
            "fault_s": healed - fault_at,
            "recovery_s": recovery(probe, fault_at, healed, web=key == "web"),
            "drain_s": None if drained_at is None else drained_at - load_end,
            "tail_reconnects": probe.tail_reconnects, "load": loadavg(),
            "errors": {k: len(v) for k, v in dep.log_errors().items() if v},
        })
    finally:
        if not stack.es.ready():
            await asyncio.to_thread(stack.es.start)
            await until(lambda: asyncio.to_thread(stack.es.ready), 240, "ES for cleanup", 1)
        await dep.cleanup()
    print(f"  {key}: {row}", flush=True)
    return row


def render(rows: list[dict[str, Any]], rate: float) -> str:
    lines = [
        f"Load: {rate:.0f} records/s through the gateway (50-record `Push` calls, a client that "
        "retries failed calls with the same records under the same idempotency key), "
        "2 partitions, one worker; 10 s before the fault, 15 s after it is healed. "
        "`bench/faults.py` on the dedicated bench stack.",
        "",
        "| fault | acked | in Kafka (resent by retries) | indexed | lost | duplicated docs "
        "| failed calls | fault lasted s | recovery s | all indexed after load end s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['fault']} | run failed: {r['error']} | | | | | | | | | |")
            continue
        rec = "—" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        drain = "—" if r["drain_s"] is None else f"{r['drain_s']:.1f}"
        lines.append(
            f"| {r['fault']} | {r['acked']} | {r['in_kafka']} ({r['resent']}) | {r['indexed']} | "
            f"**{r['lost']}** | **{r['duplicated']}** | {r['failed_calls']} | {r['fault_s']:.1f} "
            f"| {rec} | {drain} | {r['load']} |")
    lines += [
        "",
        "indexed counts every document of the tenant: acked + any records of cancelled "
        "(unacknowledged) calls that reached Kafka; resent copies overwrite their first "
        "document (same batch key and index, same `_id`). lost counts acknowledged numbers "
        "without a document; duplicated counts documents beyond one per sequence number "
        "(what a user would see twice). Recovery: from the fault until a probe acked "
        "after the heal (process back, broker/ES ready, block released) is searchable within "
        "3 s of its ack (web row: received by the reconnected tail).",
    ]
    for r in rows:
        if r.get("errors"):
            lines.append(f"- {r['row']}: ERROR lines in logs (expected for faults): {r['errors']}")
        if r.get("lost"):
            lines.append(f"- {r['row']}: LOST acknowledged records, e.g. {r['lost_sample']}")
    return "\n".join(lines)


async def run_matrix(stack: BenchStack | None = None, rate: float = 300,
                     rows: list[str] | None = None) -> dict[str, Any]:
    stack = stack or BenchStack()
    results = []
    for key in rows or list(ROWS):
        try:
            results.append(await run_row(stack, key, rate))
        except Exception as exc:  # noqa: BLE001 - a failed row is reported, not hidden
            results.append({"row": key, "fault": ROWS[key][0], "error": repr(exc)[:300]})
            print(f"  {key}: failed {exc!r}", flush=True)
    return {"rows": results, "markdown": render(results, rate)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"some of {','.join(ROWS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faults.md")
    args = ap.parse_args(argv)
    exit_on_sigterm()
    result = asyncio.run(run_matrix(rate=args.rate, rows=args.rows.split(",")))
    args.out.write_text("# Fault matrix\n\n" + result["markdown"] + "\n")
    print(result["markdown"])
    bad = [r for r in result["rows"] if r.get("lost") or r.get("duplicated") or "error" in r]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
