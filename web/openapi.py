"""`GET /openapi.json`: the OpenAPI 3.0 document of every HTTP endpoint, built from the routes.

Paths and methods come from the routes `web.app.create_app` registered; what each operation takes
and answers comes from `OPERATIONS` below, keyed by `(METHOD, route path)` exactly as Starlette
spells the route (`/api/v1/apikeys/{key_id:int}`). A route module may instead carry its own
`openapi = {(method, path): operation}` dict next to its endpoints; it is merged over these.
WebSocket routes have no place in OpenAPI 3.0: they are described under `x-websockets` (same
keying, method `WEBSOCKET`). `tests/test_openapi.py` fails when a route has no description or a
description names no route, and runs schemathesis against the live app.
"""

from __future__ import annotations

import importlib
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.db.models import Role, Scope
from app.query import search
from web.openapi_schemas import (
    ANY_CREDENTIAL,
    ANY_MAP,
    BOOL,
    DURATION,
    ID,
    INT,
    JWT,
    KEY_ONLY,
    NO_CONTENT,
    NO_STORE,
    PUBLIC,
    RESPONSES,
    SCHEMAS,
    STR,
    TIME_PARAM,
    Spec,
    body,
    error,
    json_content,
    obj,
    ok,
    path_id,
    query,
    ref,
    responses,
)
from web.ui import UIPathConvertor

Q = query("q", STR, "Lucene-subset query: `service:api AND level:error`, `\"phrase\"`, "
          "`attributes.user:bob`, free text on the message (docs/search.md)")
SINCE = query("since", TIME_PARAM, "start of the range (inclusive); default 15m")
UNTIL = query("until", TIME_PARAM, "end of the range (exclusive); default now")
SEARCH_PARAMS = [
    Q, SINCE, UNTIL,
    query("limit", {**INT, "minimum": 1, "maximum": search.MAX_LIMIT,
                    "default": search.DEFAULT_LIMIT}),
    query("order", {"type": "string", "enum": ["newest", "oldest", ""], "default": "newest"}),
    query("cursor", STR, "`next_cursor` of the previous page (same `q`)"),
    query("highlight", {**STR, "default": "true"},
          "`false`, `0` or `no`: no `highlight` in the hits"),
]
HISTOGRAM_PARAMS = [Q, SINCE, UNTIL, query("interval", DURATION, "bucket size; default: "
                                                                 "fitted to the range")]
FIELDS_PARAMS = [Q, {**SINCE, "description": "start of the range; default 1h"}, UNTIL,
                 query("top", {**INT, "minimum": 1, "maximum": 100, "default": 10})]
SEARCH_ERRORS = ("400", "401", "403", "422", "503", "504")

LOGIN_BODY = obj(["email", "password"], email=STR, password={**STR, "format": "password"},
                 tenant={**STR, "description": "tenant slug; default: the user's first"})
REFRESH_BODY = obj(["refresh_token"], refresh_token=STR)


def searchable(summary: str, params: list[Spec], result: str, tag: str = "search") -> Spec:
    """The GET and POST forms of a search-like endpoint (POST: the parameters in a JSON object;
    unknown keys are ignored). An empty or null parameter means its default."""
    get = {"summary": summary, "tags": [tag], "security": ANY_CREDENTIAL, "parameters": params,
           "responses": responses(ok(result), *SEARCH_ERRORS)}
    fields = obj(**{p["name"]: {**p["schema"], "nullable": True,
                                "description": p.get("description", "")} for p in params})
    post = {**get, "summary": summary + " (parameters in a JSON body)", "parameters": [],
            "requestBody": body(fields)}
    return {"GET": get, "POST": post}


def operations(path: str, by_method: dict[str, Spec]) -> dict[tuple[str, str], Spec]:
    return {(method, path): spec for method, spec in by_method.items()}


