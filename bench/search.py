"""Search and live-tail benchmark (run on demand, never in tests).

    python -m bench.search                     # 1 M events, then queries and the tail
    python -m bench.search --events 200000     # a development run
    python -m bench.search --events 10000000   # the 10 M size (about 20 GB of disk, hours here)

1. Index: N events (Loghub lines as messages, 8 services, 24 hosts, weighted levels, a few
   attributes, spread over the last 24 h) for one tenant, written with the index stage's layout
   functions (`app.elastic.esindex`) and the async bulk helper.
2. Search: p50/p95 latency of typical queries through the LaaS API (in-process ASGI: auth,
   parsing, body building, Elasticsearch, shaping) next to the same body sent straight to
   Elasticsearch (built by `app.query.search`), interleaved in the same run; ratio = our overhead.
3. Tail: `laas web` in its own process, `--tails` WebSocket clients here, events published to
   `logs.events` at `--rate` for `--seconds`; delay = socket receive time - publish time
   (the event's observed time is stamped just before the producer's send).
Uses the index prefix `benchsearch-` and deletes it at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from app.accounts import tenancy
from app.db.models import Scope
from app.elastic import esindex
from app.elastic.client import es_client
from app.kafka.client import client_options
from app.kafka.topics import EVENTS, topic_name
from app.pipeline.events import NS, LogEvent, RawPosition
from app.pipeline.parsing import severity_from_text, severity_name
from app.query import search
from app.settings import Settings, load_settings
from web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
LOGHUB = Path("/work/shared/data/loghub")
PREFIX = "benchsearch-"
LEVELS = (("INFO", 70), ("DEBUG", 15), ("WARN", 10), ("ERROR", 4), ("FATAL", 1))
HOSTS = [f"{kind}-{i:02d}" for kind in ("web", "app", "db") for i in range(8)]
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "ap-south-1")
QUERIES: list[tuple[str, str, dict[str, str]]] = [
    # (name, endpoint, parameters)
    ("term + time range (1 h)", "search", {"q": "service:openssh AND level:error", "since": "1h"}),
    ("term + time range (24 h)", "search", {"q": "host:web-03 AND level:>=warn", "since": "24h"}),
    ("free text (24 h)", "search", {"q": "failed", "since": "24h"}),
    ("phrase (24 h)", "search", {"q": '"Failed password"', "since": "24h"}),
    ("histogram (24 h, all)", "histogram", {"q": "", "since": "24h"}),
    ("histogram (24 h, level:>=warn)", "histogram", {"q": "level:>=warn", "since": "24h"}),
]


def loghub_lines() -> dict[str, list[str]]:
    lines = {}
    for path in sorted(LOGHUB.glob("*/*_2k.log")):
        text = path.read_text(errors="replace").splitlines()
        lines[path.parent.name.lower()] = [line for line in text if line.strip()]
    return lines


def synthetic(n: int, tenant_id: str, now_ns: int, seed: int = 7) -> Iterator[LogEvent]:
    """`n` events over the 24 h before `now_ns`, in time order, realistic shapes."""
    rnd = random.Random(seed)
    corpus = loghub_lines()
    services = list(corpus)
    levels = [name for name, weight in LEVELS for _ in range(weight)]
    span = 24 * 3600 * NS
    for i in range(n):
        service = services[i % len(services)] if rnd.random() < 0.5 else rnd.choice(services)
        line = rnd.choice(corpus[service])
        level = rnd.choice(levels)
        number = severity_from_text(level)
        at = now_ns - span + (span * i) // n + rnd.randrange(NS // 1000)
        yield LogEvent(
            tenant_id=tenant_id,
            tenant="bench",
            time=at,
            observed_time=at + rnd.randrange(50_000_000),
            severity=severity_name(number),
            severity_number=number,
            message=line,
            service=service,
            host=rnd.choice(HOSTS),
            raw=RawPosition("logs.raw", i % 4, i // 4),
            attributes={
                "region": rnd.choice(REGIONS),
                "user": f"u{rnd.randrange(5000)}",
                "status": str(rnd.choice((200, 200, 200, 201, 204, 301, 404, 500, 503))),
            },
            template_id=f"{service}-{zlib.crc32(line[-12:].encode()) % 40}",
            format="text",
            source="gateway",
            size=len(line),
        )


async def index_events(
    es: AsyncElasticsearch, settings: Settings, tenant_id: str, n: int, now_ns: int
) -> float:
    """Bulk-index `n` events; returns events per second."""
    await esindex.ensure_template(es, settings)
    alias = esindex.tenant_alias(settings, tenant_id)
    created: set[str] = set()
    queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(8)

    async def writer() -> None:
        while (batch := await queue.get()) is not None:
            await async_bulk(es, batch, chunk_size=5000, max_retries=5, initial_backoff=1)

    writers = [asyncio.create_task(writer()) for _ in range(3)]
    started = time.monotonic()
    batch: list[dict[str, Any]] = []
    for done, ev in enumerate(synthetic(n, tenant_id, now_ns), 1):
        name = esindex.daily_index(settings, ev.tenant_id, ev.time)
        if name not in created:
            await esindex.ensure_index(es, name, alias)
            await es.indices.put_settings(index=name, settings={"refresh_interval": "-1"})
            created.add(name)
        batch.append({"_index": name, "_id": ev.doc_id(), "_source": esindex.document(ev)})
        if len(batch) == 5000:
            await queue.put(batch)
            batch = []
        if done % 100_000 == 0:
            rate = done / (time.monotonic() - started)
            print(f"  indexed {done:,} ({rate:,.0f}/s)", flush=True)
    if batch:
        await queue.put(batch)
    for _ in writers:
        await queue.put(None)
    await asyncio.gather(*writers)
    for name in created:
        await es.indices.put_settings(index=name, settings={"refresh_interval": None})
    await es.indices.refresh(index=alias)
    return n / (time.monotonic() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def direct_body(
    settings: Settings, tenant_id: int, endpoint: str, params: dict[str, str]
) -> dict[str, Any]:
    """The body our API builds for these parameters (built the same way, via app.query.search)."""
    now = time.time_ns()
    if endpoint == "search":
        wanted = search.read_search(params, now_ns=now)
        return search.search_body(settings, tenant_id, wanted, "10s")
    query = search.read_query(params, now_ns=now)
    interval = search.histogram_interval(query.since, query.until, None)
    return search.histogram_body(settings, tenant_id, query, interval)


async def measure_queries(
    settings: Settings, es: AsyncElasticsearch, tenant_id: int, key: str, repeat: int
) -> list[dict[str, Any]]:
    app = create_app(settings)
    rows = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://laas.bench",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as client:
            for name, endpoint, params in QUERIES:
                api: list[float] = []
                direct: list[float] = []
                hits = took = 0
                for i in range(repeat + 3):
                    order = ("api", "direct") if i % 2 else ("direct", "api")
                    for which in order:
                        started = time.perf_counter()
                        if which == "api":
                            response = await client.get(
                                f"/api/v1/{endpoint}", params={**params, "limit": "100"}
                            )
                            assert response.status_code == 200, response.text
                            body = response.json()
                        else:
                            result = await es.search(
                                **direct_body(
                                    settings, tenant_id, endpoint, {**params, "limit": "100"}
                                )
                            )
                            took = result["took"]
                        elapsed = (time.perf_counter() - started) * 1000
                        if i >= 3:  # the first rounds warm caches and connections
                            (api if which == "api" else direct).append(elapsed)
                hits = body["total"]["value"] if endpoint == "search" else body["total"]
                row = {
                    "query": name,
                    "q": params["q"],
                    "hits": hits,
                    "api_p50": percentile(api, 50),
                    "api_p95": percentile(api, 95),
                    "es_p50": percentile(direct, 50),
                    "es_p95": percentile(direct, 95),
                    "es_took_last": took,
                }
                row["ratio_p50"] = row["api_p50"] / row["es_p50"]
                rows.append(row)
                print(
                    f"  {name:<32} api p50 {row['api_p50']:7.1f} ms  es p50 "
                    f"{row['es_p50']:7.1f} ms  ratio {row['ratio_p50']:.2f}  hits {hits}",
                    flush=True,
                )
    return rows


async def create_reader(settings: Settings) -> tuple[int, str]:
    """A tenant and a read key in the benchmark's own user database."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), app.state.sessions.begin() as session:
        tenant = await tenancy.create_tenant(session, "bench")
        _, plain = await tenancy.create_api_key(session, tenant.id, "bench-read", Scope.READ)
    return tenant.id, plain


