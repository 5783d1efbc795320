"""Pure validation and normalisation of `laas.v1.LogRecord`s (no I/O, no clock of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.ingest import wire
from app.ingest.errors import RecordRejected
from app.pipeline.parsing import LEVEL_WORDS, SEVERITY_BASES, json_in_message
from app.settings import Settings
from protos.laas.v1 import AnyValue, Resource

NS = 1_000_000_000
MAX_DEPTH = 8  # nesting of array / kvlist values
UNKNOWN_SERVICE = "unknown_service"
NUL_KEY = ("NUL (U+0000) in an attribute key: Elasticsearch refuses such keys, so the record "
           "could not be stored; remove or replace the character")
IDEMPOTENCY_KEY_MAX = 128
IDEMPOTENCY_KEY_CHARS = "A-Z a-z 0-9 . _ - :"
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-:")

@dataclass(frozen=True)
class Limits:
    """The ingest limits, taken from `Settings`."""

    max_record_bytes: int
    max_batch_records: int
    max_batch_bytes: int
    max_attributes: int
    max_key_length: int
    max_value_length: int
    max_past_ns: int
    max_future_ns: int

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            max_record_bytes=s.ingest_max_record_bytes,
            max_batch_records=s.ingest_max_batch_records,
            max_batch_bytes=s.ingest_max_batch_bytes,
            max_attributes=s.ingest_max_attributes,
            max_key_length=s.ingest_max_key_length,
            max_value_length=s.ingest_max_value_length,
            max_past_ns=s.ingest_max_past_seconds * NS,
            max_future_ns=s.ingest_max_future_seconds * NS,
        )


def which(value: AnyValue) -> tuple[str, Any]:
    """The set member of an `AnyValue` and its value ("" and None when empty)."""
    return wire.which(value)


def severity_number_for(text: str) -> int:
    """The OpenTelemetry severity number for a level name (`warning`, `ERROR`, `info3`), or 0."""
    return LEVEL_WORDS.get(text.strip().lower(), 0)


def severity_text_for(number: int) -> str:
    """The OpenTelemetry short name of a severity number (`INFO`, `WARN2`), "" for 0."""
    if number <= 0:
        return ""
    for name, base in reversed(SEVERITY_BASES.items()):
        if number >= base:
            return name if number == base else f"{name}{number - base + 1}"
    return ""


def _check_text(index: int, field: str, value: str, limit: int | None) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordRejected(index, field, "not valid UTF-8 (lone surrogate)") from exc
    if limit is not None and len(value) > limit:
        raise RecordRejected(index, field, f"{len(value)} characters, at most {limit} allowed")


def _check_value(index: int, field: str, value: AnyValue, limits: Limits, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise RecordRejected(index, field, f"nested deeper than {MAX_DEPTH} levels")
    kind, inner = which(value)
    if kind == "string_value":
        _check_text(index, field, inner, limits.max_value_length)
    elif kind == "bytes_value":
        if len(inner) > limits.max_value_length:
            raise RecordRejected(index, field, f"{len(inner)} bytes, at most "
                                 f"{limits.max_value_length} allowed")
    elif kind == "array_value":
        for i, item in enumerate(inner.values):
            _check_value(index, f"{field}[{i}]", item, limits, depth + 1)
    elif kind == "kvlist_value":
        _check_attributes(index, field, inner.values, limits, depth + 1)


def _check_attributes(
    index: int, field: str, attributes: dict[str, AnyValue], limits: Limits, depth: int = 0
) -> None:
    count = len(attributes)
    if not count:
        return  # most scopes and resources (a upb map's items() is slow even when empty)
    if count > limits.max_attributes:
        raise RecordRejected(index, field, f"{count} attributes, at most "
                             f"{limits.max_attributes} allowed")
    # In key order: a upb map iterates in no particular order, and with several bad entries
    # the one reported must not depend on the runtime (or on the hash seed).
    for key, value in sorted(attributes.items(), key=_first):
        if not key:
            raise RecordRejected(index, field, "empty attribute key")
        name = f"{field}.{_shown(key)}"
        _check_text(index, name, key, limits.max_key_length)
        if "\x00" in key:
            raise RecordRejected(index, name, NUL_KEY)
        _check_value(index, name, value, limits, depth)


def _first(item: tuple[str, Any]) -> str:
    return item[0]


def _shown(key: str) -> str:
    """An attribute key as a rejection names it: at most 64 characters, NUL as `\\u0000`."""
    return key[:64].replace("\x00", "\\u0000")


def _check_message_keys(index: int, field: str, message: str) -> None:
    """Refuse a message that is a JSON object with a NUL in a key: the normalize stage turns
    its keys into attributes (app.pipeline.normalize `_enrich`), which Elasticsearch would
    refuse."""
    if "\\u0000" not in message:  # JSON can only spell NUL this way; the usual case ends here
        return
    doc = json_in_message(message)
    stack: list[tuple[dict[str, Any], int]] = [(doc, 0)] if doc is not None else []
    while stack:
        values, depth = stack.pop()
        for key, value in values.items():
            if "\x00" in key:
                raise RecordRejected(index, field, f"the JSON object in the message has the key "
                                     f"'{_shown(key)}': {NUL_KEY}")
            if isinstance(value, dict) and depth < MAX_DEPTH:
                stack.append((value, depth + 1))


def _normalise_resource(record: Any, default: Any) -> Any:
    """Complete `record.resource` in place (a upb message's sub-message cannot be replaced)."""
    resource = record.resource
    if not (resource.service_name or resource.host or resource.attributes) and default:
        if wire.is_pb(record):
            resource.ParseFromString(wire.encode(default))
        else:
            resource = record.resource = Resource().parse(wire.encode(default))
    lift_names(resource)
    return resource


def lift_names(resource: Any) -> None:
    """Move the attributes `service.name` / `host.name` (non-empty strings) into `service_name`
    / `host` unless those are set; no service name at all is `unknown_service`. OTLP decoding
    calls it once per resource (`convert.otlp_records`) instead of once per record."""
    attrs = resource.attributes
    if not resource.service_name:
        name = attrs.get("service.name")
        if name is not None and name.string_value:
            resource.service_name = attrs.pop("service.name").string_value
        else:
            resource.service_name = UNKNOWN_SERVICE
    if not resource.host:
        host = attrs.get("host.name")
        if host is not None and host.string_value:
            resource.host = attrs.pop("host.name").string_value


def validate_record(
    record: Any,
    index: int,
    limits: Limits,
    now_ns: int,
    *,
    default_resource: Any = None,
    size: int | None = None,
    shared_checked: bool = False,
    shared_refusal: tuple[str, str] | None = None,
) -> Any:
    """Check one record against `limits` and normalise it in place; return it.

    Normalisation: a missing observed time becomes `now_ns`, a missing event time becomes the
    observed time; severity number and text are completed from each other; `service_name` and
    `host` are lifted from the resource attributes `service.name` / `host.name` (or taken from
    the batch's `default_resource`), an unknown service is `unknown_service`.
    Raises `RecordRejected` naming the record `index`, the field and the limit.
    `record` (and `default_resource`) may be betterproto `LogRecord`s or their upb counterparts
    from `app.ingest.wire` (the gateway's fast path); the checks are the same.
    `shared_checked`: the record's resource and scope were normalised and checked already
    (`check_shared` on a record with an equal resource and scope; its refusal, if any, is
    `shared_refusal`, raised here for this record after its own fields are checked, where
    `check_shared` would have raised it).
    """
    if size is not None:
        _check_size(index, size, limits)
    if not record.observed_time_unix_nano:
        record.observed_time_unix_nano = now_ns
    if not record.time_unix_nano:
        record.time_unix_nano = record.observed_time_unix_nano
    t = record.time_unix_nano
    if t < now_ns - limits.max_past_ns or t > now_ns + limits.max_future_ns:
        raise RecordRejected(
            index, "time_unix_nano",
            f"{t} is outside the accepted window of {limits.max_past_ns // NS}s in the past to "
            f"{limits.max_future_ns // NS}s in the future (now {now_ns})",
        )
    if not 0 <= record.severity_number <= 24:
        raise RecordRejected(index, "severity_number",
                             f"{record.severity_number} is not in 0..24 (OpenTelemetry scale)")
    _check_text(index, "severity_text", record.severity_text, limits.max_key_length)
    if not record.severity_number and record.severity_text:
        record.severity_number = severity_number_for(record.severity_text)
    if record.severity_number and not record.severity_text:
        record.severity_text = severity_text_for(record.severity_number)
    _check_text(index, "event_name", record.event_name, limits.max_key_length)
    if len(record.trace_id) not in (0, 16):
        raise RecordRejected(index, "trace_id", f"{len(record.trace_id)} bytes, 16 or none allowed")
    if len(record.span_id) not in (0, 8):
        raise RecordRejected(index, "span_id", f"{len(record.span_id)} bytes, 8 or none allowed")
    if wire.has_field(record, "body"):
        kind, body = which(record.body)
        if kind == "string_value":
            _check_text(index, "body", body, None)  # bounded by the record size
            _check_message_keys(index, "body", body)
        else:
            _check_value(index, "body", record.body, limits, 0)
            if kind == "kvlist_value":  # its `message` (or `msg`) is the event's message
                for name in ("message", "msg"):
                    if name in body.values:
                        kind, text = which(body.values[name])
                        if kind == "string_value":
                            _check_message_keys(index, f"body.{name}", text)
                        break
    _check_attributes(index, "attributes", record.attributes, limits)
    if not shared_checked:
        _check_shared(record, index, limits, default_resource)
    elif shared_refusal is not None:
        raise RecordRejected(index, *shared_refusal)
    if size is None:  # after the field checks, which name a bad string's field
        _check_size(index, wire.size_of(record), limits)
    return record


def check_shared(record: Any, limits: Limits,
                 default_resource: Any = None) -> tuple[str, str] | None:
    """Normalise and check `record`'s resource and scope, as `validate_record` does after the
    record's own fields: the (field, reason) refusing them, None if they pass. What it finds
    holds for every record with an equal resource and scope (the records of one OTLP export's
    `ScopeLogs`: each carries a copy, already normalised by `lift_names` at decoding)."""
    try:
        _check_shared(record, 0, limits, default_resource)
    except RecordRejected as exc:
        return exc.field, exc.reason
    return None


def _check_shared(record: Any, index: int, limits: Limits, default_resource: Any) -> None:
    res = _normalise_resource(record, default_resource)
    _check_text(index, "resource.service_name", res.service_name, limits.max_key_length)
    _check_text(index, "resource.host", res.host, limits.max_key_length)
    _check_attributes(index, "resource.attributes", res.attributes, limits)
    if wire.has_field(record, "scope"):
        _check_text(index, "scope.name", record.scope.name, limits.max_key_length)
        _check_text(index, "scope.version", record.scope.version, limits.max_key_length)
        _check_attributes(index, "scope.attributes", record.scope.attributes, limits)


def _check_size(index: int, size: int, limits: Limits) -> None:
    if size > limits.max_record_bytes:
        raise RecordRejected(index, "record", f"{size} bytes, at most "
                             f"{limits.max_record_bytes} allowed")


def idempotency_key_problem(key: str) -> str | None:
    """Why `key` is not a valid batch idempotency key, or None when it is.

    1 to `IDEMPOTENCY_KEY_MAX` characters of `IDEMPOTENCY_KEY_CHARS` (a UUID, a ULID, a
    base64url or hex token all fit); no `/`, which separates the parts of a document id.
    """
    if not key:
        return f"empty; 1-{IDEMPOTENCY_KEY_MAX} characters of {IDEMPOTENCY_KEY_CHARS} allowed"
    if len(key) > IDEMPOTENCY_KEY_MAX:
        return f"{len(key)} characters, at most {IDEMPOTENCY_KEY_MAX} allowed"
    for i, ch in enumerate(key):
        if ch not in _KEY_CHARS:
            return f"character {ch!r} at position {i} not allowed; use {IDEMPOTENCY_KEY_CHARS}"
    return None
