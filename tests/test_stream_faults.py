"""Worker faults on the real stack: two workers then one (rebalance), SIGKILL and restart.

Every produced record must end up indexed exactly once (count == produced; `_id`s are unique by
construction) and the per-source statistics, recovered from the changelogs, must count each
record exactly once.
"""

from __future__ import annotations

import asyncio

from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, alive, produce_raw, tenant_count

TOTAL = 3000
SERVICES = ("api", "db", "auth", "web", "mail", "queue")


async def produce_steadily(env: StreamEnv, total: int, chunk: int = 100, first: int = 0) -> None:
    """Records `first`..`total - 1` of tenant 7, `chunk` at a time."""
    headers = [("laas-tenant-id", b"7"), ("laas-tenant", b"acme")]
    for start in range(first, total, chunk):
        records = []
        for i in range(start, min(start + chunk, total)):
            service = SERVICES[i % len(SERVICES)]
            line = f"2026-11-27T10:00:00Z {'ERROR' if i % 10 == 0 else 'INFO'} request n={i}"
            records.append((f"7/{service}".encode(), line.encode(),
                            headers + [("laas-service", service.encode())]))
        await produce_raw(env.settings, records)
        await asyncio.sleep(0.1)


async def sources_total(es: AsyncElasticsearch, env: StreamEnv) -> dict[str, int]:
    index = esindex.sources_index(env.settings)
    try:
        await es.indices.refresh(index=index)
        found = await es.search(index=index, query={"term": {"tenant_id": "7"}}, size=100)
    except Exception:  # noqa: BLE001 - not there yet
        return {}
    return {h["_source"]["service"]: h["_source"]["count"] for h in found["hits"]["hits"]}


async def test_rebalance_kill_and_restart_lose_and_duplicate_nothing(
        stream: StreamEnv, es: AsyncElasticsearch) -> None:
    stream.extra["LAAS_WORKER_SESSION_TIMEOUT"] = "8"
    first = stream.worker("w1")
    second = stream.worker("w2")
    producing = asyncio.create_task(produce_steadily(stream, TOTAL))
    try:
        async def indexed(n: int) -> int | None:
            count = await tenant_count(es, stream.settings, "7")
            return count if count >= n else None

        await stream.wait(lambda: indexed(400), 120, "400 documents with two workers")
        second.kill()  # w1 takes over w2's partitions (tables from the changelogs)
        await stream.wait(lambda: indexed(1200), 120, "1200 documents after the rebalance")
        async def children() -> list[int]:
            """w1's children once all are there: the index sink, the analytics app and
            multiprocessing's resource tracker (w1 may still be starting them)."""
            found = first.children()
            return found if len(found) >= 3 else []

        async def children_stopped() -> bool:
            return not alive(sinks)

        sinks = await stream.wait(children, 60, "w1's child processes")
        first.kill()  # mid-stream, uncommitted work in flight
        # its children notice (the metrics pipe breaks) and stop: no orphan left consuming
        await stream.wait(children_stopped, 30, "the killed worker's child processes to stop")
        stream.worker("w1-again", state="w1")  # same RocksDB directory as before the kill
        await producing
        await stream.wait(lambda: indexed(TOTAL), 180, f"{TOTAL} documents")
        await asyncio.sleep(3)  # anything extra (a duplicate) would show up by now
        assert await tenant_count(es, stream.settings, "7") == TOTAL

        expected = {s: TOTAL // len(SERVICES) for s in SERVICES}

        seen: list[dict[str, int]] = [{}]

        async def stats_complete() -> dict[str, int] | None:
            seen[0] = await sources_total(es, stream)
            return seen[0] if seen[0] == expected else None

        try:
            await stream.wait(stats_complete, 90, f"source totals {expected}")
        except BaseException:
            print("source totals seen:", seen[0])
            raise
        errors = await es.count(**{k: v for k, v in esindex.tenant_search(
            stream.settings, "7", {"term": {"severity": "ERROR"}}).items()
            if k in ("index", "query", "ignore_unavailable")})
        assert errors["count"] == TOTAL // 10
    finally:
        producing.cancel()
