"""`logs.raw` records into `normalize`: a Kafka record as a `RawMessage`, a direct producer's
API key checked (waiting while the user database is unreachable), then normalized.

Shared by the normalize agent (agents/normalize.py) and replay (app/pipeline/replay.py), so a
replayed record gives the same events as the live stream.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from app.ingest.auth import KeyVerifier, Principal
from app.ingest.errors import DatabaseUnavailable
from app.kafka.stamp import Stamps, headers_of
from app.pipeline.normalize import Limits, Normalized, RawMessage, normalize
from app.runtime.retry import Failure, RetryPolicy, retry
from app.settings import Settings

log = logging.getLogger(__name__)

KEY_CHECK_RETRY = RetryPolicy(DatabaseUnavailable, initial=0.5, maximum=15.0)  # no limit


def raw_message(message: Any) -> RawMessage:
    """The `RawMessage` of a Faust `Message` (timestamp in seconds) or aiokafka record (ms)."""
    ts = message.timestamp
    ms = int(ts * 1000) if isinstance(ts, float) else int(ts or 0)
    return RawMessage(topic=message.topic, partition=message.partition, offset=message.offset,
                      timestamp_ms=ms, key=message.key, value=message.value,
                      headers=headers_of(message.headers))


class KeyCheck:
    """API keys of direct producers, checked once per TTL (the ingest `DatabaseVerifier`)."""

    def __init__(self, settings: Settings, verifier: KeyVerifier | None = None) -> None:
        self.settings = settings
        self._verifier = verifier

    def verifier(self) -> KeyVerifier:
        if self._verifier is None:
            from app.ingest.auth import accounts_verifier

            verifier = accounts_verifier(self.settings)
            verifier.ttl = self.settings.api_key_cache_seconds
            self._verifier = verifier
        return self._verifier

    async def __call__(self, key: str) -> Principal | None:
        """The key's owner; waits (backpressure) while the user database is unreachable."""
        def unavailable(failure: Failure) -> None:
            log.warning("API key check: user database unavailable (%s); retry in %.1fs",
                        failure.error, failure.delay)

        return await retry(lambda: self.verifier()(key), KEY_CHECK_RETRY, on_retry=unavailable)


async def process(raw: RawMessage, keys: KeyCheck, limits: Limits, stamps: Stamps) -> Normalized:
    """The events and dead letters of one raw record, its API key (if any) checked first."""
    principal = await keys(raw.api_key) if raw.api_key else None
    return normalize(raw, principal, now_ns=time.time_ns(), limits=limits, stamps=stamps)
