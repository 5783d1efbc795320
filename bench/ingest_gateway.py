"""Records/s accepted by the ingest endpoints, next to a raw aiokafka producer in the same run.

    python -m bench.ingest_gateway [--records N] [--small N] [--repeat N] [--out FILE]

Not a test (needs the local Kafka; run it on demand). Every server runs in its own process
(`--serve gateway|http`, started here), so client-side encoding does not share the
server's event loop. Each request is prebuilt bytes, so the client measures the server, not
its own serialisation. The servers authenticate with a fixed principal (no database) and write
to a fresh `bench<uuid>.logs.raw` topic with the real `KafkaWriter`.

Cases, for batch sizes 1, 100 and 1000:
- raw: `AIOKafkaProducer` with the writer's `producer_config` (acks=all, idempotence, batch
  size, gzip) but `linger_ms=5`, which suits a bulk producer, sending the same serialized
  records, all sends first, then one wait for every ack;
- raw/batch: the writer's exact producer settings (no linger), waiting for the acks of each
  batch before the next (what a synchronous caller of the gateway gets at best); each ratio
  is to the better of the two raw figures;
- gateway unary (one request at a time), gateway stream (`PushStream`, all batches sent, acks
  read concurrently), both with a grpclib client against the real gateway (grpcio aio
  server), HTTP NDJSON (`POST /api/v1/logs` under uvicorn, one request at a time).
  OTLP next to these: `python -m bench.ingest_otlp`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 100, 1000)


# --- servers (child processes) ------------------------------------------------------------------

async def _principal(key: str) -> Any:
    from app.ingest.auth import Principal

    return Principal("1", "bench", "ingest", rate_limit=0)


def _service(prefix: str) -> Any:
    from app.ingest.service import IngestService
    from app.settings import load_settings

    return IngestService(load_settings(topic_prefix=prefix), _principal)


async def _serve_gateway(prefix: str, port: int) -> None:
    """The real gateway (`app.ingest.gateway.start_gateway`: grpcio aio, generic handlers) with its
    OTLP/HTTP port at `port + 1`."""
    from app.ingest.gateway import start_gateway
    from app.settings import load_settings

    server, service = await start_gateway(load_settings(topic_prefix=prefix),
                                          verifier=_principal, host="127.0.0.1", port=port,
                                          http_port=port + 1)
    await service.writer.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _serve_http(prefix: str, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette

    from web.ingest import routes

    app = Starlette(routes=routes)
    app.state.ingest = _service(prefix)
    await app.state.ingest.writer.start()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await task


SERVERS = {"gateway": _serve_gateway, "http": _serve_http}


def free_port_pair() -> int:
    """A free port whose successor is free too (the gateway's OTLP/HTTP goes there)."""
    while True:
        with socket.socket() as s, socket.socket() as t:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            try:
                t.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


async def create_topic(settings: Any, topic: str) -> None:
    """The bench's fresh raw topic (the local Kafka creates no topic on first use)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from app.kafka.client import client_options

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


class Child:
    """A server subprocess of this module, on a free port."""

    def __init__(self, kind: str, prefix: str) -> None:
        self.port = free_port_pair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ingest_gateway", "--serve", kind, "--prefix", prefix,
             "--port", str(self.port)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- payloads -------------------------------------------------------------------------------

def records(n: int) -> list[bytes]:
    """n serialized `laas.v1.LogRecord`s, an access-log line each (about 90 bytes)."""
    from app.ingest.wire import pb

    now = time.time_ns()
    return [pb.LogRecord(
        time_unix_nano=now + i, severity_text="INFO",
        body=pb.AnyValue(string_value=f"GET /api/items/{i} 200 in {i % 97}ms"),
        attributes={"user": pb.AnyValue(string_value=f"user{i % 50}")},
        resource=pb.Resource(service_name="bench", host="bench-host"),
    ).SerializeToString() for i in range(n)]


def batch_bytes(recs: Sequence[bytes]) -> bytes:
    """A serialized `LogBatch` of already serialized records (field 1, length-delimited)."""
    return b"".join(b"\x0a" + _varint(len(r)) + r for r in recs)


def ndjson(n: int) -> list[bytes]:
    now = time.time()
    return [json.dumps({"message": f"GET /api/items/{i} 200 in {i % 97}ms", "level": "info",
                        "ts": now, "service": "bench", "host": "bench-host",
                        "user": f"user{i % 50}"}).encode() for i in range(n)]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- clients --------------------------------------------------------------------------------

class Prebuilt:
    """A request whose bytes are already encoded (grpclib's codec calls SerializeToString)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - the codec's interface
        return self.data


async def raw(settings: Any, topic: str, recs: Sequence[bytes], batch: int | None) -> float:
    """The writer's producer config; all sends then one wait, or a wait per batch."""
    from aiokafka import AIOKafkaProducer

    from app.ingest.writer import producer_config

    # The writer's settings, but with a linger: a bulk producer that sends everything before
    # waiting is faster with one (about 100k vs 75k records/s here), the gateway is not.
    config = producer_config(settings)
    producer = AIOKafkaProducer(**(config if batch else {**config, "linger_ms": 5}))
    await producer.start()
    headers = [("content-type", b"application/x-protobuf; messageType=laas.v1.LogRecord"),
               ("laas-tenant-id", b"1"), ("laas-tenant", b"bench"), ("laas-source", b"raw")]
    try:
        await producer.send_and_wait(topic, recs[0], key=b"1/bench", headers=headers)  # warm
        start = time.perf_counter()
        for chunk in _chunks(recs, batch or len(recs)):
            futures = [await producer.send(topic, r, key=b"1/bench", headers=headers)
                       for r in chunk]
            await asyncio.gather(*futures)
        return len(recs) / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def grpc_unary(port: int, recs: Sequence[bytes], batch: int) -> float:
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from protos.laas.v1 import PushAck

    bodies = [Prebuilt(batch_bytes(c)) for c in _chunks(recs, batch)]
    channel = Channel("127.0.0.1", port)
    accepted = 0

    async def push(body: Prebuilt) -> int:
        async with channel.request("/laas.v1.LogIngest/Push", Cardinality.UNARY_UNARY,
                                   Prebuilt, PushAck, metadata={"x-api-key": "k"}) as stream:
            await stream.send_message(body, end=True)
            ack = await stream.recv_message()
            assert ack is not None
            return int(ack.accepted)

    try:
        accepted += await push(bodies[0])  # warm: connection, producer metadata
        start = time.perf_counter()
        for body in bodies:
            accepted += await push(body)
        elapsed = time.perf_counter() - start
    finally:
        channel.close()
    assert accepted == len(recs) + batch, f"accepted {accepted}"
    return len(recs) / elapsed


async def grpc_stream(port: int, recs: Sequence[bytes], batch: int) -> float:
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from protos.laas.v1 import PushAck

    bodies = [Prebuilt(batch_bytes(c)) for c in _chunks(recs, batch)]
    channel = Channel("127.0.0.1", port)
    try:
        async with channel.request("/laas.v1.LogIngest/PushStream",
                                   Cardinality.STREAM_STREAM, Prebuilt, PushAck,
                                   metadata={"x-api-key": "k"}) as stream:
            await stream.send_message(bodies[0])  # warm
            await stream.recv_message()
            start = time.perf_counter()

            async def send() -> None:
                for body in bodies:
                    await stream.send_message(body)
                await stream.end()

            sender = asyncio.create_task(send())
            accepted = 0
            for _ in bodies:
                ack = await stream.recv_message()
                assert ack is not None
                accepted += ack.accepted
            elapsed = time.perf_counter() - start
            await sender
    finally:
        channel.close()
    assert accepted == len(recs), f"accepted {accepted}"
    return len(recs) / elapsed


async def http(port: int, lines: Sequence[bytes], batch: int) -> float:
    import httpx

    bodies = [b"\n".join(c) for c in _chunks(lines, batch)]
    headers = {"content-type": "application/x-ndjson", "x-api-key": "k"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        (await client.post("/api/v1/logs", content=bodies[0], headers=headers)).raise_for_status()
        start = time.perf_counter()
        accepted = 0
        for body in bodies:
            r = await client.post("/api/v1/logs", content=body, headers=headers)
            r.raise_for_status()
            accepted += r.json()["accepted"]
        elapsed = time.perf_counter() - start
    assert accepted == len(lines), f"accepted {accepted}"
    return len(lines) / elapsed


# --- the run --------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) // 1024 // 1024 for ln in Path("/proc/meminfo").read_text()
                .splitlines() if ln.startswith("MemTotal")), 0)
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} vCPU, {mem} GiB RAM, Python {platform.python_version()}, "
            f"load average {load:.1f} at start; Kafka (local stack, one broker) on the same host")


