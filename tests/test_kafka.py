"""Kafka on the local stack: produce, consume, commit, rebalance (aiokafka); a Faust round trip."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka.client import cluster_env
from app.settings import load_settings
from tests.conftest import kafka_options

ROOT = Path(__file__).resolve().parent.parent


async def create_topic(servers: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(servers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def consume(consumer: AIOKafkaConsumer, count: int, timeout: float = 30) -> list[bytes]:
    values: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(values) < count:
            batches = await consumer.getmany(timeout_ms=500)
            values += [
                msg.value for msgs in batches.values() for msg in msgs if msg.value is not None
            ]
    return values


async def test_produce_consume_commit(kafka_servers: str, unique: str) -> None:
    await create_topic(kafka_servers, unique, 2)
    records = [(f"k{i % 3}".encode(), f"v{i}".encode()) for i in range(20)]
    await produce(kafka_servers, unique, records)

    consumer = AIOKafkaConsumer(
        unique,
        **kafka_options(),
        group_id=unique,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await consume(consumer, 20)
        await consumer.commit()
        committed = [await consumer.committed(TopicPartition(unique, p)) for p in (0, 1)]
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(value for _, value in records)
    assert sum(offset or 0 for offset in committed) == 20

    # A new consumer in the same group resumes after the committed offsets: nothing left.
    again = AIOKafkaConsumer(
        unique, **kafka_options(), group_id=unique, auto_offset_reset="earliest"
    )
    await again.start()
    try:
        leftover = await again.getmany(timeout_ms=2000)
    finally:
        await again.stop()
    assert not any(leftover.values())


async def test_rebalance_splits_partitions_between_members(kafka_servers: str, unique: str) -> None:
    await create_topic(kafka_servers, unique, 2)
    first = AIOKafkaConsumer(unique, **kafka_options(), group_id=unique)
    await first.start()
    try:
        async with asyncio.timeout(30):
            while len(first.assignment()) != 2:
                await first.getmany(timeout_ms=200)
        second = AIOKafkaConsumer(unique, **kafka_options(), group_id=unique)
        await second.start()
        try:
            async with asyncio.timeout(60):
                while not (len(first.assignment()) == 1 and len(second.assignment()) == 1):
                    await asyncio.gather(
                        first.getmany(timeout_ms=200), second.getmany(timeout_ms=200)
                    )
            assert first.assignment() | second.assignment() == {
                TopicPartition(unique, 0),
                TopicPartition(unique, 1),
            }
        finally:
            await second.stop()
    finally:
        await first.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_faust_agent_round_trip(kafka_servers: str, unique: str, tmp_path: Path) -> None:
    source, sink = f"{unique}.in", f"{unique}.out"
    await create_topic(kafka_servers, source, 2)
    await create_topic(kafka_servers, sink, 2)
    env = {
        **os.environ,
        "ECHO_SOURCE": source,
        "ECHO_SINK": sink,
        "LAAS_APP_ID": unique,
        **cluster_env(load_settings()),  # the stack's broker as a Kafka of the user's own
        "LAAS_STATE_DIR": str(tmp_path),
        "LAAS_WORKER_WEB_PORT": str(free_port()),
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.faust_echo", "worker", "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    consumer = AIOKafkaConsumer(sink, **kafka_options(), auto_offset_reset="earliest")
    await consumer.start()
    try:
        await produce(kafka_servers, source, [(b"a", b"hello"), (b"b", b"faust")])
        got = await consume(consumer, 2, timeout=60)
    finally:
        await consumer.stop()
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    assert sorted(got) == [b"FAUST", b"HELLO"], (tmp_path / "worker.log").read_text()[-3000:]
