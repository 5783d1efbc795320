"""OTLP from real clients, unchanged: the OpenTelemetry Python SDK (gRPC with and without gzip,
HTTP protobuf) and the OpenTelemetry Collector (built from the Go module proxy by
deploy/otelcol.py: `otlp_grpc` exporter with gzip, `otlp_http` exporter with JSON) ship into the
gateway; a real worker indexes the records and the query language finds each with its fields
and types (int and double attributes searchable as numbers)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from elasticsearch import ApiError, AsyncElasticsearch
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HTTPLogExporter,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from app.elastic import esindex
from app.ingest.convert import from_any
from app.ingest.gateway import start_gateway
from app.query.elastic import to_elasticsearch
from app.query.parser import parse
from app.settings import Settings
from deploy.otelcol import collector_binary
from protos.laas.v1 import LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, consume
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, free_port, register_tenants

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
KEY = "ingest-key"


def _ship(exporter: Any, service: str) -> None:
    """Two warnings through the stdlib logging bridge: latency 150 ms and 50 ms."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service,
                                                        "host.name": "node-7",
                                                        "deployment.environment": "test"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"otel-{service}")
    logger.propagate = False
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        for latency in (150, 50):
            logger.warning("payment %s failed", service, extra={
                "latency_ms": latency, "ratio": latency / 1000, "user": "alice",
                "retry": True})
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


def _grpc_exporter(port: int, compression: grpc.Compression) -> OTLPLogExporter:
    return OTLPLogExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True,
                           headers={"authorization": f"Bearer {KEY}"}, timeout=10,
                           compression=compression)


def _http_exporter(url: str) -> HTTPLogExporter:
    return HTTPLogExporter(endpoint=url, headers={"authorization": f"Bearer {KEY}"}, timeout=10)


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
async def test_otel_sdk_grpc_export_arrives_intact(gateway: int, raw_settings: Settings) -> None:
    await asyncio.to_thread(_ship, _grpc_exporter(gateway, grpc.Compression.Gzip), "checkout")
    msgs = await consume(raw_settings, 2, timeout=10)
    assert len(msgs) == 2
    first = LogRecord().parse(msgs[0].value)
    assert first.body.string_value == "payment checkout failed"
    assert (first.severity_number, first.severity_text) == (13, "WARN")
    assert from_any(first.attributes["latency_ms"]) == 150
    assert from_any(first.attributes["ratio"]) == 0.15
    assert from_any(first.attributes["retry"]) is True
    assert first.resource.service_name == "checkout" and first.resource.host == "node-7"
    assert from_any(first.resource.attributes["deployment.environment"]) == "test"
    assert first.scope.name == "otel-checkout"
    assert first.time_unix_nano and first.observed_time_unix_nano
    assert msgs[0].key == b"1/checkout"


# --- the OpenTelemetry Collector ----------------------------------------------------------------

COLLECTOR_CONFIG = """
receivers:
  otlp/to_grpc:
    protocols:
      http:
        endpoint: 127.0.0.1:{grpc_in}
  otlp/to_json:
    protocols:
      http:
        endpoint: 127.0.0.1:{json_in}
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:{gateway}
    compression: gzip
    tls:
      insecure: true
    headers:
      authorization: Bearer {key}
  otlp_http:
    logs_endpoint: http://127.0.0.1:{http}/v1/logs
    encoding: json
    compression: none
    headers:
      authorization: Bearer {key}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs/grpc:
      receivers: [otlp/to_grpc]
      exporters: [otlp_grpc]
    logs/json:
      receivers: [otlp/to_json]
      exporters: [otlp_http]
"""


@pytest.fixture(scope="session")
def otelcol() -> Path:
    """The Collector binary (built on first use, about two minutes; cached in the state
    directory's downloads, like the stack's Kafka and Elasticsearch)."""
    from app.settings import load_settings

    return collector_binary(load_settings().state_dir)


