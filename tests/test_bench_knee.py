"""The whole-system bench's saturation search and knee choice (bench/knee.py), without a stack."""

from __future__ import annotations

from typing import Any

from bench.knee import (
    FELL_BEHIND,
    GATEWAY,
    GENERATOR,
    KEPT_UP,
    SLOW,
    Plan,
    batch_for,
    knee,
    next_rate,
    verdict,
)

PLAN = Plan(ladder=(250, 500, 1000), factor=2.0, max_rate=16_000, bisections=1)


def row(offered: int, acked: float | None = None, drain: float | None = 0.5,
        p50: float = 700.0, client_cpu: float = 30.0) -> dict[str, Any]:
    acked = offered if acked is None else acked
    r: dict[str, Any] = {"offered": offered, "acked_per_s": acked, "indexed_per_s": acked * 0.95,
         "drain_s": drain, "searchable_ms": {"p50": p50}, "cpu": {"bench client": client_cpu}}
    r["verdict"] = verdict(r, 700.0)
    return r


def search(outcome: dict[int, dict[str, Any]], plan: Plan = PLAN) -> list[int]:
    """The offered rates `next_rate` picks when step `rate` behaves like `outcome[rate]`
    (default: keeps up)."""
    rows: list[dict[str, Any]] = []
    while (rate := next_rate(rows, plan)) is not None:
        rows.append(row(rate, **outcome.get(rate, {})))
        assert len(rows) < 50, "the search does not end"
    return [r["offered"] for r in rows]


def test_verdicts() -> None:
    assert row(1000)["verdict"] == KEPT_UP
    assert row(1000, drain=None)["verdict"] == FELL_BEHIND  # backlog not searchable in the wait
    assert row(1000, drain=3.5)["verdict"] == FELL_BEHIND
    behind = row(8000)
    behind["indexed_per_s"] = 5000  # drained fast after the step, but indexed 0.62 during it
    assert verdict(behind, 700.0) == FELL_BEHIND
    assert row(1000, p50=1500)["verdict"] == SLOW  # drained, but p50 above 2x the base
    assert row(1000, p50=float("nan"))["verdict"] == SLOW  # no probe became searchable
    assert row(1000, acked=950)["verdict"] == KEPT_UP  # within 10 % of the offered rate
    assert row(1000, acked=600, client_cpu=98)["verdict"] == GENERATOR
    assert row(1000, acked=600, client_cpu=40)["verdict"] == GATEWAY
    # behind wins over short: the pipeline's limit was found
    assert row(1000, acked=600, drain=None, client_cpu=98)["verdict"] == FELL_BEHIND


def test_rises_past_the_ladder_until_behind_then_bisects_once() -> None:
    rates = search({8000: {"drain": None}})
    assert rates == [250, 500, 1000, 2000, 4000, 8000, 6000]


def test_bisection_between_last_good_and_first_bad_in_the_ladder() -> None:
    assert search({500: {"drain": 9.0}, 1000: {"drain": 9.0}}) == [250, 500, 400]


def test_stops_at_the_cap_when_every_step_keeps_up() -> None:
    rates = search({})
    assert rates == [250, 500, 1000, 2000, 4000, 8000, 16_000]
    assert knee([row(r) for r in rates])["limit"] == "max_rate"
    capped = Plan(ladder=(250, 500), factor=3.0, max_rate=2000)
    assert search({}, capped) == [250, 500, 1500, 2000]  # the cap itself is the last step


def test_stops_when_the_generator_cannot_offer_the_rate() -> None:
    rates = search({4000: {"acked": 2500, "client_cpu": 99}})
    assert rates == [250, 500, 1000, 2000, 4000]
    found = knee([row(r, **({"acked": 2500, "client_cpu": 99} if r == 4000 else {}))
                  for r in rates])
    assert found["limit"] == GENERATOR and not found["found"]
    assert found["sustained_per_s"] == 2500  # what reached the pipeline, and it kept up


def test_no_bisection_between_close_rates() -> None:
    plan = Plan(ladder=(1000, 1100), factor=2.0, max_rate=10_000)
    assert search({1100: {"drain": None}}, plan) == [1000, 1100]


def test_knees_are_the_highest_good_steps_not_the_last() -> None:
    rows = [row(1000), row(2000), row(4000, drain=None), row(3000, p50=2000)]
    found = knee(rows)
    assert found["throughput_per_s"] == 3000  # drained, though slow
    assert found["sustained_per_s"] == 2000  # drained and prompt
    assert found["first_behind_offered"] == 4000 and found["found"]
    assert found["limit"] == FELL_BEHIND
    assert found["peak_acked_per_s"] == 4000


def test_slow_steps_do_not_stop_the_search_for_the_throughput_limit() -> None:
    slow = {"p50": 5000.0}
    rates = search({2000: slow, 4000: slow, 8000: {"drain": 12.0}})
    assert rates == [250, 500, 1000, 2000, 4000, 8000, 6000]
    rows = [row(r, **({"drain": 12.0} if r == 8000 else slow if r >= 2000 else {}))
            for r in rates]
    found = knee(rows)
    assert (found["throughput_per_s"], found["sustained_per_s"]) == (6000, 1000)


def test_knee_without_stored_verdicts_recomputes_them() -> None:
    rows = [row(1000), row(2000, drain=None)]
    for r in rows:
        del r["verdict"]
    assert knee(rows)["throughput_per_s"] == 1000


def test_batch_grows_with_the_rate_within_bounds() -> None:
    assert batch_for(250, 1000) == 100
    assert batch_for(8000, 1000) == 400
    assert batch_for(64_000, 1000) == 1000


def test_two_bisections_narrow_the_gap_from_the_right_side() -> None:
    plan = Plan(ladder=(1000,), factor=2.0, max_rate=64_000, bisections=2)
    # 8,000 keeps up, 16,000 falls behind: 12,000 (behind) then 10,000
    assert search({16_000: {"drain": None}, 12_000: {"drain": None}}, plan) == [
        1000, 2000, 4000, 8000, 16_000, 12_000, 10_000]
    # 12,000 keeps up: the next is between it and 16,000
    assert search({16_000: {"drain": None}}, plan) == [
        1000, 2000, 4000, 8000, 16_000, 12_000, 14_000]
