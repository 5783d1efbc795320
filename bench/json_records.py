"""µs per JSON record: the JSON reader (`pb_record_from_json`, upb), and normalize.

    python -m bench.json_records [--n 2000] [--repeat 5]

No services needed; one core. Prints the best of `repeat` runs of `n` records for each case:
a shorthand record as HTTP ingest and direct producers send it, the full proto3 JSON form the
Python client sends, and `app.pipeline.normalize.normalize` of a raw Kafka record holding each
(JSON, with the ingest stamp) next to the same record as protobuf.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from typing import Any

from app.ingest.jsonpb import pb_record_from_json
from app.kafka.stamp import Stamps
from app.pipeline.normalize import RawMessage, normalize

NOW = time.time_ns()
SHORTHAND = {"message": "GET /api/items/42 200 in 17ms", "level": "info",
             "service": "api", "host": "node-1", "ts": "2026-11-27T10:00:00.123Z"}
FULL = {"timeUnixNano": str(NOW), "severityNumber": 9, "severityText": "INFO",
        "body": {"stringValue": "GET /api/items/42 200 in 17ms"},
        "attributes": {"logger.name": {"stringValue": "app"},
                       "code.lineno": {"intValue": "42"},
                       "thread.name": {"stringValue": "MainThread"}},
        "resource": {"serviceName": "api", "host": "node-1"}}
HEADERS = {"laas-tenant-id": b"1", "laas-tenant": b"acme", "laas-source": b"kafka"}
STAMPS = Stamps(b"laas-bench-secret")


def best_us(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """Best per-call time in µs over `repeat` runs of `n` calls."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def raw(value: bytes, ctype: bytes) -> RawMessage:
    """A stamped record, signed as the gateway signs it (the worker checks the signature)."""
    headers = list({**HEADERS, "content-type": ctype}.items())
    return RawMessage("logs.raw", 0, 1, NOW // 1_000_000, b"1/api", value,
                      dict(STAMPS.sign(b"1/api", value, headers)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pb_value = pb_record_from_json(FULL).SerializeToString()
    cases: dict[str, Callable[[], Any]] = {
        "pb_record_from_json shorthand (upb)": lambda: pb_record_from_json(SHORTHAND),
        "pb_record_from_json full form (upb)": lambda: pb_record_from_json(FULL),
    }
    for name, doc in (("shorthand", SHORTHAND), ("full form", FULL)):
        msg = raw(json.dumps(doc).encode(), b"application/json")
        cases[f"normalize JSON {name}"] = functools.partial(normalize, msg, now_ns=NOW,
                                                            stamps=STAMPS)
    pb_msg = raw(pb_value, b"application/x-protobuf; messageType=laas.v1.LogRecord")
    cases["normalize protobuf (same record)"] = lambda: normalize(pb_msg, now_ns=NOW,
                                                                  stamps=STAMPS)
    for name, fn in cases.items():
        print(f"| {name} | {best_us(fn, args.n, args.repeat):.1f} |", flush=True)


if __name__ == "__main__":
    main()
