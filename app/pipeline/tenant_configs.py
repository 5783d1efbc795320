"""Every tenant's template miner configuration (its masking settings from the user database),
cached: used by the templates stage (agents/templates.py) and replay (app/pipeline/replay.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from app.settings import Settings
from app.templates import MaskingConfig, MinerConfig

log = logging.getLogger(__name__)


class TenantConfigs:
    """Every tenant's miner configuration (masking from the user database), loaded for all
    tenants at once — one query, not one per tenant — and again once `tenant_config_ttl`
    seconds old (a changed masking reaches the worker within that time). A tenant id missing
    from the last load (one created since) causes a new load at most every `refresh_after`
    seconds, so a burst of new tenants costs one query, not one each; until its load it gets
    the default configuration (every masker on). Concurrent callers share one load. An
    unreachable database keeps the last known configurations (the default for the rest) and is
    asked again after `refresh_after` seconds."""

    def __init__(self, settings: Settings, refresh_after: float = 5.0, *,
                 engine: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.refresh_after = refresh_after
        self._default = MinerConfig(max_clusters=settings.patterns_max_templates)
        self._configs: dict[str, MinerConfig] = {}  # tenants whose masking is not the default
        self._known: set[str] = set()  # every tenant id of the last load
        self._loaded = float("-inf")  # monotonic time the last load (attempt) began
        self._loading: asyncio.Task[None] | None = None
        self._engine: Any = engine  # None: one of its own, made at the first load
        self.loads = 0  # queries made (for tests and benchmarks)

    def default(self) -> MinerConfig:
        return self._default

    async def get(self, tenant_id: str) -> MinerConfig:
        age = self.clock() - self._loaded
        ttl = self.settings.tenant_config_ttl
        if age >= ttl or (age >= min(ttl, self.refresh_after) and tenant_id not in self._known
                          and tenant_id.isdigit()):
            await self.refresh()
        return self._configs.get(tenant_id, self._default)

    async def refresh(self) -> None:
        """Load every tenant's configuration now (joining a load that is running)."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._loading)

    async def _refresh(self) -> None:
        started = self.clock()
        try:
            self._known, self._configs = await self._load()
        except Exception as exc:  # noqa: BLE001 - the stream must not stop for settings
            log.warning("tenants' masking settings unavailable (%r); using the last known for "
                        "%d tenants, the default for the rest", exc, len(self._configs))
        finally:
            self._loaded = started

    async def _load(self) -> tuple[set[str], dict[str, MinerConfig]]:
        from sqlalchemy import select

        from app.db.engine import create_engine, session_factory
        from app.db.models import Tenant

        if self._engine is None:
            self._engine = create_engine(self.settings)
        self.loads += 1
        async with session_factory(self._engine)() as session:
            rows = (await session.execute(select(Tenant.id, Tenant.pattern_masking))).all()
        known: set[str] = set()
        configs: dict[str, MinerConfig] = {}
        for tenant_id, masking in rows:
            known.add(str(tenant_id))
            if not masking:
                continue
            try:
                configs[str(tenant_id)] = dataclasses.replace(
                    self._default, masking=MaskingConfig.from_dict(masking))
            except Exception as exc:  # noqa: BLE001 - one tenant's bad setting: its default
                log.warning("tenant %s: masking settings unusable (%r); using the default",
                            tenant_id, exc)
        return known, configs
