"""Stage `index`: `logs.events` → Elasticsearch, offsets committed only after ES accepted.

Not a Faust agent on purpose (docs/stream.md, "Commit semantics"): Faust commits what its
streams acked, and `Stream.take()` acks a buffer in a `finally` — also when the bulk failed or
the task was cancelled — and records a commit as done even when it failed (#316). The sink
therefore runs its own aiokafka consumer (group `{app_id}-index`) inside the worker: batch by
count, bytes and time, write, dead-letter permanent rejections (waiting for Kafka's ack), and
only then commit the batch's offsets. While Elasticsearch is down the consumer's partitions
are paused and it keeps polling (so it stays in the group): nothing is dropped, nothing is
read ahead beyond one batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from elasticsearch import AsyncElasticsearch
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.elastic.client import es_client  # noqa: F401 - re-exported for the other stages
from app.elastic.esindex import TenantIndexing
from app.elastic.known_tenants import KnownTenants, tenant_indexing
from app.elastic.sink import ElasticsearchSink
from app.kafka.client import client_options
from app.kafka.stamp import EVENTS as EVENTS_KIND
from app.kafka.stamp import Stamps
from app.kafka.topics import DEADLETTER, EVENTS, topic_name
from app.pipeline.event_messages import decode
from app.pipeline.events import DeadLetter, LogEvent, RawPosition
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)


def index_group(settings: Settings) -> str:
    return f"{settings.app_id}-index"


class IndexConsumer:
    """The sink loop; `run()` until cancelled."""

    def __init__(self, settings: Settings, *, es: AsyncElasticsearch | None = None) -> None:
        self.settings = settings
        self.topic = topic_name(settings, EVENTS)
        self.dead_topic = topic_name(settings, DEADLETTER)
        self.es = es or es_client(settings)
        self.sink = ElasticsearchSink(self.es, settings)
        self.stamps = Stamps.from_settings(settings)
        self._engine: AsyncEngine | None = None
        self.tenants = KnownTenants(self._tenant_indexing)
        self.consumer = AIOKafkaConsumer(
            self.topic, **client_options(settings), group_id=index_group(settings),
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=settings.es_batch_size, max_poll_interval_ms=300_000,
            session_timeout_ms=int(settings.worker_session_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.worker_session_timeout / 5) * 1000),
            isolation_level="read_committed",
        )
        self.producer = AIOKafkaProducer(**client_options(settings), acks="all",
                                         enable_idempotence=True, linger_ms=5)
        self._carry: list[ConsumerRecord] = []

    async def run(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        try:
            await self.sink.setup(self._idle)
            while True:
                batch = await self._collect()
                if batch:
                    await self._process(batch)
        finally:
            await asyncio.shield(self._close())

    async def _tenant_indexing(self) -> dict[str, TenantIndexing]:
        if self._engine is None:
            self._engine = create_engine(self.settings)
        return await tenant_indexing(self._engine, self.settings.retention_default_days)

    async def _unknown_tenants(self, events: list[LogEvent]) -> set[str]:
        """Tenants of `events` the user database does not know; waits (partitions paused)
        while the database is unreachable: an event is never indexed or dropped unchecked."""
        delay = 0.5
        newest: dict[str, int] = {}
        for event in events:
            if event.observed_time > newest.get(event.tenant_id, 0):
                newest[event.tenant_id] = event.observed_time
        while True:
            try:
                unknown = await self.tenants.unknown(newest.keys(), newest)
                self.sink.set_layout(self.tenants.layout)
                return unknown
            except Exception as exc:  # noqa: BLE001 - retried: backpressure, not a crash
                log.warning("index: tenant check failed, user database unreachable (%r); "
                            "retry in %.1fs", exc, delay)
                await self._idle()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        for stop in (self.consumer.stop, self.producer.stop, self.es.close):
            try:
                await asyncio.wait_for(stop(), 10)
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.debug("index consumer close: %r", exc)

    async def _collect(self) -> list[ConsumerRecord]:
        """Up to `es_batch_size` records / `es_batch_bytes` bytes, waiting at most the linger
        time once the first record is in."""
        batch, self._carry = self._carry, []
        size = sum(len(r.value or b"") for r in batch)
        deadline: float | None = time.monotonic() + self.settings.es_linger if batch else None
        while len(batch) < self.settings.es_batch_size and size < self.settings.es_batch_bytes:
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            fetched = await self.consumer.getmany(
                timeout_ms=int(wait * 1000),
                max_records=self.settings.es_batch_size - len(batch))
            for records in fetched.values():
                for record in records:
                    batch.append(record)
                    size += len(record.value or b"")
            if batch and deadline is None:
                deadline = time.monotonic() + self.settings.es_linger
            if deadline is None:
                return []
        return batch

    async def _idle(self) -> None:
        """Between retries: keep polling (group membership) with every partition paused."""
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)
        fetched = await self.consumer.getmany(timeout_ms=0)
        for records in fetched.values():  # assigned during a rebalance before the pause
            self._carry.extend(records)

    async def _process(self, batch: list[ConsumerRecord]) -> None:
        events: list[LogEvent] = []
        dead: list[DeadLetter] = []
        for record in batch:
            if not self.stamps.valid_message(record, kind=EVENTS_KIND):
                dead.append(DeadLetter("unsigned_event", "a logs.events message not signed by "
                                       "LaaS (app/kafka/stamp.py): not indexed", "index",
                                       RawPosition(record.topic, record.partition, record.offset),
                                       record.value or b"", record.key, time=time.time_ns()))
                continue
            try:
                events.extend(decode(record.value or b""))
            except (ValueError, TypeError, KeyError) as exc:
                dead.append(DeadLetter("undecodable_event", f"not LogEvent JSON: {exc!r}",
                                       "index",
                                       RawPosition(record.topic, record.partition, record.offset),
                                       record.value or b"", record.key, time=time.time_ns()))
        METRICS.inc("laas_events_in_total", len(events), stage="index")
        unknown = await self._unknown_tenants(events) if events else set()
        if unknown:
            log.warning("index: events of tenants %s, which do not exist, dead-lettered",
                        sorted(unknown))
            dead += [DeadLetter("unknown_tenant", f"tenant {event.tenant_id!r} does not exist: "
                                "no index is made for it", "index", event.raw, event.to_json(),
                                event.source_key.encode(), tenant_id=event.tenant_id,
                                time=time.time_ns())
                     for event in events if event.tenant_id in unknown]
            events = [event for event in events if event.tenant_id not in unknown]
        for rejection in await self.sink.write(events, self._idle):
            event = rejection.event
            log.warning("Elasticsearch rejected %s (tenant %s): %s %s", event.doc_id(),
                        event.tenant_id, rejection.error_type, rejection.reason)
            dead.append(DeadLetter("index_rejected",
                                   f"HTTP {rejection.status} {rejection.error_type}: "
                                   f"{rejection.reason}", "index", event.raw,
                                   event.to_json(), event.source_key.encode(),
                                   tenant_id=event.tenant_id, time=time.time_ns()))
        await self._dead_letter(dead)
        await self._commit(batch)

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        delay = 0.5
        while True:
            try:
                futures = [await self.producer.send(self.dead_topic, d.to_json(), key=d.key,
                                                    headers=d.kafka_headers()) for d in dead]
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:
                log.warning("dead letters not acknowledged (%r); retry in %.1fs", exc, delay)
                await self._idle()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
        for d in dead:
            METRICS.inc("laas_deadletters_total", stage="index", reason=d.reason)
        METRICS.inc("laas_events_out_total", len(dead), stage="index", topic=self.dead_topic)

    async def _commit(self, batch: list[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        assigned = self.consumer.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in assigned}
        if mine:
            try:
                await self.consumer.commit(mine)
            except KafkaError as exc:
                # Partitions moved during the batch: their new owner redoes it from the last
                # commit; the documents have the same _id, so this costs time, not duplicates.
                log.warning("commit of %s failed after a rebalance: %r", mine, exc)
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)
        for tp in assigned:
            end = self.consumer.highwater(tp)
            position = offsets.get(tp)
            if end is not None and position is not None:
                METRICS.set("laas_consumer_lag", max(end - position, 0),
                            group=index_group(self.settings), topic=tp.topic,
                            partition=tp.partition)


def register(app: faust.App, settings: Settings) -> Any:
    """Run the index consumer with every worker (they share its consumer group): in a child
    process (agents/index_process.py) or, with `index_sink_process` off, as a task here."""
    from agents.children import supervise
    from agents.index_process import index_main, run_consumer

    @app.task
    async def index_sink() -> None:
        if settings.index_sink_process:
            await supervise("index", index_main, settings)
        else:
            await run_consumer(settings)

    return index_sink
