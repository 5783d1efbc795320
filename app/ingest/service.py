"""The ingest use case shared by gRPC and HTTP: authenticate, rate-limit, validate, write."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.ingest.auth import KeyVerifier, Principal, authenticate, key_from_headers
from app.ingest.convert import ConversionError
from app.ingest.errors import BatchRejected, RateLimited, RecordRejected, Unavailable
from app.ingest.ratelimit import RateLimiter
from app.ingest.validate import (
    Limits,
    check_shared,
    idempotency_key_problem,
    validate_record,
)
from app.ingest.writer import KafkaWriter
from app.query.parser import printable
from app.runtime.metrics import METRICS
from app.settings import Settings
from protos.laas.v1 import LogRecord, PushAck, Rejection, Resource

# A decoded record (betterproto `LogRecord`, or its upb form from the gateway's fast path, see
# `app.ingest.wire`) or why it could not be decoded.
Item = LogRecord | ConversionError | RecordRejected | Any


class IngestService:
    """Everything an ingest endpoint does after decoding its request.

    `push` answers a `PushAck` only after Kafka acknowledged every accepted record; it raises
    `BatchRejected`, `RateLimited` or `KafkaUnavailable` for the whole request.
    """

    def __init__(
        self,
        settings: Settings,
        verifier: KeyVerifier,
        *,
        writer: KafkaWriter | None = None,
        limiter: RateLimiter | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.verifier = verifier
        self.writer = writer or KafkaWriter(settings)
        self.limiter = limiter or RateLimiter.from_settings(settings)
        self.clock_ns = clock_ns

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The ingest principal of request headers/metadata (lower-case names)."""
        return await authenticate(self.verifier, key_from_headers(headers))

    def check_batch(self, count: int, size: int) -> None:
        """Refuse a request over the batch limits before looking at its records."""
        if count > self.limits.max_batch_records:
            raise BatchRejected(f"{count} records in one request, at most "
                                f"{self.limits.max_batch_records} allowed", too_large=True)
        if size > self.limits.max_batch_bytes:
            raise BatchRejected(f"{size} bytes in one request, at most "
                                f"{self.limits.max_batch_bytes} allowed", too_large=True)

    async def push(
        self,
        principal: Principal,
        items: Sequence[Item],
        *,
        sizes: Sequence[int] | None = None,
        default_resource: Resource | Any | None = None,
        batch_id: int = 0,
        source: str = "gateway",
        idempotency_key: str = "",
        path: str = "",
        shared_resources: bool = False,
    ) -> PushAck:
        """Validate `items`, write the valid records, and report the invalid ones by index.

        `idempotency_key` (validated by the endpoint, `check_idempotency_key`) is stamped on
        every record with the record's index in `items`, so a resent batch maps onto the same
        documents (see docs/ingest.md, *Idempotent batches*). `path` names the endpoint in
        the metrics (grpc, otlp-grpc, http-ndjson, http-json, otlp-http; default from `source`).
        `shared_resources` (OTLP exports, whose records carry copies of their `ScopeLogs`'
        resource and scope, normalised at decoding): a record whose resource and scope equal
        the previous record's has them checked once for all (`validate.check_shared`), not
        again per record; the same refusals, each naming its own record.
        """
        path = path or ("grpc" if source == "gateway" else source)
        self.check_batch(len(items), sum(sizes) if sizes else 0)
        now = self.clock_ns()
        valid: list[Any] = []
        indexes: list[int] = []
        rejections: list[Rejection] = []
        shared: tuple[Any, Any] | None = None  # the last resource and scope checked
        refusal: tuple[str, str] | None = None  # theirs
        for i, item in enumerate(items):
            try:
                if isinstance(item, RecordRejected):
                    raise item
                if isinstance(item, ConversionError):
                    raise RecordRejected(i, item.field, item.reason)
                if shared_resources:
                    resource, scope = item.resource, item.scope
                    if shared is None or not (resource == shared[0] and scope == shared[1]):
                        refusal = check_shared(item, self.limits, default_resource)
                        shared = resource, scope
                valid.append(validate_record(
                    item, i, self.limits, now, default_resource=default_resource,
                    size=sizes[i] if sizes else None, shared_checked=shared_resources,
                    shared_refusal=refusal))
                indexes.append(i)
            except RecordRejected as exc:
                rejections.append(Rejection(index=exc.index, field=printable(exc.field),
                                            reason=printable(exc.reason)))
        if rejections:
            METRICS.inc("laas_ingest_rejected_total", len(rejections), path=path, reason="invalid")
        if valid:
            started = time.monotonic()
            try:
                self.limiter.check(principal.tenant_id, len(valid), principal.rate_limit)
                await self.writer.write(valid, tenant_id=principal.tenant_id,
                                        tenant_slug=principal.tenant_slug, source=source,
                                        batch_key=idempotency_key, indexes=indexes)
            except (RateLimited, Unavailable) as exc:
                METRICS.inc("laas_ingest_rejected_total", len(valid), path=path,
                            reason="rate_limited" if isinstance(exc, RateLimited)
                            else "kafka_unavailable")
                raise
            METRICS.observe("laas_kafka_produce_seconds", time.monotonic() - started, path=path)
            METRICS.inc("laas_ingest_accepted_total", len(valid), path=path)
        return PushAck(accepted=len(valid), rejections=rejections, batch_id=batch_id)

    @staticmethod
    def check_idempotency_key(*given: tuple[str, str | None]) -> str:
        """The batch's idempotency key from its (source name, value) places, "" if none.

        Sources are e.g. `("idempotency-key", metadata value)` and `("LogBatch.idempotency_key",
        field)`; None or (for a protobuf field) "" means absent. Raises `BatchRejected` naming
        the source for an invalid key, or when two sources disagree.
        """
        found: list[tuple[str, str]] = []
        for name, value in given:
            if value is None:
                continue
            problem = idempotency_key_problem(value)
            if problem:
                raise BatchRejected(f"{name}: {problem}")
            found.append((name, value))
        if len({v for _, v in found}) > 1:
            raise BatchRejected(f"{found[0][0]} {found[0][1]!r} and {found[1][0]} "
                                f"{found[1][1]!r} differ; give one idempotency key")
        return found[0][1] if found else ""

    async def close(self) -> None:
        await self.writer.stop()
        close = getattr(self.verifier, "aclose", None)  # DatabaseVerifier: pending key uses
        if close is not None:
            await close()
