"""The Kafka side of ingest: records to `logs.raw`, answered only once Kafka acknowledged.

Message format written here (documented for other producers in docs/ingest.md): one message
per request and service (split at `ingest_raw_message_bytes`), key `<tenant id>/<service
name>` (UTF-8), value a serialized `laas.v1.LogBatch` of the records in request order, headers
`content-type: application/x-protobuf; messageType=laas.v1.LogBatch`, `laas-tenant-id`,
`laas-tenant` (slug) and `laas-source` (`gateway` or `http`); for a batch sent with an
idempotency key also `laas-batch-key` (the key) and `laas-batch-index` (the records' positions
in the request as ranges, e.g. `0-41,43-99`), from which the index derives the document `_id`;
and `laas-signature`, the stamp's signature (app/kafka/stamp.py): without it the normalize stage
trusts no tenant header.
One message per request instead of one per record: the worker's per-message cost was the
pipeline's bottleneck (bench/results/pipeline.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.ingest.errors import KafkaUnavailable
from app.ingest.wire import encode
from app.kafka.client import client_options
from app.kafka.headers import (
    H_BATCH_INDEX,
    H_BATCH_KEY,
    H_CONTENT_TYPE,
    H_SOURCE,
    H_TENANT,
    H_TENANT_ID,
    LOG_BATCH_CONTENT_TYPE,
)
from app.kafka.stamp import Stamps
from app.kafka.topics import RAW, topic_name
from app.settings import Settings

log = logging.getLogger(__name__)



def record_key(tenant_id: str, record: Any) -> bytes:
    """`tenant/service`: keeps one tenant's service in order on one partition."""
    return f"{tenant_id}/{record.resource.service_name}".encode()


@dataclass
class RawBatch:
    """One `logs.raw` message: a `LogBatch` of records of one service, with their positions
    in the request."""

    key: bytes
    parts: list[bytes]  # the `LogBatch.records` entries
    positions: list[int]
    size: int = 0

    @property
    def value(self) -> bytes:
        return b"".join(self.parts)


def _entry(data: bytes) -> bytes:
    """`data` as a `LogBatch.records` entry: tag of field 1 (length-delimited), varint length."""
    size, head = len(data), bytearray(b"\n")
    while size > 0x7F:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + data


def raw_batches(records: Sequence[Any], positions: Sequence[int], tenant_id: str,
                max_bytes: int) -> list[RawBatch]:
    """The messages of one request: records grouped by key in request order; a message is
    closed when the next record would take it past `max_bytes` (a larger record goes alone)."""
    open_: dict[bytes, RawBatch] = {}
    done: list[RawBatch] = []
    for record, position in zip(records, positions, strict=True):
        key = record_key(tenant_id, record)
        entry = _entry(encode(record))
        batch = open_.get(key)
        if batch is not None and batch.size + len(entry) > max_bytes:
            done.append(open_.pop(key))
            batch = None
        if batch is None:
            batch = open_[key] = RawBatch(key, [], [])
        batch.parts.append(entry)
        batch.positions.append(position)
        batch.size += len(entry)
    return done + list(open_.values())


def index_ranges(positions: Sequence[int]) -> str:
    """Positions as comma-separated inclusive ranges: [0, 1, 2, 5] → `0-2,5`."""
    out: list[str] = []
    start = prev = positions[0]
    for position in [*positions[1:], None]:
        if position is not None and position == prev + 1:
            prev = position
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if position is not None:
            start = prev = position
    return ",".join(out)


def producer_config(settings: Settings) -> dict[str, Any]:
    """The `AIOKafkaProducer` arguments of the writer (also the benchmark's raw baseline).

    acks=all + idempotence are the ack guarantee. A request's messages (`raw_batches`, at most
    `ingest_raw_message_bytes` each) are sent at once, no linger; compressed with zstd (level 3,
    through cramjam): ~20x cheaper than aiokafka's gzip at level 9 (2.2 µs per record, 10 % of
    the gateway), and smaller.
    """
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        "max_batch_size": 1024 * 1024,
        "max_request_size": max(2 * 1024 * 1024, settings.ingest_max_record_bytes * 2),
        "request_timeout_ms": int(settings.ingest_produce_timeout * 1000),
        "compression_type": "zstd",
    }


class KafkaWriter:
    """An idempotent, acks=all producer for `logs.raw`; start lazily, restart after failures."""

    def __init__(self, settings: Settings, *, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic or topic_name(settings, RAW)
        self.timeout = settings.ingest_produce_timeout
        self.stamps = Stamps.from_settings(settings)
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

        `records` are `LogRecord`s, betterproto or upb (`app.ingest.wire`), written as
        `LogBatch` messages (`raw_batches`). With a `batch_key` (a validated idempotency key)
        each message also gets `laas-batch-key` and `laas-batch-index` headers: the positions
        of its records in the request, `indexes[i]` (default `i`), as `index_ranges`.
        Raises `KafkaUnavailable` if any message is not acknowledged within the produce
        timeout; some may then still have been written (the caller retries: at-least-once).
        """
        if not records:
            return
        producer = await self.start()
        headers = [
            (H_CONTENT_TYPE, LOG_BATCH_CONTENT_TYPE),
            (H_TENANT_ID, tenant_id.encode()),
            (H_TENANT, tenant_slug.encode()),
            (H_SOURCE, source.encode()),
        ]
        if batch_key:
            headers.append((H_BATCH_KEY, batch_key.encode()))
        positions = range(len(records)) if indexes is None else indexes
        batches = raw_batches(records, positions, tenant_id,
                              self.settings.ingest_raw_message_bytes)

        async def send_all() -> None:
            futures = []
            for batch in batches:
                stamp = [*headers, (H_BATCH_INDEX, index_ranges(batch.positions).encode())] \
                    if batch_key else headers
                futures.append(await producer.send(
                    self.topic, batch.value, key=batch.key,
                    headers=self.stamps.sign(batch.key, batch.value, stamp)))
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
