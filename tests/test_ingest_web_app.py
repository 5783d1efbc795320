"""`POST /api/v1/logs` through the real web app: database API keys, real Kafka, lifespan close."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.accounts import tenancy
from app.ingest.convert import from_any
from app.ingest.service import IngestService
from app.kafka.topics import RAW, topic_name
from app.settings import Settings, load_settings
from protos.laas.v1 import LogRecord
from tests.conftest import kafka_options
from tests.ingest_fixtures import consume
from web.app import create_app


@pytest.fixture
async def web_settings(tmp_path: Path, kafka_servers: str) -> AsyncIterator[Settings]:
    """A fresh SQLite user database, a fresh topic prefix with its raw topic on the real Kafka."""
    settings = load_settings(
        state_dir=tmp_path / "state", database_url=f"sqlite+aiosqlite:///{tmp_path}/users.db",
        secret_key="test-signing-secret", topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        ingest_key_cache_seconds=0, ingest_produce_timeout=5.0,
    )
    topic = topic_name(settings, RAW)
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        yield settings
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


async def test_logs_through_create_app(web_settings: Settings) -> None:
    app = create_app(web_settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()  # migrates the fresh database, opens the engine
    try:
        async with app.state.sessions() as session, session.begin():
            tenant = await tenancy.create_tenant(session, "acme")
            ingest_key, ingest = await tenancy.create_api_key(session, tenant.id, "ship",
                                                               "ingest")
            _, read = await tenancy.create_api_key(session, tenant.id, "look", "read")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://laas") as client:
            async def post(key: str | None, body: str) -> httpx.Response:
                headers = {"content-type": "application/x-ndjson"}
                if key:
                    headers["authorization"] = f"Bearer {key}"
                return await client.post("/api/v1/logs", content=body, headers=headers)

            body = "\n".join([
                json.dumps({"message": "hello", "level": "warn", "service": "api",
                            "ts": time.time()}),
                "{broken",
                json.dumps({"message": "again", "service": "api"}),
            ])
            r = await post(ingest, body)
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 2
            assert [(e["line"], e["field"]) for e in r.json()["errors"]] == [(2, "line")]

            assert (await post(None, body)).status_code == 401
            assert (await post("laas_not_a_key", body)).status_code == 401
            denied = await post(read, body)
            assert denied.status_code == 403, denied.text

            async with app.state.sessions() as session, session.begin():
                await tenancy.revoke_api_key(session, tenant.id, ingest_key.id)
            assert (await post(ingest, body)).status_code == 401

        msgs = await consume(web_settings, 2, timeout=10)
        records = [LogRecord().parse(m.value) for m in msgs]
        assert [from_any(r.body) for r in records] == ["hello", "again"]
        assert records[0].severity_number == 13
        assert {m.key for m in msgs} == {f"{tenant.id}/api".encode()}
        assert {dict(m.headers)["laas-tenant"] for m in msgs} == {b"acme"}
        service: IngestService = app.state.ingest
        assert service.writer._producer is not None  # the app made and started a producer
    finally:
        await lifespan.__aexit__(None, None, None)
    assert service.writer._producer is None  # the lifespan closed it
