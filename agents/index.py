"""Stage `index`: `logs.events` → Elasticsearch, offsets committed only after ES accepted.

Not a Faust agent on purpose (docs/stream.md, "Commit semantics"): Faust commits what its
streams acked, and `Stream.take()` acks a buffer in a `finally` — also when the bulk failed or
the task was cancelled — and records a commit as done even when it failed (#316). The stage
therefore runs its own aiokafka consumer (group `{app_id}-index`): a loop that collects a batch
(count, bytes, time), decodes it, drops the events of unknown tenants, hands the rest to the
sink (app/elastic/sink.py) until every one is accepted or rejected, dead-letters what failed
(waiting for Kafka's ack), and only then commits the batch's offsets and reports the lag — one
small function each. When the sink signals backpressure (or the user database or Kafka fails)
the consumer's partitions are paused and it keeps polling (so it stays in the group) until the
retry: nothing is dropped, nothing is read ahead beyond one batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from agents.resources import Resources
from app.elastic.known_tenants import KnownTenants
from app.elastic.sink import BACKPRESSURE, ElasticsearchSink, Rejection
from app.kafka.client import client_options
from app.kafka.stamp import EVENTS as EVENTS_KIND
from app.kafka.stamp import Stamps
from app.kafka.topics import DEADLETTER, EVENTS, Topics, topic_name
from app.pipeline.event_messages import decode
from app.pipeline.events import DeadLetter, LogEvent, RawPosition
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
RESTART_DELAY = 5.0


def index_group(settings: Settings) -> str:
    return f"{settings.app_id}-index"


# -- the pure steps ----------------------------------------------------------------------------

def _letter(reason: str, detail: str, record: ConsumerRecord) -> DeadLetter:
    return DeadLetter(reason, detail, "index",
                      RawPosition(record.topic, record.partition, record.offset),
                      record.value or b"", record.key, time=time.time_ns())


def decode_batch(records: list[ConsumerRecord], stamps: Stamps
                 ) -> tuple[list[LogEvent], list[DeadLetter]]:
    """The events of `records`, and dead letters for the messages that are not LaaS's
    (unsigned) or not events (undecodable)."""
    events: list[LogEvent] = []
    dead: list[DeadLetter] = []
    for record in records:
        if not stamps.valid_message(record, kind=EVENTS_KIND):
            dead.append(_letter("unsigned_event", "a logs.events message not signed by LaaS "
                                "(app/kafka/stamp.py): not indexed", record))
            continue
        try:
            events.extend(decode(record.value or b""))
        except (ValueError, TypeError, KeyError) as exc:
            dead.append(_letter("undecodable_event", f"not LogEvent JSON: {exc!r}", record))
    return events, dead


def newest_observed(events: list[LogEvent]) -> dict[str, int]:
    """The latest observed time of each tenant's events."""
    newest: dict[str, int] = {}
    for event in events:
        if event.observed_time > newest.get(event.tenant_id, 0):
            newest[event.tenant_id] = event.observed_time
    return newest


def unknown_tenant_letter(event: LogEvent) -> DeadLetter:
    return DeadLetter("unknown_tenant", f"tenant {event.tenant_id!r} does not exist: no index "
                      "is made for it", "index", event.raw, event.to_json(),
                      event.source_key.encode(), tenant_id=event.tenant_id, time=time.time_ns())


def rejection_letter(rejection: Rejection) -> DeadLetter:
    event = rejection.event
    return DeadLetter("index_rejected",
                      f"HTTP {rejection.status} {rejection.error_type}: {rejection.reason}",
                      "index", event.raw, event.to_json(), event.source_key.encode(),
                      tenant_id=event.tenant_id, time=time.time_ns())


