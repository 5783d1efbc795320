"""Direct Kafka producers: the documented formats, written by a plain aiokafka producer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from app.kafka.client import client_options
from app.kafka.topics import RAW, topic_name
from app.pipeline.normalize import RawMessage, normalize
from app.settings import Settings
from protos.laas.v1 import AnyValue, LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume


@dataclass(frozen=True)
class KeyOwnerStub:
    """What the API key check answers for `laas-api-key` (app.pipeline.normalize.KeyOwner)."""

    tenant_id: str
    tenant_slug: str
    scope: str


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
    assert all(dict(m.headers)["laas-api-key"] == b"ingest-key" for m in msgs)
    # read as the normalize stage reads them, the key's owner verified (here: given)
    owner = KeyOwnerStub(tenant_id="7", tenant_slug="acme", scope="ingest")
    results = [normalize(RawMessage(RAW, m.partition, m.offset, int(time.time() * 1000), m.key,
                                    m.value, dict(m.headers)), owner, now_ns=time.time_ns())
               for m in msgs]
    assert [r.dead for r in results] == [[], [], []]
    events = [r.events[0] for r in results]
    assert [e.message for e in events] == ["pb", "js", "plain text line"]
    assert events[1].service == "batch"
    assert {e.tenant_id for e in events} == {"7"}
