"""The gRPC gateway against the real Kafka: acks, partial batches, every status code."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.ingest.writer import raw_batches
from app.kafka.headers import H_TENANT_ID, LOG_BATCH_CONTENT_TYPE
from app.settings import Settings
from protos.laas.v1 import AnyValue, LogBatch, LogIngestStub, LogRecord, PushAck, Resource
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, consume


def rec(msg: str, **kw: Any) -> LogRecord:
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
    assert dict(msgs[0].headers)[H_TENANT_ID] == b"1"
    assert dict(msgs[0].headers)["content-type"] == LOG_BATCH_CONTENT_TYPE


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
    assert ack is not None
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

    async def batches() -> AsyncIterator[LogBatch]:
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


async def test_revoked_key(gateway: int, keys: KeyTable) -> None:
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


async def test_kafka_unreachable_gives_unavailable(keys: KeyTable) -> None:
    from app.ingest.gateway import bound_port, start_gateway
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


async def test_laas_gateway_migrates_the_user_database(tmp_path: Path) -> None:
    """`laas gateway` on a fresh database brings it to head before serving."""
    import asyncio
    import os
    import socket
    import subprocess
    import sys

    from app.db.migrations import current_revision, head_revision

    db = f"sqlite+aiosqlite:///{tmp_path}/users.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAAS_DATABASE_URL": db, "LAAS_STATE_DIR": str(tmp_path / "state"),
           "LAAS_GATEWAY_PORT": str(port), "LAAS_OTLP_HTTP_PORT": "0",
           "LAAS_GATEWAY_METRICS_PORT": "0"}
    assert await current_revision(db) is None
    proc = subprocess.Popen([sys.executable, "-m", "app", "gateway"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert asyncio.get_running_loop().time() < deadline, "gateway did not listen"
                await asyncio.sleep(0.2)
        assert await current_revision(db) == head_revision()
    finally:
        proc.terminate()
        proc.wait(15)


# --- grpcio clients: compression, health, TLS, limits (issue 17, issue 22) ----------------------

OTLP_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
KEY_META = (("authorization", "Bearer ingest-key"),)


def _otlp_export(messages: list[str], service: str = "otlp") -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue as OAny
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OLog
    from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource as OResource

    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=OResource(attributes=[KeyValue(key="service.name",
                                                value=OAny(string_value=service))]),
        scope_logs=[ScopeLogs(log_records=[
            OLog(time_unix_nano=time.time_ns(), body=OAny(string_value=m)) for m in messages])])]
    ).SerializeToString()


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
async def test_every_method_takes_compressed_requests(
        gateway: int, raw_settings: Settings, compression: str) -> None:
    import grpc

    algorithm = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}[compression]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}",
                                         compression=algorithm) as channel:
        push = channel.unary_unary("/laas.v1.LogIngest/Push")
        reply = await push(bytes(LogBatch(records=[rec("unary")], batch_id=3)),
                           metadata=KEY_META)
        ack = PushAck().parse(reply)
        assert (ack.accepted, ack.batch_id) == (1, 3)
        stream = channel.stream_stream("/laas.v1.LogIngest/PushStream")
        call = stream(metadata=KEY_META)
        await call.write(bytes(LogBatch(records=[rec("streamed")], batch_id=4)))
        await call.done_writing()
        replies = [PushAck().parse(r) async for r in call]
        assert [(a.accepted, a.batch_id) for a in replies] == [(1, 4)]
        export = channel.unary_unary(OTLP_EXPORT)
        assert await export(_otlp_export(["exported " * 200]), metadata=KEY_META) == b""
    msgs = await consume(raw_settings, 3, timeout=10)
    bodies = [LogRecord().parse(m.value).body.string_value for m in msgs]
    assert bodies == ["unary", "streamed", "exported " * 200]
    assert LogRecord().parse(msgs[2].value).resource.service_name == "otlp"


async def test_health_service_reports_each_service(gateway: int) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "laas.v1.LogIngest",
                     "opentelemetry.proto.collector.logs.v1.LogsService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_oversized_and_compressed_bombs_are_resource_exhausted(
        raw_settings: Settings, keys: KeyTable) -> None:
    import grpc

    from app.ingest.gateway import start_gateway

    small = raw_settings.model_copy(update={"ingest_max_batch_bytes": 64 * 1024})
    server, service = await start_gateway(small, verifier=keys, host="127.0.0.1", port=0)
    try:
        big = bytes(LogBatch(records=[rec("x" * 60_000), rec("y" * 60_000)]))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}",
                                             compression=grpc.Compression.Gzip) as channel:
            # 120 kB that gzip squeezes to a few hundred bytes: refused after decompression
            for method in ("/laas.v1.LogIngest/Push", OTLP_EXPORT):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await channel.unary_unary(method)(
                        big if method.endswith("Push") else _otlp_export(["z" * 120_000]),
                        metadata=KEY_META)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, method
                assert "at most 65536" in (err.value.details() or ""), err.value.details()
            # a frame past grpcio's own limit (batch limit + 64 KiB) never reaches a handler
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary("/laas.v1.LogIngest/Push")(
                    bytes(LogBatch(records=[rec("w" * 200_000)])), metadata=KEY_META)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the same channel still works
            ok = await channel.unary_unary("/laas.v1.LogIngest/Push")(
                bytes(LogBatch(records=[rec("fits")])), metadata=KEY_META)
            assert ok
    finally:
        await server.stop(0)
        await service.close()
    assert [LogRecord().parse(m.value).body.string_value
            for m in await consume(raw_settings, 1, timeout=5)] == ["fits"]


async def test_bad_otlp_over_grpc_is_a_clear_status_and_keeps_the_good_records(
        gateway: int, raw_settings: Settings) -> None:
    import grpc

    from protos.opentelemetry.proto.collector.logs.v1 import ExportLogsServiceResponse

    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        export = channel.unary_unary(OTLP_EXPORT)
        for data in (b"\x0a\x05\x01", b"\x08\x01", b"\xff" * 10):  # framing broken, wrong type
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await export(data, metadata=KEY_META)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, data
            assert "ExportLogsServiceRequest" in (err.value.details() or "")
        for meta in ((), (("authorization", "Bearer nope"),)):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await export(_otlp_export(["x"]), metadata=meta)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # one record with a 3-byte trace id among good ones: a partial success, the rest kept
        good = _otlp_export(["a", "b"])
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        request = ExportLogsServiceRequest.FromString(good)
        request.resource_logs[0].scope_logs[0].log_records[1].trace_id = b"abc"
        reply = ExportLogsServiceResponse().parse(
            await export(request.SerializeToString(), metadata=KEY_META))
    assert reply.partial_success.rejected_log_records == 1
    assert "record 1: trace_id" in reply.partial_success.error_message
    msgs = await consume(raw_settings, 2, timeout=5)
    assert [LogRecord().parse(m.value).body.string_value for m in msgs] == ["a"]


# --- TLS (issue 22) ---------------------------------------------------------------------------

async def test_tls_on_grpc_and_otlp_http(
        raw_settings: Settings, keys: KeyTable, tmp_path: Path) -> None:
    import grpc
    import httpx

    from app.ingest.gateway import start_gateway
    from tests.tls_fixtures import make_certs

    certs = make_certs(tmp_path / "tls")
    settings = raw_settings.model_copy(update={"tls_certfile": certs.cert,
                                               "tls_keyfile": certs.key})
    server, service = await start_gateway(settings, verifier=keys, host="127.0.0.1", port=0,
                                          http_port=0)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", creds) as channel:
            reply = await channel.unary_unary(OTLP_EXPORT)(_otlp_export(["over tls"]),
                                                          metadata=KEY_META)
            assert reply == b""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await plain.unary_unary(OTLP_EXPORT)(_otlp_export(["plain"]), metadata=KEY_META,
                                                     timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        import ssl

        trust = ssl.create_default_context(cafile=str(certs.ca))
        async with httpx.AsyncClient(verify=trust) as client:
            r = await client.post(f"https://127.0.0.1:{server.http_port}/v1/logs",
                                  content=_otlp_export(["https"]),
                                  headers={"content-type": "application/x-protobuf",
                                           "authorization": "Bearer ingest-key"})
            assert r.status_code == 200, r.text
    finally:
        await server.stop(0)
        await service.close()
    msgs = await consume(raw_settings, 3, timeout=5)
    assert [LogRecord().parse(m.value).body.string_value for m in msgs] == ["over tls", "https"]


def test_plain_text_only_on_loopback_unless_allowed(raw_settings: Settings, tmp_path: Path) -> None:
    from app.ingest.gateway import GatewayConfigError, tls_files

    assert tls_files(raw_settings, "127.0.0.1") is None
    assert tls_files(raw_settings, "::1") is None and tls_files(raw_settings, "localhost") is None
    for host in ("0.0.0.0", "10.1.2.3", "gateway.example"):
        with pytest.raises(GatewayConfigError, match="refusing to serve plain text"):
            tls_files(raw_settings, host)
    allowed = raw_settings.model_copy(update={"tls_plaintext_ok": True})
    assert tls_files(allowed, "0.0.0.0") is None
    half = raw_settings.model_copy(update={"tls_certfile": tmp_path / "cert.pem"})
    with pytest.raises(GatewayConfigError, match="go together"):
        tls_files(half, "127.0.0.1")
    missing = half.model_copy(update={"tls_keyfile": tmp_path / "key.pem"})
    with pytest.raises(GatewayConfigError, match="cannot read"):
        tls_files(missing, "0.0.0.0")


def test_laas_gateway_refuses_plain_text_on_a_public_address(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LAAS_GATEWAY_HOST": "0.0.0.0", "LAAS_STATE_DIR": str(tmp_path)}
    env.pop("LAAS_TLS_PLAINTEXT_OK", None)
    done = subprocess.run([sys.executable, "-m", "app", "gateway"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to serve plain text on 0.0.0.0" in done.stderr, done.stderr[-2000:]


async def test_health_is_not_serving_while_kafka_is_unreachable(keys: KeyTable) -> None:
    import asyncio
    import contextlib

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from app.ingest.gateway import _watch_kafka, start_gateway
    from app.settings import load_settings

    dead = load_settings(kafka_bootstrap="127.0.0.1:1", ingest_produce_timeout=1.0)
    server, service = await start_gateway(dead, verifier=keys, host="127.0.0.1", port=0)
    watcher = asyncio.ensure_future(_watch_kafka(server, service))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="laas.v1.LogIngest")
            for _ in range(100):
                reply = await stub.Check(check)
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                await asyncio.sleep(0.1)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            process = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert process.status == health_pb2.HealthCheckResponse.SERVING  # alive, not ready
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await server.stop(0)
        await service.close()


async def test_a_port_in_use_stops_the_gateway(raw_settings: Settings, keys: KeyTable) -> None:
    import grpc

    from app.ingest.gateway import GatewayConfigError, start_gateway

    first, service = await start_gateway(raw_settings, verifier=keys, host="127.0.0.1", port=0,
                                         http_port=0)
    try:
        with pytest.raises(GatewayConfigError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await start_gateway(raw_settings, verifier=keys, host="127.0.0.1", port=first.port,
                                http_port=0)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        with pytest.raises(GatewayConfigError, match="OTLP/HTTP"):
            await start_gateway(raw_settings, verifier=keys, host="127.0.0.1", port=free,
                                http_port=first.http_port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{free}") as channel:
            with pytest.raises(grpc.aio.AioRpcError):  # its gRPC half was stopped, not leaked
                await channel.unary_unary(OTLP_EXPORT)(b"", metadata=KEY_META, timeout=2)
    finally:
        await first.stop(0)
        await service.close()
