"""JSON records straight into the C-backed (upb) `LogRecord`: the hot path of HTTP and normalize.

`convert.record_from_json` builds a betterproto message, which costs ~0.3 ms for a shorthand
record and ~3 ms for the full proto3 JSON form (betterproto's attribute machinery). This module
fills a `protobuf` (upb) `LogRecord` directly, for the plain, well-typed documents clients send.
Anything unusual — a value of an unexpected type, a number out of range, a lone surrogate, a
`null`, a snake_case key, any error — is handed to `convert.record_from_json` itself, so what is
accepted, what a record contains and every `ConversionError` (field and reason) are the same as
before by construction; `tests/test_ingest_properties.py` checks both paths against each other.
The result is a upb `LogRecord`, or a betterproto one for the rare documents handed over;
validation, the Kafka writer and normalize take either (`app.ingest.wire`).
"""

from __future__ import annotations

import base64
import gc
import json
from typing import Any

import orjson

from app.ingest.convert import (
    ANY_KEYS,
    INT64,
    RECORD_KEYS,
    SHORTHAND_KEYS,
    ConversionError,
    from_otlp,
    id_bytes,
    otlp_from_dict,
    parse_time,
    record_from_json,
    severity_from_name,
)
from app.ingest.validate import lift_names
from app.ingest.wire import pb

__all__ = ["pb_record_from_json", "pb_records_from_otlp_bytes", "pb_records_from_otlp_json"]

U32 = 2**32
I32 = 2**31
U64 = 2**64
_TIME_KEYS = ("ts", "timestamp", "time")
_SCALAR_STRINGS = {"severityText": "severity_text", "eventName": "event_name"}
_RESOURCE_STRINGS = {"serviceName": "service_name", "host": "host", "schemaUrl": "schema_url"}
_SCOPE_STRINGS = {"name": "name", "version": "version", "schemaUrl": "schema_url"}


class _Slow(Exception):
    """The document needs the reference converter (betterproto)."""


def pb_record_from_json(doc: object) -> Any:
    """A record from its JSON form or the shorthand, like `convert.record_from_json`.

    Same input, same accepted records, same content and the same `ConversionError`s; returns a
    upb `pb.LogRecord` (a betterproto `LogRecord` for documents this fast path hands over).
    """
    if not isinstance(doc, dict):
        raise ConversionError("record", "a JSON object expected")
    keys = doc.keys()
    try:
        if not keys & RECORD_KEYS or keys & SHORTHAND_KEYS:
            return _shorthand(doc)
        return _full(doc)
    except Exception:  # noqa: BLE001 - unusual input or an error: the reference path decides
        return record_from_json(doc)


# --- plain JSON values -----------------------------------------------------------------------

