"""Index retention: delete a tenant's daily indices older than its `retention_days`.

Kafka is the source of truth: `logs.raw` must keep at least the replay window (its topic
`retention.ms`, see docs/stream.md); the indices are derived data and go when a tenant's
retention says so. Runs hourly in the worker (leader only) and as `laas retention`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch, NotFoundError

from app.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

_DAILY = re.compile(r"(?P<base>.+)-(?P<tenant>[^-]+)-(?P<day>\d{4}\.\d{2}\.\d{2})")


def expired(names: Iterable[str], retention: Mapping[str, int], default_days: int,
            now: datetime) -> list[str]:
    """The daily indices (`…-{tenant}-{YYYY.MM.DD}`) whose whole day is older than their
    tenant's retention (days; `default_days` for tenants not in `retention`)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for name in names:
        m = _DAILY.fullmatch(name)
        if not m:
            continue
        try:
            day = datetime.strptime(m.group("day"), "%Y.%m.%d").replace(tzinfo=UTC)
        except ValueError:
            continue
        days = retention.get(m.group("tenant"), default_days)
        if day < today - timedelta(days=days - 1):
            out.append(name)
    return sorted(out)


async def tenant_retention(settings: Settings) -> dict[str, int]:
    """`retention_days` of every tenant in the user database, by tenant id."""
    from sqlalchemy import select

    from app.db import create_engine, session_factory
    from app.models import Tenant

    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(select(Tenant.id, Tenant.retention_days))
            return {str(tid): int(days or settings.retention_default_days) for tid, days in rows}
    finally:
        await engine.dispose()


async def apply_retention(es: AsyncElasticsearch, settings: Settings,
                          retention: Mapping[str, int], *, now: datetime | None = None,
                          dry_run: bool = False) -> list[str]:
    """Delete (unless `dry_run`) the expired log and replay indices; their names."""
    patterns = f"{settings.index_prefix}logs-*,{settings.index_prefix}replay-*"
    try:
        found = await es.indices.get(index=patterns, expand_wildcards="open,closed",
                                     allow_no_indices=True, ignore_unavailable=True)
    except NotFoundError:
        return []
    doomed = expired(found.body.keys(), retention, settings.retention_default_days,
                     now or datetime.now(UTC))
    if not dry_run:
        for chunk in (doomed[i:i + 50] for i in range(0, len(doomed), 50)):
            await es.indices.delete(index=",".join(chunk), ignore_unavailable=True)
            METRICS.inc("laas_retention_deleted_total", len(chunk))
            log.info("retention deleted %s", ", ".join(chunk))
    return doomed
