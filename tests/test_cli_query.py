"""`laas search` and `laas tail` as subprocesses against the web app served by uvicorn.

The CLI runs its own event loop (and blocking HTTP) while the server runs in the test's loop,
so it cannot run in-process: each test starts `python -m app ...` and reads its output.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from elasticsearch import AsyncElasticsearch
from starlette.applications import Starlette

from app.kafka.stamp import Stamps
from app.kafka.topics import EVENTS, topic_name
from app.pipeline.events import LogEvent
from app.settings import Settings
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import World, build_world, make_settings, running_app
from tests.conftest import kafka_options
from tests.search_fixtures import event, index_events
from tests.test_kafka import create_topic, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CliWorld:
    world: World
    settings: Settings
    app: Starlette
    port: int
    producer: AIOKafkaProducer
    es: AsyncElasticsearch
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_server(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.serving = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(10):
            while not self.server.started:
                await asyncio.sleep(0.02)

    async def stop_server(self) -> None:
        assert self.server is not None and self.serving is not None
        self.server.should_exit = True
        await self.serving
        self.server = self.serving = None

    async def publish(self, events: list[LogEvent]) -> None:
        topic = topic_name(self.settings, EVENTS)
        stamps = Stamps.from_settings(self.settings)  # as the worker signs logs.events
        for ev in events:
            key, value = ev.source_key.encode(), ev.to_json()
            await self.producer.send(topic, value, key=key,
                                     headers=stamps.sign(key, value, kind="events"))
        await self.producer.flush()

    def args(self, who: str) -> list[str]:
        return (
            ["--url", self.url, "--api-key", self.world.creds[who]] if who else ["--url", self.url]
        )


@pytest.fixture
async def cli_world(
    tmp_path: Path, unique: str, kafka_servers: str, es: AsyncElasticsearch
) -> AsyncIterator[CliWorld]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        tmp_path / "state",
        topic_prefix=f"{unique}.",
        index_prefix=f"{unique}-",
        tail_heartbeat_seconds=1.0,
    )
    await create_topic(kafka_servers, topic_name(settings, EVENTS), 2)
    async with running_app(settings) as app:
        world = await build_world(app)
        producer = AIOKafkaProducer(**kafka_options(), linger_ms=0)
        await producer.start()
        cw = CliWorld(world, settings, app, free_port(), producer, es)
        await cw.start_server()
        try:
            yield cw
        finally:
            await producer.stop()
            if cw.server is not None:
                await cw.stop_server()
    await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LAAS_API_KEY", "LAAS_TOKEN")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


async def laas(*args: str, timeout: float = 60) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=ROOT,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class Running:
    """A long-running CLI process whose output lines are collected as they come."""

    proc: asyncio.subprocess.Process
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode().rstrip("\n"))
            self.changed.set()

    async def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{what}: out={self.out[-10:]} err={self.err[-10:]}") from None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(10):
            await self.proc.wait()
            await asyncio.gather(*self.readers)


async def start_laas(*args: str) -> Running:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=ROOT,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Running(proc)
    assert proc.stdout is not None and proc.stderr is not None
    running.readers = [
        asyncio.create_task(running._read(proc.stdout, running.out)),
        asyncio.create_task(running._read(proc.stderr, running.err)),
    ]
    return running


def acme(cw: CliWorld, count: int, start: int = 0, *, one_source: bool = False) -> list[LogEvent]:
    """Events with increasing times; `one_source` keeps them on one Kafka key (one order)."""
    return [
        event(
            cw.world,
            "acme",
            start + i,
            message=f"request {start + i} finished",
            level=("INFO", "ERROR")[i % 2],
            service=("api", "web")[i % 3 == 2 and not one_source],
            host=f"node-{0 if one_source else i % 2}",
        )
        for i in range(count)
    ]


async def test_search_prints_a_table_and_json_lines(cli_world: CliWorld) -> None:
    cw = cli_world
    events = acme(cw, 12)
    beta = event(cw.world, "beta", 500, message="request 500 finished", level="ERROR")
    await index_events(cw.es, cw.settings, [*events, beta])
    wanted = [ev for ev in reversed(events) if ev.severity == "ERROR" and ev.service == "api"]
    assert len(wanted) >= 3

    table = await laas(
        "search", "level:error AND service:api", "--since", "1h", *cw.args("key_read")
    )
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["TIME", "LEVEL", "SERVICE", "HOST", "MESSAGE"]
    rows = [line.split(maxsplit=5) for line in lines[1:]]
    assert [row[5] for row in rows] == [ev.message for ev in wanted]
    assert all(row[2:5] == ["ERROR", "api", row[4]] and row[4].startswith("node-") for row in rows)
    assert f"{len(wanted)} shown of {len(wanted)} hits" in table.err

    as_json = await laas(
        "search", "level:error AND service:api", "--since", "1h", "--json", *cw.args("key_read")
    )
    assert as_json.code == 0, as_json.err
    hits = as_json.json_lines()
    assert [h["id"] for h in hits] == [ev.doc_id() for ev in wanted]
    assert {h["level"] for h in hits} == {"ERROR"} and {h["service"] for h in hits} == {"api"}


async def test_search_all_follows_the_cursor(cli_world: CliWorld) -> None:
    cw = cli_world
    events = acme(cw, 25)
    await index_events(cw.es, cw.settings, events)
    args = [
        "search",
        "",
        "--since",
        "1h",
        "--limit",
        "10",
        "--order",
        "oldest",
        "--json",
        *cw.args("key_read"),
    ]

    first = await laas(*args)
    assert first.code == 0, first.err
    assert [h["id"] for h in first.json_lines()] == [ev.doc_id() for ev in events[:10]]
    assert "10 shown of 25 hits (more: --all" in first.err

    every = await laas(*args, "--all")
    assert every.code == 0, every.err
    assert [h["id"] for h in every.json_lines()] == [ev.doc_id() for ev in events]
    assert "25 shown of 25 hits" in every.err and "more:" not in every.err


async def test_errors_are_shown_clearly_with_a_nonzero_exit(cli_world: CliWorld) -> None:
    cw = cli_world
    query = "level:error AND (service:api"
    bad = await laas("search", query, *cw.args("key_read"))
    assert bad.code == 2
    lines = bad.err.splitlines()
    assert "bad query" in lines[0] and "missing ')'" in lines[0]
    assert lines[1] == f"  {query}"
    assert lines[2] == "  " + " " * query.index("(") + "^"

    leading = await laas("search", "service:api *oot", *cw.args("key_read"))
    assert leading.code == 2 and "wildcard" in leading.err
    assert leading.err.splitlines()[2] == "  " + " " * len("service:api ") + "^"

    bad_since = await laas("search", "x", "--since", "yesterday", *cw.args("key_read"))
    assert bad_since.code == 2 and "bad parameter since" in bad_since.err

    anonymous = await laas("search", "x", *cw.args(""))
    assert anonymous.code == 1 and "not authenticated" in anonymous.err
    ingest_only = await laas("search", "x", *cw.args("key_ingest"))
    assert ingest_only.code == 1 and "not allowed" in ingest_only.err
    denied_tail = await laas("tail", "--max-retries", "0", *cw.args("key_ingest"), timeout=30)
    assert denied_tail.code == 1 and "not allowed" in denied_tail.err

    bad_filter = await laas(
        "tail", "level:", "--max-retries", "0", *cw.args("key_read"), timeout=30
    )
    assert bad_filter.code == 2
    assert bad_filter.err.splitlines()[-1] == "  " + " " * len("level:") + "^"

    unreachable = await laas(
        "search",
        "x",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--api-key",
        cw.world.creds["key_read"],
    )
    assert unreachable.code == 1 and "cannot reach" in unreachable.err


async def test_tail_prints_events_and_resumes_after_a_server_restart(cli_world: CliWorld) -> None:
    cw = cli_world
    tail = await start_laas("tail", "service:api", "--json", *cw.args("key_read"))
    try:
        await tail.wait(lambda: any("live" in line for line in tail.err), 60, "tail ready")
        before = acme(cw, 6, one_source=True)
        other = event(cw.world, "acme", 900, message="not for this tail", service="db")
        await cw.publish([other, *before])
        await index_events(cw.es, cw.settings, before)
        await tail.wait(lambda: len(tail.out) >= 6, 15, "live events")
        assert [e["id"] for e in tail.events()] == [ev.doc_id() for ev in before]

        await cw.stop_server()
        await tail.wait(
            lambda: any("connection lost" in line for line in tail.err),
            15,
            "tail notices the restart",
        )
        during = acme(cw, 6, start=6, one_source=True)
        await cw.publish(during)
        await index_events(cw.es, cw.settings, during)
        await cw.start_server()
        await tail.wait(
            lambda: sum("live" in line for line in tail.err) >= 2, 30, "tail reconnected"
        )
        await tail.wait(lambda: len(tail.out) >= 12, 15, "events published while down")

        after = acme(cw, 3, start=12, one_source=True)
        await cw.publish(after)
        await tail.wait(lambda: len(tail.out) >= 15, 15, "live events after reconnect")
    finally:
        await tail.stop()
    assert any("reconnecting in 0.5s" in line for line in tail.err), tail.err
    ids = [e["id"] for e in tail.events()]
    assert ids == [ev.doc_id() for ev in before + during + after], "gap or duplicate at the seam"


def test_tail_colours_by_severity_on_a_terminal() -> None:
    from app.cli.query import TailPrinter, format_hit

    hit = {
        "time": "2026-11-27T10:00:00.123456789Z",
        "level": "ERROR",
        "service": "api",
        "host": "h1",
        "message": "boom",
        "id": "x",
    }
    line = format_hit(hit, {"service": 7, "host": 4})
    assert line.startswith("2026-11-27 10:00:00.123  \x1b[31mERROR\x1b[0m  api")
    assert line.endswith("h1    boom")
    printer = TailPrinter(as_json=True)
    printer.event(hit)
    printer.event(hit)
    assert printer.last_time == hit["time"] and len(printer.seen) == 1
