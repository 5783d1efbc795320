"""Stage `stats`: per-source counts in changelog-backed Faust tables, snapshotted to ES.

Tables (tables/sources.py; RocksDB store, changelog topics `{app_id}-source-totals-changelog`
and `{app_id}-source-windows-changelog`): running totals per source, and tumbling windows of
`stats_window_seconds` kept `stats_window_retention` seconds (windows follow arrival time in
`logs.events`). The web process does not talk to the worker: a timer writes each changed
source's totals and recent windows to the `{index_prefix}sources` index, which
`GET /api/v1/sources` reads with a tenant filter (docs/stream.md, "Statistics").
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from elasticsearch import AsyncElasticsearch

from agents.resources import Resources
from app.elastic import esindex
from app.kafka.stamp import Stamps
from app.kafka.topics import Topics
from app.pipeline.event_messages import by_source, decode_shared
from app.pipeline.events import LogEvent
from app.pipeline.stats import SOURCES_MAPPINGS, fold_all, snapshot_doc
from app.runtime.metrics import METRICS
from app.runtime.turns import Turns
from app.settings import Settings
from tables.sources import source_totals, source_windows

log = logging.getLogger(__name__)

SNAPSHOT_WINDOWS = 60  # windows per source in a snapshot document (the most recent ones)
FULL_SNAPSHOT_EVERY = 12  # timer runs between snapshots of every local source
SNAPSHOT_SLICE = 0.02  # seconds of snapshot work between yields to the event loop
SNAPSHOT_BULK = 500  # source documents per bulk request


async def ensure_sources_index(es: AsyncElasticsearch, settings: Settings) -> None:
    await esindex.ensure_index(es, esindex.sources_index(settings), mappings=SOURCES_MAPPINGS,
                               settings=esindex.small_index(settings))


class SourceStats:
    """The two tables, the agent folding events into them and the snapshot writer."""

    def __init__(self, app: faust.App, topics: Topics, settings: Settings,
                 es: AsyncElasticsearch) -> None:
        self.settings = settings
        self.topics = topics
        self.totals = source_totals(app, settings)
        self.windows = source_windows(app, settings)
        self.dirty: set[str] = set()
        # sources new to the table since this process started -> the start of the oldest
        # window they can have (a snapshot reads no window before it: 1-2 reads, not 60)
        self.young: dict[str, float] = {}
        self._runs = 0
        self.es = es
        self._index_ready = False  # the sources index exists

    def apply(self, events: list[LogEvent], arrived: float) -> int:
        """Fold the events of one `logs.events` message into both tables (inside the agent: the
        current message decides the changelog partition and, by its timestamp `arrived` (s),
        the window), one table write per source and table. Returns how many events were
        counted (not counted by the totals before)."""
        counted = 0
        size = self.settings.stats_window_seconds
        for key, group in by_source(events).items():
            before = self.totals[key]
            if not before and key not in self.young:
                self.young[key] = arrived - arrived % size
            totals, new = fold_all(before, group)
            window, _ = fold_all(self.windows[key].current(), group)
            counted += new
            if totals is not None:
                self.totals[key] = totals
            if window is not None:
                self.windows[key] = window
            if totals is not None or window is not None:
                self.dirty.add(key)
        return counted

    def recent_windows(self, key: str, now: float) -> list[tuple[float, dict[str, Any]]]:
        """The source's windows of the last `SNAPSHOT_WINDOWS` (newest first), none read from
        before a young source's first one."""
        size = self.settings.stats_window_seconds
        table: Any = self.windows.table
        start = now - now % size
        count = min(SNAPSHOT_WINDOWS, self.settings.stats_window_retention // size)
        oldest = self.young.get(key)
        if oldest is not None and oldest <= start - count * size:
            del self.young[key]  # as old as the snapshot reaches: no longer young
            oldest = None
        found = []
        for i in range(count):
            at = start - i * size
            if oldest is not None and at < oldest:
                break
            value = table._windowed_timestamp(key, at)  # read outside an event: no writes
            if value:
                found.append((at, value))
        return found

    async def documents(self, keys: set[str] | None) -> list[tuple[str, dict[str, Any]]]:
        """The snapshot documents of `keys` (None: every local source). Each reads up to
        `SNAPSHOT_WINDOWS` windows from the table: for 10,000 new sources that held the
        analytics event loop for 3-4 s in one piece, so the work yields to the loop every
        `SNAPSHOT_SLICE` seconds (the agents and the lag probe go on meanwhile)."""
        now = time.time()
        docs = []
        turns = Turns(SNAPSHOT_SLICE)
        for key in list(self.totals.keys()) if keys is None else keys:
            await turns.maybe()
            totals = self.totals.get(key)
            if not totals:
                continue
            doc = snapshot_doc(totals, self.recent_windows(key, now),
                               self.settings.stats_window_seconds)
            doc["updated"] = int(now * 1000)
            docs.append((key, doc))
        return docs

    async def snapshot(self) -> int:
        """Write changed sources (every source every few runs) to the sources index."""
        self._runs += 1
        full = self._runs % FULL_SNAPSHOT_EVERY == 1
        if full:  # sources that stopped or moved to another worker stay young no longer
            size = self.settings.stats_window_seconds
            horizon = time.time() - SNAPSHOT_WINDOWS * size
            self.young = {key: at for key, at in self.young.items() if at > horizon}
        keys, self.dirty = (None if full else self.dirty), set()
        docs = await self.documents(keys)
        if not docs:
            return 0
        if not self._index_ready:
            await ensure_sources_index(self.es, self.settings)
            self._index_ready = True
        index = esindex.sources_index(self.settings)
        written = 0
        for start in range(0, len(docs), SNAPSHOT_BULK):  # one bulk held the loop ~0.1 s
            chunk = docs[start:start + SNAPSHOT_BULK]
            operations: list[dict[str, Any]] = []
            for key, doc in chunk:
                operations += [{"index": {"_index": index, "_id": key}}, doc]
            try:
                response = await self.es.bulk(operations=operations)
            except Exception as exc:  # noqa: BLE001 - retried by the next run
                log.warning("stats snapshot failed (%r); next run retries", exc)
                self.dirty.update(key for key, _ in docs[start:])
                return written
            if response.get("errors"):
                self.dirty.update(key for key, _ in chunk)
            else:
                written += len(chunk)
        return written


def register(app: faust.App, topics: Topics, resources: Resources) -> SourceStats:
    settings = resources.settings
    stats = SourceStats(app, topics, settings, resources.es)
    stamps = Stamps.from_settings(settings)

    @app.agent(topics.events, name="stats", concurrency=1)
    async def stats_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                events = decode_shared(event.message, stamps)
            except (ValueError, TypeError, KeyError):
                continue  # the index stage dead-letters undecodable messages
            METRICS.inc("laas_events_in_total", len(events), stage="stats")
            stats.apply(events, event.message.timestamp)

    @app.timer(settings.stats_snapshot_interval)
    async def stats_snapshot() -> None:
        await stats.snapshot()

    return stats
