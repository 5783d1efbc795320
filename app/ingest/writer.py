"""The Kafka side of ingest: records to `logs.raw`, answered only once Kafka acknowledged.

Message format written here (documented for other producers in docs/ingest.md):
key `<tenant id>/<service name>` (UTF-8), value the serialized `laas.v1.LogRecord`, headers
`content-type: application/x-protobuf; messageType=laas.v1.LogRecord`, `laas-tenant-id`,
`laas-tenant` (slug) and `laas-source` (`gateway` or `http`); for a batch sent with an
idempotency key also `laas-batch-key` (the key) and `laas-batch-index` (the record's position
in the request, decimal), from which the index derives the document `_id`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from app.ingest.errors import KafkaUnavailable
from app.ingest.wire import encode
from app.settings import Settings
from app.topics import RAW, topic_name

log = logging.getLogger(__name__)

CONTENT_TYPE = b"application/x-protobuf; messageType=laas.v1.LogRecord"
HEADER_CONTENT_TYPE = "content-type"
HEADER_TENANT_ID = "laas-tenant-id"
HEADER_TENANT = "laas-tenant"
HEADER_SOURCE = "laas-source"
HEADER_API_KEY = "laas-api-key"
HEADER_BATCH_KEY = "laas-batch-key"
HEADER_BATCH_INDEX = "laas-batch-index"


# The producer's own default (Java-compatible murmur2 of the key), so a record lands on the
# partition `producer.send` and other Kafka clients would pick for the same key.
_PARTITIONER = DefaultPartitioner()


def record_key(tenant_id: str, record: Any) -> bytes:
    """`tenant/service`: keeps one tenant's service in order on one partition."""
    return f"{tenant_id}/{record.resource.service_name}".encode()


def producer_config(settings: Settings) -> dict[str, Any]:
    """The `AIOKafkaProducer` arguments of the writer (also the benchmark's raw baseline).

    acks=all + idempotence are the ack guarantee. Batches of up to 1 MiB per partition and a
    short linger let one request's records share a few produce requests; gzip (the only codec
    aiokafka has without extra packages) costs less than it saves once records leave the host.
    """
    return {
        "bootstrap_servers": settings.kafka_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        "max_batch_size": 1024 * 1024,
        "max_request_size": max(2 * 1024 * 1024, settings.ingest_max_record_bytes * 2),
        "request_timeout_ms": int(settings.ingest_produce_timeout * 1000),
        "compression_type": "gzip",
    }


class KafkaWriter:
    """An idempotent, acks=all producer for `logs.raw`; start lazily, restart after failures."""

    def __init__(self, settings: Settings, *, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic or topic_name(settings, RAW)
        self.timeout = settings.ingest_produce_timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        """Connect (once); `KafkaUnavailable` when the brokers cannot be reached."""
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(**producer_config(self.settings))
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                await _quietly_stop(producer)
                raise KafkaUnavailable(f"cannot connect to {self.settings.kafka_servers}: "
                                       f"{exc!r}") from exc
            self._producer = producer
            return producer

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly_stop(producer)

    async def write(
        self, records: Sequence[Any], *, tenant_id: str, tenant_slug: str, source: str,
        batch_key: str = "", indexes: Sequence[int] | None = None,
    ) -> None:
        """Write `records` and wait until Kafka acknowledged every one of them.

        `records` are `LogRecord`s, betterproto or upb (`app.ingest.wire`). With a
        `batch_key` (a validated idempotency key) each record also gets `laas-batch-key` and
        `laas-batch-index` headers: its position in the request, `indexes[i]` (default `i`).
        Raises `KafkaUnavailable` if any record is not acknowledged within the produce timeout;
        some records may then still have been written (the caller retries: at-least-once).
        """
        if not records:
            return
        producer = await self.start()
        headers = [
            (HEADER_CONTENT_TYPE, CONTENT_TYPE),
            (HEADER_TENANT_ID, tenant_id.encode()),
            (HEADER_TENANT, tenant_slug.encode()),
            (HEADER_SOURCE, source.encode()),
        ]
        if batch_key:
            stamp = [*headers, (HEADER_BATCH_KEY, batch_key.encode())]
            positions = range(len(records)) if indexes is None else indexes
            per_record = [[*stamp, (HEADER_BATCH_INDEX, str(i).encode())] for i in positions]
        else:
            per_record = [headers] * len(records)

        async def send_all() -> None:
            # One record batch per partition, built in C and queued whole: no per-record
            # coroutine, and no linger wait (a queued batch is ready to send).
            partitions = sorted(await producer.partitions_for(self.topic))
            groups: dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
            for r, hdrs in zip(records, per_record, strict=True):
                key = record_key(tenant_id, r)
                groups.setdefault(_PARTITIONER(key, partitions, partitions), []).append(
                    (key, encode(r), hdrs))
            futures = []
            for partition, items in groups.items():
                batch = producer.create_batch()
                for key, value, hdrs in items:
                    if batch.append(key=key, value=value, timestamp=None,
                                    headers=hdrs) is None:  # full: send, start another
                        futures.append(await producer.send_batch(batch, self.topic,
                                                                 partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=hdrs)
                futures.append(await producer.send_batch(batch, self.topic, partition=partition))
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self.timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("produce to %s failed: %r", self.topic, exc)
            if isinstance(exc, TimeoutError):
                # A producer stuck on a dead broker: start afresh on the next call.
                await self.stop()
            raise KafkaUnavailable(f"records not acknowledged: {exc!r}") from exc


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 5)
    except Exception as exc:  # noqa: BLE001 - already failing; keep the first error
        log.debug("producer stop failed: %r", exc)