@pytest.fixture
def collector(otelcol: Path, tmp_path: Path) -> Iterator[Any]:
    """Start the Collector against a gateway: `start(gateway_port, http_port)` → its two
    OTLP/HTTP receiver ports (one forwards over gRPC with gzip, one over HTTP as JSON)."""
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "otelcol.log"

    async def start(gateway: int, http: int) -> tuple[int, int]:
        grpc_in, json_in = free_port(), free_port()
        config = tmp_path / "otelcol.yaml"
        config.write_text(COLLECTOR_CONFIG.format(grpc_in=grpc_in, json_in=json_in,
                                                  gateway=gateway, http=http, key=KEY))
        with open(log, "wb") as out:
            procs.append(subprocess.Popen([str(otelcol), "--config", str(config)],
                                          stdout=out, stderr=subprocess.STDOUT))
        for _ in range(100):
            assert procs[0].poll() is None, log.read_text()[-3000:]
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(f"http://127.0.0.1:{json_in}/")
                return grpc_in, json_in
            except httpx.TransportError:
                await asyncio.sleep(0.2)
        raise AssertionError(f"the Collector did not listen:\n{log.read_text()[-3000:]}")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
    text = log.read_text() if log.exists() else ""
    assert "Exporting failed" not in text, text[-3000:]


async def _docs(es: AsyncElasticsearch, settings: Settings, query: str) -> list[dict[str, Any]]:
    """The tenant's documents matching `query` (the query language, as the search API runs
    it)."""
    request = esindex.tenant_search(settings, "1", to_elasticsearch(parse(query)), size=50,
                                    sort=[{"@timestamp": "asc"}])
    await es.indices.refresh(index=request["index"], ignore_unavailable=True)
    found = await es.search(**request)
    return [h["_source"] for h in found["hits"]["hits"]]


SERVICES = ("sdk-grpc", "sdk-grpc-gzip", "sdk-http-protobuf", "otelcol-grpc-gzip",
            "otelcol-http-json")


async def test_every_client_is_searchable_with_fields_and_types(
        stream: StreamEnv, es: AsyncElasticsearch, collector: Any) -> None:
    server, service = await start_gateway(stream.settings, verifier=KeyTable(), host="127.0.0.1",
                                          port=0, http_port=0)
    try:
        grpc_in, json_in = await collector(server.port, server.http_port)
        http_url = f"http://127.0.0.1:{server.http_port}/v1/logs"
        ships = [
            (_grpc_exporter(server.port, grpc.Compression.NoCompression), "sdk-grpc"),
            (_grpc_exporter(server.port, grpc.Compression.Gzip), "sdk-grpc-gzip"),
            (_http_exporter(http_url), "sdk-http-protobuf"),
            (_http_exporter(f"http://127.0.0.1:{grpc_in}/v1/logs"), "otelcol-grpc-gzip"),
            (_http_exporter(f"http://127.0.0.1:{json_in}/v1/logs"), "otelcol-http-json"),
        ]
        for exporter, name in ships:
            await asyncio.to_thread(_ship, exporter, name)
        msgs = await consume(stream.settings, 10, timeout=30)  # the Collector forwards async
        assert len(msgs) == 10, [m.key for m in msgs]
    finally:
        await server.stop()
        await service.close()
    await register_tenants(stream.settings, [{"laas-tenant-id": b"1", "laas-tenant": b"acme"}])
    stream.worker()

    async def indexed() -> bool:
        try:
            return len(await _docs(es, stream.settings, "payment")) == 10
        except ApiError as exc:  # 503 while the worker's new index has a shard not started
            if exc.meta.status != 503:  # (failed a CI run once: "all shards failed")
                raise
            return False

    await stream.wait(indexed, 120, "the 10 records to be searchable")
    for name in SERVICES:
        slow = await _docs(es, stream.settings, f"service:{name} AND attributes.latency_ms:>100")
        assert len(slow) == 1, (name, slow)
        doc = slow[0]
        assert doc["message"] == f"payment {name} failed"
        assert (doc["severity"], doc["severity_number"], doc["host"]) == ("WARN", 13, "node-7")
        attrs = doc["attributes"]
        assert attrs["latency_ms"] == 150 and type(attrs["latency_ms"]) is int, attrs
        assert attrs["ratio"] == 0.15 and type(attrs["ratio"]) is float, attrs
        assert (attrs["user"], attrs["retry"]) == ("alice", "true")
        assert attrs["resource.deployment.environment"] == "test"
        assert attrs["scope.name"] == f"otel-{name}"
        numbers = doc[esindex.NUMERIC_ATTRIBUTES]  # the int and double ones, text left out
        assert (numbers["latency_ms"], numbers["ratio"]) == (150, 0.15), numbers
        assert not {"user", "retry", "scope.name"} & set(numbers), numbers
        # numbers compare as numbers (as text "50" > "100"), and text still matches
        assert [d["attributes"]["latency_ms"] for d in await _docs(
            es, stream.settings, f"service:{name} AND attributes.latency_ms:[10 TO 99]")] == [50]
        assert len(await _docs(es, stream.settings,
                               f"service:{name} AND attributes.ratio:<0.1")) == 1
        assert len(await _docs(es, stream.settings,
                               f"service:{name} AND attributes.user:alice")) == 2
    scope = esindex.tenant_search(stream.settings, "1")
    assert await esindex.ignored_attributes(es, scope["index"], scope["query"]) == {}


