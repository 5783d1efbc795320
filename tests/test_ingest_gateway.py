"""The gRPC gateway against the real Kafka: acks, partial batches, every status code."""

from __future__ import annotations

import time
from contextlib import closing

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.ingest.writer import CONTENT_TYPE, HEADER_TENANT_ID, raw_batches
from app.settings import Settings
from protos.laas.v1 import AnyValue, LogBatch, LogIngestStub, LogRecord, Resource
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume


def rec(msg: str, **kw: object) -> LogRecord:
    return LogRecord(body=AnyValue(string_value=msg), time_unix_nano=time.time_ns(), **kw)


def stub(port: int, key: str = "ingest-key") -> tuple[Channel, LogIngestStub]:
    channel = Channel("127.0.0.1", port)
    return channel, LogIngestStub(channel, metadata={"authorization": f"Bearer {key}"})


def test_a_request_becomes_one_message_per_service_split_at_the_size_limit() -> None:
    records = [rec(f"m{i}", resource=Resource(service_name=("api", "web")[i % 2]))
               for i in range(7)]
    size = len(bytes(records[0])) + 2  # a record's entry in a LogBatch: tag, length, bytes
    batches = raw_batches(records, range(7), "1", 3 * size)
    assert [(b.key, b.positions) for b in batches] == [
        (b"1/api", [0, 2, 4]), (b"1/web", [1, 3, 5]), (b"1/api", [6])]
    assert [len(b.value) for b in batches] == [3 * size, 3 * size, size]
    assert LogBatch().parse(batches[1].value).records == [records[1], records[3], records[5]]
    huge = rec("x" * 5000)
    assert [b.positions for b in raw_batches([huge, huge], [0, 1], "1", 1024)] == [[0], [1]]


async def test_push_is_in_kafka_when_acked(gateway: int, raw_settings: Settings) -> None:
    channel, client = stub(gateway)
    with closing(channel):
        batch = LogBatch(records=[rec(f"m{i}", severity_text="warning") for i in range(5)],
                         resource=Resource(service_name="api", host="h1"), batch_id=7)
        ack = await client.push(batch)
    assert (ack.accepted, ack.rejections, ack.batch_id) == (5, [], 7)
    msgs = await consume(raw_settings, 5, timeout=5)
    assert [LogRecord().parse(m.value).body.string_value for m in msgs] == [
        f"m{i}" for i in range(5)]
    first = LogRecord().parse(msgs[0].value)
    assert first.severity_number == 13 and first.resource.service_name == "api"
    assert msgs[0].key == b"1/api" and {m.offset for m in msgs} == {msgs[0].offset}
    assert dict(msgs[0].headers)[HEADER_TENANT_ID] == b"1"
    assert dict(msgs[0].headers)["content-type"] == CONTENT_TYPE


async def test_partial_batch_accepts_exactly_the_valid(
    gateway: int, raw_settings: Settings
) -> None:
    channel, client = stub(gateway)
    bad_time = LogRecord(body=AnyValue(string_value="old"), time_unix_nano=1)
    too_many = rec("attrs", attributes={f"k{i}": AnyValue(int_value=i) for i in range(200)})
    bad_trace = rec("trace", trace_id=b"123")
    with closing(channel):
        ack = await client.push(LogBatch(records=[rec("ok0"), bad_time, rec("ok2"), too_many,
                                                  bad_trace, rec("ok5")]))
    assert ack.accepted == 3
    assert [(r.index, r.field) for r in ack.rejections] == [
        (1, "time_unix_nano"), (3, "attributes"), (4, "trace_id")]
    assert "at most 128" in ack.rejections[1].reason
    msgs = await consume(raw_settings, 4, timeout=4)
    assert [LogRecord().parse(m.value).body.string_value for m in msgs] == ["ok0", "ok2", "ok5"]


async def test_invalid_utf8_record_is_rejected_alone(
    gateway: int, raw_settings: Settings
) -> None:
    good = bytes(rec("fine"))
    bad = bytearray(bytes(LogRecord(severity_text="INFO")))
    bad[-4:] = b"\xff\xfe\xfd\xfc"  # the severity text's bytes
    data = b"".join(b"\x0a" + bytes([len(r)]) + r for r in (good, bytes(bad), good))

    channel = Channel("127.0.0.1", gateway)
    with closing(channel):
        async with channel.request("/laas.v1.LogIngest/Push",
                                   __import__("grpclib").const.Cardinality.UNARY_UNARY,
                                   _RawBatch, __import__("protos.laas.v1").laas.v1.PushAck,
                                   metadata={"x-api-key": "ingest-key"}) as st:
            await st.send_message(_RawBatch(data), end=True)
            ack = await st.recv_message()
    assert ack.accepted == 2
    assert ack.rejections[0].index == 1 and "UTF-8" in ack.rejections[0].reason


