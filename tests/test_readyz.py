"""`/readyz` of the web app and of the worker against the real stack, and with each component
missing: Kafka at a closed port, Elasticsearch at a closed port, the LaaS topics absent, the
user database dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url

from app.settings import Settings
from tests.auth_fixtures import (
    _create_postgres_database,
    _drop_postgres_database,
    client_for,
    make_settings,
    running_app,
)
from tests.serving import served
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv
from tests.test_kafka import free_port


async def _readyz(settings: Settings) -> tuple[int, dict[str, Any]]:
    async with running_app(settings) as app, client_for(app) as client:
        response = await client.get("/readyz")
        return response.status_code, response.json()


async def test_ready_on_the_real_stack_over_http(
        tmp_path: Path, kafka_servers: str, es_url: str) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state")
    async with running_app(settings) as app, served(app) as port:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
            live = await client.get(f"http://127.0.0.1:{port}/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {
        "kafka": "ok", "elasticsearch": "ok", "database": "ok"}}
    assert live.json() == {"status": "ok"}


async def test_kafka_at_a_closed_port(tmp_path: Path, es_url: str) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state",
                             kafka_bootstrap=f"127.0.0.1:{free_port()}")
    status, body = await _readyz(settings)
    assert status == 503
    assert body["not_ready"] == ["kafka"]
    assert body["checks"]["elasticsearch"] == body["checks"]["database"] == "ok"
    assert body["checks"]["kafka"] != "ok"


async def test_topics_missing(tmp_path: Path, kafka_servers: str, es_url: str,
                              unique: str) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state",
                             topic_prefix=f"{unique}.")
    status, body = await _readyz(settings)
    assert status == 503 and body["not_ready"] == ["kafka"]
    assert body["checks"]["kafka"].startswith(f"topics missing: {unique}.logs.raw")


async def test_elasticsearch_at_a_closed_port(tmp_path: Path, kafka_servers: str) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state",
                             es_url=f"http://127.0.0.1:{free_port()}")
    status, body = await _readyz(settings)
    assert status == 503 and body["status"] == "not_ready"
    assert body["not_ready"] == ["elasticsearch"]
    assert body["checks"]["elasticsearch"] == "unreachable (ConnectionError)"


async def test_database_dropped_under_a_running_app(
        tmp_path: Path, kafka_servers: str, es_url: str, postgres_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    url = await _create_postgres_database()
    try:
        settings = make_settings(url, tmp_path / "state")
        async with running_app(settings) as app, client_for(app) as client:
            assert (await client.get("/readyz")).status_code == 200
            await _drop_postgres_database(url)
            response = await client.get("/readyz")
    finally:
        await _drop_postgres_database(url)
    assert response.status_code == 503
    assert response.json()["not_ready"] == ["database"]
    # the public body names the kind of failure; the operator's log says which database
    assert response.json()["checks"]["database"].startswith("unreachable (")
    database = make_url(url).database
    assert database is not None and database not in response.text
    assert any("readiness: database failed" in r.getMessage() and "does not exist"
               in r.getMessage() for r in caplog.records)


async def _worker_answer(stream: StreamEnv, path: str, **extra: str) -> httpx.Response:
    worker = stream.worker(**extra)

    async def answered() -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                return await client.get(f"http://127.0.0.1:{worker.port}{path}")
        except httpx.TransportError:
            return None

    response: httpx.Response = await stream.wait(answered, 120, f"the worker's {path}")
    return response


async def test_the_worker_is_ready(stream: StreamEnv) -> None:
    response = await _worker_answer(stream, "/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"kafka": "ok", "elasticsearch": "ok", "database": "ok"}
    async with httpx.AsyncClient() as client:
        live = await client.get(f"http://127.0.0.1:{stream.workers[0].port}/healthz")
    assert live.json() == {"status": "ok"}


async def test_a_worker_without_elasticsearch_is_not_ready(stream: StreamEnv) -> None:
    response = await _worker_answer(stream, "/readyz",
                                    LAAS_ES_URL=f"http://127.0.0.1:{free_port()}")
    assert response.status_code == 503, response.text
    assert response.json()["not_ready"] == ["elasticsearch"]
