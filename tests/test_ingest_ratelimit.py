"""Tenant rate limits across processes: each of N ingest processes allows 1/N of the tenant's
rate (`ingest_rate_limit_processes`), so together they hold the quota."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from starlette.applications import Starlette

from app.ingest.errors import RateLimited
from app.ingest.ratelimit import RateLimiter
from app.ingest.service import IngestService
from app.settings import Settings
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable
from web.ingest import routes


def _granted(limiters: list[RateLimiter], clock: list[float], seconds: float, batch: int) -> int:
    """Requests of `batch` records sent round-robin every 10 ms for `seconds`; records let in."""
    granted, step = 0, 0
    while clock[0] < seconds:
        try:
            limiters[step % len(limiters)].check("t", batch, 100.0)
            granted += batch
        except RateLimited as exc:
            assert exc.rate == 100.0  # the error names the tenant's rate, not the share
        clock[0] += 0.01
        step += 1
    return granted


@pytest.mark.parametrize("processes", [1, 2, 3, 5])
def test_n_processes_together_hold_the_rate(processes: int) -> None:
    clock = [0.0]
    limiters = [RateLimiter(0, clock=lambda: clock[0], processes=processes)
                for _ in range(processes)]
    granted = _granted(limiters, clock, 10.0, 5)
    # 10 s at 100 records/s, plus one second of burst at the start
    assert 100 * 10 <= granted <= 100 * 11 + 5 * processes


def test_unsplit_limiters_give_n_times_the_quota() -> None:
    """What the setting fixes: three processes that each allow the full rate."""
    clock = [0.0]
    limiters = [RateLimiter(0, clock=lambda: clock[0]) for _ in range(3)]
    assert _granted(limiters, clock, 10.0, 5) >= 3 * 100 * 10


def test_the_share_comes_from_the_settings(raw_settings: Settings) -> None:
    limiter = RateLimiter.from_settings(raw_settings.model_copy(update={
        "ingest_rate_limit_processes": 4, "ingest_default_rate_limit": 40.0}))
    limiter.check("t", 10, None)  # one second of the share: 10 records
    with pytest.raises(RateLimited) as caught:
        limiter.check("t", 1, None)
    assert caught.value.retry_after == pytest.approx(0.1, rel=0.05)  # 1 record at 10/s


@pytest.fixture
async def two_webs(raw_settings: Settings,
                   keys: KeyTable) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two HTTP ingest apps, each with its own service and limiter (as two processes), told
    that two processes take ingest."""
    settings = raw_settings.model_copy(update={"ingest_rate_limit_processes": 2})
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = Starlette(routes=routes)
            app.state.ingest = IngestService(settings, keys)
            stack.push_async_callback(app.state.ingest.close)
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://laas")))
        yield clients


async def test_two_web_apps_share_the_tenant_rate(two_webs: list[httpx.AsyncClient]) -> None:
    """`slow-key`'s tenant may send 5 records/s; two apps each let 2.5/s through, so hammering
    both for 3 s gets at most 5 * 3 + one second's burst accepted, into the real Kafka."""
    headers = {"content-type": "application/x-ndjson", "x-api-key": "slow-key"}
    accepted, refused = 0, 0
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < 3.0:
        response = await two_webs[step % 2].post("/api/v1/logs", content=b'{"message": "x"}\n',
                                                 headers=headers)
        step += 1
        if response.status_code == 200:
            accepted += response.json()["accepted"]
        else:
            assert response.status_code == 429, response.text
            assert "5 records/s" in response.text
            refused += 1
    elapsed = time.monotonic() - start
    assert refused > 0
    assert 4 <= accepted <= 5 * elapsed + 5 + 2
