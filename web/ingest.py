"""HTTP ingest: `POST /api/v1/logs` (NDJSON / JSON) and `POST /v1/logs` (OTLP/HTTP).

Same authentication, limits, rate limits and ack semantics as the gRPC gateway: a 2xx answer
means Kafka acknowledged every accepted record.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.ingest.auth import DatabaseVerifier, Principal
from app.ingest.convert import ConversionError
from app.ingest.errors import (
    BatchRejected,
    IngestError,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.otlp import RpcStatus, decode_export, export_reply
from app.ingest.service import IngestService, Item
from app.ingest.shippers import shipper_document
from app.settings import Settings

NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/x-jsonlines", "application/json-lines", "text/plain"}
JSON_TYPE = "application/json"
PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
# The batch's idempotency key: the same on every retry of one request body (docs/ingest.md).
IDEMPOTENCY_HEADER = "Idempotency-Key"
# json.loads gives up on deep nesting with a RecursionError (issue 21: 100,000 '[' was a 500);
# a record may nest values only 8 deep (app.ingest.validate), so such a document is no record.
TOO_DEEP = "arrays or objects nested too deeply"
# ... and an integer past Python's int/str conversion limit with a plain ValueError (a 500 too).
TOO_LONG = f"a number of more than {sys.get_int_max_str_digits()} digits"


def ingest_service(request: Request) -> IngestService:
    """The app's `IngestService` (`app.state.ingest`), made on first use."""
    state = request.app.state
    service: IngestService | None = getattr(state, "ingest", None)
    if service is None:
        settings: Settings = state.settings
        verifier = DatabaseVerifier(state.sessions, ttl=settings.ingest_key_cache_seconds)
        service = state.ingest = IngestService(settings, verifier)
    return service


