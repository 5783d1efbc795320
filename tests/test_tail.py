"""Live tail over a real WebSocket (uvicorn) fed from a real `logs.events` topic."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from elasticsearch import AsyncElasticsearch
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.accounts import logins, tenancy
from app.kafka.stamp import Stamps
from app.kafka.topics import ALERTS, EVENTS, topic_name
from app.pipeline.events import LogEvent
from app.settings import Settings
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import World, build_world, make_settings, running_app
from tests.conftest import kafka_options
from tests.search_fixtures import TIERS, event, index_events
from tests.serving import served
from tests.test_kafka import create_topic


@dataclass
class TailWorld:
    world: World
    settings: Settings
    url: str
    producer: AIOKafkaProducer
    es: AsyncElasticsearch

    async def publish(self, events: list[LogEvent]) -> None:
        topic = topic_name(self.settings, EVENTS)
        stamps = Stamps.from_settings(self.settings)  # as the worker signs logs.events
        for ev in events:
            key, value = ev.source_key.encode(), ev.to_json()
            await self.producer.send(topic, value, key=key,
                                     headers=stamps.sign(key, value, kind="events"))
        await self.producer.flush()

    def connect(self, who: str, **params: str) -> connect:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return connect(
            f"{self.url}?{query}", additional_headers=self.world.headers(who), max_size=None
        )


class RawTailClient:
    """A WebSocket client on a plain socket with a tiny receive buffer, which reads only when
    told to: the kernel cannot hide its slowness, so it pushes back on the server at once."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        port = int(url.split(":")[2].split("/")[0])
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /api/v1/tail HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        status, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert status.startswith(b"HTTP/1.1 101"), status

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("tail socket closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv(self) -> dict[str, Any]:
        """The next text message (server frames are unmasked and, here, unfragmented)."""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._read(2), "big")
            elif length == 127:
                length = int.from_bytes(self._read(8), "big")
            payload = self._read(length)
            if first & 0x0F == 0x1:
                return dict(json.loads(payload))


@pytest.fixture
async def tail_world(
    tmp_path: Path, unique: str, kafka_servers: str, es: AsyncElasticsearch
) -> AsyncIterator[TailWorld]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        tmp_path / "state",
        topic_prefix=f"{unique}.",
        index_prefix=f"{unique}-",
        tail_queue_size=20,
        tail_heartbeat_seconds=1.0,
    )
    await create_topic(kafka_servers, topic_name(settings, EVENTS), 2)
    await create_topic(kafka_servers, topic_name(settings, ALERTS), 1)
    async with running_app(settings) as app:
        world = await build_world(app)
        async with served(app) as port:
            producer = AIOKafkaProducer(**kafka_options(), linger_ms=0)
            await producer.start()
            try:
                yield TailWorld(
                    world, settings, f"ws://127.0.0.1:{port}/api/v1/tail", producer, es
                )
            finally:
                await producer.stop()
    await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


