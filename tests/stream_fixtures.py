"""Helpers of the stream tests: fresh settings, topics, worker subprocesses, waits with deadlines.

Import with `from tests.stream_fixtures import *`. Every test gets its own topic prefix, Faust
app id (consumer groups, changelog topics), index prefix and state directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch

from app.db.migrations import upgrade_database_async
from app.elastic import esindex
from app.kafka.client import client_options
from app.kafka.stamp import Stamps
from app.kafka.topics import ALL, topic_name
from app.settings import Settings, load_settings
from bench.tenants import ensure_tenants
from tests.auth_fixtures import TEST_SECRET

__all__ = [
    "StreamEnv", "Worker", "stream", "free_port", "wait_for", "produce_raw", "read_topic",
    "es_count", "gateway_headers",
]

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float, what: str,
                   interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _processes() -> dict[int, int]:
    """Live (not zombie) processes: pid → parent pid, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found[int(stat.parent.name)] = int(ppid)
    return found


def children_of(pid: int) -> list[int]:
    """Pids of the live child processes of `pid`."""
    return [child for child, parent in _processes().items() if parent == pid]


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` still running."""
    running = _processes()
    return [pid for pid in pids if pid in running]


class Worker:
    """`python -m app worker` as a subprocess with the test's settings."""

    def __init__(self, env: StreamEnv, name: str = "w1", extra: dict[str, str] | None = None,
                 state: str | None = None):
        self.env = env
        self.name = name
        self.extra = extra or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.expected_exit = False
        self.log_path = env.tmp / f"{name}.log"
        self.state = env.tmp / f"state-{state or name}"

    def start(self) -> Worker:
        environ = {**os.environ, **self.env.environ(), **self.extra,
                   "LAAS_WORKER_WEB_PORT": str(free_port()), "LAAS_STATE_DIR": str(self.state)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "worker"],
                                     cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.port = int(environ["LAAS_WORKER_WEB_PORT"])
        return self

    def kill(self) -> None:
        self.expected_exit = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.expected_exit = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()

    def children(self) -> list[int]:
        """Pids of the worker's live child processes (its index sink)."""
        return children_of(self.proc.pid) if self.proc is not None else []

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() \
            else ""


class StreamEnv:
    """Settings, environment and helpers of one test's private pipeline."""

    def __init__(self, unique: str, tmp: Path, es_url: str | None = None,
                 extra: dict[str, str] | None = None) -> None:
        self.unique = unique
        self.tmp = tmp
        # small normalize parts: every pipeline test goes through the split path
        # one secret for the test's producer, web app and every worker: stamps signed by one are
        # valid for the others (as LAAS_SECRET_KEY shared by every LaaS process, app/kafka/stamp.py)
        self.extra = {"LAAS_SECRET_KEY": TEST_SECRET,
                      # the user database of the env's workers: produce_raw registers the tenants
                      # it stamps (the index stage indexes known tenants only)
                      "LAAS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'users.db'}",
                      "LAAS_PARTITIONS": str(PARTITIONS), "LAAS_ES_LINGER": "0.2",
                      "LAAS_STREAM_BATCH_EVENTS": "50",
                      "LAAS_STATS_SNAPSHOT_INTERVAL": "1", "LAAS_ES_RETRY_MAX": "2",
                      **(extra or {})}
        if es_url:
            self.extra["LAAS_ES_URL"] = es_url
        self.settings = self.make_settings()
        self.workers: list[Worker] = []

    def make_settings(self) -> Settings:
        overrides: dict[str, Any] = {
            "app_id": self.unique, "topic_prefix": f"{self.unique}.",
            "index_prefix": f"{self.unique}-", "state_dir": self.tmp / "state",
        }
        for key, value in self.extra.items():
            overrides[key.removeprefix("LAAS_").lower()] = value
        return load_settings(**overrides)

    def environ(self) -> dict[str, str]:
        return {"LAAS_APP_ID": self.unique, "LAAS_TOPIC_PREFIX": f"{self.unique}.",
                "LAAS_INDEX_PREFIX": f"{self.unique}-", **self.extra}

    def topic(self, name: str) -> str:
        return topic_name(self.settings, name)

    def worker(self, name: str = "w1", state: str | None = None, **extra: str) -> Worker:
        """Start a worker; `state` reuses another worker's state directory (a restart)."""
        worker = Worker(self, name, extra, state).start()
        self.workers.append(worker)
        return worker

    async def create_topics(self) -> None:
        await upgrade_database_async(self.settings)  # the env's user database, for produce_raw
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic(n), PARTITIONS, 1) for n in ALL])
        finally:
            await admin.close()

    async def cleanup(self, es: AsyncElasticsearch) -> None:
        for worker in self.workers:
            worker.stop()
        await es.indices.delete(index=f"{self.unique}-*", ignore_unavailable=True,
                                allow_no_indices=True)
        await es.options(ignore_status=404).indices.delete_index_template(
            name=f"{self.unique}-logs")
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(self.unique)]
            if names:
                await admin.delete_topics(names)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
        finally:
            await admin.close()

    async def wait(self, check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
        """`wait_for` that fails at once (with the worker logs) when a worker died."""

        async def checked() -> Any:
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is not None \
                        and not worker.expected_exit:
                    pytest.fail(f"worker {worker.name} exited {worker.proc.returncode}:\n"
                                f"{worker.tail()}")
            return await check()

        try:
            return await wait_for(checked, timeout, what)
        except BaseException:
            print(self.logs())
            raise

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.tail()}" for w in self.workers)


@pytest.fixture
async def stream(kafka_servers: str, es_url: str, unique: str, tmp_path: Path,
                 es: AsyncElasticsearch) -> AsyncIterator[StreamEnv]:
    env = StreamEnv(unique, tmp_path)
    await env.create_topics()
    try:
        yield env
    finally:
        await env.cleanup(es)


def gateway_headers(tenant_id: str, slug: str, source: str = "gateway",
                    content_type: bytes = b"application/x-protobuf; messageType=laas.v1.LogRecord"
                    ) -> list[tuple[str, bytes]]:
    return [("content-type", content_type), ("laas-tenant-id", tenant_id.encode()),
            ("laas-tenant", slug.encode()), ("laas-source", source.encode())]


async def register_tenants(settings: Settings, headers: list[dict[str, bytes]]) -> None:
    """Make the tenants named by ingest stamps exist in the user database of `settings`, as
    they do when the gateway stamps (it found their keys)."""
    await ensure_tenants(settings, {int(h["laas-tenant-id"]): h.get("laas-tenant", b"").decode()
                                    for h in headers if h.get("laas-tenant-id", b"").isdigit()})


async def produce_raw(settings: Settings, records: Sequence[tuple[bytes | None, bytes,
                                                                  list[tuple[str, bytes]]]],
                      topic: str | None = None, *, sign: bool = True) -> list[tuple[int, int]]:
    """Produce (key, value, headers) to `logs.raw`; (partition, offset) of each, acked.
    With `sign`, headers with an ingest stamp (`laas-tenant-id`) are signed as the gateway
    signs them, and messages for `logs.events` as the worker signs them."""
    stamps = Stamps.from_settings(settings)
    events = topic == topic_name(settings, "logs.events")

    def signed(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
               ) -> list[tuple[str, bytes]]:
        if events:
            return stamps.sign(key, value, headers, kind="events")
        if any(name == "laas-tenant-id" for name, _ in headers):
            return stamps.sign(key, value, headers)
        return headers

    records = [(key, value, signed(key, value, headers) if sign else headers)
               for key, value, headers in records]
    if sign and not events:
        await register_tenants(settings, [dict(h) for _, _, h in records])
    producer = AIOKafkaProducer(**client_options(settings), acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic or topic_name(settings, "logs.raw"), value, key=key,
                                       headers=headers) for key, value, headers in records]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


async def read_topic(settings: Settings, name: str, count: int, timeout: float = 60) -> list[Any]:
    """The first `count` records of a LaaS topic (from the beginning)."""
    consumer = AIOKafkaConsumer(topic_name(settings, name),
                                **client_options(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(records)
    finally:
        await consumer.stop()
    if len(got) < count:
        pytest.fail(f"only {len(got)} of {count} records on {name} within {timeout}s")
    return got


async def tenant_count(es: AsyncElasticsearch, settings: Settings, tenant_id: str) -> int:
    """Documents of one tenant, on whichever tier it is (-1 while Elasticsearch is away)."""
    request = esindex.tenant_search(settings, tenant_id)
    try:
        await es.indices.refresh(index=request["index"], ignore_unavailable=True,
                                 allow_no_indices=True)
        response = await es.count(index=request["index"], query=request["query"],
                                  ignore_unavailable=True, allow_no_indices=True)
    except Exception:  # noqa: BLE001 - ES restarting in the outage test
        return -1
    return int(response["count"])


async def es_count(es: AsyncElasticsearch, index: str) -> int:
    try:
        await es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        response = await es.count(index=index, ignore_unavailable=True, allow_no_indices=True)
    except Exception:  # noqa: BLE001 - ES restarting in the outage test
        return -1
    return int(response["count"])
