"""The index stage's view of which tenants exist (app/known_tenants.py)."""

from __future__ import annotations

import pytest

from app.known_tenants import KnownTenants


async def test_a_missing_id_reloads_at_most_once_per_interval() -> None:
    tenants = {"1"}
    loads = []

    async def load() -> set[str]:
        loads.append(1)
        return set(tenants)

    known = KnownTenants(load, refresh_after=3600)
    assert await known.unknown({"1", "2"}) == {"2"} and len(loads) == 1
    tenants.add("2")  # created since: seen at the next reload, not before
    assert await known.unknown({"2"}) == {"2"} and len(loads) == 1
    assert await known.unknown({"1"}) == set() and len(loads) == 1  # known ids cost nothing
    known.refresh_after = 0
    assert await known.unknown({"2"}) == set() and len(loads) == 2


async def test_a_database_error_is_raised_not_taken_as_unknown() -> None:
    async def down() -> set[str]:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await KnownTenants(down).unknown({"1"})