# --- OTLP/HTTP on the gateway's own port: bad input never loses the good records ----------------

@pytest.fixture
async def otlp_http(raw_settings: Settings, keys: KeyTable) -> Any:
    """The gateway's OTLP/HTTP server (64 KiB request limit) on a free port; yields its URL."""
    small = raw_settings.model_copy(update={"ingest_max_batch_bytes": 64 * 1024})
    server, service = await start_gateway(small, verifier=keys, host="127.0.0.1", port=0,
                                          http_port=0)
    try:
        yield f"http://127.0.0.1:{server.http_port}/v1/logs"
    finally:
        await server.stop(0)
        await service.close()


def _json_export(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
        "scopeLogs": [{"scope": {"name": "s"}, "logRecords": records}]}]}


AUTH = {"authorization": f"Bearer {KEY}"}


async def test_otlp_json_bad_record_is_a_partial_success(
        otlp_http: str, raw_settings: Settings) -> None:
    import time

    now = str(time.time_ns())
    records: list[dict[str, Any]] = [
        {"timeUnixNano": now, "body": {"stringValue": "first"},
         "attributes": [{"key": "n", "value": {"intValue": "7"}},
                        {"key": "d", "value": {"doubleValue": 2.5}}],
         "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"},
        {"timeUnixNano": now, "body": {"stringValue": "bad id"}, "traceId": "not hex"},
        {"timeUnixNano": now, "body": {"stringValue": "bad int"},
         "attributes": [{"key": "n", "value": {"intValue": "seven"}}]},
        {"time_unix_nano": now, "body": {"stringValue": "snake_case names"},
         "severity_number": 17},
    ]
    async with httpx.AsyncClient() as client:
        r = await client.post(otlp_http, json=_json_export(records), headers=AUTH)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "2", partial  # proto3 JSON: int64 as a string
    assert "record 1: traceId" in partial["errorMessage"]
    assert "record 2: record" in partial["errorMessage"]
    msgs = [LogRecord().parse(m.value) for m in await consume(raw_settings, 3, timeout=10)]
    assert [m.body.string_value for m in msgs] == ["first", "snake_case names"]
    first = msgs[0]
    assert (from_any(first.attributes["n"]), from_any(first.attributes["d"])) == (7, 2.5)
    assert first.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert first.resource.service_name == "js" and first.scope.name == "s"
    assert msgs[1].severity_number == 17


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    (b"{not json", {"content-type": "application/json", **AUTH}, 400, "not JSON"),
    (b"[1, 2]", {"content-type": "application/json", **AUTH}, 400, "ExportLogsServiceRequest"),
    (b'{"resourceLogs": 5}', {"content-type": "application/json", **AUTH}, 400, "OTLP"),
    (b"\x0a\x05\x01", {"content-type": "application/x-protobuf", **AUTH}, 400, "truncated"),
    (b"\x08\x01", {"content-type": "application/x-protobuf", **AUTH}, 400, "wire type"),
    (b"{}", {"content-type": "text/plain", **AUTH}, 415, "content-type 'text/plain'"),
    (b"{}", {"content-type": "application/json"}, 401, "API key"),
    (b"{}", {"content-type": "application/json", "authorization": "Bearer nope"}, 401, ""),
    (b"x" * 70_000, {"content-type": "application/x-protobuf", **AUTH}, 413, "at most 65536"),
    (b"\x1f\x8b\x08garbage", {"content-type": "application/x-protobuf",
                              "content-encoding": "gzip", **AUTH}, 400, "not valid gzip"),
])
async def test_otlp_http_bad_requests_are_clear_4xx(
        otlp_http: str, body: bytes, headers: dict[str, str], status: int,
        message: str) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(otlp_http, content=body, headers=headers)
    assert r.status_code == status, r.content
    if r.headers["content-type"].startswith("application/json"):
        error = r.json()
    else:
        from app.ingest.otlp import RpcStatus

        error = RpcStatus().parse(r.content).to_dict()
    assert message in error["message"], error
    assert error["code"] in (3, 7, 8, 16), error


