"""Elasticsearch down for 30 s under load: the sink pauses and retries, nothing is lost.

Runs its own single-node Elasticsearch (port 9250, small heap, state in `.laas/test-es-outage`,
the zip from `.laas/downloads`) so the shared stack is never stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from elasticsearch import AsyncElasticsearch

from app.settings import Settings, load_settings
from deploy.elastic import Elasticsearch
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, tenant_count
from tests.test_stream_faults import produce_steadily

ROOT = Path(__file__).resolve().parent.parent
PORT = 9250
TOTAL = 1500


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def dedicated_es(settings: Settings) -> Iterator[Elasticsearch]:
    state = (ROOT / ".laas" / "test-es-outage").resolve()
    state.mkdir(parents=True, exist_ok=True)
    downloads = state / "downloads"
    if not downloads.exists():
        downloads.symlink_to((settings.state_dir / "downloads").resolve())
    server = Elasticsearch(load_settings(state_dir=state, es_port=PORT, es_heap="384m"))
    if server.running():
        server.stop()
    server.prepare()
    server.start()
    try:
        _wait(server.ready, 180, f"the dedicated Elasticsearch on port {PORT}")
        yield server
    finally:
        server.stop()


@pytest.fixture
async def outage_stream(kafka_servers: str, dedicated_es: Elasticsearch, unique: str,
                        tmp_path: Path) -> AsyncIterator[tuple[StreamEnv, AsyncElasticsearch]]:
    env = StreamEnv(unique, tmp_path, es_url=dedicated_es.address)
    client = AsyncElasticsearch(dedicated_es.address)
    await env.create_topics()
    try:
        yield env, client
    finally:
        if not dedicated_es.ready():
            dedicated_es.start()
            _wait(dedicated_es.ready, 180, "the dedicated Elasticsearch back for cleanup")
        await env.cleanup(client)
        await client.close()


async def test_elasticsearch_outage_loses_nothing(
        outage_stream: tuple[StreamEnv, AsyncElasticsearch], dedicated_es: Elasticsearch) -> None:
    stream, es = outage_stream
    worker = stream.worker()
    before = 300
    producing = asyncio.create_task(produce_steadily(stream, before, chunk=50))

    async def indexed(n: int) -> int | None:
        count = await tenant_count(es, stream.settings, "7")
        return count if count >= n else None

    async def sink_retried() -> bool:
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{worker.port}/metrics")).text
        return "\nlaas_sink_retries_total{" in metrics  # a sample, not just its # HELP

    try:
        await stream.wait(lambda: indexed(before), 120, f"{before} documents before the outage")
        await asyncio.to_thread(dedicated_es.stop)
        down_since = time.monotonic()
        assert not dedicated_es.ready()
        # the rest arrives on logs.raw while Elasticsearch is down
        producing = asyncio.create_task(produce_steadily(stream, TOTAL, chunk=50, first=before))
        await stream.wait(sink_retried, 60, "the sink retrying against the stopped server")
        await producing
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - down_since)))  # a 30 s outage
        await asyncio.to_thread(dedicated_es.start)
        await asyncio.to_thread(_wait, dedicated_es.ready, 180, "Elasticsearch restarted")
        await stream.wait(lambda: indexed(TOTAL), 180, f"{TOTAL} documents after the outage")
        await asyncio.sleep(2)
        assert await tenant_count(es, stream.settings, "7") == TOTAL
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        producing.cancel()
