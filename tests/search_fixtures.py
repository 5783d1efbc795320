"""Fixtures for search and tail tests: two tenants (auth World) and their events in Elasticsearch.

Events are written with the same layout functions the index stage uses (`app.esindex`), under a
fresh index prefix per test.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk
from starlette.applications import Starlette

from app import esindex
from app.events import NS, LogEvent, RawPosition
from app.parsing import severity_from_text, severity_name
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
    attributes: dict[str, str] | None = None,
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


async def index_events(
    es: AsyncElasticsearch, settings: Settings, events: Iterable[LogEvent]
) -> None:
    await esindex.ensure_template(es, settings)
    actions = []
    for ev in events:
        name = esindex.daily_index(settings, ev.tenant_id, ev.time)
        await esindex.ensure_index(es, name, esindex.tenant_alias(settings, ev.tenant_id))
        actions.append({"_index": name, "_id": ev.doc_id(), "_source": esindex.document(ev)})
    await async_bulk(es, actions, refresh="wait_for")


@dataclass
class SearchWorld:
    world: World
    app: Starlette
    client: httpx.AsyncClient
    settings: Settings
    es: AsyncElasticsearch

    def headers(self, who: str) -> dict[str, str]:
        return self.world.headers(who)


@pytest.fixture
async def search_world(
    tmp_path: Path, unique: str, es: AsyncElasticsearch, es_url: str
) -> AsyncIterator[SearchWorld]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        tmp_path / "state",
        index_prefix=f"{unique}-",
    )
    async with running_app(settings) as app:
        world = await build_world(app)
        async with client_for(app) as client:
            yield SearchWorld(world, app, client, settings, es)
    await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)