async def test_otlp_http_gzip_body_and_bomb(otlp_http: str, raw_settings: Settings) -> None:
    import gzip
    import time

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue as OAny
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OLog
    from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs

    def export(text: str) -> bytes:
        return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(
            log_records=[OLog(time_unix_nano=time.time_ns(), body=OAny(string_value=text))])])]
        ).SerializeToString()

    headers = {"content-type": "application/x-protobuf", "content-encoding": "gzip", **AUTH}
    async with httpx.AsyncClient() as client:
        ok = await client.post(otlp_http, content=gzip.compress(export("zipped")),
                               headers=headers)
        bomb = await client.post(otlp_http, content=gzip.compress(export("b" * 1_000_000)),
                                 headers=headers)
    assert ok.status_code == 200 and ok.content == b"", ok.content
    assert bomb.status_code == 413, bomb.content
    msgs = await consume(raw_settings, 2, timeout=5)
    assert [LogRecord().parse(m.value).body.string_value for m in msgs] == ["zipped"]


# --- typed attributes in Elasticsearch: bounded, conflicts harmless and counted -----------------

async def test_numeric_attribute_fields_are_bounded_and_conflicts_counted(
        es: AsyncElasticsearch, unique: str) -> None:
    import time

    from app.pipeline.events import LogEvent, RawPosition
    from app.settings import load_settings

    settings = load_settings(index_prefix=f"{unique}-", es_numeric_attribute_fields=3)
    now = time.time_ns()

    def event(offset: int, attributes: dict[str, Any]) -> LogEvent:
        return LogEvent(tenant_id="5", tenant="t5", time=now + offset, observed_time=now,
                        severity="INFO", severity_number=9, message=f"m{offset}",
                        service="api", host="h", raw=RawPosition("logs.raw", 0, offset),
                        attributes=attributes)

    events = [event(0, {f"n{i}": i * 10 for i in range(6)}),  # 6 numeric keys, 3 fit
              event(1, {"n0": "zero", "n1": 7.5}),  # n0 as text: no conflict
              event(2, {"n0": 500, "a": 1, "a.b": 2})]  # "a" and "a.b" both numbers
    index = esindex.daily_index(settings, "5", now)
    alias = esindex.tenant_alias(settings, "5")
    try:
        await esindex.ensure_template(es, settings)
        await esindex.ensure_index(es, index, alias)
        for ev in events:
            await es.index(index=index, id=ev.doc_id(), document=esindex.document(ev),
                           refresh="wait_for")
        assert (await es.count(index=index))["count"] == 3  # none refused
        mapped = (await es.indices.get_mapping(index=index))[index]["mappings"]["properties"]
        numeric = mapped[esindex.NUMERIC_ATTRIBUTES]["properties"]
        assert len(numeric) == 3 and all(f["type"] == "double" for f in numeric.values())
        ignored = await esindex.ignored_attributes(es, index)
        assert sum(ignored.values()) == 6 - 3 + 2, ignored  # 3 of event 0, a and a.b of event 2
        assert all(k.startswith(f"{esindex.NUMERIC_ATTRIBUTES}.") for k in ignored)

        async def hits(query: str) -> list[str]:
            request = esindex.tenant_search(settings, "5", to_elasticsearch(parse(query)),
                                            sort=[{"@timestamp": "asc"}])
            return [h["_source"]["message"] for h in (await es.search(**request))["hits"]["hits"]]

        assert await hits("attributes.n0:zero") == ["m1"]  # text where it was text
        first = sorted(numeric)[0]  # a key that got its number field
        assert await hits(f"attributes.{first}:>=0") != []
        for key in {f"n{i}" for i in range(6)} - set(numeric):  # past the bound: text only
            assert await hits(f"attributes.{key}:{int(key[1:]) * 10}") == ["m0"]
    finally:
        await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)
        await es.options(ignore_status=404).indices.delete_index_template(
            name=esindex.template_name(settings))


