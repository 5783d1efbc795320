"""`logs.events` messages: the events of a normalize batch's sources of one partition, as a
JSON array.

A source (`tenant/service/host`) always goes to the same partition, the one Kafka's default
partitioner gives its key (`partition_of`: the stats and detect tables live with their
partition). Normalize works on batches of raw records and sends, per partition and batch, one
message with the events of all its sources (each source's in arrival order, split at
`events_message_bytes`), with the partition set explicitly: Faust's per-message cost (send,
deliver to each agent, ack) dominated the stages, first with a message per event, then — with
many small tenants — with a message per source. Key: the source when the message holds one
(as older workers wrote every message), else none; header `laas-tenants`: the tenant ids in
it, for readers that serve some tenants only (the live tail). A message may also hold a single
JSON object (one event), as direct publishers and older workers write it; `decode` takes both
forms.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson
from aiokafka.partitioner import murmur2

from app.kafka.stamp import EVENTS, Stamps
from app.pipeline.events import LogEvent


def decode(data: bytes | str) -> list[LogEvent]:
    """The events of one message (an array, or one object). Raises ValueError/TypeError/
    KeyError on anything else."""
    doc = orjson.loads(data)
    items: list[Any] = doc if isinstance(doc, list) else [doc]
    events = []
    for item in items:
        if not isinstance(item, dict):
            raise TypeError(f"a LogEvent object expected, got {type(item).__name__}")
        events.append(LogEvent.from_dict(item))
    return events


_decoded: weakref.WeakKeyDictionary[Any, list[LogEvent]] = weakref.WeakKeyDictionary()


class Unsigned(ValueError):
    """A `logs.events` message not signed by LaaS (app/kafka/stamp.py): written by someone else."""


def decode_shared(message: Any, stamps: Stamps) -> list[LogEvent]:
    """`decode(message.value)` once per Faust `Message`, if LaaS signed it (else `Unsigned`):
    the stats and detect agents both read each `logs.events` message and get the same
    (immutable) events. Kept while the message lives."""
    events = _decoded.get(message)
    if events is None:
        if not stamps.valid_message(message, kind=EVENTS):
            raise Unsigned(f"not signed by LaaS: {message.topic}/{message.partition}/"
                           f"{message.offset}")
        events = _decoded[message] = decode(message.value)
    return events


def encode(events: Iterable[LogEvent], max_bytes: int
           ) -> Iterator[tuple[bytes, list[LogEvent]]]:
    """JSON arrays of the events, each at most `max_bytes` (a larger single event alone), with
    the events each holds."""
    parts: list[bytes] = []
    held: list[LogEvent] = []
    size = 2
    for event in events:
        data = event.to_json()
        if parts and size + len(data) + 1 > max_bytes:
            yield b"[" + b",".join(parts) + b"]", held
            parts, held, size = [], [], 2
        parts.append(data)
        held.append(event)
        size += len(data) + 1
    if parts:
        yield b"[" + b",".join(parts) + b"]", held


def partition_of(source_key: str, partitions: int) -> int:
    """The `logs.events` partition of a source: Kafka's default partitioner (murmur2 of the
    key, as aiokafka and the Java client compute it), so a source stays on the partition its
    messages had when each was keyed by it."""
    return (murmur2(source_key.encode()) & 0x7FFFFFFF) % partitions


class Outgoing(NamedTuple):
    """One `logs.events` message to send."""

    partition: int
    key: bytes | None  # the source, when the message holds one
    value: bytes
    tenants: bytes  # `laas-tenants`: the tenant ids in it, comma-separated, sorted


def messages(events: Iterable[LogEvent], partitions: int, max_bytes: int
             ) -> Iterator[Outgoing]:
    """The `logs.events` messages of a batch's events: per partition, every source's events
    together (each source's in arrival order), arrays of at most `max_bytes`."""
    by_partition: dict[int, list[LogEvent]] = {}
    for source, group in by_source(events).items():
        by_partition.setdefault(partition_of(source, partitions), []).extend(group)
    for partition, group in by_partition.items():
        for value, held in encode(group, max_bytes):
            sources = {event.source_key for event in held}
            key = next(iter(sources)).encode() if len(sources) == 1 else None
            tenants = ",".join(sorted({event.tenant_id for event in held})).encode()
            yield Outgoing(partition, key, value, tenants)


def by_source(events: Iterable[LogEvent]) -> dict[str, list[LogEvent]]:
    """The events grouped by `source_key`, each group in arrival order."""
    groups: dict[str, list[LogEvent]] = {}
    for event in events:
        groups.setdefault(event.source_key, []).append(event)
    return groups
