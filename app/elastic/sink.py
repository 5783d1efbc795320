"""The Elasticsearch bulk sink: idempotent writes, permanent rejections out, backpressure up.

Contract (quix-streams' sinks: `setup`, `add`, `flush` and a backpressure error with a
retry-after; vector's `sinks/elasticsearch/retry.rs` for what is retried):

- `setup()` installs the index template and reads which dedicated indices exist.
- `add(events)` buffers events (no I/O).
- `flush()` sends what is buffered and returns a `Flushed` once every buffered event is either
  accepted by Elasticsearch or permanently rejected (other 4xx; the rejections are returned, the
  caller dead-letters them). The buffer is then empty.
- When Elasticsearch pushes back — HTTP 408/429/5xx for the request or for some items, a
  timeout, no connection — `setup()` and `flush()` raise `Backpressure` with a `retry_after`
  (exponential from `es_retry_initial` to `es_retry_max`, with jitter). Nothing is lost: the
  events not yet accepted stay buffered (only those: accepted items are not sent again) and the
  rejections found so far are kept for the `Flushed` to come. The caller stops reading
  (pauses its partitions), waits `retry_after` seconds and calls the same method again.
- Any other error (a bug, a non-retryable request error) is raised as is.

The sink never commits, batches by time or size, dead-letters or measures lag: the consumer
loop (agents/index.py) does, around it. `write()` is `add` + `flush` until done for callers
without partitions to pause (replay, tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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
from app.runtime.retry import Failure, RetryPolicy, retry
from app.settings import Settings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Only what `flush` reads of a bulk response: a tenth of its bytes to parse.
BULK_FILTER = "errors,items.*.status,items.*.error"
UNREACHABLE = (TimeoutError, ConnectionError, ConnectionTimeout, TransportError, OSError)

T = TypeVar("T")


@dataclass(frozen=True)
class Rejection:
    """An event Elasticsearch refused for good: status and its error type and reason."""

    event: LogEvent
    status: int
    error_type: str
    reason: str


@dataclass(frozen=True)
class Flushed:
    """What one completed `flush` did with the buffered events: `accepted` of them are in
    Elasticsearch, `rejected` were refused for good (to dead-letter)."""

    accepted: int
    rejected: list[Rejection]


class Backpressure(Exception):
    """Elasticsearch pushed back: call the same method again in `retry_after` seconds, without
    reading more meanwhile. `cause` says what happened; `pending` events are still buffered."""

    def __init__(self, cause: str, retry_after: float, pending: int = 0) -> None:
        super().__init__(f"Elasticsearch pushed back ({cause}); {pending} events pending, "
                         f"retry in {retry_after:.1f}s")
        self.cause = cause
        self.retry_after = retry_after
        self.pending = pending


class _Retry(Exception):
    """A bulk request Elasticsearch did not take (retryable); internal to `flush`."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


_Item = tuple[LogEvent, esindex.Placement]  # an event and where it goes
Wait = Callable[[float], Awaitable[object]]


def retry_cause(exc: BaseException) -> str | None:
    """Why `exc` from the Elasticsearch client is worth retrying (it pushed back or could not
    be reached), or None: a permanent error."""
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status_code}" if exc.status_code in RETRYABLE_STATUS else None
    if isinstance(exc, UNREACHABLE):
        return repr(exc)
    return None


# Waiting out backpressure (app/runtime/retry.py): as long as it takes, as long as it asks.
BACKPRESSURE = RetryPolicy(retry_on=Backpressure,
                           retry_after=lambda exc: getattr(exc, "retry_after", None))


