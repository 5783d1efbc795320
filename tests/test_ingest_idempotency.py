"""Idempotent batches: a batch sent again under its idempotency key becomes the same documents.

Key validation, the Kafka stamp of the gateway and HTTP ingest (real Kafka), the document id,
normalize carrying the identity, the client reusing its key across retries, and the whole path
(gateway and HTTP → Kafka → a real worker → Elasticsearch) with each batch sent twice.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import closing

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_scan
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from laas_client import LaasHandler, SendError, Shipper
from starlette.applications import Starlette

from agents.index import index_group
from app.elastic import esindex
from app.ingest.errors import BatchRejected
from app.ingest.gateway import bound_port, start_gateway
from app.ingest.service import IngestService
from app.ingest.validate import idempotency_key_problem
from app.ingest.writer import index_ranges, raw_batches
from app.kafka.client import client_options
from app.kafka.headers import H_BATCH_INDEX, H_BATCH_KEY, LOG_BATCH_CONTENT_TYPE
from app.kafka.stamp import Stamps
from app.kafka.topics import EVENTS, RAW
from app.pipeline.events import LogEvent, RawPosition, batch_doc_id
from app.pipeline.normalize import RawMessage, batch_indexes, normalize
from app.settings import Settings
from protos.laas.v1 import AnyValue, LogBatch, LogIngestStub, LogRecord, Resource
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, RawRecord, consume
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, register_tenants
from web.ingest import routes

NOW = time.time_ns()
STAMPS = Stamps(b"unit-test-secret")
KEY = "01J9Z3Q4W5E6R7T8Y9U0I1O2P3"


# --- the key ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "reason"), [
    ("", "empty; 1-128 characters of A-Z a-z 0-9 . _ - : allowed"),
    ("k" * 129, "129 characters, at most 128 allowed"),
    ("abc/def", "character '/' at position 3 not allowed; use A-Z a-z 0-9 . _ - :"),
    ("ä", "character 'ä' at position 0 not allowed; use A-Z a-z 0-9 . _ - :"),
    ("two words", "character ' ' at position 3 not allowed; use A-Z a-z 0-9 . _ - :"),
])
def test_invalid_keys_are_named_with_what_is_allowed(key: str, reason: str) -> None:
    assert idempotency_key_problem(key) == reason
    with pytest.raises(BatchRejected) as err:
        IngestService.check_idempotency_key(("Idempotency-Key", key))
    assert err.value.reason == f"Idempotency-Key: {reason}"


def test_valid_keys_and_sources() -> None:
    for key in ("a", "k" * 128, "550e8400-e29b-41d4-a716-446655440000", "job:42.part_7"):
        assert idempotency_key_problem(key) is None
    check = IngestService.check_idempotency_key
    assert check(("idempotency-key", None), ("LogBatch.idempotency_key", None)) == ""
    assert check(("idempotency-key", "k1"), ("LogBatch.idempotency_key", None)) == "k1"
    assert check(("idempotency-key", "k1"), ("LogBatch.idempotency_key", "k1")) == "k1"
    with pytest.raises(BatchRejected) as err:
        check(("idempotency-key", "k1"), ("LogBatch.idempotency_key", "k2"))
    assert "differ" in err.value.reason and "'k1'" in err.value.reason


# --- document ids -----------------------------------------------------------------------------

def event(raw: RawPosition, tenant: str = "7", key: str = "", index: int = 0,
          fmt: str = "protobuf") -> LogEvent:
    return LogEvent(tenant_id=tenant, tenant="acme", time=NOW, observed_time=NOW,
                    severity="INFO", severity_number=9, message="m", service="api", host="h",
                    raw=raw, batch_key=key, batch_index=index, format=fmt)


def test_doc_id_from_batch_identity_ignores_the_kafka_position() -> None:
    first = event(RawPosition("logs.raw", 0, 10), key=KEY, index=3)
    resent = event(RawPosition("logs.raw", 1, 99), key=KEY, index=3)
    assert first.doc_id() == resent.doc_id() == f"batch/7/{KEY}/3"
    assert event(RawPosition("logs.raw", 0, 10, 2), key=KEY, index=3, fmt="json").doc_id() == \
        f"batch/7/{KEY}/3/2"  # a record of a JSON array in one Kafka record
    assert event(RawPosition("logs.raw", 0, 10, 2), key=KEY, index=3).doc_id() == \
        f"batch/7/{KEY}/3"  # a record of a LogBatch: its batch index is its request position
    assert event(RawPosition("logs.raw", 0, 10), tenant="8", key=KEY, index=3).doc_id() != \
        first.doc_id()  # keys are per tenant
    assert event(RawPosition("logs.raw", 0, 10), key=KEY, index=4).doc_id() != first.doc_id()
    assert batch_doc_id("7", KEY, 3) == first.doc_id()


def test_doc_id_without_key_is_the_raw_position_and_json_keeps_the_identity() -> None:
    plain = event(RawPosition("logs.raw", 1, 99, 2))
    assert plain.doc_id() == "logs.raw/1/99/2"
    keyed = event(RawPosition("logs.raw", 1, 99), key=KEY, index=5)
    again = LogEvent.from_json(keyed.to_json())
    assert again == keyed and again.doc_id() == keyed.doc_id()
    assert again.raw == RawPosition("logs.raw", 1, 99)  # kept for replay and audit
    old = json.loads(plain.to_json())
    del old["batch_key"], old["batch_index"]  # an event written before batch ids existed
    assert LogEvent.from_json(json.dumps(old)).doc_id() == plain.doc_id()


# --- normalize --------------------------------------------------------------------------------

def raw_message(headers: dict[str, bytes], value: bytes = b'{"message": "hi"}',
                offset: int = 5) -> RawMessage:
    """A record stamped (and signed) as the gateway writes it."""
    stamp = {"laas-tenant-id": b"7", "laas-tenant": b"acme", **headers}
    return RawMessage("t.logs.raw", 0, offset, NOW // 1_000_000, b"7/api", value,
                      dict(STAMPS.sign(b"7/api", value, list(stamp.items()))))


def test_normalize_carries_the_batch_identity_into_the_event() -> None:
    stamp = {H_BATCH_KEY: KEY.encode(), H_BATCH_INDEX: b"12"}
    (first,) = normalize(raw_message(stamp, offset=5), now_ns=NOW, stamps=STAMPS).events
    (resent,) = normalize(raw_message(stamp, offset=77), now_ns=NOW, stamps=STAMPS).events
    assert (first.batch_key, first.batch_index) == (KEY, 12)
    assert first.doc_id() == resent.doc_id() == f"batch/7/{KEY}/12"
    assert (first.raw.offset, resent.raw.offset) == (5, 77)
    # A direct producer may give only the key (index 0); arrays number their records.
    array = raw_message({H_BATCH_KEY: b"direct-1"},
                        value=b'[{"message": "a"}, {"message": "b"}]')
    assert [e.doc_id() for e in normalize(array, now_ns=NOW, stamps=STAMPS).events] == [
        "batch/7/direct-1/0/1", "batch/7/direct-1/0/2"]


def test_a_log_batch_message_keeps_each_records_request_position() -> None:
    records = [LogRecord(body=AnyValue(string_value=f"r{i}"), time_unix_nano=NOW,
                         resource=Resource(service_name="api")) for i in range(3)]
    (message,) = raw_batches(records, [0, 2, 3], "7", 1024)
    headers = {"content-type": LOG_BATCH_CONTENT_TYPE, H_BATCH_KEY: KEY.encode(),
               H_BATCH_INDEX: index_ranges(message.positions).encode()}
    assert headers[H_BATCH_INDEX] == b"0,2-3"
    first = normalize(raw_message(headers, message.value, offset=5), now_ns=NOW,
                      stamps=STAMPS).events
    resent = normalize(raw_message(headers, message.value, offset=9), now_ns=NOW,
                       stamps=STAMPS).events
    assert [e.doc_id() for e in first] == [e.doc_id() for e in resent] == [
        f"batch/7/{KEY}/{i}" for i in (0, 2, 3)]
    assert [e.raw.index for e in first] == [1, 2, 3]
    # positions that do not fit the batch: the raw identity, and the reason
    bad = normalize(raw_message({**headers, H_BATCH_INDEX: b"0-1"}, message.value),
                    now_ns=NOW, stamps=STAMPS).events
    assert [e.doc_id() for e in bad] == [f"t.logs.raw/0/5/{i}" for i in (1, 2, 3)]
    assert bad[0].attributes["laas.invalid_batch_key"] == (
        "laas-batch-index: names 2 positions for a batch of 3 records")


@pytest.mark.parametrize(("text", "count", "found"), [
    ("0-2,5", 4, [0, 1, 2, 5]),
    ("7", 1, [7]),
    ("0-2,5", 5, "laas-batch-index: names 4 positions for a batch of 5 records"),
    ("0-99999", 3, "laas-batch-index: names more positions than the batch's 3 records"),
    ("3-1", 3, "laas-batch-index: range '3-1' ends before it starts"),
    ("1,x", 2, "laas-batch-index: 'x' is not a record index or range"),
    ("", 1, "laas-batch-index: '' is not a record index or range"),
])
def test_batch_index_ranges(text: str, count: int, found: list[int] | str) -> None:
    assert batch_indexes(text, count) == found
    if isinstance(found, list):
        assert index_ranges(found) == text


@pytest.mark.parametrize(("headers", "problem"), [
    ({H_BATCH_KEY: b"a/b"}, "laas-batch-key: character '/' at position 1 not allowed"),
    ({H_BATCH_KEY: b""}, "laas-batch-key: empty"),
    ({H_BATCH_KEY: b"k", H_BATCH_INDEX: b"-1"}, "laas-batch-index: '-1' is not"),
    ({H_BATCH_KEY: b"k", H_BATCH_INDEX: b"9" * 4400}, "laas-batch-index: '999"),
])
def test_invalid_batch_headers_keep_the_raw_identity_and_say_why(
        headers: dict[str, bytes], problem: str) -> None:
    out = normalize(raw_message(headers), now_ns=NOW, stamps=STAMPS)
    assert not out.dead
    (e,) = out.events
    assert e.batch_key == "" and e.doc_id() == "t.logs.raw/0/5"
    reason = e.attributes["laas.invalid_batch_key"]
    assert isinstance(reason, str) and reason.startswith(problem)


# --- the Kafka stamp (gateway and HTTP, real Kafka) ----------------------------------------------

def batch(n: int, tag: str) -> LogBatch:
    return LogBatch(records=[LogRecord(body=AnyValue(string_value=f"{tag}{i}"),
                                       time_unix_nano=time.time_ns()) for i in range(n)],
                    resource=Resource(service_name="api", host="h1"))


def stamps(records: list[RawRecord]) -> list[tuple[bytes, int | None]]:
    """(batch key, position in the request) of each record read from `logs.raw`."""
    return [(dict(r.headers).get(H_BATCH_KEY, b""), r.position) for r in records]


async def test_gateway_stamps_key_and_index_on_every_record(
        gateway: int, raw_settings: Settings) -> None:
    channel = Channel("127.0.0.1", gateway)
    meta = {"x-api-key": "ingest-key", "idempotency-key": KEY}
    with closing(channel):
        sent = batch(3, "g")
        sent.records.insert(1, LogRecord(body=AnyValue(string_value="old"), time_unix_nano=1))
        first = await LogIngestStub(channel, metadata=meta).push(sent)
        again = await LogIngestStub(channel, metadata=meta).push(sent)  # the retry
        streamed = [ack async for ack in LogIngestStub(
            channel, metadata={"x-api-key": "ingest-key"}).push_stream(
            [LogBatch(records=batch(1, "s").records, idempotency_key="s-1"),
             LogBatch(records=batch(1, "s").records)])]
        plain = await LogIngestStub(channel, metadata={"x-api-key": "ingest-key"}).push(
            batch(1, "p"))
        with pytest.raises(GRPCError) as bad:
            await LogIngestStub(channel, metadata={"x-api-key": "ingest-key",
                                                   "idempotency-key": "a/b"}).push(batch(1, "x"))
        with pytest.raises(GRPCError) as differ:
            await LogIngestStub(channel, metadata=meta).push(
                LogBatch(records=batch(1, "x").records, idempotency_key="other"))
    assert first.accepted == again.accepted == 3 and [r.index for r in first.rejections] == [1]
    assert [a.accepted for a in streamed] == [1, 1] and plain.accepted == 1
    assert bad.value.status == Status.INVALID_ARGUMENT
    assert bad.value.message == ("idempotency-key: character '/' at position 1 not allowed; "
                                 "use A-Z a-z 0-9 . _ - :")
    assert differ.value.status == Status.INVALID_ARGUMENT and "differ" in str(differ.value.message)
    msgs = await consume(raw_settings, 9, timeout=10)
    # The indexes are positions in the request: the rejected record 1 leaves a gap.
    copy = [(KEY.encode(), 0), (KEY.encode(), 2), (KEY.encode(), 3)]
    assert stamps(msgs) == copy + copy + [(b"s-1", 0), (b"", None), (b"", None)]
    assert dict(msgs[0].headers)[H_BATCH_INDEX] == b"0,2-3"  # one message per request
    assert len({m.offset for m in msgs}) == 5  # the resent copy is a new Kafka message


async def test_http_stamps_key_and_refuses_bad_keys(web: httpx.AsyncClient,
                                                    raw_settings: Settings) -> None:
    body = "\n".join(json.dumps({"message": f"h{i}", "service": "api"}) for i in range(2))
    headers = {"content-type": "application/x-ndjson", "x-api-key": "ingest-key",
               "Idempotency-Key": "req-1"}
    for _ in range(2):
        r = await web.post("/api/v1/logs", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    r = await web.post("/api/v1/logs", content=body, headers={**headers,
                                                              "Idempotency-Key": "x" * 200})
    assert r.status_code == 400
    assert r.json() == {"error": "Idempotency-Key: 200 characters, at most 128 allowed"}
    msgs = await consume(raw_settings, 4, timeout=10)
    assert stamps(msgs) == [(b"req-1", 0), (b"req-1", 1)] * 2


# --- the client ---------------------------------------------------------------------------------

class FlakyTransport(httpx.BaseTransport):
    """Answers 503 to the first `failures` requests, then accepts; records every request."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        lines = request.read().decode().splitlines()
        if len(self.requests) <= self.failures:
            return httpx.Response(503, headers={"retry-after": "0.01"}, json={"error": "down"})
        return httpx.Response(200, json={"accepted": len(lines), "rejected": 0, "errors": []})


