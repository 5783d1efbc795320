"""`laas replay`'s engine: a time range of logs.raw into a new index set, alias swapped; and into
the live indices without duplicating anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch

from app import esindex
from app.replay import Replay
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, es_count, produce_raw


async def _docs(es: AsyncElasticsearch, request: dict) -> dict[str, dict]:
    await es.indices.refresh(index=request["index"])
    found = await es.search(**request, size=1000)
    return {h["_id"]: h["_source"] for h in found["hits"]["hits"]}


async def test_replay_into_new_index_matches_the_original(
        stream: StreamEnv, es: AsyncElasticsearch) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    records = []
    for i in range(200):
        tenant = b"7" if i % 4 else b"8"
        records.append((b"k", f"2026-11-27T09:00:{i % 60:02d}Z WARN item n={i}".encode(),
                        [("laas-tenant-id", tenant), ("laas-tenant", b"t" + tenant)]))
    await produce_raw(stream.settings, records)
    stream.worker()
    alias = esindex.tenant_alias(stream.settings, "7")

    async def indexed() -> int | None:
        count = await es_count(es, alias)
        return count if count >= 150 else None

    await stream.wait(indexed, 90, "150 live documents of tenant 7")
    request = esindex.tenant_search(stream.settings, "7")
    original = await _docs(es, request)
    assert len(original) == 150

    again = Replay(stream.settings, "7", before, es=es)  # into the live indices
    result = await again.run()
    assert (result.records, result.events, result.skipped_other_tenants) == (200, 150, 50)
    assert await es_count(es, alias) == 150  # same _ids: overwritten, not duplicated

    progress: list[tuple[int, int]] = []
    job = Replay(stream.settings, "7", before, datetime.now(UTC) + timedelta(minutes=1),
                 to_index="v2", es=es)
    result = await job.run(lambda done, total: progress.append((done, total)))
    assert result.events == 150 and progress[-1] == (200, 200)
    assert result.indices == {f"{stream.settings.index_prefix}replay-v2-7-2026.11.27"}
    replayed = await _docs(es, request)  # the alias now points at the replayed index
    hits = await es.search(**request, size=1)
    assert hits["hits"]["hits"][0]["_index"].startswith(f"{stream.settings.index_prefix}replay-")
    assert replayed == original
    assert job.checkpoint.with_suffix(".done").exists()
