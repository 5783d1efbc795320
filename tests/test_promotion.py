"""Promotion from the shared indices to dedicated ones (app/elastic/promotion.py, `laas tenant
promote`) on the real Elasticsearch and a SQLite user database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from elasticsearch import AsyncElasticsearch

from app.cli.main import main
from app.db.engine import create_engine
from app.elastic import esindex
from app.elastic.known_tenants import day_number, tenant_indexing
from app.elastic.promotion import next_day, promote_oversized
from app.elastic.sink import ElasticsearchSink
from app.settings import Settings, load_settings
from bench.tenants import ensure_tenants
from tests.test_stream_index import event


@pytest.fixture
async def layout(es: AsyncElasticsearch, unique: str, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = load_settings(index_prefix=f"{unique}-", es_retry_initial=0.05,
                             database_url=f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
                             state_dir=tmp_path / "state", es_dedicated_min_docs=3)
    await ensure_tenants(settings, {1: "big", 2: "small"})
    yield settings
    await es.indices.delete(index=f"{unique}-*", ignore_unavailable=True, allow_no_indices=True)
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{unique}-logs")


async def test_a_tenant_above_the_threshold_gets_dedicated_indices_the_next_day(
        es: AsyncElasticsearch, layout: Settings) -> None:
    engine = create_engine(layout)
    try:
        tenants = await tenant_indexing(engine, layout.retention_default_days)
        assert tenants["1"] == esindex.TenantIndexing(7, None)
        sink = ElasticsearchSink(es, layout)
        sink.set_layout(tenants)
        await sink.setup()
        now = time.time_ns()
        await sink.write([event("1", i, time_ns=now + i) for i in range(4)] + [event("2", 9)])
        await es.indices.refresh(index=esindex.shared_pattern(layout))

        assert await promote_oversized(es, engine, layout.model_copy(
            update={"es_dedicated_min_docs": 0})) == []  # 0: automatic promotion off
        assert await promote_oversized(es, engine, layout) == ["1"]  # 4 documents > 3
        assert await promote_oversized(es, engine, layout) == []  # promoted once
        tomorrow = next_day(datetime.now(UTC))
        tenants = await tenant_indexing(engine, layout.retention_default_days)
        assert tenants["1"].dedicated_from == day_number(tomorrow)
        assert tenants["2"].dedicated_from is None

        # today's events stay in the shared index (one index per tenant and day), tomorrow's
        # go to the tenant's own, behind its alias; both are searched
        sink.set_layout(tenants)
        later = int(datetime.combine(tomorrow, datetime.min.time(), UTC).timestamp()) * 10**9
        await sink.write([event("1", 5, time_ns=now + 5), event("1", 6, time_ns=later)])
        await es.indices.refresh(index=f"{layout.index_prefix}*")
        found = await es.search(**esindex.tenant_search(layout, "1", size=10))
        where = {h["_id"]: h["_index"] for h in found["hits"]["hits"]}
        shared = esindex.shared_index(layout, 7, now)
        assert where == {**{f"x.logs.raw/0/{i}": shared for i in (0, 1, 2, 3, 5)},
                         "x.logs.raw/0/6": f"{layout.index_prefix}logs-1-{tomorrow:%Y.%m.%d}"}
        small = await es.search(**esindex.tenant_search(layout, "2", size=10))
        assert [h["_id"] for h in small["hits"]["hits"]] == ["x.logs.raw/0/9"]
    finally:
        await engine.dispose()


def test_laas_tenant_promote(layout: Settings, tmp_path: Path) -> None:
    env = {"LAAS_DATABASE_URL": layout.db_url, "LAAS_STATE_DIR": str(tmp_path / "state"),
           "LAAS_SECRET_KEY": "k"}
    result = CliRunner().invoke(main, ["tenant", "promote", "small-2"], env=env)
    assert result.exit_code == 0, result.output
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    assert f"tenant small-2: dedicated indices from {tomorrow}" in result.output
    again = CliRunner().invoke(main, ["tenant", "promote", "small-2"], env=env)
    assert f"dedicated indices from {tomorrow}" in again.output  # unchanged
    missing = CliRunner().invoke(main, ["tenant", "promote", "nobody"], env=env)
    assert missing.exit_code != 0 and "nobody" in missing.output
    assert isinstance(tomorrow, date)
