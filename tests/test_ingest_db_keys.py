"""The gateway with the real key store (app.accounts.tenancy, SQLite): scopes, revocation, rate."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.accounts.tenancy import create_api_key, create_tenant, revoke_api_key
from app.db.engine import SessionFactory, create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.ingest.auth import DatabaseVerifier
from app.ingest.gateway import bound_port, start_gateway
from app.settings import Settings
from protos.laas.v1 import AnyValue, LogBatch, LogIngestStub, LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await upgrade_database_async(engine)
    yield session_factory(engine)
    await engine.dispose()


async def test_real_keys(raw_settings: Settings, sessions: SessionFactory) -> None:
    async with sessions.begin() as s:
        tenant = await create_tenant(s, "dbco", ingest_rate_limit=1000.0)
        ingest, ingest_plain = await create_api_key(s, tenant.id, "ship", "ingest")
        _, read_plain = await create_api_key(s, tenant.id, "look", "read")
    server, service = await start_gateway(raw_settings, verifier=DatabaseVerifier(sessions, 0),
                                          host="127.0.0.1", port=0)
    batch = LogBatch(records=[LogRecord(body=AnyValue(string_value="db"),
                                        time_unix_nano=time.time_ns())])
    try:
        channel = Channel("127.0.0.1", bound_port(server))
        with closing(channel):
            ok = LogIngestStub(channel, metadata={"authorization": f"Bearer {ingest_plain}"})
            assert (await ok.push(batch)).accepted == 1
            with pytest.raises(GRPCError) as err:
                await LogIngestStub(channel, metadata={"x-api-key": read_plain}).push(batch)
            assert err.value.status is Status.PERMISSION_DENIED
            async with sessions.begin() as s:
                await revoke_api_key(s, tenant.id, ingest.id)
            with pytest.raises(GRPCError) as err:
                await ok.push(batch)
            assert err.value.status is Status.UNAUTHENTICATED
    finally:
        server.close()
        await server.wait_closed()
        await service.close()
    msgs = await consume(raw_settings, 1, timeout=5)
    assert dict(msgs[0].headers)["laas-tenant-id"] == str(tenant.id).encode()
    assert dict(msgs[0].headers)["laas-tenant"] == b"dbco"
