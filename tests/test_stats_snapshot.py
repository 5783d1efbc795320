"""The stats snapshot (agents/stats.py `SourceStats.documents`) shares the analytics event loop:
with 10,000 new sources it read ~600,000 windows in one piece and held the loop for 3-4 s
(bench/results/tiers.md, the worker's `laas_event_loop_lag_max_seconds`). Unit test: the table
is a dict and a source's window reads a 1 ms sleep, no Faust app (the end-to-end snapshot runs
in tests/test_newcomer.py)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from agents.stats import SNAPSHOT_SLICE, SNAPSHOT_WINDOWS, SourceStats
from app.pipeline.events import LogEvent, RawPosition
from app.settings import load_settings


def totals(i: int) -> dict[str, Any]:
    return {"tenant_id": "1", "tenant": "t", "service": f"s{i}", "host": "h", "count": 1,
            "bytes": 10, "severity": {"INFO": 1}, "first_seen": 10**18, "last_seen": 10**18}


async def test_a_snapshot_of_many_sources_lets_the_loop_run_meanwhile() -> None:
    stats = SourceStats.__new__(SourceStats)  # no Faust app: the tables as dicts
    stats.settings = load_settings()
    stats.totals = {f"1/s{i}/h": totals(i) for i in range(200)}  # type: ignore[assignment]

    def slow_windows(key: str, now: float) -> list[tuple[float, dict[str, Any]]]:
        time.sleep(0.001)  # a source's window reads from RocksDB
        return [(now - now % 60, {"count": 1, "bytes": 10})]

    stats.recent_windows = slow_windows  # type: ignore[method-assign]
    turns = 0

    async def other_task() -> None:  # an agent, the heartbeat, the lag probe
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    before = turns
    started = time.monotonic()
    docs = await stats.documents(None)
    took = time.monotonic() - started
    task.cancel()
    assert len(docs) == 200 and docs[0][1]["windows"][0]["count"] == 1
    assert took >= 0.2  # 200 sources x 1 ms of reads
    # the other task ran about once per slice of SNAPSHOT_SLICE (not once, after it all)
    assert turns - before >= 0.5 * took / SNAPSHOT_SLICE
    only = await stats.documents({"1/s3/h", "1/missing/h"})  # the changed sources only
    assert [key for key, _ in only] == ["1/s3/h"]


class Windows:
    """The windowed table's surface SourceStats uses; records which windows were read."""

    def __init__(self) -> None:
        self.read: list[float] = []
        self.table = self

    def __getitem__(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(current=dict)

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        pass

    def _windowed_timestamp(self, key: str, at: float) -> dict[str, Any]:
        self.read.append(at)
        return {}


def event(service: str, offset: int) -> LogEvent:
    return LogEvent(tenant_id="1", tenant="t", time=10**18, observed_time=10**18,
                    severity="INFO", severity_number=9, message="m", service=service,
                    host="h", raw=RawPosition("x.logs.raw", 0, offset))


def test_a_new_sources_snapshot_reads_only_the_windows_since_it_arrived() -> None:
    stats = SourceStats.__new__(SourceStats)
    stats.settings = load_settings()
    size = stats.settings.stats_window_seconds
    stats.totals = defaultdict(dict, {"1/old/h": totals(0)})  # type: ignore[assignment]
    stats.windows = windows = Windows()  # type: ignore[assignment]
    stats.dirty, stats.young = set(), {}
    arrived = 1_800_000_000.0 + 30  # a message's timestamp (s), mid-window
    stats.apply([event("new", 1), event("old", 2)], arrived)
    first = arrived - arrived % size
    assert stats.young == {"1/new/h": first}  # "old" was in the table before
    stats.apply([event("new", 3)], arrived + 5 * size)
    assert stats.young == {"1/new/h": first}  # still from its first window

    stats.recent_windows("1/new/h", first + 2 * size + 1)
    assert windows.read == [first + 2 * size, first + size, first]  # not 60 reads
    windows.read.clear()
    stats.recent_windows("1/old/h", first + 2 * size + 1)
    assert len(windows.read) == SNAPSHOT_WINDOWS
    windows.read.clear()
    stats.recent_windows("1/new/h", first + SNAPSHOT_WINDOWS * size)  # an hour later
    assert len(windows.read) == SNAPSHOT_WINDOWS and stats.young == {}  # young no more
