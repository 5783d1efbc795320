"""Issue 21, findings 5 and 6: every input that was answered with a 5xx gets a specific 4xx (or a
gRPC INVALID_ARGUMENT), and records Elasticsearch would refuse are refused at ingest with a
reason instead of being acknowledged and then dead-lettered by the index stage.

Against the real services: Kafka (a fresh raw topic), Elasticsearch (a fresh index prefix), the
user database on SQLite.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import BulkIndexError
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest as OtlpRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue as OtlpAnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OtlpLogRecord

from agents.detect import load_rules
from agents.resources import AlertRuleRepository
from app.db.engine import session_factory
from app.db.models import AlertRule
from app.ingest.gateway import OTLP_EXPORT, PUSH, _RpcStatus
from app.ingest.wire import pb
from app.pipeline.alerting import ALERTS_MAPPINGS, alerts_index
from app.query import QuerySyntaxError, parse
from app.query.elastic import to_elasticsearch
from app.query.match import compile_predicate
from app.query.parser import MAX_DEPTH, depth
from app.settings import Settings
from protos.laas.v1 import LogRecord, PushAck
from protos.opentelemetry.proto.collector.logs.v1 import ExportLogsServiceResponse
from tests.auth_fixtures import World, build_world, client_for, make_settings, running_app
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume
from tests.search_fixtures import event, index_events

NDJSON = {"content-type": "application/x-ndjson", "x-api-key": "ingest-key"}
JSON = {"content-type": "application/json", "x-api-key": "ingest-key"}
OTLP_PB = {"content-type": "application/x-protobuf", "x-api-key": "ingest-key"}
OTLP_JSON = JSON
NUL_REASON = "NUL (U+0000) in an attribute key"


# --- the query limits, one place for search, histogram, fields, tail and rules -----------------


@pytest.mark.parametrize("operator", ["NOT ", "-", "!"])
@pytest.mark.parametrize("count", [MAX_DEPTH + 1, 330, 1000])
def test_a_long_not_chain_is_a_syntax_error_at_the_operator_too_many(
    operator: str, count: int
) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse(operator * count + "error")
    assert f"nested deeper than {MAX_DEPTH} levels" in err.value.reason
    assert err.value.position == len(operator) * MAX_DEPTH


def test_a_rule_query_the_worker_compiles_is_never_a_recursion_error() -> None:
    # rule queries are up to 2,000 characters; before the limit '!' * 1999 overflowed the parser
    for text in ("!" * 1999 + "a", "(" * 999 + "a" + ")" * 999, "a AND " + "-" * 1990 + "b"):
        with pytest.raises(QuerySyntaxError):
            parse(text)


def test_nesting_counts_groups_and_operators() -> None:
    assert depth(parse("level:error AND NOT (service:a OR service:b)")) == 3
    assert depth(parse("!" * MAX_DEPTH + "a")) == MAX_DEPTH
    parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)  # redundant groups open levels while parsing
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    # an AND inside an OR inside a group: two tree levels per '(' (Elasticsearch counts those)
    half = MAX_DEPTH // 2
    assert depth(parse("(a OR b AND " * half + "c" + ")" * half)) == MAX_DEPTH
    with pytest.raises(QuerySyntaxError, match=f"nested {MAX_DEPTH + 2} levels deep") as err:
        parse("(a OR b AND " * (half + 1) + "c" + ")" * (half + 1))
    assert err.value.position == 0


def test_the_deepest_allowed_query_compiles_for_both_evaluators() -> None:
    node = parse("(a OR b AND " * (MAX_DEPTH // 2) + "c" + ")" * (MAX_DEPTH // 2))
    json.dumps(to_elasticsearch(node))
    assert compile_predicate(node)({"message": "a"})
    deep_not = parse("!" * MAX_DEPTH + "timeout")
    assert compile_predicate(deep_not)({"message": "a timeout"})


# --- the web app: search, histogram, rules, alerts ----------------------------------------------


@dataclass
class Site:
    client: httpx.AsyncClient
    world: World
    settings: Settings
    es: AsyncElasticsearch

    def headers(self, who: str = "key_read") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.creds[who]}"}


@pytest.fixture
async def site(tmp_path: Path, es: AsyncElasticsearch, unique: str) -> AsyncIterator[Site]:
    """The whole web app on a fresh SQLite user database and index prefix, one acme event
    ("disk error on sda") indexed, and the (empty) alerts index created."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state",
                             index_prefix=f"{unique}-", topic_prefix=f"{unique}.")
    try:
        async with running_app(settings) as app, client_for(app) as client:
            world = await build_world(app)
            await index_events(es, settings, [event(world, "acme", 0, message="disk error on sda",
                                                    level="ERROR")])
            await es.indices.create(index=alerts_index(settings), mappings=ALERTS_MAPPINGS)
            yield Site(client, world, settings, es)
    finally:
        await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


