"""The Elasticsearch bulk sink: idempotent writes, retries with backoff, permanent rejections out.

Lifecycle (quix-streams style): `setup()` installs the template, `write(events)` returns only
when every event is either accepted by Elasticsearch or permanently rejected (the rejections are
returned; the caller dead-letters them). 429, 5xx and connection failures are retried — for the
whole request or per item — with exponential backoff and no limit: the caller, which does not
consume while `write` runs, is the backpressure (vector's `sinks/elasticsearch/retry.rs` rules).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    ConnectionError,
    ConnectionTimeout,
    TransportError,
)

from app.elastic import esindex
from app.pipeline.events import LogEvent
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Only what `write` reads of a bulk response: a tenth of its bytes to parse.
BULK_FILTER = "errors,items.*.status,items.*.error"


@dataclass(frozen=True)
class Rejection:
    """An event Elasticsearch refused for good: status and its error type and reason."""

    event: LogEvent
    status: int
    error_type: str
    reason: str


class Retry(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


Idle = Callable[[], Awaitable[None]]
_Item = tuple[LogEvent, esindex.Placement]  # an event and where it goes


class ElasticsearchSink:
    """Bulk-index `LogEvent`s, `_id` = `event.doc_id()`, where `esindex.placement` puts them:
    the shared index of the tenant's retention class (routed by tenant) or, for a promoted
    tenant, its dedicated daily index.

    `base` picks the index set: the live one (default) or a replay set
    (`{base}-{tenant}-{day}`, no alias: a replay into a new set adds them at the swap).
    `layout` is the tenants' indexing (retention class, promotion day), kept current by the
    caller (the index stage's `KnownTenants`); a tenant missing from it is placed in the shared
    family of `retention_default_days`.
    """

    def __init__(self, es: AsyncElasticsearch, settings: Settings, *, base: str | None = None,
                 stage: str = "index") -> None:
        self.es = es
        self.settings = settings
        self.base = base or esindex.logs_base(settings)
        self.stage = stage
        self.layout: Mapping[str, esindex.TenantIndexing] = {}
        self._known: set[str] = set()
        self._dedicated: set[str] = set()
        self._places: dict[tuple[str, int], esindex.Placement] = {}
        self.stopping = False

    async def setup(self, idle: Idle | None = None) -> None:
        """Install the index template and read which dedicated indices exist (their days keep
        going there), retrying until Elasticsearch answers."""
        await self._retrying(lambda: esindex.ensure_template(self.es, self.settings), idle,
                             "put index template")
        self._dedicated = await self._retrying(
            lambda: esindex.dedicated_indices(self.es, self.settings), idle,
            "list dedicated indices")
        self._known |= self._dedicated
        self._places.clear()

    def set_layout(self, layout: Mapping[str, esindex.TenantIndexing]) -> None:
        """Use the tenants' indexing `layout` from now on (placements cached until it changes)."""
        if layout is not self.layout:
            self.layout = layout
            self._places.clear()

    def place(self, event: LogEvent) -> esindex.Placement:
        """Where the event goes (cached per tenant and day)."""
        key = (event.tenant_id, event.time // esindex.DAY_NS)
        where = self._places.get(key)
        if where is None:
            if len(self._places) >= 65536:
                self._places.clear()
            where = self._places[key] = esindex.placement(
                self.settings, event.tenant_id, event.time, self.layout.get(event.tenant_id),
                self._dedicated, self.base)
        return where

    def index_of(self, event: LogEvent) -> str:
        """The event's index."""
        return self.place(event).index

    async def write(self, events: Sequence[LogEvent], idle: Idle | None = None) -> list[Rejection]:
        """Index `events` in bulk requests of at most `es_batch_size`, `es_bulk_concurrency`
        of them in flight, the next requests' bodies built while one is in Elasticsearch;
        returns the permanently rejected ones. Retries everything else."""
        items = [(event, self.place(event)) for event in events]
        size = self.settings.es_batch_size
        chunks = [items[start:start + size] for start in range(0, len(items), size)]
        if len(chunks) <= 1:
            return await self._write_bulk(items, idle, self._body(items)) if items else []
        await self._ensure_indices(items, idle)
        limit = asyncio.Semaphore(self.settings.es_bulk_concurrency)
        lock = asyncio.Lock()

        async def one_idle() -> None:  # retries of concurrent bulks poll the consumer in turn
            async with lock:
                await idle()  # type: ignore[misc]

        async def bulk(chunk: list[_Item]) -> list[Rejection]:
            body = self._body(chunk)  # while an earlier request is in flight
            async with limit:
                return await self._write_bulk(chunk, one_idle if idle else None, body)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bulk(chunk)) for chunk in chunks]
        return [rejection for task in tasks for rejection in task.result()]

    async def _write_bulk(self, items: list[_Item], idle: Idle | None,
                          body: bytes) -> list[Rejection]:
        """Send `body` (the bulk request of `items`), then retry what needs it."""
        started = time.monotonic()
        pending = items
        rejected: list[Rejection] = []
        delay = self.settings.es_retry_initial
        while pending:
            await self._ensure_indices(pending, idle)
            try:
                response = await self._bulk(body)
            except Retry as exc:
                METRICS.inc("laas_sink_retries_total", stage=self.stage, cause="request")
                log.warning("bulk of %d events failed (%s); retry in %.1fs", len(pending),
                            exc.what, delay)
                delay = await self._backoff(delay, idle)
                continue
            if not response.get("errors"):
                break
            retry: list[_Item] = []
            for item, result in zip(pending, response["items"], strict=True):
                result = next(iter(result.values()))
                status = int(result.get("status", 500))
                if status < 300:
                    continue
                error = result.get("error") or {}
                if status in RETRYABLE_STATUS:
                    retry.append(item)
                else:
                    rejected.append(Rejection(item[0], status, str(error.get("type", "")),
                                              str(error.get("reason", error))[:1000]))
            if retry:
                METRICS.inc("laas_sink_retries_total", stage=self.stage, cause="item")
                log.warning("%d of %d bulk items to retry (429/5xx); retry in %.1fs",
                            len(retry), len(pending), delay)
                delay = await self._backoff(delay, idle)
                body = self._body(retry)
            pending = retry
        METRICS.observe("laas_sink_batch_seconds", time.monotonic() - started, stage=self.stage)
        METRICS.inc("laas_sink_events_total", len(items) - len(rejected), stage=self.stage)
        return rejected

    @staticmethod
    def _body(items: list[_Item]) -> bytes:
        """The NDJSON bulk request of `items` (by orjson: the client's json module cost more
        than Elasticsearch)."""
        body = bytearray()
        for event, where in items:
            action: dict[str, Any] = {"_index": where.index, "_id": event.doc_id()}
            if where.routing is not None:
                action["routing"] = where.routing
            body += orjson.dumps({"index": action})
            body += b"\n"
            body += orjson.dumps(esindex.document(event))
            body += b"\n"
        return bytes(body)

    async def _bulk(self, body: bytes) -> dict[str, Any]:
        try:
            response = await self.es.options(
                request_timeout=self.settings.es_request_timeout,
            ).bulk(operations=body,  # type: ignore[arg-type]  # NDJSON passes as is
                   filter_path=BULK_FILTER)
        except ApiError as exc:
            if exc.status_code in RETRYABLE_STATUS:
                raise Retry(f"HTTP {exc.status_code}") from exc
            raise
        except (TimeoutError, ConnectionError, ConnectionTimeout, TransportError, OSError) as exc:
            raise Retry(repr(exc)) from exc
        return dict(response.body)

    async def _ensure_indices(self, items: list[_Item], idle: Idle | None) -> None:
        for _, where in items:
            if where.index in self._known:
                continue
            await self._retrying(partial(esindex.ensure_placement, self.es, self.settings, where),
                                 idle, f"create index {where.index}")
            self._known.add(where.index)
            if not where.shared and where.alias is not None:
                self._dedicated.add(where.index)

    async def _retrying(self, call: Callable[[], Awaitable[Any]], idle: Idle | None,
                        what: str) -> Any:
        delay = self.settings.es_retry_initial
        while True:
            try:
                return await call()
            except ApiError as exc:
                if exc.status_code not in RETRYABLE_STATUS:
                    raise
                log.warning("%s: HTTP %s; retry in %.1fs", what, exc.status_code, delay)
            except (TimeoutError, ConnectionError, ConnectionTimeout, TransportError,
                    OSError) as exc:
                log.warning("%s: %r; retry in %.1fs", what, exc, delay)
            delay = await self._backoff(delay, idle)

    async def _backoff(self, delay: float, idle: Idle | None) -> float:
        """Sleep `delay` (with jitter) while keeping the consumer alive; the next delay."""
        if self.stopping:
            raise asyncio.CancelledError
        deadline = time.monotonic() + delay * random.uniform(0.8, 1.2)
        while (left := deadline - time.monotonic()) > 0:
            if idle is not None:
                await idle()
            await asyncio.sleep(min(left, 1.0))
        return min(delay * 2, self.settings.es_retry_max)
