"""Readiness (`/readyz`): whether Kafka (with the LaaS topics), Elasticsearch and the user
database answer, each checked with a deadline, what is wrong said in words."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import AsyncElasticsearch
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kafka.client import client_options
from app.kafka.topics import laas_topic_specs
from app.settings import Settings

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0  # each check's deadline: a probe answers within it, whatever is down

Check = Callable[[], Awaitable[str | None]]  # None: ready; else what is wrong


async def kafka_problem(settings: Settings) -> str | None:
    """Kafka answers and every LaaS topic exists."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=4000)
    try:
        await admin.start()
        present = set(await admin.list_topics())
    finally:
        await admin.close()
    missing = [spec.name for spec in laas_topic_specs(settings) if spec.name not in present]
    return f"topics missing: {', '.join(missing)} (laas topics ensure)" if missing else None


async def elasticsearch_problem(es: AsyncElasticsearch) -> str | None:
    """The cluster answers with a yellow or green health."""
    health = await es.options(request_timeout=CHECK_SECONDS - 1).cluster.health()
    status = health.get("status")
    return None if status in ("yellow", "green") else f"cluster health {status}"


async def database_problem(engine: AsyncEngine) -> str | None:
    """The user database answers a query."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return None


async def _run(name: str, check: Check, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            problem = await check()
    except TimeoutError:
        log.warning("readiness: %s did not answer within %.0fs", name, seconds)
        return f"no answer within {seconds:.0f}s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        # The probe is public: the body names the failure's kind, the log has the details
        # (addresses, database names) for the operator.
        log.warning("readiness: %s failed: %r", name, exc)
        return f"unreachable ({type(exc).__name__})"
    return problem or "ok"


async def readiness(checks: dict[str, Check], seconds: float = CHECK_SECONDS) -> dict[str, str]:
    """Every check at once: component -> "ok" or what is wrong."""
    results = await asyncio.gather(*(_run(name, check, seconds)
                                     for name, check in checks.items()))
    return dict(zip(checks, results, strict=True))


def report(checks: dict[str, str]) -> tuple[dict[str, Any], int]:
    """The `/readyz` answer: its JSON body and status, 200 when every check is "ok", else 503
    with `not_ready` naming the components."""
    missing = [name for name, result in checks.items() if result != "ok"]
    body: dict[str, Any] = {"status": "not_ready" if missing else "ready", "checks": checks}
    if missing:
        body["not_ready"] = missing
    return body, 503 if missing else 200


def service_checks(settings: Settings, es: AsyncElasticsearch, engine: AsyncEngine
                   ) -> dict[str, Check]:
    """The checks of a process that uses all three services (the web app)."""
    return {"kafka": lambda: kafka_problem(settings),
            "elasticsearch": lambda: elasticsearch_problem(es),
            "database": lambda: database_problem(engine)}
