"""The Elasticsearch sink's contract (app/elastic/sink.py): `flush` returns what was accepted and
what was rejected for good; when Elasticsearch pushes back it raises `Backpressure` with a
retry-after and keeps exactly the events not yet accepted, and the next `flush` finishes them.

Against the real Elasticsearch; the one thing it will not do on demand — answer 429 — comes
from `TooManyRequestsServer`, a local HTTP server that answers every request with 429."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from app.elastic import esindex
from app.elastic.client import es_client
from app.elastic.sink import Backpressure, ElasticsearchSink, Flushed
from app.pipeline.events import LogEvent, RawPosition
from app.settings import Settings, load_settings
from tests.search_fixtures import second_item_busy_once, tier_indexing


def event(offset: int, **changes: Any) -> LogEvent:
    now = time.time_ns()
    fields: dict[str, Any] = dict(
        tenant_id="1", tenant="acme", time=now, observed_time=now, severity="INFO",
        severity_number=9, message=f"hello {offset}", service="api", host="h",
        raw=RawPosition("x.logs.raw", 0, offset), size=10)
    return LogEvent(**(fields | changes))


class TooManyRequestsServer:
    """Answers every HTTP request with 429 and an Elasticsearch-style error body."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append(head.split(b" ")[1].decode())
                body = json.dumps({"error": {"type": "es_rejected_execution_exception",
                                             "reason": "rejected execution"},
                                   "status": 429}).encode()
                writer.write(b"HTTP/1.1 429 Too Many Requests\r\n"
                             b"Content-Type: application/json\r\n"
                             b"X-Elastic-Product: Elasticsearch\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def layout(es: AsyncElasticsearch, unique: str) -> AsyncIterator[Settings]:
    settings = load_settings(index_prefix=f"{unique}-", es_retry_initial=0.2, es_retry_max=0.5)
    yield settings
    await es.indices.delete(index=f"{unique}-*", ignore_unavailable=True, allow_no_indices=True)
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{unique}-logs")


async def sink_on(es: AsyncElasticsearch, settings: Settings) -> ElasticsearchSink:
    sink = ElasticsearchSink(es, settings)
    sink.set_layout({"1": tier_indexing("shared")})
    await sink.setup()
    return sink


async def count(es: AsyncElasticsearch, settings: Settings) -> int:
    await es.indices.refresh(index=f"{settings.index_prefix}*")
    found = await es.count(**esindex.tenant_search(settings, "1"))
    return int(found["count"])


async def test_flush_returns_the_accepted_count_and_the_permanent_rejections(
        es: AsyncElasticsearch, layout: Settings) -> None:
    sink = await sink_on(es, layout)
    good = [event(i) for i in range(4)]
    bad = event(9, severity_number=1000)  # a byte field: document_parsing_exception (400)
    sink.add(good + [bad])
    assert sink.pending == 5
    flushed = await sink.flush()
    assert flushed.accepted == 4
    assert [r.event for r in flushed.rejected] == [bad]
    assert flushed.rejected[0].status == 400
    assert flushed.rejected[0].error_type == "document_parsing_exception"
    assert sink.pending == 0
    assert await sink.flush() == Flushed(0, [])  # nothing buffered: nothing to do
    assert await count(es, layout) == 4


async def test_a_429_from_elasticsearch_is_backpressure_and_nothing_is_lost(
        es: AsyncElasticsearch, layout: Settings) -> None:
    sink = await sink_on(es, layout)
    sink.add([event(100)])  # the day's index made on the real Elasticsearch
    assert (await sink.flush()).accepted == 1
    events = [event(i) for i in range(3)]
    sink.add(events)
    busy = TooManyRequestsServer()
    async with busy as url:
        sink.es = es_client(layout.model_copy(update={"es_url": url}))
        try:
            waits = []
            for _ in range(3):
                with pytest.raises(Backpressure) as raised:
                    await sink.flush()
                assert raised.value.cause == "HTTP 429"
                assert raised.value.pending == 3  # every event still buffered
                waits.append(raised.value.retry_after)
        finally:
            await sink.es.close()
    assert busy.requests and all(path.startswith("/_bulk") for path in busy.requests)
    # from es_retry_initial (0.2 s, +-20 % jitter), doubling, at most es_retry_max (0.5 s)
    assert 0.16 <= waits[0] <= 0.24 and 0.32 <= waits[1] <= 0.48 and 0.4 <= waits[2] <= 0.6
    assert await count(es, layout) == 1
    sink.es = es  # Elasticsearch takes writes again: the same flush goes on
    flushed = await sink.flush()
    assert flushed.accepted == 3 and flushed.rejected == []
    assert await count(es, layout) == 4
    sink.add([event(7)])
    sink.es = AsyncElasticsearch("http://127.0.0.1:1")  # nothing listens: unreachable
    try:
        with pytest.raises(Backpressure) as again:  # the delay starts over after a success
            await sink.flush()
    finally:
        await sink.es.close()
    assert 0.16 <= again.value.retry_after <= 0.24
    assert "Connection" in again.value.cause


async def test_setup_raises_backpressure_while_elasticsearch_is_unreachable(
        layout: Settings) -> None:
    down = AsyncElasticsearch("http://127.0.0.1:1")
    try:
        sink = ElasticsearchSink(down, layout)
        with pytest.raises(Backpressure) as raised:
            await sink.setup()
        assert raised.value.pending == 0 and raised.value.retry_after > 0
    finally:
        await down.close()


async def test_items_to_retry_stay_buffered_and_rejections_wait_for_the_flush_that_completes(
        es: AsyncElasticsearch, layout: Settings) -> None:
    sink = await sink_on(es, layout)
    bodies = second_item_busy_once(sink)
    events = [event(0), event(1), event(2, severity_number=1000)]
    sink.add(events)
    with pytest.raises(Backpressure) as raised:
        await sink.flush()
    assert raised.value.pending == 1 and sink.pending == 1  # only the item asked to retry
    flushed = await sink.flush()
    assert len(bodies) == 2 and bodies[1].count(b"\n") == 2  # the retry sent that item alone
    assert json.loads(bodies[1].splitlines()[0])["index"]["_id"] == events[1].doc_id()
    assert flushed.accepted == 2  # both attempts together
    assert [r.event for r in flushed.rejected] == [events[2]]  # found by the first attempt
    assert await count(es, layout) == 2
