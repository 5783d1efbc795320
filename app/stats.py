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

from typing import Any

from app.events import NS, LogEvent, iso_nanos


def fold(value: dict[str, Any] | None, event: LogEvent) -> dict[str, Any] | None:
    """The value after counting `event`; None if its raw position was counted already."""
    current = dict(value or {})
    where = f"{event.raw.topic}/{event.raw.partition}"
    position = [event.raw.offset, event.raw.index]
    seen = dict(current.get("raw", {}))
    if where in seen and seen[where] >= position:
        return None
    seen[where] = position
    severity = dict(current.get("severity", {}))
    severity[event.severity] = severity.get(event.severity, 0) + 1
    first = current.get("first_seen") or event.time
    return {
        "tenant_id": event.tenant_id,
        "tenant": event.tenant,
        "service": event.service,
        "host": event.host,
        "count": current.get("count", 0) + 1,
        "bytes": current.get("bytes", 0) + event.size,
        "severity": severity,
        "first_seen": min(first, event.time),
        "last_seen": max(current.get("last_seen", 0), event.time),
        "raw": seen,
    }


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
