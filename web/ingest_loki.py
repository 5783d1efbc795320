"""Loki-compatible push: `POST /loki/api/v1/push`, JSON or snappy-compressed protobuf.

Promtail, Grafana Alloy, Fluent Bit's `loki` output, Vector's `loki` sink, python-logging-loki
and the like ship here unchanged; only the URL and the credentials (an ingest key as bearer
token or basic-auth password) are ours. Stream labels become service, host, level and
attributes (`app.ingest.shippers.labels_record`), structured metadata attributes, each entry
one record. Answers as Loki does: 204 when every entry was accepted, a plain-text 4xx saying
what was wrong otherwise; the valid entries of a request with bad ones are still accepted
(as Loki's distributor does), and a 2xx or a 400 for some entries both mean Kafka acknowledged
the accepted ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import betterproto
import cramjam
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from app.ingest.convert import ConversionError
from app.ingest.errors import IngestError
from app.ingest.http import (
    JSON_TYPE,
    PROTOBUF_TYPES,
    HTTPError,
    header_map,
    http_error,
    media_type,
    read_body,
    retry_after_header,
)
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.service import Item
from app.ingest.shippers import labels_record
from app.query.parser import printable
from protos.loki import push_pb2
from web.ingest import ingest_service, json_body
from web.openapi_schemas import ANY_MAP, KEY_ONLY, STR, Spec

PUSH_PATH = "/loki/api/v1/push"
MAX_ERRORS_SHOWN = 10
MAX_NS = 2**64  # a record's time is an unsigned 64-bit count of nanoseconds
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class Where:
    """Where an entry sits in the push request, for error messages."""

    stream: int
    entry: int
    labels: str


def parse_labels(text: str) -> dict[str, str]:
    """Prometheus label text `{job="x", host="y"}` as a dict; `ConversionError` if malformed."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ConversionError("labels", f"{_cut(text)!r} is not {{name=\"value\", ...}}")
    body = body[1:-1]
    out: dict[str, str] = {}
    pos, end = 0, len(body.rstrip())  # not body[pos:].strip() per label: quadratic (issue 21)
    while pos < end:
        match = _LABEL.match(body, pos)
        if match is None:
            raise ConversionError("labels", f"malformed label at character {pos + 1} of "
                                  f"{_cut(text)!r}; expected name=\"value\"")
        out[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ConversionError("labels", f"',' expected at character {pos + 1} of "
                                      f"{_cut(text)!r}")
            pos += 1
    return out


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)


def _cut(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "..."


def entry_record(fields: dict[str, Any], line: str, ts_ns: int,
                 metadata: dict[str, str] | None) -> Any:
    """One Loki entry as a record: the stream's label fields, the line, time and metadata."""
    attributes = dict(fields["attributes"])
    if metadata:
        attributes.update(metadata)
    record = pb_record_from_json({**fields, "message": line, "attributes": attributes})
    record.time_unix_nano = ts_ns  # always nanoseconds (no unit guessing as for "ts")
    return record


# --- JSON ------------------------------------------------------------------------------------

def decode_json(data: bytes) -> tuple[list[Item], list[Where]]:
    """The entries of a JSON push body (`{"streams": [{"stream": {...}, "values": [...]}]}`)."""
    doc = json_body(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise HTTPError(400, 'body is not a Loki push request: {"streams": [...]} expected')
    items: list[Item] = []
    where: list[Where] = []
    for s, stream in enumerate(doc["streams"]):
        labels = stream.get("stream") if isinstance(stream, dict) else None
        values = stream.get("values") if isinstance(stream, dict) else None
        shown = json.dumps(labels, ensure_ascii=False)[:200] if labels is not None else "?"
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            items.append(ConversionError(f"streams[{s}].stream",
                                         "an object of string labels expected"))
            where.append(Where(s, 0, shown))
            continue
        if not isinstance(values, list):
            items.append(ConversionError(f"streams[{s}].values",
                                         "a list of [timestamp, line] expected"))
            where.append(Where(s, 0, shown))
            continue
        fields = labels_record(labels)
        for e, value in enumerate(values):
            where.append(Where(s, e, shown))
            try:
                items.append(_json_entry(fields, value))
            except ConversionError as exc:
                items.append(exc)
    return items, where


def _json_entry(fields: dict[str, Any], value: object) -> Any:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ConversionError("values", "an entry is [\"<unix ns>\", \"<line>\"] or "
                              "[\"<unix ns>\", \"<line>\", {structured metadata}]")
    ts, line = value[0], value[1]
    metadata = value[2] if len(value) == 3 else None
    if isinstance(ts, str) and ts.isascii() and ts.isdigit() and len(ts) <= 20:  # < 2**64
        ts = int(ts)  # ("²" is a digit int() refuses; 5,000 digits past int()'s limit: 500s)
    if type(ts) is not int or not 0 <= ts < MAX_NS:
        raise ConversionError("timestamp", f"{_cut(str(ts))!r} is not a number of nanoseconds "
                              "since the epoch (as a string)")
    if not isinstance(line, str):
        raise ConversionError("line", "a string expected")
    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values())):
        raise ConversionError("structured_metadata", "an object of strings expected")
    return entry_record(fields, line, ts, metadata)


# --- protobuf --------------------------------------------------------------------------------

def snappy_block(data: bytes, limit: int) -> bytes:
    """Uncompress a snappy block (Loki's protobuf framing), refusing more than `limit` bytes."""
    size, shift = 0, 0
    for i, byte in enumerate(data[:10]):  # the block starts with its length as a varint
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
        if i == 9:
            raise HTTPError(400, "body is not snappy-compressed (block format): bad length")
    if size > limit:
        raise HTTPError(413, f"uncompressed body of {size} bytes, at most {limit} allowed")
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:  # noqa: BLE001 - cramjam raises its own DecompressionError
        raise HTTPError(400, f"body is not snappy-compressed (block format): {exc}") from exc


def decode_protobuf(data: bytes) -> tuple[list[Item], list[Where]]:
    """The entries of a (decompressed) protobuf `PushRequest`; a stream or entry that does not
    parse is refused alone, the request framing must hold."""
    try:
        streams = list(push_pb2.PushRequest.FromString(data).streams)
    except Exception:  # noqa: BLE001 - find out below which part is at fault
        streams = []
        for raw in _fields(data, "request", 1):
            try:
                streams.append(push_pb2.StreamAdapter.FromString(raw))
            except Exception:  # noqa: BLE001
                streams.append(raw)  # split further below
    items: list[Item] = []
    where: list[Where] = []
    for s, stream in enumerate(streams):
        if isinstance(stream, bytes):
            _broken_stream(stream, s, items, where)
            continue
        try:
            labels = parse_labels(stream.labels)
        except ConversionError as exc:
            items.append(exc)
            where.append(Where(s, 0, _cut(stream.labels)))
            continue
        fields = labels_record(labels)
        for e, entry in enumerate(stream.entries):
            where.append(Where(s, e, stream.labels))
            items.append(_pb_entry(fields, entry))
    return items, where


def _pb_entry(fields: dict[str, Any], entry: Any) -> Item:
    stamp = entry.timestamp
    ts_ns = stamp.seconds * 1_000_000_000 + stamp.nanos
    if stamp.seconds < 0 or not 0 <= stamp.nanos < 1_000_000_000 or ts_ns >= MAX_NS:
        return ConversionError("timestamp", f"{stamp.seconds}s {stamp.nanos}ns is not a time "
                               "between the epoch and the year 2554")
    metadata = {m.name: m.value for m in entry.structuredMetadata}
    try:
        return entry_record(fields, entry.line, ts_ns, metadata)
    except ConversionError as exc:
        return exc


def _broken_stream(raw: bytes, s: int, items: list[Item], where: list[Where]) -> None:
    """A `StreamAdapter` upb refused (invalid UTF-8, say): its entries one by one."""
    try:
        labels_raw = b"".join(_fields(raw, f"streams[{s}]", 1)) or b"{}"
        entries = _fields(raw, f"streams[{s}]", 2)
    except ConversionError as exc:
        items.append(exc)
        where.append(Where(s, 0, "?"))
        return
    try:
        text = labels_raw.decode("utf-8")
        fields = labels_record(parse_labels(text))
    except (UnicodeDecodeError, ConversionError) as exc:
        items.append(exc if isinstance(exc, ConversionError)
                     else ConversionError("labels", f"not valid UTF-8 at byte {exc.start}"))
        where.append(Where(s, 0, "?"))
        return
    for e, raw_entry in enumerate(entries):
        where.append(Where(s, e, text))
        try:
            entry = push_pb2.EntryAdapter.FromString(raw_entry)
        except Exception as exc:  # noqa: BLE001 - this entry alone is refused
            items.append(ConversionError("entry", f"not a Loki EntryAdapter (invalid UTF-8 in "
                                         f"its line or metadata?): {exc}"))
            continue
        items.append(_pb_entry(fields, entry))


def _fields(data: bytes, where: str, number: int) -> list[bytes]:
    """The length-delimited fields `number` of a message (its framing must be sound)."""
    try:
        fields = list(betterproto.parse_fields(data))
    except Exception as exc:  # noqa: BLE001 - any framing error means the same to the caller
        raise ConversionError(where, f"not a protobuf message: {exc!r}") from exc
    return [f.value for f in fields if f.number == number and f.wire_type == 2]


# --- the endpoint ----------------------------------------------------------------------------

async def post_push(request: Request) -> Response:
    """`POST /loki/api/v1/push`: Loki's push API (the tenant comes from the key only)."""
    service = ingest_service(request)
    try:
        principal = await service.authenticate(header_map(request))
        media = media_type(request)
        if media != JSON_TYPE and media not in PROTOBUF_TYPES and media != "":
            raise HTTPError(415, f"content-type {media!r} not supported; send "
                                 "application/x-protobuf (snappy) or application/json")
        limit = service.limits.max_batch_bytes
        data = await read_body(request, limit)
        try:
            if media == JSON_TYPE:
                items, where = decode_json(data)
            else:
                items, where = decode_protobuf(snappy_block(data, limit))
        except ConversionError as exc:
            raise HTTPError(400, f"body is not a Loki PushRequest: {exc}") from exc
        ack = await service.push(principal, items, source="http", path="loki")
    except IngestError as exc:
        return _error(http_error(exc))
    except HTTPError as exc:
        return _error(exc)
    if not ack.rejections:
        return Response(status_code=204)
    shown = []
    for r in ack.rejections[:MAX_ERRORS_SHOWN]:
        at = where[r.index]
        shown.append(f"stream {at.stream} {at.labels} entry {at.entry}: {r.field}: {r.reason}")
    more = len(ack.rejections) - len(shown)
    text = (f"{len(ack.rejections)} of {len(items)} entries rejected, {ack.accepted} accepted: "
            + "; ".join(shown) + (f"; and {more} more" if more > 0 else ""))
    return PlainTextResponse(printable(text) + "\n", status_code=400)  # labels echoed


def _error(err: HTTPError) -> Response:
    return PlainTextResponse(printable(err.message) + "\n", status_code=err.status,
                             headers=retry_after_header(err))


routes: list[BaseRoute] = [Route(PUSH_PATH, post_push, methods=["POST"])]

TEXT_ERROR = {"text/plain": {"schema": STR}}
openapi: dict[tuple[str, str], Spec] = {
    ("POST", PUSH_PATH): {
        "summary": "Loki push API: JSON or snappy-compressed protobuf", "tags": ["ingest"],
        "security": KEY_ONLY,
        "description": "Grafana Loki's `POST /loki/api/v1/push` for Loki shippers (Promtail, "
        "Alloy, Fluent Bit, Vector...): `application/json` (`{\"streams\": [{\"stream\": "
        "{labels}, \"values\": [[\"<unix ns>\", \"<line>\", {metadata}]]}]}`, gzip allowed) or "
        "`application/x-protobuf` (a snappy block of `logproto.PushRequest`). The key may also "
        "be the basic-auth password. Stream labels become service, host, level and attributes "
        "(docs/ingest.md). 204 when every entry was accepted; a text 400 names the rejected "
        "entries, the others being accepted.",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": ANY_MAP},
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        }},
        "responses": {
            "204": {"description": "every entry accepted (Kafka acknowledged them)"},
            **{code: {"description": text, "content": TEXT_ERROR} for code, text in (
                ("400", "body not decodable, or some entries rejected (the rest accepted)"),
                ("401", "no valid API key"), ("403", "the key may not ingest"),
                ("413", "body or batch over the limits"),
                ("415", "content type or encoding not supported"),
                ("429", "the tenant's ingest rate is exhausted"),
                ("503", "Kafka did not acknowledge in time"))},
        },
    },
}