async def measure_tail(
    settings: Settings,
    env: dict[str, str],
    tenant_id: int,
    key: str,
    tails: int,
    rate: int,
    seconds: float,
    filtered: bool,
) -> dict[str, Any]:
    """Tail delivery delay at a steady publish rate with `tails` connected sockets."""
    from websockets.asyncio.client import connect

    topic = topic_name(settings, EVENTS)
    port = int(env["LAAS_WEB_PORT"])
    web = subprocess.Popen(
        [sys.executable, "-m", "app", "web"],
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as probe:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await probe.get(f"http://127.0.0.1:{port}/healthz")).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("laas web did not start")
                await asyncio.sleep(0.2)
        services = [f"svc{i}" for i in range(10)]
        delays: list[list[float]] = [[] for _ in range(tails)]
        notices = [0] * tails
        dropped = [0] * tails
        sockets = []
        for i in range(tails):
            q = f"service:{services[i % len(services)]}" if filtered else ""
            url = f"ws://127.0.0.1:{port}/api/v1/tail?q={q}"
            sockets.append(
                await connect(
                    url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
                )
            )
        for ws in sockets:
            while json.loads(await ws.recv())["type"] != "ready":
                pass
        stop = asyncio.Event()

        async def reader(i: int) -> None:
            ws = sockets[i]
            while True:
                try:
                    raw = await ws.recv()
                except Exception:  # noqa: BLE001 - closed at the end
                    return
                now = time.time_ns()
                message = json.loads(raw)
                if message["type"] == "event":
                    sent = message["event"]["observed_time"]
                    delays[i].append((now - parse_ns(sent)) / 1e6)
                elif message["type"] == "notice":
                    notices[i] += 1
                    dropped[i] += int(message["dropped"])

        readers = [asyncio.create_task(reader(i)) for i in range(tails)]
        producer = AIOKafkaProducer(**client_options(settings), linger_ms=2)
        await producer.start()
        published = 0
        started = time.monotonic()
        tick = 0.01
        per_tick = max(1, int(rate * tick))
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * rate) + per_tick
                while published < due:
                    now = time.time_ns()
                    i = published
                    service = services[i % len(services)]
                    ev = LogEvent(
                        tenant_id=str(tenant_id),
                        tenant="bench",
                        time=now,
                        observed_time=now,
                        severity="INFO",
                        severity_number=9,
                        message=f"tail bench event {i} user=u{i % 97}",
                        service=service,
                        host=HOSTS[i % len(HOSTS)],
                        raw=RawPosition("logs.raw", 0, i),
                    )
                    await producer.send(topic, ev.to_json(), key=ev.source_key.encode())
                    published += 1
                await asyncio.sleep(max(0.0, started + published / rate - time.monotonic()))
            await producer.flush()
            send_seconds = time.monotonic() - started
            await asyncio.sleep(3)  # let the last events arrive
        finally:
            stop.set()
            await producer.stop()
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers)
        expected_per_tail = published / len(services) if filtered else published
        every = [d for per in delays for d in per]
        received = sum(len(per) for per in delays)
        return {
            "tails": tails,
            "rate_target": rate,
            "rate_achieved": published / send_seconds,
            "seconds": send_seconds,
            "published": published,
            "filtered": filtered,
            "expected": int(expected_per_tail * tails),
            "received": received,
            "dropped": sum(dropped),
            "notices": sum(notices),
            "p50": percentile(every, 50) if every else None,
            "p99": percentile(every, 99) if every else None,
            "max": max(every) if every else None,
        }
    finally:
        web.terminate()
        web.wait(timeout=30)


