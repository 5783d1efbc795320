"""Repeated log lines are rate limited, and the next period says how many were dropped."""

from __future__ import annotations

import logging

import pytest

from app.runtime.logfilter import RepeatFilter, quiet_repeats


def record(msg: str, *args: object, name: str = "aiokafka.client") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_at_most_burst_per_period_then_a_count() -> None:
    now = [0.0]
    f = RepeatFilter(burst=3, period=10.0, clock=lambda: now[0])
    passed = [f.filter(record("Unable connect to node with id %s", i)) for i in range(100)]
    assert passed.count(True) == 3 and passed[:3] == [True] * 3
    assert f.filter(record("another message"))  # other templates are counted apart
    now[0] = 11.0
    summary = record("Unable connect to node with id %s", 1)
    assert f.filter(summary)
    assert "97 repeats" in summary.getMessage()
    assert f.filter(record("Unable connect to node with id %s", 2))  # a fresh budget


def test_installed_on_the_noisy_loggers(caplog: pytest.LogCaptureFixture) -> None:
    quiet_repeats(("laas.test.noisy",))
    quiet_repeats(("laas.test.noisy",))  # idempotent
    logger = logging.getLogger("laas.test.noisy")
    assert sum(isinstance(f, RepeatFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.ERROR, logger="laas.test.noisy"):
        for i in range(50):
            logger.error("Unable to update metadata from %s", i)
    assert len(caplog.records) == 5
