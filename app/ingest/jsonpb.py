"""JSON records into the C-backed (upb) `LogRecord`: the one JSON reader of every entry point.

`pb_record_from_json` reads both JSON forms of a record (docs/ingest.md): the proto3 JSON form
of `laas.v1.LogRecord` (lowerCamelCase or the proto field names, `null` for a default, int64
as numbers or strings, plus the LaaS extensions: plain JSON values for the body and attribute
values, hex trace/span ids, RFC 3339 or numeric times, severity names) and the shorthand
`{"message", "level", "ts", "service", "host", "attributes", ...}`. HTTP ingest, Loki and
`_bulk`, normalize (JSON values on `logs.raw`), `laas send` and the demo traffic all call it.
A document that is not a record is a `ConversionError` naming the field; a lone surrogate is
refused here, named as validation names the field (`attributes.k: not valid UTF-8 (lone
surrogate)`), since a upb message cannot hold it. `tests/test_ingest_properties.py` checks
valid full-form documents against protobuf's own proto3 JSON parser (`json_format.ParseDict`).

OTLP/JSON exports (`pb_records_from_otlp_json`, below) are read here too, into the same upb
records, as `json_format.ParseDict` reads them (`tests/test_otlp_json_reader.py`).
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import math
from datetime import datetime
from typing import Any

import orjson

from app.ingest.convert import INT64, ConversionError
from app.ingest.validate import lift_names, severity_number_for
from app.ingest.wire import pb

__all__ = ["RECORD_KEYS", "SHORTHAND_KEYS", "pb_record_from_json", "pb_records_from_otlp_bytes",
           "pb_records_from_otlp_json"]

U32 = 2**32
I32 = 2**31
U64 = 2**64
SURROGATE = "not valid UTF-8 (lone surrogate)"  # as validation says it

# The full form's fields: proto3 JSON name → proto field name (both spellings are accepted).
_RECORD_FIELDS = {
    "timeUnixNano": "time_unix_nano", "observedTimeUnixNano": "observed_time_unix_nano",
    "severityNumber": "severity_number", "severityText": "severity_text", "body": "body",
    "attributes": "attributes", "droppedAttributesCount": "dropped_attributes_count",
    "flags": "flags", "traceId": "trace_id", "spanId": "span_id", "eventName": "event_name",
    "resource": "resource", "scope": "scope"}
_RESOURCE_FIELDS = {"attributes": "attributes",
                    "droppedAttributesCount": "dropped_attributes_count",
                    "serviceName": "service_name", "host": "host", "schemaUrl": "schema_url"}
_SCOPE_FIELDS = {"name": "name", "version": "version", "attributes": "attributes",
                 "droppedAttributesCount": "dropped_attributes_count", "schemaUrl": "schema_url"}
_ANY_FIELDS = {"stringValue": "string_value", "boolValue": "bool_value", "intValue": "int_value",
               "doubleValue": "double_value", "arrayValue": "array_value",
               "kvlistValue": "kvlist_value", "bytesValue": "bytes_value"}


def _both(fields: dict[str, str]) -> dict[str, str]:
    """Either spelling of a field → its proto name."""
    return {**fields, **{name: name for name in fields.values()}}


_RECORD_NAMES = _both(_RECORD_FIELDS)
_RESOURCE_NAMES = _both(_RESOURCE_FIELDS)
_SCOPE_NAMES = _both(_SCOPE_FIELDS)
_ANY_NAMES = _both(_ANY_FIELDS)
RECORD_KEYS = frozenset(_RECORD_FIELDS)  # a document with one of these (only) is the full form
SHORTHAND_KEYS = frozenset({"message", "msg", "level", "ts", "timestamp", "time", "service",
                            "host"})
ANY_KEYS = frozenset(_ANY_NAMES)
_ANY_CAMEL = {name: key for key, name in _ANY_FIELDS.items()}
_RECORD_CAMEL = {name: key for key, name in _RECORD_FIELDS.items()}
_TIME_KEYS = ("ts", "timestamp", "time")
_SHORTHAND_USED = frozenset({"message", "msg", "level", "service", "host", "trace_id",
                             "span_id", "attributes"})


class _Unencodable(ValueError):
    """A lone surrogate in a string or key; `path` is where, below the value being filled
    (`.k[2]`), built up as the exception passes each map entry and list item."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _below(segment: str, exc: Exception) -> _Unencodable:
    return _Unencodable(segment + (exc.path if isinstance(exc, _Unencodable) else ""))


