"""The normalize stage as a pure function: one raw Kafka record → `LogEvent`s and `DeadLetter`s.

Accepted raw formats (see docs/stream.md): a serialized `laas.v1.LogBatch` (content-type
`application/x-protobuf; messageType=laas.v1.LogBatch`, written by the gateway and HTTP ingest:
one message per request and service), a serialized `laas.v1.LogRecord`
(`application/x-protobuf`), a JSON record or JSON array of records (LogRecord proto3 JSON or the
`{"message", "level", "ts", ...}` shorthand), and a plain text line (syslog, Apache, log4j,
ISO-prefixed or free text). The tenant comes from the ingest stamp (`laas-tenant-id` header with
a valid `laas-signature`, app/kafka/stamp.py) or from a direct producer's `laas-api-key` header,
which the caller verifies (I/O) and passes in as `principal`. `normalize` never raises.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.ingest.convert import INT64, ConversionError, from_any
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.validate import idempotency_key_problem, which
from app.ingest.wire import pb
from app.kafka.headers import (
    H_API_KEY,
    H_BATCH_INDEX,
    H_BATCH_KEY,
    H_CONTENT_TYPE,
    H_HOST,
    H_SERVICE,
    H_SOURCE,
    H_TENANT,
    H_TENANT_ID,
    LOG_BATCH,
)
from app.kafka.stamp import Stamps
from app.pipeline.events import MAX_NS, AttributeValue, DeadLetter, LogEvent, RawPosition
from app.pipeline.parsing import (
    UNKNOWN,
    json_in_message,
    key_values,
    parse_line,
    parse_timestamp,
    severity_from_text,
    severity_from_value,
    severity_in_line,
    severity_name,
)
from protos.laas.v1 import LogRecord

log = logging.getLogger(__name__)

MAX_BATCH_INDEX = 2**31 - 1
UNKNOWN_SERVICE = "unknown_service"
INGEST_SCOPES = frozenset({"ingest", "admin"})
MAX_ARRAY_RECORDS = 10_000

# Dead letter reasons (stable codes; docs/stream.md lists them).
R_MISSING_TENANT = "missing_tenant"
R_UNKNOWN_KEY = "unknown_api_key"
R_FORBIDDEN_KEY = "forbidden_api_key"
R_TENANT_MISMATCH = "tenant_mismatch"
R_UNSIGNED_STAMP = "unsigned_tenant_header"
R_EMPTY = "empty"
R_UNDECODABLE = "undecodable"
R_NOT_UTF8 = "not_utf8"
R_INVALID_JSON = "invalid_json"
R_INVALID_RECORD = "invalid_record"
R_INTERNAL = "internal_error"


class KeyOwner(Protocol):
    """What an API key check answers (app.ingest.auth.Principal fits)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def tenant_slug(self) -> str: ...
    @property
    def scope(self) -> str: ...


