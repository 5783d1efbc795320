"""Records/s of the shipper endpoints (Loki push JSON and protobuf, Elasticsearch `_bulk`) next
to NDJSON ingest (`POST /api/v1/logs`), measured in the same run.

    python -m bench.ingest_shippers [--records N] [--repeat N] [--out FILE]

Not a test (needs the local Kafka; run it on demand). One server process (`--serve`, started
here: uvicorn with the three route modules, a fixed principal, the real `KafkaWriter` on a fresh
`bench<uuid>.logs.raw` topic) and one client sending prebuilt bodies one request at a time, so
the client measures the server. The same records in each format: message, level, service,
host, time and two attributes (`user`, `n`), as a shipper would write them:
- NDJSON: the LaaS shorthand (`message`, `level`, `service`, `host`, `ts`, ...);
- `_bulk`: `{"index": {}}` + an ECS document (`@timestamp`, `log.level`, `host.name`,
  `service.name`), read through the shipper field conventions;
- Loki: one stream per (service, host, level), labels `service_name`, `host`, `level`, the two
  attributes as structured metadata; JSON, and protobuf in a snappy block.
Target (issue 17): Loki push and `_bulk` at least 0.5x NDJSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.ingest_gateway import ROOT, _chunks, _service, create_topic, free_port_pair, machine

BATCHES = (100, 1000)
SERVICES = ("api", "db", "cart", "auth")
LEVELS = ("info", "warn", "error")


async def _serve(prefix: str, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette

    from web import ingest, ingest_bulk, ingest_loki

    app = Starlette(routes=ingest.routes + ingest_loki.routes + ingest_bulk.routes)
    app.state.ingest = _service(prefix)
    await app.state.ingest.writer.start()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await task


# --- the same records in each format ----------------------------------------------------------

def records(n: int) -> list[dict[str, Any]]:
    now = time.time_ns()
    return [{"message": f"GET /items/{i} took {i % 97} ms", "level": LEVELS[i % 3],
             "service": SERVICES[i % 4], "host": f"node-{i % 5}", "ts": now + i,
             "user": f"u{i % 50}", "n": str(i)} for i in range(n)]


def ndjson(batch: Sequence[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in batch)


def bulk(batch: Sequence[dict[str, Any]]) -> bytes:
    out = []
    for r in batch:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r["ts"] / 1e9))
        doc = {"@timestamp": f"{stamp}.{r['ts'] % 10**9:09d}Z", "message": r["message"],
               "log.level": r["level"], "host.name": r["host"], "service.name": r["service"],
               "user": r["user"], "n": r["n"]}
        out.append(b'{"index":{}}\n' + json.dumps(doc).encode())
    return b"\n".join(out) + b"\n"


def _streams(batch: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[Any]]:
    streams: dict[tuple[str, str, str], list[Any]] = {}
    for r in batch:
        streams.setdefault((r["service"], r["host"], r["level"]), []).append(r)
    return streams


def loki_json(batch: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"streams": [
        {"stream": {"service_name": s, "host": h, "level": lv},
         "values": [[str(r["ts"]), r["message"], {"user": r["user"], "n": r["n"]}] for r in rs]}
        for (s, h, lv), rs in _streams(batch).items()]}).encode()


def loki_protobuf(batch: Sequence[dict[str, Any]]) -> bytes:
    import cramjam

    from protos.loki import push_pb2

    request = push_pb2.PushRequest()
    for (s, h, lv), rs in _streams(batch).items():
        stream = request.streams.add(labels=f'{{service_name="{s}", host="{h}", level="{lv}"}}')
        for r in rs:
            entry = stream.entries.add(line=r["message"])
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(r["ts"], 10**9)
            entry.structuredMetadata.add(name="user", value=r["user"])
            entry.structuredMetadata.add(name="n", value=r["n"])
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


# path, content type, body builder, accepted count of a 2xx answer
Case = tuple[str, str, Callable[[Sequence[dict[str, Any]]], bytes], Callable[[Any, int], int]]
CASES: dict[str, Case] = {
    "ndjson": ("/api/v1/logs", "application/x-ndjson", ndjson,
               lambda r, n: int(r.json()["accepted"])),
    "es _bulk": ("/_bulk", "application/x-ndjson", bulk,
                 lambda r, n: 0 if r.json()["errors"] else n),
    "loki json": ("/loki/api/v1/push", "application/json", loki_json,
                  lambda r, n: n if r.status_code == 204 else 0),
    "loki protobuf": ("/loki/api/v1/push", "application/x-protobuf", loki_protobuf,
                      lambda r, n: n if r.status_code == 204 else 0),
}


async def measure(port: int, case: Case, recs: Sequence[dict[str, Any]], batch: int) -> float:
    import httpx

    path, media, build, accepted_of = case
    bodies = [(build(c), len(c)) for c in _chunks(recs, batch)]
    headers = {"content-type": media, "authorization": "Bearer k"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        (await client.post(path, content=bodies[0][0], headers=headers)).raise_for_status()
        start = time.perf_counter()
        accepted = 0
        for body, count in bodies:
            r = await client.post(path, content=body, headers=headers)
            r.raise_for_status()
            accepted += accepted_of(r, count)
        elapsed = time.perf_counter() - start
    assert accepted == len(recs), f"{path}: accepted {accepted} of {len(recs)}"
    return len(recs) / elapsed


async def run(total: int, repeat: int) -> list[dict[str, Any]]:
    """Every case `repeat` times, interleaved; each keeps its best run (the box is shared)."""
    from app.kafka.topics import RAW, topic_name
    from app.settings import load_settings

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    await create_topic(load_settings(topic_prefix=prefix), topic_name(load_settings(
        topic_prefix=prefix), RAW))
    port = free_port_pair()
    proc = subprocess.Popen([sys.executable, "-m", "bench.ingest_shippers", "--serve",
                             "--prefix", prefix, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("server did not start")
    rows = []
    try:
        recs = records(total)
        for batch in BATCHES:
            row: dict[str, Any] = {"batch": batch, "records": total}
            for _ in range(repeat):
                for name, case in CASES.items():
                    row[name] = max(row.get(name, 0.0), await measure(port, case, recs, batch))
            print(" ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items()), flush=True)
            rows.append(row)
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """A markdown table; ratios are to NDJSON ingest of the same batch size and run."""
    names = [n for n in CASES if n != "ndjson"]
    lines = ["| batch | records | ndjson (rec/s) | "
             + " | ".join(f"{n} (rec/s, ratio)" for n in names) + " |",
             "|" + " --- |" * (3 + len(names))]
    for row in rows:
        cells = [f"{row[n]:,.0f} ({row[n] / row['ndjson']:.2f})" for n in names]
        lines.append(f"| {row['batch']} | {row['records']} | {row['ndjson']:,.0f} | "
                     + " | ".join(cells) + " |")
    return (f"Run `python -m bench.ingest_shippers --records {args.records} --repeat "
            f"{args.repeat}` (best of {args.repeat}) on {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
            f"Machine: {machine()}.\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.prefix, args.port))
        return
    table = report(asyncio.run(run(args.records, args.repeat)), args)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
