"""`since`/`until` values: ISO 8601 timestamps or durations back from now (`15m`, `24h`, `7d`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from app.pipeline.events import NS
from app.query.parser import printable

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RELATIVE = re.compile(r"(\d{1,6})\s*([smhdw])")
FRACTION = re.compile(r"\.(\d{1,9})")
# What Elasticsearch's `date_nanos` (every LaaS time field) can hold: 1970 to 2262-04-11.
EARLIEST_NS = 0
LATEST_NS = 2**63 - 1


@dataclass
class TimeError(ValueError):
    """A time parameter that could not be read: which one, and why."""

    parameter: str
    reason: str

    def __post_init__(self) -> None:
        self.reason = printable(self.reason)

    def __str__(self) -> str:
        return f"{self.parameter}: {self.reason}"


def parse_time(value: str, *, now_ns: int, parameter: str) -> int:
    """Nanoseconds since the epoch for `now`, a relative duration (`15m` ago) or ISO 8601,
    between 1970-01-01 and 2262-04-11 (what a `date_nanos` field holds)."""
    found = _parse_time(value, now_ns=now_ns, parameter=parameter)
    if not EARLIEST_NS <= found <= LATEST_NS:
        edge = "before 1970-01-01T00:00:00Z" if found < EARLIEST_NS else "after 2262-04-11"
        raise TimeError(
            parameter, f"'{value}' is {edge}; times from 1970 to 2262 are allowed"
        )
    return found


def _parse_time(value: str, *, now_ns: int, parameter: str) -> int:
    text = value.strip()
    if text == "now":
        return now_ns
    relative = RELATIVE.fullmatch(text)
    if relative:
        return now_ns - int(relative.group(1)) * UNITS[relative.group(2)] * NS
    if text.isdigit():
        raise TimeError(parameter, f"'{value}' is ambiguous; use ISO 8601 or a duration like 15m")
    fraction = FRACTION.search(text)
    nanos = int(fraction.group(1).ljust(9, "0")) if fraction else 0
    try:
        parsed = datetime.fromisoformat(FRACTION.sub("", text, count=1).replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(
            parameter,
            f"'{value}' is neither ISO 8601 (2026-11-27T10:00:00Z) nor a duration "
            "(30s, 15m, 24h, 7d, 2w)",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * NS + nanos


def time_range(
    since: str | None, until: str | None, *, now_ns: int, default_since: str = "15m"
) -> tuple[int, int]:
    """(since, until) in ns; `since` defaults to 15 minutes ago, `until` to now."""
    start = parse_time(since or default_since, now_ns=now_ns, parameter="since")
    end = parse_time(until, now_ns=now_ns, parameter="until") if until else now_ns
    if start >= end:
        raise TimeError("since", "must be before until")
    return start, end
