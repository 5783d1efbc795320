"""Templates in the stream: the normalize agent asks `TemplateStage.assign` for every event's
template id, mined online by one `app.templates.TenantMiner` per tenant **and raw partition**.

Why per raw partition: `logs.raw` is keyed `tenant/service`, so one tenant's records spread
over several raw partitions, each owned by one worker at a time. A miner owned by a partition
needs no coordination and its state can live in a Faust table whose changelog partition is the
raw partition (Faust's co-partitioning rule). A template's id is the hash of its text, so the
same template seen on two partitions (or rebuilt after a restart) has the same id; when a
template widens or merges, its old id is written as an alias of the new one (`merged_into` in
the patterns index) and the patterns API counts the old id's events under the new one.

State: table `templates` (tables/templates.py; changelog `{app_id}-templates-changelog`,
RocksDB store), key `{raw partition}/{tenant_id}/{template_id}`, value the miner's per-template
record (`Cluster.to_record()`, its former ids last); the key of an evicted template, or of an
id a template left, is deleted. New or changed templates are written with the event that
changed them (so a restarted worker goes on with the same templates and ids); count and
last-seen updates at most every `patterns_flush_seconds` per miner. After a restart or
rebalance the miners of a partition are rebuilt from the table on the first event read from it.

Memory: at most `patterns_max_templates` templates per miner (LRU eviction, see
docs/analytics.md). Template texts reach Elasticsearch (`{index_prefix}patterns`, one document
per tenant and template id) from a timer, for `GET /api/v1/patterns`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import faust
from elasticsearch import AsyncElasticsearch

from agents.resources import Resources
from app.elastic.template_index import (
    alias_doc,
    ensure_patterns_index,
    store_templates,
    template_doc,
)
from app.kafka.topics import Topics
from app.pipeline.events import LogEvent
from app.pipeline.tenant_configs import TenantConfigs
from app.settings import Settings
from app.templates import TenantMiner
from tables.templates import templates as templates_table

log = logging.getLogger(__name__)


class TemplateStage:
    """The miners of this worker's raw partitions, their table and the snapshot writer."""

    def __init__(self, app: faust.App, settings: Settings, es: AsyncElasticsearch,
                 configs: TenantConfigs) -> None:
        self.settings = settings
        self.table = templates_table(app, settings)
        self.configs = configs
        self.miners: dict[tuple[int, str], TenantMiner] = {}
        self._pending: dict[tuple[int, str], list[list[Any]]] = {}
        self._loaded: set[int] = set()
        self._flushed: dict[tuple[int, str], float] = {}
        self.dirty: dict[str, dict[str, Any]] = {}  # "tenant/template" -> snapshot document
        self._aliased: dict[str, str] = {}  # "tenant/former id" -> id its alias points to
        self.es = es
        self._index_ready = False  # the patterns index exists

    # -- inside the normalize agent ---------------------------------------------------------

    async def assign(self, events: list[LogEvent], partition: int) -> list[LogEvent]:
        """The events with `template_id` (and `template_new`) set by their tenant's miner.
        Call inside the agent, for events of raw records read from `partition`."""
        if not events:
            return events
        out = []
        now = time.time()
        miners: dict[str, TenantMiner] = {}  # looked up once per tenant and call
        for event in events:
            if not event.message.strip():
                out.append(event)
                continue
            miner = miners.get(event.tenant_id)
            if miner is None:
                miner = miners[event.tenant_id] = await self.miner(partition, event.tenant_id)
            match = miner.add(event.message, event.observed_time / 1e9)
            out.append(event.with_template(match.template_id, match.is_new))
            key = (partition, event.tenant_id)
            if match.changed or now - self._flushed.get(key, 0.0) >= \
                    self.settings.patterns_flush_seconds:
                self._flush(partition, event.tenant_id, miner, now)
        return out

    async def miner(self, partition: int, tenant_id: str) -> TenantMiner:
        if partition not in self._loaded:
            self._load_partition(partition)
        key = (partition, tenant_id)
        config = await self.configs.get(tenant_id)
        miner = self.miners.get(key)
        if miner is None:
            records = self._pending.pop(key, [])
            miner = TenantMiner.restore_records(records, config) if records \
                else TenantMiner(config)
            self.miners[key] = miner
        elif miner.config != config:  # masking changed: keep the templates (and their ids)
            miner = TenantMiner.restore_records([c.to_record() for c in miner.clusters()],
                                                config)
            self.miners[key] = miner
        return miner

    def _load_partition(self, partition: int) -> None:
        """Stage the table's records of one raw partition (after start-up or a rebalance)."""
        groups: dict[str, list[list[Any]]] = defaultdict(list)
        prefix = f"{partition}/"
        for key, record in self.table.items():
            if record and isinstance(key, str) and key.startswith(prefix):
                groups[key.split("/", 2)[1]].append(record)
        for tenant_id, records in groups.items():
            self._pending[(partition, tenant_id)] = records
        self._loaded.add(partition)
        if groups:
            log.info("templates: restored %d templates of %d tenants for raw partition %d",
                     sum(map(len, groups.values())), len(groups), partition)

    def _flush(self, partition: int, tenant_id: str, miner: TenantMiner, now: float) -> None:
        for template_id, record in miner.take_changes().items():
            key = f"{partition}/{tenant_id}/{template_id}"
            if record is None:  # evicted, or the template's id moved to its new text
                if key in self.table:
                    del self.table[key]
                continue
            self.table[key] = record
            self.dirty[f"{tenant_id}/{template_id}"] = template_doc(tenant_id, record, now)
            for old in record[6]:
                alias = f"{tenant_id}/{old}"
                if self._aliased.get(alias) != template_id:
                    self.dirty[alias] = alias_doc(tenant_id, old, record, now)
                    self._aliased[alias] = template_id
        self._flushed[(partition, tenant_id)] = now

    def forget(self) -> None:
        """Drop every miner (partitions revoked): they are rebuilt from the table on demand."""
        self.miners.clear()
        self._pending.clear()
        self._loaded.clear()
        self._flushed.clear()
        self._aliased.clear()

    # -- the snapshot timer -----------------------------------------------------------------

    async def snapshot(self) -> int:
        """Write changed templates to the patterns index; failures are retried next run."""
        docs, self.dirty = self.dirty, {}
        if not docs:
            return 0
        try:
            if not self._index_ready:
                await ensure_patterns_index(self.es, self.settings)
                self._index_ready = True
            retry = await store_templates(self.es, self.settings, docs)
            for key in retry:
                self.dirty.setdefault(key, docs[key])
            if retry:
                log.info("templates snapshot: %d changed concurrently; next run retries",
                         len(retry))
        except Exception as exc:  # noqa: BLE001 - retried by the next run
            log.warning("templates snapshot failed (%r); next run retries", exc)
            for key, doc in docs.items():
                self.dirty.setdefault(key, doc)
            return 0
        return len(docs)


def register(app: faust.App, topics: Topics, resources: Resources) -> TemplateStage:
    """Declare the templates table and snapshot timer; pass the stage to normalize."""
    settings = resources.settings
    stage = TemplateStage(app, settings, resources.es,
                          TenantConfigs(settings, engine=resources.engine))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        stage.forget()

    @app.timer(settings.patterns_snapshot_interval)
    async def templates_snapshot() -> None:
        await stage.snapshot()

    return stage