def _refused(field: str, exc: Exception | None = None) -> ConversionError:
    """The `ConversionError` for a lone surrogate under record field `field`."""
    return ConversionError(field + (exc.path if isinstance(exc, _Unencodable) else ""),
                           SURROGATE)


def _shown(key: str) -> str:
    """An attribute key as validation names it: at most 64 characters, NUL as `\\u0000`."""
    return key[:64].replace("\x00", "\\u0000")


def pb_record_from_json(doc: object) -> Any:
    """A upb `pb.LogRecord` from a record's JSON form or the shorthand (see the module).

    The shorthand is `{"message", "level", "ts", "service", "host", "attributes", ...}`; other
    keys become attributes. A document with a full-form key (`RECORD_KEYS`) and no shorthand
    key is the full form. Raises `ConversionError`.
    """
    if not isinstance(doc, dict):
        raise ConversionError("record", "a JSON object expected")
    keys = doc.keys()
    try:
        if not keys & RECORD_KEYS or keys & SHORTHAND_KEYS:
            return _shorthand(doc)
        return _full(doc)
    except RecursionError:
        raise ConversionError("record", "values nested too deeply") from None


# --- scalars -----------------------------------------------------------------------------------

def parse_time(field: str, value: object) -> int:
    """Nanoseconds since the epoch from RFC 3339 text, or a number of s, ms, µs or ns."""
    if isinstance(value, bool):
        raise ConversionError(field, "a timestamp expected")
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConversionError(field, f"{value!r} is not an RFC 3339 timestamp") from exc
        if dt.tzinfo is None:
            raise ConversionError(field, f"{value!r} has no time zone")
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ConversionError(field, f"{value!r} is not a timestamp")
        # Guess the unit from the magnitude (seconds until the year 5138).
        for limit, scale in ((1e11, 1e9), (1e14, 1e6), (1e17, 1e3)):
            if value < limit:
                return int(value * scale)
        return int(value)
    raise ConversionError(field, "a timestamp expected")


def _nanos(field: str, value: object, number: int) -> int:
    """`number`, the time `value` read as nanoseconds, if a fixed64 holds it."""
    if not 0 <= number < U64:
        raise ConversionError(field, f"{value!r} is outside the range of a time "
                                     f"(0 to 2**64-1 ns since 1970)")
    return number


def severity_from_name(value: str, field: str = "severityNumber") -> int:
    """A severity number from its text: a number, `SEVERITY_NUMBER_WARN` or a level name."""
    try:
        return int(value)
    except ValueError:
        pass
    number = severity_number_for(value.removeprefix("SEVERITY_NUMBER_"))
    if not number and value != "SEVERITY_NUMBER_UNSPECIFIED":
        raise ConversionError(field, f"{value!r} is not a severity")
    return number


def _severity(field: str, value: object) -> int:
    if isinstance(value, str):
        value = severity_from_name(value, field)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise ConversionError(field, "a severity number or name expected")
    if not -I32 <= value < I32:
        raise ConversionError(field, f"{value} is outside the int32 range of a severity number")
    return value


def _uint32(field: str, value: object) -> int:
    """A uint32 field: an integer, or its decimal text (proto3 JSON allows both)."""
    number = value if type(value) is int else None
    if type(value) is str and value.isascii() and value.isdigit():
        number = int(value)
    if number is None or not 0 <= number < U32:
        raise ConversionError(field, f"{value!r} is not a uint32 (0 to {U32 - 1})")
    return number


def id_bytes(field: str, value: str) -> bytes:
    """A trace/span id in hex (as OTLP/JSON writes it) or base64 (proto3 JSON)."""
    hex_len = 32 if field == "traceId" else 16
    if len(value) == hex_len:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConversionError(field, "neither hex nor base64") from exc


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConversionError(field, "a string expected")
    return value


# --- plain JSON values -------------------------------------------------------------------------

def _fill(target: Any, value: object) -> None:
    """Set AnyValue `target` from a plain JSON value (as `laas_client.to_any` would)."""
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
            try:
                _fill(values[str(k)], v)
            except (UnicodeEncodeError, _Unencodable) as exc:
                raise _below(f".{_shown(str(k))}", exc) from None
    elif kind is list:
        _fill_items(target, value)  # type: ignore[arg-type]
    else:
        _fill_other(target, value)


def _fill_items(target: Any, items: list[Any] | tuple[Any, ...]) -> None:
    arr = target.array_value
    arr.SetInParent()
    add = arr.values.add
    for i, v in enumerate(items):
        try:
            _fill(add(), v)
        except (UnicodeEncodeError, _Unencodable) as exc:
            raise _below(f"[{i}]", exc) from None