@pytest.mark.parametrize("path", ["/api/v1/search", "/api/v1/histogram", "/api/v1/fields"])
@pytest.mark.parametrize("operator", ["NOT ", "-", "!"])
async def test_a_deep_query_is_a_400_naming_q(site: Site, path: str, operator: str) -> None:
    q = operator * 330 + "error"
    for r in (await site.client.get(path, params={"q": q, "since": "1h"}, headers=site.headers()),
              await site.client.post(path, json={"q": q, "since": "1h"}, headers=site.headers())):
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["parameter"] == "q" and body["position"] == len(operator) * MAX_DEPTH
        assert f"nested deeper than {MAX_DEPTH} levels" in body["detail"]


async def test_the_deepest_allowed_queries_run_in_elasticsearch(site: Site) -> None:
    """The limit fits Elasticsearch's own (`indices.query.bool.max_nested_depth`): the deepest
    query allowed is answered, with the hit it should find."""
    half = MAX_DEPTH // 2
    for q in ("!" * MAX_DEPTH + "error",  # an even number of NOTs: the same as `error`
              "(nothing OR error AND " * half + "sda" + ")" * half):
        r = await site.client.get("/api/v1/search", params={"q": q, "since": "1h"},
                                  headers=site.headers())
        assert r.status_code == 200, r.text
        assert [h["message"] for h in r.json()["hits"]] == ["disk error on sda"]
        r = await site.client.get("/api/v1/histogram", params={"q": q, "since": "1h"},
                                  headers=site.headers())
        assert r.status_code == 200 and r.json()["total"] == 1, r.text


async def test_a_deep_rule_query_is_refused_at_creation(site: Site) -> None:
    rule = {"name": "deep", "query": "NOT " * 330 + "level:error", "threshold": 1}
    r = await site.client.post("/api/v1/alert-rules", json=rule, headers=site.headers("admin"))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "query" and "nested deeper" in r.json()["detail"]


async def test_the_worker_rule_reload_survives_a_bad_rule(site: Site) -> None:
    """A rule stored before the limit (or written around the API) is skipped, not fatal: the
    other tenants' rules still load."""
    acme, beta = site.world.tenant_ids["acme"], site.world.tenant_ids["beta"]
    async with site.world.sessions.begin() as session:
        session.add(AlertRule(tenant_id=acme, name="overflows", query="!" * 1999 + "a",
                              threshold=1))
        session.add(AlertRule(tenant_id=beta, name="fine", query="level:error", threshold=1))
    rules = await load_rules(AlertRuleRepository(session_factory(site.world.app.state.engine)))
    assert [(r.tenant_id, r.name) for r in rules] == [(str(beta), "fine")]
    assert rules[0].predicate({"severity": "ERROR"})


@pytest.mark.parametrize("since", ["100000w", "999999w", "0001-01-01T00:00:00Z",
                                   "9999-12-31T00:00:00Z"])
async def test_a_time_outside_what_elasticsearch_holds_is_a_4xx(site: Site, since: str) -> None:
    r = await site.client.get("/api/v1/alerts", params={"since": since}, headers=site.headers())
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "since" and "times from 1970 to 2262" in r.json()["detail"]
    r = await site.client.get("/api/v1/search", params={"since": since, "until": "now"},
                              headers=site.headers())
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == "since" and "1970" in r.json()["detail"]


