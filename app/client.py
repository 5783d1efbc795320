"""Shipping logs from Python: a `logging.Handler` and the `Shipper` behind it and `laas send`.

    import logging
    from app.client import LaasHandler
    logging.getLogger().addHandler(LaasHandler("http://127.0.0.1:8080", api_key, service="api"))

Records are batched by a background thread; `emit` never blocks and never raises. When the
buffer (`capacity` records) is full the oldest records are dropped and counted in `dropped`.
Failed sends are retried with exponential backoff; `close()` (called by `logging.shutdown` at
exit) flushes for at most `close_timeout` seconds.

Every batch carries an idempotency key (HTTP header `Idempotency-Key`, gRPC metadata
`idempotency-key`), the same on each retry of that batch: when a send failed although the
server had stored the records, the retry overwrites them in the index instead of duplicating.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from app.ingest.convert import to_any
from protos.laas.v1 import AnyValue, LogBatch, LogRecord, Resource

_LEVELS = ((logging.CRITICAL, 21), (logging.ERROR, 17), (logging.WARNING, 13),
           (logging.INFO, 9), (logging.DEBUG, 5), (0, 1))
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


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
        self._last: tuple[Sequence[LogRecord], str] | None = None

    def push(self, records: Sequence[LogRecord], *, key: str | None = None) -> PushResult:
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

    def _push_http(self, records: Sequence[LogRecord], key: str) -> PushResult:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        body = "\n".join(json.dumps(r.to_dict()) for r in records)
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

    def _push_grpc(self, records: Sequence[LogRecord], key: str) -> PushResult:
        from grpclib.client import Channel
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        from protos.laas.v1 import LogIngestStub

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        host, _, port = self.url.removeprefix("grpc://").rpartition(":")

        async def call() -> Any:
            if self._channel is None:
                self._channel = Channel(host or "127.0.0.1", int(port or 4317))
            stub = LogIngestStub(self._channel, metadata={"x-api-key": self.api_key,
                                                          "idempotency-key": key},
                                 timeout=self.timeout)
            return await stub.push(LogBatch(records=list(records)))

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


def new_batch_key() -> str:
    """A fresh idempotency key for one batch (32 hex digits)."""
    return uuid.uuid4().hex


def to_record(record: logging.LogRecord, message: str) -> LogRecord:
    """A stdlib log record as a `LogRecord` (extras become attributes)."""
    return _build(_snapshot(record, message))


def _snapshot(record: logging.LogRecord, message: str) -> tuple[logging.LogRecord, str, dict]:
    """What `emit` keeps (cheap): the record, its formatted message and its extras."""
    extras = {k: v if isinstance(v, str | int | float | bool | None) else repr(v)
              for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    return record, message, extras


def _build(snap: tuple[logging.LogRecord, str, dict]) -> LogRecord:
    record, message, extras = snap
    number = next(n for level, n in _LEVELS if record.levelno >= level)
    attrs: dict[str, AnyValue] = {
        "logger.name": AnyValue(string_value=record.name),
        "code.filepath": AnyValue(string_value=record.pathname),
        "code.lineno": AnyValue(int_value=record.lineno),
        "code.function": AnyValue(string_value=record.funcName or ""),
        "thread.name": AnyValue(string_value=record.threadName or ""),
    }
    if record.exc_info and record.exc_info[0] is not None:
        attrs["exception.type"] = AnyValue(string_value=record.exc_info[0].__name__)
    for key, value in extras.items():
        attrs[key] = to_any(value)
    return LogRecord(time_unix_nano=int(record.created * 1e9), severity_number=number,
                     severity_text=record.levelname, body=AnyValue(string_value=message),
                     attributes=attrs)


class LaasHandler(logging.Handler):
    """A non-blocking handler that ships records to LaaS in the background."""

    def __init__(self, url: str, api_key: str, *, service: str, level: int = logging.NOTSET,
                 capacity: int = 10_000, batch_size: int = 500, flush_interval: float = 1.0,
                 close_timeout: float = 5.0, max_backoff: float = 30.0,
                 shipper: Shipper | None = None) -> None:
        super().__init__(level)
        self.shipper = shipper or Shipper(url, api_key, timeout=min(10.0, close_timeout))
        self.resource = Resource(service_name=service, host=socket.gethostname())
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.close_timeout = close_timeout
        self.max_backoff = max_backoff
        self.dropped = 0  # oldest records dropped because the buffer was full
        self.failed = 0  # records given up on (refused by the server, or left at close)
        self.rejected = 0  # records the server reported invalid
        self.sent = 0
        self._buffer: collections.deque[Any] = collections.deque()  # snapshots
        self._capacity = capacity
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closing = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="laas-log-shipper", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            item = _snapshot(record, self.format(record))
            with self._mutex:
                if len(self._buffer) >= self._capacity:
                    self._buffer.popleft()
                    self.dropped += 1
                self._buffer.append(item)
                self._idle.clear()
                if len(self._buffer) >= self.batch_size:
                    self._wake.set()
        except Exception:  # noqa: BLE001 - logging must never break the application
            self.handleError(record)

    def _take(self) -> list[Any]:
        with self._mutex:
            n = min(self.batch_size, len(self._buffer))
            return [self._buffer.popleft() for _ in range(n)]

    def _records(self, batch: list[Any]) -> list[LogRecord]:
        out = []
        for snap in batch:
            if not isinstance(snap, LogRecord):
                snap = _build(snap)
                snap.resource = self.resource
            out.append(snap)
        return out

    def _run(self) -> None:
        backoff = 0.0
        # The batch being sent: kept whole, with its idempotency key, until it is answered for
        # good, so every retry is the same batch under the same key (not merged with newer
        # records); it is held outside the buffer, which keeps filling meanwhile.
        pending: list[LogRecord] = []
        key = ""
        while True:
            wait = backoff or self.flush_interval
            if self._closing:
                wait = min(wait, max(0.0, self._deadline - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
            if self._closing and time.monotonic() > self._deadline:
                break
            if not pending:
                batch = self._take()
                if not batch:
                    self._idle.set()
                    if self._closing:
                        break
                    backoff = 0.0
                    continue
                try:
                    pending = self._records(batch)
                except Exception:  # noqa: BLE001 - a record that cannot be built
                    self.failed += len(batch)
                    continue
                key = new_batch_key()
            try:
                result = self.shipper.push(pending, key=key)
            except SendError as exc:
                if exc.retry:
                    backoff = exc.retry_after or min(self.max_backoff, max(0.2, backoff * 2))
                else:
                    self.failed += len(pending)
                    pending = []
                continue
            except Exception:  # noqa: BLE001 - keep the shipper thread alive
                backoff = min(self.max_backoff, max(0.2, backoff * 2))
                continue
            backoff = 0.0
            pending = []
            self.sent += result.accepted
            self.rejected += result.rejected
            if self._buffer:
                self._wake.set()
        with self._mutex:
            self.failed += len(self._buffer) + len(pending)
            self._buffer.clear()
        self._idle.set()
        self.shipper.close()

    def flush(self, timeout: float | None = None) -> None:
        """Ask for an immediate send and wait (at most `timeout`) until the buffer is empty."""
        self._wake.set()
        self._idle.wait(self.close_timeout if timeout is None else timeout)

    def close(self) -> None:
        if not self._closing:
            self._deadline = time.monotonic() + self.close_timeout
            self._closing = True
            self._wake.set()
            self._thread.join(self.close_timeout + 1)
        super().close()
