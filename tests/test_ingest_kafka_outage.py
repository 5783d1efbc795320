"""Kafka stopped during pushes: UNAVAILABLE / 503, no false ack, and recovery after a restart.

Runs its own single-node Kafka (`deploy.kafka.Kafka`) on free ports in a temporary state
directory, so stopping it leaves the shared stack alone. The broker jars are not resolved again:
the shared `downloads` directory is linked into the temporary state directory.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from starlette.applications import Starlette

from app.ingest.convert import from_any
from app.ingest.gateway import bound_port, start_gateway
from app.ingest.service import IngestService
from app.kafka.client import client_options
from app.kafka.topics import RAW, topic_name
from app.settings import Settings, load_settings
from deploy.kafka import Kafka
from protos.laas.v1 import AnyValue, LogBatch, LogIngestStub, LogRecord
from tests.ingest_fixtures import KeyTable, consume
from web.ingest import routes

START_TIMEOUT = 60.0
_ids = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(kafka: Kafka, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(kafka.ready):
        if time.monotonic() > deadline:
            raise AssertionError(f"dedicated Kafka not ready after {timeout:.0f}s; "
                                 f"see {kafka.log_file}")
        if not kafka.running():
            raise AssertionError(f"dedicated Kafka exited; see {kafka.console_log}")
        await asyncio.sleep(0.5)


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[Kafka]:
    """A dedicated broker (not started yet); stopped at the end whatever happened."""
    shared = (load_settings().state_dir / "downloads").resolve()
    state = tmp_path / "state"
    state.mkdir()
    (state / "downloads").symlink_to(shared, target_is_directory=True)
    settings = load_settings(
        state_dir=state, kafka_bootstrap=None, kafka_port=_free_port(),
        kafka_controller_port=_free_port(), partitions=1,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.", ingest_produce_timeout=3.0,
    )
    broker = Kafka(settings)
    broker.prepare()  # finds the linked jars: no Maven run
    try:
        yield broker
    finally:
        broker.stop()


def rec(text: str) -> LogRecord:
    return LogRecord(body=AnyValue(string_value=text), time_unix_nano=time.time_ns(),
                     attributes={"n": AnyValue(int_value=len(text))})


@pytest.fixture
async def servers(kafka: Kafka) -> AsyncIterator[tuple[Settings, LogIngestStub, httpx.AsyncClient]]:
    """Gateway and HTTP ingest on the dedicated broker, its raw topic created."""
    settings = kafka.settings
    await asyncio.to_thread(kafka.start)
    await _wait_ready(kafka)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_name(settings, RAW), 1, 1)])
    finally:
        await admin.close()
    keys = KeyTable()
    server, gateway_service = await start_gateway(settings, verifier=keys, host="127.0.0.1",
                                                  port=0)
    app = Starlette(routes=routes)
    app.state.ingest = IngestService(settings, keys)
    channel = Channel("127.0.0.1", bound_port(server))
    stub = LogIngestStub(channel, metadata={"x-api-key": "ingest-key"}, timeout=30)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://laas", timeout=30) as web:
            yield settings, stub, web
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
        await gateway_service.close()
        await app.state.ingest.close()


async def _push_grpc(stub: LogIngestStub, acked: list[str], n: int = 5) -> None:
    texts = [f"g{next(_ids)}" for _ in range(n)]
    ack = await stub.push(LogBatch(records=[rec(t) for t in texts]))
    assert ack.accepted == n and not ack.rejections
    acked.extend(texts)


async def _push_http(web: httpx.AsyncClient, acked: list[str], n: int = 5) -> httpx.Response:
    texts = [f"h{next(_ids)}" for _ in range(n)]
    body = "\n".join(f'{{"message": "{t}", "n": {len(t)}}}' for t in texts)
    r = await web.post("/api/v1/logs", content=body, headers={
        "content-type": "application/x-ndjson", "x-api-key": "ingest-key"})
    if r.status_code == 200:
        assert r.json()["accepted"] == n
        acked.extend(texts)
    return r


async def test_kafka_stop_and_restart(
    kafka: Kafka, servers: tuple[Settings, LogIngestStub, httpx.AsyncClient]
) -> None:
    settings, stub, web = servers
    acked: list[str] = []

    # 1. Broker up: acknowledged means readable.
    await _push_grpc(stub, acked)
    assert (await _push_http(web, acked)).status_code == 200
    msgs = await consume(settings, len(acked), timeout=10)
    assert [from_any(LogRecord().parse(m.value).body) for m in msgs] == acked

    # 2. Stop the broker while a producer keeps pushing: every push either gets a full ack
    # or UNAVAILABLE; the loop ends at the first UNAVAILABLE.
    async def keep_pushing() -> GRPCError:
        while True:
            try:
                await _push_grpc(stub, acked)
            except GRPCError as exc:
                return exc

    pusher = asyncio.create_task(keep_pushing())
    await asyncio.sleep(0.2)
    assert not pusher.done(), "pushes failed before the broker was stopped"
    assert await asyncio.to_thread(kafka.stop)
    err = await asyncio.wait_for(pusher, 30)
    assert err.status is Status.UNAVAILABLE, err
    assert "Kafka unavailable" in (err.message or "")

    # 3. Broker down: both servers refuse, with a retry hint, and acknowledge nothing.
    before = len(acked)
    with pytest.raises(GRPCError) as refused:
        await _push_grpc(stub, acked)
    assert refused.value.status is Status.UNAVAILABLE
    r = await _push_http(web, acked)
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
    assert len(acked) == before

    # 4. Restart on the same state directory: pushes succeed again (the writers reconnect).
    await asyncio.to_thread(kafka.start)
    await _wait_ready(kafka)
    deadline = time.monotonic() + 30
    while True:
        try:
            await _push_grpc(stub, acked)
            break
        except GRPCError as exc:
            assert exc.status is Status.UNAVAILABLE, exc
            assert time.monotonic() < deadline, f"gateway not recovered: {exc}"
            await asyncio.sleep(0.5)
    while (r := await _push_http(web, acked)).status_code != 200:
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        await asyncio.sleep(0.5)

    # 5. Every acknowledged record is in the topic once, as acknowledged; anything else there
    # belongs to a push that was answered UNAVAILABLE (at-least-once, never a false ack).
    msgs = await consume(settings, len(acked) + 1000, timeout=8)
    found: dict[str, int] = {}
    for m in msgs:
        record = LogRecord().parse(m.value)
        text = str(from_any(record.body))
        assert from_any(record.attributes["n"]) == len(text)
        found[text] = found.get(text, 0) + 1
    missing = [t for t in acked if t not in found]
    assert not missing, f"acknowledged but not in Kafka: {missing}"
    assert all(found[t] == 1 for t in acked)
    assert len(acked) > before + 5  # at least one gRPC and one HTTP push after the restart