class HTTPError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def http_error(exc: IngestError) -> HTTPError:
    if isinstance(exc, Unauthenticated):
        return HTTPError(401, str(exc))
    if isinstance(exc, PermissionDenied):
        return HTTPError(403, str(exc))
    if isinstance(exc, RateLimited):
        return HTTPError(429, str(exc), exc.retry_after)
    if isinstance(exc, Unavailable):
        return HTTPError(503, str(exc), exc.retry_after)
    if isinstance(exc, BatchRejected):
        return HTTPError(413 if exc.too_large else 400, exc.reason)
    return HTTPError(400, str(exc))


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The (gunzipped) body, refusing more than `limit` bytes before or after decompression."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"body of {declared} bytes, at most {limit} allowed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body over {limit} bytes, at most {limit} allowed")
        chunks.append(chunk)
    data = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "deflate"):
        raise HTTPError(415, f"content-encoding {encoding!r} not supported; use gzip")
    inflater = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise HTTPError(400, f"body is not valid {encoding}: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise HTTPError(413, f"decompressed body over {limit} bytes, at most {limit} allowed")
    return out


def _error_response(err: HTTPError) -> JSONResponse:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="laas"'
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


def parse_records(media: str, data: bytes) -> tuple[list[Item], str, list[int]]:
    """Decode an /api/v1/logs body: records (or per-record errors), what a position is called,
    and the position of each record.

    NDJSON / text: one record per non-empty line, positions are 1-based line numbers (a plain
    text line is a record whose message is the line). JSON: an array of records or one record,
    positions are 0-based indexes. JSON documents go through the shipper field conventions
    (`app.ingest.shippers.shipper_document`: Fluent Bit's `log`, `@timestamp`, `log.level`...).
    """
    if media in NDJSON_TYPES:
        items: list[Item] = []
        lines: list[int] = []
        for number, raw in enumerate(data.split(b"\n"), 1):
            line = raw.strip()
            if not line:
                continue
            lines.append(number)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                items.append(ConversionError("line", f"not valid UTF-8 at byte {exc.start}"))
                continue
            if media == "text/plain":
                items.append(pb_record_from_json({"message": text}))
                continue
            try:
                items.append(pb_record_from_json(shipper_document(json.loads(text))))
            except json.JSONDecodeError as exc:
                items.append(ConversionError("line", f"not JSON: {exc.msg} at column {exc.colno}"))
            except RecursionError:
                items.append(ConversionError("line", f"not JSON: {TOO_DEEP}"))
            except ConversionError as exc:
                items.append(exc)
            except ValueError:  # after ConversionError, a ValueError too
                items.append(ConversionError("line", f"not JSON: {TOO_LONG}"))
        return items, "line", lines
    doc = json_body(data)
    docs = doc if isinstance(doc, list) else [doc]
    out: list[Item] = []
    for d in docs:
        try:
            out.append(pb_record_from_json(shipper_document(d)))
        except ConversionError as exc:
            out.append(exc)
    return out, "index", list(range(len(out)))


async def post_logs(request: Request) -> Response:
    """`POST /api/v1/logs`: NDJSON, text lines or JSON records; answers accepted + errors."""
    service = ingest_service(request)
    try:
        principal = await service.authenticate(header_map(request))
        key = service.check_idempotency_key(
            (IDEMPOTENCY_HEADER, request.headers.get(IDEMPOTENCY_HEADER)))
        media = media_type(request)
        if media not in NDJSON_TYPES and media != JSON_TYPE:
            raise HTTPError(415, f"content-type {media or 'missing'!r} not supported; send "
                                 "application/x-ndjson, application/json or text/plain")
        data = await read_body(request, service.limits.max_batch_bytes)
        items, position, positions = parse_records(media, data)
        ack = await service.push(principal, items, source="http", idempotency_key=key,
                                 path="http-json" if media == JSON_TYPE else "http-ndjson")
    except IngestError as exc:
        return _error_response(http_error(exc))
    except HTTPError as exc:
        return _error_response(exc)
    errors = [
        {position: positions[r.index], "field": r.field, "reason": r.reason}
        for r in ack.rejections
    ]
    status = 400 if errors and not ack.accepted else 200
    return JSONResponse({"accepted": ack.accepted, "rejected": len(errors), "errors": errors},
                        status_code=status)


def json_body(data: bytes) -> Any:
    """A whole request body as JSON; a 400 saying why it is not."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"body is not JSON: {exc}") from exc
    except RecursionError:
        raise HTTPError(400, f"body is not JSON: {TOO_DEEP}") from None
    except ValueError:
        raise HTTPError(400, f"body is not JSON: {TOO_LONG}") from None


def header_map(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


async def post_otlp_logs(request: Request) -> Response:
    """`POST /v1/logs`: OTLP/HTTP logs export, protobuf or JSON encoding (gzip or deflate)."""
    service = ingest_service(request)
    media = media_type(request)
    as_json = media == JSON_TYPE
    try:
        if media not in PROTOBUF_TYPES and not as_json:
            raise HTTPError(415, f"content-type {media or 'missing'!r} not supported; send "
                                 "application/x-protobuf or application/json")
        principal = await service.authenticate(header_map(request))
        key = service.check_idempotency_key(
            (IDEMPOTENCY_HEADER, request.headers.get(IDEMPOTENCY_HEADER)))
        data = await read_body(request, service.limits.max_batch_bytes)
        try:
            records = decode_export(data, as_json=as_json)
        except ConversionError as exc:
            raise HTTPError(400, f"not an OTLP ExportLogsServiceRequest: {exc}") from exc
        ack = await service.push(principal, records, source="http", idempotency_key=key,
                                 path="otlp-http")
    except IngestError as exc:
        return _otlp_error(http_error(exc), as_json)
    except HTTPError as exc:
        return _otlp_error(exc, as_json)
    reply = export_reply(ack)
    if as_json:
        return JSONResponse(reply.to_dict())
    return Response(bytes(reply), media_type="application/x-protobuf")


def _otlp_error(err: HTTPError, as_json: bool) -> Response:
    """OTLP/HTTP errors carry a google.rpc.Status in the request's encoding."""
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    code = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}.get(err.status, 2)
    status = RpcStatus(code=code, message=err.message)
    if as_json:
        body: Any = status.to_dict()
        return JSONResponse(body, status_code=err.status, headers=headers)
    return Response(bytes(status), status_code=err.status, headers=headers,
                    media_type="application/x-protobuf")


async def principal_of(request: Request) -> Principal:
    """The ingest principal of a request (for other modules that accept logs)."""
    return await ingest_service(request).authenticate(header_map(request))


routes: list[BaseRoute] = [
    Route("/api/v1/logs", post_logs, methods=["POST"]),
    Route("/v1/logs", post_otlp_logs, methods=["POST"]),
]
