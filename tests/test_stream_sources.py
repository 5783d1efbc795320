"""`GET /api/v1/sources` reads the stats snapshot index, scoped to the caller's tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch

from agents.stats import ensure_sources_index
from app.elastic import esindex
from app.pipeline.stats import snapshot_doc
from app.settings import Settings
from tests.auth_fixtures import World, build_world, client_for, make_settings, running_app


@pytest.fixture
async def web_settings(es: AsyncElasticsearch, unique: str,
                       tmp_path: Path) -> AsyncIterator[Settings]:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state",
                             index_prefix=f"{unique}-")
    yield settings
    await es.indices.delete(index=f"{unique}-*", ignore_unavailable=True, allow_no_indices=True)


async def test_sources_are_tenant_scoped(es: AsyncElasticsearch, web_settings: Settings) -> None:
    async with running_app(web_settings) as app:
        world: World = await build_world(app)
        acme, beta = str(world.tenant_ids["acme"]), str(world.tenant_ids["beta"])
        await ensure_sources_index(es, web_settings)
        index = esindex.sources_index(web_settings)
        for tenant, service, count in ((acme, "api", 5), (acme, "db", 2), (beta, "mail", 9)):
            totals = {"tenant_id": tenant, "tenant": "x", "service": service, "host": "h",
                      "count": count, "bytes": count * 10, "severity": {"INFO": count},
                      "first_seen": 10**18, "last_seen": 10**18 + count}
            doc = snapshot_doc(totals, [(1.7e9, {"count": count, "bytes": 1})], 60)
            await es.index(index=index, id=f"{tenant}/{service}/h", document=doc,
                           refresh="wait_for")
        async with client_for(app) as client:
            got = (await client.get("/api/v1/sources", headers=world.headers("viewer"))).json()
            assert [s["service"] for s in got["sources"]] == ["api", "db"]
            assert got["sources"][0]["count"] == 5 and "windows" not in got["sources"][0]
            assert "tenant_id" not in got["sources"][0]
            full = (await client.get("/api/v1/sources?windows=1",
                                     headers=world.headers("viewer"))).json()
            assert full["sources"][0]["windows"][0]["count"] == 5
            other = (await client.get("/api/v1/sources", headers=world.headers("b_admin"))).json()
            assert [s["service"] for s in other["sources"]] == ["mail"]
            assert (await client.get("/api/v1/sources")).status_code == 401
