"""Storing alerts and templates in Elasticsearch without scripts: merges under concurrency."""

from __future__ import annotations

from elasticsearch import AsyncElasticsearch

from agents.alerts import ensure_alerts_index, store_alert
from app.elastic.template_index import (
    ensure_patterns_index,
    merge_template,
    patterns_index,
    store_templates,
)
from app.pipeline.alerting import alerts_index, merge_alert
from app.settings import Settings


def test_merge_alert_keeps_an_acknowledgement_and_reopens_a_resolved_alert() -> None:
    firing = {"id": "a1", "status": "open", "occurrences": 2, "score": 0.9}
    assert merge_alert(None, firing) == firing
    acked = merge_alert({"id": "a1", "status": "acknowledged", "occurrences": 1}, firing)
    assert acked == {"id": "a1", "status": "acknowledged", "occurrences": 2, "score": 0.9}
    reopened = merge_alert({"id": "a1", "status": "resolved", "occurrences": 1}, firing)
    assert reopened["status"] == "open"


def test_merge_template_keeps_the_widest_time_span() -> None:
    stored = {"template": "a <NUM>", "first_seen": 100, "last_seen": 200, "updated": 1}
    doc = {"template": "a <*>", "first_seen": 150, "last_seen": 300, "updated": 2}
    assert merge_template(stored, doc) == {
        "template": "a <*>",
        "first_seen": 100,
        "last_seen": 300,
        "updated": 2,
    }


async def test_repeated_firings_update_one_alert(es: AsyncElasticsearch, unique: str) -> None:
    settings = Settings(index_prefix=f"{unique}-")
    await ensure_alerts_index(es, settings)
    try:
        alert = {"id": "burst-1", "tenant_id": "7", "status": "open", "occurrences": 1}
        await store_alert(es, settings, alert)
        await es.update(
            index=alerts_index(settings),
            id="burst-1",
            doc={"status": "acknowledged"},
            refresh="wait_for",
        )
        await store_alert(es, settings, {**alert, "occurrences": 2})
        stored = (await es.get(index=alerts_index(settings), id="burst-1"))["_source"]
        assert (stored["status"], stored["occurrences"]) == ("acknowledged", 2)
        count = await es.count(index=alerts_index(settings))
        assert count["count"] == 1
    finally:
        await es.indices.delete(index=f"{unique}-*")


async def test_templates_from_two_partitions_merge(es: AsyncElasticsearch, unique: str) -> None:
    settings = Settings(index_prefix=f"{unique}-")
    await ensure_patterns_index(es, settings)
    try:

        def doc(first: int, last: int) -> dict[str, object]:
            return {
                "tenant_id": "7",
                "template_id": "t1",
                "template": "x <NUM>",
                "first_seen": first,
                "last_seen": last,
                "updated": last,
            }

        assert await store_templates(es, settings, {"7/t1": doc(500, 600)}) == []
        assert await store_templates(es, settings, {"7/t1": doc(100, 550)}) == []
        stored = (await es.get(index=patterns_index(settings), id="7/t1"))["_source"]
        assert (stored["first_seen"], stored["last_seen"]) == (100, 600)
    finally:
        await es.indices.delete(index=f"{unique}-*")
