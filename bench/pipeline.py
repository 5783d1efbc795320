"""End-to-end benchmark: `logs.raw` → worker → searchable documents, next to a raw bulk baseline.

    python -m bench.pipeline [--events 300000] [--chunks 5] [--request 500] [--warmup 2000]
                             [--cold]

1. Baseline: the same events (normalized in-process) bulk-indexed straight into Elasticsearch
   with the async bulk helper (no Kafka, no Faust).
2. Pipeline: a worker is started on fresh topics and warmed up (a first `--warmup` records
   searchable and counted by its analytics process: every child process is running), then the
   records are produced to `logs.raw` as the gateway writes them (requests of `--request`
   records, one `LogBatch` message per request and service; `--request 1` gives one message per
   record, as a direct producer may write; encoded before the clock starts); the rate is
   documents per second from the backlog's first write to its last document searchable (also
   printed: from the first searchable document). The default backlog, 300,000 events, is
   ~15 s of work: the pipeline's fixed latency (the first batch through every stage, the
   1-s refresh at both ends, ~1-1.5 s in all) then counts for less than a tenth — in a 100,000
   event run, ~5 s of work, it costs the rate a quarter. `--cold` produces the records first
   and then starts the worker, timed from the first searchable document (its start-up — the
   analytics child starts seconds after the worker — then falls outside the measured time).
3. Delay: with the worker running, records are produced in timed chunks; a chunk is
   "searchable" when the tenant's count reaches its end (approximate across partitions).
Prints events/s of both, their ratio (target ≥ 0.8), p50/p99 ack-to-searchable delay, and
the CPU time each process (Elasticsearch, Kafka, the worker, the baseline's client) spent per
event during 1 and 2 — on a small machine the stages share the cores with Elasticsearch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from app.elastic import esindex
from app.elastic.client import es_client
from app.ingest.wire import pb
from app.ingest.writer import raw_batches
from app.kafka.client import client_options, cluster_env
from app.kafka.headers import LOG_BATCH_CONTENT_TYPE as CONTENT_TYPE
from app.kafka.stamp import Stamps
from app.kafka.topics import ALL, RAW, topic_name
from app.pipeline.normalize import RawMessage, normalize
from app.settings import load_settings
from bench.tenants import ensure_tenants

ROOT = Path(__file__).resolve().parent.parent
STAMP = [("laas-tenant-id", b"1"), ("laas-tenant", b"bench"), ("laas-source", b"gateway")]
HEADERS = [("content-type", b"application/x-protobuf; messageType=laas.v1.LogRecord"), *STAMP]
BATCH_HEADERS = [("content-type", CONTENT_TYPE), *STAMP]
# The worker trusts the stamp only when signed (app/kafka/stamp.py): the bench's workers get this
# secret (LAAS_SECRET_KEY) and the bench signs as the gateway does.
BENCH_SECRET = "laas-bench-secret"
BENCH_STAMPS = Stamps(BENCH_SECRET.encode())


def signed(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
           ) -> list[tuple[str, bytes]]:
    return BENCH_STAMPS.sign(key, value, headers)


def record(i: int) -> pb.LogRecord:
    body = pb.AnyValue(string_value=f"request {i} done user=u{i % 97} ms={i % 500}")
    return pb.LogRecord(time_unix_nano=time.time_ns(), severity_number=9 + (i % 3) * 4,
                        body=body,
                        resource=pb.Resource(service_name=f"svc{i % 8}", host=f"h{i % 3}"))


Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


def messages(records: list[pb.LogRecord], request: int) -> list[Message]:
    """`records` as the gateway writes them: requests of `request` records, one `LogBatch`
    message per request and service (one `LogRecord` message per record for `request` 1)."""
    if request == 1:
        pairs = [(f"1/{r.resource.service_name}".encode(), r.SerializeToString())
                 for r in records]
        return [(key, value, signed(key, value, HEADERS)) for key, value in pairs]
    out: list[Message] = []
    for start in range(0, len(records), request):
        chunk = records[start:start + request]
        out += [(b.key, b.value, signed(b.key, b.value, BATCH_HEADERS))
                for b in raw_batches(chunk, range(len(chunk)), "1", 512 * 1024)]
    return out


async def produce(producer: AIOKafkaProducer, topic: str, values: list[Message]) -> None:
    futures = [await producer.send(topic, value, key=key, headers=headers)
               for key, value, headers in values]
    await asyncio.gather(*futures)


async def stage_count(port: int, stage: str) -> float:
    """`laas_events_in_total{stage=...}` on the worker's /metrics (0 before it answers)."""
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return 0
    found = re.search(rf'laas_events_in_total{{stage="{stage}"}} (\S+)', text)
    return float(found.group(1)) if found else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listener(port: int) -> psutil.Process | None:
    """The process listening on `port` (the local stack's Kafka or Elasticsearch)."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def cpu_seconds(procs: dict[str, psutil.Process | None]) -> dict[str, float]:
    """User + system CPU seconds so far of each process, and of each child of the worker
    (named from the worker's log lines "<name> process started: pid <pid>")."""
    found = {}
    for name, proc in procs.items():
        if proc is None:
            continue
        try:
            found[name] = sum(proc.cpu_times()[:2])
            if name == "worker":
                for child in proc.children():
                    if child.pid in CHILDREN:  # not multiprocessing's resource tracker
                        found[f"worker/{CHILDREN[child.pid]}"] = sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return found


CHILDREN: dict[int, str] = {}  # pid -> name of the worker's child processes


def learn_children(log_file: str) -> None:
    for name, pid in re.findall(r"\] (\w+) process started: pid (\d+)",
                                Path(log_file).read_text(errors="replace")):
        CHILDREN[int(pid)] = name


def per_event(before: dict[str, float], after: dict[str, float], n: int) -> str:
    """`name 12 µs` per event for each process measured at both ends (`worker` alone, then
    each of its children)."""
    return ", ".join(f"{name} {(after[name] - before[name]) / n * 1e6:,.0f} µs"
                     for name in after if name in before)


async def count(es: AsyncElasticsearch, index: str) -> int:
    """Documents searchable now: no forced refresh (the index refreshes every second, as for
    any search; refreshing at the poll rate would cost Elasticsearch extra segments)."""
    try:
        return int((await es.count(index=index, ignore_unavailable=True,
                                   allow_no_indices=True))["count"])
    except Exception:  # noqa: BLE001
        return 0


async def main(n: int, chunks: int, request: int, warmup: int, cold: bool) -> None:
    run = f"b{uuid.uuid4().hex[:8]}"
    settings = load_settings(app_id=run, topic_prefix=f"{run}.", index_prefix=f"{run}-")
    es = es_client(settings, request_timeout=60)
    records = [record(i) for i in range(n)]
    servers = {"elasticsearch": listener(settings.es_port), "kafka": listener(settings.kafka_port),
               "bench client": psutil.Process()}

    # 1. baseline
    base = load_settings(index_prefix=f"{run}base-")
    await esindex.ensure_template(es, base)
    values = [r.SerializeToString() for r in records]
    events = [normalize(RawMessage("raw", 0, i, 0, None, v, dict(signed(None, v, HEADERS))),
                        now_ns=time.time_ns(), stamps=BENCH_STAMPS).events[0]
              for i, v in enumerate(values)]
    actions = [{"_index": esindex.daily_index(base, "1", e.time), "_id": e.doc_id(),
                "_source": esindex.document(e)} for e in events]
    started, cpu0 = time.monotonic(), cpu_seconds(servers)
    await async_bulk(es, actions, chunk_size=settings.es_batch_size)
    await es.indices.refresh(index=f"{run}base-*")  # searchable, as the pipeline's count needs
    raw_rate = n / (time.monotonic() - started)
    raw_cpu = per_event(cpu0, cpu_seconds(servers), n)

    # 2. pipeline throughput
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    await admin.create_topics([NewTopic(topic_name(settings, t), settings.partitions, 1)
                               for t in ALL])
    producer = AIOKafkaProducer(**client_options(settings), acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    raw_topic = topic_name(settings, RAW)
    backlog = messages(records, request)
    warm = 0 if cold else warmup
    if cold:
        await produce(producer, raw_topic, backlog)
    port = free_port()
    # the stack's broker as a Kafka of the worker's own (its state directory has no passwords)
    env = {**os.environ, **cluster_env(settings),
           "LAAS_APP_ID": run, "LAAS_TOPIC_PREFIX": f"{run}.",
           "LAAS_INDEX_PREFIX": f"{run}-", "LAAS_WORKER_WEB_PORT": str(port),
           "LAAS_STATE_DIR": f"/tmp/{run}", "LAAS_SECRET_KEY": BENCH_SECRET,
           "LAAS_DATABASE_URL": f"sqlite+aiosqlite:////tmp/{run}-users.db"}
    # tenant 1 exists, as for the gateway that stamped its records (the index stage checks)
    await ensure_tenants(load_settings(database_url=env["LAAS_DATABASE_URL"]), {1: "bench"})
    log = open(f"/tmp/{run}.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    alias = esindex.all_logs_pattern(settings)  # tenant 1's documents only, either tier
    procs = {**servers, "worker": psutil.Process(worker.pid)}
    del procs["bench client"]
    try:
        start = None
        if warm:
            await produce(producer, raw_topic, messages([record(i) for i in range(warm)], request))
            while await count(es, alias) < warm or await stage_count(port, "stats") < warm:
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited; see /tmp/{run}.log")
                await asyncio.sleep(0.2)
            learn_children(f"/tmp/{run}.log")
            print("worker warm; producing the backlog", flush=True)
            start = (time.monotonic(), 0, cpu_seconds(procs))
            await produce(producer, raw_topic, backlog)
        first = None
        while (c := await count(es, alias) - warm) < n:
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see /tmp/{run}.log")
            if c > 0 and first is None:
                learn_children(f"/tmp/{run}.log")
                first = (time.monotonic(), c, cpu_seconds(procs))
            await asyncio.sleep(0.2)
        end, cpu_end = time.monotonic(), cpu_seconds(procs)
        assert first is not None
        # warm: from the backlog's first write (all of its work is in the window); cold: from
        # the first searchable document (the worker's start-up is not)
        since = start or first
        pipe_rate = (n - since[1]) / (end - since[0])
        steady_rate = (n - first[1]) / (end - first[0])
        pipe_cpu = per_event(since[2], cpu_end, n - since[1])

        # 3. delay, chunk by chunk at a steady rate
        delays = []
        per = max(n // chunks, 1)
        total = n + warm
        for _ in range(chunks):
            await produce(producer, raw_topic, messages([record(i) for i in range(per)], request))
            acked = time.monotonic()
            total += per
            while await count(es, alias) < total:
                await asyncio.sleep(0.05)
            delays.append(time.monotonic() - acked)
    finally:
        worker.terminate()
        worker.wait(60)
        await producer.stop()
        await admin.delete_topics([topic_name(settings, t) for t in ALL])
        await admin.close()
        await es.indices.delete(index=f"{run}*", ignore_unavailable=True)
        await es.close()
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"events: {n}, {request} per ingest request, "
          f"{'cold (backlog before the worker)' if cold else f'warm worker ({warm} first)'}")
    print(f"raw bulk baseline: {raw_rate:,.0f} events/s")
    print(f"pipeline (raw → searchable): {pipe_rate:,.0f} events/s"
          + (f" (from the first searchable document: {steady_rate:,.0f}/s)" if not cold else ""))
    print(f"ratio: {pipe_rate / raw_rate:.2f} (target ≥ 0.8)")
    print(f"CPU per event, baseline: {raw_cpu}")
    print(f"CPU per event, pipeline: {pipe_cpu}")
    print(f"ack → searchable delay over {len(delays)} chunks of {per}: "
          f"p50 {statistics.median(delays) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--request", type=int, default=500,
                        help="records per ingest request (1: one raw message per record)")
    parser.add_argument("--warmup", type=int, default=2000,
                        help="records made searchable before the measured backlog")
    parser.add_argument("--cold", action="store_true",
                        help="produce the backlog first, then start the worker")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.chunks, args.request, args.warmup, args.cold))
