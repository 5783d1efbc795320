"""`GET /openapi.json`: every route described (and nothing else), a valid OpenAPI document, and a
bounded schemathesis run against the live app (real SQLite user DB, Elasticsearch, Kafka) that
finds no 5xx and no response outside the schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from app.kafka.topics import ALL, topic_name
from app.settings import Settings
from tests.auth_fixtures import PASSWORD, build_world, client_for, make_settings, running_app
from tests.conftest import kafka_options
from tests.search_fixtures import event, index_events
from web.app import ROUTE_MODULES, create_app
from web.openapi import openapi_path, route_keys

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
POSITIVE_EXAMPLES = 50
NEGATIVE_EXAMPLES = 20


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD or WEBSOCKET, OpenAPI path) of every operation the document describes."""
    keys = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    }
    return keys | {("WEBSOCKET", path) for path in document.get("x-websockets", {})}


async def test_schema_describes_every_route_and_nothing_else(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state")
    async with running_app(settings) as app, client_for(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    routes = {(method, openapi_path(path)) for method, path in route_keys(app.routes)}
    assert routes - documented(document) == set(), "describe these routes in web/openapi.py"
    assert documented(document) - routes == set(), "described routes that do not exist"
    # every registered route module was imported, so none can hide from the check above
    assert set(ROUTE_MODULES) >= {"web.auth", "web.search", "web.ingest", "web.openapi"}


async def test_schema_is_valid_openapi(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state")
    async with running_app(settings) as app, client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    validate(document)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerJWT"]["bearerFormat"] == "JWT"
    assert schemes["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert "/api/v1/tail" in document["x-websockets"]


@dataclass
class Fuzz:
    settings: Settings
    creds: dict[str, str]
    refresh: dict[str, str]
    emails: dict[str, str]
    user_ids: dict[str, int]
    key_ids: dict[str, int]
    event_id: str
    ui_dist: Path


@pytest.fixture
async def fuzz(
    tmp_path: Path, es: AsyncElasticsearch, kafka_servers: str, unique: str
) -> AsyncIterator[Fuzz]:
    """Credentials of both tenants, a few acme events in a fresh index set, a fresh raw topic,
    and a tiny UI build."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        tmp_path / "state",
        index_prefix=f"{unique}-",
        topic_prefix=f"{unique}.",
        ingest_key_cache_seconds=0,
        ingest_produce_timeout=5.0,
    )
    async with running_app(settings) as app:
        world = await build_world(app)
    events = [
        event(world, "acme", n, message=f"request {n} took {n * 7} ms", level=level,
              attributes={"user": f"u{n % 3}"})
        for n, level in enumerate(("INFO", "WARN", "ERROR", "INFO", "DEBUG"))
    ]
    await index_events(es, settings, events)
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>LaaS</title>")
    (dist / "assets" / "app-1234.js").write_text("console.log('laas')")
    topics = [topic_name(settings, name) for name in ALL]  # all of them: /readyz is 200
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1) for topic in topics])
        yield Fuzz(settings, dict(world.creds), dict(world.refresh), dict(world.emails),
                   dict(world.user_ids), dict(world.key_ids), events[2].doc_id(), dist)
    finally:
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()
            await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


# Who calls each operation: a principal allowed to, so most cases get past the permission check.
# Mutations run on tenant beta with its admin key (an API key survives any user change), key
# revocation and logout come last: they may revoke credentials the others use.
WHO = {
    "POST /api/v1/logs": "key_ingest",
    "POST /v1/logs": "key_ingest",
    **{f"{method} {path}": "key_ingest" for method, path in (  # Loki and Elasticsearch clients
        ("POST", "/loki/api/v1/push"), ("GET", "/"), ("GET", "/_license"),
        ("GET", "/_cluster/health"),
        *((m, p) for m in ("POST", "PUT") for p in ("/_bulk", "/{index}/_bulk")),
        *((m, f"/{p}/{{name}}") for m in ("GET", "PUT")
          for p in ("_index_template", "_template", "_ilm/policy")))},
    "GET /api/v1/me": "viewer",
    "GET /api/v1/tenant": "key_read",
    "PATCH /api/v1/tenant": "b_key_admin",
    "GET /api/v1/users": "admin",
    "POST /api/v1/users": "b_key_admin",
    "PATCH /api/v1/users/{user_id}": "b_key_admin",
    "DELETE /api/v1/users/{user_id}": "b_key_admin",
    "GET /api/v1/apikeys": "member",
    "POST /api/v1/apikeys": "admin",
    "DELETE /api/v1/apikeys/{key_id}": "b_key_admin",
    "POST /api/v1/auth/logout": "viewer",
}
LAST = ["DELETE /api/v1/apikeys/{key_id}", "POST /api/v1/auth/logout"]
X_API_KEY = {"GET /api/v1/sources", "GET /api/v1/fields"}  # the other way to send a key


def headers_for(label: str, creds: dict[str, str]) -> dict[str, str]:
    who = WHO.get(label, "key_read")
    if label in X_API_KEY:
        return {"X-API-Key": creds[who]}
    return {"Authorization": f"Bearer {creds[who]}"}


def bounded(examples: int) -> Callable[[Any], Any]:
    return hypothesis_settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def test_schemathesis_finds_no_server_error_or_schema_mismatch(fuzz: Fuzz) -> None:
    app = create_app(fuzz.settings)
    app.state.ui_dist = fuzz.ui_dist
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(with_security_parameters=False)
    loaded = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(loaded) == len(list(schema.get_all_operations())), "the schema has broken parts"
    operations = {operation.label: operation for operation in loaded}
    order = sorted(operations, key=lambda label: (label in LAST and LAST.index(label) + 1, label))
    failures: list[str] = []
    statuses: dict[str, dict[int, int]] = {label: {} for label in operations}

    def run(label: str, mode: GenerationMode, examples: int) -> None:
        operation = operations[label]
        headers = headers_for(label, fuzz.creds)

        @given(case=operation.as_strategy(generation_mode=mode))
        @bounded(examples)
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            statuses[label][response.status_code] = statuses[label].get(response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect them all
            failures.append(f"{label} ({mode.value}): {exc}")

    def known_good(label: str, status: int, **parts: Any) -> Any:
        case = operations[label].Case(**parts)
        headers = headers_for(label, fuzz.creds)
        response = case.call(headers=headers)
        assert response.status_code == status, (label, response.text)
        case.validate_response(response, checks=CHECKS, headers=headers)
        return response.json() if response.content else None

    try:
        # known-good calls first, so the 2xx shapes are checked whatever the generator draws
        context = known_good("GET /api/v1/logs/{id}/context", 200,
                             path_parameters={"id": fuzz.event_id}, query={"before": 2})
        assert context["event"]["id"] == fuzz.event_id and len(context["before"]) == 2
        found = known_good("GET /api/v1/search", 200, query={"since": "1h", "limit": 2})
        assert len(found["hits"]) == 2 and found["next_cursor"]
        known_good("GET /api/v1/search", 200, query={"since": "1h", "cursor": found["next_cursor"]})
        known_good("POST /api/v1/auth/login", 200,
                   body={"email": fuzz.emails["member"], "password": PASSWORD})
        known_good("POST /api/v1/auth/refresh", 200,
                   body={"refresh_token": fuzz.refresh["member"]})
        known_good("PATCH /api/v1/users/{user_id}", 200,
                   path_parameters={"user_id": fuzz.user_ids["b_member"]}, body={"role": "viewer"})
        known_good("DELETE /api/v1/apikeys/{key_id}", 200,
                   path_parameters={"key_id": fuzz.key_ids["b_key_ingest"]})
        known_good("DELETE /api/v1/users/{user_id}", 204,
                   path_parameters={"user_id": fuzz.user_ids["b_member"]})

        for label in order:
            run(label, GenerationMode.POSITIVE, POSITIVE_EXAMPLES)
            operation = operations[label]
            takes_input = operation.body or any(True for _ in operation.iter_parameters())
            if takes_input and label.split()[1].startswith(("/api/", "/v1/")):  # UI takes any
                run(label, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)
    finally:
        asgi.shutdown_lifespans()
    print("\n".join(f"{label}: {statuses[label]}" for label in order))  # seen with -s
    assert not failures, f"{len(failures)} of {len(order)} operations failed:\n\n" + "\n\n".join(
        failures
    )
    assert all(statuses.values()), statuses
