"""The records between stages: `LogEvent` on `logs.events`, `DeadLetter` on `logs.deadletter`.

Both travel as compact JSON (UTF-8). A `LogEvent` carries the position of the raw record it came
from and, when the producer gave one, its batch identity (idempotency key and index in the
batch); `doc_id` turns these into the Elasticsearch `_id`, which is what makes retries, worker
crashes, replays and resent client batches idempotent in the index.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from app.kafka.headers import H_DL_REASON, H_DL_STAGE

NS = 1_000_000_000
# date_nanos covers 1970-01-01 .. 2262-04-11; events outside get their observed time instead.
MAX_NS = 9_200_000_000_000_000_000

# Numbers stay numbers (int64 or finite double); everything else is text (docs/ingest.md).
AttributeValue = str | int | float | list[str]
Attributes = dict[str, AttributeValue]


@dataclass(frozen=True)
class RawPosition:
    """Where a raw record sits in Kafka; `index` > 0 numbers the records of one JSON array."""

    topic: str
    partition: int
    offset: int
    index: int = 0

    def doc_id(self) -> str:
        """The Elasticsearch `_id`: `topic/partition/offset[/index]` (stable across replays)."""
        base = f"{self.topic}/{self.partition}/{self.offset}"
        return f"{base}/{self.index}" if self.index else base


def batch_doc_id(tenant_id: str, batch_key: str, batch_index: int, array_index: int = 0) -> str:
    """The `_id` of a record that came with a batch idempotency key.

    `batch/{tenant}/{key}/{index in the batch}[/{index in a JSON array}]`: the same on every
    resend of the batch, whatever Kafka offsets the copies got, and scoped to the tenant so two
    tenants' keys never meet. Keys are validated to contain no `/`.
    """
    base = f"batch/{tenant_id}/{batch_key}/{batch_index}"
    return f"{base}/{array_index}" if array_index else base


@dataclass(frozen=True)
class LogEvent:
    """One normalised log event (the value of `logs.events`).

    Times are nanoseconds since the epoch (UTC). `severity` is the OpenTelemetry short name
    (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) or UNKNOWN; `severity_number` the OpenTelemetry
    number (0 when unknown). `attributes` are flat: dotted keys, string, number (int or
    double) or list of string values, capped in number by normalize.
    """

    tenant_id: str
    tenant: str
    time: int
    observed_time: int
    severity: str
    severity_number: int
    message: str
    service: str
    host: str
    raw: RawPosition
    attributes: Attributes = field(default_factory=dict)
    template_id: str = ""
    template_new: bool = False  # the tenant's miner created the template with this event
    trace_id: str = ""
    span_id: str = ""
    format: str = ""  # protobuf | json | text
    source: str = ""  # gateway | http | kafka
    size: int = 0  # bytes of the raw record
    batch_key: str = ""  # the producer's idempotency key of the record's batch ("" if none)
    batch_index: int = 0  # the record's position in that batch

    @property
    def source_key(self) -> str:
        """`tenant_id/service/host`: the unit of statistics; it decides the `logs.events`
        partition (app/pipeline/event_messages.py)."""
        return f"{self.tenant_id}/{self.service}/{self.host}"

    def doc_id(self) -> str:
        """The Elasticsearch `_id`: from the batch identity when the record has one (a resent
        batch overwrites its first copy), else from the raw position (`RawPosition.doc_id`).
        The raw index joins the batch identity only for a JSON array (several records in one
        request record); a `LogBatch` record's batch index is already its request position."""
        if self.batch_key:
            array_index = self.raw.index if self.format == "json" else 0
            return batch_doc_id(self.tenant_id, self.batch_key, self.batch_index, array_index)
        return self.raw.doc_id()

    def with_template(self, template_id: str, new: bool) -> LogEvent:
        """A copy with the template set: `dataclasses.replace` without its frozen `__init__`
        (5 % of the normalize process, once per event)."""
        event = object.__new__(LogEvent)
        event.__dict__.update(self.__dict__, template_id=template_id, template_new=new)
        return event

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # dataclasses natively, fields in order, UTF-8

    @classmethod
    def from_json(cls, data: bytes | str) -> LogEvent:
        return cls.from_dict(orjson.loads(data))

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> LogEvent:
        """An event from a dict of *every* field (`raw` a `RawPosition`; nothing is checked):
        for the hot path that names them all (normalize), without the frozen `__init__`'s
        per-field `object.__setattr__` (2.8 → 0.9 µs per event)."""
        event: LogEvent = _frozen(cls, fields)
        return event

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LogEvent:
        raw = doc["raw"]
        raw = _frozen(RawPosition, raw) if raw.keys() == _RAW_FIELDS else RawPosition(**raw)
        if doc.keys() == _EVENT_FIELDS:  # as `to_json` wrote it: skip the frozen __init__'s
            event = _frozen(cls, doc)  # per-field setattr (a third of the stage's decoding)
            event.__dict__["raw"] = raw
            return event
        return cls(**{**doc, "raw": raw})


def _frozen(cls: type[Any], values: dict[str, Any]) -> Any:
    """An instance of the frozen dataclass `cls` with exactly `values` as its fields."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


_EVENT_FIELDS = {f.name for f in fields(LogEvent)}
_RAW_FIELDS = {f.name for f in fields(RawPosition)}


@dataclass(frozen=True)
class DeadLetter:
    """A record a stage could not handle: why, where it came from and its original bytes.

    `reason` is a short stable code (see docs/stream.md), `detail` the human explanation,
    `stage` the stage that gave up (normalize, index), `raw` the position in `logs.raw`.
    """

    reason: str
    detail: str
    stage: str
    raw: RawPosition
    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tenant_id: str = ""
    time: int = 0

    def to_json(self) -> bytes:
        doc: dict[str, Any] = asdict(self)
        doc["value"] = base64.b64encode(self.value).decode()
        doc["key"] = base64.b64encode(self.key).decode() if self.key is not None else None
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> DeadLetter:
        doc = json.loads(data)
        doc["raw"] = RawPosition(**doc["raw"])
        doc["value"] = base64.b64decode(doc["value"])
        doc["key"] = base64.b64decode(doc["key"]) if doc.get("key") is not None else None
        return cls(**doc)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(H_DL_REASON, self.reason.encode()), (H_DL_STAGE, self.stage.encode())]


def iso_nanos(ns: int) -> str:
    """`2026-11-27T10:00:00.123456789Z`: the date_nanos form of a nanosecond timestamp."""
    seconds, frac = divmod(ns, NS)
    return f"{_second(seconds)}.{frac:09d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    """`2026-11-27T10:00:00` (cached: the events of a batch share few seconds)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
