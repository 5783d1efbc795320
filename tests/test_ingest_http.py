"""HTTP ingest against the real Kafka: NDJSON, JSON, text, gzip, limits, errors, OTLP/HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from app.ingest.convert import ConversionError, from_any
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.service import IngestService
from app.ingest.shippers import shipper_document
from app.settings import Settings
from protos.laas.v1 import LogRecord
from protos.opentelemetry.proto.collector.logs.v1 import ExportLogsServiceResponse
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, consume
from web.ingest import routes

NDJSON = {"content-type": "application/x-ndjson", "authorization": "Bearer ingest-key"}


async def test_ndjson_with_bad_lines(web: httpx.AsyncClient, raw_settings: Settings) -> None:
    now = time.time()
    body = "\n".join([
        json.dumps({"message": "one", "level": "error", "ts": now, "service": "api", "user": "b"}),
        "{not json",
        "",
        json.dumps({"message": "old", "ts": "2001-01-01T00:00:00Z"}),
        json.dumps({"body": "four", "severityNumber": 9, "timeUnixNano": str(time.time_ns())}),
        json.dumps({"body": "x", "bogus": 1}),
    ])
    r = await web.post("/api/v1/logs", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 2 and out["rejected"] == 3
    assert [(e["line"], e["field"]) for e in out["errors"]] == [
        (2, "line"), (4, "time_unix_nano"), (6, "bogus")]
    msgs = await consume(raw_settings, 2, timeout=5)
    records = [LogRecord().parse(m.value) for m in msgs]
    assert [from_any(r.body) for r in records] == ["one", "four"]
    assert records[0].severity_number == 17 and from_any(records[0].attributes["user"]) == "b"
    assert msgs[0].key == b"1/api" and dict(msgs[0].headers)["laas-source"] == b"http"


async def test_json_array_gzip_and_text(web: httpx.AsyncClient, raw_settings: Settings) -> None:
    body = gzip.compress(json.dumps([{"message": "a"}, {"message": "b", "level": 3}]).encode())
    r = await web.post("/api/v1/logs", content=body, headers={
        "content-type": "application/json", "content-encoding": "gzip", "x-api-key": "ingest-key"})
    assert r.json() == {"accepted": 2, "rejected": 0, "errors": []}
    r = await web.post("/api/v1/logs", content=b"plain line\nanother\n", headers={
        "content-type": "text/plain", "x-api-key": "ingest-key"})
    assert r.json()["accepted"] == 2
    msgs = await consume(raw_settings, 4, timeout=5)
    assert [from_any(LogRecord().parse(m.value).body) for m in msgs] == [
        "a", "b", "plain line", "another"]


@pytest.mark.parametrize(("headers", "status"), [
    ({"content-type": "application/x-ndjson"}, 401),
    ({"content-type": "application/x-ndjson", "x-api-key": "nope"}, 401),
    ({"content-type": "application/x-ndjson", "x-api-key": "read-key"}, 403),
    ({"content-type": "application/xml", "x-api-key": "ingest-key"}, 415),
    ({"content-type": "application/json", "x-api-key": "ingest-key"}, 400),
])
async def test_http_errors(web: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    body = b'{"message": "x"}\n' if "ndjson" in headers["content-type"] else b"[{"
    r = await web.post("/api/v1/logs", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]


async def test_too_large_is_413(web: httpx.AsyncClient, raw_settings: Settings) -> None:
    limit = raw_settings.ingest_max_batch_bytes
    r = await web.post("/api/v1/logs", content=b"x" * (limit + 1), headers=NDJSON)
    assert r.status_code == 413 and str(limit) in r.json()["error"]
    bomb = gzip.compress(b"\n" * (limit + 10))  # small on the wire, too big inflated
    r = await web.post("/api/v1/logs", content=bomb, headers={**NDJSON,
                                                              "content-encoding": "gzip"})
    assert r.status_code == 413


async def test_record_too_large_is_per_line(web: httpx.AsyncClient, raw_settings: Settings) -> None:
    big = json.dumps({"message": "y" * (raw_settings.ingest_max_record_bytes + 1)})
    r = await web.post("/api/v1/logs", content=f'{{"message": "ok"}}\n{big}\n', headers=NDJSON)
    out = r.json()
    assert out["accepted"] == 1 and out["errors"][0]["line"] == 2
    assert out["errors"][0]["field"] == "record" and "at most" in out["errors"][0]["reason"]


async def test_rate_limit_is_429_with_retry_after(web: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/x-ndjson", "x-api-key": "slow-key"}
    body = b'{"message": "x"}\n' * 5
    assert (await web.post("/api/v1/logs", content=body, headers=headers)).status_code == 200
    r = await web.post("/api/v1/logs", content=body, headers=headers)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


async def test_kafka_down_is_503_with_retry_after(keys: KeyTable) -> None:
    from app.settings import load_settings

    app = Starlette(routes=routes)
    app.state.ingest = IngestService(
        load_settings(kafka_bootstrap="127.0.0.1:1", ingest_produce_timeout=1.0), keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://laas") as client:
        r = await client.post("/api/v1/logs", content=b'{"message": "x"}', headers=NDJSON)
    await app.state.ingest.close()
    assert r.status_code == 503 and r.headers["retry-after"]


async def test_otlp_http_json(web: httpx.AsyncClient, raw_settings: Settings) -> None:
    doc = {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeLogs": [{"scope": {"name": "s"}, "logRecords": [
            {"timeUnixNano": str(time.time_ns()), "severityNumber": 17, "severityText": "ERROR",
             "body": {"stringValue": "boom"},
             "attributes": [{"key": "n", "value": {"intValue": "7"}}],
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"},
            {"timeUnixNano": "1", "body": {"stringValue": "ancient"}},
        ]}]}]}
    r = await web.post("/v1/logs", json=doc, headers={"x-api-key": "ingest-key"})
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedLogRecords"] in ("1", 1)
    msgs = await consume(raw_settings, 1, timeout=5)
    rec = LogRecord().parse(msgs[0].value)
    assert from_any(rec.body) == "boom" and from_any(rec.attributes["n"]) == 7
    assert rec.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert rec.span_id.hex() == "eee19b7ec3c1b174" and rec.resource.service_name == "web"


def _ship_otlp_http(port: int) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPLogExporter(endpoint=f"http://127.0.0.1:{port}/v1/logs",
                               headers={"x-api-key": "ingest-key"}, timeout=10)
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("otel-http-test")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.error("invoice %d lost", 9, extra={"tenantish": "no"})
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
async def test_otlp_http_protobuf_from_sdk(raw_settings: Settings, keys: KeyTable) -> None:
    app = Starlette(routes=routes)
    app.state.ingest = IngestService(raw_settings, keys)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        await asyncio.to_thread(_ship_otlp_http, port)
        msgs = await consume(raw_settings, 1, timeout=5)
        rec = LogRecord().parse(msgs[0].value)
        assert from_any(rec.body) == "invoice 9 lost"
        assert rec.severity_text == "ERROR" and rec.resource.service_name == "billing"
        assert from_any(rec.attributes["tenantish"]) == "no"
    finally:
        server.should_exit = True
        await task
        await app.state.ingest.close()


async def test_otlp_http_errors(web: httpx.AsyncClient) -> None:
    r = await web.post("/v1/logs", content=b"\x0a\xff\xff\xff", headers={
        "content-type": "application/x-protobuf", "x-api-key": "ingest-key"})
    assert r.status_code == 400
    r = await web.post("/v1/logs", content=bytes(ExportLogsServiceResponse()), headers={
        "content-type": "application/x-protobuf"})
    assert r.status_code == 401


async def test_ndjson_reads_common_shipper_fields(web: httpx.AsyncClient,
                                                  raw_settings: Settings) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "Z"
    lines = [
        # Fluent Bit (tail + kubernetes filter): the line is in `log`
        {"log": "GET /cart 200\n", "stream": "stdout", "time": stamp, "kubernetes": {
            "pod_name": "cart-5d9", "namespace_name": "shop", "container_name": "cart",
            "host": "node-4", "labels": {"app": "cart-api"}}},
        # Beats / ECS: @timestamp, nested log.level, host.name, service.name
        {"@timestamp": stamp, "message": "disk slow", "log": {"level": "warning"},
         "host": {"name": "db-2", "os": {"family": "debian"}}, "service": {"name": "db"}},
        # dotted ECS keys and `severity`
        {"@timestamp": stamp, "message": "dotted", "log.level": "error", "host.name": "h3"},
        {"msg": "sev", "severity": "critical", "hostname": "h4"},
        # python-json-logger
        {"message": "py", "levelname": "DEBUG", "hostname": "h5", "service": "worker"},
        # the LaaS shorthand itself is unchanged
        {"message": "plain", "level": "info", "service": "api", "host": "h6", "log": "kept"},
    ]
    r = await web.post("/api/v1/logs", content="\n".join(json.dumps(x) for x in lines),
                       headers=NDJSON)
    assert r.json() == {"accepted": 6, "rejected": 0, "errors": []}
    records = [LogRecord().parse(m.value) for m in await consume(raw_settings, 6, timeout=5)]
    got = {from_any(x.body): x for x in records}
    fluent = got["GET /cart 200\n"]
    assert (fluent.resource.service_name, fluent.resource.host) == ("cart-api", "node-4")
    assert fluent.time_unix_nano == int(now) * 1_000_000_000
    assert {k: from_any(v) for k, v in fluent.attributes.items()} == {
        "stream": "stdout", "k8s.pod.name": "cart-5d9", "k8s.namespace.name": "shop",
        "k8s.container.name": "cart", "k8s.node.name": "node-4",
        "kubernetes": {"labels": {"app": "cart-api"}}}
    ecs = got["disk slow"]
    assert (ecs.severity_number, ecs.resource.host, ecs.resource.service_name) == (13, "db-2",
                                                                                  "db")
    assert ecs.time_unix_nano == int(now) * 1_000_000_000
    assert from_any(ecs.attributes["host"]) == {"os": {"family": "debian"}}
    assert (got["dotted"].severity_number, got["dotted"].resource.host) == (17, "h3")
    assert (got["sev"].severity_text, got["sev"].resource.host) == ("critical", "h4")
    assert got["sev"].severity_number == 21  # critical is FATAL
    assert (got["py"].severity_number, got["py"].resource.host) == (5, "h5")
    plain = got["plain"]
    assert (plain.severity_number, plain.resource.service_name) == (9, "api")
    assert from_any(plain.attributes["log"]) == "kept"


_KEYS = ["log", "message", "msg", "@timestamp", "ts", "level", "log.level", "severity",
         "levelname", "host", "hostname", "host.name", "service", "service.name", "kubernetes",
         "attributes", "name", "pod_name", "pod", "labels", "app", "container_name",
         "container", "namespace_name", "namespace", "node", "k8s.pod.name", "x"]
_SCALARS = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans(), st.none())
_VALUES = st.recursive(_SCALARS, lambda inner: st.dictionaries(st.sampled_from(_KEYS), inner,
                                                               max_size=5), max_leaves=20)


def _leaves(value: object) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [repr(value)]


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8))
def test_field_conventions_move_values_and_lose_none(doc: dict[str, object]) -> None:
    before = json.dumps(doc, sort_keys=True)
    out = shipper_document(doc)
    assert json.dumps(doc, sort_keys=True) == before  # the input is not changed
    assert sorted(_leaves(out)) == sorted(_leaves(doc))  # every value is somewhere
    try:
        pb_record_from_json(out)
    except ConversionError:
        pass  # refused by name (say `host: a string expected`), never an other exception
