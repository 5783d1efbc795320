"""The ingest key verifier on a real user database (SQLite): bounded LRU, batched single-flight
look-ups, revocation within the TTL, `last_used_at` written in batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.accounts.security import new_api_key
from app.accounts.tenancy import create_api_key, create_tenant, revoke_api_key
from app.db.engine import SessionFactory, create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.db.models import ApiKey
from app.ingest.auth import DatabaseVerifier
from app.ingest.errors import DatabaseUnavailable
from tests.clock import Clock


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await upgrade_database_async(engine)
    yield session_factory(engine)
    await engine.dispose()


async def make_keys(sessions: SessionFactory, count: int, scope: str = "ingest"
                    ) -> list[tuple[int, int, str]]:
    """`count` tenants with one key each: (tenant id, key id, plain key)."""
    out = []
    async with sessions.begin() as s:
        for i in range(count):
            tenant = await create_tenant(s, f"t{i}", ingest_rate_limit=100.0 + i)
            key, plain = await create_api_key(s, tenant.id, "ship", scope)
            out.append((tenant.id, key.id, plain))
    return out


async def last_used(sessions: SessionFactory, key_id: int) -> datetime | None:
    async with sessions() as s:
        return await s.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))


async def test_answers_carry_tenant_scope_and_rate(sessions: SessionFactory) -> None:
    (tid, _, plain), = await make_keys(sessions, 1)
    verify = DatabaseVerifier(sessions, ttl=60)
    principal = await verify(plain)
    assert principal is not None
    assert (principal.tenant_id, principal.tenant_slug, principal.scope, principal.rate_limit) \
        == (str(tid), "t0", "ingest", 100.0)
    assert await verify(new_api_key().plain) is None  # well formed, unknown
    assert await verify(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None  # wrong secret
    lookups = verify.lookups
    assert await verify("laas_nonsense") is None and verify.lookups == lookups  # no query
    await verify.aclose()


async def test_the_cache_is_a_bounded_lru(sessions: SessionFactory) -> None:
    keys = await make_keys(sessions, 5)
    verify = DatabaseVerifier(sessions, ttl=60, max_keys=3, max_refused=2)
    for _, _, plain in keys:
        assert await verify(plain) is not None
    assert len(verify) == 3 and verify.lookups == 5
    assert await verify(keys[4][2]) is not None  # recent: still cached
    assert verify.lookups == 5
    assert await verify(keys[0][2]) is not None  # the oldest was dropped, not everything
    assert verify.lookups == 6
    # Unknown keys sprayed at it do not push the accepted ones out.
    for _ in range(10):
        assert await verify(new_api_key().plain) is None
    assert len(verify) == 3 + 2
    before = verify.lookups
    for _, _, plain in (keys[0], keys[3], keys[4]):
        assert await verify(plain) is not None
    assert verify.lookups == before
    await verify.aclose()


async def test_concurrent_misses_share_one_lookup(sessions: SessionFactory) -> None:
    keys = await make_keys(sessions, 20)
    verify = DatabaseVerifier(sessions, ttl=60)
    same = [verify(keys[0][2]) for _ in range(50)]
    others = [verify(plain) for _, _, plain in keys[1:]]
    unknown = [verify(new_api_key().plain) for _ in range(5)]
    got = await asyncio.gather(*same, *others, *unknown)
    assert verify.lookups == 1  # 75 calls of 25 keys: one query
    assert [p.tenant_id if p else None for p in got[:50]] == [str(keys[0][0])] * 50
    assert [p.tenant_id if p else None for p in got[50:69]] == [str(t) for t, _, _ in keys[1:]]
    assert got[69:] == [None] * 5
    small = DatabaseVerifier(sessions, ttl=60, batch=8)
    await asyncio.gather(*(small(plain) for _, _, plain in keys))
    assert small.lookups == 3  # 20 keys in look-ups of at most 8
    await verify.aclose()
    await small.aclose()


async def test_misses_that_keep_coming_share_look_ups(sessions: SessionFactory) -> None:
    keys = await make_keys(sessions, 30)
    verify = DatabaseVerifier(sessions, ttl=60, linger=0.05)
    assert await verify(keys[0][2]) is not None
    assert verify.lookups == 1

    async def later(i: int, plain: str) -> object:
        await asyncio.sleep(0.002 * i)
        return await verify(plain)

    got = await asyncio.gather(*(later(i, plain) for i, (_, _, plain) in enumerate(keys[1:])))
    assert all(p is not None for p in got)
    assert verify.lookups <= 3  # 29 misses 2 ms apart, each look-up waiting 50 ms for more
    await verify.aclose()


async def test_a_cancelled_caller_does_not_fail_the_others(sessions: SessionFactory) -> None:
    (tid, _, plain), = await make_keys(sessions, 1)
    verify = DatabaseVerifier(sessions, ttl=60)
    first = asyncio.create_task(verify(plain))
    second = asyncio.create_task(verify(plain))
    await asyncio.sleep(0)
    first.cancel()
    principal = await second
    assert principal is not None and principal.tenant_id == str(tid)
    await verify.aclose()


async def test_revocation_takes_effect_within_the_ttl(sessions: SessionFactory) -> None:
    (tid, kid, plain), = await make_keys(sessions, 1)
    clock = Clock()
    verify = DatabaseVerifier(sessions, ttl=0.5, clock=clock)
    uncached = DatabaseVerifier(sessions, ttl=0)
    assert await verify(plain) is not None and await uncached(plain) is not None
    async with sessions.begin() as s:
        await revoke_api_key(s, tid, kid)
    assert await uncached(plain) is None  # ttl 0: at once
    # Within the TTL the cached answer may still be given; after it, never.
    clock.sleep(0.6)
    assert await verify(plain) is None
    assert await verify(plain) is None  # the refusal is cached as well
    await verify.aclose()
    await uncached.aclose()


async def test_last_used_is_written_in_batches(sessions: SessionFactory) -> None:
    keys = await make_keys(sessions, 3)
    verify = DatabaseVerifier(sessions, ttl=60, flush_seconds=3600)
    for _, _, plain in keys[:2]:
        assert await verify(plain) is not None
    assert [await last_used(sessions, kid) for _, kid, _ in keys] == [None] * 3  # in memory
    assert await verify.flush() == 2
    stored = [await last_used(sessions, kid) for _, kid, _ in keys]
    assert stored[0] is not None and stored[1] is not None and stored[2] is None
    for _ in range(5):  # again within a minute: nothing more to write
        await verify(keys[0][2])
    assert await verify.flush() == 0
    # A minute later (the stored time made older) a use is written again, once.
    entry = verify._accepted[keys[0][2]]
    assert entry.stored_use is not None
    entry.stored_use -= timedelta(seconds=61)
    await verify(keys[0][2])
    await verify(keys[0][2])
    assert await verify.flush() == 1
    again, before = await last_used(sessions, keys[0][1]), stored[0]
    assert again is not None and before is not None and again > before
    await verify.aclose()


async def test_last_used_is_flushed_in_the_background_and_at_close(
        sessions: SessionFactory) -> None:
    keys = await make_keys(sessions, 2)
    verify = DatabaseVerifier(sessions, ttl=60, flush_seconds=0.1)
    await verify(keys[0][2])
    for _ in range(50):
        if await last_used(sessions, keys[0][1]) is not None:
            break
        await asyncio.sleep(0.1)
    assert await last_used(sessions, keys[0][1]) is not None
    closing = DatabaseVerifier(sessions, ttl=60, flush_seconds=3600)
    await closing(keys[1][2])
    await closing.aclose()
    assert await last_used(sessions, keys[1][1]) is not None
    await verify.aclose()


async def test_database_down_is_an_error_for_every_waiter_and_not_cached(
        tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'keys.db'}")
    verify = DatabaseVerifier(session_factory(engine), ttl=60)
    plain = new_api_key().plain
    got = await asyncio.gather(verify(plain), verify(plain), return_exceptions=True)
    assert all(isinstance(x, DatabaseUnavailable) for x in got), got
    assert len(verify) == 0
    with pytest.raises(DatabaseUnavailable):
        await verify(plain)
    assert verify.lookups == 2
    await engine.dispose()
