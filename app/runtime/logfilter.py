"""Rate limit for repeated log lines: a broker restart made aiokafka log "Unable connect to
node" / "Unable to update metadata" ~34,000 times in 6 s (bench/results/FINDINGS.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

NOISY_LOGGERS = ("aiokafka.client", "aiokafka.conn", "aiokafka.consumer.fetcher",
                 "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender")


class RepeatFilter(logging.Filter):
    """Lets through at most `burst` records with the same logger, level and message template
    per `period` seconds; the first record of a new period says how many were dropped."""

    def __init__(self, burst: int = 5, period: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        start, count = self._seen.get(key, (now, 0))
        if now - start >= self.period:
            dropped = max(count - self.burst, 0)
            if dropped:
                record.msg = f"{record.msg} [{dropped} repeats in the last {now - start:.0f}s " \
                             "not logged]"
            self._seen[key] = (now, 1)
            return True
        self._seen[key] = (start, count + 1)
        if len(self._seen) > 1000:  # many distinct templates: start over, stay bounded
            self._seen.clear()
        return count < self.burst


def quiet_repeats(names: tuple[str, ...] = NOISY_LOGGERS) -> None:
    """Install one `RepeatFilter` on each named logger (records are filtered where logged)."""
    shared = RepeatFilter()
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(shared)
