"""The index stage and new tenants, through a real worker: a tenant created after the stage's
last look-up of the user database is indexed at once (into the shared indices, no index of its
own), while an unknown tenant is still a dead letter."""

from __future__ import annotations

import time

from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from app.kafka.topics import DEADLETTER, EVENTS
from app.pipeline.events import DeadLetter, LogEvent, RawPosition
from bench.tenants import ensure_tenants
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, produce_raw, read_topic, tenant_count


def _event(tenant: str, offset: int) -> LogEvent:
    now = time.time_ns()
    return LogEvent(tenant_id=tenant, tenant=f"t{tenant}", time=now, observed_time=now,
                    severity="INFO", severity_number=9, message=f"line of {tenant}",
                    service="api", host="h", raw=RawPosition("direct", 0, offset))


async def test_a_tenant_created_after_the_last_look_up_is_indexed_at_once(
        stream: StreamEnv, es: AsyncElasticsearch) -> None:
    await ensure_tenants(stream.settings, {7: "known"})
    stream.worker()
    # An unknown tenant's event makes the index stage look the tenants up (and dead-letter it).
    stray = _event("8", 1)
    await produce_raw(stream.settings, [(b"8/api/h", stray.to_json(), [])],
                      topic=stream.topic(EVENTS))
    dead = [DeadLetter.from_json(r.value) for r in await read_topic(stream.settings,
                                                                   DEADLETTER, 1, timeout=90)]
    assert [(d.reason, d.tenant_id) for d in dead] == [("unknown_tenant", "8")]
    # Right after (within the 5-s pause between look-ups for unknown ids), a new tenant.
    await ensure_tenants(stream.settings, {9: "new"})
    first = _event("9", 2)
    await produce_raw(stream.settings, [(b"9/api/h", first.to_json(), [])],
                      topic=stream.topic(EVENTS))

    async def indexed() -> int | None:
        return await tenant_count(es, stream.settings, "9") or None

    assert await stream.wait(indexed, 60, "the new tenant's first event indexed") == 1
    dead = [DeadLetter.from_json(r.value) for r in await read_topic(stream.settings,
                                                                   DEADLETTER, 1)]
    assert [(d.reason, d.tenant_id) for d in dead] == [("unknown_tenant", "8")]  # not 9
    found = await es.search(**esindex.tenant_search(stream.settings, "9"))
    assert [h["_index"] for h in found["hits"]["hits"]] == [
        esindex.shared_index(stream.settings, 7, first.time)]  # no index of its own
    names = (await es.indices.get(index=f"{stream.settings.index_prefix}logs-*",
                                  allow_no_indices=True)).body
    assert names == {}  # no per-tenant index for anyone, known or not