class _RawBatch:
    """Hand-framed LogBatch bytes (to send what betterproto would refuse to build)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - the codec's interface
        return self.data


async def test_push_stream_acks_each_batch_in_order(
    gateway: int, raw_settings: Settings
) -> None:
    channel, client = stub(gateway)

    async def batches():  # type: ignore[no-untyped-def]
        for b in range(4):
            yield LogBatch(records=[rec(f"b{b}r{i}") for i in range(10)], batch_id=b)

    with closing(channel):
        acks = [a async for a in client.push_stream(batches())]
    assert [(a.batch_id, a.accepted) for a in acks] == [(0, 10), (1, 10), (2, 10), (3, 10)]
    assert len(await consume(raw_settings, 40)) == 40


@pytest.mark.parametrize(("key", "status"), [
    (None, Status.UNAUTHENTICATED),
    ("no-such-key", Status.UNAUTHENTICATED),
    ("read-key", Status.PERMISSION_DENIED),
])
async def test_auth_errors(gateway: int, key: str | None, status: Status) -> None:
    channel = Channel("127.0.0.1", gateway)
    md = {"x-api-key": key} if key else {}
    with closing(channel):
        with pytest.raises(GRPCError) as err:
            await LogIngestStub(channel, metadata=md).push(LogBatch(records=[rec("x")]))
    assert err.value.status is status


async def test_revoked_key(gateway: int, keys) -> None:  # type: ignore[no-untyped-def]
    channel, client = stub(gateway)
    with closing(channel):
        assert (await client.push(LogBatch(records=[rec("before")]))).accepted == 1
        del keys.keys["ingest-key"]  # the verifier now says: revoked
        with pytest.raises(GRPCError) as err:
            await client.push(LogBatch(records=[rec("after")]))
    assert err.value.status is Status.UNAUTHENTICATED


async def test_admin_key_may_ingest(gateway: int) -> None:
    channel, client = stub(gateway, "admin-key")
    with closing(channel):
        assert (await client.push(LogBatch(records=[rec("x")]))).accepted == 1


async def test_too_many_records_is_refused_whole(gateway: int, raw_settings: Settings) -> None:
    channel, client = stub(gateway)
    n = raw_settings.ingest_max_batch_records + 1
    with closing(channel):
        with pytest.raises(GRPCError) as err:
            await client.push(LogBatch(records=[LogRecord()] * n))
    assert err.value.status is Status.RESOURCE_EXHAUSTED
    assert f"at most {n - 1}" in (err.value.message or "")


async def test_garbage_is_invalid_argument(gateway: int) -> None:
    channel = Channel("127.0.0.1", gateway)
    with closing(channel):
        async with channel.request("/laas.v1.LogIngest/Push",
                                   __import__("grpclib").const.Cardinality.UNARY_UNARY,
                                   _RawBatch, __import__("protos.laas.v1").laas.v1.PushAck,
                                   metadata={"x-api-key": "ingest-key"}) as st:
            await st.send_message(_RawBatch(b"\x0a\xff\xff\xff"), end=True)
            with pytest.raises(GRPCError) as err:
                await st.recv_message()
    assert err.value.status is Status.INVALID_ARGUMENT


async def test_rate_limit_gives_resource_exhausted_with_retry(gateway: int) -> None:
    channel, client = stub(gateway, "slow-key")  # 5 records/s
    with closing(channel):
        assert (await client.push(LogBatch(records=[rec("a")] * 5))).accepted == 5
        with pytest.raises(GRPCError) as err:
            await client.push(LogBatch(records=[rec("b")] * 5))
    assert err.value.status is Status.RESOURCE_EXHAUSTED
    assert "retry after" in (err.value.message or "")
    assert err.value.details is not None  # google.rpc.RetryInfo in grpc-status-details-bin


async def test_kafka_unreachable_gives_unavailable(keys) -> None:  # type: ignore[no-untyped-def]
    from app.gateway import bound_port, start_gateway
    from app.settings import load_settings

    dead = load_settings(kafka_bootstrap="127.0.0.1:1", ingest_produce_timeout=2.0)
    server, service = await start_gateway(dead, verifier=keys, host="127.0.0.1", port=0)
    try:
        channel, client = stub(bound_port(server))
        with closing(channel):
            with pytest.raises(GRPCError) as err:
                await client.push(LogBatch(records=[rec("lost?")]))
        assert err.value.status is Status.UNAVAILABLE
        assert "retry after" in (err.value.message or "")
    finally:
        server.close()
        await server.wait_closed()
        await service.close()


async def test_laas_gateway_migrates_the_user_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`laas gateway` on a fresh database brings it to head before serving."""
    import asyncio
    import os
    import socket
    import subprocess
    import sys

    from app.migrations import current_revision, head_revision

    db = f"sqlite+aiosqlite:///{tmp_path}/users.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAAS_DATABASE_URL": db, "LAAS_STATE_DIR": str(tmp_path / "state"),
           "LAAS_GATEWAY_PORT": str(port)}
    assert await current_revision(db) is None
    proc = subprocess.Popen([sys.executable, "-m", "app", "gateway"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                assert asyncio.get_running_loop().time() < deadline, "gateway did not listen"
                await asyncio.sleep(0.2)
        assert await current_revision(db) == head_revision()
    finally:
        proc.terminate()
        proc.wait(15)
