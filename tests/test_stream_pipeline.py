"""The worker end to end on the real stack: raw records become searchable documents, bad ones
dead letters with reasons; stats reach the sources index."""

from __future__ import annotations

import dataclasses
import json
import time

from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from app.kafka.stamp import Stamps
from app.kafka.topics import DEADLETTER, EVENTS
from app.pipeline.event_messages import decode, partition_of
from app.pipeline.events import DeadLetter, LogEvent, RawPosition
from protos.laas.v1 import AnyValue, LogRecord, Resource
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import (
    StreamEnv,
    es_count,
    gateway_headers,
    produce_raw,
    read_topic,
    tenant_count,
)


async def test_raw_records_become_documents_and_dead_letters(
        stream: StreamEnv, es: AsyncElasticsearch) -> None:
    now = time.time_ns()
    record = LogRecord(time_unix_nano=now, severity_number=17, severity_text="ERROR",
                       body=AnyValue(string_value="payment failed order=42 user=alice"),
                       resource=Resource(service_name="checkout", host="web-1"),
                       attributes={"http.status": AnyValue(int_value=502)},
                       trace_id=bytes(range(16)), span_id=bytes(range(8)))
    text_headers = [("laas-tenant-id", b"7"), ("laas-tenant", b"acme")]
    good = [
        (b"7/checkout", bytes(record), gateway_headers("7", "acme")),
        (None, b"2026-11-27 10:30:45,123 WARN [main] com.acme.Db - slow query ms=900",
         text_headers + [("laas-service", b"db")]),
        (None, json.dumps({"message": "hello", "level": "info", "service": "api",
                           "ts": "2026-11-27T10:00:00.5Z", "region": "eu"}).encode(),
         text_headers),
    ]
    bad = [
        (None, b"no tenant at all", []),
        (b"7/x", b"\xff\xfe not utf8", text_headers),
        (b"7/x", b"{broken json", text_headers + [("content-type", b"application/json")]),
        (b"7/x", json.dumps({"timeUnixNano": "yesterday"}).encode(), text_headers),
    ]
    await produce_raw(stream.settings, good + bad)
    # Straight onto logs.events: one event Elasticsearch refuses, one that is not an event.
    refused = LogEvent(tenant_id="7", tenant="acme", time=now, observed_time=now,
                       severity="INFO", severity_number=1000, message="too severe",
                       service="x", host="", raw=RawPosition("elsewhere", 0, 1))
    await produce_raw(stream.settings, [(b"7/x/", refused.to_json(), []),
                                        (b"7/x/", b"not an event", [])],
                      topic=stream.topic(EVENTS))
    # Forgeries by a producer without LaaS's secret (issue 21): a tenant stamp on logs.raw and
    # an event for tenant 8 straight onto logs.events; neither reaches tenant 8.
    forged = LogEvent(tenant_id="8", tenant="beta", time=now, observed_time=now,
                      severity="INFO", severity_number=9, message="forged", service="x",
                      host="", raw=RawPosition("elsewhere", 0, 2))
    await produce_raw(stream.settings, [(b"8/x", b"forged line", [("laas-tenant-id", b"8")])],
                      sign=False)
    await produce_raw(stream.settings, [(b"8/x/", forged.to_json(), [])],
                      topic=stream.topic(EVENTS), sign=False)
    # A signed event of a tenant the user database does not know (deleted, say): no index.
    stray = dataclasses.replace(forged, tenant_id="99", tenant="gone", message="stray")
    await produce_raw(stream.settings, [(b"99/x/", stray.to_json(), [])],
                      topic=stream.topic(EVENTS))
    worker = stream.worker()
    async def indexed() -> int | None:
        count = await tenant_count(es, stream.settings, "7")
        return count if count >= 3 else None

    await stream.wait(indexed, 90, "3 documents indexed")
    dead = [DeadLetter.from_json(r.value) for r in await read_topic(stream.settings, DEADLETTER, 9)]
    by_stage = {d.reason: d for d in dead if d.stage == "index"}
    assert set(by_stage) == {"index_rejected", "undecodable_event", "unsigned_event",
                             "unknown_tenant"}
    assert LogEvent.from_json(by_stage["unknown_tenant"].value) == stray
    assert not await es.indices.exists_alias(name=esindex.tenant_alias(stream.settings, "99"))
    assert await tenant_count(es, stream.settings, "99") == 0
    names = (await es.indices.get(index=f"{stream.settings.index_prefix}*")).body
    assert not [n for n in names if "-99-" in n], names  # no index made for it
    assert LogEvent.from_json(by_stage["unsigned_event"].value) == forged
    rejected = by_stage["index_rejected"]
    assert "HTTP 400" in rejected.detail and "severity_number" in rejected.detail
    assert rejected.raw == RawPosition("elsewhere", 0, 1) and rejected.tenant_id == "7"
    assert LogEvent.from_json(rejected.value) == refused
    dead = [d for d in dead if d.stage == "normalize"]
    assert sorted(d.reason for d in dead) == sorted(
        ["missing_tenant", "not_utf8", "invalid_json", "invalid_record", "unsigned_tenant_header"])
    for d in dead:
        assert d.stage == "normalize" and d.detail and d.value
        assert d.raw.topic == stream.topic("logs.raw") and d.raw.offset >= 0
    assert {d.value for d in dead} == {v for _, v, _ in bad} | {b"forged line"}

    result = await es.search(**esindex.tenant_search(stream.settings, "7", size=10,
                                                     sort=[{"@timestamp": "asc"}]))
    docs = {h["_source"]["service"]: h for h in result["hits"]["hits"]}
    assert set(docs) == {"checkout", "db", "api"}
    pay = docs["checkout"]
    src = pay["_source"]
    assert src["severity"] == "ERROR" and src["severity_number"] == 17
    assert src["host"] == "web-1" and src["tenant"] == "acme" and src["tenant_id"] == "7"
    assert src["message"] == "payment failed order=42 user=alice"
    assert src["attributes"] == {"http.status": 502, "order": "42", "user": "alice"}
    assert src["attributes_num"] == {"http.status": 502}  # an int stays a number; text stays
    assert src["trace_id"] == bytes(range(16)).hex() and src["format"] == "protobuf"
    assert src["@timestamp"].endswith(f"{now % 1_000_000_000:09d}Z")
    assert pay["_id"] == f"{stream.topic('logs.raw')}/{src['raw']['partition']}/" \
                         f"{src['raw']['offset']}"
    db = docs["db"]["_source"]
    assert db["severity"] == "WARN" and db["@timestamp"] == "2026-11-27T10:30:45.123000000Z"
    assert db["attributes"]["log.logger"] == "com.acme.Db" and db["attributes"]["ms"] == "900"
    api = docs["api"]["_source"]
    assert api["severity"] == "INFO" and api["attributes"] == {"region": "eu"}
    assert api["@timestamp"] == "2026-11-27T10:00:00.500000000Z"

    # Full-text and exact search work through the tenant-scoped request only.
    hits = await es.search(**esindex.tenant_search(
        stream.settings, "7", {"query_string": {"query": "payment AND attributes.user:alice"}}))
    assert hits["hits"]["total"]["value"] == 1
    other = await es.search(**esindex.tenant_search(stream.settings, "8"))
    assert other["hits"]["total"]["value"] == 0

    # logs.events carries the same events, a source always on its key's partition, with the
    # message's tenants in a signed header: one message per partition of the worker's batch,
    # next to the 4 written straight onto the topic above.
    produced = {"7/checkout/web-1", "7/db/", "7/api/"}
    partitions = stream.settings.partitions
    records = await read_topic(stream.settings, EVENTS,
                               4 + len({partition_of(k, partitions) for k in produced}))
    stamps = Stamps.from_settings(stream.settings)
    assert [r.key for r in records if not stamps.valid_message(r, kind="events")] == [b"8/x/"]
    normalized = [r for r in records if stamps.valid_message(r, kind="events")
                  and "laas-tenants" in dict(r.headers)]
    events = [e for r in normalized for e in decode(r.value)]
    assert {e.source_key for e in events} == produced and len(events) == 3
    for r in normalized:
        held = decode(r.value)
        assert {partition_of(e.source_key, partitions) for e in held} == {r.partition}
        assert dict(r.headers)["laas-tenants"] == b"7"
        assert r.key is None or {e.source_key.encode() for e in held} == {r.key}

    # The stats snapshot reaches the sources index.
    sources = esindex.sources_index(stream.settings)
    await stream.wait(lambda: _at_least(es, sources, 3), 60, "3 sources in the snapshot")
    snap = await es.get(index=sources, id="7/checkout/web-1")
    assert snap["_source"]["count"] == 1 and snap["_source"]["severity"] == {"ERROR": 1}
    assert snap["_source"]["windows"][0]["count"] == 1
    assert worker.proc is not None and worker.proc.poll() is None, stream.logs()


async def _at_least(es: AsyncElasticsearch, index: str, n: int) -> int | None:
    count = await es_count(es, index)
    return count if count >= n else None