async def until_accepted(call: Callable[[], Awaitable[T]], wait: Wait = asyncio.sleep) -> T:
    """`call()` (a sink's `setup` or `flush`) again after `wait(retry_after)` for as long as
    it raises `Backpressure`."""

    def logged(failure: Failure) -> None:
        log.warning("%s", failure.error)

    return await retry(call, BACKPRESSURE, on_retry=logged, sleep=wait)


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
        self._pending: list[_Item] = []  # added, neither accepted nor rejected yet
        self._rejected: list[Rejection] = []  # of the flush in progress
        self._accepted = 0  # of the flush in progress
        self._started: float | None = None  # monotonic start of the flush in progress
        # retry_after of the n-th backpressure signal since the last success
        self._backoff = RetryPolicy(initial=settings.es_retry_initial,
                                    maximum=settings.es_retry_max, jitter=0.2)
        self._signals = 0

    @property
    def pending(self) -> int:
        """Events added and not yet accepted or rejected."""
        return len(self._pending)

    # -- the contract ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Install the index template and read which dedicated indices exist (their days keep
        going there). Raises `Backpressure` while Elasticsearch cannot answer."""
        await self._pushing_back(esindex.ensure_template(self.es, self.settings))
        self._dedicated = await self._pushing_back(
            esindex.dedicated_indices(self.es, self.settings))
        self._known |= self._dedicated
        self._places.clear()
        self._signals = 0

    def add(self, events: Sequence[LogEvent]) -> None:
        """Buffer `events` for the next `flush`."""
        self._pending.extend((event, self.place(event)) for event in events)

    async def flush(self) -> Flushed:
        """Send the buffered events in bulk requests of at most `es_batch_size`,
        `es_bulk_concurrency` of them in flight, the next requests' bodies built while one is
        in Elasticsearch. Returns when each is accepted or permanently rejected; raises
        `Backpressure` (keeping the rest buffered) when some must be retried."""
        if not self._pending:
            return Flushed(0, [])
        if self._started is None:
            self._started = time.monotonic()
        await self._ensure_indices(self._pending)
        retry = await self._send(self._pending)
        if retry:
            self._pending = [item for _, items in retry for item in items]
            raise self._backpressure(retry[0][0])
        done = Flushed(self._accepted, self._rejected)
        METRICS.observe("laas_sink_batch_seconds", time.monotonic() - self._started,
                        stage=self.stage)
        self._pending, self._rejected, self._accepted, self._started = [], [], 0, None
        self._signals = 0
        return done

    async def write(self, events: Sequence[LogEvent], wait: Wait = asyncio.sleep
                    ) -> list[Rejection]:
        """`add(events)` and `flush()` until done, waiting out backpressure with `wait`; the
        permanently rejected events. For callers with no partitions to pause."""
        self.add(events)
        return (await until_accepted(self.flush, wait)).rejected

    # -- placement -----------------------------------------------------------------------------

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

    # -- one attempt ---------------------------------------------------------------------------

    async def _send(self, items: list[_Item]) -> list[tuple[str, list[_Item]]]:
        """One attempt at every item: the accepted counted, the rejected kept; the items to
        retry, with the cause, per bulk request that had some."""
        size = self.settings.es_batch_size
        chunks = [items[start:start + size] for start in range(0, len(items), size)]
        if len(chunks) == 1:
            retry = [await self._send_bulk(items, self._body(items))]
        else:
            limit = asyncio.Semaphore(self.settings.es_bulk_concurrency)

            async def bulk(chunk: list[_Item]) -> tuple[str, list[_Item]]:
                body = self._body(chunk)  # while an earlier request is in flight
                async with limit:
                    return await self._send_bulk(chunk, body)

            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(bulk(chunk)) for chunk in chunks]
            retry = [task.result() for task in tasks]
        return [(cause, chunk) for cause, chunk in retry if chunk]

    async def _send_bulk(self, items: list[_Item], body: bytes) -> tuple[str, list[_Item]]:
        """Send `body` (the bulk request of `items`); the cause and items to retry."""
        try:
            response = await self._bulk(body)
        except _Retry as exc:
            METRICS.inc("laas_sink_retries_total", stage=self.stage, cause="request")
            return exc.cause, items
        retry: list[_Item] = []
        rejected = 0
        if response.get("errors"):
            for item, result in zip(items, response["items"], strict=True):
                result = next(iter(result.values()))
                status = int(result.get("status", 500))
                if status < 300:
                    continue
                error = result.get("error") or {}
                if status in RETRYABLE_STATUS:
                    retry.append(item)
                else:
                    rejected += 1
                    self._rejected.append(Rejection(item[0], status, str(error.get("type", "")),
                                                    str(error.get("reason", error))[:1000]))
        if retry:
            METRICS.inc("laas_sink_retries_total", stage=self.stage, cause="item")
        accepted = len(items) - len(retry) - rejected
        self._accepted += accepted
        METRICS.inc("laas_sink_events_total", accepted, stage=self.stage)
        return f"{len(retry)} of {len(items)} bulk items refused for now (429/5xx)", retry

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
        except (ApiError, *UNREACHABLE) as exc:
            cause = retry_cause(exc)
            if cause is None:
                raise
            raise _Retry(cause) from exc
        return dict(response.body)

    async def _ensure_indices(self, items: list[_Item]) -> None:
        for _, where in items:
            if where.index in self._known:
                continue
            await self._pushing_back(esindex.ensure_placement(self.es, self.settings, where))
            self._known.add(where.index)
            if not where.shared and where.alias is not None:
                self._dedicated.add(where.index)

    async def _pushing_back(self, call: Awaitable[T]) -> T:
        """Await `call`; a retryable failure becomes `Backpressure`."""
        try:
            return await call
        except (ApiError, *UNREACHABLE) as exc:
            cause = retry_cause(exc)
            if cause is None:
                raise
            raise self._backpressure(cause) from exc

    def _backpressure(self, cause: str) -> Backpressure:
        """The signal for `cause`, its retry-after the current delay (with jitter); doubles the
        next one, up to `es_retry_max` (reset once a flush or setup succeeds)."""
        self._signals += 1
        after = self._backoff.wait(self._signals)
        return Backpressure(cause, after, len(self._pending))
