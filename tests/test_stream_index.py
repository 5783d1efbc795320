"""The index layout, sink, retention and stats folding against the real Elasticsearch."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch, BadRequestError

from agents.stats import ensure_sources_index
from app.elastic import esindex
from app.elastic.retention import apply_retention, expired, prepare_shared_indices, prune_snapshots
from app.elastic.sink import ElasticsearchSink
from app.elastic.template_index import ensure_patterns_index, patterns_index
from app.pipeline.events import LogEvent, RawPosition
from app.pipeline.stats import fold, fold_all
from app.settings import Settings, load_settings
from tests.search_fixtures import TIERS, second_item_busy_once, tier_indexing


def event(tenant: str, offset: int, *, time_ns: int | None = None, **changes: Any) -> LogEvent:
    t = time_ns or time.time_ns()
    base = LogEvent(tenant_id=tenant, tenant=f"slug{tenant}", time=t, observed_time=t,
                    severity="INFO", severity_number=9, message=f"hello {offset} user=u{offset}",
                    service="api", host="h", raw=RawPosition("x.logs.raw", 0, offset),
                    attributes={"user": f"u{offset}", "deep.key": ["a", "b"]}, size=10)
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def layout(es: AsyncElasticsearch, unique: str) -> AsyncIterator[Settings]:
    settings = load_settings(index_prefix=f"{unique}-", es_retry_initial=0.05)
    yield settings
    await es.indices.delete(index=f"{unique}-*", ignore_unavailable=True, allow_no_indices=True)
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{unique}-logs")


@pytest.mark.parametrize("tier", TIERS)
async def test_sink_indexes_idempotently_and_returns_rejections(
        es: AsyncElasticsearch, layout: Settings, tier: str) -> None:
    sink = ElasticsearchSink(es, layout.model_copy(update={"es_batch_size": 4,
                                                           "es_bulk_concurrency": 2}))
    sink.set_layout({"1": tier_indexing(tier), "2": tier_indexing(tier)})
    sizes: list[int] = []
    flying = [0, 0]  # now, most at once
    bulk = sink._bulk

    async def counted(body: bytes) -> dict[str, Any]:
        sizes.append(body.count(b"\n") // 2)
        flying[0] += 1
        flying[1] = max(flying)
        try:
            return await bulk(body)
        finally:
            flying[0] -= 1

    sink._bulk = counted  # type: ignore[method-assign]
    await sink.setup()
    day = int(datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()) * 10**9
    good = [event("1", i, time_ns=day + i) for i in range(5)] + [event("2", 9)]
    bad = event("1", 7, severity_number=1000)  # a byte field: mapper_parsing_exception
    rejected = await sink.write(good + [bad])
    assert sorted(sizes) == [3, 4]  # bulk requests of at most es_batch_size events,
    assert flying[1] == 2  # es_bulk_concurrency (2) of them at once
    assert [r.event for r in rejected] == [bad]
    assert rejected[0].status == 400 and rejected[0].error_type == "document_parsing_exception"
    assert await sink.write(good) == []  # the same _ids again: overwritten, not duplicated

    await es.indices.refresh(index=f"{layout.index_prefix}*")
    one = await es.count(**_count(esindex.tenant_search(layout, "1")))
    assert one["count"] == 5
    alias = esindex.tenant_alias(layout, "1")
    if tier == "dedicated":
        name = f"{layout.index_prefix}logs-1-2026.11.20"
        names = await es.indices.get_alias(name=alias)
        assert name in names.body
        assert all(n.startswith(f"{layout.index_prefix}logs-1-") for n in names.body)
        doc = await es.get(index=name, id="x.logs.raw/0/3")
        assert await _names(es, f"{layout.index_prefix}shared-*") == set()
    else:  # one shared index of the retention class, routed by tenant, no per-tenant index
        name = f"{layout.index_prefix}shared-r7-2026.11.20"
        assert not await es.indices.exists_alias(name=alias)
        assert await _names(es, f"{layout.index_prefix}logs-*") == set()
        doc = await es.get(index=name, id="x.logs.raw/0/3", routing="1")
        assert doc["_routing"] == "1"
        with pytest.raises(BadRequestError):  # a document without routing is refused
            await es.index(index=name, id="unrouted", document=esindex.document(good[0]))
    assert doc["_source"]["@timestamp"] == "2026-11-20T08:00:00.000000003Z"
    mapping = await es.indices.get_mapping(index=name)
    props = next(iter(mapping.body.values()))["mappings"]["properties"]
    assert props["attributes"]["type"] == "flattened"
    assert props["@timestamp"]["type"] == "date_nanos"
    assert props["message"]["fields"]["keyword"]["ignore_above"] == layout.message_keyword_max

    found = await es.search(**esindex.tenant_search(
        layout, "1", {"query_string": {"query": "attributes.user:u3"}}))
    assert [h["_id"] for h in found["hits"]["hits"]] == ["x.logs.raw/0/3"]
    ranged = await es.count(**_count(esindex.tenant_search(
        layout, "1", since=day + 1, until=day + 3)))
    assert ranged["count"] == 2
    nobody = await es.search(**esindex.tenant_search(layout, "3"))  # no alias yet: empty
    assert nobody["hits"]["total"]["value"] == 0
    two = await es.search(**esindex.tenant_search(layout, "2"))
    assert [h["_id"] for h in two["hits"]["hits"]] == ["x.logs.raw/0/9"]


def test_placement_is_fixed_per_tenant_and_day() -> None:
    settings = load_settings(index_prefix="p-")
    day = 20_000 * esindex.DAY_NS  # 2024.10.04
    small = esindex.TenantIndexing(7)
    assert esindex.placement(settings, "5", day, small, ()) == esindex.Placement(
        "p-shared-r7-2024.10.04", "5", None, True)
    assert esindex.placement(settings, "5", day, None, ()).index == "p-shared-r30-2024.10.04"
    promoted = esindex.TenantIndexing(7, dedicated_from=20_000)
    assert esindex.placement(settings, "5", day - 1, promoted, ()).shared  # the day before
    assert esindex.placement(settings, "5", day, promoted, ()) == esindex.Placement(
        "p-logs-5-2024.10.04", None, "p-logs-5", False)
    # a day that already has a dedicated index (the per-tenant layout of before) stays there
    assert esindex.placement(settings, "5", day, small, {"p-logs-5-2024.10.04"}).index == \
        "p-logs-5-2024.10.04"
    replay = esindex.placement(settings, "5", day, small, (), base="p-replay-x")
    assert replay == esindex.Placement("p-replay-x-5-2024.10.04", None, None, False)


async def _names(es: AsyncElasticsearch, pattern: str) -> set[str]:
    return set((await es.indices.get(index=pattern, allow_no_indices=True)).body)


def _count(request: dict) -> dict:
    return {k: v for k, v in request.items() if k in ("index", "query", "ignore_unavailable",
                                                      "allow_no_indices")}


def test_tenant_query_always_filters() -> None:
    settings = load_settings()
    request = esindex.tenant_search(settings, 5, {"match_all": {}}, size=3)
    assert request["index"] == "laas-logs-5,laas-shared-*" and request["size"] == 3
    assert {"term": {"tenant_id": "5"}} in request["query"]["bool"]["filter"]
    with pytest.raises(ValueError):
        esindex.tenant_search(settings, 5, index="laas-logs-*")
    with pytest.raises(ValueError):
        esindex.tenant_search(settings, 5, routing="6")
    with pytest.raises(esindex.InvalidTenant):
        esindex.tenant_alias(settings, "5,laas-logs-*")


def test_retention_selects_whole_days_past_each_tenants_limit() -> None:
    now = datetime(2026, 11, 27, 15, tzinfo=UTC)
    names = ["p-logs-1-2026.11.27", "p-logs-1-2026.11.21", "p-logs-1-2026.11.20",
             "p-logs-2-2026.11.26", "p-logs-2-2026.11.25", "p-replay-1-2026.11.01",
             "p-sources", "p-logs-3-2026.01.01", "p-shared-r7-2026.11.21",
             "p-shared-r7-2026.11.20", "p-shared-r2-2026.11.25", "p-shared-r30-2026.11.01",
             "p-shared-rx-2026.01.01"]
    assert expired(names, {"1": 7, "2": 2}, 365, now, "p-shared") == [
        "p-logs-1-2026.11.20", "p-logs-2-2026.11.25", "p-replay-1-2026.11.01",
        "p-shared-r2-2026.11.25", "p-shared-r7-2026.11.20"]


@pytest.mark.parametrize("tier", TIERS)
async def test_retention_deletes_real_indices(es: AsyncElasticsearch, layout: Settings,
                                              tier: str) -> None:
    sink = ElasticsearchSink(es, layout)
    sink.set_layout({"1": tier_indexing(tier, 30), "2": tier_indexing(tier, 3650)})
    await sink.setup()
    old = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 10**9
    await sink.write([event("1", 1, time_ns=old), event("1", 2), event("2", 3, time_ns=old)])
    deleted = await apply_retention(es, layout, {"1": 30, "2": 3650})
    family = "logs-1" if tier == "dedicated" else "shared-r30"
    assert deleted == [f"{layout.index_prefix}{family}-2026.01.01"]
    left = await es.indices.get(index=esindex.all_logs_pattern(layout))
    assert len(left.body) == 2
    await es.indices.refresh(index=f"{layout.index_prefix}*")
    one = await es.search(**esindex.tenant_search(layout, "1"))
    assert [h["_id"] for h in one["hits"]["hits"]] == ["x.logs.raw/0/2"]
    two = await es.search(**esindex.tenant_search(layout, "2"))
    assert [h["_id"] for h in two["hits"]["hits"]] == ["x.logs.raw/0/3"]


async def test_per_tenant_indices_of_earlier_versions_keep_working(
        es: AsyncElasticsearch, layout: Settings) -> None:
    # the layout before tiers: tenant 1's own index of a day, behind its alias
    old_day = int(datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()) * 10**9
    legacy = f"{layout.index_prefix}logs-1-2026.11.20"
    await esindex.ensure_template(es, layout)
    await esindex.ensure_index(es, legacy, esindex.tenant_alias(layout, "1"))
    await es.index(index=legacy, id="x.logs.raw/0/1",
                   document=esindex.document(event("1", 1, time_ns=old_day)))
    sink = ElasticsearchSink(es, layout)
    sink.set_layout({"1": tier_indexing("shared")})
    await sink.setup()  # reads which per-tenant indices exist
    late = event("1", 2, time_ns=old_day + 5)  # a late event (or a replay) of that day
    today = event("1", 3)
    assert await sink.write([late, today]) == []
    assert sink.index_of(late) == legacy  # the day stays where its first copy is
    assert sink.index_of(today) == esindex.shared_index(layout, 7, today.time)
    await es.indices.refresh(index=f"{layout.index_prefix}*")
    found = await es.search(**esindex.tenant_search(layout, "1", size=10))
    assert {h["_id"]: h["_index"] for h in found["hits"]["hits"]} == {
        "x.logs.raw/0/1": legacy, "x.logs.raw/0/2": legacy,
        "x.logs.raw/0/3": esindex.shared_index(layout, 7, today.time)}
    # retention deletes the old index by the tenant's retention, as before
    kept = datetime(2026, 11, 26, 23, tzinfo=UTC)  # its 7th day
    assert await apply_retention(es, layout, {"1": 7}, now=kept) == []
    gone = datetime(2026, 11, 27, tzinfo=UTC)
    assert await apply_retention(es, layout, {"1": 7}, now=gone) == [legacy]
    assert await _names(es, f"{layout.index_prefix}logs-*") == set()


async def test_the_shared_indices_of_today_and_tomorrow_are_made_ahead(
        es: AsyncElasticsearch, layout: Settings) -> None:
    now = datetime(2026, 11, 27, 23, 59, tzinfo=UTC)
    made = await prepare_shared_indices(es, layout, {"1": 7, "2": 30, "3": 7}, now=now)
    p = layout.index_prefix
    expected = [f"{p}shared-r7-2026.11.27", f"{p}shared-r7-2026.11.28",
                f"{p}shared-r30-2026.11.27", f"{p}shared-r30-2026.11.28"]
    assert made == expected
    assert await _names(es, f"{p}*") == set(expected)
    assert await prepare_shared_indices(es, layout, {"1": 7, "2": 30, "3": 7}, now=now) == \
        expected  # again: nothing to do, no error
    # the sink writes into a prepared index as into one it made (routing required there too)
    sink = ElasticsearchSink(es, layout)
    sink.set_layout({"1": tier_indexing("shared")})
    await sink.setup()
    assert await sink.write([event("1", 1, time_ns=int(now.timestamp()) * 10**9)]) == []
    await es.indices.refresh(index=f"{p}shared-r7-2026.11.27")
    assert (await es.count(index=f"{p}shared-r7-2026.11.27"))["count"] == 1


async def test_retention_prunes_stale_pattern_and_source_documents(
        es: AsyncElasticsearch, layout: Settings) -> None:
    await ensure_patterns_index(es, layout)
    await ensure_sources_index(es, layout)
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    old_ms, new_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000), \
        int(now.timestamp() * 1000)
    for tenant, template, seen in (("1", "a", old_ms), ("1", "b", new_ms), ("2", "c", old_ms),
                                   ("3", "d", old_ms)):
        await es.index(index=patterns_index(layout), id=f"{tenant}/{template}", document={
            "tenant_id": tenant, "template_id": template, "template": "x <NUM>",
            "first_seen": seen, "last_seen": seen})
    for tenant, seen_at in (("1", "2026-01-01T00:00:00Z"), ("1b", "2026-11-27T00:00:00Z")):
        await es.index(index=esindex.sources_index(layout), id=f"{tenant}/api/h", document={
            "tenant_id": tenant, "service": "api", "host": "h", "last_seen": seen_at})
    await es.indices.refresh(index=f"{layout.index_prefix}*")
    # Tenant 1 keeps 30 days, tenant 2 ten years; tenants 3 and 1b the default (30).
    deleted = await prune_snapshots(es, layout, {"1": 30, "2": 3650}, now=now)
    assert deleted == 3
    left = await es.search(index=f"{patterns_index(layout)},{esindex.sources_index(layout)}",
                           size=10)
    assert sorted(h["_id"] for h in left["hits"]["hits"]) == ["1/b", "1b/api/h", "2/c"]


async def test_sink_builds_the_next_bodies_while_one_request_is_in_flight(
        es: AsyncElasticsearch, layout: Settings) -> None:
    sink = ElasticsearchSink(es, layout.model_copy(update={"es_batch_size": 2}))  # 1 in flight
    steps: list[str] = []
    body_of, bulk = sink._body, sink._bulk

    def body(items: list[Any]) -> bytes:
        steps.append("body")
        return body_of(items)

    async def sent(body: bytes) -> dict[str, Any]:
        steps.append("send")
        try:
            return await bulk(body)
        finally:
            steps.append("done")

    sink._body, sink._bulk = body, sent  # type: ignore[method-assign]
    await sink.setup()
    assert await sink.write([event("1", i) for i in range(6)]) == []
    assert steps.count("body") == 3 and steps.count("send") == 3
    assert steps.index("body", steps.index("send")) < steps.index("done")  # built meanwhile
    in_flight = [steps[:i].count("send") - steps[:i].count("done") for i in range(len(steps))]
    assert max(in_flight) == 1  # es_bulk_concurrency 1: never two requests at once
    await es.indices.refresh(index=f"{layout.index_prefix}*")
    assert (await es.count(**_count(esindex.tenant_search(layout, "1"))))["count"] == 6


async def test_sink_retries_only_the_items_elasticsearch_asked_to_retry(
        es: AsyncElasticsearch, layout: Settings) -> None:
    sink = ElasticsearchSink(es, layout)
    bodies = second_item_busy_once(sink)
    await sink.setup()
    events = [event("1", i) for i in range(3)]
    assert await sink.write(events) == []
    assert len(bodies) == 2
    action, source = bodies[1].splitlines()  # only the retried item, its own body
    assert json.loads(action)["index"]["_id"] == events[1].doc_id()
    assert json.loads(source)["raw"]["offset"] == events[1].raw.offset


def test_stats_fold_counts_each_offset_once() -> None:
    value = None
    for offset, sev in enumerate(["INFO", "ERROR", "INFO"]):
        value = fold(value, event("1", offset, severity=sev, time_ns=10**18 + offset))
    assert value is not None
    assert value["count"] == 3 and value["severity"] == {"INFO": 2, "ERROR": 1}
    assert value["bytes"] == 30 and value["first_seen"] == 10**18
    assert value["last_seen"] == 10**18 + 2
    assert fold(value, event("1", 1)) is None  # re-delivered after a crash: not counted again
    assert fold(value, event("1", 2)) is None
    later = fold(value, event("1", 2, raw=RawPosition("x.logs.raw", 0, 2, 1)))  # array item
    assert later is not None and later["count"] == 4
    other = fold(value, event("1", 0, raw=RawPosition("x.logs.raw", 1, 0)))  # raw partition 1
    assert other is not None and other["count"] == 4


def test_stats_fold_all_is_fold_of_each_event_in_turn() -> None:
    start = fold(None, event("1", 5, severity="WARN", time_ns=10**18))
    frozen = json.dumps(start, sort_keys=True)
    batch = [event("1", offset, severity=sev, time_ns=10**18 - offset)
             for offset, sev in [(3, "INFO"), (6, "ERROR"), (6, "ERROR"), (7, "INFO")]]
    batch.append(event("1", 0, raw=RawPosition("x.logs.raw", 1, 0)))  # another raw partition
    expected, counted = start, 0
    for one in batch:
        folded = fold(expected, one)
        expected, counted = folded or expected, counted + (folded is not None)
    assert fold_all(start, batch) == (expected, counted) and counted == 3  # 3 and the 2nd 6: seen
    assert json.dumps(start, sort_keys=True) == frozen  # the input value is not changed
    assert fold_all(expected, batch) == (None, 0)
