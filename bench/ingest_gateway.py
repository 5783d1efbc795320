"""Records/s through the gRPC gateway (unary, streaming) next to a raw aiokafka producer.

    python -m bench.ingest_gateway [--records 20000]

Not a test: needs the local Kafka; prints one line per case and the gateway/raw ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from grpclib.client import Channel

from app.gateway import bound_port, start_gateway
from app.ingest.auth import Principal
from app.settings import load_settings
from app.topics import RAW, topic_name
from protos.laas.v1 import AnyValue, LogBatch, LogIngestStub, LogRecord, Resource


async def _key(key: str) -> Principal:
    return Principal("1", "bench", "ingest", rate_limit=0)


def _records(n: int) -> list[LogRecord]:
    now = time.time_ns()
    return [LogRecord(time_unix_nano=now, severity_text="INFO",
                      body=AnyValue(string_value=f"GET /api/items/{i} 200 in 12ms"),
                      attributes={"user": AnyValue(string_value="bob")},
                      resource=Resource(service_name="bench")) for i in range(n)]


async def raw_producer(servers: str, topic: str, records: list[LogRecord], batch: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True,
                                linger_ms=2, max_batch_size=1024 * 1024, compression_type="gzip")
    await producer.start()
    try:
        start = time.perf_counter()
        for i in range(0, len(records), batch):
            futs = [await producer.send(topic, bytes(r), key=b"1/bench")
                    for r in records[i:i + batch]]
            await asyncio.gather(*futs)
        return len(records) / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def gateway_unary(port: int, records: list[LogRecord], batch: int) -> float:
    channel = Channel("127.0.0.1", port)
    stub = LogIngestStub(channel, metadata={"x-api-key": "k"})
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        await stub.push(LogBatch(records=records[i:i + batch]))
    channel.close()
    return len(records) / (time.perf_counter() - start)


async def gateway_stream(port: int, records: list[LogRecord], batch: int) -> float:
    channel = Channel("127.0.0.1", port)
    stub = LogIngestStub(channel, metadata={"x-api-key": "k"})

    async def batches():  # type: ignore[no-untyped-def]
        for i in range(0, len(records), batch):
            yield LogBatch(records=records[i:i + batch])

    start = time.perf_counter()
    async for _ in stub.push_stream(batches()):
        pass
    channel.close()
    return len(records) / (time.perf_counter() - start)


async def main(total: int) -> None:
    settings = load_settings(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    server, service = await start_gateway(settings, verifier=_key, host="127.0.0.1", port=0)
    port = bound_port(server)
    topic = topic_name(settings, RAW)
    try:
        for batch in (1, 100, 1000):
            n = min(total, 2000) if batch == 1 else total
            records = _records(n)
            raw = await raw_producer(settings.kafka_servers, topic, records, batch)
            unary = await gateway_unary(port, records, batch)
            stream = await gateway_stream(port, records, batch)
            print(f"batch {batch:5d}: raw {raw:9.0f}/s  unary {unary:9.0f}/s "
                  f"({unary / raw:.2f})  stream {stream:9.0f}/s ({stream / raw:.2f})")
    finally:
        server.close()
        await server.wait_closed()
        await service.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    asyncio.run(main(parser.parse_args().records))