READINESS = obj(["status", "checks"], status={"type": "string", "enum": ["ready", "not_ready"]},
               checks={"type": "object", "additionalProperties": {"type": "string"}},
               not_ready={"type": "array", "items": {"type": "string"}})

OPERATIONS: dict[tuple[str, str], Spec] = {
    ("GET", "/healthz"): {
        "summary": "Liveness", "tags": ["service"], "security": PUBLIC,
        "responses": {"200": {"description": "the web process answers", "content": json_content(
            obj(["status"], status={"type": "string", "enum": ["ok"]}))}},
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics of this process", "tags": ["service"], "security": PUBLIC,
        "responses": {"200": {"description": "text exposition format (docs/operations.md)",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    ("GET", "/readyz"): {
        "summary": "Readiness", "tags": ["service"], "security": PUBLIC,
        "description": "Kafka (with every LaaS topic), Elasticsearch and the user database "
        "answer, each within 5 s. `checks` maps each to `ok` or what is wrong (the kind of "
        "failure; details go to the log).",
        "responses": {
            "200": {"description": "ready", "content": json_content(READINESS)},
            "503": {"description": "not ready; `not_ready` names the components",
                    "content": json_content(READINESS)}},
    },
    ("GET", "/openapi.json"): {
        "summary": "This document", "tags": ["service"], "security": PUBLIC,
        "responses": {"200": {"description": "OpenAPI 3.0", "content": json_content(ANY_MAP)}},
    },
    # web.auth
    ("POST", "/api/v1/auth/login"): {
        "summary": "Log in with email and password", "tags": ["auth"], "security": PUBLIC,
        "description": "Failures are uniform (`invalid_credentials`); repeated failures per "
        "account and per client address are throttled (429 with `Retry-After`).",
        "requestBody": body(LOGIN_BODY),
        "responses": responses(ok("TokenPair", no_store=True), "401", "403", "422", "429"),
    },
    ("POST", "/api/v1/auth/refresh"): {
        "summary": "Exchange a refresh token for a new pair", "tags": ["auth"],
        "security": PUBLIC, "description": "The refresh token is spent; reusing one revokes its "
        "whole family (every later token of that login).",
        "requestBody": body(REFRESH_BODY),
        "responses": responses(ok("TokenPair", no_store=True), "401", "422"),
    },
    ("POST", "/api/v1/auth/logout"): {
        "summary": "End a session", "tags": ["auth"], "security": [JWT, {}],
        "description": "The session of the access token, or of the refresh token in the body.",
        "requestBody": body(obj(refresh_token=STR), required=False),
        "responses": responses(NO_CONTENT, "401", "422"),
    },
    ("GET", "/api/v1/me"): {
        "summary": "Who the caller is", "tags": ["auth"], "security": ANY_CREDENTIAL,
        "responses": responses(ok("Me"), "401"),
    },
    # web.tenants
    ("GET", "/api/v1/tenant"): {
        "summary": "The caller's tenant", "tags": ["tenant"], "security": ANY_CREDENTIAL,
        "responses": responses(ok("Tenant"), "401", "403"),
    },
    ("PATCH", "/api/v1/tenant"): {
        "summary": "Change the tenant's settings (admins)", "tags": ["tenant"],
        "security": ANY_CREDENTIAL,
        "requestBody": body({**obj(
            name={**STR, "minLength": 1, "maxLength": 200},
            retention_days={**INT, "minimum": 1, "maximum": 3650},
            ingest_rate_limit={"type": "number", "minimum": 0, "nullable": True},
        ), "additionalProperties": False}),
        "responses": responses(ok("Tenant"), "401", "403", "422"),
    },
    # web.apikeys
    ("GET", "/api/v1/apikeys"): {
        "summary": "API keys the caller may see", "tags": ["apikeys"], "security": ANY_CREDENTIAL,
        "description": "Admins see every key of the tenant, members the keys they made.",
        "responses": responses({"200": {"description": "OK", "content": json_content(
            obj(["keys"], keys={"type": "array", "items": ref("ApiKey")}))}}, "401", "403"),
    },
    ("POST", "/api/v1/apikeys"): {
        "summary": "Create an API key", "tags": ["apikeys"], "security": ANY_CREDENTIAL,
        "description": "The full key is in `key`, shown this once. Members may create ingest "
        "and read keys; admin keys need an admin.",
        "requestBody": body(obj(["name", "scope"], name={**STR, "minLength": 1, "maxLength": 200},
                                scope={"type": "string", "enum": [s.value for s in Scope]})),
        "responses": responses({"201": {
            "description": "created", **NO_STORE,
            "content": json_content({"allOf": [ref("ApiKey"), obj(["key"], key=STR)]}),
        }}, "401", "403", "422"),
    },
    ("DELETE", "/api/v1/apikeys/{key_id:int}"): {
        "summary": "Revoke an API key", "tags": ["apikeys"], "security": ANY_CREDENTIAL,
        "parameters": [path_id("key_id", ID, "the key's `id`")],
        "responses": responses(ok("ApiKey", description="the revoked key"), "401", "403", "404"),
    },
    # web.users
    ("GET", "/api/v1/users"): {
        "summary": "Members of the tenant (admins)", "tags": ["users"],
        "security": ANY_CREDENTIAL,
        "responses": responses({"200": {"description": "OK", "content": json_content(
            obj(["users"], users={"type": "array", "items": ref("Member")}))}}, "401", "403"),
    },
    ("POST", "/api/v1/users"): {
        "summary": "Invite a person into the tenant (admins)", "tags": ["users"],
        "security": ANY_CREDENTIAL,
        "description": "The answer is the same whether or not the email has an account: the "
        "person joins by accepting (`/api/v1/invitations`) or with the one-time `code`, "
        "returned once. 409 only if the email is a member of this tenant already.",
        "requestBody": body(obj(
            ["email", "role"], email={**STR, "format": "email"},
            role={"type": "string", "enum": [r.value for r in Role]},
        )),
        "responses": responses({"201": {
            "description": "invited", **NO_STORE,
            "content": json_content(obj(["invitation", "code"], invitation=ref("Invitation"),
                                        code=STR)),
        }}, "401", "403", "409", "422"),
    },
    ("GET", "/api/v1/users/invitations"): {
        "summary": "Pending invitations of the tenant (admins)", "tags": ["users"],
        "security": ANY_CREDENTIAL,
        "responses": responses({"200": {"description": "OK", "content": json_content(
            obj(["invitations"], invitations={"type": "array", "items": ref("Invitation")}))}},
            "401", "403"),
    },
    ("DELETE", "/api/v1/users/invitations/{invitation_id:int}"): {
        "summary": "Withdraw a pending invitation (admins)", "tags": ["users"],
        "security": ANY_CREDENTIAL,
        "parameters": [path_id("invitation_id", ID, "the invitation's `id`")],
        "responses": responses(NO_CONTENT, "401", "403", "404"),
    },
    # web.invitations
    ("GET", "/api/v1/invitations"): {
        "summary": "Invitations addressed to the caller's email", "tags": ["invitations"],
        "security": [JWT],
        "responses": responses({"200": {"description": "OK", "content": json_content(
            obj(["invitations"], invitations={"type": "array", "items": ref("Invitation")}))}},
            "401", "403"),
    },
    ("POST", "/api/v1/invitations/{invitation_id:int}/accept"): {
        "summary": "Join the inviting tenant", "tags": ["invitations"], "security": [JWT],
        "parameters": [path_id("invitation_id", ID, "the invitation's `id`")],
        "responses": responses(ok("Invitation"), "401", "403", "404"),
    },
    ("POST", "/api/v1/invitations/{invitation_id:int}/decline"): {
        "summary": "Decline an invitation", "tags": ["invitations"], "security": [JWT],
        "parameters": [path_id("invitation_id", ID, "the invitation's `id`")],
        "responses": responses(ok("Invitation"), "401", "403", "404"),
    },
    ("POST", "/api/v1/invitations/redeem"): {
        "summary": "Join a tenant with an invitation code, and log in there",
        "tags": ["invitations"], "security": PUBLIC,
        "description": "Without an account for the invitation's email one is made with "
        "`password` (the password policy applies); with one, `password` must be its password "
        "(throttled like a login).",
        "requestBody": body(obj(["code", "password"], code=STR,
                                password={**STR, "format": "password"})),
        "responses": responses(ok("TokenPair", no_store=True), "401", "403", "422", "429"),
    },
    ("PATCH", "/api/v1/users/{user_id:int}"): {
        "summary": "Change a member's role or (de)activate them (admins)", "tags": ["users"],
        "security": ANY_CREDENTIAL,
        "parameters": [path_id("user_id", ID, "the member's `id`")],
        "requestBody": body(obj(role={"type": "string", "enum": [r.value for r in Role]},
                                active=BOOL)),
        "responses": responses(ok("Member"), "401", "403", "404", "409", "422"),
    },
    ("DELETE", "/api/v1/users/{user_id:int}"): {
        "summary": "Remove a member from the tenant (admins); the account stays",
        "tags": ["users"], "security": ANY_CREDENTIAL,
        "parameters": [path_id("user_id", ID, "the member's `id`")],
        "responses": responses(NO_CONTENT, "401", "403", "404", "409"),
    },
    # web.ingest
    ("POST", "/api/v1/logs"): {
        "summary": "Send logs: NDJSON, text lines or JSON", "tags": ["ingest"],
        "security": KEY_ONLY,
        "description": "Needs an `ingest` (or `admin`) key. A 200 means Kafka acknowledged every "
        "accepted record; rejected records are listed by line or index. A body may be "
        "`Content-Encoding: gzip` or `deflate`. Errors are `{\"error\": <message>}`.",
        "requestBody": {"required": True, "content": {
            "application/x-ndjson": {"schema": {**STR, "description": "one JSON record a line"}},
            "application/json": {"schema": {"oneOf": [
                ref("IngestRecord"), {"type": "array", "items": ref("IngestRecord")}]}},
            "text/plain": {"schema": {**STR, "description": "one message a line"}},
        }},
        "responses": {
            "200": {"description": "accepted (maybe partly)",
                    "content": json_content(ref("IngestResult"))},
            "400": {"description": "body not decodable, or every record rejected", "content":
                    json_content({"oneOf": [ref("IngestResult"), ref("IngestError")]})},
            **{code: error(text, schema="IngestError", retry=code in ("429", "503"),
                           challenge=code == "401")
               for code, text in (("401", "no valid API key"),
                                  ("403", "the key may not ingest"),
                                  ("413", "body or batch over the limits"),
                                  ("415", "content type or encoding not supported"),
                                  ("429", "the tenant's ingest rate is exhausted"),
                                  ("503", "Kafka did not acknowledge in time"))},
        },
    },
    ("POST", "/v1/logs"): {
        "summary": "OTLP/HTTP logs export (protobuf or JSON)", "tags": ["ingest"],
        "security": KEY_ONLY,
        "description": "`opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest`; "
        "rejected records come back as `partialSuccess`. Errors are a google.rpc.Status in the "
        "request's encoding.",
        "requestBody": {"required": True, "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": ANY_MAP},
        }},
        "responses": {
            "200": {"description": "accepted", "content": {
                "application/json": {"schema": ref("OtlpExportResponse")},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            }},
            **{code: {"description": text, "content": {
                "application/json": {"schema": ref("RpcStatus")},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            }} for code, text in (("400", "not an ExportLogsServiceRequest"),
                                  ("401", "no valid API key"), ("403", "the key may not ingest"),
                                  ("413", "body over the limits"),
                                  ("415", "content type or encoding not supported"),
                                  ("429", "the tenant's ingest rate is exhausted"),
                                  ("503", "Kafka did not acknowledge in time"))},
        },
    },
    # web.search
    **operations("/api/v1/search", searchable(
        "Search the tenant's logs", SEARCH_PARAMS, "SearchResult")),
    **operations("/api/v1/histogram", searchable(
        "Counts per time bucket, split by level", HISTOGRAM_PARAMS, "Histogram")),
    **operations("/api/v1/fields", searchable(
        "Fields seen in the range with their top values", FIELDS_PARAMS, "Fields")),
    ("GET", "/api/v1/logs/{id:path}/context"): {
        "summary": "The events around one event, from the same service and host",
        "tags": ["search"], "security": ANY_CREDENTIAL,
        "parameters": [
            path_id("id", {**STR, "minLength": 1}, "an event's `id` (may contain `/`)"),
            query("before", {**INT, "minimum": 0, "maximum": search.MAX_CONTEXT, "default": 20}),
            query("after", {**INT, "minimum": 0, "maximum": search.MAX_CONTEXT, "default": 20}),
        ],
        "responses": responses(ok("Context"), "400", "401", "403", "404", "503", "504"),
    },
    # web.sources
    ("GET", "/api/v1/sources"): {
        "summary": "The tenant's log sources with statistics", "tags": ["search"],
        "security": ANY_CREDENTIAL,
        "parameters": [query("windows", {**STR, "example": "1"},
                             "`1`, `true` or `yes`: add the recent per-window counts")],
        "responses": responses({"200": {"description": "most recently seen first",
                                        "content": json_content(obj(
                                            ["sources", "total"], total=INT,
                                            sources={"type": "array", "items": ref("Source")}))}},
                               "401", "403"),
    },
    # web.ui
    ("GET", "/assets/{name:path}"): {
        "summary": "A hashed bundle of the web UI (cached for a year)", "tags": ["ui"],
        "security": PUBLIC,
        "parameters": [path_id("name", {**STR, "minLength": 1}, "file under the build's assets")],
        "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": {}}}},
                      "404": {"description": "no such asset (JSON when the path is no asset "
                                             "path at all)", "content": {
                                  "text/plain": {"schema": STR},
                                  "application/json": {"schema": ref("Error")}}}},
    },
    ("GET", "/{path:uipath}"): {
        "summary": "The web UI: index.html for `/` and every client-side route", "tags": ["ui"],
        "security": PUBLIC,
        "description": "Not for paths under `/api`, `/v1`, `/assets` or the service endpoints. "
        "A top-level file of the build is served as is.",
        "parameters": [path_id("path", {**STR, "minLength": 1,
                                        "pattern": f"^{UIPathConvertor.regex}$"},
                               "a client-side route")],
        "responses": {
            "200": {"description": "index.html or a top-level file of the build",
                    "content": {"text/html": {"schema": STR}, "*/*": {"schema": {}}}},
            "404": {"description": "not a UI path (e.g. a control character in it)",
                    "content": json_content(ref("Error"))},
            "503": {"description": "the UI was not built; says what to run",
                    "headers": {"Retry-After": {"schema": INT}},
                    "content": {"text/plain": {"schema": STR}}},
        },
    },
}

