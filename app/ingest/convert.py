"""Conversions into `laas.v1.LogRecord`: OTLP protobuf requests and protobuf batches.

JSON (records in the full form and the shorthand, OTLP/JSON exports) is read by
`app.ingest.jsonpb`, the one JSON reader; `ConversionError` is the error of both modules.

OTLP mapping (lossless): every OpenTelemetry `LogRecord` field keeps its name and meaning (the
LaaS message is wire-compatible with it); the `ResourceLogs.resource` becomes `record.resource`
(with `service.name` / `host.name` lifted into `service_name` / `host` by validation) and
`ResourceLogs.schema_url` its `schema_url`; `ScopeLogs.scope` becomes `record.scope` and
`ScopeLogs.schema_url` its `schema_url`. Key/value lists become maps (OTLP requires unique keys;
on a duplicate the last one wins).
"""

from __future__ import annotations

from typing import Any

import betterproto
from google.protobuf.unknown_fields import UnknownFieldSet
from laas_client.values import INT64

from app.ingest import wire
from app.ingest.validate import MAX_DEPTH as MAX_VALUE_DEPTH
from app.ingest.validate import lift_names, which
from protos.laas.v1 import AnyValue, LogRecord

__all__ = ["INT64", "ConversionError", "decode_batch", "from_any", "otlp_records"]


