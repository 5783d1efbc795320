"""`logs.events` messages: the events of one source from one normalize batch, as a JSON array.

Normalize works on batches of raw records and sends one `logs.events` message per source (key
`tenant/service/host`) and batch, split at `events_message_bytes`, instead of one message per
event: Faust's per-message cost (send, deliver to each agent, ack) dominated the stage, and the
readers of `logs.events` (stats, detect, index, live tail) fold a source's events together
anyway. A message may also hold a single JSON object (one event), as direct publishers and
older workers write it; `decode` takes both forms.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

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


def encode(events: Iterable[LogEvent], max_bytes: int) -> Iterator[bytes]:
    """JSON arrays of the events, each at most `max_bytes` (a larger single event alone)."""
    parts: list[bytes] = []
    size = 2
    for event in events:
        data = event.to_json()
        if parts and size + len(data) + 1 > max_bytes:
            yield b"[" + b",".join(parts) + b"]"
            parts, size = [], 2
        parts.append(data)
        size += len(data) + 1
    if parts:
        yield b"[" + b",".join(parts) + b"]"


def by_source(events: Iterable[LogEvent]) -> dict[str, list[LogEvent]]:
    """The events grouped by `source_key`, each group in arrival order."""
    groups: dict[str, list[LogEvent]] = {}
    for event in events:
        groups.setdefault(event.source_key, []).append(event)
    return groups