async def test_alerts_still_list_with_a_sane_since(site: Site) -> None:
    r = await site.client.get("/api/v1/alerts", params={"since": "1w"}, headers=site.headers())
    assert r.status_code == 200 and r.json() == {"alerts": [], "total": 0}


async def test_a_lone_surrogate_in_a_query_is_echoed_escaped(site: Site) -> None:
    """Found by tests/test_fuzz.py: the error detail echoed the field name and could not be
    encoded (500)."""
    body = b'{"q": "\\udfff:x", "since": "1h"}'
    r = await site.client.post("/api/v1/search", content=body, headers={
        **site.headers(), "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("unknown field '\\udfff'")
    body = b'{"name": "r", "query": "\\udfff:x", "threshold": 1}'
    r = await site.client.post("/api/v1/alert-rules", content=body, headers={
        **site.headers("admin"), "content-type": "application/json"})
    assert r.status_code == 422 and "unknown field '\\udfff'" in r.json()["detail"], r.text


@pytest.mark.parametrize("path", ["/api/v1/search", "/api/v1/histogram", "/api/v1/alert-rules"])
async def test_a_deeply_nested_json_body_is_a_4xx(site: Site, path: str) -> None:
    r = await site.client.post(path, content=b"[" * 100_000, headers={
        **site.headers("admin"), "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "request body must be a JSON object"


# --- HTTP ingest ---------------------------------------------------------------------------------


async def test_deeply_nested_json_records_are_400(web: httpx.AsyncClient) -> None:
    r = await web.post("/api/v1/logs", content=b"[" * 100_000, headers=JSON)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
    r = await web.post("/api/v1/logs", content=b"[" * 100_000 + b'\n{"message": "ok"}',
                       headers=NDJSON)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["errors"] == [
        {"line": 1, "field": "line", "reason": "not JSON: arrays or objects nested too deeply"}]
    r = await web.post("/v1/logs", content=b"[" * 100_000, headers=OTLP_JSON)
    assert r.status_code == 400 and r.json()["code"] == 3
    assert "nested too deeply" in r.json()["message"]


async def test_a_lone_surrogate_in_a_key_is_named_in_an_encodable_answer(
    web: httpx.AsyncClient,
) -> None:
    body = b'[{"message": "x", "attributes": {"\\ud800": 1}}, {"message": "ok", "k\\udfff": 2}]'
    r = await web.post("/api/v1/logs", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == [
        {"index": 0, "field": "attributes.\\ud800", "reason": "not valid UTF-8 (lone surrogate)"},
        {"index": 1, "field": "attributes.k\\udfff", "reason": "not valid UTF-8 (lone surrogate)"},
    ]


async def test_otlp_08_01_is_400_over_http(web: httpx.AsyncClient) -> None:
    r = await web.post("/v1/logs", content=b"\x08\x01", headers=OTLP_PB)
    assert r.status_code == 400, r.content
    status = _RpcStatus().parse(r.content)
    assert status.code == 3 and "resource_logs: wire type 0" in status.message


async def test_random_otlp_payloads_are_never_5xx_over_http(web: httpx.AsyncClient) -> None:
    rng = random.Random(21)
    statuses = []
    for _ in range(60):
        r = await web.post("/v1/logs", content=rng.randbytes(512), headers=OTLP_PB)
        statuses.append(r.status_code)
        if r.status_code == 200:
            ExportLogsServiceResponse().parse(r.content)
        else:
            assert _RpcStatus().parse(r.content).code == 3
    assert set(statuses) <= {200, 400}, statuses


def deep_any(levels: int, kvlist: bool) -> OtlpAnyValue:
    value = OtlpAnyValue(string_value="leaf")
    for _ in range(levels):
        outer = OtlpAnyValue()
        if kvlist:
            entry = outer.kvlist_value.values.add(key="k")
            entry.value.CopyFrom(value)
        else:
            outer.array_value.values.add().CopyFrom(value)
        value = outer
    return value


def deep_records(levels: int) -> list[bytes]:
    """Three serialized OTLP records: a body and an attribute nested `levels` deep, and a fine
    one (framed by hand: upb refuses to parse more than 100 nested messages, even in tests)."""
    now = time.time_ns()
    body = OtlpLogRecord(time_unix_nano=now)
    body.body.CopyFrom(deep_any(levels, kvlist=False))
    attribute = OtlpLogRecord(time_unix_nano=now)
    attribute.attributes.add(key="x").value.CopyFrom(deep_any(levels, kvlist=True))
    fine = OtlpLogRecord(time_unix_nano=now)
    fine.body.string_value = "fine"
    return [r.SerializeToString() for r in (body, attribute, fine)]


def deep_export(levels: int) -> bytes:
    scope_logs = b"".join(field(2, record) for record in deep_records(levels))
    return field(1, field(2, scope_logs))


def field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(data)) + data


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


@pytest.mark.parametrize("levels", [9, 90, 1000])
async def test_an_otlp_value_nested_deep_rejects_its_record_over_http(
    web: httpx.AsyncClient, raw_settings: Settings, levels: int
) -> None:
    r = await web.post("/v1/logs", content=deep_export(levels), headers=OTLP_PB)
    assert r.status_code == 200, r.content
    partial = ExportLogsServiceResponse().parse(r.content).partial_success
    assert partial.rejected_log_records == 2
    assert partial.error_message.count("nested") == 2, partial.error_message
    msgs = await consume(raw_settings, 1, timeout=5)
    assert [LogRecord().parse(m.value).body.string_value for m in msgs] == ["fine"]


async def test_json_values_nested_deep_are_rejected_by_record(web: httpx.AsyncClient) -> None:
    value: Any = "leaf"
    for _ in range(90):
        value = {"k": value}
    r = await web.post("/api/v1/logs", content=json.dumps({"message": "x", "v": value}),
                       headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["reason"] == "nested deeper than 8 levels"


# --- NUL (finding 6) -------------------------------------------------------------------------


async def test_nul_in_an_attribute_key_is_refused_at_ingest_with_a_reason(
    web: httpx.AsyncClient, raw_settings: Settings
) -> None:
    lines = [
        {"message": "a", "attributes": {"user\u0000id": "u1"}},
        {"message": "b", "tag\u0000": "x"},  # a shorthand key becomes an attribute
        {"message": "c", "attributes": {"outer": {"in\u0000ner": 1}}},
        {"message": json.dumps({"msg": "json line", "bad\u0000key": 1})},  # keys of the message
        {"body": {"kvlistValue": {"values": {"pid\u0000": {"intValue": "7"}}}}},
        {"message": "kept: NUL in values is stored", "v": "x\u0000y", "w": ["\u0000"]},
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    r = await web.post("/api/v1/logs", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 1
    assert [(e["line"], e["field"]) for e in out["errors"]] == [
        (1, "attributes.user\\u0000id"),
        (2, "attributes.tag\\u0000"),
        (3, "attributes.outer.in\\u0000ner"),
        (4, "body"),
        (5, "body.pid\\u0000"),
    ]
    assert all(NUL_REASON in e["reason"] for e in out["errors"])
    assert "the key 'bad\\u0000key'" in out["errors"][3]["reason"]
    msgs = await consume(raw_settings, 1, timeout=5)
    assert len(msgs) == 1
    kept = LogRecord().parse(msgs[0].value)
    assert kept.attributes["v"].string_value == "x\u0000y"


async def test_nul_in_an_attribute_key_is_refused_over_grpc_and_otlp(
    gateway: int, web: httpx.AsyncClient
) -> None:
    batch = pb.LogBatch()
    batch.records.add(time_unix_nano=time.time_ns()).attributes["a\u0000"].string_value = "v"
    batch.records.add(time_unix_nano=time.time_ns()).body.string_value = "fine"
    status, ack = await raw_call(gateway, PUSH, batch.SerializeToString(), PushAck)
    assert status is None and ack.accepted == 1
    assert [(x.index, x.field) for x in ack.rejections] == [(0, "attributes.a\\u0000")]
    assert NUL_REASON in ack.rejections[0].reason

    request = OtlpRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="k8s\u0000pod").value.string_value = "p"
    resource_logs.scope_logs.add().log_records.add(time_unix_nano=time.time_ns())
    r = await web.post("/v1/logs", content=request.SerializeToString(), headers=OTLP_PB)
    partial = ExportLogsServiceResponse().parse(r.content).partial_success
    assert r.status_code == 200 and partial.rejected_log_records == 1
    assert "resource.attributes.k8s\\u0000pod" in partial.error_message


async def test_elasticsearch_refuses_exactly_the_nul_that_ingest_refuses(site: Site) -> None:
    """Why the rule is what it is: in a LaaS index a NUL in an attribute key fails the document,
    a NUL in a value or the message is stored (and found)."""
    kept = event(site.world, "acme", 1, message="nul \u0000 in message",
                 attributes={"v": "x\u0000y"})
    await index_events(site.es, site.settings, [kept])
    r = await site.client.get("/api/v1/search", params={"q": 'attributes.v:"x\u0000y"',
                                                        "since": "1h"}, headers=site.headers())
    assert [h["message"] for h in r.json()["hits"]] == ["nul \u0000 in message"]
    with pytest.raises(BulkIndexError) as err:
        await index_events(site.es, site.settings, [event(site.world, "acme", 2, message="m",
                                                          attributes={"a\u0000b": "x"})])
    assert "document_parsing_exception" in json.dumps(err.value.errors)


# --- gRPC ----------------------------------------------------------------------------------------


class _Raw:
    """Hand-framed request bytes (to send what a generated message would refuse to build)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - the codec's interface
        return self.data


async def raw_call(port: int, method: str, data: bytes,
                   reply: type[Any]) -> tuple[Status | None, Any]:
    """(None, the reply) or (the error status, its message) of one unary call with `data`."""
    channel = Channel("127.0.0.1", port)
    with closing(channel):
        try:
            async with channel.request(method, Cardinality.UNARY_UNARY, _Raw, reply,
                                       metadata={"x-api-key": "ingest-key"}) as stream:
                await stream.send_message(_Raw(data), end=True)
                return None, await stream.recv_message()
        except GRPCError as exc:
            return exc.status, exc.message


async def test_otlp_08_01_is_invalid_argument_over_grpc(gateway: int) -> None:
    status, message = await raw_call(gateway, OTLP_EXPORT, b"\x08\x01",
                                     ExportLogsServiceResponse)
    assert status is Status.INVALID_ARGUMENT
    assert "resource_logs: wire type 0" in message


async def test_random_payloads_are_never_unknown_or_internal_over_grpc(gateway: int) -> None:
    rng = random.Random(21)
    seen = []
    for _ in range(60):
        data = rng.randbytes(512)
        for method, reply in ((OTLP_EXPORT, ExportLogsServiceResponse), (PUSH, PushAck)):
            status, _ = await raw_call(gateway, method, data, reply)
            seen.append(status)
    assert set(seen) <= {None, Status.INVALID_ARGUMENT}, seen
    assert Status.INVALID_ARGUMENT in seen


async def test_an_otlp_value_nested_deep_rejects_its_record_over_grpc(gateway: int) -> None:
    status, reply = await raw_call(gateway, OTLP_EXPORT, deep_export(90),
                                   ExportLogsServiceResponse)
    assert status is None, reply
    assert reply.partial_success.rejected_log_records == 2
    # the same records in a LogBatch (an OTLP record's bytes are a laas.v1.LogRecord)
    data = b"".join(field(1, record) for record in deep_records(90))
    status, ack = await raw_call(gateway, PUSH, data, PushAck)
    assert status is None and ack.accepted == 1
    assert [r.index for r in ack.rejections] == [0, 1]
    assert all("nested" in r.reason for r in ack.rejections), ack.rejections
