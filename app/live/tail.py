"""The live tail hub: one `logs.events` reader per web process, fanned out to every tail socket.

The hub's consumer joins no consumer group (it assigns itself every partition), so it never
takes partitions from the workers. Each subscription has a bounded queue; when a client is too
slow its queue fills and further events are counted as dropped (the socket reports the count)
instead of slowing the hub, other sockets or the pipeline. The hub keeps the last
`tail_ring_seconds` of events per tenant so a tail that starts with history from search can
bridge the indexing delay without a gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from app.kafka import stamp
from app.kafka.client import client_options
from app.kafka.topics import EVENTS, topic_name
from app.live.reader import TopicReader, topic_partitions
from app.pipeline.event_messages import decode
from app.pipeline.events import NS, LogEvent
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

Predicate = Callable[[dict[str, object]], bool]


def fields_of(event: LogEvent) -> dict[str, object]:
    """The flat field view a query predicate evaluates (`app.query.match`)."""
    return event.__dict__


class Delivery:
    """An event on its way to tail sockets; its JSON text is built once, by the first sender."""

    __slots__ = ("event", "_text")

    def __init__(self, event: LogEvent) -> None:
        self.event = event
        self._text: str | None = None

    def text(self, encode: Callable[[LogEvent], str]) -> str:
        if self._text is None:
            self._text = encode(self.event)
        return self._text


@dataclass(eq=False)
class Subscription:
    """One tail socket: its tenant, its filter, and a bounded queue of matching events."""

    tenant_id: str
    predicate: Predicate
    queue: asyncio.Queue[Delivery]
    dropped: int = 0

    def offer(self, delivery: Delivery) -> None:
        """Queue the event if it matches; never blocks (a full queue counts a drop)."""
        if not self.predicate(fields_of(delivery.event)):
            return
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.dropped += 1
            METRICS.inc("laas_tail_dropped_total")

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


@dataclass
class Ring:
    """Recent events of one tenant, bounded by age and count."""

    seconds: float
    limit: int
    events: deque[LogEvent] = field(default_factory=deque)

    def add(self, event: LogEvent, now_ns: int) -> None:
        if self.limit == 0:
            return
        self.events.append(event)
        horizon = now_ns - int(self.seconds * NS)
        while self.events and (
            len(self.events) > self.limit or self.events[0].observed_time < horizon
        ):
            self.events.popleft()


class TailHub(TopicReader):
    """Reads `logs.events` once for the process and fans events out to subscriptions."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, topic_name(settings, EVENTS))
        self.subscriptions: dict[str, set[Subscription]] = {}
        self.rings: dict[str, Ring] = {}

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, tenant_id: str, predicate: Predicate) -> Subscription:
        self.start()
        sub = Subscription(tenant_id, predicate, asyncio.Queue(self.settings.tail_queue_size))
        self.subscriptions.setdefault(tenant_id, set()).add(sub)
        METRICS.inc("laas_tail_sockets")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self.subscriptions.get(sub.tenant_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            METRICS.inc("laas_tail_sockets", -1)
            if not subs:
                del self.subscriptions[sub.tenant_id]

    def recent(self, tenant_id: str) -> list[LogEvent]:
        """The tenant's events read in the last `tail_ring_seconds`, in arrival order."""
        ring = self.rings.get(tenant_id)
        return list(ring.events) if ring else []

    def dispatch(self, event: LogEvent, *, live: bool = True) -> None:
        """Remember the event; hand it to the tenant's matching subscriptions if `live`."""
        ring = self.rings.get(event.tenant_id)
        if ring is None:
            ring = self.rings[event.tenant_id] = Ring(
                self.settings.tail_ring_seconds, self.settings.tail_ring_max
            )
        ring.add(event, time.time_ns())
        subs = self.subscriptions.get(event.tenant_id)
        if not live or not subs:
            return
        delivery = Delivery(event)
        for sub in subs:
            sub.offer(delivery)

    # -- the consumer ---------------------------------------------------------------------
    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            partitions = await topic_partitions(self.settings, self.topic)
            consumer.assign(partitions)
            if self.positions:  # a restart after an error: go on where we stopped, all live
                for tp in partitions:
                    consumer.seek(tp, self.positions.get(tp, 0))
                live_from = dict(self.positions)
            else:
                live_from = await self._seek_recent(consumer, partitions)
            while True:
                if not self.ready.is_set() and all(
                    self.positions.get(tp, 0) >= live_from.get(tp, 0) for tp in partitions
                ):
                    self.ready.set()  # the ring holds the recent past: tails may start
                batches = await consumer.getmany(timeout_ms=100, max_records=2000)
                for tp, records in batches.items():
                    for record in records:
                        self._handle(record, live=record.offset >= live_from.get(tp, 0))
                        self.positions[tp] = record.offset + 1
        finally:
            await consumer.stop()

    def _handle(self, record: ConsumerRecord[bytes, bytes], *, live: bool) -> None:
        if record.value is None:
            return
        if not self.stamps.valid_message(record, kind=stamp.EVENTS):
            log.warning("tail: skipping an event message not signed by LaaS at %s/%d/%d",
                        record.topic, record.partition, record.offset)
            return
        try:
            events = decode(record.value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "tail: skipping undecodable event at %s/%d/%d: %r",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return
        for event in events:
            self.dispatch(event, live=live)

    async def _seek_recent(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Start `tail_ring_seconds` back so the ring covers the indexing delay from the start;
        returns each partition's end offset, where live delivery begins."""
        since_ms = int((time.time() - self.settings.tail_ring_seconds) * 1000)
        offsets = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            found = offsets.get(tp)
            start = found.offset if found is not None else ends[tp]
            consumer.seek(tp, start)
            self.positions[tp] = start
        return ends