WEBSOCKETS: dict[tuple[str, str], Spec] = {
    ("WEBSOCKET", "/api/v1/tail"): {
        "summary": "Live tail of the caller's tenant (WebSocket)",
        "security": ANY_CREDENTIAL,
        "description": "Credentials as for HTTP, or a `token` query parameter (browsers cannot "
        "set headers). Server → client JSON text frames: `{type: event, event: LogEvent}`, "
        "`{type: ready, history: N}` (history done, live follows), `{type: notice, dropped: N, "
        "detail}` (client too slow), `{type: heartbeat, time}`, `{type: error, ...}`. Clients "
        "send nothing.",
        "parameters": [
            {**Q, "description": "filter, same syntax as search"},
            query("since", TIME_PARAM, "start with history from this time, then live"),
            query("token", STR, "access token or API key, if no header can be sent"),
        ],
        "messages": {"event": ref("LogEvent")},
        "close_codes": {
            "1008": "refused handshake: no valid credentials or no read permission",
            "4400": "bad `q` or `since`; an `error` frame with `parameter`/`position` precedes it",
            "1013": "the event stream (Kafka) is unreachable; reconnect later",
        },
    },
}

INFO_DESCRIPTION = """\
LaaS: multi-tenant logging. Every endpoint works on the caller's tenant only.

Credentials: a JWT access token from `POST /api/v1/auth/login`, or an API key, as \
`Authorization: Bearer <token-or-key>` or `X-API-Key: <key>`. Roles (`admin`, `member`, \
`viewer`) and key scopes (`ingest`, `read`, `admin`) decide what a caller may do (docs/auth.md).

Errors are JSON `{"error": <stable code>, "detail": <for people>, ...}`; ingest answers \
`{"error": <message>}` and OTLP a google.rpc.Status.

Search parameters (query string, or a JSON object for POST) that are empty or null take
their default.

WebSocket endpoints (OpenAPI 3.0 cannot describe them) are under `x-websockets`; \
`WebSocket /api/v1/tail` is the filtered live tail.
"""