def parse_ns(iso: str) -> int:
    from datetime import datetime

    head, frac = iso.rstrip("Z").split(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return int(seconds) * NS + int(frac.ljust(9, "0"))


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} vCPU ({cpu}), {mem} GB RAM, Python {platform.python_version()}"


async def main(args: argparse.Namespace) -> None:
    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="laas-bench-search-"))
    db = f"sqlite+aiosqlite:///{tmp / 'users.db'}"
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    env = {
        "LAAS_DATABASE_URL": db,
        "LAAS_STATE_DIR": str(tmp / "state"),
        "LAAS_SECRET_KEY": secret,
        "LAAS_INDEX_PREFIX": PREFIX,
        "LAAS_TOPIC_PREFIX": f"benchsearch{run}.",
        "LAAS_WEB_PORT": str(args.port),
        "LAAS_TAIL_HEARTBEAT_SECONDS": "30",
    }
    settings = load_settings(
        database_url=db,
        state_dir=tmp / "state",
        secret_key=secret,
        index_prefix=PREFIX,
        topic_prefix=f"benchsearch{run}.",
        web_port=args.port,
    )
    es = es_client(settings, request_timeout=120)
    nodes = (await es.nodes.info())["nodes"]
    results: dict[str, Any] = {
        "machine": machine(),
        "es": next(iter(nodes.values()))["version"],
        "events": args.events,
    }
    try:
        tenant_id, key = await create_reader(settings)
        if not args.skip_search:
            print(f"indexing {args.events:,} events ...", flush=True)
            results["index_rate"] = await index_events(
                es, settings, str(tenant_id), args.events, time.time_ns()
            )
            stats = await es.indices.stats(index=esindex.tenant_alias(settings, tenant_id))
            results["index_bytes"] = stats["_all"]["primaries"]["store"]["size_in_bytes"]
            print("queries ...", flush=True)
            results["queries"] = await measure_queries(settings, es, tenant_id, key, args.repeat)
        if not args.skip_tail:
            admin = AIOKafkaAdminClient(**client_options(settings))
            await admin.start()
            await admin.create_topics([NewTopic(topic_name(settings, EVENTS), 4, 1)])
            await admin.close()
            results["tail"] = []
            for filtered in (True, False):
                rate = args.rate if filtered else args.unfiltered_rate
                print(f"tail: {args.tails} sockets, {rate}/s, filtered={filtered} ...", flush=True)
                row = await measure_tail(
                    settings, env, tenant_id, key, args.tails, rate, args.seconds, filtered
                )
                print(f"  {row}", flush=True)
                results["tail"].append(row)
    finally:
        if not args.keep:
            await es.indices.delete(index=f"{PREFIX}*", allow_no_indices=True)
            await es.options(ignore_status=404).indices.delete_index_template(
                name=esindex.template_name(settings)
            )
            admin = AIOKafkaAdminClient(**client_options(settings))
            await admin.start()
            try:
                await admin.delete_topics([topic_name(settings, EVENTS)])
            except Exception:  # noqa: BLE001 - the topic may not exist
                pass
            await admin.close()
        await es.close()
    out = Path(args.json_out)
    out.write_text(json.dumps(results, indent=2))
    print(f"results in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="Timed runs per query")
    parser.add_argument("--tails", type=int, default=50)
    parser.add_argument("--rate", type=int, default=5000, help="Published events/s (filtered)")
    parser.add_argument(
        "--unfiltered-rate",
        type=int,
        default=500,
        help="Published events/s when every tail receives every event",
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=18089)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-tail", action="store_true")
    parser.add_argument("--keep", action="store_true", help="Keep the benchmark indices")
    parser.add_argument("--json-out", default=str(ROOT / "bench" / "results" / "search.json"))
    asyncio.run(main(parser.parse_args()))
