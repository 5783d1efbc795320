"""Per-source statistics as pure functions: fold an event into a table value, snapshot docs.

A table value is a small JSON dict: counts by severity, bytes, first/last seen (event time,
ns) and, per raw partition, the raw position (offset, array index) of the last event folded in.
Normalize reads each raw partition in order and a source's events all go to one `logs.events`
partition, so per key and raw partition the positions only grow — except for re-deliveries:
normalize re-emitting after a crash (new `logs.events` offsets, same raw position) and the
stats agent itself re-reading after a crash or rebalance (faust-streaming #502/#517). Both
carry a raw position at or below the stored one and `fold` skips them: the counts are
exactly-once in effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.pipeline.events import NS, LogEvent, iso_nanos


def fold(value: dict[str, Any] | None, event: LogEvent) -> dict[str, Any] | None:
    """The value after counting `event`; None if its raw position was counted already."""
    return fold_all(value, [event])[0]


def fold_all(value: dict[str, Any] | None, events: Iterable[LogEvent]
             ) -> tuple[dict[str, Any] | None, int]:
    """`fold` of each event in turn (the value is copied once, not once per event): the new
    value (None if no event was counted) and how many events were counted. Sums are kept in
    locals and written once (the analytics process folds every event twice: totals, window)."""
    base = value or {}
    positions: dict[str, list[int]] = dict(base.get("raw", {}))
    severity: dict[str, int] = {}
    count = size = 0
    first = last = 0
    counted: LogEvent | None = None
    where, of = "", ("", -1)
    for event in events:
        raw = event.raw
        if (raw.topic, raw.partition) != of:
            of = (raw.topic, raw.partition)
            where = f"{raw.topic}/{raw.partition}"
        stored = positions.get(where)
        if stored is not None and (stored[0], stored[1]) >= (raw.offset, raw.index):
            continue  # counted already (a re-delivery)
        positions[where] = [raw.offset, raw.index]
        severity[event.severity] = severity.get(event.severity, 0) + 1
        size += event.size
        if counted is None:
            first = last = event.time
        else:
            first, last = min(first, event.time), max(last, event.time)
        count += 1
        counted = event
    if counted is None:
        return None, 0
    totals = dict(base.get("severity", {}))
    for name, n in severity.items():
        totals[name] = totals.get(name, 0) + n
    return {"count": base.get("count", 0) + count, "bytes": base.get("bytes", 0) + size,
            "severity": totals, "first_seen": min(base.get("first_seen") or first, first),
            "last_seen": max(base.get("last_seen", 0), last), "raw": positions,
            "tenant_id": counted.tenant_id, "tenant": counted.tenant,
            "service": counted.service, "host": counted.host}, count


def window_doc(start: float, value: dict[str, Any]) -> dict[str, Any]:
    return {"start": iso_nanos(int(start * NS)), "count": value.get("count", 0),
            "bytes": value.get("bytes", 0), "severity": value.get("severity", {})}


def snapshot_doc(totals: dict[str, Any], windows: list[tuple[float, dict[str, Any]]],
                 window_seconds: int) -> dict[str, Any]:
    """The document of one source in the sources snapshot index."""
    return {
        "tenant_id": totals["tenant_id"],
        "tenant": totals.get("tenant", ""),
        "service": totals.get("service", ""),
        "host": totals.get("host", ""),
        "count": totals.get("count", 0),
        "bytes": totals.get("bytes", 0),
        "severity": totals.get("severity", {}),
        "first_seen": iso_nanos(totals.get("first_seen") or 0),
        "last_seen": iso_nanos(totals.get("last_seen") or 0),
        "window_seconds": window_seconds,
        "windows": [window_doc(start, v) for start, v in windows if v.get("count")],
    }


SOURCES_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "tenant_id": {"type": "keyword"},
        "tenant": {"type": "keyword"},
        "service": {"type": "keyword"},
        "host": {"type": "keyword"},
        "count": {"type": "long"},
        "bytes": {"type": "long"},
        "severity": {"type": "object", "enabled": False},
        "first_seen": {"type": "date_nanos"},
        "last_seen": {"type": "date_nanos"},
        "window_seconds": {"type": "integer"},
        "windows": {"type": "object", "enabled": False},
        "updated": {"type": "date"},
    },
}
