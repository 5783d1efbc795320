"""Index retention: delete a tenant's daily indices older than its `retention_days`, the shared
daily indices older than their retention class (`{prefix}shared-r{days}-{day}`: every tenant
in them has that retention), and pattern and source snapshot documents not seen within that
time. The same hourly run promotes shared-tier tenants that outgrew `es_dedicated_min_docs`.

Kafka is the source of truth: `logs.raw` must keep at least the replay window (its topic
`retention.ms`, see docs/stream.md); the indices are derived data and go when a tenant's
retention says so. Runs hourly in the worker (leader only) and as `laas retention`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError

from app.elastic.esindex import all_logs_pattern, shared_base
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

_DAILY = re.compile(r"(?P<base>.+)-(?P<tenant>[^-]+)-(?P<day>\d{4}\.\d{2}\.\d{2})")


def expired(names: Iterable[str], retention: Mapping[str, int], default_days: int,
            now: datetime, shared_base: str | None = None) -> list[str]:
    """The daily indices (`…-{tenant}-{YYYY.MM.DD}`) whose whole day is older than their
    tenant's retention (days; `default_days` for tenants not in `retention`); the shared ones
    (`{shared_base}-r{days}-{YYYY.MM.DD}`) older than their class's days."""
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
        if m.group("base") == shared_base:
            klass = re.fullmatch(r"r(\d{1,5})", m.group("tenant"))
            if not klass or int(klass.group(1)) < 1:
                continue
            days = int(klass.group(1))
        else:
            days = retention.get(m.group("tenant"), default_days)
        if day < today - timedelta(days=days - 1):
            out.append(name)
    return sorted(out)


async def tenant_retention(settings: Settings) -> dict[str, int]:
    """`retention_days` of every tenant in the user database, by tenant id."""
    from sqlalchemy import select

    from app.db.engine import create_engine, session_factory
    from app.db.models import Tenant

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
    patterns = f"{all_logs_pattern(settings)},{settings.index_prefix}replay-*"
    try:
        found = await es.indices.get(index=patterns, expand_wildcards="open,closed",
                                     allow_no_indices=True, ignore_unavailable=True)
    except NotFoundError:
        return []
    doomed = expired(found.body.keys(), retention, settings.retention_default_days,
                     now or datetime.now(UTC), shared_base(settings))
    if not dry_run:
        for chunk in (doomed[i:i + 50] for i in range(0, len(doomed), 50)):
            await es.indices.delete(index=",".join(chunk), ignore_unavailable=True)
            METRICS.inc("laas_retention_deleted_total", len(chunk))
            log.info("retention deleted %s", ", ".join(chunk))
    return doomed


async def prepare_shared_indices(es: AsyncElasticsearch, settings: Settings,
                                 retention: Mapping[str, int], *,
                                 now: datetime | None = None) -> list[str]:
    """Create today's and tomorrow's shared index of every retention class in use (hourly, with
    retention), so the first event of a day does not wait for an index creation; their names."""
    from app.elastic.esindex import ensure_shared_index, shared_index

    now = now or datetime.now(UTC)
    classes = sorted(set(retention.values()) or {settings.retention_default_days})
    names = [shared_index(settings, days, int((now + timedelta(days=ahead)).timestamp()) * 10**9)
             for days in classes for ahead in (0, 1)]
    for name in names:
        await ensure_shared_index(es, settings, name)
    return names


def _cutoff(days: int, now: datetime) -> str:
    """The start of the oldest kept day (the rule `expired` applies to daily indices)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days - 1)).isoformat()


async def prune_snapshots(es: AsyncElasticsearch, settings: Settings,
                          retention: Mapping[str, int], *, now: datetime | None = None) -> int:
    """Delete pattern and source documents whose `last_seen` is older than their tenant's
    retention; how many. (Search then bulk delete: this Elasticsearch has no delete-by-query.)"""
    from app.elastic.esindex import sources_index
    from app.elastic.template_index import patterns_index

    now = now or datetime.now(UTC)
    indices = f"{patterns_index(settings)},{sources_index(settings)}"
    by_days: dict[int, list[str]] = {}
    for tenant, days in retention.items():
        by_days.setdefault(days, []).append(tenant)
    queries: list[tuple[dict[str, Any], int]] = [
        ({"terms": {"tenant_id": tenants}}, days) for days, tenants in by_days.items()]
    queries.append(({"bool": {"must_not": {"terms": {"tenant_id": list(retention)}}}},
                    settings.retention_default_days))
    deleted = 0
    for tenants, days in queries:
        # `format`: the patterns index stores epoch_millis and would not parse the cutoff.
        stale = {"lt": _cutoff(days, now), "format": "strict_date_optional_time"}
        query = {"bool": {"filter": [tenants, {"range": {"last_seen": stale}}]}}
        while True:
            found = await es.search(index=indices, query=query, size=1000, source=False,
                                    ignore_unavailable=True, allow_no_indices=True)
            hits = found["hits"]["hits"]
            if not hits:
                break
            await es.bulk(operations=[{"delete": {"_index": h["_index"], "_id": h["_id"]}}
                                      for h in hits], refresh=True)
            deleted += len(hits)
    if deleted:
        log.info("retention deleted %d pattern and source documents", deleted)
    return deleted
