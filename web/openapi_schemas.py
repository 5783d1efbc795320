"""Building blocks of the OpenAPI document (`web/openapi.py`): component schemas, shared
responses, security requirements and small constructors for operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.db.models import Role, Scope
from app.query import search
from web.auth import MAX_ID

Spec = dict[str, Any]

# --- reusable pieces ---------------------------------------------------------------------------


def ref(name: str) -> Spec:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: Sequence[str] = (), /, **properties: Spec) -> Spec:
    return {"type": "object", "required": list(required), "properties": properties} if required \
        else {"type": "object", "properties": properties}


STR: Spec = {"type": "string"}
INT: Spec = {"type": "integer"}
BOOL: Spec = {"type": "boolean"}
TIME: Spec = {"type": "string", "format": "date-time"}
NULLABLE_STR: Spec = {"type": "string", "nullable": True}
NULLABLE_TIME: Spec = {**TIME, "nullable": True}
ANY_MAP: Spec = {"type": "object", "additionalProperties": True}
# `since` / `until`: ISO 8601, `now`, or a duration back from now (see app/query/timerange.py)
TIME_PARAM: Spec = {
    "type": "string",
    "description": "ISO 8601 (`2026-11-27T10:00:00Z`), `now`, or a duration back from now "
    "(`30s`, `15m`, `24h`, `7d`, `2w`)",
    "example": "15m",
}
ID: Spec = {**INT, "minimum": 1, "maximum": MAX_ID}
DURATION: Spec = {"type": "string", "pattern": r"^\d{1,6}[smhdw]$", "example": "5m"}

JWT: Spec = {"bearerJWT": []}
KEY_BEARER: Spec = {"apiKeyBearer": []}
KEY_HEADER: Spec = {"apiKeyHeader": []}
ANY_CREDENTIAL = [JWT, KEY_BEARER, KEY_HEADER]
KEY_ONLY = [KEY_BEARER, KEY_HEADER]
PUBLIC: list[Spec] = []

SCHEMAS: dict[str, Spec] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "description": "Every JSON error of the API (ingest excepted): a stable `error` code, a "
        "`detail` for people, and where it applies the offending `field` / `parameter`, the "
        "`position` of a query syntax error, or `retry_after` seconds.",
        "properties": {
            "error": {**STR, "example": "invalid_input"},
            "detail": STR,
            "field": STR,
            "parameter": STR,
            "position": {**INT, "minimum": 0},
            "retry_after": {**INT, "minimum": 0},
        },
    },
    "IngestError": obj(["error"], error={**STR, "description": "what was wrong, for people"}),
    "RpcStatus": {
        "type": "object",
        "description": "google.rpc.Status (OTLP/HTTP error body, in the request's encoding)",
        "properties": {"code": INT, "message": STR, "details": {"type": "array", "items": ANY_MAP}},
    },
    "TokenPair": obj(
        ["access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in",
         "user", "tenant", "role", "tenants"],
        access_token={**STR, "description": "JWT; send as `Authorization: Bearer <token>`"},
        token_type={"type": "string", "enum": ["bearer"]},
        expires_in={**INT, "description": "seconds"},
        refresh_token=STR,
        refresh_expires_in=INT,
        user=obj(["id", "email"], id=INT, email=STR),
        tenant={**STR, "description": "slug of the tenant the tokens are for"},
        role={"type": "string", "enum": [r.value for r in Role]},
        tenants={"type": "array", "items": ANY_MAP},
    ),
    "TenantRef": obj(["slug", "name", "role"], slug=STR, name=STR, role=STR),
    "Me": obj(
        ["kind", "user", "api_key", "tenant", "role", "scope", "permissions", "tenants"],
        kind={"type": "string", "enum": ["user", "api_key"]},
        user={**obj(["id", "email"], id=INT, email=STR), "nullable": True},
        api_key={**INT, "nullable": True},
        tenant=obj(["id", "slug", "name"], id=INT, slug=STR, name=STR),
        role={"type": "string", "enum": [r.value for r in Role], "nullable": True},
        scope={"type": "string", "enum": [s.value for s in Scope], "nullable": True},
        permissions={"type": "array", "items": STR},
        tenants={"type": "array", "items": ref("TenantRef")},
    ),
    "Tenant": obj(
        ["id", "slug", "name", "created_at", "retention_days", "ingest_rate_limit"],
        id=INT, slug=STR, name=STR, created_at=TIME,
        retention_days={**INT, "minimum": 1, "maximum": 3650},
        ingest_rate_limit={"type": "number", "minimum": 0, "nullable": True,
                           "description": "records/s; null: the server's default"},
    ),
    "ApiKey": obj(
        ["id", "name", "scope", "prefix", "created_by", "created_at", "last_used_at",
         "revoked_at", "active"],
        id=INT, name=STR, scope={"type": "string", "enum": [s.value for s in Scope]},
        prefix={**STR, "description": "visible start of the key, to recognise it"},
        created_by={**INT, "nullable": True}, created_at=TIME, last_used_at=NULLABLE_TIME,
        revoked_at=NULLABLE_TIME, active=BOOL,
    ),
    "Member": {**obj(
        ["id", "email", "role", "active", "created_at", "last_login_at"],
        id=INT, email=STR, role={"type": "string", "enum": [r.value for r in Role]},
        active=BOOL, created_at=TIME, last_login_at=NULLABLE_TIME,
    ), "description": "a membership: `active`, `created_at` (joined) and `last_login_at` are "
        "this tenant's"},
    "Invitation": obj(
        ["id", "email", "role", "status", "created_at", "expires_at"],
        id=INT, email=STR, role={"type": "string", "enum": [r.value for r in Role]},
        status={"type": "string", "enum": ["pending", "accepted", "declined", "revoked"]},
        created_at=TIME, expires_at=TIME,
        tenant={**obj(["slug", "name"], slug=STR, name=STR),
                "description": "the inviting tenant (on the invitee's side only)"},
    ),
    "LogEvent": obj(
        ["id", "time", "level", "service", "host", "message", "attributes"],
        id={**STR, "description": "raw topic/partition/offset[/index]; stable across replays"},
        time={**STR, "description": "event time, ISO 8601 with nanoseconds"},
        observed_time=NULLABLE_STR,
        level={"type": "string", "nullable": True, "example": "ERROR"},
        service=NULLABLE_STR, host=NULLABLE_STR, message=NULLABLE_STR,
        template_id=NULLABLE_STR, trace_id=NULLABLE_STR, span_id=NULLABLE_STR,
        attributes=ANY_MAP,
        highlight={"type": "object", "additionalProperties": {"type": "array", "items": STR},
                   "description": "message fragments with matches in `<mark>` (HTML-escaped)"},
    ),
    "SearchResult": obj(
        ["hits", "total", "next_cursor", "partial", "since", "until"],
        hits={"type": "array", "items": ref("LogEvent")},
        total=obj(["value", "relation"], value=INT,
                  relation={"type": "string", "enum": ["eq", "gte"],
                            "description": f"exact up to {search.TOTAL_EXACT_UP_TO}, then gte"}),
        next_cursor={**NULLABLE_STR, "description": "pass as `cursor` for the next page"},
        partial={**BOOL, "description": "Elasticsearch timed out: the hits are incomplete"},
        took_ms={**INT, "nullable": True}, since=STR, until=STR,
    ),
    "Histogram": obj(
        ["interval_seconds", "since", "until", "total", "buckets"],
        interval_seconds=INT, since=STR, until=STR, total=INT,
        buckets={"type": "array", "items": obj(
            ["time", "count", "levels"], time=STR, count=INT,
            levels={"type": "object", "additionalProperties": INT,
                    "description": f"count per level ({', '.join(search.LEVELS)})"},
        )},
    ),
    "Context": obj(
        ["event", "before", "after"], event=ref("LogEvent"),
        before={"type": "array", "items": ref("LogEvent")},
        after={"type": "array", "items": ref("LogEvent")},
    ),
    "Fields": obj(
        ["total", "fields"], total=INT,
        fields={"type": "array", "items": obj(
            ["field", "values", "other"], field=STR, other=INT,
            values={"type": "array", "items": obj(["value", "count"], value={}, count=INT)},
        )},
    ),
    "Source": obj(
        ["service", "host", "count", "bytes", "severity", "first_seen", "last_seen",
         "window_seconds"],
        service=STR, host=STR, count=INT, bytes=INT,
        severity={"type": "object", "additionalProperties": INT},
        first_seen=STR, last_seen=STR, window_seconds=INT,
        windows={"type": "array", "items": ANY_MAP, "description": "only with `windows=1`"},
    ),
    "IngestRecord": {
        "type": "object",
        "additionalProperties": True,
        "description": "Shorthand (`message`, `level`, `ts`, `service`, `host`, `trace_id`, "
        "`span_id`, `attributes`; other keys become attributes) or the proto3 JSON form of "
        "`laas.v1.LogRecord` (docs/ingest.md)",
        "properties": {
            "message": STR, "level": {"oneOf": [STR, INT]},
            "ts": {"oneOf": [STR, {"type": "number"}]},
            "service": STR, "host": STR, "attributes": ANY_MAP,
        },
        "example": {"message": "disk almost full", "level": "warn", "service": "api"},
    },
    "IngestResult": obj(
        ["accepted", "rejected", "errors"], accepted=INT, rejected=INT,
        errors={"type": "array", "items": {
            "type": "object", "required": ["field", "reason"],
            "description": "`line` (NDJSON/text, 1-based) or `index` (JSON, 0-based) names the "
            "record",
            "properties": {"line": INT, "index": INT, "field": STR, "reason": STR},
        }},
    ),
    "OtlpExportResponse": obj(partialSuccess=obj(
        rejectedLogRecords={"oneOf": [STR, INT]}, errorMessage=STR,
    )),
}


def json_content(schema: Spec) -> Spec:
    return {"application/json": {"schema": schema}}


def error(description: str, *, retry: bool = False, challenge: bool = False,
          schema: str = "Error") -> Spec:
    response: Spec = {"description": description, "content": json_content(ref(schema))}
    headers: Spec = {}
    if retry:
        headers["Retry-After"] = {"schema": INT, "description": "seconds"}
    if challenge:
        headers["WWW-Authenticate"] = {"schema": STR}
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Spec] = {
    "BadParameter": error("a parameter cannot be used (`error: bad_parameter`, `parameter`, "
                          "`position` for query syntax errors)"),
    "Unauthenticated": error("no valid credentials (`not_authenticated`, "
                             "`invalid_credentials`)", challenge=True),
    "Forbidden": error("the caller's role or key scope does not allow this (`forbidden`)"),
    "NotFound": error("no such object in the caller's tenant (`not_found`)"),
    "Conflict": error("exists already, or would remove the tenant's last admin (`conflict`)"),
    "InvalidInput": error("the body is not a JSON object, or a field is missing or not "
                          "allowed (`invalid_input`, `field`)"),
    "Throttled": error("too many failed logins (`too_many_attempts`, `retry_after`)", retry=True),
    "SearchUnavailable": error("Elasticsearch unreachable or overloaded (`unavailable`)",
                               retry=True),
    "SearchTimeout": error("Elasticsearch did not answer in time (`timeout`)"),
}


def responses(ok: Spec, *errors: str) -> Spec:
    """`ok` keyed by its status, then the named errors (`"401"` → `Unauthenticated` etc.)."""
    names = {"400": "BadParameter", "401": "Unauthenticated", "403": "Forbidden",
             "404": "NotFound", "409": "Conflict", "422": "InvalidInput", "429": "Throttled",
             "503": "SearchUnavailable", "504": "SearchTimeout"}
    out = dict(ok)
    for code in errors:
        out[code] = {"$ref": f"#/components/responses/{names[code]}"}
    return out


def ok(schema: str, status: str = "200", description: str = "OK", no_store: bool = False) -> Spec:
    response = {"description": description, "content": json_content(ref(schema))}
    return {status: {**response, **NO_STORE} if no_store else response}


NO_CONTENT = {"204": {"description": "done; no body"}}
NO_STORE: Spec = {"headers": {"Cache-Control": {"schema": {**STR, "enum": ["no-store"]}}}}


def body(schema: Spec, required: bool = True) -> Spec:
    return {"required": required, "content": json_content(schema)}


def query(name: str, schema: Spec, description: str = "") -> Spec:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def path_id(name: str, schema: Spec, description: str) -> Spec:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}