def flaky_shipper(failures: int) -> tuple[Shipper, FlakyTransport]:
    transport = FlakyTransport(failures)
    shipper = Shipper("http://laas.invalid", "k")
    shipper._http = httpx.Client(transport=transport)
    return shipper, transport


def test_handler_resends_a_failed_batch_whole_under_the_same_key() -> None:
    shipper, transport = flaky_shipper(failures=2)
    handler = LaasHandler("http://laas.invalid", "k", service="app", batch_size=3,
                          flush_interval=0.01, close_timeout=5, shipper=shipper)
    logger = logging.getLogger("laas-idempotent")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    for i in range(3):
        logger.info("first %d", i)
    handler.flush(5)
    for i in range(2):
        logger.info("second %d", i)
    handler.flush(5)
    handler.close()
    keys = [r.headers["idempotency-key"] for r in transport.requests]
    bodies = [r.content for r in transport.requests]
    assert len(keys) == 4 and handler.sent == 5 and handler.failed == 0
    assert keys[0] == keys[1] == keys[2] and bodies[0] == bodies[1] == bodies[2]  # 2 retries
    assert keys[3] != keys[0] and idempotency_key_problem(keys[3]) is None


def test_shipper_reuses_the_key_for_the_same_batch_object() -> None:
    shipper, transport = flaky_shipper(failures=1)
    records = [LogRecord(body=AnyValue(string_value="x"))]
    with pytest.raises(SendError) as err:
        shipper.push(records)
    assert err.value.retry
    shipper.push(records)  # a retry loop like `laas send`'s passes the same list again
    shipper.push([LogRecord(body=AnyValue(string_value="y"))])
    shipper.push(records, key="explicit")
    keys = [r.headers["idempotency-key"] for r in transport.requests]
    assert keys[0] == keys[1] and keys[2] != keys[0] and keys[3] == "explicit"
    shipper.close()