async def run(total: int, small: int, repeat: int,
              only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every case `repeat` times, interleaved; each keeps its best run (the box is shared).

    `only`: server kinds to run (default all); the raw producer cases always run."""
    from app.kafka.topics import RAW, topic_name
    from app.settings import load_settings

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = load_settings(topic_prefix=prefix)
    topic = topic_name(settings, RAW)
    await create_topic(settings, topic)
    children = {kind: Child(kind, prefix) for kind in SERVERS if not only or kind in only}
    rows = []
    try:
        for batch in BATCHES:
            n = small if batch == 1 else total
            recs, lines = records(n), ndjson(small)  # HTTP is slower: fewer records
            row: dict[str, Any] = {"batch": batch, "records": n, "http records": small}
            cases: dict[str, tuple[Any, tuple[Any, ...]]] = {
                "raw": (raw, (settings, topic, recs, None)),
                "raw/batch": (raw, (settings, topic, recs, batch)),
            }
            if "gateway" in children:
                port = children["gateway"].port
                cases["gateway unary"] = (grpc_unary, (port, recs, batch))
                cases["gateway stream"] = (grpc_stream, (port, recs, batch))
            if "http" in children:
                cases["http ndjson"] = (http, (children["http"].port, lines, batch))
            for _ in range(repeat):
                for name, (case, case_args) in cases.items():
                    row[name] = max(row.get(name, 0.0), await case(*case_args))
            print(" ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items()), flush=True)
            rows.append(row)
    finally:
        for child in children.values():
            child.stop()
    return rows


CASES = ("gateway unary", "gateway stream", "http ndjson")


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """A markdown table; ratios are to the better of the two raw producer figures."""
    head = ("| batch | records (HTTP) | raw, send all (rec/s) | raw, wait per batch (rec/s) | "
            + " | ".join(f"{c} (rec/s, ratio)" for c in CASES) + " |")
    lines = [head, "|" + " --- |" * (4 + len(CASES))]
    for row in rows:
        best = max(row["raw"], row["raw/batch"])
        cells = [f"{row[c]:,.0f} ({row[c] / best:.2f})" if c in row else "—" for c in CASES]
        lines.append(f"| {row['batch']} | {row['records']} ({row['http records']}) | "
                     f"{row['raw']:,.0f} | {row['raw/batch']:,.0f} | " + " | ".join(cells) + " |")
    only = f" --only {args.only}" if args.only else ""
    return (f"Run `python -m bench.ingest_gateway --records {args.records} --small {args.small}"
            f" --repeat {args.repeat}{only}` (best of {args.repeat}) on "
            f"{time.strftime('%Y-%m-%d %H:%M')}.\n\nMachine: {machine()}.\n\n"
            + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000,
                        help="records at batch size 1, and for HTTP at every size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--only", default="",
                        help=f"comma-separated servers to run, of {', '.join(SERVERS)}")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(SERVERS[args.serve](args.prefix, args.port))
        return
    only = [k for k in args.only.split(",") if k]
    table = report(asyncio.run(run(args.records, args.small, args.repeat, only)), args)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
