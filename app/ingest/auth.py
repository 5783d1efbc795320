"""Who is pushing: API key extraction and the `KeyVerifier` seam to the accounts module."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.accounts.security import api_key_prefix
from app.ingest.errors import DatabaseUnavailable, PermissionDenied, Unauthenticated
from app.settings import Settings

if TYPE_CHECKING:
    from app.db.engine import SessionFactory

INGEST_SCOPES = frozenset({"ingest", "admin"})
BUSY_SECONDS = 0.1  # misses this close to the last look-up wait `linger` to share the next
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """The tenant an API key belongs to, the key's scope and the tenant's ingest rate."""

    tenant_id: str
    tenant_slug: str
    scope: str
    rate_limit: float | None = None  # records/s; None: the default setting


KeyVerifier = Callable[[str], Awaitable[Principal | None]]
"""async (api key) -> Principal, or None for an unknown, expired or revoked key."""


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key of a request's headers (lower-case names), in the forms shippers send:

    `authorization: Bearer <key>`; `authorization: Basic <base64 user:key>` (any user; Loki
    and Elasticsearch clients); `authorization: ApiKey <key or base64 id:key>` (Elasticsearch
    clients: any id); or `x-api-key: <key>`. Of a `user:key` / `id:key` pair the part that is
    shaped like a LaaS key is taken, else the second part.
    """
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "apikey" and api_key_prefix(value) is not None:
        return value
    if scheme in ("basic", "apikey") and value:
        return _key_of_pair(value)
    return headers.get("x-api-key", "").strip() or None


def _key_of_pair(encoded: str) -> str | None:
    """The key in base64 `user:key` (basic auth) or `id:key` (an Elasticsearch API key)."""
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return encoded  # not base64: the verifier refuses it as an unknown key
    first, sep, second = text.partition(":")
    if api_key_prefix(first) is not None or not sep:
        return first or None
    return second or None


async def authenticate(verify: KeyVerifier, key: str | None) -> Principal:
    """The principal of an ingest key; `Unauthenticated` / `PermissionDenied` otherwise."""
    if not key:
        raise Unauthenticated("no API key (send `authorization: Bearer <key>`, basic auth with the "
                              "key as password, or `x-api-key`)")
    principal = await verify(key)
    if principal is None:
        raise Unauthenticated("unknown, expired or revoked API key")
    if principal.scope not in INGEST_SCOPES:
        raise PermissionDenied(f"API key has scope {principal.scope!r}; ingest needs 'ingest'")
    return principal


@dataclass
class _Checked:
    """A cached answer: the principal (None: refused) until `expires` (monotonic seconds)."""

    expires: float
    principal: Principal | None
    key_id: int | None = None
    stored_use: datetime | None = None  # `last_used_at` as last read or written