# --- the whole path: each batch twice, each record once in Elasticsearch ------------------------

async def _caught_up(stream: StreamEnv, group: str, topic: str) -> bool:
    """Consumer group `group` committed everything on `topic` (so it processed every copy)."""
    from aiokafka import AIOKafkaConsumer

    admin = AIOKafkaAdminClient(**client_options(stream.settings))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**client_options(stream.settings))
    await consumer.start()
    try:
        parts = [TopicPartition(stream.topic(topic), p) for p in range(2)]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return all(ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp])
               for tp in parts)


async def test_batches_sent_twice_are_indexed_once(
        stream: StreamEnv, es: AsyncElasticsearch) -> None:
    keys = KeyTable()
    server, service = await start_gateway(stream.settings, verifier=keys, host="127.0.0.1",
                                          port=0)
    app = Starlette(routes=routes)
    app.state.ingest = IngestService(stream.settings, keys)
    try:
        channel = Channel("127.0.0.1", bound_port(server))
        sent = LogBatch(records=[LogRecord(
            body=AnyValue(string_value=f"grpc {i}"), time_unix_nano=time.time_ns(),
            resource=Resource(service_name=f"svc{i % 3}", host="h")) for i in range(20)])
        with closing(channel):
            for _ in range(2):
                ack = await LogIngestStub(channel, metadata={
                    "x-api-key": "ingest-key", "idempotency-key": "grpc-batch-1"}).push(sent)
                assert ack.accepted == 20
        body = "\n".join(json.dumps({"message": f"http {i}", "service": f"svc{i % 3}",
                                     "ts": time.time()}) for i in range(15))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://laas") as client:
            for _ in range(2):
                r = await client.post("/api/v1/logs", content=body, headers={
                    "content-type": "application/x-ndjson", "x-api-key": "ingest-key",
                    "idempotency-key": "http-batch-1"})
                assert r.json()["accepted"] == 15, r.text
    finally:
        server.close()
        await server.wait_closed()
        await service.close()
        await app.state.ingest.close()
    await register_tenants(stream.settings, [{"laas-tenant-id": b"1", "laas-tenant": b"acme"}])
    stream.worker()
    # Every copy normalized (normalize's group committed all of logs.raw), then indexed.
    await stream.wait(lambda: _caught_up(stream, stream.settings.app_id, RAW), 120,
                      "normalize to read every raw record")
    await stream.wait(lambda: _caught_up(stream, index_group(stream.settings), EVENTS), 120,
                      "the index stage to catch up")
    request = esindex.tenant_search(stream.settings, "1")
    await es.indices.refresh(index=request["index"], ignore_unavailable=True)
    docs = [hit async for hit in async_scan(es, index=request["index"], ignore_unavailable=True,
                                            query={"query": request["query"]})]
    messages = sorted(d["_source"]["message"] for d in docs)
    assert messages == sorted([f"grpc {i}" for i in range(20)] + [f"http {i}" for i in range(15)])
    ids = {d["_id"] for d in docs}
    assert ids == {f"batch/1/grpc-batch-1/{i}" for i in range(20)} | {
        f"batch/1/http-batch-1/{i}" for i in range(15)}
    assert all(d["_source"]["raw"]["topic"] == stream.topic("logs.raw") for d in docs)
