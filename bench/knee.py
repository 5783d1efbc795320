"""The saturation search of the whole-system bench: which rate to try next, and the knee.

Pure functions over the steady steps' result rows (dicts written by `bench.system.steady`), so
the search and the knee choice are unit-tested without a stack (tests/test_bench_knee.py).

A step *kept up* when its backlog was searchable within `KNEE_DRAIN_S` of the step's end and
its probes' ack → searchable p50 stayed within `KNEE_DELAY_X` of the lowest step's. A step that
kept up but whose acknowledged rate fell short of the offered one (below `SHORT_OF_OFFERED`)
did not find the pipeline's limit: either the load generator could not offer the rate (its
process near a full core, `GENERATOR_CPU`) or the gateway acknowledged no faster.

The search: the fixed ladder of the mode first, then ×`factor` from the highest step that kept
up, until a step falls behind (then `bisections` steps halfway between the last good and the
first bad rate), a step comes up short of the offered rate, or `max_rate` was tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KNEE_DRAIN_S = 3.0  # a step kept up if its backlog was searchable within this after it ended
KNEE_DELAY_X = 2.0  # ... and its ack → searchable p50 stayed within this factor of the lowest
SHORT_OF_OFFERED = 0.9  # acked/s below this fraction of the offered rate: the load was not offered
GENERATOR_CPU = 85.0  # bench client CPU % (100 = one core) from which the generator is the limit
BISECT_MIN_GAP = 1.15  # no bisection between rates closer than this factor

KEPT_UP, FELL_BEHIND, GENERATOR, GATEWAY = "kept up", "fell behind", "generator", "gateway"


@dataclass(frozen=True)
class Plan:
    """The rates of one saturation search."""

    ladder: tuple[int, ...]  # fixed first steps, rising
    factor: float = 2.0  # after the ladder: the highest kept-up rate times this
    max_rate: int = 64_000  # never offer more than this
    bisections: int = 1  # steps between the last good and the first bad rate


def kept_up(row: dict[str, Any], base_p50: float) -> bool:
    """Backlog searchable within `KNEE_DRAIN_S` and searchable p50 within `KNEE_DELAY_X` of the
    lowest step's p50 (`base_p50`)."""
    drain = row["drain_s"]
    p50 = row["searchable_ms"]["p50"]
    return (drain is not None and drain <= KNEE_DRAIN_S
            and p50 == p50 and p50 <= KNEE_DELAY_X * base_p50)  # p50 != p50: NaN, no probe


def verdict(row: dict[str, Any], base_p50: float) -> str:
    """`KEPT_UP`, `FELL_BEHIND`, or, when it kept up but the acknowledged rate stayed short of
    the offered one, who could not go faster: `GENERATOR` (the bench client near a full core)
    or `GATEWAY`."""
    if not kept_up(row, base_p50):
        return FELL_BEHIND
    offered = row["offered"]
    if offered and row["acked_per_s"] < SHORT_OF_OFFERED * offered:
        client = row.get("cpu", {}).get("bench client", 0.0)
        return GENERATOR if client >= GENERATOR_CPU else GATEWAY
    return KEPT_UP


def next_rate(rows: list[dict[str, Any]], plan: Plan) -> int | None:
    """The next offered rate, or None when the search is over. `rows` carry `offered` and
    `verdict` (`verdict()`), in the order they ran."""
    if any(r["verdict"] in (GENERATOR, GATEWAY) for r in rows):
        return None  # the offered load no longer reaches the pipeline: its limit is not here
    bad = [i for i, r in enumerate(rows) if r["verdict"] == FELL_BEHIND]
    if not bad:
        if len(rows) < len(plan.ladder):
            return plan.ladder[len(rows)]
        top = max((r["offered"] for r in rows), default=0)
        if top >= plan.max_rate:
            return None
        return min(plan.max_rate, round(top * plan.factor)) if top else plan.ladder[0]
    if len(rows) - bad[0] - 1 >= plan.bisections:
        return None
    lo = max((r["offered"] for r in rows if r["verdict"] == KEPT_UP), default=0)
    hi = min(r["offered"] for r in rows if r["verdict"] == FELL_BEHIND)
    if not lo or hi < lo * BISECT_MIN_GAP:
        return None
    return round((lo + hi) / 2 / 50) * 50


def knee(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest acknowledged rate of a step that kept up (`sustained_per_s`), the first
    rate that did not (`first_behind_offered`), why the search stopped (`limit`), and the
    peaks. (Counting "indexed during the step" instead misjudges short steps: ~1 s of records
    is always in flight, 10 % of a 10 s step.)"""
    base = rows[0]["searchable_ms"]["p50"]
    verdicts = [r.get("verdict") or verdict(r, base) for r in rows]
    kept = [r for r, v in zip(rows, verdicts, strict=True) if v in (KEPT_UP, GENERATOR, GATEWAY)]
    behind = [r["offered"] for r, v in zip(rows, verdicts, strict=True) if v == FELL_BEHIND]
    best = max(kept, key=lambda r: r["acked_per_s"]) if kept else rows[0]
    short = [v for v in verdicts if v in (GENERATOR, GATEWAY)]
    limit = (FELL_BEHIND if behind else short[0] if short else "max_rate")
    top = max(rows, key=lambda r: r["indexed_per_s"])
    return {"sustained_per_s": best["acked_per_s"], "sustained_offered": best["offered"],
            "found": bool(behind), "first_behind_offered": min(behind) if behind else None,
            "limit": limit, "peak_indexed_per_s": top["indexed_per_s"],
            "peak_acked_per_s": max(r["acked_per_s"] for r in rows)}


def batch_for(rate: float, largest: int, smallest: int = 100, flushes_per_s: int = 20) -> int:
    """Records per request at `rate`: what a shipper flushing by size (`largest`) or every
    1/`flushes_per_s` s sends, at least `smallest`."""
    return max(smallest, min(largest, int(rate // flushes_per_s)))
