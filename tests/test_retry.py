"""app/runtime/retry.py: the waits, the give-up rules and the hook, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from app.runtime.retry import Failure, RetryPolicy, retry, retry_blocking
from tests.clock import Clock


class Flaky:
    """Fails with the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self) -> str:
        return self()


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial=0.5, maximum=3.0)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.backoff(10_000) == 3.0  # no overflow


async def test_retries_until_success_with_growing_delays() -> None:
    clock = Clock()
    flaky = Flaky(OSError("a"), OSError("b"), OSError("c"))
    seen: list[Failure] = []
    result = await retry(flaky.acall, RetryPolicy(OSError, initial=1, maximum=3),
                         on_retry=seen.append, sleep=clock.asleep, clock=clock)
    assert result == "ok" and flaky.calls == 4
    assert clock.slept == [1, 2, 3]
    assert [(f.number, str(f.error), f.delay) for f in seen] == [
        (1, "a", 1), (2, "b", 2), (3, "c", 3)]
    assert [f.elapsed for f in seen] == [0, 1, 3]


async def test_other_errors_propagate_at_once() -> None:
    clock = Clock()
    flaky = Flaky(ValueError("not retried"))
    with pytest.raises(ValueError, match="not retried"):
        await retry(flaky.acall, RetryPolicy(OSError), sleep=clock.asleep, clock=clock)
    assert flaky.calls == 1 and clock.slept == []


async def test_retry_if_refines_the_type() -> None:
    clock = Clock()
    flaky = Flaky(OSError(1, "retried"), OSError(2, "final"))
    policy = RetryPolicy(OSError, retry_if=lambda e: isinstance(e, OSError) and e.errno == 1)
    with pytest.raises(OSError, match="final"):
        await retry(flaky.acall, policy, sleep=clock.asleep, clock=clock)
    assert flaky.calls == 2 and clock.slept == [0.5]


def test_attempts_limit_raises_the_last_error() -> None:
    clock = Clock()
    flaky = Flaky(*(OSError(str(n)) for n in range(10)))
    with pytest.raises(OSError, match="^2$"):
        retry_blocking(flaky, RetryPolicy(OSError, attempts=3), sleep=clock.sleep, clock=clock)
    assert flaky.calls == 3 and clock.slept == [0.5, 1.0]


def test_deadline_clips_the_last_wait_and_gives_up() -> None:
    clock = Clock()
    flaky = Flaky(*(OSError(str(n)) for n in range(10)))
    with pytest.raises(OSError):
        retry_blocking(flaky, RetryPolicy(OSError, initial=1, maximum=10, deadline=5),
                       sleep=clock.sleep, clock=clock)
    assert clock.slept == [1, 2, 2]  # 1 + 2 + (4 clipped to the 2 s left)
    assert flaky.calls == 4


def test_retry_after_replaces_the_backoff_but_not_the_schedule() -> None:
    class Busy(Exception):
        def __init__(self, after: float | None) -> None:
            self.after = after

    clock = Clock()
    flaky = Flaky(Busy(7.0), Busy(None), Busy(None))
    policy = RetryPolicy(Busy, initial=0.5, retry_after=lambda e: getattr(e, "after", None))
    assert retry_blocking(flaky, policy, sleep=clock.sleep, clock=clock) == "ok"
    assert clock.slept == [7.0, 1.0, 2.0]


def test_jitter_stays_within_its_band() -> None:
    policy = RetryPolicy(initial=10, maximum=10, jitter=0.2)
    waits = [policy.delay(1, OSError(), 0) for _ in range(200)]
    assert all(w is not None and 8 <= w <= 12 for w in waits)
    assert len(set(waits)) > 1


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="factor"):
        RetryPolicy(factor=0.5)


async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry(cancelled, RetryPolicy(BaseException), sleep=Clock().asleep)
    assert calls == 1


async def test_real_sleep_with_tiny_delays() -> None:
    flaky = Flaky(OSError(), OSError())
    assert await retry(flaky.acall, RetryPolicy(OSError, initial=0.001, maximum=0.002)) == "ok"
    assert flaky.calls == 3


async def test_key_check_waits_while_the_user_database_is_down(
        caplog: pytest.LogCaptureFixture) -> None:
    """A user of the helper: raw_input.KeyCheck retries DatabaseUnavailable, logging each wait."""
    from app.ingest.auth import Principal
    from app.ingest.errors import DatabaseUnavailable
    from app.pipeline.raw_input import KeyCheck
    from app.settings import Settings

    owner = Principal("7", "acme", "ingest", None)
    answers: list[Principal | BaseException] = [
        DatabaseUnavailable("down"), DatabaseUnavailable("down"), owner]

    async def verifier(key: str) -> Principal | None:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    check = KeyCheck(Settings(), verifier=verifier)
    with caplog.at_level("WARNING", logger="app.pipeline.raw_input"):
        assert await check("k") is owner
    assert [r.getMessage() for r in caplog.records] == [
        "API key check: user database unavailable (user database unavailable: down; retry "
        "after 1s); retry in 0.5s",
        "API key check: user database unavailable (user database unavailable: down; retry "
        "after 1s); retry in 1.0s"]
