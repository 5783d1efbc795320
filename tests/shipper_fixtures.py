"""An end-to-end site for the shipper tests: the whole web app served over real HTTP, a worker
(normalize + index) on a private pipeline, two tenants with ingest keys, and search by API.

Import with `from tests.shipper_fixtures import *`; the `site` fixture needs the real Kafka,
Elasticsearch and a worker subprocess (about 15-30 s to start).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import AsyncElasticsearch

from tests.auth_fixtures import World, build_world, client_for, make_settings, running_app
from tests.serving import served
from tests.stream_fixtures import StreamEnv, stream

__all__ = ["Site", "site", "stream"]


@dataclass
class Site:
    """The served app (`url`), its two tenants (`world`: acme and beta) and the pipeline."""

    url: str
    world: World
    stream: StreamEnv
    client: httpx.AsyncClient  # in-process client of the same app, for searching

    @property
    def acme_key(self) -> str:
        return self.world.creds["key_ingest"]

    @property
    def beta_key(self) -> str:
        return self.world.creds["b_key_ingest"]

    async def search(self, q: str, who: str = "viewer", limit: int = 100,
                     busy_ok: bool = False) -> list[dict[str, Any]] | None:
        """The hits of `q` over the last hour as `who` sees them (viewer: acme, b_admin: beta);
        with `busy_ok`, None when Elasticsearch answers 503 (a day index whose shards are still
        being allocated right after the index stage created it)."""
        r = await self.client.get("/api/v1/search", params={"q": q, "since": "1h",
                                                              "limit": limit},
                                  headers=self.world.headers(who))
        if busy_ok and r.status_code == 503:
            return None
        assert r.status_code == 200, r.text
        hits: list[dict[str, Any]] = r.json()["hits"]
        return hits

    async def wait_hits(self, q: str, count: int, who: str = "viewer",
                        timeout: float = 90) -> list[dict[str, Any]]:
        """Search until `q` finds `count` hits (fails naming the query after `timeout` s)."""

        async def enough() -> list[dict[str, Any]] | None:
            hits = await self.search(q, who, busy_ok=True)
            return hits if hits is not None and len(hits) >= count else None

        found: list[dict[str, Any]] = await self.stream.wait(enough, timeout,
                                                             f"{count} hits for {q!r}")
        return found


@pytest.fixture
async def site(stream: StreamEnv, es: AsyncElasticsearch, tmp_path: Path) -> AsyncIterator[Site]:
    db = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    settings = make_settings(db, tmp_path / "web", index_prefix=f"{stream.unique}-",
                             topic_prefix=f"{stream.unique}.", ingest_key_cache_seconds=0,
                             ingest_produce_timeout=10.0)
    async with running_app(settings) as app:
        world = await build_world(app)
        stream.worker("w1", LAAS_DATABASE_URL=db)
        async with served(app) as port, client_for(app) as client:
            yield Site(f"http://127.0.0.1:{port}", world, stream, client)
