"""The one retry helper: run a call again after a failure, with capped exponential backoff.

`RetryPolicy` says which errors are retried, how long to wait before each new attempt
(`initial * factor**(n-1)`, capped at `maximum`, spread by `jitter`; a `retry_after` the error
carries replaces it), and when to give up (`attempts`, `deadline`; neither: never). `retry` runs an
async call under it, `retry_blocking` a blocking one. After each failure that will be retried,
`on_retry` gets a `Failure` (attempt number, error, the delay about to be slept) to log and count;
the error of the last attempt is raised as it is, so callers keep their own exceptions. The sleep
and clock are parameters: a caller can keep a consumer alive while it waits, tests use fake ones.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Failure", "RetryPolicy", "retry", "retry_blocking"]


@dataclass(frozen=True)
class Failure:
    """A failed attempt that will be retried: `number` counts from 1; `delay` (seconds) is the
    wait before the next attempt; `elapsed` the seconds since the first attempt began."""

    number: int
    error: BaseException
    delay: float
    elapsed: float


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, the waits between attempts, and when to give up."""

    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception
    initial: float = 0.5
    maximum: float = 15.0
    factor: float = 2.0
    jitter: float = 0.0  # each delay times a uniform factor in [1 - jitter, 1 + jitter]
    attempts: int | None = None  # the most attempts in all (None: no limit)
    deadline: float | None = None  # seconds from the first attempt; no attempt starts after it
    retry_if: Callable[[BaseException], bool] | None = None  # a further test of a `retry_on` error
    retry_after: Callable[[BaseException], float | None] | None = None  # a delay the error asks

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.factor < 1:
            raise ValueError("retry delays: initial and maximum >= 0, factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"retry jitter {self.jitter}: must be in [0, 1)")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"retry attempts {self.attempts}: must be >= 1")

    def backoff(self, number: int) -> float:
        """The wait after failed attempt `number` (from 1), before jitter and `retry_after`."""
        return min(self.initial * self.factor ** min(number - 1, 64), self.maximum)

    def wait(self, number: int) -> float:
        """`backoff(number)` spread by `jitter`: the wait after failed attempt `number`, for a
        caller that signals it rather than sleeps (a sink's retry-after)."""
        wait = self.backoff(number)
        if self.jitter:
            wait *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return wait

    def delay(self, number: int, error: BaseException, elapsed: float) -> float | None:
        """The wait before the attempt after failed attempt `number`; None: give up (raise)."""
        if not isinstance(error, self.retry_on):
            return None
        if self.retry_if is not None and not self.retry_if(error):
            return None
        if self.attempts is not None and number >= self.attempts:
            return None
        asked = self.retry_after(error) if self.retry_after is not None else None
        wait = asked or self.wait(number)
        if self.deadline is not None:
            left = self.deadline - elapsed
            if left <= 0:
                return None
            wait = min(wait, left)
        return wait


async def retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[Failure], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    clock: Callable[[], float] | None = None,
) -> T:
    """`await call()` until it returns; each failure `policy` retries is passed to `on_retry`
    (inside the `except`: `log.exception` works), then slept off; any other failure (or the
    last one) propagates. Cancellation always does. `sleep` and `clock` default to
    `asyncio.sleep` and `time.monotonic`, looked up at each call."""
    sleep = sleep or asyncio.sleep
    clock = clock or time.monotonic
    started = clock()
    number = 0
    while True:
        number += 1
        try:
            return await call()
        except Exception as exc:
            wait = policy.delay(number, exc, clock() - started)
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(Failure(number, exc, wait, clock() - started))
        await sleep(wait)


def retry_blocking(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[Failure], None] | None = None,
    sleep: Callable[[float], object] | None = None,
    clock: Callable[[], float] | None = None,
) -> T:
    """`retry` for a blocking `call` (command-line tools, threads); `sleep` defaults to
    `time.sleep`."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    started = clock()
    number = 0
    while True:
        number += 1
        try:
            return call()
        except Exception as exc:
            wait = policy.delay(number, exc, clock() - started)
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(Failure(number, exc, wait, clock() - started))
        sleep(wait)