def _fill(target: Any, value: object) -> None:
    """Set AnyValue `target` from a plain JSON value (as `convert.to_any` would)."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is bool:
        target.bool_value = value
    elif kind is int:
        if -INT64 <= value < INT64:  # type: ignore[operator]
            target.int_value = value
        else:
            target.string_value = str(value)
    elif kind is float:
        target.double_value = value
    elif value is None:
        pass  # an empty AnyValue; a map entry or list item exists once touched
    elif kind is dict:
        kv = target.kvlist_value
        kv.SetInParent()
        values = kv.values
        for k, v in value.items():  # type: ignore[attr-defined]
            _fill(values[str(k)], v)
    elif kind is list:
        arr = target.array_value
        arr.SetInParent()
        add = arr.values.add
        for v in value:  # type: ignore[attr-defined]
            _fill(add(), v)
    else:
        raise _Slow


# --- AnyValue JSON ({"stringValue": ...}) ------------------------------------------------------

def _fill_json(target: Any, value: object, otlp: bool = False) -> None:
    """Set AnyValue `target` from its proto3 JSON form: a kvlist's values are a map in the LaaS
    form, a list of key/value pairs in OTLP/JSON (`otlp`)."""
    if type(value) is not dict:
        raise _Slow
    if not value:
        return
    if len(value) != 1:
        raise _Slow
    ((key, v),) = value.items()
    kind = type(v)
    if key == "stringValue" and kind is str:
        target.string_value = v
    elif key == "intValue" and (kind is int or kind is str):
        number = int(v)
        if not -INT64 <= number < INT64:
            raise _Slow  # the reference path names it
        target.int_value = number
    elif key == "boolValue" and kind is bool:
        target.bool_value = v
    elif key == "doubleValue" and (kind is float or kind is int):
        target.double_value = float(v)
    elif key == "bytesValue" and kind is str:
        target.bytes_value = base64.b64decode(v, validate=True)
    elif key == "arrayValue" and kind is dict and v.keys() <= {"values"}:
        arr = target.array_value
        arr.SetInParent()
        items = v.get("values", [])
        if type(items) is not list:
            raise _Slow
        add = arr.values.add
        for item in items:
            _fill_json(add(), item, otlp)
    elif key == "kvlistValue" and kind is dict and v.keys() <= {"values"}:
        kv = target.kvlist_value
        kv.SetInParent()
        if otlp:
            _otlp_pairs(kv.values, v.get("values", []))
        else:
            _fill_json_map(kv.values, v.get("values", {}))
    else:
        raise _Slow


def _fill_json_map(target: Any, values: object) -> None:
    if type(values) is not dict:
        raise _Slow
    for k, v in values.items():
        if not k:
            raise _Slow  # betterproto's parse drops an empty-key entry in some cases
        _fill_json(target[k], v)


def _fill_either(target: Any, value: object) -> None:
    """Body and top-level attribute values: an AnyValue JSON object or a plain JSON value."""
    if type(value) is dict and len(value) == 1 and next(iter(value)) in ANY_KEYS:
        _fill_json(target, value)
    elif value is None:
        raise _Slow  # betterproto sets an empty value here; not worth copying
    else:
        _fill(target, value)


def _attributes(target: Any, values: object) -> None:
    if type(values) is not dict:
        raise _Slow
    for k, v in values.items():
        if not k:
            raise _Slow
        _fill_either(target[k], v)


# --- records ---------------------------------------------------------------------------------

def _shorthand(doc: dict[str, Any]) -> Any:
    record = pb.LogRecord()
    used = {"message", "msg", "level", "service", "host", "trace_id", "span_id", "attributes"}
    message = doc["message"] if "message" in doc else doc.get("msg")
    if message is not None:
        body = record.body
        _fill(body, message)
        body.SetInParent()
    level = doc.get("level")
    if level is not None:
        if type(level) is int:
            record.severity_number = level
        elif type(level) is str:
            record.severity_text = level
        else:
            raise _Slow
    for key in _TIME_KEYS:
        if key in doc:
            record.time_unix_nano = parse_time(key, doc[key])
            used.add(key)
            break
    resource = record.resource
    for key, attr in (("service", "service_name"), ("host", "host")):
        value = doc.get(key)
        if value is not None:
            if type(value) is not str:
                raise _Slow
            setattr(resource, attr, value)
    for key, name in (("trace_id", "traceId"), ("span_id", "spanId")):
        value = doc.get(key)
        if value is not None:
            setattr(record, key, base64.b64decode(id_bytes(name, str(value))))
    extra = doc.get("attributes", {})
    if type(extra) is not dict:
        raise _Slow
    merged = dict(extra)
    for key, value in doc.items():
        if key not in used:
            merged[key] = value
    attrs = record.attributes
    for key, value in merged.items():
        if not key:
            raise _Slow  # refused by validation anyway; betterproto drops some such entries
        _fill(attrs[str(key)], value)
    return record


def _full(doc: dict[str, Any]) -> Any:
    if not doc.keys() <= RECORD_KEYS:
        raise _Slow  # the reference path names the unknown field
    record = pb.LogRecord()
    for key, value in doc.items():
        kind = type(value)
        if key in ("timeUnixNano", "observedTimeUnixNano"):
            if kind is not int:
                if value is None or kind is bool:
                    raise _Slow
                value = parse_time(key, value)
            if not 0 <= value < U64:
                raise _Slow
            setattr(record, "time_unix_nano" if key == "timeUnixNano"
                    else "observed_time_unix_nano", value)
        elif key == "severityNumber":
            if kind is str:
                value = severity_from_name(value)
            elif kind is not int:
                raise _Slow
            record.severity_number = value
        elif key in _SCALAR_STRINGS:
            if kind is not str:
                raise _Slow
            setattr(record, _SCALAR_STRINGS[key], value)
        elif key == "body":
            _fill_either(record.body, value)
            record.body.SetInParent()
        elif key == "attributes":
            _attributes(record.attributes, value)
        elif key in ("traceId", "spanId"):
            if kind is not str:
                raise _Slow
            setattr(record, "trace_id" if key == "traceId" else "span_id",
                    base64.b64decode(id_bytes(key, value)))
        elif key in ("flags", "droppedAttributesCount"):
            if kind is not int or not 0 <= value < U32:
                raise _Slow
            setattr(record, "flags" if key == "flags" else "dropped_attributes_count", value)
        elif key == "resource":
            _holder(record.resource, value, _RESOURCE_STRINGS)
        elif key == "scope":
            _holder(record.scope, value, _SCOPE_STRINGS)
        else:
            raise _Slow
    return record


def _holder(target: Any, value: object, strings: dict[str, str]) -> None:
    """A `Resource` or `Scope` object: its strings, attributes and dropped count."""
    if type(value) is not dict:
        raise _Slow
    target.SetInParent()
    for key, v in value.items():
        if key in strings and type(v) is str:
            setattr(target, strings[key], v)
        elif key == "attributes":
            _attributes(target.attributes, v)
        elif key == "droppedAttributesCount" and type(v) is int and 0 <= v < U32:
            target.dropped_attributes_count = v
        else:
            raise _Slow


# --- OTLP/JSON exports -----------------------------------------------------------------------
# OTLP/JSON is proto3 JSON with hex trace/span ids and key/value lists
# ({"key": k, "value": AnyValue}). The fast path below reads the forms exporters write; any
# other spelling (snake_case names, "NaN", a value of an unexpected type) of a record goes
# through the reference converter (`convert.otlp_from_dict`, betterproto), for that record
# alone, so a record it cannot read is refused alone.

_OTLP_RECORD_KEYS = frozenset({
    "timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body",
    "attributes", "droppedAttributesCount", "flags", "traceId", "spanId", "eventName"})
_PAIR_KEYS = frozenset({"key", "value"})
_TIME_FIELDS = {"timeUnixNano": "time_unix_nano", "observedTimeUnixNano": "observed_time_unix_nano"}
_EMPTY: dict[str, Any] = {}
_parse_record = pb.LogRecord.FromString


def _otlp_pairs(target: Any, pairs: object) -> None:
    """Fill a map from OTLP/JSON key/value pairs (the last of duplicate keys wins)."""
    if type(pairs) is not list:
        raise _Slow
    for pair in pairs:
        if type(pair) is not dict or not pair.keys() <= _PAIR_KEYS:
            raise _Slow
        key = pair.get("key", "")
        if type(key) is not str:
            raise _Slow
        if key in target:
            del target[key]
        value = pair.get("value", _EMPTY)
        text = value.get("stringValue") if type(value) is dict and len(value) == 1 else None
        if type(text) is str:  # the common case, inline: a string attribute
            target[key].string_value = text
        else:
            _fill_json(target[key], value, True)


def _otlp_record(doc: object, template: bytes) -> Any:
    """One OTLP/JSON LogRecord as a upb `LogRecord` (`_Slow` for unusual spellings), made
    from `template` (a serialized record holding its resource and scope: one parse costs less
    than copying both). The keys exporters always write are tested first."""
    if type(doc) is not dict or not doc.keys() <= _OTLP_RECORD_KEYS:
        raise _Slow
    record = _parse_record(template)
    for key, value in doc.items():
        kind = type(value)
        if key == "body":
            body = record.body
            text = value.get("stringValue") if kind is dict and len(value) == 1 else None
            if type(text) is str:  # the common case, inline: a string body
                body.string_value = text
            else:
                _fill_json(body, value, True)
                body.SetInParent()
        elif key == "attributes":
            _otlp_pairs(record.attributes, value)
        elif key in _TIME_FIELDS:
            if kind is not str and kind is not int:
                raise _Slow
            number = int(value)
            if not 0 <= number < U64:
                raise _Slow
            setattr(record, _TIME_FIELDS[key], number)
        elif key in _SCALAR_STRINGS:
            if kind is not str:
                raise _Slow
            setattr(record, _SCALAR_STRINGS[key], value)
        elif key == "severityNumber":
            if kind is str:
                value = severity_from_name(value)
            elif kind is not int:
                raise _Slow
            record.severity_number = value
        elif key in ("traceId", "spanId"):
            if kind is not str:
                raise _Slow
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ConversionError(key, f"{value[:64]!r} is not a hex id") from None
            setattr(record, "trace_id" if key == "traceId" else "span_id", raw)
        else:  # flags, droppedAttributesCount
            if kind is not int or not 0 <= value < U32:
                raise _Slow
            setattr(record, "flags" if key == "flags" else "dropped_attributes_count", value)
    return record


def _fill_common(record: Any, doc: object) -> bool:
    """Fill `record` (empty but for its resource and scope) from OTLP/JSON LogRecord `doc` if
    it is in the forms exporters write: string body and attribute values, no duplicate key,
    numbers in range; False (the record partly filled, to be dropped) for anything else, which
    `_otlp_record` reads instead. Where it returns True, the record is the one `_otlp_record`
    makes: the same fields, set the same way, with fewer checks and calls per key (the
    common record is ~0.5 µs cheaper)."""
    if type(doc) is not dict:
        return False
    try:
        for key, value in doc.items():
            kind = type(value)
            if key == "body":
                text = value.get("stringValue") if kind is dict and len(value) == 1 else None
                if type(text) is not str:
                    return False
                record.body.string_value = text
            elif key == "attributes":
                if kind is not list:
                    return False
                attrs = record.attributes
                for pair in value:
                    if type(pair) is not dict or len(pair) != 2:
                        return False
                    name, any_value = pair["key"], pair["value"]
                    text = any_value.get("stringValue") if (
                        type(any_value) is dict and len(any_value) == 1) else None
                    if type(text) is not str or type(name) is not str:
                        return False
                    attrs[name].string_value = text
                if len(attrs) != len(value):
                    return False  # a duplicate key: `_otlp_pairs` keeps the last one
            elif key == "timeUnixNano" or key == "observedTimeUnixNano":
                if kind is not str and kind is not int:
                    return False
                number = int(value)
                if not 0 <= number < U64:
                    return False
                if key == "timeUnixNano":
                    record.time_unix_nano = number
                else:
                    record.observed_time_unix_nano = number
            elif key == "severityText":
                if kind is not str:
                    return False
                record.severity_text = value
            elif key == "severityNumber":
                if kind is not int or not 0 <= value < I32:
                    return False
                record.severity_number = value
            elif key == "traceId" or key == "spanId":
                if kind is not str:
                    return False
                if key == "traceId":
                    record.trace_id = bytes.fromhex(value)
                else:
                    record.span_id = bytes.fromhex(value)
            elif key == "flags" or key == "droppedAttributesCount":
                if kind is not int or not 0 <= value < U32:
                    return False
                if key == "flags":
                    record.flags = value
                else:
                    record.dropped_attributes_count = value
            elif key == "eventName":
                if kind is not str:
                    return False
                record.event_name = value
            else:
                return False
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return False  # e.g. a pair without "value", a lone surrogate, bad hex
    return True


def _otlp_record_slowly(doc: object) -> Any:
    """One OTLP/JSON LogRecord by the reference converter (a `ConversionError` if unreadable)."""
    try:
        records = from_otlp(otlp_from_dict(
            {"resourceLogs": [{"scopeLogs": [{"logRecords": [doc]}]}]}))
    except ConversionError as exc:
        return ConversionError("record", exc.reason if exc.field == "request" else str(exc))
    return records[0] if records else ConversionError("record", "not a LogRecord")


def _otlp_holder(target: Any, doc: object, strings: dict[str, str]) -> None:
    """An OTLP/JSON Resource or InstrumentationScope into its upb counterpart."""
    if doc is None:
        return
    if type(doc) is not dict:
        raise _Slow
    target.SetInParent()
    for key, value in doc.items():
        if key in strings and type(value) is str:
            setattr(target, strings[key], value)
        elif key == "attributes":
            _otlp_pairs(target.attributes, value)
        elif key == "droppedAttributesCount" and type(value) is int and 0 <= value < U32:
            target.dropped_attributes_count = value
        elif key == "entityRefs":
            continue  # not kept (as for protobuf requests, docs/ingest.md)
        else:
            raise _Slow


def _otlp_list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if type(value) is not list:
        raise _Slow
    return value


def pb_records_from_otlp_json(doc: object) -> list[Any]:
    """The records of an OTLP/JSON logs export, as `convert.otlp_records` gives them for the
    protobuf encoding: upb `LogRecord`s with resource and scope attached, a
    `ConversionError` in place of a record that cannot be read. Raises `ConversionError` for
    a document that is not an export request (the reference converter decides those)."""
    if type(doc) is not dict:
        raise ConversionError("request", "an ExportLogsServiceRequest object expected")
    try:
        return _otlp_export(doc)
    except (_Slow, ValueError, TypeError):  # an unusual request: the reference path decides
        return from_otlp(otlp_from_dict(doc))


def pb_records_from_otlp_bytes(data: bytes) -> list[Any]:
    """`pb_records_from_otlp_json` of a serialized OTLP/JSON export (see `_records_from_bytes`),
    with the cyclic garbage collector paused meanwhile. The parsed document has ~5 containers
    per record, alive until the records are made and then freed at once by reference counting
    (a JSON tree holds no cycle); collections in between only promoted them, and every few
    requests the promotions set off a full collection of the process: measured in the gateway,
    two full collections per 20 requests of 1,000 records, ~10 µs per record, where the
    protobuf encoding had none. Nothing awaits in here, so no other task runs while paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _records_from_bytes(data)
    finally:
        if enabled:
            gc.enable()


