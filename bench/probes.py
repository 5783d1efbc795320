"""Latency probes and the same-run baselines they are compared with.

- `Probe`: one record every `interval` s through the gateway for a probe tenant; its ack time,
  the time it is first found by a search (ack → searchable) and the time a connected
  `/api/v1/tail` socket receives it (ack → tail).
- `raw_kafka_delay`: aiokafka producer ack → aiokafka consumer receipt (the tail's floor).
- `raw_es_searchable`: a document written straight to Elasticsearch → found by a search.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from app.elastic.client import es_client
from bench.harness import Deployment, batch_bytes, make_record


class Probe:
    """ack → searchable and ack → tail of single probe records, while other load runs."""

    def __init__(self, dep: Deployment, tenant: tuple[int, str, str], interval: float = 0.25,
                 tail: bool = True) -> None:
        from bench.harness import Pusher

        self.dep = dep
        self.tenant_id, ingest, self.read_key = tenant
        self.pusher = Pusher(dep.ports["gateway"], ingest, f"probe{dep.run}", batch=1,
                             inflight=1)
        self.interval = interval
        self.use_tail = tail
        self.acked: dict[int, float] = {}
        self.searchable: dict[int, float] = {}
        self.tailed: dict[int, float] = {}
        self.tail_reconnects = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.es = es_client(dep.settings, request_timeout=10)
        self.settings = dep.settings

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._search())]
        if self.use_tail:
            self._tasks.append(asyncio.create_task(self._tail()))

    async def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (
                len(self.searchable) < len(self.acked)
                or (self.use_tail and len(self.tailed) < len(self.acked))):
            await asyncio.sleep(0.2)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pusher.close()
        await self.es.close()

    def window(self, since: float, until: float) -> tuple[list[float], list[float]]:
        """ack→searchable and ack→tail delays (ms) of probes acked in [since, until)."""
        seqs = [s for s, t in self.acked.items() if since <= t < until]
        search = [(self.searchable[s] - self.acked[s]) * 1000 for s in seqs
                  if s in self.searchable]
        tails = [(self.tailed[s] - self.acked[s]) * 1000 for s in seqs if s in self.tailed]
        return search, tails

    async def _send(self) -> None:
        seq = 0
        while not self._stop.is_set():
            body = batch_bytes([make_record(self.pusher.tag, seq)])
            await self.pusher.push(body, 1)
            self.acked[seq] = time.monotonic()
            seq += 1
            await asyncio.sleep(self.interval)

    async def _search(self) -> None:
        while True:
            pending = [s for s in self.acked if s not in self.searchable]
            if pending:
                try:
                    found = await self.es.search(**esindex.tenant_search(
                        self.settings, self.tenant_id,
                        {"terms": {"attributes.seq": [str(s) for s in pending[-500:]]}},
                        size=len(pending), source_includes=["attributes.seq"]))
                    now = time.monotonic()
                    for hit in found["hits"]["hits"]:
                        seq = int(hit["_source"]["attributes"]["seq"])
                        self.searchable.setdefault(seq, now)
                except Exception:  # noqa: BLE001 - ES busy or down in a fault row
                    pass
            await asyncio.sleep(0.1)

    async def _tail(self) -> None:
        from websockets.asyncio.client import connect

        url = f"ws://127.0.0.1:{self.dep.ports['web']}/api/v1/tail"
        while True:
            try:
                async with connect(url, additional_headers={
                        "Authorization": f"Bearer {self.read_key}"}, max_size=None) as ws:
                    async for raw in ws:
                        now = time.monotonic()
                        message = json.loads(raw)
                        if message.get("type") == "event":
                            attrs = message["event"].get("attributes") or {}
                            if "seq" in attrs:
                                self.tailed.setdefault(int(attrs["seq"]), now)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - web restarting: reconnect like a client
                pass
            self.tail_reconnects += 1
            await asyncio.sleep(0.5)


async def raw_kafka_delay(servers: str, seconds: float, interval: float = 0.1) -> list[float]:
    """aiokafka: producer ack → consumer receipt, ms, one record every `interval` s."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"benchraw{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    acked: dict[bytes, float] = {}
    delays: list[float] = []

    async def read() -> None:
        async for msg in consumer:
            now = time.monotonic()
            if msg.value in acked:
                delays.append((now - acked[msg.value]) * 1000)

    reader = asyncio.create_task(read())
    try:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            value = str(i).encode()
            await producer.send_and_wait(topic, value)
            acked[value] = time.monotonic()
            i += 1
            await asyncio.sleep(interval)
        await asyncio.sleep(1)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return delays


async def raw_es_searchable(es_url: str, seconds: float, interval: float = 0.25) -> list[float]:
    """A document indexed straight into Elasticsearch (1 s refresh) → first found, ms."""
    es = AsyncElasticsearch(es_url, request_timeout=30)
    index = f"benchraw{uuid.uuid4().hex[:6]}"
    await es.indices.create(index=index, settings={"refresh_interval": "1s",
                                                   "number_of_replicas": 0})
    delays: list[float] = []
    try:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            await es.index(index=index, id=str(i), document={"n": i, "m": "probe"})
            acked = time.monotonic()
            while not (await es.search(index=index, query={"term": {"n": i}}))["hits"]["hits"]:
                await asyncio.sleep(0.02)
            delays.append((time.monotonic() - acked) * 1000)
            i += 1
            await asyncio.sleep(interval)
    finally:
        await es.indices.delete(index=index)
        await es.close()
    return delays


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
            "p99": pct(values, 99), "max": max(values) if values else float("nan")}


async def raw_bulk_rate(es_url: str, values: list[bytes]) -> float:
    """Events/s of the async bulk helper writing normalized `values` straight into ES.

    The method of `bench/pipeline.py`'s baseline (its record headers, the index template, the
    worker's batch size), then one refresh so the documents are searchable. The index is
    created before timing (the pipeline's is, too, before the bench's steps).
    """
    from elasticsearch.helpers import async_bulk

    from app.pipeline.normalize import RawMessage, normalize
    from app.settings import load_settings
    from bench.pipeline import BENCH_STAMPS, HEADERS, signed

    base = load_settings(index_prefix=f"benchbulk{uuid.uuid4().hex[:6]}-")
    es = AsyncElasticsearch(es_url, request_timeout=120)
    try:
        await esindex.ensure_template(es, base)
        events = [normalize(RawMessage("raw", 0, i, 0, None, v, dict(signed(None, v, HEADERS))),
                            now_ns=time.time_ns(), stamps=BENCH_STAMPS).events[0]
                  for i, v in enumerate(values)]
        actions = [{"_index": esindex.daily_index(base, "1", e.time), "_id": e.doc_id(),
                    "_source": esindex.document(e)} for e in events]
        for index in sorted({str(a["_index"]) for a in actions}):  # exists before the clock
            await es.indices.create(index=index)  # starts, as the pipeline's index does
        started = time.monotonic()
        await async_bulk(es, actions, chunk_size=base.es_batch_size)
        await es.indices.refresh(index=f"{base.index_prefix}*")
        return len(values) / (time.monotonic() - started)
    finally:
        await es.indices.delete(index=f"{base.index_prefix}*", allow_no_indices=True)
        await es.options(ignore_status=404).indices.delete_index_template(
            name=esindex.template_name(base))
        await es.close()
