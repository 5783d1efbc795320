"""Fixtures for the ingest tests: a fresh raw topic on the real Kafka, a key table, a gateway.

Import the fixtures into a test module with `from tests.ingest_fixtures import *`.
Kafka comes from the settings (LAAS_KAFKA_BOOTSTRAP or the local stack); unreachable → error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from starlette.applications import Starlette

from app.ingest.auth import Principal
from app.ingest.gateway import bound_port, start_gateway
from app.ingest.service import IngestService
from app.ingest.wire import pb
from app.kafka.client import client_options
from app.kafka.topics import RAW, topic_name
from app.pipeline.normalize import H_BATCH_INDEX, H_BATCH_KEY, LOG_BATCH, batch_indexes
from app.settings import Settings, load_settings
from web.ingest import routes

__all__ = ["KEYS", "KeyTable", "RawRecord", "consume", "gateway", "keys", "raw_settings", "web"]

KEYS = {
    "ingest-key": Principal("1", "acme", "ingest"),
    "admin-key": Principal("1", "acme", "admin"),
    "read-key": Principal("1", "acme", "read"),
    "slow-key": Principal("2", "slowco", "ingest", rate_limit=5.0),
}


@dataclass
class KeyTable:
    """A `KeyVerifier` over a dict (the accounts module's own tests cover the database)."""

    keys: dict[str, Principal] = field(default_factory=lambda: dict(KEYS))

    async def __call__(self, key: str) -> Principal | None:
        return self.keys.get(key)


@pytest.fixture
def keys() -> KeyTable:
    return KeyTable()


@pytest.fixture
async def raw_settings() -> AsyncIterator[Settings]:
    """Settings with a uuid topic prefix and its `logs.raw` created (1 partition, keeps order)."""
    settings = load_settings(topic_prefix=f"t{uuid.uuid4().hex[:12]}.", ingest_produce_timeout=5.0)
    admin = AIOKafkaAdminClient(**client_options(settings),
                                request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 15)
    except Exception as exc:
        pytest.fail(f"Kafka at {settings.kafka_servers} unreachable: {exc!r}")
    topic = topic_name(settings, RAW)
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        yield settings
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


@pytest.fixture
async def gateway(raw_settings: Settings, keys: KeyTable) -> AsyncIterator[int]:
    """A real gateway on a free port writing to the test topic; yields the port."""
    server, service = await start_gateway(raw_settings, verifier=keys, host="127.0.0.1", port=0)
    try:
        yield bound_port(server)
    finally:
        server.close()
        await server.wait_closed()
        await service.close()


@pytest.fixture
async def web(raw_settings: Settings, keys: KeyTable) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP ingest routes in-process (ASGI), writing to the test's Kafka topic."""
    app = Starlette(routes=routes)
    app.state.ingest = IngestService(raw_settings, keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://laas") as client:
        yield client
    await app.state.ingest.close()


@dataclass(frozen=True)
class RawRecord:
    """One record of a `logs.raw` message: its own bytes (`value`), its message's key, headers,
    partition and offset, `index` (1.. within a `LogBatch`, 0 for a message of one record) and
    `position` (its place in the request, from `laas-batch-index`; None without a batch key)."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int
    offset: int
    index: int = 0
    position: int | None = None


def records_of(message: object) -> list[RawRecord]:
    """The records of one consumed `logs.raw` message (a `LogBatch` gives several)."""
    m: Any = message
    headers = dict(m.headers)
    if LOG_BATCH not in headers.get("content-type", b"").decode().lower():
        return [RawRecord(m.key, m.value, list(m.headers), m.partition, m.offset)]
    records = pb.LogBatch.FromString(m.value).records
    positions: list[Any] = [None] * len(records)
    if H_BATCH_KEY in headers:
        found = batch_indexes(headers[H_BATCH_INDEX].decode(), len(records))
        assert isinstance(found, list), found
        positions = list(found)
    return [RawRecord(m.key, r.SerializeToString(), list(m.headers), m.partition, m.offset,
                      i + 1, positions[i]) for i, r in enumerate(records)]


async def consume(settings: Settings, count: int, timeout: float = 15.0) -> list[RawRecord]:
    """Read `count` records (`RawRecord`s: a `LogBatch` message gives one per record) from the
    start of the test's raw topic (fewer on timeout)."""
    consumer = AIOKafkaConsumer(
        topic_name(settings, RAW), **client_options(settings),
        auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    out: list[RawRecord] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for msgs in batch.values():
                for message in msgs:
                    out.extend(records_of(message))
    finally:
        await consumer.stop()
    return out
