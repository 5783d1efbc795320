"""The alert stream hub: one `alerts` reader per web process (no consumer group, every
partition, from the end), fanned out to the WebSocket subscribers of the alert's tenant.

Subscribers have bounded queues; a slow socket loses alerts (counted, reported as a notice)
instead of holding up the hub or other sockets. An alert only ever reaches subscriptions of
its own `tenant_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.settings import Settings
from app.topics import ALERTS, topic_name

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AlertSubscription:
    tenant_id: str
    queue: asyncio.Queue[dict[str, Any]]
    dropped: int = 0

    def offer(self, alert: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1


class AlertHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = topic_name(settings, ALERTS)
        self.subscriptions: dict[str, set[AlertSubscription]] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, tenant_id: str) -> AlertSubscription:
        self.start()
        sub = AlertSubscription(tenant_id, asyncio.Queue(self.settings.tail_queue_size))
        self.subscriptions.setdefault(tenant_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: AlertSubscription) -> None:
        subs = self.subscriptions.get(sub.tenant_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscriptions[sub.tenant_id]

    def dispatch(self, alert: dict[str, Any]) -> None:
        for sub in self.subscriptions.get(str(alert.get("tenant_id")), ()):
            sub.offer(alert)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.5
        positions: dict[TopicPartition, int] = {}
        while True:
            try:
                await self._consume(positions)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("alert hub: reading %s failed (%r); retry in %.1fs", self.topic,
                            exc, delay)
            except Exception:  # noqa: BLE001 - outlive any one bad batch
                log.exception("alert hub: unexpected error")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _consume(self, positions: dict[TopicPartition, int]) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_servers, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, positions.get(tp, ends[tp]))
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        positions[tp] = record.offset + 1
                        try:
                            alert = json.loads(record.value or b"")
                        except ValueError:
                            continue
                        if isinstance(alert, dict):
                            self.dispatch(alert)
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_servers)
        await admin.start()
        try:
            delay = 0.2
            while True:
                (described,) = await admin.describe_topics([self.topic])
                ids = sorted(p["partition"] for p in described["partitions"])
                if described["error_code"] == 0 and ids:
                    return [TopicPartition(self.topic, p) for p in ids]
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        finally:
            await admin.close()
