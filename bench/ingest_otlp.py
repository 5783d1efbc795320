"""OTLP ingest records/s next to laas.v1 Push and a raw aiokafka producer, in one run.

    python -m bench.ingest_otlp [--records N] [--repeat N] [--out FILE]

Not a test (needs the local Kafka; run it on demand). The real gateway (`app.ingest.gateway`, grpcio
aio) runs in its own process with its OTLP/HTTP port (as `bench.ingest_gateway --serve
gateway`), authenticating with a fixed principal and writing to a fresh topic with the real
`KafkaWriter`. Requests are prebuilt bytes, so the client measures the server. Cases, for
batches of 100 and 1000 records, one request at a time:
- raw: `AIOKafkaProducer`, all sends then one wait (`bench.ingest_gateway.raw`);
- laas.v1 Push: a `LogBatch` over gRPC (grpcio client, no compression);
- OTLP/gRPC: an `ExportLogsServiceRequest` of the same records (one resource, one scope),
  without compression and with gzip (grpcio compresses each call);
- OTLP/HTTP: the same request, protobuf and JSON, `POST /v1/logs` on the gateway's OTLP/HTTP
  port (httpx, no compression).
Ratios are to laas.v1 Push of the same batch size (the target: OTLP >= 0.8 at batch 1000).

The client runs on the same cores and waits for each reply, so its own work (gzip compression,
HTTP framing of a larger JSON body) counts against the records/s. The CPU time of the gateway
process (all its threads, Kafka producer included; /proc schedstat) and of the client
process over each timed loop are reported per record as well: the server's share is what LaaS
costs, whatever the client spends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.ingest_gateway import Child, batch_bytes, create_topic, machine, raw, records

BATCHES = (100, 1000)
META = (("x-api-key", "k"),)


def otlp_requests(n: int, batch: int) -> list[bytes]:
    """Serialized OTLP export requests of `batch` records each: the records of
    `bench.ingest_gateway.records` (an access-log line, `user`, service and host)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    now = time.time_ns()
    resource = Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value="bench")),
        KeyValue(key="host.name", value=AnyValue(string_value="bench-host"))])
    out = []
    for start in range(0, n, batch):
        recs = [LogRecord(
            time_unix_nano=now + i, severity_text="INFO",
            body=AnyValue(string_value=f"GET /api/items/{i} 200 in {i % 97}ms"),
            attributes=[KeyValue(key="user", value=AnyValue(string_value=f"user{i % 50}"))])
            for i in range(start, min(n, start + batch))]
        out.append(ExportLogsServiceRequest(resource_logs=[ResourceLogs(
            resource=resource, scope_logs=[ScopeLogs(
                scope=InstrumentationScope(name="bench"), log_records=recs)])])
            .SerializeToString())
    return out


def otlp_json(body: bytes) -> bytes:
    """The OTLP/JSON encoding of a serialized export request (hex ids, integer enums)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )

    doc = json_format.MessageToDict(ExportLogsServiceRequest.FromString(body),
                                    use_integers_for_enums=True)
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for rec in sl.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in rec:
                        rec[key] = base64.b64decode(rec[key]).hex()
    return json.dumps(doc).encode()


Result = tuple[float, float, float]  # records/s, server and client CPU µs per record


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of `process` so far: the sum of its threads' run time in
    /proc/<pid>/task/*/schedstat (nanoseconds; psutil's user + system count 10 ms ticks,
    too coarse for a few µs per record), psutil's figure where there is no schedstat."""
    total = 0
    try:
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
    except (FileNotFoundError, PermissionError):
        times = process.cpu_times()
        return float(times.user + times.system)
    return total / 1e9


async def _timed(bodies: Sequence[bytes], send: Callable[[bytes], Awaitable[int]],
                 expect: int, server: psutil.Process) -> Result:
    accepted = await send(bodies[0])  # warm: connection, producer metadata
    client = psutil.Process()
    server_start, client_start = _cpu(server), _cpu(client)
    start = time.perf_counter()
    for body in bodies:
        accepted += await send(body)
    elapsed = time.perf_counter() - start
    server_used, client_used = _cpu(server) - server_start, _cpu(client) - client_start
    assert accepted == expect + expect // len(bodies), f"accepted {accepted}"
    return expect / elapsed, server_used / expect * 1e6, client_used / expect * 1e6


async def grpc_case(server: psutil.Process, port: int, method: str, bodies: Sequence[bytes],
                    n: int, gzip: bool = False) -> Result:
    import grpc

    from protos.laas.v1 import PushAck

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(method)
        compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression

        async def send(body: bytes) -> int:
            reply = await call(body, metadata=META, compression=compression)
            if method.endswith("/Push"):
                return PushAck().parse(reply).accepted
            assert reply == b"", reply  # no partial success
            return per_request

        per_request = n // len(bodies)
        return await _timed(bodies, send, n, server)