def next_offsets(records: list[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The offset to commit per partition: one past the last record of the batch."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


# -- the loop ----------------------------------------------------------------------------------

class IndexConsumer:
    """The index stage's consumer loop; `run()` until cancelled."""

    def __init__(self, resources: Resources) -> None:
        settings = self.settings = resources.settings
        self.resources = resources
        self.topic = topic_name(settings, EVENTS)
        self.dead_topic = topic_name(settings, DEADLETTER)
        self.sink = ElasticsearchSink(resources.es, settings)
        self.stamps = Stamps.from_settings(settings)
        self.tenants = KnownTenants(resources.tenants.indexing)
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
            await self._until_accepted(self.sink.setup, "Elasticsearch setup")
            while True:
                batch = await self._collect()
                if batch:
                    await self._process(batch)
        finally:
            await asyncio.shield(self._close())

    async def _process(self, batch: list[ConsumerRecord]) -> None:
        events, dead = decode_batch(batch, self.stamps)
        METRICS.inc("laas_events_in_total", len(events), stage="index")
        events, unknown = await self._known_tenants(events)
        dead += unknown
        self.sink.add(events)
        flushed = await self._until_accepted(self.sink.flush, "bulk")
        for rejection in flushed.rejected:
            log.warning("Elasticsearch rejected %s (tenant %s): %s %s",
                        rejection.event.doc_id(), rejection.event.tenant_id,
                        rejection.error_type, rejection.reason)
        dead += [rejection_letter(rejection) for rejection in flushed.rejected]
        await self._dead_letter(dead)
        offsets = next_offsets(batch)
        await self._commit(offsets)
        self._report_lag(offsets)

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

    async def _known_tenants(self, events: list[LogEvent]
                             ) -> tuple[list[LogEvent], list[DeadLetter]]:
        """`events` of tenants the user database knows, and dead letters for the others;
        waits (partitions paused) while the database is unreachable: an event is never indexed
        or dropped unchecked."""
        if not events:
            return events, []
        newest = newest_observed(events)
        unknown = await self._paused_retry(lambda: self.tenants.unknown(newest.keys(), newest),
                                           "index: tenant check (user database)")
        self.sink.set_layout(self.tenants.layout)
        if not unknown:
            return events, []
        log.warning("index: events of tenants %s, which do not exist, dead-lettered",
                    sorted(unknown))
        return ([event for event in events if event.tenant_id not in unknown],
                [unknown_tenant_letter(event) for event in events if event.tenant_id in unknown])

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        """Send `dead` to `logs.deadletter` and wait for Kafka's ack (retried while paused)."""
        if not dead:
            return

        async def send() -> None:
            futures = [await self.producer.send(self.dead_topic, d.to_json(), key=d.key,
                                                headers=d.kafka_headers()) for d in dead]
            await asyncio.gather(*futures)

        await self._paused_retry(send, "index: dead letters", retry_on=KafkaError)
        for d in dead:
            METRICS.inc("laas_deadletters_total", stage="index", reason=d.reason)
        METRICS.inc("laas_events_out_total", len(dead), stage="index", topic=self.dead_topic)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the offsets of the partitions still ours; resume what was paused."""
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

    def _report_lag(self, offsets: dict[TopicPartition, int]) -> None:
        """`laas_consumer_lag` of the partitions this batch moved."""
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            position = offsets.get(tp)
            if end is not None and position is not None:
                METRICS.set("laas_consumer_lag", max(end - position, 0),
                            group=index_group(self.settings), topic=tp.topic,
                            partition=tp.partition)

    # -- waiting with the partitions paused ----------------------------------------------------

    async def _until_accepted(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """`call()` (the sink's setup or flush) again each time Elasticsearch pushes back,
        after its retry-after, the partitions paused meanwhile."""
        return await self.resources.retry(call, f"index: {what}", policy=BACKPRESSURE,
                                          sleep=self._paused)

    async def _paused_retry(self, call: Callable[[], Awaitable[T]], what: str,
                            retry_on: type[BaseException] = Exception) -> T:
        """`call()` until it succeeds, with the process's backoff, the partitions paused."""
        policy = dataclasses.replace(self.resources.retry_policy, retry_on=retry_on)
        return await self.resources.retry(call, what, policy=policy, sleep=self._paused)

    async def _paused(self, seconds: float) -> None:
        """Wait `seconds` with every partition paused, polling (group membership)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await self._idle()
            await asyncio.sleep(min(left, 1.0))

    async def _idle(self) -> None:
        """Keep polling (group membership) with every partition paused."""
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)
        fetched = await self.consumer.getmany(timeout_ms=0)
        for records in fetched.values():  # assigned during a rebalance before the pause
            self._carry.extend(records)

    async def _close(self) -> None:
        for stop in (self.consumer.stop, self.producer.stop):
            try:
                await asyncio.wait_for(stop(), 10)
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.debug("index consumer close: %r", exc)


async def run_consumer(resources: Resources) -> None:
    """`IndexConsumer.run` forever, restarted with a fresh consumer after a failure."""
    while True:
        try:
            await IndexConsumer(resources).run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - restart with a fresh consumer, never die
            log.exception("index consumer failed; restarting in %.0fs (uncommitted records "
                          "are read again)", RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)


def register(app: faust.App, topics: Topics, resources: Resources) -> Any:
    """Run the index consumer as a task of this process (with `index_sink_process` the worker
    runs it in a child instead: agents/index_process.py)."""

    @app.task
    async def index_sink() -> None:
        await run_consumer(resources)

    return index_sink
