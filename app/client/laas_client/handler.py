"""`LaasHandler`: a `logging.Handler` that ships records to LaaS from a background thread.

Records are batched by a background thread; `emit` never blocks and never raises. When the
buffer (`capacity` records) is full the oldest records are dropped and counted in `dropped`.
Failed sends are retried with exponential backoff; `close()` (called by `logging.shutdown` at
exit) flushes for at most `close_timeout` seconds. Each batch keeps its idempotency key across
its retries (see `laas_client.shipper`).
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Any

from laas_client.shipper import SendError, Shipper, new_batch_key
from laas_client.v1 import AnyValue, LogRecord, Resource
from laas_client.values import to_any

_LEVELS = ((logging.CRITICAL, 21), (logging.ERROR, 17), (logging.WARNING, 13),
           (logging.INFO, 9), (logging.DEBUG, 5), (0, 1))
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


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