async def http_case(server: psutil.Process, port: int, bodies: Sequence[bytes], n: int,
                    media: str) -> Result:
    import httpx

    headers = {"content-type": media, "x-api-key": "k"}
    per_request = n // len(bodies)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        async def send(body: bytes) -> int:
            r = await client.post("/v1/logs", content=body, headers=headers)
            r.raise_for_status()
            assert r.content in (b"", b"{}"), r.content
            return per_request

        return await _timed(bodies, send, n, server)


CASES = ("laas.v1 Push", "OTLP/gRPC", "OTLP/gRPC gzip", "OTLP/HTTP protobuf",
         "OTLP/HTTP JSON")


async def run(total: int, repeat: int) -> list[dict[str, Any]]:
    """Every case `repeat` times, interleaved; each keeps its best run (the box is shared)."""
    from app.kafka.topics import RAW, topic_name
    from app.settings import load_settings

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = load_settings(topic_prefix=prefix)
    topic = topic_name(settings, RAW)
    await create_topic(settings, topic)
    child = Child("gateway", prefix)
    server = psutil.Process(child.proc.pid)
    rows = []
    try:
        for batch in BATCHES:
            recs = records(total)
            pushes = [batch_bytes(recs[i:i + batch]) for i in range(0, total, batch)]
            exports = otlp_requests(total, batch)
            jsons = [otlp_json(b) for b in exports]
            row: dict[str, Any] = {"batch": batch, "records": total}
            export = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
            http_port = child.port + 1
            cases: dict[str, tuple[Callable[..., Awaitable[Result]], tuple[Any, ...]]] = {
                "laas.v1 Push": (grpc_case, (server, child.port, "/laas.v1.LogIngest/Push",
                                             pushes, total)),
                "OTLP/gRPC": (grpc_case, (server, child.port, export, exports, total)),
                "OTLP/gRPC gzip": (grpc_case, (server, child.port, export, exports, total,
                                               True)),
                "OTLP/HTTP protobuf": (http_case, (server, http_port, exports, total,
                                                   "application/x-protobuf")),
                "OTLP/HTTP JSON": (http_case, (server, http_port, jsons, total,
                                               "application/json")),
            }
            for _ in range(repeat):
                row["raw"] = max(row.get("raw", 0.0), await raw(settings, topic, recs, None))
                for name, (case, case_args) in cases.items():
                    rate, server_us, client_us = await case(*case_args)
                    row[name] = max(row.get(name, 0.0), rate)
                    row[f"{name} server"] = min(row.get(f"{name} server", 1e9), server_us)
                    row[f"{name} client"] = min(row.get(f"{name} client", 1e9), client_us)
            print(" ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items()), flush=True)
            rows.append(row)
    finally:
        child.stop()
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace, host: str) -> str:
    """Two markdown tables: records/s, and CPU µs per record of the gateway process (server)
    and of the client; ratios are to laas.v1 Push of the same batch size (for CPU: Push's
    server CPU per record over the case's, so above 1 is cheaper, like records/s)."""
    head = ("| batch | records | raw producer (rec/s) | "
            + " | ".join(f"{c} (rec/s, x Push)" for c in CASES) + " |")
    lines = [head, "|" + " --- |" * (3 + len(CASES))]
    cpu_head = ("| batch | " + " | ".join(f"{c} (server µs/rec, x Push; client µs/rec)"
                                         for c in CASES) + " |")
    cpu_lines = [cpu_head, "|" + " --- |" * (1 + len(CASES))]
    for row in rows:
        push = row["laas.v1 Push"]
        cells = [f"{row[c]:,.0f} ({row[c] / push:.2f})" for c in CASES]
        lines.append(f"| {row['batch']} | {row['records']} | {row['raw']:,.0f} | "
                     + " | ".join(cells) + " |")
        push_cpu = row["laas.v1 Push server"]
        cpu_cells = [f"{row[f'{c} server']:.1f} ({push_cpu / row[f'{c} server']:.2f}); "
                     f"{row[f'{c} client']:.1f}" for c in CASES]
        cpu_lines.append(f"| {row['batch']} | " + " | ".join(cpu_cells) + " |")
    return (f"Run `python -m bench.ingest_otlp --records {args.records} --repeat {args.repeat}`"
            f" (best of {args.repeat}) on {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
            f"Machine: {host}.\n\n" + "\n".join(lines) + "\n\n"
            "CPU time per record over the timed loop (the lowest of the runs), gateway process "
            "and client process:\n\n" + "\n".join(cpu_lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the best counts")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    host = machine()  # the load average before the run
    table = report(asyncio.run(run(args.records, args.repeat)), args, host)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
