"""Helpers of the UI end-to-end test: a second tenant membership, logs sent through the HTTP
ingest API, waits on what the worker writes, and a webhook receiver the worker delivers to."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from elasticsearch import AsyncElasticsearch
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.accounts import tenancy
from app.db.models import Role, WebhookDelivery
from app.elastic import esindex
from app.pipeline.alerting import sign_standard
from app.settings import Settings
from tests.auth_fixtures import World
from tests.serving import served
from tests.stream_fixtures import StreamEnv


async def add_membership(world: World, tenant: str, name: str, role: Role) -> None:
    """Make the existing user `name` a member of `tenant` too (an invite of a known email)."""
    async with world.sessions.begin() as session:
        await tenancy.add_user_to_tenant(session, world.tenant_ids[tenant], world.emails[name],
                                          role)


async def ingest(base_url: str, key: str, records: list[dict[str, Any]]) -> None:
    """POST records (the JSON shorthand) as NDJSON to `/api/v1/logs` with an ingest key; fails
    unless every record was accepted (Kafka acknowledged it)."""
    body = "\n".join(json.dumps(r) for r in records).encode()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post("/api/v1/logs", content=body, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"})
    assert response.status_code in (200, 202), (response.status_code, response.text)
    answer = response.json()
    assert answer["accepted"] == len(records) and answer["rejected"] == 0, answer


async def count_logs(es: AsyncElasticsearch, settings: Settings, phrase: str) -> int:
    """Documents in the live log indices whose message holds `phrase` (after a refresh)."""
    pattern = esindex.all_logs_pattern(settings)
    await es.indices.refresh(index=pattern, allow_no_indices=True, ignore_unavailable=True)
    found = await es.count(index=pattern, allow_no_indices=True, ignore_unavailable=True,
                           query={"match_phrase": {"message": phrase}})
    return int(found["count"])


async def wait_indexed(env: StreamEnv, es: AsyncElasticsearch, settings: Settings, phrase: str,
                       expected: int, timeout: float = 120) -> None:
    """Wait until the worker has indexed `expected` logs holding `phrase` (fails at the
    deadline or at once when the worker died, with its log)."""

    async def done() -> bool:
        return await count_logs(es, settings, phrase) >= expected

    await env.wait(done, timeout, f"{expected} logs with {phrase!r} in Elasticsearch")
    found = await count_logs(es, settings, phrase)
    assert found == expected, f"{found} logs hold {phrase!r}, {expected} were sent"


@dataclass
class Receiver:
    """An HTTP endpoint that records every POST (headers, body) and answers 200."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def signed_alerts(self, secret: str) -> list[dict[str, Any]]:
        """The alerts received, after checking each one's signature (Standard Webhooks) with
        `secret`."""
        out = []
        for headers, body in self.posts:
            expected = sign_standard(secret, headers["webhook-id"],
                                     int(headers["webhook-timestamp"]), body)
            got = headers.get("webhook-signature", "")
            assert hmac.compare_digest(got, expected), f"bad signature {got!r} on {body[:200]!r}"
            out.append(json.loads(body))
        return out


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def hook(request: Request) -> Response:
        receiver.posts.append((dict(request.headers), await request.body()))
        receiver.arrived.set()
        return Response(status_code=200)

    async with served(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as port:
        receiver.url = f"http://127.0.0.1:{port}/hook"
        yield receiver


async def delivered(world: World, alert_id: str) -> bool:
    """Whether the delivery log holds a successful delivery of `alert_id`."""
    async with world.sessions() as session:
        rows = (await session.execute(select(WebhookDelivery).where(
            WebhookDelivery.alert_id == alert_id, WebhookDelivery.delivered))).scalars()
        return any(True for _ in rows)
