"""The alert stream hub: one `alerts` reader per web process (no consumer group, every
partition, from the end), fanned out to the WebSocket subscribers of the alert's tenant.

Subscribers have bounded queues; a slow socket loses alerts (counted, reported as a notice)
instead of holding up the hub or other sockets. An alert only ever reaches subscriptions of
its own `tenant_id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from app.kafka import stamp
from app.kafka.client import client_options
from app.kafka.topics import ALERTS, topic_name
from app.live.reader import TopicReader, topic_partitions
from app.settings import Settings

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


class AlertHub(TopicReader):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, topic_name(settings, ALERTS))
        self.subscriptions: dict[str, set[AlertSubscription]] = {}

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

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(**client_options(self.settings), group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            partitions = await topic_partitions(self.settings, self.topic)
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, self.positions.get(tp, ends[tp]))
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        self.positions[tp] = record.offset + 1
                        if not self.stamps.valid_message(record, kind=stamp.ALERTS):
                            log.warning("alerts: skipping a message not signed by LaaS at "
                                        "%s/%d/%d", record.topic, record.partition,
                                        record.offset)
                            continue
                        try:
                            alert = json.loads(record.value or b"")
                        except ValueError:
                            continue
                        if isinstance(alert, dict):
                            self.dispatch(alert)
        finally:
            await consumer.stop()
