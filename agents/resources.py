"""The per-process resources of the stream stages, built once at start from the settings.

One `Resources` per process (the worker, each child): one database engine with its session
factory, one Elasticsearch client, the repositories the stages read the user database through
(alert rules, webhooks, tenant settings) and the retry helper. Every stage's `register(app,
topics, resources)` gets it; no stage opens an engine or a client of its own. `close()` at stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from elasticsearch import AsyncElasticsearch
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import SessionFactory, create_engine, session_factory
from app.db.models import AlertRule, Webhook, WebhookDelivery
from app.elastic.client import es_client
from app.elastic.esindex import TenantIndexing
from app.elastic.known_tenants import tenant_indexing
from app.runtime.retry import Failure, RetryPolicy, retry
from app.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]


class AlertRuleRepository:
    """The tenants' alert rules."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def enabled(self) -> list[AlertRule]:
        """Every enabled rule, of every tenant."""
        async with self.sessions() as session:
            return list((await session.execute(
                select(AlertRule).where(AlertRule.enabled))).scalars())


class WebhookRepository:
    """The tenants' webhooks and their delivery log."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def enabled(self) -> dict[str, list[tuple[int, str, str]]]:
        """Enabled webhooks by tenant id: (id, URL, secret)."""
        found: dict[str, list[tuple[int, str, str]]] = {}
        async with self.sessions() as session:
            for row in (await session.execute(select(Webhook).where(Webhook.enabled))).scalars():
                found.setdefault(str(row.tenant_id), []).append((row.id, row.url, row.secret))
        return found

    async def record(self, delivery: WebhookDelivery) -> None:
        """Add one delivery attempt to the log."""
        async with self.sessions.begin() as session:
            session.add(delivery)


class TenantSettingsRepository:
    """The tenants' settings the index stage and the retention job use: retention class and
    tier. (Pattern masking: `app.pipeline.tenant_configs.TenantConfigs` on the same engine.)"""

    def __init__(self, engine: AsyncEngine, sessions: SessionFactory,
                 default_retention_days: int) -> None:
        self.engine = engine
        self.sessions = sessions
        self.default_retention_days = default_retention_days

    async def indexing(self) -> dict[str, TenantIndexing]:
        """Every tenant's indexing (retention class, promotion day), by tenant id."""
        return await tenant_indexing(self.engine, self.default_retention_days)

    async def retention(self) -> dict[str, int]:
        """Every tenant's `retention_days`, by tenant id."""
        return {tid: ix.retention_days for tid, ix in (await self.indexing()).items()}


@dataclass
class Resources:
    """What the stages of one process share; see the module docstring."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    es: AsyncElasticsearch
    rules: AlertRuleRepository
    webhooks: WebhookRepository
    tenants: TenantSettingsRepository
    # stores that must not lose a write retry with this backoff (no limit: backpressure)
    retry_policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        initial=0.5, maximum=15.0, jitter=0.2))

    @classmethod
    def build(cls, settings: Settings) -> Resources:
        """The resources of a process (nothing is connected before its first use)."""
        engine = create_engine(settings)
        sessions = session_factory(engine)
        return cls(settings=settings, engine=engine, sessions=sessions, es=es_client(settings),
                   rules=AlertRuleRepository(sessions), webhooks=WebhookRepository(sessions),
                   tenants=TenantSettingsRepository(engine, sessions,
                                                    settings.retention_default_days))

    async def retry(self, call: Callable[[], Awaitable[T]], what: str, *,
                    policy: RetryPolicy | None = None, sleep: Sleep | None = None) -> T:
        """`call()` until it succeeds under `policy` (the process's by default), each failure
        logged as `what` failing; `sleep` waits between attempts (a consumer keeps polling)."""

        def logged(failure: Failure) -> None:
            log.warning("%s failed (%r); retry in %.1fs", what, failure.error, failure.delay)

        return await retry(call, policy or self.retry_policy, on_retry=logged,
                           sleep=sleep or asyncio.sleep)

    async def close(self) -> None:
        """Close the Elasticsearch client and the engine's connections."""
        try:
            await self.es.close()
        finally:
            await self.engine.dispose()
