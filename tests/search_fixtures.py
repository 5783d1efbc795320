"""Fixtures for search and tail tests: two tenants (auth World) and their events in Elasticsearch.

Events are written with the same layout functions the index stage uses (`app.elastic.esindex`),
under a fresh index prefix per test, on either tier of the layout (`tier`: the tenants in the shared
indices or in dedicated ones).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk
from starlette.applications import Starlette

from app.elastic import esindex
from app.elastic.sink import ElasticsearchSink
from app.pipeline.events import NS, Attributes, LogEvent, RawPosition
from app.pipeline.parsing import severity_from_text, severity_name
from app.settings import Settings
from tests.auth_fixtures import World, build_world, client_for, make_settings, running_app

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")


def event(
    world: World,
    tenant: str,
    offset: int,
    *,
    message: str,
    level: str = "INFO",
    service: str = "api",
    host: str = "h1",
    at: int | None = None,
    partition: int = 0,
    attributes: Attributes | None = None,
    template_id: str = "",
) -> LogEvent:
    now = time.time_ns()
    number = severity_from_text(level)
    return LogEvent(
        tenant_id=str(world.tenant_ids[tenant]),
        tenant=tenant,
        time=at if at is not None else now - (1000 - offset) * NS // 10,
        observed_time=now,
        severity=severity_name(number),
        severity_number=number,
        message=message,
        service=service,
        host=host,
        raw=RawPosition("logs.raw", partition, offset),
        attributes=dict(attributes or {}),
        template_id=template_id,
        format="json",
        source="http",
    )


TIERS = ("shared", "dedicated")


def tier_indexing(tier: str, retention_days: int = 7) -> esindex.TenantIndexing:
    """A tenant's indexing on `tier`: shared, or dedicated since the epoch."""
    return esindex.TenantIndexing(retention_days, 0 if tier == "dedicated" else None)


@pytest.fixture
def tier() -> str:
    """The index tier of a test's tenants: `shared`; a module runs its tests on both with
    `pytestmark = pytest.mark.parametrize("tier", TIERS)`."""
    return "shared"


async def index_events(
    es: AsyncElasticsearch, settings: Settings, events: Iterable[LogEvent], tier: str = "shared"
) -> None:
    """Index `events` where the index stage would put them for tenants on `tier`."""
    await esindex.ensure_template(es, settings)
    actions = []
    for ev in events:
        where = esindex.placement(settings, ev.tenant_id, ev.time, tier_indexing(tier), ())
        await esindex.ensure_placement(es, settings, where)
        action = {"_index": where.index, "_id": ev.doc_id(), "_source": esindex.document(ev)}
        if where.routing is not None:
            action["_routing"] = where.routing
        actions.append(action)
    await async_bulk(es, actions, refresh="wait_for")


@dataclass
class SearchWorld:
    world: World
    app: Starlette
    client: httpx.AsyncClient
    settings: Settings
    es: AsyncElasticsearch
    tier: str = "shared"

    def headers(self, who: str) -> dict[str, str]:
        return self.world.headers(who)

    async def index(self, events: Iterable[LogEvent]) -> None:
        """Index `events` on this world's tier."""
        await index_events(self.es, self.settings, events, self.tier)


@pytest.fixture
async def search_world(
    tmp_path: Path, unique: str, es: AsyncElasticsearch, es_url: str, tier: str
) -> AsyncIterator[SearchWorld]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        tmp_path / "state",
        index_prefix=f"{unique}-",
    )
    async with running_app(settings) as app:
        world = await build_world(app)
        async with client_for(app) as client:
            yield SearchWorld(world, app, client, settings, es, tier)
    await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


def second_item_busy_once(sink: ElasticsearchSink) -> list[bytes]:
    """Make `sink`'s first bulk answer 429 for its second item (as if Elasticsearch had been
    too busy for it; the other items are really written); returns the bulk bodies sent."""
    bodies: list[bytes] = []
    bulk = sink._bulk

    async def busy_once(body: bytes) -> dict[str, Any]:
        bodies.append(body)
        response = await bulk(body)
        if len(bodies) == 1:
            response["errors"] = True
            response["items"][1] = {"index": {"status": 429, "error": {"type": "es_rejected"}}}
        return response

    sink._bulk = busy_once  # type: ignore[method-assign]
    return bodies
