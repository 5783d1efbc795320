"""A background reader of one Kafka topic for a web process: no consumer group, restarts with
backoff while Kafka or the topic is missing, `ready` set while it reads. The live tail hub and
the alert hub are built on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.kafka.client import client_options
from app.kafka.stamp import Stamps
from app.runtime.retry import Failure, RetryPolicy, retry
from app.settings import Settings

log = logging.getLogger(__name__)


class TopicMissing(LookupError):
    """The topic does not exist yet (or has no partitions)."""


TOPIC_WAIT = RetryPolicy(TopicMissing, initial=0.2, maximum=5.0)  # until it exists


async def topic_partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    """The topic's partitions, waiting (with backoff, and saying so) until `laas worker` or
    `laas topics ensure` has created it. Asks for all topics, never for this one by name: a
    broker with `auto.create.topics.enable` would create it with its own defaults."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    said = 0.0

    async def partitions() -> list[TopicPartition]:
        if topic in await admin.list_topics():
            (described,) = await admin.describe_topics([topic])
            ids = sorted(p["partition"] for p in described["partitions"])
            if described["error_code"] == 0 and ids:
                return [TopicPartition(topic, p) for p in ids]
        raise TopicMissing(topic)

    def waiting(_: Failure) -> None:
        nonlocal said
        if time.monotonic() - said >= 30:
            log.warning("waiting for Kafka topic %s (created by `laas worker` or "
                        "`laas topics ensure`)", topic)
            said = time.monotonic()

    try:
        return await retry(partitions, TOPIC_WAIT, on_retry=waiting)
    finally:
        await admin.close()


class TopicReader(ABC):
    """Runs `_consume()` in a task, again after any failure; subclasses read `self.topic` and
    keep `self.positions` (next offset per partition) so a restart goes on where it stopped."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.stamps = Stamps.from_settings(settings)  # only LaaS's messages (app/kafka/stamp.py)
        self.positions: dict[TopicPartition, int] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"reader-{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @abstractmethod
    async def _consume(self) -> None:
        """Read the topic until an error; what to do with the records is the subclass's."""

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("reading %s failed (%r); retrying in %.1fs", self.topic, exc, delay)
            except Exception:  # noqa: BLE001 - the reader must outlive any one bad batch
                log.exception("unexpected error reading %s", self.topic)
            finally:
                self.ready.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
