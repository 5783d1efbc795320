"""app/live/reader.topic_partitions on the real Kafka: it waits for a topic created later."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka.client import client_options
from app.live.reader import topic_partitions
from app.settings import Settings

pytestmark = pytest.mark.integration


async def test_waits_until_the_topic_exists(settings: Settings, unique: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    topic = f"{unique}.live"
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        with caplog.at_level("WARNING", logger="app.live.reader"):
            waiting = asyncio.create_task(topic_partitions(settings, topic))
            async with asyncio.timeout(30):  # it says it waits ...
                while not caplog.records:
                    await asyncio.sleep(0.05)
            assert not waiting.done()  # ... and does: no topic yet
            await admin.create_topics([NewTopic(topic, 3, 1)])
            found = await asyncio.wait_for(waiting, 30)
        assert found == [TopicPartition(topic, p) for p in range(3)]
        assert [r.getMessage() for r in caplog.records] == [
            f"waiting for Kafka topic {topic} (created by `laas worker` or `laas topics ensure`)"]
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
