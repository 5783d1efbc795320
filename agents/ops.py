"""Worker operations: `/metrics` (Prometheus), `/healthz` and `/readyz`, consumer lag, the
stalled-partition watchdog, the scheduled retention job."""

from __future__ import annotations

import logging
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.resources import Resources
from app.elastic.promotion import promote_oversized
from app.elastic.retention import (
    apply_retention,
    prepare_shared_indices,
    prune_snapshots,
)
from app.kafka.client import client_options
from app.kafka.topics import Topics
from app.pipeline.watchdog import register_faust
from app.runtime.metrics import CONTENT_TYPE, METRICS
from app.runtime.readiness import readiness, report, service_checks
from app.settings import Settings

log = logging.getLogger(__name__)


class LagProbe:
    """Committed offset vs end offset per partition for the worker's consumer groups."""

    def __init__(self, settings: Settings) -> None:
        from agents.worker import consumer_groups

        self.settings = settings
        self.groups = consumer_groups(settings)
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def measure(self) -> None:
        if self.admin is None or self.consumer is None:
            self.admin = AIOKafkaAdminClient(**client_options(self.settings))
            await self.admin.start()
            self.consumer = AIOKafkaConsumer(**client_options(self.settings))
            await self.consumer.start()
        for group, topics in self.groups.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            # From the broker: the consumer, subscribed to nothing, has no metadata of these
            # topics (partitions_for_topic was None: the probe never measured a partition).
            tps = [TopicPartition(d["topic"], p["partition"])
                   for d in await self.admin.describe_topics(topics) if d["error_code"] == 0
                   for p in d["partitions"]]
            if not tps:
                continue
            ends = await self.consumer.end_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else 0
                METRICS.set("laas_consumer_lag", max(ends[tp] - position, 0), group=group,
                            topic=tp.topic, partition=tp.partition)


def register(app: faust.App, topics: Topics, resources: Resources) -> None:
    settings, es = resources.settings, resources.es
    probe = LagProbe(settings)
    # The watchdog of this app's own assignment: logs.raw (normalize), and logs.events too when
    # the analytics run in this app; the analytics child registers its own
    # (app/pipeline/faust_app.py).
    register_faust(app, settings, probe.groups[settings.app_id])

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(METRICS.render(), content_type=CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """The web app's readiness checks (app/runtime/readiness.py): Kafka with the LaaS topics,
        Elasticsearch, the user database; 503 naming what is not ready."""
        body, status = report(await readiness(service_checks(settings, es, resources.engine)))
        return web.json(body, status=status)

    @app.timer(settings.metrics_lag_interval)
    async def consumer_lag() -> None:
        try:
            await probe.measure()
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the worker
            log.warning("consumer lag measurement failed: %r", exc)

    @app.timer(settings.retention_interval, on_leader=True)
    async def retention() -> None:
        try:
            retention = await resources.tenants.retention()
            await apply_retention(es, settings, retention)
            await prune_snapshots(es, settings, retention)
            await prepare_shared_indices(es, settings, retention)
            await promote_oversized(es, resources.engine, settings)
        except Exception as exc:  # noqa: BLE001 - next run retries
            log.warning("retention run failed: %r", exc)