class DatabaseVerifier:
    """The real `KeyVerifier`: `app.accounts.tenancy.find_api_keys`, the key's tenant and its rate.

    - Answers are cached for `ttl` seconds (`ingest_key_cache_seconds`): a revoked key, or a
      tenant's changed rate, takes effect within that time; `ttl` 0 asks on every call.
    - The cache is a bounded LRU: at most `max_keys` accepted keys and, apart from them (so
      unknown keys sprayed at the gateway cannot push the good ones out), `max_refused` refused
      ones; the least recently used answer is dropped first, never the whole cache.
    - Keys not cached are looked up together: every miss arriving while a look-up is running
      joins the next one (one query for up to `batch` keys), and concurrent first calls of one
      key share one look-up (single flight). While misses keep coming, a look-up waits `linger`
      (5 ms) to take more keys; after a quiet spell the first miss is looked up at once.
    - `last_used_at` is kept in memory and written every `flush_seconds` in one batched UPDATE
      for the keys whose stored time is `LAST_USED_RESOLUTION` (a minute) older than their
      latest use: at most once a minute per key and process; the stored time lags a use by up
      to `flush_seconds` plus that minute. `aclose()` writes what is pending.
    """

    def __init__(self, sessions: SessionFactory, ttl: float = 5.0, *, max_keys: int = 100_000,
                 max_refused: int = 10_000, batch: int = 500, linger: float = 0.005,
                 flush_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.clock = clock  # the TTL's (tests turn it forward)
        self.max_keys, self.max_refused, self.batch = max_keys, max_refused, batch
        self.linger = linger
        self._looked_up = float("-inf")  # when the last look-up ended (monotonic)
        self.flush_seconds = flush_seconds
        self.resolution = _last_used_resolution()
        self._accepted: OrderedDict[str, _Checked] = OrderedDict()
        self._refused: OrderedDict[str, _Checked] = OrderedDict()
        self._waiting: dict[str, asyncio.Future[_Checked]] = {}  # key -> its pending look-up
        self._queue: list[str] = []  # keys not yet in a look-up
        self._loader: asyncio.Task[None] | None = None
        self._uses: dict[int, datetime] = {}  # key id -> latest use not yet written
        self._stored: dict[int, _Checked] = {}  # key id -> its cache entry (stored_use)
        self._flusher: asyncio.Task[None] | None = None
        self.lookups = 0  # queries made (for tests and benchmarks)

    def __len__(self) -> int:
        return len(self._accepted) + len(self._refused)

    async def __call__(self, key: str) -> Principal | None:
        if api_key_prefix(key) is None:
            return None  # not shaped like a key: no query, nothing cached
        entry = self._cached(key)
        if entry is None:
            future = self._waiting.get(key)
            if future is None:
                future = self._waiting[key] = asyncio.get_running_loop().create_future()
                self._queue.append(key)
                if self._loader is None or self._loader.done():
                    self._loader = asyncio.create_task(self._load())
            entry = await asyncio.shield(future)  # one caller's cancellation spares the rest
        if entry.key_id is not None:
            self._used(entry)
        return entry.principal

    def _cached(self, key: str) -> _Checked | None:
        now = self.clock()
        for cache in (self._accepted, self._refused):
            entry = cache.get(key)
            if entry is not None:
                if now < entry.expires:
                    cache.move_to_end(key)
                    return entry
                del cache[key]
        return None

    def _remember(self, key: str, entry: _Checked) -> None:
        if self.ttl <= 0:
            return
        cache, bound = ((self._accepted, self.max_keys) if entry.principal is not None
                        else (self._refused, self.max_refused))
        cache[key] = entry
        cache.move_to_end(key)
        while len(cache) > bound:
            cache.popitem(last=False)

    async def _load(self) -> None:
        """Look up the queued keys, `batch` at a time, until none is left. While misses keep
        coming (a look-up ended less than `BUSY_SECONDS` ago) each look-up first waits `linger`
        seconds for more: a query costs ~0.5 ms of CPU, a further key in it ~15 µs."""
        try:
            while True:
                busy = time.monotonic() - self._looked_up < BUSY_SECONDS
                await asyncio.sleep(self.linger if busy else 0)  # this iteration's misses join
                if not self._queue:
                    return
                keys, self._queue = self._queue[:self.batch], self._queue[self.batch:]
                started = self.clock()  # the TTL counts from before the database answered
                try:
                    found = await self._lookup(keys)
                except DatabaseUnavailable as exc:
                    for key in keys:
                        self._waiting.pop(key).set_exception(exc)
                    continue
                self._looked_up = time.monotonic()
                for key in keys:
                    entry = found.get(key) or _Checked(0.0, None)
                    entry.expires = started + self.ttl
                    self._remember(key, entry)
                    self._waiting.pop(key).set_result(entry)
        except BaseException as exc:  # cancelled (shut down): no caller waits forever
            waiting, self._waiting, self._queue = self._waiting, {}, []
            for future in waiting.values():
                future.set_exception(DatabaseUnavailable(repr(exc)))
            raise

    async def _lookup(self, keys: list[str]) -> dict[str, _Checked]:
        from sqlalchemy.exc import SQLAlchemyError

        from app.accounts.tenancy import find_api_keys

        self.lookups += 1
        try:
            async with self.sessions() as session:
                found = await find_api_keys(session, keys)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(repr(exc)) from exc
        return {key: _Checked(0.0, Principal(str(f.tenant_id), f.tenant_slug, f.scope.value,
                                             f.ingest_rate_limit), f.api_key_id, f.last_used_at)
                for key, f in found.items()}

    # -- last_used_at -----------------------------------------------------------------------

    def _used(self, entry: _Checked) -> None:
        assert entry.key_id is not None
        now = datetime.now(UTC)
        stored = entry.stored_use
        if stored is None or now - stored >= self.resolution:
            self._uses[entry.key_id] = now
            self._stored[entry.key_id] = entry  # both emptied by the next flush
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while self._uses:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except DatabaseUnavailable as exc:
                log.warning("API keys' last use not recorded (%s); retry in %.0fs", exc,
                            self.flush_seconds)

    async def flush(self) -> int:
        """Write the pending uses in one batched UPDATE; how many keys. Uses that fail to be
        written stay pending (`DatabaseUnavailable`)."""
        from sqlalchemy.exc import SQLAlchemyError

        from app.accounts.tenancy import record_key_uses

        uses, self._uses = self._uses, {}
        if not uses:
            return 0
        try:
            async with self.sessions.begin() as session:
                await record_key_uses(session, uses)
        except (SQLAlchemyError, OSError) as exc:
            for key_id, used in uses.items():
                self._uses.setdefault(key_id, used)
            raise DatabaseUnavailable(repr(exc)) from exc
        for key_id, used in uses.items():
            entry = self._stored.pop(key_id, None)
            if entry is not None:
                entry.stored_use = used
        return len(uses)

    async def aclose(self) -> None:
        """Stop the background flush and write what is pending (best effort)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        try:
            await self.flush()
        except DatabaseUnavailable as exc:
            log.warning("API keys' last use not recorded at close (%s)", exc)


def _last_used_resolution() -> timedelta:
    from app.accounts.tenancy import LAST_USED_RESOLUTION

    return LAST_USED_RESOLUTION


def accounts_verifier(settings: Settings) -> DatabaseVerifier:
    """A `DatabaseVerifier` on the configured user database (its own engine)."""
    from app.db.engine import create_engine, session_factory

    return DatabaseVerifier(session_factory(create_engine(settings)),
                            ttl=settings.ingest_key_cache_seconds)
