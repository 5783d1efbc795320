"""HTTP ingest: `POST /api/v1/logs` (NDJSON / JSON) and `POST /v1/logs` (OTLP/HTTP).

Same authentication, limits, rate limits and ack semantics as the gRPC gateway: a 2xx answer
means Kafka acknowledged every accepted record.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.ingest.auth import DatabaseVerifier, Principal
from app.ingest.convert import ConversionError
from app.ingest.errors import IngestError
from app.ingest.http import (
    IDEMPOTENCY_HEADER,
    JSON_TYPE,
    NDJSON_TYPES,
    HTTPError,
    header_map,
    http_error,
    media_type,
    otlp_logs,
    read_body,
    retry_after_header,
)
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.otlp import TOO_DEEP, TOO_LONG
from app.ingest.service import IngestService, Item
from app.ingest.shippers import shipper_document
from app.settings import Settings

# json.loads gives up on deep nesting with a RecursionError (issue 21: 100,000 '[' was a 500)
# and on an integer past Python's int/str conversion limit with a plain ValueError (a 500 too):
# both are 400s naming the cause (TOO_DEEP, TOO_LONG of app.ingest.otlp). A record may nest
# values only 8 deep (app.ingest.validate), so such a document is no record anyway.


def ingest_service(request: Request) -> IngestService:
    """The app's `IngestService` (`app.state.ingest`), made on first use."""
    state = request.app.state
    service: IngestService | None = getattr(state, "ingest", None)
    if service is None:
        settings: Settings = state.settings
        verifier = DatabaseVerifier(state.sessions, ttl=settings.ingest_key_cache_seconds)
        service = state.ingest = IngestService(settings, verifier)
    return service


def _error_response(err: HTTPError) -> JSONResponse:
    headers = retry_after_header(err)
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


async def post_otlp_logs(request: Request) -> Response:
    """`POST /v1/logs`: OTLP/HTTP logs export (app/ingest/http.py, as on the gateway's port)."""
    return await otlp_logs(request, ingest_service(request))


async def principal_of(request: Request) -> Principal:
    """The ingest principal of a request (for other modules that accept logs)."""
    return await ingest_service(request).authenticate(header_map(request))


routes: list[BaseRoute] = [
    Route("/api/v1/logs", post_logs, methods=["POST"]),
    Route("/v1/logs", post_otlp_logs, methods=["POST"]),
]