_CONVERTER = re.compile(r"\{(\w+)(?::\w+)?\}")


def openapi_path(route_path: str) -> str:
    """`/api/v1/apikeys/{key_id:int}` → `/api/v1/apikeys/{key_id}`."""
    return _CONVERTER.sub(r"{\1}", route_path)


def route_keys(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    """(METHOD or WEBSOCKET, route path) of every endpoint; HEAD rides along with GET."""
    keys: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Route):
            keys |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, WebSocketRoute):
            keys.add(("WEBSOCKET", route.path))
    return keys


def described(module_names: list[str]) -> dict[tuple[str, str], Spec]:
    """`OPERATIONS` and `WEBSOCKETS`, updated with the route modules' own `openapi` dicts."""
    specs = {**OPERATIONS, **WEBSOCKETS}
    for name in module_names:
        specs.update(getattr(importlib.import_module(name), "openapi", {}))
    return specs


def build_document(routes: list[BaseRoute], module_names: list[str]) -> Spec:
    """The OpenAPI document of `routes`; endpoints without a description are left out (the
    test names them)."""
    specs = described(module_names)
    paths: dict[str, Spec] = {}
    sockets: dict[str, Spec] = {}
    for method, path in sorted(route_keys(routes)):
        spec = specs.get((method, path))
        if spec is None:
            continue
        if method == "WEBSOCKET":
            sockets[openapi_path(path)] = spec
            continue
        operation = {"operationId": f"{method.lower()}{_operation_name(path)}", **spec}
        paths.setdefault(openapi_path(path), {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "LaaS", "version": "1", "description": INFO_DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerJWT": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                              "description": "access token from /api/v1/auth/login"},
                "apiKeyBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "API key",
                                 "description": "an API key as a bearer token"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "x-websockets": sockets,
    }


def _operation_name(path: str) -> str:
    words = re.findall(r"[a-z0-9]+", openapi_path(path).replace("/api/v1", ""))
    return "".join(word.capitalize() for word in words)


async def openapi_endpoint(request: Request) -> Response:
    """GET → the OpenAPI document of this app (built once per app)."""
    document = getattr(request.app.state, "openapi", None)
    if document is None:
        from web.app import ROUTE_MODULES

        document = build_document(request.app.routes, ROUTE_MODULES)
        request.app.state.openapi = document
    return JSONResponse(document)


routes = [Route("/openapi.json", openapi_endpoint, methods=["GET"])]
