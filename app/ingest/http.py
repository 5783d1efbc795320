"""HTTP ingest request handling shared by the web app and the gateway: `POST /v1/logs`
(OTLP/HTTP, protobuf or JSON) over an `IngestService`, and the helpers every HTTP ingest endpoint
uses (errors with their status, the gunzipped body within a limit, headers, media types).

The web app serves `otlp_logs` at `/v1/logs` next to its own endpoints (web/ingest.py); the
gateway serves it on the OTLP/HTTP port (app/ingest/otlp_http.py). Nothing here imports `web`.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.ingest.convert import ConversionError
from app.ingest.errors import (
    BatchRejected,
    IngestError,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from app.ingest.otlp import RpcStatus, decode_export, export_reply
from app.ingest.service import IngestService

NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/x-jsonlines", "application/json-lines", "text/plain"}
JSON_TYPE = "application/json"
PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
# The batch's idempotency key: the same on every retry of one request body (docs/ingest.md).
IDEMPOTENCY_HEADER = "Idempotency-Key"
# google.rpc.Code of an OTLP/HTTP error status
_RPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}


class HTTPError(Exception):
    """A request refused with HTTP `status`; `retry_after` seconds for 429/503."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def http_error(exc: IngestError) -> HTTPError:
    """The HTTP status of an ingest error."""
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


def retry_after_header(err: HTTPError) -> dict[str, str]:
    """`Retry-After` (whole seconds, at least 1) when the error has a delay."""
    if err.retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(err.retry_after)))}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def header_map(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


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


async def otlp_logs(request: Request, service: IngestService) -> Response:
    """`POST /v1/logs`: an OTLP/HTTP logs export, protobuf or JSON encoding (gzip or deflate),
    pushed through `service`; the answer (or error status) in the request's encoding."""
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
                                 path="otlp-http", shared_resources=True)
    except IngestError as exc:
        return otlp_error(http_error(exc), as_json)
    except HTTPError as exc:
        return otlp_error(exc, as_json)
    reply = export_reply(ack)
    if as_json:
        return JSONResponse(reply.to_dict())
    return Response(bytes(reply), media_type="application/x-protobuf")


def otlp_error(err: HTTPError, as_json: bool) -> Response:
    """OTLP/HTTP errors carry a google.rpc.Status in the request's encoding."""
    headers = retry_after_header(err)
    status = RpcStatus(code=_RPC_CODES.get(err.status, 2), message=err.message)
    if as_json:
        body: Any = status.to_dict()
        return JSONResponse(body, status_code=err.status, headers=headers)
    return Response(bytes(status), status_code=err.status, headers=headers,
                    media_type="application/x-protobuf")
