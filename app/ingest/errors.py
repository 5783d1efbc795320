"""Typed ingest errors: each carries what the caller needs to fix or retry the request."""

from __future__ import annotations


class IngestError(Exception):
    """Root of every ingest error."""


class RecordRejected(IngestError):
    """One record is invalid; the rest of its batch is unaffected."""

    def __init__(self, index: int, field: str, reason: str) -> None:
        super().__init__(f"record {index}: {field}: {reason}")
        self.index = index
        self.field = field
        self.reason = reason


class BatchRejected(IngestError):
    """The whole request is invalid (too many records, too many bytes, unreadable)."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


class Unauthenticated(IngestError):
    """No API key, or one that is unknown, expired or revoked."""


class PermissionDenied(IngestError):
    """A valid key without the `ingest` scope."""


class RateLimited(IngestError):
    """The tenant's ingest rate is exhausted; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float, rate: float) -> None:
        super().__init__(f"tenant ingest rate limit of {rate:g} records/s exceeded; "
                         f"retry after {retry_after:.2f}s")
        self.retry_after = retry_after
        self.rate = rate


class Unavailable(IngestError):
    """A backend (Kafka, the user database) cannot serve the request now; retry later."""

    service = "service"

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(f"{self.service} unavailable: {reason}; retry after {retry_after:g}s")
        self.reason = reason
        self.retry_after = retry_after


class KafkaUnavailable(Unavailable):
    """Kafka did not acknowledge the records in time; nothing of the batch was acknowledged."""

    service = "Kafka"


class DatabaseUnavailable(Unavailable):
    """The user database could not be asked about an API key."""

    service = "user database"