class ConversionError(ValueError):
    """A JSON document that is not a record; `field` names the offending part."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- Python values ---------------------------------------------------------------------------

def from_any(value: AnyValue) -> object:
    """The plain Python value of an `AnyValue` (the inverse of `to_any`)."""
    kind, inner = which(value)
    if kind == "array_value":
        return [from_any(v) for v in inner.values]
    if kind == "kvlist_value":
        return {k: from_any(v) for k, v in inner.values.items()}
    return inner if kind else None


# --- OTLP ------------------------------------------------------------------------------------

def otlp_records(data: bytes) -> list[Any]:
    """The records of a serialized OTLP `ExportLogsServiceRequest`, in order, each with its
    resource and scope attached (upb `LogRecord`s, see `app.ingest.wire`), or a
    `ConversionError` in place of a record that does not parse (it is rejected alone).

    The request, its `ResourceLogs` and `ScopeLogs` are split field by field and each record is
    parsed by upb: betterproto's parser takes a wrong wire type without complaint and leaves a
    number or None where a message belongs (issue 21: the body `08 01` was a 500). Raises
    `ConversionError` naming the part whose framing is broken. Unknown fields are dropped (a
    resource's `entity_refs` too), as the OTLP mapping in docs/ingest.md says.

    The whole request is first parsed in one upb call (`OtlpExportRequest`, wire-compatible
    with OTLP); only a request that fails to parse, or has a known envelope field with the
    wrong wire type (`_misplaced`), is split as above to find the bad records.
    """
    try:
        request = wire.pb.OtlpExportRequest.FromString(data)
    except Exception:  # noqa: BLE001 - find out below which part is at fault
        return _otlp_records_split(data)
    if _misplaced(request):
        # A known field of the envelope with another wire type: upb keeps it as an unknown
        # field (`08 01` would be an empty request); the field-by-field path names it.
        return _otlp_records_split(data)
    request.DiscardUnknownFields()
    out: list[Any] = []
    for resource_logs in request.resource_logs:
        resource = resource_logs.resource
        for name in ("service_name", "host"):  # not OTLP fields: nothing may set them here
            resource.ClearField(name)
        lift_names(resource)  # what validation would do to each record's copy
        resource.schema_url = resource_logs.schema_url
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope.schema_url = scope_logs.schema_url
            for record in scope_logs.log_records:
                record.resource.CopyFrom(resource)
                record.scope.CopyFrom(scope)
                record.scope.SetInParent()
                out.append(record)
    return out


def _misplaced(request: Any) -> bool:
    """Whether a field number the request, a `ResourceLogs` or a `ScopeLogs` defines is among
    its unknown fields (so it came with another wire type), or an unknown group. Other unknown
    fields are dropped, as the field-by-field path drops them; inside resources, scopes and
    records upb decides in both paths. A message field given twice is merged in both."""
    if _odd(request, (1,)):
        return True
    for resource_logs in request.resource_logs:
        if _odd(resource_logs, (1, 2, 3)):
            return True
        for scope_logs in resource_logs.scope_logs:
            if _odd(scope_logs, (1, 2, 3)):
                return True
    return False


def _odd(message: Any, numbers: tuple[int, ...]) -> bool:
    """An unknown field of `message` that is one of its `numbers`, or a group (which the
    field-by-field path refuses)."""
    return any(f.field_number in numbers or f.wire_type == 3 for f in UnknownFieldSet(message))


def _otlp_records_split(data: bytes) -> list[Any]:
    """`otlp_records` field by field, each record parsed alone (see there)."""
    out: list[Any] = []
    for i, resource_logs in enumerate(_submessages(data, "request", {1: "resource_logs"})):
        where = f"resource_logs[{i}]"
        parts = _parts(resource_logs, where, {1: "resource", 2: "scope_logs", 3: "schema_url"})
        resource = _message(wire.pb.Resource, b"".join(parts.get(1, [])), f"{where}.resource")
        for name in ("service_name", "host"):  # not OTLP fields: nothing may set them here
            resource.ClearField(name)
        lift_names(resource)
        resource.schema_url = _text(parts.get(3, [b""])[-1], f"{where}.schema_url")
        for j, scope_logs in enumerate(parts.get(2, [])):
            at = f"{where}.scope_logs[{j}]"
            inner = _parts(scope_logs, at, {1: "scope", 2: "log_records", 3: "schema_url"})
            scope = _message(wire.pb.Scope, b"".join(inner.get(1, [])), f"{at}.scope")
            scope.schema_url = _text(inner.get(3, [b""])[-1], f"{at}.schema_url")
            for raw in inner.get(2, []):
                try:
                    record = wire.pb.LogRecord.FromString(raw)
                except Exception as exc:  # noqa: BLE001 - this record alone is refused
                    out.append(_record_error(raw, exc))
                    continue
                record.DiscardUnknownFields()
                record.resource.CopyFrom(resource)
                record.scope.CopyFrom(scope)
                record.scope.SetInParent()
                out.append(record)
    return out


def _submessages(data: bytes, where: str, names: dict[int, str]) -> list[bytes]:
    return _parts(data, where, names).get(1, [])


def _parts(data: bytes, where: str, names: dict[int, str]) -> dict[int, list[bytes]]:
    """The length-delimited fields `names` (number → name) of a message, by number, in order;
    other fields are skipped. A known field with another wire type is a `ConversionError`."""
    found: dict[int, list[bytes]] = {}
    for number, wire_type, value in _fields(data, where):
        if number not in names:
            continue
        if wire_type != 2:
            raise ConversionError(f"{where}.{names[number]}",
                                  f"wire type {wire_type} where a length-delimited field "
                                  f"(2) belongs: not an OTLP logs request")
        found.setdefault(number, []).append(value)
    return found


_FIXED = {1: 8, 5: 4}


def _fields(data: bytes, where: str) -> list[tuple[int, int, bytes]]:
    """(number, wire type, bytes of a length-delimited value) of each field of a message.

    Strict where betterproto's `parse_fields` is lax: a length past the end of the data (a
    truncated message), a field number 0 or a group is a `ConversionError`."""
    out: list[tuple[int, int, bytes]] = []
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = betterproto.decode_varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise ValueError(f"field number 0 at byte {pos}")
            value = b""
            if wire_type == 0:
                _, pos = betterproto.decode_varint(data, pos)
            elif wire_type == 2:
                size, start = betterproto.decode_varint(data, pos)
                pos = start + size
                value = data[start:pos]
            elif wire_type in _FIXED:
                pos += _FIXED[wire_type]
            else:
                raise ValueError(f"wire type {wire_type} (groups are not used by OTLP)")
            if pos > end:
                raise ValueError(f"field {number} runs past the end of the data "
                                 f"({end} bytes): truncated")
            out.append((number, wire_type, value))
    except Exception as exc:  # noqa: BLE001 - any framing error means the same to the caller
        raise ConversionError(where, f"not a protobuf message: {exc}") from exc
    return out


def _message(cls: Any, data: bytes, where: str) -> Any:
    try:
        message = cls.FromString(data)
    except Exception as exc:  # noqa: BLE001 - upb's DecodeError, nesting too deep, ...
        raise ConversionError(where, f"not a valid message: {exc}") from exc
    message.DiscardUnknownFields()
    return message


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConversionError(where, f"not valid UTF-8 at byte {exc.start}") from exc


# --- protobuf batches, record by record ------------------------------------------------------

def decode_batch(data: bytes) -> tuple[list[Any], list[int], Any, int, str]:
    """Split a serialized `LogBatch` without failing on one bad record.

    Returns the records as upb `LogRecord`s (`app.ingest.wire.pb`; a `ConversionError` in place
    of a record that does not parse, e.g. for invalid UTF-8), their serialized sizes, the batch's
    default resource (None when it has none), its batch id and its idempotency key ("" when
    none; not validated here). The whole batch is parsed in one
    C call; only a batch that fails to parse is split record by record to find the bad ones.
    Raises `ConversionError` if the batch framing itself is broken.
    """
    try:
        batch = wire.pb.LogBatch.FromString(data)
    except Exception:  # noqa: BLE001 - find out below which record is at fault
        pass
    else:
        records: list[Any] = list(batch.records)
        sizes = [r.ByteSize() for r in records]
        return (records, sizes, batch.resource if batch.HasField("resource") else None,
                batch.batch_id, batch.idempotency_key)
    records = []
    sizes = []
    resource = None
    batch_id = 0
    key = ""
    try:
        fields = list(betterproto.parse_fields(data))
    except Exception as exc:  # noqa: BLE001 - any framing error means the same to the caller
        raise ConversionError("batch", f"not a serialized LogBatch: {exc!r}") from exc
    for f in fields:
        if f.number == 1 and f.wire_type == 2:
            sizes.append(len(f.value))
            try:
                records.append(wire.pb.LogRecord.FromString(f.value))
            except Exception as exc:  # noqa: BLE001
                records.append(_record_error(f.value, exc))
        elif f.number == 2 and f.wire_type == 2:
            try:
                resource = wire.pb.Resource.FromString(f.value)
            except Exception as exc:  # noqa: BLE001
                raise ConversionError("resource", f"not a Resource: {exc!r}") from exc
        elif f.number == 3 and f.wire_type == 0:
            batch_id = f.value
        elif f.number == 4 and f.wire_type == 2:
            try:
                key = f.value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConversionError("idempotency_key", "not valid UTF-8") from exc
    return records, sizes, resource, batch_id, key


def _record_error(data: bytes, exc: Exception) -> ConversionError:
    """Why one record does not parse (betterproto names the UTF-8 position, upb does not)."""
    if "MaxDepth" in str(exc):  # upb stops at 100 nested messages (an AnyValue is 2 a level)
        return ConversionError("record", f"values nested too deeply to decode; at most "
                               f"{MAX_VALUE_DEPTH} levels are allowed")
    try:
        LogRecord().parse(data)
    except UnicodeDecodeError as err:
        return ConversionError("record", f"not valid UTF-8: {err.reason} at byte {err.start}")
    except RecursionError:
        return ConversionError("record", f"values nested too deeply to decode; at most "
                               f"{MAX_VALUE_DEPTH} levels are allowed")
    except Exception as err:  # noqa: BLE001
        return ConversionError("record", f"not a LogRecord: {err!r}")
    return ConversionError("record", f"not a LogRecord: {exc}")
