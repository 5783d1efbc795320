"""Elasticsearch-compatible bulk ingest: `POST|PUT /_bulk` and `/{index}/_bulk`.

Beats, Logstash, Fluent Bit's `es` output, Vector's `elasticsearch` sink and elasticsearch-py's
`helpers.bulk` ship here with only the URL and an ingest key (bearer, basic-auth password or
`ApiKey`) configured. `index` and `create` actions become records (shipper field conventions
of `app.ingest.shippers`); other actions, malformed lines and invalid documents get a per-item
error and never cost the valid items of the request. The answer has the shape those clients
read (`took`, `errors`, `items[].{action}.status/error`) and every answer carries
`X-Elastic-Product: Elasticsearch` (elasticsearch-py refuses servers without it).

Besides `_bulk`, the few calls clients make before they send: `GET /` (version info, to ES
clients only: a browser still gets the web UI), `GET /_license`, `GET /_cluster/health`, and
index template / ILM policy set-up calls, which are acknowledged and ignored (LaaS has its own
index layout).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.ingest.auth import Principal
from app.ingest.convert import ConversionError
from app.ingest.errors import IngestError
from app.ingest.http import (
    JSON_TYPE,
    NDJSON_TYPES,
    HTTPError,
    header_map,
    http_error,
    media_type,
    read_body,
    retry_after_header,
)
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.service import Item
from app.ingest.shippers import shipper_document
from app.query.parser import printable
from web import ui
from web.ingest import TOO_DEEP, TOO_LONG, ingest_service
from web.openapi_schemas import ANY_MAP, BOOL, INT, KEY_ONLY, STR, Spec, json_content, obj, path_id

# The version clients are told: 8.x wire format (elasticsearch-py 8, Beats/Logstash 8).
ES_VERSION = "8.19.0"
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
BULK_TYPES = NDJSON_TYPES | {JSON_TYPE, "application/vnd.elasticsearch+x-ndjson",
                             "application/vnd.elasticsearch+json"}
WRITE_ACTIONS = ("index", "create")
ACTIONS = ("index", "create", "update", "delete")
# User agents of shippers that ask `GET /` for the version (besides JSON Accept headers).
ES_AGENTS = ("beat", "logstash", "elastic", "vector", "fluent", "manticore", "go-http-client")
ERROR_TYPES = {400: "illegal_argument_exception", 401: "security_exception",
               403: "security_exception", 406: "media_type_header_exception",
               413: "content_too_long_exception", 415: "media_type_header_exception",
               429: "es_rejected_execution_exception", 503: "unavailable_shards_exception"}


@dataclass
class Slot:
    """One item of a bulk request: its action and metadata, and either the position of its
    document among the records pushed (`record`) or why it was refused (`status`, `error`)."""

    action: str
    index: str
    doc_id: str
    record: int | None = None
    status: int = 201
    error: dict[str, str] | None = None


def es_error(status: int, reason: str, kind: str | None = None) -> dict[str, Any]:
    """An Elasticsearch error object `{"type", "reason"}`."""
    return {"type": kind or ERROR_TYPES.get(status, "illegal_argument_exception"),
            "reason": reason}


def parse_bulk(data: bytes, default_index: str) -> tuple[list[Item], list[Slot]]:
    """Split a bulk body into the records to push and one `Slot` per action, in order."""
    records: list[Item] = []
    slots: list[Slot] = []
    lines = [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    seen: dict[bytes, tuple[str, dict[str, Any], str | None]] = {}  # shippers repeat them
    i = 0
    while i < len(lines):
        number, line = lines[i]
        i += 1
        parsed = seen.get(line)
        if parsed is None:
            parsed = seen[line] = _action(line)
        action, meta, problem = parsed
        index = printable(str(meta.get("_index") or default_index))  # echoed in the answer
        doc_id = printable(str(meta.get("_id") or ""))
        if problem:
            slots.append(Slot(action, index, doc_id, status=400, error=es_error(
                400, f"line {number}: {problem}", "action_request_validation_exception")))
            continue
        if action == "delete":
            slots.append(_refused(action, index, doc_id, number))
            continue
        if i >= len(lines):
            slots.append(Slot(action, index, doc_id, status=400, error=es_error(
                400, f"line {number}: the {action} action has no document line after it",
                "action_request_validation_exception")))
            continue
        number, source = lines[i]
        i += 1
        if action == "update":
            slots.append(_refused(action, index, doc_id, number - 1))
            continue
        slots.append(Slot(action, index, doc_id or _new_id(), record=len(records)))
        records.append(_record(source, number))
    return records, slots


def _action(line: bytes) -> tuple[str, dict[str, Any], str | None]:
    """(action, its metadata, None) or ("index", {}, what is wrong with the line)."""
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return "index", {}, f"malformed action/metadata line, not JSON: {exc}"
    except RecursionError:
        return "index", {}, f"malformed action/metadata line, not JSON: {TOO_DEEP}"
    except ValueError:
        return "index", {}, f"malformed action/metadata line, not JSON: {TOO_LONG}"
    if not isinstance(doc, dict) or len(doc) != 1:
        return "index", {}, ("malformed action/metadata line: one object with one key "
                             f"({', '.join(ACTIONS)}) expected")
    ((action, meta),) = doc.items()
    if action not in ACTIONS:
        return "index", {}, f"unknown action {str(action)[:64]!r}; use index or create"
    if not isinstance(meta, dict):
        return action, {}, f"the metadata of {action} must be an object"
    return action, meta, None


def _refused(action: str, index: str, doc_id: str, number: int) -> Slot:
    return Slot(action, index, doc_id, status=400, error=es_error(
        400, f"line {number}: LaaS stores logs append-only and accepts only the index and "
             f"create actions; {action} is not supported", "action_request_validation_exception"))


def _record(source: bytes, number: int) -> Item:
    try:
        doc = json.loads(source)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return ConversionError("document", f"line {number} is not JSON: {exc}")
    except RecursionError:
        return ConversionError("document", f"line {number} is not JSON: {TOO_DEEP}")
    except ValueError:
        return ConversionError("document", f"line {number} is not JSON: {TOO_LONG}")
    if not isinstance(doc, dict):
        return ConversionError("document", f"line {number}: a JSON object expected")
    try:
        return pb_record_from_json(shipper_document(doc))
    except ConversionError as exc:
        return exc


def _new_id() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, like Elasticsearch's own ids


def bulk_items(slots: list[Slot], rejected: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """The `items` of a bulk answer; `rejected` maps a record position to (field, reason)."""
    items = []
    for slot in slots:
        item: dict[str, Any] = {"_index": slot.index, "_id": slot.doc_id}
        if slot.record is not None and slot.record in rejected:
            field, reason = rejected[slot.record]
            slot.status, slot.error = 400, es_error(
                400, f"{field}: {reason}", "document_parsing_exception")
        if slot.error is None:
            item.update({"_version": 1, "result": "created", "_seq_no": 0,
                         "_primary_term": 1, "status": slot.status,
                         "_shards": {"total": 1, "successful": 1, "failed": 0}})
        else:
            item.update({"status": slot.status, "error": slot.error})
        items.append({slot.action: item})
    return items


async def post_bulk(request: Request) -> Response:
    """`POST|PUT /_bulk`, `/{index}/_bulk`: index/create actions become records."""
    started = time.monotonic()
    service = ingest_service(request)
    try:
        principal = await service.authenticate(header_map(request))
        media = media_type(request)
        if media not in BULK_TYPES:
            raise HTTPError(406, f"Content-Type header [{media or 'missing'}] is not supported; "
                                 "send application/x-ndjson or application/json")
        data = await read_body(request, service.limits.max_batch_bytes)
        records, slots = parse_bulk(data, request.path_params.get("index", ""))
        if not slots:
            raise HTTPError(400, "request body is required: no bulk actions in the body")
        ack = await service.push(principal, records, source="http", path="es-bulk")
    except IngestError as exc:
        return es_error_response(http_error(exc))
    except HTTPError as exc:
        return es_error_response(exc)
    rejected = {r.index: (r.field, r.reason) for r in ack.rejections}
    items = bulk_items(slots, rejected)
    took = int((time.monotonic() - started) * 1000)
    errors = any(s.error is not None for s in slots)
    return JSONResponse({"took": took, "errors": errors, "items": items}, headers=PRODUCT)


def es_error_response(err: HTTPError) -> JSONResponse:
    """A whole-request error as Elasticsearch writes it."""
    headers = {**PRODUCT, **retry_after_header(err)}
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="laas", ApiKey, Bearer realm="laas"'
    error = es_error(err.status, err.message)
    body = {"error": {"root_cause": [error], **error}, "status": err.status}
    return JSONResponse(body, status_code=err.status, headers=headers)


# --- what clients ask before they send ---------------------------------------------------------

def is_es_client(request: Request) -> bool:
    """Whether a request for `/` comes from an Elasticsearch client rather than a browser."""
    accept = request.headers.get("accept", "").lower()
    if "text/html" in accept:
        return False
    agent = request.headers.get("user-agent", "").lower()
    return ("json" in accept or any(k.startswith("x-elastic-") for k in request.headers)
            or "authorization" in request.headers or any(a in agent for a in ES_AGENTS))


async def _authenticated(request: Request) -> Principal | Response:
    try:
        return await ingest_service(request).authenticate(header_map(request))
    except IngestError as exc:
        return es_error_response(http_error(exc))


async def root(request: Request) -> Response:
    """`GET|HEAD /`: version info for Elasticsearch clients; the web UI for everyone else."""
    if not is_es_client(request):
        return await ui.index(request)
    principal = await _authenticated(request)
    if isinstance(principal, Response):
        return principal
    return JSONResponse({
        "name": "laas", "cluster_name": "laas", "cluster_uuid": "laas-bulk-ingest",
        "version": {"number": ES_VERSION, "build_flavor": "default", "build_type": "tar",
                    "build_hash": "laas", "build_date": "2026-01-01T00:00:00.000Z",
                    "build_snapshot": False, "lucene_version": "9.12.0",
                    "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0"},
        "tagline": "You Know, for Search",
    }, headers=PRODUCT)


async def license_info(request: Request) -> Response:
    """`GET /_license`: a basic, active license (Beats and Logstash check it)."""
    principal = await _authenticated(request)
    if isinstance(principal, Response):
        return principal
    return JSONResponse({"license": {
        "status": "active", "uid": "laas", "type": "basic", "issue_date_in_millis": 0,
        "issued_to": "laas", "issuer": "laas", "max_nodes": 1000, "start_date_in_millis": -1,
    }}, headers=PRODUCT)


async def cluster_health(request: Request) -> Response:
    """`GET /_cluster/health`: green (Vector's Elasticsearch sink checks it at start)."""
    principal = await _authenticated(request)
    if isinstance(principal, Response):
        return principal
    return JSONResponse({"cluster_name": "laas", "status": "green", "timed_out": False,
                         "number_of_nodes": 1, "number_of_data_nodes": 1}, headers=PRODUCT)


async def setup_call(request: Request) -> Response:
    """Template and ILM set-up: PUT acknowledged, GET/HEAD "not found" (so clients PUT)."""
    principal = await _authenticated(request)
    if isinstance(principal, Response):
        return principal
    if request.method == "PUT":
        return JSONResponse({"acknowledged": True}, headers=PRODUCT)
    name = request.path_params.get("name", "")
    error = es_error(404, f"[{name}] not found: LaaS keeps no templates or policies "
                          "(set-up calls are acknowledged and ignored)",
                     "resource_not_found_exception")
    if request.method == "HEAD":
        return Response(status_code=404, headers=PRODUCT)
    return JSONResponse({"error": {"root_cause": [error], **error}, "status": 404},
                        status_code=404, headers=PRODUCT)


SETUP_PATHS = ("/_index_template/{name}", "/_template/{name}", "/_ilm/policy/{name}")

routes: list[BaseRoute] = [
    Route("/", root, methods=["GET", "HEAD"]),
    Route("/_bulk", post_bulk, methods=["POST", "PUT"]),
    Route("/{index}/_bulk", post_bulk, methods=["POST", "PUT"]),
    Route("/_license", license_info, methods=["GET"]),
    Route("/_cluster/health", cluster_health, methods=["GET"]),
    *(Route(path, setup_call, methods=["GET", "HEAD", "PUT"]) for path in SETUP_PATHS),
]

ES_ERROR = obj(["error", "status"], error=ANY_MAP, status=INT)
_ERRORS = (("400", "no actions in the body, or the body is not decodable"),
           ("401", "no valid API key"), ("403", "the key may not ingest"),
           ("406", "content type not supported"), ("413", "body or batch over the limits"),
           ("415", "content encoding not supported"),
           ("429", "the tenant's ingest rate is exhausted"),
           ("503", "Kafka did not acknowledge in time"))
_AUTH_ERRORS = {code: {"description": text, "content": json_content(ES_ERROR)}
                for code, text in _ERRORS if code in ("401", "403")}
_BULK: Spec = {
    "summary": "Elasticsearch bulk API (index and create actions)", "tags": ["ingest"],
    "security": KEY_ONLY,
    "description": "NDJSON action/document pairs as Elasticsearch's `_bulk` takes them; "
    "`index` and `create` documents become records (shipper field conventions, "
    "docs/ingest.md), other actions and bad lines get a per-item error. The key may also be "
    "the basic-auth password or `Authorization: ApiKey`. Every answer carries "
    "`X-Elastic-Product: Elasticsearch`.",
    "requestBody": {"required": True, "content": {
        "application/x-ndjson": {"schema": {**STR, "description": "action and document lines"}},
        "application/json": {"schema": {**ANY_MAP, "description": "the same lines (as "
                                        "Elasticsearch, either type is taken)"}},
    }},
    "responses": {
        "200": {"description": "per-item results (`errors` true when any item failed)",
                "content": json_content(obj(["took", "errors", "items"], took=INT, errors=BOOL,
                                            items={"type": "array", "items": ANY_MAP}))},
        **{code: {"description": text, "content": json_content(ES_ERROR)}
           for code, text in _ERRORS},
    },
}
_INDEX = path_id("index", {**STR, "minLength": 1}, "the default `_index` of the actions")
_NAME = path_id("name", {**STR, "minLength": 1}, "the template, policy or pipeline name")
openapi: dict[tuple[str, str], Spec] = {
    ("GET", "/"): {
        "summary": "Elasticsearch version info for Elasticsearch clients; else the web UI",
        "tags": ["ingest"], "security": KEY_ONLY,
        "description": "A request that looks like an Elasticsearch client's (a JSON `Accept`, "
        "an `X-Elastic-*` header, credentials, or a shipper's User-Agent, and no `text/html` "
        "in `Accept`) gets the version document; anyone else the web UI's index.html.",
        "responses": {
            "200": {"description": "version info, or the web UI", "content": {
                "application/json": {"schema": obj(["version"], version=ANY_MAP)},
                "text/html": {"schema": STR}}},
            "503": {"description": "the UI was not built; says what to run",
                    "content": {"text/plain": {"schema": STR}}},
            **_AUTH_ERRORS,
        },
    },
    ("POST", "/_bulk"): _BULK, ("PUT", "/_bulk"): _BULK,
    ("POST", "/{index}/_bulk"): {**_BULK, "parameters": [_INDEX]},
    ("PUT", "/{index}/_bulk"): {**_BULK, "parameters": [_INDEX]},
    ("GET", "/_license"): {
        "summary": "A basic, active license (for Beats and Logstash)", "tags": ["ingest"],
        "security": KEY_ONLY,
        "responses": {"200": {"description": "the license", "content": json_content(
            obj(["license"], license=ANY_MAP))}, **_AUTH_ERRORS},
    },
    ("GET", "/_cluster/health"): {
        "summary": "Cluster health: always green (for Vector's health check)",
        "tags": ["ingest"], "security": KEY_ONLY,
        "responses": {"200": {"description": "green", "content": json_content(
            obj(["status"], status=STR))}, **_AUTH_ERRORS},
    },
    **{(method, path): {
        "summary": "Elasticsearch set-up call: acknowledged and ignored" if method == "PUT"
        else "Elasticsearch set-up call: never found (LaaS keeps its own index layout)",
        "tags": ["ingest"], "security": KEY_ONLY, "parameters": [_NAME],
        "responses": {
            "200": {"description": "acknowledged", "content": json_content(
                obj(["acknowledged"], acknowledged=BOOL))},
            "404": {"description": "not found", "content": json_content(ES_ERROR)},
            **_AUTH_ERRORS,
        },
    } for path in SETUP_PATHS for method in ("GET", "PUT")},
}
