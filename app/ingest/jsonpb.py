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
from typing import Any

from app.ingest.convert import (
    ANY_KEYS,
    INT64,
    RECORD_KEYS,
    SHORTHAND_KEYS,
    ConversionError,
    id_bytes,
    parse_time,
    record_from_json,
    severity_from_name,
)
from app.ingest.wire import pb

__all__ = ["pb_record_from_json"]

U32 = 2**32
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

def _fill_json(target: Any, value: object) -> None:
    """Set AnyValue `target` from its proto3 JSON form."""
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
        target.int_value = int(v)
    elif key == "boolValue" and kind is bool:
        target.bool_value = v
    elif key == "doubleValue" and (kind is float or kind is int):
        target.double_value = float(v)
    elif key == "bytesValue" and kind is str:
        target.bytes_value = base64.b64decode(v)
    elif key == "arrayValue" and kind is dict and v.keys() <= {"values"}:
        arr = target.array_value
        arr.SetInParent()
        items = v.get("values", [])
        if type(items) is not list:
            raise _Slow
        add = arr.values.add
        for item in items:
            _fill_json(add(), item)
    elif key == "kvlistValue" and kind is dict and v.keys() <= {"values"}:
        kv = target.kvlist_value
        kv.SetInParent()
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