# --- the one-call upb parse and the field-by-field split give the same records ------------------

def _outcome(data: bytes, decode: Any) -> Any:
    """Records as bytes (errors as field and reason), or the request's error."""
    from app.ingest.convert import ConversionError

    try:
        items = decode(data)
    except ConversionError as exc:
        return ("refused", exc.field, exc.reason)
    return [(r.field, r.reason) if isinstance(r, ConversionError) else r.SerializeToString()
            for r in items]


def _sample_export() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue as OAny
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OLog
    from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs, SeverityNumber
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource as OResource

    def kv(key: str, **value: Any) -> KeyValue:
        return KeyValue(key=key, value=OAny(**value))

    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=OResource(attributes=[kv("service.name", string_value="a"),
                                       kv("host.name", string_value="h")]),
        schema_url="s1", scope_logs=[ScopeLogs(
            scope=InstrumentationScope(name="sc", attributes=[kv("x", int_value=1)]),
            log_records=[OLog(time_unix_nano=i + 1,
                              severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
                              body=OAny(string_value=f"m{i}"),
                              attributes=[kv("n", int_value=i), kv("d", double_value=0.5)],
                              trace_id=bytes(range(16)), span_id=bytes(8))
                         for i in range(3)])])]).SerializeToString()


def test_fast_and_split_otlp_decoding_agree() -> None:
    from app.ingest.convert import _misplaced, _otlp_records_split, otlp_records
    from app.ingest.wire import pb

    good = _sample_export()
    variants = [good,
                good + b"\x38\x00",  # an unknown request field (7, varint): ignored
                good + b"\x08\x01",  # resource_logs as a varint: refused
                good + b"\x2b\x2c",  # an empty group (5): refused by both
                good + b"\x0a\x04\x0a\x02\x10\x00",  # a resource with an explicit zero
                good + b"\x0a\x03\x0a\x01"]  # truncated
    for i in range(len(good)):  # every single-byte change of the valid request
        for flip in (0x01, 0x80, 0xFF):
            mutated = bytearray(good)
            mutated[i] ^= flip
            variants.append(bytes(mutated))
    fast_paths = 0
    for data in variants:
        assert _outcome(data, otlp_records) == _outcome(data, _otlp_records_split), data.hex()
        try:
            fast_paths += not _misplaced(pb.OtlpExportRequest.FromString(data))
        except Exception:  # noqa: BLE001 - upb refused it: the split path alone decided
            pass
    assert fast_paths > len(variants) // 3, fast_paths  # about half take the one-call path