def _fill_other(target: Any, value: object) -> None:
    """Python values a JSON parser does not make (callers in Python: the demo traffic)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        _fill(target, int(value))
    elif isinstance(value, float):
        target.double_value = float(value)
    elif isinstance(value, str):
        target.string_value = str(value)
    elif isinstance(value, bytes | bytearray):
        target.bytes_value = bytes(value)
    elif isinstance(value, dict):
        _fill(target, dict(value))
    elif isinstance(value, list | tuple):
        _fill_items(target, value)
    else:
        target.string_value = str(value)


# --- AnyValue JSON ({"stringValue": ...}) ------------------------------------------------------

def _fill_json(target: Any, value: object) -> None:
    """Set AnyValue `target` from its proto3 JSON form in the LaaS form (a kvlist's values are
    a map): `null` is a default and anything else not an AnyValue is a `ConversionError`
    naming the key at fault. (OTLP/JSON's AnyValue, with key/value lists: `_otlp_any`.)"""
    if type(value) is not dict:
        if value is None:
            return
        raise ConversionError("AnyValue", f"{_brief(value)} is not an AnyValue object "
                                          f"(one of {', '.join(_ANY_FIELDS)})")
    if not value:
        return
    if len(value) != 1:
        raise ConversionError("AnyValue", f"one value expected, got {', '.join(value)}")
    ((key, v),) = value.items()
    kind = type(v)
    if key == "stringValue" and kind is str:
        target.string_value = v
    elif key == "intValue" and (kind is int or kind is str):
        try:
            number = int(v)
        except ValueError:
            raise ConversionError(key, f"{_brief(v)} is not an integer") from None
        if not -INT64 <= number < INT64:
            raise ConversionError(key, f"{v} is outside the int64 range")
        target.int_value = number
    elif key == "boolValue" and kind is bool:
        target.bool_value = v
    elif key == "doubleValue" and (kind is float or kind is int):
        try:
            target.double_value = float(v)
        except OverflowError:
            raise ConversionError(key, f"{v} is outside the range of a double") from None
    elif key == "bytesValue" and kind is str:
        try:
            target.bytes_value = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ConversionError(key, "not base64") from None
    elif key == "arrayValue" and kind is dict and v.keys() <= {"values"}:
        arr = target.array_value
        arr.SetInParent()
        items = v.get("values", [])
        if type(items) is not list:
            if items is not None:
                raise ConversionError(key, f"its values: {_brief(items)} is not a list")
            items = []
        add = arr.values.add
        for i, item in enumerate(items):
            try:
                _fill_json(add(), item)
            except (UnicodeEncodeError, _Unencodable) as exc:
                raise _below(f"[{i}]", exc) from None
    elif key == "kvlistValue" and kind is dict and v.keys() <= {"values"}:
        kv = target.kvlist_value
        kv.SetInParent()
        items = v.get("values")
        _fill_json_map(key, kv.values, {} if items is None else items)
    else:
        _fill_json_odd(target, key, v)


def _fill_json_odd(target: Any, key: str, value: object) -> None:
    """The LaaS form's AnyValue members in other spellings (the proto field name, `null`, a
    double as text) or of a wrong type."""
    name = _ANY_NAMES.get(key)
    if name is None:
        raise ConversionError(key, f"unknown field; an AnyValue has one of "
                                   f"{', '.join(_ANY_FIELDS)}")
    if value is None:
        return  # null: the default, an empty AnyValue
    if name == key:  # the proto field name: read as its JSON name, errors naming `key`
        camel = _ANY_CAMEL[key]
        try:
            _fill_json(target, {camel: value})
        except ConversionError as exc:
            if exc.field != camel:
                raise
            raise ConversionError(key, exc.reason) from None
        return
    if name == "double_value" and type(value) is str:
        try:
            target.double_value = float(_DOUBLE_WORDS.get(value, value))
            return
        except ValueError:
            pass
    expected = {"string_value": "a string", "bool_value": "true or false",
                "int_value": "an integer (a number or its decimal text)",
                "double_value": "a number (or \"NaN\", \"Infinity\", \"-Infinity\")",
                "bytes_value": "base64 text", "array_value": "an object {\"values\": [...]}",
                "kvlist_value": "an object {\"values\": {...}}"}[name]
    raise ConversionError(key, f"{_brief(value)} is not {expected}")


_DOUBLE_WORDS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


def _fill_json_map(key: str, target: Any, values: object) -> None:
    if type(values) is not dict:
        raise ConversionError(key, f"its values: {_brief(values)} is not an object")
    for k, v in values.items():
        try:
            _fill_json(target[k], v)
        except (UnicodeEncodeError, _Unencodable) as exc:
            raise _below(f".{_shown(k)}", exc) from None


def _brief(value: object) -> str:
    """A value as an error message quotes it (at most ~40 characters of its JSON)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fill_either(target: Any, value: object) -> None:
    """Body and attribute values of the full form: an AnyValue JSON object (one member, in
    either spelling) or a plain JSON value."""
    if type(value) is dict and len(value) == 1 and next(iter(value)) in ANY_KEYS:
        _fill_json(target, value)
    else:
        _fill(target, value)


def _attributes(field: str, target: Any, values: object) -> None:
    if type(values) is not dict:
        raise ConversionError(field, "an object expected")
    for k, v in values.items():
        try:
            _fill_either(target[k], v)
        except (UnicodeEncodeError, _Unencodable) as exc:
            raise _below(f".{_shown(k)}", exc) from None


# --- records -----------------------------------------------------------------------------------

def _shorthand(doc: dict[str, Any]) -> Any:
    record = pb.LogRecord()
    used = _SHORTHAND_USED
    message = doc["message"] if "message" in doc else doc.get("msg")
    if message is not None:
        body = record.body
        try:
            _fill(body, message)
        except (UnicodeEncodeError, _Unencodable) as exc:
            raise _refused("body", exc) from None
        body.SetInParent()
    level = doc.get("level")
    if level is not None:
        if type(level) is str or isinstance(level, str):
            try:
                record.severity_text = level
            except UnicodeEncodeError:
                raise _refused("severity_text") from None
        elif isinstance(level, int) and not isinstance(level, bool):
            if not -I32 <= level < I32:
                raise ConversionError("level", f"{level} is outside the int32 range of a "
                                               f"severity number")
            record.severity_number = level
        else:
            raise ConversionError("level", "a level name or an OpenTelemetry severity number")
    for key in _TIME_KEYS:
        if key in doc:
            number = parse_time(key, doc[key])
            if not 0 <= number < U64:
                _nanos(key, doc[key], number)
            record.time_unix_nano = number
            used = used | {key}
            break
    resource = record.resource
    for key, name in (("service", "service_name"), ("host", "host")):
        value = doc.get(key)
        if value is not None:
            if type(value) is not str:
                value = _text(key, value)
            try:
                setattr(resource, name, value)
            except UnicodeEncodeError:
                raise _refused(f"resource.{name}") from None
    for key, field in (("trace_id", "traceId"), ("span_id", "spanId")):
        value = doc.get(key)
        if value is not None:
            setattr(record, key, id_bytes(field, str(value)))
    extra = doc.get("attributes", {})
    if type(extra) is not dict:
        raise ConversionError("attributes", "an object expected")
    merged = dict(extra)
    for key, value in doc.items():
        if key not in used:
            merged[key] = value
    attrs = record.attributes
    for key, value in merged.items():
        try:
            _fill(attrs[str(key)], value)
        except (UnicodeEncodeError, _Unencodable) as exc:
            raise _refused(f"attributes.{_shown(str(key))}", exc) from None
    return record


def _full(doc: dict[str, Any]) -> Any:
    if not doc.keys() <= RECORD_KEYS:
        return _full_spelled(doc)
    record = pb.LogRecord()
    for key, value in doc.items():
        if value is None:
            continue  # proto3 JSON: null is the field's default
        if key == "body":
            body = record.body
            try:
                _fill_either(body, value)
            except (UnicodeEncodeError, _Unencodable) as exc:
                raise _refused("body", exc) from None
            body.SetInParent()
        elif key == "attributes":
            try:
                _attributes(key, record.attributes, value)
            except (UnicodeEncodeError, _Unencodable) as exc:
                raise _refused("attributes", exc) from None
        elif key == "timeUnixNano" or key == "observedTimeUnixNano":
            # the full form's integers are nanoseconds; text and floats as `parse_time` says
            number = value if type(value) is int else parse_time(key, value)
            if not 0 <= number < U64:
                _nanos(key, value, number)
            setattr(record, _RECORD_FIELDS[key], number)
        elif key == "severityNumber":
            if type(value) is not int or not -I32 <= value < I32:
                value = _severity(key, value)
            record.severity_number = value
        elif key == "severityText" or key == "eventName":
            if type(value) is not str:
                value = _text(key, value)
            name = _RECORD_FIELDS[key]
            try:
                setattr(record, name, value)
            except UnicodeEncodeError:
                raise _refused(name) from None
        elif key == "traceId" or key == "spanId":
            if not isinstance(value, str):
                raise ConversionError(key, "a hex or base64 string expected")
            setattr(record, _RECORD_FIELDS[key], id_bytes(key, value))
        elif key == "flags" or key == "droppedAttributesCount":
            setattr(record, _RECORD_FIELDS[key], _uint32(key, value))
        elif key == "resource":
            _holder(record.resource, key, value, _RESOURCE_NAMES, "resource")
        else:
            _holder(record.scope, key, value, _SCOPE_NAMES, "scope")
    return record


def _full_spelled(doc: dict[str, Any]) -> Any:
    """`_full` of a document with proto field names (`time_unix_nano`) among its keys, or an
    unknown key; errors name the keys as written."""
    _check_names(doc)
    written = {_RECORD_CAMEL.get(key, key): key for key in doc}
    try:
        return _full({_RECORD_CAMEL.get(key, key): value for key, value in doc.items()})
    except ConversionError as exc:
        if written.get(exc.field, exc.field) == exc.field:
            raise
        raise ConversionError(written[exc.field], exc.reason) from None


def _check_names(doc: dict[str, Any]) -> None:
    """Refuse a full-form document with an unknown field, or one given in both spellings."""
    unknown = doc.keys() - _RECORD_NAMES.keys()
    if unknown:
        raise ConversionError(sorted(unknown)[0] or '""', f"unknown field; a LogRecord has "
                              f"{', '.join(sorted(RECORD_KEYS))}")
    _check_twice(doc, _RECORD_FIELDS, "")


def _check_twice(doc: dict[str, Any], fields: dict[str, str], prefix: str) -> None:
    for json_name, name in fields.items():
        if json_name != name and json_name in doc and name in doc:
            raise ConversionError(f"{prefix}{name}",
                                  f"given twice, as {json_name!r} and as {name!r}")


def _holder(target: Any, field: str, value: object, names: dict[str, str], path: str) -> None:
    """A `Resource` or `Scope` object (`path`: its record field, as validation names it)."""
    if type(value) is not dict:
        raise ConversionError(field, "an object expected")
    target.SetInParent()
    fields = _RESOURCE_FIELDS if path == "resource" else _SCOPE_FIELDS
    for key, v in value.items():
        name = names.get(key)
        if name is None:
            raise ConversionError(f"{field}.{key}", f"unknown field; a {path} has "
                                  f"{', '.join(fields)}")
        if v is None:
            continue
        if name == "attributes":
            try:
                _attributes(f"{field}.{key}", target.attributes, v)
            except (UnicodeEncodeError, _Unencodable) as exc:
                raise _refused(f"{path}.attributes", exc) from None
        elif name == "dropped_attributes_count":
            target.dropped_attributes_count = _uint32(f"{field}.{key}", v)
        else:
            if type(v) is not str:
                v = _text(f"{field}.{key}", v)
            try:
                setattr(target, name, v)
            except UnicodeEncodeError:
                raise _refused(f"{path}.{name}") from None
    if not value.keys() <= fields.keys():
        _check_twice(value, fields, f"{field}.")


# --- OTLP/JSON exports -----------------------------------------------------------------------
# OTLP/JSON is proto3 JSON with hex trace/span ids and key/value lists ({"key": k, "value":
# AnyValue}), read as protobuf's own proto3 JSON parser reads it (`json_format.ParseDict`,
# tests/test_otlp_json_reader.py): lowerCamelCase or proto field names, `null` for a default,
# 64-bit integers as numbers or decimal text, enums by name or number, doubles as numbers or
# "NaN"/"Infinity"/"-Infinity"; unknown fields are ignored, as the OTLP specification requires
# of OTLP/JSON receivers. Records in the forms exporters write are filled by `_fill_common`,
# any other by `_otlp_record`; a record that cannot be read is a `ConversionError` alone
# (its field named; `record` with the path for body and attribute values), an envelope
# (request, ResourceLogs, ScopeLogs, resource, scope) that cannot be read refuses the request.

_OTLP_RECORD_CAMEL = {  # JSON name → proto name
    "timeUnixNano": "time_unix_nano", "observedTimeUnixNano": "observed_time_unix_nano",
    "severityNumber": "severity_number", "severityText": "severity_text", "body": "body",
    "attributes": "attributes", "droppedAttributesCount": "dropped_attributes_count",
    "flags": "flags", "traceId": "trace_id", "spanId": "span_id", "eventName": "event_name"}
_OTLP_RECORD_SNAKE = {name: key for key, name in _OTLP_RECORD_CAMEL.items() if key != name}
_OTLP_RESOURCE_NAMES = _both({"attributes": "attributes",
                              "droppedAttributesCount": "dropped_attributes_count"})
_OTLP_SCOPE_NAMES = _both({"name": "name", "version": "version", "attributes": "attributes",
                           "droppedAttributesCount": "dropped_attributes_count"})
_REQUEST_NAMES = _both({"resourceLogs": "resource_logs"})
_RESOURCE_LOGS_NAMES = _both({"resource": "resource", "scopeLogs": "scope_logs",
                              "schemaUrl": "schema_url"})
_SCOPE_LOGS_NAMES = _both({"scope": "scope", "logRecords": "log_records",
                           "schemaUrl": "schema_url"})
_TIME_FIELDS = {"timeUnixNano": "time_unix_nano", "observedTimeUnixNano": "observed_time_unix_nano"}
_parse_record = pb.LogRecord.FromString


def _otlp_names(doc: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    """`doc`'s known fields by proto name, without nulls (a default) and unknown fields
    (ignored); a field given in both spellings is a `ConversionError`."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = names.get(key)
        if name is None or value is None:
            continue
        if name in out:
            raise ConversionError(f"{where}{name}", "given twice, in both spellings")
        out[name] = value
    return out


def _int(field: str, value: object) -> int:
    """A 64-bit integer field's JSON value: a number or its decimal text."""
    if type(value) is int:
        return value
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            pass
    raise ConversionError(field, f"{_brief(value)} is not an integer")


def _otlp_any(target: Any, value: object) -> None:
    """Set AnyValue `target` from its OTLP/JSON form. Raises `ConversionError` whose field is
    the path below the value (`""`, `.k`, `[2]`, ...)."""
    if type(value) is not dict:
        if value is None:
            return
        raise ConversionError("", f"{_brief(value)} is not an AnyValue object")
    if len(value) == 1:
        ((key, v),) = value.items()
    else:
        members = [(k, v) for k, v in value.items() if v is not None and k in _ANY_NAMES]
        if len(members) > 1:
            raise ConversionError("", f"one value expected, got {', '.join(k for k, _ in members)}")
        if not members:
            return
        ((key, v),) = members
    name = _ANY_NAMES.get(key)
    if name is None or v is None:
        return  # an unknown field (ignored) or null: an empty AnyValue
    kind = type(v)
    try:
        if name == "string_value":
            if kind is not str:
                raise ConversionError("", f"{key}: {_brief(v)} is not a string")
            target.string_value = v
        elif name == "int_value":
            if kind is int:
                number = v
            else:
                try:
                    number = _int("", v)
                except ConversionError as exc:
                    raise ConversionError("", f"{key}: {exc.reason}") from None
            if not -INT64 <= number < INT64:
                raise ConversionError("", f"{key}: {v} is outside the int64 range")
            target.int_value = number
        elif name == "bool_value":
            if kind is not bool:
                raise ConversionError("", f"{key}: {_brief(v)} is not true or false")
            target.bool_value = v
        elif name == "double_value":
            target.double_value = _double(key, v)
        elif name == "bytes_value":
            if kind is not str:
                raise ConversionError("", f"{key}: {_brief(v)} is not base64 text")
            target.bytes_value = _base64(key, v)
        elif name == "array_value":
            arr = target.array_value
            arr.SetInParent()
            add = arr.values.add
            for i, item in enumerate(_values(key, v)):
                try:
                    _otlp_any(add(), item)
                except ConversionError as exc:
                    raise ConversionError(f"[{i}]{exc.field}", exc.reason) from None
        else:
            kv = target.kvlist_value
            kv.SetInParent()
            _otlp_pairs(kv.values, _values(key, v))
    except UnicodeEncodeError:
        raise ConversionError("", SURROGATE) from None


def _double(key: str, value: object) -> float:
    if type(value) is float or type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise ConversionError("", f"{key}: {value} is outside the range of a double") \
                from None
    if type(value) is str:
        try:
            return float(_DOUBLE_WORDS.get(value, value))
        except ValueError:
            pass
    raise ConversionError("", f"{key}: {_brief(value)} is not a number (or \"NaN\", "
                              f"\"Infinity\", \"-Infinity\")")


def _base64(key: str, value: str) -> bytes:
    """proto3 JSON bytes: base64, standard or URL-safe, padding optional."""
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConversionError("", f"{key}: not base64") from None


def _values(key: str, value: object) -> list[Any]:
    """The `values` list of an ArrayValue or KeyValueList."""
    if type(value) is not dict:
        raise ConversionError("", f"{key}: {_brief(value)} is not an object {{\"values\": [...]}}")
    items = value.get("values")
    if items is None:
        return []
    if type(items) is not list:
        raise ConversionError("", f"{key}: its values: {_brief(items)} is not a list")
    return items


def _otlp_pairs(target: Any, pairs: object) -> None:
    """Fill a map from OTLP/JSON key/value pairs (the last of duplicate keys wins). Raises
    `ConversionError` whose field is the path below the list (`.k`, `[2]`)."""
    if type(pairs) is not list:
        raise ConversionError("", f"{_brief(pairs)} is not a list of key/value objects")
    for i, pair in enumerate(pairs):
        if type(pair) is not dict:
            raise ConversionError(f"[{i}]", f"{_brief(pair)} is not a key/value object")
        key = pair.get("key")
        if key is None:
            key = ""
        elif type(key) is not str:
            raise ConversionError(f"[{i}].key", f"{_brief(key)} is not a string")
        try:
            if key in target:
                del target[key]
            value = pair.get("value")
            text = value.get("stringValue") if type(value) is dict and len(value) == 1 else None
            if type(text) is str:  # the common case, inline: a string attribute
                target[key].string_value = text
            else:
                _otlp_any(target[key], value)
        except UnicodeEncodeError:
            raise ConversionError(f".{_shown(key)}", SURROGATE) from None
        except ConversionError as exc:
            raise ConversionError(f".{_shown(key)}{exc.field}", exc.reason) from None


def _otlp_record(doc: object, template: bytes) -> Any:
    """One OTLP/JSON LogRecord as a upb `LogRecord`, made from `template` (a serialized record
    holding its resource and scope: one parse costs less than copying both). Raises
    `ConversionError` naming the field (`record` and the path for body and attribute values).
    The lowerCamelCase names exporters write are tested first."""
    if type(doc) is not dict:
        raise ConversionError("record", f"{_brief(doc)} is not a LogRecord object")
    record = _parse_record(template)
    for key, value in doc.items():
        if value is None:
            continue  # null: the default
        if key not in _OTLP_RECORD_CAMEL:
            camel = _OTLP_RECORD_SNAKE.get(key)
            if camel is None:
                continue  # an unknown field: ignored
            if doc.get(camel) is not None:
                raise ConversionError(key, "given twice, in both spellings")
            key = camel
        kind = type(value)
        if key == "body":
            body = record.body
            text = value.get("stringValue") if kind is dict and len(value) == 1 else None
            try:
                if type(text) is str:
                    body.string_value = text
                else:
                    _otlp_any(body, value)
            except UnicodeEncodeError:
                raise ConversionError("record", f"body: {SURROGATE}") from None
            except ConversionError as exc:
                raise ConversionError("record", f"body{exc.field}: {exc.reason}") from None
            body.SetInParent()
        elif key == "attributes":
            try:
                _otlp_pairs(record.attributes, value)
            except ConversionError as exc:
                raise ConversionError("record", f"attributes{exc.field}: {exc.reason}") \
                    from None
        elif key == "timeUnixNano" or key == "observedTimeUnixNano":
            number = value if kind is int else _int(key, value)
            if not 0 <= number < U64:
                _nanos(key, value, number)
            setattr(record, _TIME_FIELDS[key], number)
        elif key == "severityNumber":
            if kind is not int or not -I32 <= value < I32:
                value = _severity(key, value)
            record.severity_number = value
        elif key == "traceId" or key == "spanId":
            if kind is not str:
                raise ConversionError(key, f"{_brief(value)} is not a hex id")
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ConversionError(key, f"{value[:64]!r} is not a hex id") from None
            if key == "traceId":
                record.trace_id = raw
            else:
                record.span_id = raw
        elif key == "flags":
            record.flags = value if kind is int and 0 <= value < U32 else _uint32(key, value)
        elif key == "droppedAttributesCount":
            record.dropped_attributes_count = (
                value if kind is int and 0 <= value < U32 else _uint32(key, value))
        else:  # severityText, eventName
            if kind is not str:
                value = _text(key, value)
            try:
                setattr(record, _OTLP_RECORD_CAMEL[key], value)
            except UnicodeEncodeError:
                raise ConversionError(key, SURROGATE) from None
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


def _otlp_holder(target: Any, doc: object, names: dict[str, str], where: str) -> None:
    """An OTLP/JSON Resource or InstrumentationScope into its upb counterpart (`where`: its
    place in the request, for errors)."""
    if type(doc) is not dict:
        raise ConversionError(where, f"{_brief(doc)} is not an object")
    target.SetInParent()
    for name, value in _otlp_names(doc, names, f"{where}.").items():
        field = f"{where}.{name}"
        if name == "attributes":
            try:
                _otlp_pairs(target.attributes, value)
            except ConversionError as exc:
                raise ConversionError(f"{field}{exc.field}", exc.reason) from None
        elif name == "dropped_attributes_count":
            target.dropped_attributes_count = _uint32(field, value)
        else:  # a scope's name, version
            try:
                setattr(target, name, _text(field, value))
            except UnicodeEncodeError:
                raise ConversionError(field, SURROGATE) from None


def _otlp_list(doc: dict[str, Any], name: str, where: str) -> list[Any]:
    value = doc.get(name)
    if value is None:
        return []
    if type(value) is not list:
        raise ConversionError(where, f"{_brief(value)} is not a list")
    return value


def _otlp_object(value: object, where: str, names: dict[str, str]) -> dict[str, Any]:
    if type(value) is not dict:
        raise ConversionError(where, f"{_brief(value)} is not an object")
    return _otlp_names(value, names, f"{where}.")


def _schema_url(target: Any, doc: dict[str, Any], where: str) -> None:
    """Set `target.schema_url` from a ResourceLogs' or ScopeLogs' `schemaUrl`."""
    try:
        target.schema_url = _text(f"{where}.schemaUrl", doc.get("schema_url", ""))
    except UnicodeEncodeError:
        raise ConversionError(f"{where}.schemaUrl", SURROGATE) from None


def pb_records_from_otlp_json(doc: object) -> list[Any]:
    """The records of an OTLP/JSON logs export, as `convert.otlp_records` gives them for the
    protobuf encoding: upb `LogRecord`s with resource and scope attached, a
    `ConversionError` in place of a record that cannot be read. Raises `ConversionError` for
    a document that is not an export request, naming the part at fault."""
    if type(doc) is not dict:
        raise ConversionError("request", "an ExportLogsServiceRequest object expected")
    try:
        return _otlp_export(doc)
    except RecursionError:
        raise ConversionError("request", "values nested too deeply") from None


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
    that reads every record. Anything else — a body orjson refuses (bad JSON, NaN, a BOM,
    UTF-16, lone surrogates, nesting deeper than 1024), or one with a record or envelope that is
    refused (orjson reads integers beyond 64 bits as floats, which would be refused for another
    reason) — is parsed again by `json.loads` and decoded from that, so accepted records, their
    content and every error message are the stdlib parse's. Raises what `json.loads` raises."""
    try:
        doc = orjson.loads(data)
        if type(doc) is dict:
            return _otlp_export(doc, strict=True)
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError, RecursionError):
        pass  # ConversionError is a ValueError
    return pb_records_from_otlp_json(json.loads(data))