def _records_from_bytes(data: bytes) -> list[Any]:
    """`pb_records_from_otlp_json` of a serialized OTLP/JSON export, parsed by orjson when
    that gives the same request: for an export the fast path reads whole (every record, the
    forms exporters write). Anything else — a body orjson refuses (bad JSON, NaN, a BOM, UTF-16,
    lone surrogates, nesting deeper than 1024), or one with a record the fast path hands over
    (orjson reads integers beyond 64 bits as floats, which the reference converter would see)
    — is parsed again by `json.loads` and decoded as before, so accepted records, their content
    and every error message are the stdlib path's. Raises what `json.loads` raises."""
    try:
        doc = orjson.loads(data)
        if type(doc) is dict:
            return _otlp_export(doc, strict=True)
    except (orjson.JSONDecodeError, _Slow, ConversionError, ValueError, TypeError,
            OverflowError, RecursionError):
        pass
    return pb_records_from_otlp_json(json.loads(data))


def _otlp_export(doc: dict[str, Any], *, strict: bool = False) -> list[Any]:
    """The records of an export; `strict`: raise instead of handing a record to the reference
    converter or refusing it (the caller starts over from the stdlib's parse)."""
    if not doc.keys() <= {"resourceLogs"}:
        raise _Slow
    out: list[Any] = []
    for resource_logs in _otlp_list(doc, "resourceLogs"):
        if type(resource_logs) is not dict or not resource_logs.keys() <= {
                "resource", "scopeLogs", "schemaUrl"}:
            raise _Slow
        resource = pb.Resource()
        _otlp_holder(resource, resource_logs.get("resource"), {})
        lift_names(resource)  # as convert.otlp_records does
        resource.schema_url = resource_logs.get("schemaUrl", "")
        for scope_logs in _otlp_list(resource_logs, "scopeLogs"):
            if type(scope_logs) is not dict or not scope_logs.keys() <= {
                    "scope", "logRecords", "schemaUrl"}:
                raise _Slow
            scope = pb.Scope()
            _otlp_holder(scope, scope_logs.get("scope"), {"name": "name", "version": "version"})
            scope.schema_url = scope_logs.get("schemaUrl", "")
            holder = pb.LogRecord(resource=resource, scope=scope)
            holder.scope.SetInParent()
            template = holder.SerializeToString()
            items = _otlp_list(scope_logs, "logRecords")
            for item, record in zip(items, _copies(holder, len(items)), strict=True):
                if not _fill_common(record, item):
                    try:
                        record = _otlp_record(item, template)
                    except (ConversionError, RecursionError, _Slow, ValueError, TypeError,
                            OverflowError) as exc:
                        if strict:
                            raise
                        record = _otlp_record_refused_or_slow(item, exc, resource, scope)
                out.append(record)
    return out


def _copies(holder: Any, count: int) -> list[Any]:
    """`count` copies of `holder` (a record with only its resource and scope) made by one upb
    parse of a `LogBatch`: one C call, and records sharing one arena, which are cheaper to
    fill, check and free than as many messages of their own (the protobuf path's records are
    parts of one request message too)."""
    if not count:
        return []
    entry = pb.LogBatch(records=[holder]).SerializeToString()
    return list(pb.LogBatch.FromString(entry * count).records)


def _otlp_record_refused_or_slow(item: object, exc: Exception, resource: Any,
                                 scope: Any) -> Any:
    """A record the fast path did not read (`exc`): the `ConversionError` refusing it, or the
    reference converter's record (or refusal) with `resource` and `scope` attached."""
    if isinstance(exc, ConversionError):
        return exc
    if isinstance(exc, RecursionError):
        return ConversionError("record", "values nested too deeply")
    record = _otlp_record_slowly(item)
    if not isinstance(record, ConversionError):
        record.resource.CopyFrom(resource)
        record.scope.CopyFrom(scope)
        record.scope.SetInParent()
    return record
