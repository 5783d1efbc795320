"""The live tail hub: one `logs.events` reader per web process, fanned out to every tail socket.

The hub's consumer joins no consumer group (it assigns itself every partition), so it never
takes partitions from the workers. Each subscription has a bounded queue; when a client is too
slow its queue fills and further events are counted as dropped (the socket reports the count)
instead of slowing the hub, other sockets or the pipeline. The hub keeps the last
`tail_ring_seconds` of messages per tenant (by their `laas-tenants` header; at most
`tail_ring_bytes`) so a tail that starts with history from search can bridge the indexing
delay without a gap. It decodes a message only when one of its tenants has a tail open or a
new tail asks for the recent past: the hub's cost is then reading Kafka, not decoding every
event of every tenant.
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
from app.kafka.headers import H_TENANTS
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


class Message:
    """A `logs.events` message as read, decoded (and its signature checked) on first need:
    the hub reads every tenant's events but decodes only those someone tails or asks for."""

    __slots__ = ("read_ns", "record", "_events")

    def __init__(self, record: ConsumerRecord[bytes, bytes], read_ns: int) -> None:
        self.read_ns = read_ns
        self.record = record
        self._events: list[LogEvent] | None = None

    def events(self, stamps: stamp.Stamps) -> list[LogEvent]:
        """The message's events; none (and a warning, once) if LaaS did not sign it or it is
        not events JSON."""
        if self._events is None:
            self._events = []
            record = self.record
            where = f"{record.topic}/{record.partition}/{record.offset}"
            if not stamps.valid_message(record, kind=stamp.EVENTS):
                log.warning("tail: skipping an event message not signed by LaaS at %s", where)
            else:
                try:
                    self._events = decode(record.value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("tail: skipping undecodable event at %s: %r", where, exc)
        return self._events


def tenants_of(record: ConsumerRecord[bytes, bytes]) -> list[str] | None:
    """The tenants of a `logs.events` message: its `laas-tenants` header, else its key's
    (`tenant/service/host`, as older workers wrote); None when neither says."""
    for name, value in record.headers or ():
        if name.lower() == H_TENANTS and value:
            return value.decode("utf-8", "replace").split(",")
    if not record.key:
        return None
    return [record.key.split(b"/", 1)[0].decode("utf-8", "replace")]


@dataclass
class Ring:
    """The messages of one tenant read in the last `seconds`, at most `max_bytes` of them."""

    seconds: float
    max_bytes: int
    messages: deque[Message] = field(default_factory=deque)
    size: int = 0

    def add(self, message: Message) -> None:
        if self.max_bytes == 0:
            return
        self.messages.append(message)
        self.size += len(message.record.value or b"")
        horizon = message.read_ns - int(self.seconds * NS)
        while self.messages and (
            self.size > self.max_bytes or self.messages[0].read_ns < horizon
        ):
            self.size -= len(self.messages.popleft().record.value or b"")


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
        """The tenant's events read in the last `tail_ring_seconds` (at most `tail_ring_max`,
        the newest), in arrival order."""
        ring = self.rings.get(tenant_id)
        if ring is None:
            return []
        horizon = time.time_ns() - int(ring.seconds * NS)
        events = [event for message in ring.messages if message.read_ns >= horizon
                  for event in message.events(self.stamps) if event.tenant_id == tenant_id]
        limit = self.settings.tail_ring_max
        return events[-limit:] if limit else []

    def dispatch(self, message: Message, *, live: bool = True) -> None:
        """Remember the message; hand its events to their tenants' matching subscriptions if
        `live` (decoding it only then: most tenants have no tail open)."""
        tenants = tenants_of(message.record)
        for tenant in tenants or ():
            ring = self.rings.get(tenant)
            if ring is None:
                ring = self.rings[tenant] = Ring(
                    self.settings.tail_ring_seconds, self.settings.tail_ring_bytes)
            ring.add(message)
        if not live or (tenants is not None
                        and not any(tenant in self.subscriptions for tenant in tenants)):
            return
        for event in message.events(self.stamps):
            subs = self.subscriptions.get(event.tenant_id)
            if subs:
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
        if record.value is not None:
            self.dispatch(Message(record, time.time_ns()), live=live)

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