def _otlp_export(doc: dict[str, Any], *, strict: bool = False) -> list[Any]:
    """The records of an export; `strict`: raise a record's `ConversionError` instead of
    putting it in the record's place (the caller starts over from the stdlib's parse)."""
    out: list[Any] = []
    request = _otlp_names(doc, _REQUEST_NAMES, "")
    for i, item in enumerate(_otlp_list(request, "resource_logs", "resourceLogs")):
        where = f"resourceLogs[{i}]"
        resource_logs = _otlp_object(item, where, _RESOURCE_LOGS_NAMES)
        resource = pb.Resource()
        if "resource" in resource_logs:
            _otlp_holder(resource, resource_logs["resource"], _OTLP_RESOURCE_NAMES,
                         f"{where}.resource")
        lift_names(resource)  # as convert.otlp_records does
        _schema_url(resource, resource_logs, where)
        for j, inner in enumerate(_otlp_list(resource_logs, "scope_logs", f"{where}.scopeLogs")):
            at = f"{where}.scopeLogs[{j}]"
            scope_logs = _otlp_object(inner, at, _SCOPE_LOGS_NAMES)
            scope = pb.Scope()
            if "scope" in scope_logs:
                _otlp_holder(scope, scope_logs["scope"], _OTLP_SCOPE_NAMES, f"{at}.scope")
            _schema_url(scope, scope_logs, at)
            holder = pb.LogRecord(resource=resource, scope=scope)
            holder.scope.SetInParent()
            template = holder.SerializeToString()
            items = _otlp_list(scope_logs, "log_records", f"{at}.logRecords")
            for item, record in zip(items, _copies(holder, len(items)), strict=True):
                if not _fill_common(record, item):
                    try:
                        record = _otlp_record(item, template)
                    except ConversionError as exc:
                        if strict:
                            raise
                        record = exc
                    except RecursionError:
                        if strict:
                            raise
                        record = ConversionError("record", "values nested too deeply")
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
