"""Direct Kafka producers: the documented formats, written by a plain aiokafka producer."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer

from app.ingest.convert import decode_raw_value, from_any
from app.kafka.client import client_options
from app.kafka.topics import RAW, topic_name
from app.settings import Settings
from protos.laas.v1 import AnyValue, LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume


async def test_plain_producer_formats_are_readable(raw_settings: Settings) -> None:
    producer = AIOKafkaProducer(**client_options(raw_settings), acks="all",
                                enable_idempotence=True)
    await producer.start()
    key = [("laas-api-key", b"ingest-key")]
    pb = LogRecord(body=AnyValue(string_value="pb"), time_unix_nano=time.time_ns())
    try:
        topic = topic_name(raw_settings, RAW)
        await producer.send_and_wait(topic, bytes(pb), key=b"batch", headers=[
            ("content-type", b"application/x-protobuf; messageType=laas.v1.LogRecord"), *key])
        await producer.send_and_wait(topic, b'{"message": "js", "service": "batch"}',
                                     key=b"batch",
                                     headers=[("content-type", b"application/json"), *key])
        await producer.send_and_wait(topic, b"plain text line\n", key=b"batch", headers=key)
    finally:
        await producer.stop()
    msgs = await consume(raw_settings, 3)
    records = [decode_raw_value(m.value, m.headers) for m in msgs]
    assert [from_any(r.body) for r in records] == ["pb", "js", "plain text line"]
    assert records[1].resource.service_name == "batch"
    assert all(dict(m.headers)["laas-api-key"] == b"ingest-key" for m in msgs)
