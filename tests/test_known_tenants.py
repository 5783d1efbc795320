"""The index stage's view of which tenants exist and where they are indexed
(app/elastic/known_tenants.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from app.elastic.esindex import TenantIndexing
from app.elastic.known_tenants import KnownTenants


def loader(tenants: dict[str, TenantIndexing], loads: list[int]
           ) -> Callable[[], Awaitable[dict[str, TenantIndexing]]]:
    async def load() -> dict[str, TenantIndexing]:
        loads.append(1)
        return dict(tenants)

    return load


async def test_a_missing_id_reloads_at_most_once_per_interval() -> None:
    tenants = {"1": TenantIndexing(7)}
    loads: list[int] = []
    known = KnownTenants(loader(tenants, loads), refresh_after=3600, max_age=3600)
    assert await known.unknown({"1", "2"}) == {"2"} and len(loads) == 1
    old = time.time_ns() - 60 * 10**9  # events observed before the last load began
    tenants["2"] = TenantIndexing(7)  # created since: seen at the next reload, not before
    assert await known.unknown({"2"}, {"2": old}) == {"2"} and len(loads) == 1
    assert await known.unknown({"1"}) == set() and len(loads) == 1  # known ids cost nothing
    known.refresh_after = 0
    assert await known.unknown({"2"}) == set() and len(loads) == 2
    assert known.layout["2"] == TenantIndexing(7)


async def test_a_tenant_created_after_the_last_load_is_loaded_at_once() -> None:
    tenants = {"1": TenantIndexing(7)}
    loads: list[int] = []
    known = KnownTenants(loader(tenants, loads), refresh_after=3600, max_age=3600)
    assert await known.unknown({"1"}) == set() and len(loads) == 1
    tenants["2"] = TenantIndexing(30)
    # its first event was observed now, after the load: not dead-lettered, not delayed
    assert await known.unknown({"2"}, {"2": time.time_ns()}) == set() and len(loads) == 2
    assert known.layout["2"].retention_days == 30


async def test_promotions_and_retention_changes_arrive_within_max_age() -> None:
    tenants = {"1": TenantIndexing(7)}
    loads: list[int] = []
    known = KnownTenants(loader(tenants, loads), refresh_after=3600, max_age=3600)
    await known.unknown({"1"})
    tenants["1"] = TenantIndexing(7, dedicated_from=20_000)
    await known.unknown({"1"})
    assert known.layout["1"].dedicated_from is None and len(loads) == 1
    known.max_age = 0
    await known.unknown({"1"})
    assert known.layout["1"].dedicated_from == 20_000 and len(loads) == 2


async def test_a_database_error_is_raised_not_taken_as_unknown() -> None:
    async def down() -> dict[str, TenantIndexing]:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await KnownTenants(down).unknown({"1"})
