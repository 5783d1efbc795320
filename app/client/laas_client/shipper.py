"""Sending batches of laas.v1 `LogRecord`s to LaaS over HTTP or gRPC, with idempotency keys.

Records are `laas_client.v1.LogRecord`s, or `protobuf` (upb) messages of the same schema
(`laas.v1.LogRecord` from the server's `logs_pb2`, as the `laas` command line makes them): those
are sent as they are, without a conversion (the client itself does not need `protobuf`).

Every batch carries an idempotency key (HTTP header `Idempotency-Key`, gRPC metadata
`idempotency-key`), the same on each retry of that batch: when a send failed although the
server had stored the records, the retry overwrites them in the index instead of duplicating.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import betterproto
import httpx

from laas_client.v1 import LogBatch, LogRecord


class ProtobufRecord(Protocol):
    """A `protobuf` message of the laas.v1 `LogRecord` schema (not a `LogRecord` here)."""

    def SerializeToString(self, **kwargs: Any) -> bytes: ...  # noqa: N802 - protobuf's name


Record = LogRecord | ProtobufRecord


class SendError(Exception):
    """A batch was not accepted; `retry` says whether sending it again may help."""

    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


@dataclass
class PushResult:
    accepted: int
    rejected: int
    errors: list[str]


class Shipper:
    """Sends batches of `LogRecord`s over HTTP (`http://...`) or gRPC (`grpc://host:port`)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._http: httpx.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: Any = None
        self._last: tuple[Sequence[Record], str] | None = None

    def push(self, records: Sequence[Record], *, key: str | None = None) -> PushResult:
        """Send one batch; raises `SendError`.

        `key` is the batch's idempotency key: pass the same one on every retry of the batch
        (`new_batch_key()` makes one). Without it, a push of the very same sequence object as
        the previous call reuses that call's key (a retry loop like `laas send`'s), and any
        other batch gets a new key.
        """
        if key is None:
            key = self._last[1] if self._last and self._last[0] is records else new_batch_key()
        self._last = (records, key)
        if self.url.startswith("grpc://"):
            return self._push_grpc(records, key)
        return self._push_http(records, key)

    def _push_http(self, records: Sequence[Record], key: str) -> PushResult:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        body = "\n".join(_json(r) for r in records)
        try:
            r = self._http.post(f"{self.url}/api/v1/logs", content=body.encode(), headers={
                "content-type": "application/x-ndjson", "x-api-key": self.api_key,
                "idempotency-key": key})
        except httpx.HTTPError as exc:
            raise SendError(f"{self.url}: {exc!r}", retry=True) from exc
        if r.status_code in (429, 502, 503, 504) or r.status_code >= 500:
            after = r.headers.get("retry-after")
            raise SendError(f"HTTP {r.status_code}: {r.text[:200]}", retry=True,
                            retry_after=float(after) if after else None)
        if r.status_code not in (200, 400) or "accepted" not in r.text:
            raise SendError(f"HTTP {r.status_code}: {r.text[:200]}", retry=False)
        out = r.json()
        return PushResult(out["accepted"], out["rejected"],
                          [f"line {e['line']}: {e['field']}: {e['reason']}"
                           for e in out["errors"]])

    def _push_grpc(self, records: Sequence[Record], key: str) -> PushResult:
        from grpclib.client import Channel
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        from laas_client.v1 import LogIngestStub

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        host, _, port = self.url.removeprefix("grpc://").rpartition(":")

        async def call() -> Any:
            if self._channel is None:
                self._channel = Channel(host or "127.0.0.1", int(port or 4317))
            stub = LogIngestStub(self._channel, metadata={"x-api-key": self.api_key,
                                                          "idempotency-key": key},
                                 timeout=self.timeout)
            return await stub.push(_batch(records))

        try:
            ack = self._loop.run_until_complete(call())
        except GRPCError as exc:
            retry = exc.status in (Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED,
                                   Status.DEADLINE_EXCEEDED)
            raise SendError(f"gRPC {exc.status.name}: {exc.message}", retry=retry) from exc
        except (TimeoutError, OSError) as exc:
            raise SendError(f"{self.url}: {exc!r}", retry=True) from exc
        return PushResult(ack.accepted, len(ack.rejections),
                          [f"record {r.index}: {r.field}: {r.reason}" for r in ack.rejections])

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._channel is not None:
            self._channel.close()
        if self._loop is not None:
            self._loop.close()


def _json(record: Record) -> str:
    """A record as the proto3 JSON the HTTP ingest reads."""
    if isinstance(record, LogRecord):
        return json.dumps(record.to_dict())
    from google.protobuf.json_format import MessageToJson  # a protobuf message: it is installed

    return MessageToJson(record, indent=None)


class _SerializedBatch:
    """A `LogBatch` already serialized: grpclib's codec sends what `SerializeToString` gives
    (and checks the message's type against the request's own)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        return self.data


def _batch(records: Sequence[Record]) -> LogBatch:
    """The `LogBatch` of `records`: each record's bytes framed as field 1 (records), so a
    protobuf message is sent without a conversion to a `LogRecord`."""
    parts = []
    for record in records:
        data = bytes(record) if isinstance(record, LogRecord) else record.SerializeToString()
        parts += [b"\x0a", betterproto.encode_varint(len(data)), data]
    return cast(LogBatch, _SerializedBatch(b"".join(parts)))


def new_batch_key() -> str:
    """A fresh idempotency key for one batch (32 hex digits)."""
    return uuid.uuid4().hex
