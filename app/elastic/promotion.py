"""Promotion of a tenant from the shared log indices to dedicated ones (docs/scaling.md).

A promoted tenant's events go to its own daily indices from the next UTC day on (the day is
the unit of placement: every event of one tenant and day lands in one index, so retries,
replays and late events never make a second copy). Its earlier days stay in the shared indices
and are still searched until their retention ends. Promotion is by `laas tenant promote`, or
automatic: the worker's hourly retention run promotes the tenants with more than
`es_dedicated_min_docs` documents in one day's shared indices.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from elasticsearch import AsyncElasticsearch
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import session_factory
from app.db.models import Tenant
from app.elastic.esindex import shared_base
from app.settings import Settings

log = logging.getLogger(__name__)


def next_day(now: datetime) -> date:
    """The UTC day after `now`'s: the first day a promotion decided now applies to."""
    return (now.astimezone(UTC) + timedelta(days=1)).date()


async def promote(engine: AsyncEngine, tenant_ids: Iterable[str | int], from_day: date
                  ) -> list[str]:
    """Give the tenants dedicated indices from `from_day` on (those not promoted already);
    the ids promoted now."""
    ids = sorted({int(t) for t in tenant_ids if str(t).isdigit()})
    if not ids:
        return []
    async with session_factory(engine)() as session, session.begin():
        result = await session.execute(
            update(Tenant).where(Tenant.id.in_(ids), Tenant.index_dedicated_from.is_(None))
            .values(index_dedicated_from=from_day).returning(Tenant.id))
        return [str(tid) for tid in result.scalars()]


async def oversized(es: AsyncElasticsearch, settings: Settings, now: datetime) -> list[str]:
    """Tenants with more than `es_dedicated_min_docs` documents in the shared indices of
    today or yesterday (UTC); none when the threshold is 0."""
    limit = settings.es_dedicated_min_docs
    if limit <= 0:
        return []
    today = now.astimezone(UTC).date()
    big: set[str] = set()
    for day in (today - timedelta(days=1), today):
        found = await es.search(
            index=f"{shared_base(settings)}-*-{day:%Y.%m.%d}", size=0,
            ignore_unavailable=True, allow_no_indices=True,
            aggs={"tenants": {"terms": {"field": "tenant_id", "size": 1000,
                                        "min_doc_count": limit + 1}}})
        big.update(str(b["key"]) for b in
                   found.body.get("aggregations", {}).get("tenants", {}).get("buckets", []))
    return sorted(big)


async def promote_oversized(es: AsyncElasticsearch, engine: AsyncEngine, settings: Settings,
                            now: datetime | None = None) -> list[str]:
    """The automatic promotion (hourly, with retention): the tenants promoted now."""
    now = now or datetime.now(UTC)
    promoted = await promote(engine, await oversized(es, settings, now), next_day(now))
    if promoted:
        log.info("tenants %s promoted to dedicated indices from %s (more than %d documents "
                 "a day)", promoted, next_day(now), settings.es_dedicated_min_docs)
    return promoted
