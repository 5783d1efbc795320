"""The saturation search of the whole-system bench: which rate to try next, and the knee.

Pure functions over the steady steps' result rows (dicts written by `bench.system.steady`), so
the search and the knee choice are unit-tested without a stack (tests/test_bench_knee.py).

A step *fell behind* (throughput) when its backlog was not searchable within `KNEE_DRAIN_S`
of the step's end, or when the documents that became searchable during the step were fewer
than `KNEE_INDEXED` of those acknowledged: the pipeline indexed slower than the load came.
(The drain alone is lenient on a CPU-bound machine: once the load stops, the gateway's,
Kafka's and the generator's CPU goes to indexing, so a 10 s step overloaded by 30 % still
drains in under 3 s. A step that keeps up shows 0.83-0.95 here: ~1 s of records is always in
flight, 10 % of a 10 s step, and the count is sampled once a second.) A step that did not fall
behind but whose probes' ack → searchable p50 grew beyond `KNEE_DELAY_X` times the lowest
step's is *slow* (latency); otherwise it *kept up*. A step whose acknowledged rate fell short
of the offered one (below `SHORT_OF_OFFERED`) without falling behind did not find the
pipeline's limit: either the load generator could not offer the rate (its process near a full
core, `GENERATOR_CPU`) or the gateway acknowledged no faster.

The search looks for the throughput limit: the fixed ladder of the mode first, then ×`factor`
from the highest step that did not fall behind, until one does (then `bisections` steps halfway
between the highest rate that did not and the lowest that did), a step comes up short of the
offered rate, or `max_rate` was tried. Slow steps do not stop it (the probes' latency moves
with the machine's load, a backlog does not hide). Two knees come out: the *throughput* knee
(highest acked rate of a step that did not fall behind) and the *latency* knee (of a step that
kept up: backlog gone and p50 within bounds, the bench's knee before the search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KNEE_DRAIN_S = 3.0  # a step kept up if its backlog was searchable within this after it ended
KNEE_DELAY_X = 2.0  # ... and its ack → searchable p50 stayed within this factor of the lowest
KNEE_INDEXED = 0.75  # ... and searchable during the step ≥ this fraction of the acknowledged
SHORT_OF_OFFERED = 0.9  # acked/s below this fraction of the offered rate: the load was not offered
GENERATOR_CPU = 85.0  # bench client CPU % (100 = one core) from which the generator is the limit
BISECT_MIN_GAP = 1.15  # no bisection between rates closer than this factor

KEPT_UP, SLOW, FELL_BEHIND = "kept up", "slow", "fell behind"
GENERATOR, GATEWAY = "generator", "gateway"
NOT_BEHIND = (KEPT_UP, SLOW, GENERATOR, GATEWAY)


@dataclass(frozen=True)
class Plan:
    """The rates of one saturation search."""

    ladder: tuple[int, ...]  # fixed first steps, rising
    factor: float = 2.0  # after the ladder: the highest kept-up rate times this
    max_rate: int = 64_000  # never offer more than this
    bisections: int = 1  # steps between the last good and the first bad rate


def drained(row: dict[str, Any]) -> bool:
    """The step's backlog was searchable within `KNEE_DRAIN_S` of its end, and at least
    `KNEE_INDEXED` of its acknowledged records became searchable during the step."""
    return (row["drain_s"] is not None and row["drain_s"] <= KNEE_DRAIN_S
            and row["indexed_per_s"] >= KNEE_INDEXED * row["acked_per_s"])


def prompt(row: dict[str, Any], base_p50: float) -> bool:
    """The step's probes' searchable p50 within `KNEE_DELAY_X` of the lowest step's."""
    p50 = row["searchable_ms"]["p50"]
    return bool(p50 == p50 and p50 <= KNEE_DELAY_X * base_p50)  # p50 != p50: NaN, no probe


def verdict(row: dict[str, Any], base_p50: float) -> str:
    """`FELL_BEHIND`; when not, and the acknowledged rate stayed short of the offered one, who
    could not go faster: `GENERATOR` (the bench client near a full core) or `GATEWAY`; else
    `SLOW` or `KEPT_UP` by the probes' latency."""
    if not drained(row):
        return FELL_BEHIND
    offered = row["offered"]
    if offered and row["acked_per_s"] < SHORT_OF_OFFERED * offered:
        client = row.get("cpu", {}).get("bench client", 0.0)
        return GENERATOR if client >= GENERATOR_CPU else GATEWAY
    return KEPT_UP if prompt(row, base_p50) else SLOW


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
    lo = max((r["offered"] for r in rows if r["verdict"] in NOT_BEHIND), default=0)
    hi = min(r["offered"] for r in rows if r["verdict"] == FELL_BEHIND)
    if not lo or hi < lo * BISECT_MIN_GAP:
        return None
    return round((lo + hi) / 2 / 50) * 50


def knee(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The throughput knee (`throughput_per_s`: highest acknowledged rate of a step that did not
    fall behind), the latency knee (`sustained_per_s`: of a step that also kept its probes'
    p50 within bounds; the rate `laas bench --soak` halves), the first rate that fell behind,
    why the search stopped (`limit`) and the peaks. (Counting "indexed during the step" instead
    misjudges short steps: ~1 s of records is always in flight, 10 % of a 10 s step.)"""
    base = rows[0]["searchable_ms"]["p50"]
    verdicts = [r.get("verdict") or verdict(r, base) for r in rows]
    pairs = list(zip(rows, verdicts, strict=True))
    through = [r for r, v in pairs if v in NOT_BEHIND]
    prompt_rows = [r for r, v in pairs if v in NOT_BEHIND and prompt(r, base)]
    behind = [r["offered"] for r, v in pairs if v == FELL_BEHIND]
    short = [v for v in verdicts if v in (GENERATOR, GATEWAY)]
    limit = FELL_BEHIND if behind else short[0] if short else "max_rate"

    def best(group: list[dict[str, Any]]) -> dict[str, Any]:
        return max(group, key=lambda r: r["acked_per_s"]) if group else rows[0]

    top = max(rows, key=lambda r: r["indexed_per_s"])
    return {"throughput_per_s": best(through)["acked_per_s"],
            "throughput_offered": best(through)["offered"],
            "sustained_per_s": best(prompt_rows)["acked_per_s"],
            "sustained_offered": best(prompt_rows)["offered"],
            "found": bool(behind), "first_behind_offered": min(behind) if behind else None,
            "limit": limit, "peak_indexed_per_s": top["indexed_per_s"],
            "peak_acked_per_s": max(r["acked_per_s"] for r in rows)}


def batch_for(rate: float, largest: int, smallest: int = 100, flushes_per_s: int = 20) -> int:
    """Records per request at `rate`: what a shipper flushing by size (`largest`) or every
    1/`flushes_per_s` s sends, at least `smallest`."""
    return max(smallest, min(largest, int(rate // flushes_per_s)))
