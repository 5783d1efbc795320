"""Replay: reprocess one tenant's `logs.raw` records of a time range into Elasticsearch.

The same `normalize` and `ElasticsearchSink` as the live pipeline, so documents get the same
`_id`s: replaying into the live indices overwrites (never duplicates); replaying into a new index
set (`{prefix}replay-{name}-{tenant}-{day}`) ends with one atomic alias update that points the
tenant's alias at the new indices of the replayed days instead of the live ones.

The reader assigns partitions itself (no consumer group): the live workers are not disturbed.
Start offsets come from Kafka's `offsets_for_times`; progress is checkpointed to
`state_dir/replay/<job>.json` after every accepted batch, so an interrupted replay resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from elasticsearch import AsyncElasticsearch, NotFoundError

from app.db.engine import create_engine
from app.elastic import esindex
from app.elastic.client import es_client
from app.elastic.known_tenants import tenant_indexing
from app.elastic.sink import ElasticsearchSink, until_accepted
from app.kafka.client import client_options
from app.kafka.stamp import Stamps
from app.kafka.topics import RAW, topic_name
from app.pipeline.events import LogEvent
from app.pipeline.normalize import Limits
from app.pipeline.raw_input import KeyCheck, process, raw_message
from app.pipeline.table_names import TEMPLATES, changelog_topic
from app.pipeline.tenant_configs import TenantConfigs
from app.settings import Settings
from app.templates import MinerConfig, TenantMiner

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    records: int = 0
    events: int = 0
    skipped_other_tenants: int = 0
    dead: int = 0
    rejected: int = 0
    indices: set[str] = field(default_factory=set)
    swapped: list[dict[str, dict[str, str]]] = field(default_factory=list)


class ReplayTemplates:
    """Template ids as the live stream gives them: each raw partition's miner is rebuilt from
    the `templates` table's changelog (read to its end, no consumer group) and asked first;
    a message no live template matches is mined by the replay's own copy (the live state is
    never written). A template's id is the hash of its text: an event mined live before its
    template widened gets the template's current id here (the patterns index points the old
    id to it, so the patterns API counts both alike)."""

    def __init__(self, miners: dict[int, TenantMiner], config: MinerConfig) -> None:
        self.miners = miners
        self.config = config

    @classmethod
    async def load(cls, settings: Settings, tenant_id: str) -> ReplayTemplates:
        config = await TenantConfigs(settings).get(tenant_id)
        latest: dict[str, list[Any] | None] = {}
        consumer = AIOKafkaConsumer(**client_options(settings), group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            topic = changelog_topic(settings.app_id, TEMPLATES)  # the stream app's
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(
                    topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if tps:
                end = await consumer.end_offsets(tps)
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                todo = {tp for tp in tps if end[tp] > 0}
                while todo:
                    for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                        for record in records:
                            key = json.loads(record.key) if record.key else ""
                            latest[key] = json.loads(record.value) if record.value else None
                            if record.offset + 1 >= end[tp]:
                                todo.discard(tp)
        finally:
            await consumer.stop()
        by_partition: dict[int, list[list[Any]]] = {}
        for key, value in latest.items():
            partition, _, rest = str(key).partition("/")
            if value is not None and rest.split("/", 1)[0] == tenant_id:
                by_partition.setdefault(int(partition), []).append(value)
        miners = {p: TenantMiner.restore_records(records, config)
                  for p, records in by_partition.items()}
        return cls(miners, config)

    def assign(self, event: LogEvent, partition: int) -> LogEvent:
        if not event.message.strip():
            return event
        miner = self.miners.setdefault(partition, TenantMiner(self.config))
        known = miner.match(event.message)
        template_id = known.id if known is not None else \
            miner.add(event.message, event.observed_time / 1e9).template_id
        return dataclasses.replace(event, template_id=template_id)


def replay_base(settings: Settings, name: str) -> str:
    return f"{settings.index_prefix}replay-{name.lower()}"


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class Replay:
    def __init__(self, settings: Settings, tenant_id: str, since: datetime,
                 until: datetime | None = None, to_index: str | None = None,
                 es: AsyncElasticsearch | None = None, keys: KeyCheck | None = None) -> None:
        self.settings = settings
        self.tenant_id = str(tenant_id)
        self.since = since
        self.until = until
        self.to_index = to_index
        self.es = es or es_client(settings)
        self.base = replay_base(settings, to_index) if to_index else None
        self.sink = ElasticsearchSink(self.es, settings, base=self.base, stage="replay")
        self.keys = keys or KeyCheck(settings)
        self.topic = topic_name(settings, RAW)
        job = f"{self.tenant_id}-{to_index or 'live'}-{_ms(since)}-{_ms(until) if until else 'end'}"
        self.checkpoint = settings.state_dir / "replay" / f"{job}.json"

    def _load(self) -> dict[str, int]:
        if self.checkpoint.exists():
            return {str(k): int(v) for k, v in json.loads(self.checkpoint.read_text()).items()}
        return {}

    def _save(self, positions: dict[TopicPartition, int], path: Path | None = None) -> None:
        target = path or self.checkpoint
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(tp.partition): off for tp, off in positions.items()}))
        tmp.replace(target)

    async def run(self, progress: Callable[[int, int], None] | None = None) -> ReplayResult:
        """Replay; `progress(done, total)` after each batch. Returns what was done."""
        result = ReplayResult()
        limits = Limits.from_settings(self.settings)
        stamps = Stamps.from_settings(self.settings)
        consumer = AIOKafkaConsumer(**client_options(self.settings),
                                    enable_auto_commit=False, group_id=None,
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            await until_accepted(self.sink.setup)  # waits while Elasticsearch pushes back
            self.sink.set_layout(await self._layout())
            templates = await ReplayTemplates.load(self.settings, self.tenant_id)
            metadata = await consumer._client.fetch_all_metadata()
            parts = metadata.partitions_for_topic(self.topic) or set()
            if not parts:
                raise RuntimeError(f"topic {self.topic} not found at {self.settings.kafka_servers}")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            start = await self._offsets_at(consumer, tps, self.since)
            end = await self._offsets_at(consumer, tps, self.until) if self.until else \
                await consumer.end_offsets(tps)
            saved = self._load()
            positions = {tp: max(start[tp], saved.get(str(tp.partition), 0)) for tp in tps}
            todo = {tp for tp in tps if positions[tp] < end[tp]}
            total = sum(max(end[tp] - start[tp], 0) for tp in tps)
            if todo:
                consumer.assign(list(todo))
                for tp in todo:
                    consumer.seek(tp, positions[tp])
            while todo:
                fetched = await consumer.getmany(timeout_ms=1000,
                                                 max_records=self.settings.es_batch_size)
                events: list[LogEvent] = []
                for tp, records in fetched.items():
                    for record in records:
                        if tp not in todo or record.offset >= end[tp]:
                            continue
                        result.records += 1
                        out = await process(raw_message(record), self.keys, limits, stamps)
                        result.dead += len(out.dead)
                        for event in out.events:
                            if event.tenant_id == self.tenant_id:
                                events.append(templates.assign(event, tp.partition))
                            else:
                                result.skipped_other_tenants += 1
                        positions[tp] = record.offset + 1
                rejected = await self.sink.write(events)
                result.rejected += len(rejected)
                result.events += len(events) - len(rejected)
                result.indices.update(self.sink.index_of(e) for e in events)
                for tp in list(todo):
                    if positions[tp] >= end[tp]:
                        todo.discard(tp)
                        consumer.pause(tp)
                self._save(positions)
                if progress:
                    done = sum(min(positions[tp], end[tp]) - start[tp] for tp in tps)
                    progress(done, total)
            if self.to_index:
                result.swapped = await self.swap_aliases(result.indices or
                                                         await self._replay_indices())
            if self.checkpoint.exists():
                self.checkpoint.replace(self.checkpoint.with_suffix(".done"))
            return result
        finally:
            await consumer.stop()

    async def _offsets_at(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                          when: datetime | None) -> dict[TopicPartition, int]:
        ends = await consumer.end_offsets(tps)
        if when is None:
            return await consumer.beginning_offsets(tps)
        found = await consumer.offsets_for_times({tp: _ms(when) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}

    async def _replay_indices(self) -> set[str]:
        assert self.base is not None
        pattern = f"{self.base}-{self.tenant_id}-*"
        found = await self.es.indices.get(index=pattern, allow_no_indices=True,
                                          ignore_unavailable=True)
        return set(found.body)

    async def _layout(self) -> dict[str, esindex.TenantIndexing]:
        """The tenant's indexing (retention class, promotion day) from the user database: a
        replay into the live set writes where the live stage does (same index, same `_id`)."""
        engine = create_engine(self.settings)
        try:
            return await tenant_indexing(engine, self.settings.retention_default_days,
                                         self.tenant_id)
        finally:
            await engine.dispose()

    async def _drop_shared_copies(self, days: set[str]) -> int:
        """Delete the tenant's documents of `days` (`YYYY.MM.DD`) from the shared indices: the
        replayed set now holds them (searches read the alias and the shared indices, so a copy
        left in both would be found twice). Search then bulk delete, routed by tenant."""
        indices = ",".join(f"{esindex.shared_base(self.settings)}-*-{day}" for day in sorted(days))
        query = esindex.tenant_query(self.tenant_id)
        deleted = 0
        while True:
            found = await self.es.search(index=indices, query=query, size=1000, source=False,
                                         routing=self.tenant_id, ignore_unavailable=True,
                                         allow_no_indices=True)
            hits = found["hits"]["hits"]
            if not hits:
                return deleted
            done = await self.es.bulk(operations=[
                {"delete": {"_index": h["_index"], "_id": h["_id"], "routing": self.tenant_id}}
                for h in hits], refresh=True)
            failed = [item for item in done["items"] if item["delete"].get("status", 500)
                      not in (200, 404)] if done.get("errors") else []
            if failed:  # never loop on documents that will not go
                raise RuntimeError(f"replay {self.to_index}: {len(failed)} shared copies of "
                                   f"tenant {self.tenant_id} not deleted: {failed[:3]}")
            deleted += len(hits)

    async def swap_aliases(self, indices: set[str]) -> list[dict[str, dict[str, str]]]:
        """Point the tenant alias at the replayed days' new indices, away from the live ones
        (dedicated ones from the alias; shared copies of those days deleted)."""
        alias = esindex.tenant_alias(self.settings, self.tenant_id)
        actions: list[dict[str, dict[str, str]]] = []
        live_base = esindex.logs_base(self.settings)
        try:
            current = await self.es.indices.get_alias(name=alias, ignore_unavailable=True,
                                                      allow_no_indices=True)
            current_names = set(current.body)
        except NotFoundError:  # no live index left (e.g. after retention): nothing to remove
            current_names = set()
        for name in sorted(indices):
            day = name.rsplit("-", 1)[1]
            for old in current_names:
                if old.endswith(f"-{self.tenant_id}-{day}") and old != name:
                    actions.append({"remove": {"index": old, "alias": alias}})
            actions.append({"add": {"index": name, "alias": alias}})
        if actions:
            await self.es.indices.update_aliases(actions=actions)
        log.info("alias %s swapped (%s): %s", alias, live_base, actions)
        dropped = await self._drop_shared_copies({name.rsplit("-", 1)[1] for name in indices})
        if dropped:
            log.info("replay %s: %d documents of tenant %s left the shared indices",
                     self.to_index, dropped, self.tenant_id)
        return actions


def parse_when(text: str, now: float | None = None) -> datetime:
    """ISO 8601 (no zone: UTC) or relative `15m` / `2h` / `3d` ago."""
    from datetime import UTC, timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        base = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
        return base - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