async def until_ready(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "ready":
                return dict(message)


async def receive_events(
    ws: ClientConnection, count: int, timeout: float = 15
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            message = json.loads(await ws.recv())
            if message["type"] == "event":
                events.append(message["event"])
    return events


async def test_filtered_events_arrive_in_order_within_a_second(tail_world: TailWorld) -> None:
    tw = tail_world
    async with tw.connect("key_read", q="level:>=warn%20AND%20service:api") as ws:
        await until_ready(ws)
        events = [
            event(
                tw.world,
                "acme",
                i,
                message=f"line {i}",
                level=("INFO", "ERROR")[i % 2],
                service=("api", "web")[i // 10 % 2],
            )
            for i in range(40)
        ]
        sent_at = time.monotonic()
        await tw.publish(events)
        got = await receive_events(ws, 10)
        delay = time.monotonic() - sent_at
    wanted = [ev.message for ev in events if ev.severity == "ERROR" and ev.service == "api"]
    assert [e["message"] for e in got] == wanted
    assert delay < 1.0, f"tail delay {delay:.2f}s"


async def test_tenants_only_see_their_own_events(tail_world: TailWorld) -> None:
    tw = tail_world
    async with tw.connect("b_key_admin") as beta, tw.connect("key_read", q="tenant:beta") as sneaky:
        await until_ready(beta)
        await until_ready(sneaky)
        await tw.publish([event(tw.world, "acme", i, message="acme secret") for i in range(5)])
        await tw.publish([event(tw.world, "beta", 100, message="beta line")])
        got = await receive_events(beta, 1)
        assert [e["message"] for e in got] == ["beta line"]
        with pytest.raises(TimeoutError):
            await receive_events(sneaky, 1, timeout=2)


async def test_slow_reader_gets_a_drop_notice_and_does_not_slow_a_fast_one(
    tail_world: TailWorld,
) -> None:
    tw = tail_world
    big = "x" * 20_000
    slow = await asyncio.to_thread(RawTailClient, tw.url, tw.world.headers("key_read"))
    assert (await asyncio.to_thread(slow.recv))["type"] == "ready"
    async with tw.connect("key_read") as fast:
        await until_ready(fast)
        events = [event(tw.world, "acme", i, message=f"{i} {big}") for i in range(600)]

        async def steady() -> None:  # at a pace a reading client keeps up with
            for start in range(0, len(events), 5):
                await tw.publish(events[start : start + 5])
                await asyncio.sleep(0.02)

        publishing = asyncio.create_task(steady())
        got = await receive_events(fast, 600, timeout=60)  # slow has not read anything yet
        await publishing
        assert [e["message"].split()[0] for e in got] == [str(i) for i in range(600)]

        def first_notice() -> dict[str, Any]:
            received = 0
            while (message := slow.recv())["type"] != "notice":
                received += message["type"] == "event"
            assert received < 600
            return message

        notice = await asyncio.wait_for(asyncio.to_thread(first_notice), 30)
        assert notice["dropped"] > 0
        slow.sock.close()


@pytest.mark.parametrize("tier", TIERS)
async def test_history_then_live_without_gap_or_duplicate(tail_world: TailWorld,
                                                          tier: str) -> None:
    tw = tail_world
    base = time.time_ns() - 60 * 10**9
    earlier = [
        event(tw.world, "acme", i, message=f"old {i}", at=base + i * 10**6) for i in range(30)
    ]
    await tw.publish(earlier)
    await index_events(tw.es, tw.settings, earlier[:20], tier)  # the last 10 are not indexed yet
    # another tenant's line in the same (shared) index: never in acme's history
    await index_events(tw.es, tw.settings, [event(tw.world, "beta", 900, message="beta line",
                                                  at=base + 5 * 10**6)], tier)
    async with tw.connect("key_read", since="5m") as ws:
        ready_history: list[str] = []
        async with asyncio.timeout(30):
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "ready":
                    assert message["history"] == len(ready_history)
                    break
                ready_history.append(message["event"]["message"])
        later = [event(tw.world, "acme", 100 + i, message=f"new {i}") for i in range(10)]
        await tw.publish(later)
        live = [e["message"] for e in await receive_events(ws, 10)]
    assert ready_history == [f"old {i}" for i in range(30)]
    assert live == [f"new {i}" for i in range(10)]


async def test_bad_filter_and_bad_credentials(tail_world: TailWorld) -> None:
    tw = tail_world
    async with tw.connect("key_read", q="level:") as ws:
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and message["parameter"] == "q"
        assert message["position"] == 6
        await ws.wait_closed()
        assert ws.close_code == 4400
    for who in ("key_ingest", "anonymous"):
        with pytest.raises(InvalidStatus):
            async with tw.connect(who):
                pass
    token = tw.world.creds["viewer"]
    async with connect(f"{tw.url}?token={token}") as ws:
        assert (await until_ready(ws))["history"] == 0


async def test_heartbeat_when_idle(tail_world: TailWorld) -> None:
    async with tail_world.connect("key_read") as ws:
        await until_ready(ws)
        async with asyncio.timeout(5):
            assert json.loads(await ws.recv())["type"] == "heartbeat"


# --- issue 21, finding 4: open sockets re-check their credentials --------------------------------

RECHECK_BOUND = 2.0 + 3.0  # websocket_recheck_seconds (default 2) and room for a busy machine


async def streams_until_closed(
    tw: TailWorld, ws: ClientConnection, timeout: float
) -> tuple[float, list[dict[str, Any]]]:
    """Keep publishing acme events and reading frames until the server closes the socket;
    the seconds it took and the frames read."""
    started = time.monotonic()
    frames: list[dict[str, Any]] = []
    n = 0
    async with asyncio.timeout(timeout):
        while True:
            n += 1
            await tw.publish([event(tw.world, "acme", 1000 + n, message=f"after {n}")])
            try:
                async with asyncio.timeout(0.2):
                    while True:
                        frames.append(json.loads(await ws.recv()))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return time.monotonic() - started, frames


async def test_tail_closes_when_its_read_key_is_revoked(tail_world: TailWorld) -> None:
    tw = tail_world
    async with tw.connect("key_read") as ws:
        await until_ready(ws)
        async with tw.world.sessions.begin() as session:
            await tenancy.revoke_api_key(
                session, tw.world.tenant_ids["acme"], tw.world.key_ids["key_read"])
        took, frames = await streams_until_closed(tw, ws, RECHECK_BOUND + 10)
    assert took <= RECHECK_BOUND, took
    assert ws.close_code == 4401
    assert frames[-1] == {"type": "error", "error": "not_authenticated",
                          "detail": "API key revoked"}


async def test_tail_closes_when_the_user_is_removed(tail_world: TailWorld) -> None:
    tw = tail_world
    async with connect(f"{tw.url}?token={tw.world.creds['viewer']}") as ws:
        await until_ready(ws)
        async with tw.world.sessions.begin() as session:
            await tenancy.remove_member(
                session, tw.world.tenant_ids["acme"], tw.world.user_ids["viewer"])
        took, frames = await streams_until_closed(tw, ws, RECHECK_BOUND + 10)
    assert took <= RECHECK_BOUND, took
    assert ws.close_code == 4401 and frames[-1]["error"] == "not_authenticated"


async def test_tail_closes_on_logout(tail_world: TailWorld) -> None:
    tw = tail_world
    async with tw.connect("member") as ws:
        await until_ready(ws)
        await logins.logout(tw.world.sessions, refresh_token=tw.world.refresh["member"])
        took, frames = await streams_until_closed(tw, ws, RECHECK_BOUND + 10)
    assert took <= RECHECK_BOUND, took
    assert ws.close_code == 4401 and "session ended" in frames[-1]["detail"]


async def test_tail_closes_when_the_token_expires(tail_world: TailWorld) -> None:
    tw = tail_world
    pair = await tw.world.login("admin")
    codec = tw.world.app.state.auth.codec
    claims = codec.verify(pair.access_token)
    # a token of the same session that expires in 1 s (verification allows 5 s of leeway)
    token = codec.issue(user_id=claims.user_id, tenant_id=claims.tenant_id,
                        tenant_slug=claims.tenant_slug, role=claims.role,
                        session_id=claims.session_id, now=time.time() - codec.ttl + 1)
    async with connect(f"{tw.url}?token={token}") as ws:
        await until_ready(ws)
        took, frames = await streams_until_closed(tw, ws, 6 + RECHECK_BOUND + 10)
    assert took <= 6 + RECHECK_BOUND, took
    assert ws.close_code == 4401 and frames[-1]["detail"] == "token expired"


async def test_alert_stream_closes_on_logout(tail_world: TailWorld) -> None:
    tw = tail_world
    url = tw.url.replace("/api/v1/tail", "/api/v1/alerts/stream")
    async with connect(url, additional_headers=tw.world.headers("viewer")) as ws:
        await until_ready(ws)
        await logins.logout(tw.world.sessions, refresh_token=tw.world.refresh["viewer"])
        started = time.monotonic()
        frames = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(RECHECK_BOUND + 10):
                while True:
                    frames.append(json.loads(await ws.recv()))
    assert time.monotonic() - started <= RECHECK_BOUND
    assert ws.close_code == 4401 and frames[-1]["error"] == "not_authenticated"
