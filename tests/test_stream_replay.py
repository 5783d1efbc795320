"""`laas replay`'s engine: a time range of logs.raw into a new index set, alias swapped; and into
the live indices without duplicating anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from app.kafka.client import client_options
from app.pipeline.replay import Replay
from bench.tenants import promote_tenants
from tests.search_fixtures import TIERS
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, es_count, produce_raw, tenant_count

# Both tiers of the index layout: tenant 7 in the shared indices, or promoted (dedicated).
pytestmark = pytest.mark.parametrize("tier", TIERS)


async def _docs(es: AsyncElasticsearch, request: dict) -> dict[str, dict]:
    await es.indices.refresh(index=request["index"], ignore_unavailable=True)
    found = await es.search(**request, size=1000)
    return {h["_id"]: h["_source"] for h in found["hits"]["hits"]}


async def test_replay_into_new_index_matches_the_original(
        stream: StreamEnv, es: AsyncElasticsearch, tier: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    records = []
    for i in range(200):
        tenant = b"7" if i % 4 else b"8"
        records.append((b"k", f"2026-11-27T09:00:{i % 60:02d}Z WARN item n={i}".encode(),
                        [("laas-tenant-id", tenant), ("laas-tenant", b"t" + tenant)]))
    await produce_raw(stream.settings, records)
    if tier == "dedicated":
        assert await promote_tenants(stream.settings, ["7"]) == ["7"]
    stream.worker()

    async def indexed() -> int | None:
        count = await tenant_count(es, stream.settings, "7")
        return count if count >= 150 else None

    await stream.wait(indexed, 90, "150 live documents of tenant 7")
    request = esindex.tenant_search(stream.settings, "7")
    original = await _docs(es, request)
    assert len(original) == 150

    again = Replay(stream.settings, "7", before, es=es)  # into the live indices
    result = await again.run()
    assert (result.records, result.events, result.skipped_other_tenants) == (200, 150, 50)
    assert await tenant_count(es, stream.settings, "7") == 150  # same _ids: overwritten
    live = {h["_index"] for h in (await es.search(**request, size=1000))["hits"]["hits"]}
    family = "logs-7" if tier == "dedicated" else "shared-r7"
    assert live == {f"{stream.settings.index_prefix}{family}-2026.11.27"}

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
    assert await tenant_count(es, stream.settings, "7") == 150  # no copy left in both sets
    assert await tenant_count(es, stream.settings, "8") == 50  # the other tenant untouched
    assert job.checkpoint.with_suffix(".done").exists()


class _Interrupted(Exception):
    pass


async def test_an_interrupted_replay_resumes_from_its_checkpoint(
        stream: StreamEnv, es: AsyncElasticsearch, tier: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    records = [(b"k", f"2026-11-27T10:00:{i % 60:02d}Z INFO line n={i}".encode(),
                [("laas-tenant-id", b"7"), ("laas-tenant", b"t7")]) for i in range(120)]
    await produce_raw(stream.settings, records)
    if tier == "dedicated":
        await promote_tenants(stream.settings, ["7"])
    until = datetime.now(UTC) + timedelta(minutes=1)
    small = stream.settings.model_copy(update={"es_batch_size": 30})

    def stop_after_first_batch(done: int, total: int) -> None:
        raise _Interrupted(f"stopped at {done} of {total}")

    first = Replay(small, "7", before, until, to_index="r1", es=es)
    with pytest.raises(_Interrupted):
        await first.run(stop_after_first_batch)
    saved = json.loads(first.checkpoint.read_text())
    done_first = sum(saved.values()) - sum((await _start_offsets(stream, before)).values())
    assert 0 < done_first < 120

    second = Replay(small, "7", before, until, to_index="r1", es=es)
    assert second.checkpoint == first.checkpoint  # the same job
    progress: list[tuple[int, int]] = []
    result = await second.run(lambda done, total: progress.append((done, total)))
    assert result.records == 120 - done_first  # only what the first run had not done
    assert progress[-1] == (120, 120)
    replayed = f"{stream.settings.index_prefix}replay-r1-7-*"
    assert await es_count(es, replayed) == 120
    assert await tenant_count(es, stream.settings, "7") == 120  # swapped
    assert second.checkpoint.with_suffix(".done").exists()
    assert not second.checkpoint.exists()


async def _start_offsets(stream: StreamEnv, since: datetime) -> dict[str, int]:
    """Offsets of `logs.raw` at `since`, per partition (what a replay starts from)."""
    consumer = AIOKafkaConsumer(**client_options(stream.settings))
    await consumer.start()
    try:
        topic = stream.topic("logs.raw")
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or
               range(stream.settings.partitions)]
        found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)
                                                  for tp in tps})
        ends = await consumer.end_offsets(tps)
        return {str(tp.partition): (found[tp].offset if found.get(tp) else ends[tp])
                for tp in tps}
    finally:
        await consumer.stop()