@dataclass(frozen=True)
class RawMessage:
    """A record of `logs.raw` as the consumer saw it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)

    def header(self, name: str) -> str:
        raw = self.headers.get(name)
        return raw.decode("utf-8", "replace").strip() if raw else ""

    @property
    def api_key(self) -> str:
        return self.header(H_API_KEY)


@dataclass(frozen=True)
class Tenant:
    id: str
    slug: str


@dataclass
class Normalized:
    events: list[LogEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    max_attributes: int = 256

    @classmethod
    def from_settings(cls, settings: object) -> Limits:
        return cls(max_attributes=int(getattr(settings, "event_max_attributes", 256)))


def dead_letter(raw: RawMessage, reason: str, detail: str, *, index: int = 0,
                tenant_id: str = "", now_ns: int = 0, stage: str = "normalize",
                value: pb.LogRecord | None = None) -> DeadLetter:
    """A dead letter carrying the raw record's bytes (or those of `value`, one record of a
    `LogBatch`), key, headers (API key removed) and place."""
    headers = {k: v.decode("utf-8", "replace") for k, v in raw.headers.items() if k != H_API_KEY}
    return DeadLetter(reason=reason, detail=detail[:2000], stage=stage,
                      raw=RawPosition(raw.topic, raw.partition, raw.offset, index),
                      value=value.SerializeToString() if value is not None else raw.value or b"",
                      key=raw.key, headers=headers,
                      tenant_id=tenant_id, time=now_ns)


def bind_tenant(raw: RawMessage, principal: KeyOwner | None,
                stamps: Stamps | None = None) -> Tenant | tuple[str, str]:
    """The tenant of a raw record, or (reason, detail) when it has none it may claim.

    With a `laas-api-key` header the key decides (`principal` is the verifier's answer) and a
    `laas-tenant-id` stamp, if also present, must agree. Without one, the ingest stamp decides,
    and only when `stamps` finds its signature valid (written by LaaS's own ingest): a tenant
    header a direct producer wrote is never trusted.
    """
    stamped = raw.header(H_TENANT_ID)
    if raw.api_key:
        if principal is None:
            return R_UNKNOWN_KEY, "unknown, expired or revoked API key in laas-api-key"
        if principal.scope not in INGEST_SCOPES:
            return R_FORBIDDEN_KEY, f"API key has scope {principal.scope!r}; ingest needs 'ingest'"
        if stamped and stamped != str(principal.tenant_id):
            return R_TENANT_MISMATCH, (f"laas-tenant-id {stamped!r} is not the API key's tenant "
                                       f"{principal.tenant_id!r}")
        return Tenant(str(principal.tenant_id), principal.tenant_slug)
    if stamped:
        if stamps is None or not stamps.valid(raw.key, raw.value, raw.headers):
            return R_UNSIGNED_STAMP, ("laas-tenant-id is only accepted from LaaS's own ingest "
                                      "(signed stamp); a direct producer sends laas-api-key")
        return Tenant(stamped, raw.header(H_TENANT) or stamped)
    return R_MISSING_TENANT, "no laas-tenant-id header (ingest stamp) and no laas-api-key header"


def batch_identity(raw: RawMessage, *, many: bool = False) -> tuple[str, int, str]:
    """(idempotency key, index in the batch, problem) from the `laas-batch-key` and
    `laas-batch-index` headers; ("", 0, "") without a key. For a `LogBatch` message (`many`)
    the index header lists every record's position (`batch_indexes`, read by `_from_batch`).

    The gateway and HTTP ingest stamp them; direct producers may set them too (the index
    defaults to 0). An invalid key or index is not a dead letter: the record keeps its raw
    position as identity, and `problem` says why (attribute `laas.invalid_batch_key`).
    """
    if H_BATCH_KEY not in raw.headers:
        return "", 0, ""
    key = raw.header(H_BATCH_KEY)
    problem = idempotency_key_problem(key)
    if problem:
        return "", 0, f"{H_BATCH_KEY}: {problem}"
    if many:
        return key, 0, ""
    index = raw.header(H_BATCH_INDEX) or "0"
    if not _is_index(index):
        return "", 0, (f"{H_BATCH_INDEX}: {index[:40]!r} is not a record index "
                       f"(0..{MAX_BATCH_INDEX})")
    return key, int(index), ""


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_BATCH_INDEX


def batch_indexes(text: str, count: int) -> list[int] | str:
    """The request positions of a `LogBatch` message's `count` records from its
    `laas-batch-index` header: comma-separated positions or inclusive ranges in order, e.g.
    `0-41,43-99` (the records of a request the ingest did not reject); a problem otherwise."""
    found: list[int] = []
    for item in text.split(","):
        first, _, last = item.strip().partition("-")
        if not _is_index(first) or (last and not _is_index(last)):
            return f"{H_BATCH_INDEX}: {item[:40]!r} is not a record index or range"
        low, high = int(first), int(last or first)
        if high < low:
            return f"{H_BATCH_INDEX}: range {item[:40]!r} ends before it starts"
        if high - low + len(found) >= count:
            return f"{H_BATCH_INDEX}: names more positions than the batch's {count} records"
        found.extend(range(low, high + 1))
    if len(found) != count:
        return (f"{H_BATCH_INDEX}: names {len(found)} positions for a batch of "
                f"{count} records")
    return found


def normalize(raw: RawMessage, principal: KeyOwner | None = None, *, now_ns: int,
              limits: Limits | None = None, stamps: Stamps | None = None) -> Normalized:
    """Turn one raw record into events (and dead letters); never raises. Without `stamps` no
    ingest stamp is trusted (only `laas-api-key` binds a tenant)."""
    try:
        return _normalize(raw, principal, now_ns, limits or Limits(), stamps)
    except Exception as exc:  # noqa: BLE001 - a parser bug must not kill the worker
        log.exception("normalize failed on %s[%d]@%d", raw.topic, raw.partition, raw.offset)
        return Normalized(dead=[dead_letter(raw, R_INTERNAL, f"{type(exc).__name__}: {exc}",
                                            now_ns=now_ns)])


def _normalize(raw: RawMessage, principal: KeyOwner | None, now_ns: int,
               limits: Limits, stamps: Stamps | None) -> Normalized:
    out = Normalized()
    tenant = bind_tenant(raw, principal, stamps)
    if isinstance(tenant, tuple):
        out.dead.append(dead_letter(raw, *tenant, now_ns=now_ns))
        return out
    value = raw.value or b""
    if not value.strip():
        out.dead.append(dead_letter(raw, R_EMPTY, "empty record value", tenant_id=tenant.id,
                                    now_ns=now_ns))
        return out
    ctype = raw.header(H_CONTENT_TYPE).lower()
    batch_key, batch_index, batch_problem = batch_identity(raw, many=LOG_BATCH in ctype)
    ctx = _Context(raw, tenant, limits, observed=_observed(raw, now_ns),
                   source=raw.header(H_SOURCE) or "kafka", batch_key=batch_key,
                   batch_index=batch_index, batch_problem=batch_problem)
    if LOG_BATCH in ctype:
        _from_batch(ctx, value, out, now_ns)
        return out
    if "protobuf" in ctype:
        try:  # the C-backed (upb) classes: ~100x faster than betterproto's parse
            record = pb.LogRecord.FromString(value)
        except Exception as exc:  # noqa: BLE001 - the decoder raises several kinds
            out.dead.append(dead_letter(raw, R_UNDECODABLE, f"not a laas.v1.LogRecord: {exc!r}",
                                        tenant_id=tenant.id, now_ns=now_ns))
            return out
        _add(ctx, out, ctx.from_record(record, "protobuf", 0), now_ns)
        return out
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.dead.append(dead_letter(raw, R_NOT_UTF8, f"not valid UTF-8 at byte {exc.start}",
                                    tenant_id=tenant.id, now_ns=now_ns))
        return out
    stripped = text.strip()
    if "json" in ctype or stripped[:1] in ("{", "["):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            if "json" in ctype:
                out.dead.append(dead_letter(raw, R_INVALID_JSON, f"invalid JSON: {exc}",
                                            tenant_id=tenant.id, now_ns=now_ns))
                return out
        else:
            _from_json(ctx, doc, out, now_ns)
            return out
    _add(ctx, out, ctx.from_text(text), now_ns)
    return out


def _add(ctx: _Context, out: Normalized, event: LogEvent, now_ns: int,
         record: pb.LogRecord | None = None) -> None:
    """Keep `event` unless it is empty (a dead letter: of `record`'s bytes when it is one
    record of a `LogBatch`, else of the raw value)."""
    if event.message.strip() or event.attributes:
        out.events.append(event)
    else:
        out.dead.append(dead_letter(ctx.raw, R_EMPTY, "record has no message and no attributes",
                                    index=event.raw.index, tenant_id=ctx.tenant.id,
                                    now_ns=now_ns, value=record))


def _from_batch(ctx: _Context, value: bytes, out: Normalized, now_ns: int) -> None:
    """The records of a `LogBatch`, numbered 1.. in `raw.index` (like a JSON array); the
    batch's `resource` is the default of records without one. With a batch key, record i's
    position in the request is the i-th of the `laas-batch-index` list."""
    try:
        batch = pb.LogBatch.FromString(value)
    except Exception as exc:  # noqa: BLE001 - the decoder raises several kinds
        out.dead.append(dead_letter(ctx.raw, R_UNDECODABLE, f"not a laas.v1.LogBatch: {exc!r}",
                                    tenant_id=ctx.tenant.id, now_ns=now_ns))
        return
    records = batch.records
    if not records or len(records) > MAX_ARRAY_RECORDS:
        out.dead.append(dead_letter(ctx.raw, R_INVALID_RECORD,
                                    f"a LogBatch of 1..{MAX_ARRAY_RECORDS} records expected",
                                    tenant_id=ctx.tenant.id, now_ns=now_ns))
        return
    positions: list[int] | None = None
    if ctx.batch_key:
        found = batch_indexes(ctx.raw.header(H_BATCH_INDEX), len(records))
        if isinstance(found, str):
            ctx.batch_key, ctx.batch_problem = "", found
        else:
            positions = found
    default = batch.resource if batch.HasField("resource") else None
    for i, record in enumerate(records):
        if default is not None and not record.HasField("resource"):
            record.resource.CopyFrom(default)
        event = ctx.from_record(record, "protobuf", i + 1, size=record.ByteSize(),
                                batch_index=positions[i] if positions else 0)
        _add(ctx, out, event, now_ns, record)


def _observed(raw: RawMessage, now_ns: int) -> int:
    ts = raw.timestamp_ms * 1_000_000 if raw.timestamp_ms and raw.timestamp_ms > 0 else now_ns
    return ts if 0 < ts < MAX_NS else now_ns


def _encodable(item: object) -> bool:
    """False if a JSON value holds a lone surrogate (from a `\\ud800` escape): Python's
    JSON reader accepts it, but no UTF-8 writer downstream can write it."""
    try:
        json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _from_json(ctx: _Context, doc: object, out: Normalized, now_ns: int) -> None:
    docs = doc if isinstance(doc, list) else [doc]
    if not docs or len(docs) > MAX_ARRAY_RECORDS:
        out.dead.append(dead_letter(ctx.raw, R_INVALID_RECORD,
                                    f"a JSON array of 1..{MAX_ARRAY_RECORDS} records expected",
                                    tenant_id=ctx.tenant.id, now_ns=now_ns))
        return
    many = isinstance(doc, list)
    escapes = b"\\u" in (ctx.raw.value or b"")
    for i, item in enumerate(docs):
        index = i + 1 if many else 0
        if escapes and not _encodable(item):
            out.dead.append(dead_letter(ctx.raw, R_INVALID_RECORD,
                                        "text with a lone UTF-16 surrogate escape (\\ud800-"
                                        "\\udfff) is not valid Unicode",
                                        index=index, tenant_id=ctx.tenant.id, now_ns=now_ns))
            continue
        try:
            record = pb_record_from_json(item)  # upb, the one JSON reader (app.ingest.jsonpb)
        except ConversionError as exc:
            out.dead.append(dead_letter(ctx.raw, R_INVALID_RECORD, f"{exc.field}: {exc.reason}",
                                        index=index, tenant_id=ctx.tenant.id, now_ns=now_ns))
            continue
        except (ValueError, TypeError, RecursionError) as exc:
            out.dead.append(dead_letter(ctx.raw, R_INVALID_RECORD, f"not a record: {exc}",
                                        index=index, tenant_id=ctx.tenant.id, now_ns=now_ns))
            continue
        _add(ctx, out, ctx.from_record(record, "json", index), now_ns)


# --- building events ---------------------------------------------------------------------------

def _scalar(value: object) -> AttributeValue:
    """A flat attribute value: numbers stay numbers (indexed as numbers too: docs/ingest.md),
    lists become lists of strings, anything else a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
                for v in value[:100]]
    if isinstance(value, bytes):
        return value.hex()
    return value if isinstance(value, str) else str(value)


def flatten(values: Mapping[str, object], prefix: str = "", into: dict | None = None,
            depth: int = 0) -> dict[str, AttributeValue]:
    """Nested values as `dotted.key → value` (`_scalar`: numbers kept, lists of strings)."""
    out: dict[str, AttributeValue] = {} if into is None else into
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 8:
            flatten(value, f"{name}.", out, depth + 1)
        elif value is not None:
            out[name] = _scalar(value)
    return out


@dataclass
class _Context:
    raw: RawMessage
    tenant: Tenant
    limits: Limits
    observed: int
    source: str
    batch_key: str = ""
    batch_index: int = 0
    batch_problem: str = ""

    def event(self, *, index: int, fmt: str, message: str, time: int | None, severity: int,
              service: str, host: str, attributes: dict[str, AttributeValue],
              trace_id: str = "", span_id: str = "", size: int | None = None,
              batch_index: int | None = None) -> LogEvent:
        message, time, severity = _enrich(message, time, severity, attributes)
        if time is None or not 0 < time < MAX_NS:
            if time is not None:
                attributes["laas.invalid_time"] = str(time)
            time = self.observed
        if not severity:
            severity = severity_in_line(message)
        if self.batch_problem:
            attributes["laas.invalid_batch_key"] = self.batch_problem
        dropped = len(attributes) - self.limits.max_attributes
        if dropped > 0:
            attributes = dict(list(attributes.items())[: self.limits.max_attributes])
            attributes["laas.dropped_attributes"] = str(dropped)
        name = severity_name(severity)
        return LogEvent.from_fields({
            "tenant_id": self.tenant.id, "tenant": self.tenant.slug, "time": time,
            "observed_time": self.observed, "severity": name,
            "severity_number": severity if name != UNKNOWN else 0, "message": message,
            "service": service or self.raw.header(H_SERVICE) or UNKNOWN_SERVICE,
            "host": host or self.raw.header(H_HOST),
            "raw": RawPosition(self.raw.topic, self.raw.partition, self.raw.offset, index),
            "attributes": attributes, "template_id": "", "template_new": False,
            "trace_id": trace_id, "span_id": span_id, "format": fmt, "source": self.source,
            "size": len(self.raw.value or b"") if size is None else size,
            "batch_key": self.batch_key,
            "batch_index": self.batch_index if batch_index is None else batch_index,
        })

    def from_record(self, record: LogRecord | pb.LogRecord, fmt: str, index: int, *,
                    size: int | None = None, batch_index: int | None = None) -> LogEvent:
        attributes: dict[str, AttributeValue] = {}
        kind, body = which(record.body)
        if kind == "kvlist_value":
            values = from_any(record.body)
            assert isinstance(values, dict)
            msg = values.pop("message", values.pop("msg", None))
            message = msg if isinstance(msg, str) else json.dumps(values, default=str)
            flatten(values, "", attributes)
        elif kind == "string_value":
            message = body
        elif kind:
            value = from_any(record.body)
            message = value if isinstance(value, str) else json.dumps(value, default=str) \
                if not isinstance(value, bytes) else value.hex()
        else:
            message = ""
        if record.attributes:
            flatten({k: from_any(v) for k, v in record.attributes.items()}, "", attributes)
        resource = record.resource
        service, host = resource.service_name, resource.host
        if resource.attributes:
            res_attrs = {k: from_any(v) for k, v in resource.attributes.items()}
            service = service or str(res_attrs.get("service.name", "") or "")
            host = host or str(res_attrs.get("host.name", "") or "")
            res_attrs.pop("service.name", None)
            res_attrs.pop("host.name", None)
            flatten(res_attrs, "resource.", attributes)
        if record.scope.name:
            attributes["scope.name"] = record.scope.name
        if record.event_name:
            attributes["event.name"] = record.event_name
        severity = record.severity_number if 1 <= record.severity_number <= 24 else \
            severity_from_text(record.severity_text)
        time = record.time_unix_nano or record.observed_time_unix_nano or None
        return self.event(index=index, fmt=fmt, message=message, time=time, severity=severity,
                          service=service, host=host, attributes=attributes,
                          trace_id=record.trace_id.hex(), span_id=record.span_id.hex(),
                          size=size, batch_index=batch_index)

    def from_text(self, text: str) -> LogEvent:
        fields = parse_line(text, self.observed)
        attributes: dict[str, AttributeValue] = dict(fields.attributes)
        if fields.format != "text":
            attributes["log.format"] = fields.format
        return self.event(index=0, fmt="text", message=fields.message, time=fields.time,
                          severity=fields.severity, service=fields.service, host=fields.host,
                          attributes=attributes)


_MESSAGE_KEYS = ("message", "msg")
_LEVEL_KEYS = ("level", "severity", "lvl", "loglevel")
_TIME_KEYS = ("ts", "timestamp", "time", "@timestamp")


def _enrich(message: str, time: int | None, severity: int,
            attributes: dict[str, AttributeValue]) -> tuple[str, int | None, int]:
    """Fields hidden in the message: a JSON object, or key=value pairs. Known keys win nothing
    over what the record already said; new keys become attributes."""
    doc = json_in_message(message)
    if doc is not None:
        for key in _MESSAGE_KEYS:
            if isinstance(doc.get(key), str):
                message = str(doc.pop(key))
                break
        for key in _LEVEL_KEYS:
            if key in doc:
                found = severity_from_value(doc.pop(key))
                severity = severity or found
                break
        for key in _TIME_KEYS:
            if key in doc:
                found_time = parse_timestamp(doc.pop(key))
                time = time or found_time
                break
        for key, value in flatten(doc).items():
            attributes.setdefault(key, value)
        return message, time, severity
    pairs = key_values(message)
    for key, value in pairs.items():
        lowered = key.lower()
        if lowered in _LEVEL_KEYS and not severity:
            severity = severity_from_text(value)
        attributes.setdefault(key, value)
    return message, time, severity
