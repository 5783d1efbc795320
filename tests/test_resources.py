"""The per-process resources of the stages (agents/resources.py) on a real user database (SQLite)
and the real Elasticsearch: the repositories read what the database holds, the one client
answers, the retry helper retries with the policy and logs what failed."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from agents.resources import Resources
from app.accounts.tenancy import create_tenant
from app.db.engine import create_engine
from app.db.migrations import upgrade_database_async
from app.db.models import AlertRule, Tenant, Webhook, WebhookDelivery
from app.runtime.retry import RetryPolicy
from app.settings import load_settings
from tests.clock import Clock


@pytest.fixture
async def resources(tmp_path: Path, es_url: str) -> Resources:
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    engine = create_engine(url)
    await upgrade_database_async(engine)
    await engine.dispose()
    return Resources.build(load_settings(database_url=url, state_dir=tmp_path / "state",
                                         elasticsearch_url=es_url))


async def test_the_repositories_read_the_user_database(resources: Resources) -> None:
    try:
        async with resources.sessions.begin() as session:
            acme = await create_tenant(session, "acme")
            beta = await create_tenant(session, "beta")
            await session.flush()
            session.add_all([
                AlertRule(tenant_id=acme.id, name="on", query="level:error", threshold=1),
                AlertRule(tenant_id=beta.id, name="off", query="x", enabled=False),
                Webhook(tenant_id=acme.id, name="h", url="https://a.example/h", secret="s1"),
                Webhook(tenant_id=beta.id, name="h", url="https://b.example/h", secret="s2",
                        enabled=False),
            ])
        async with resources.sessions.begin() as session:
            await session.execute(update(Tenant).where(Tenant.id == beta.id).values(
                retention_days=30, index_dedicated_from=datetime.date(1970, 1, 11)))

        assert [rule.name for rule in await resources.rules.enabled()] == ["on"]
        hooks = await resources.webhooks.enabled()
        assert list(hooks) == [str(acme.id)]
        (hook_id, hook_url, secret), = hooks[str(acme.id)]
        assert (hook_url, secret) == ("https://a.example/h", "s1")
        await resources.webhooks.record(WebhookDelivery(
            webhook_id=hook_id, tenant_id=acme.id, alert_id="a1", attempt=1, status_code=204,
            delivered=True))
        async with resources.sessions() as session:
            logged = (await session.execute(select(WebhookDelivery))).scalars().all()
        assert [(d.alert_id, d.status_code, d.delivered) for d in logged] == [("a1", 204, True)]

        indexing = await resources.tenants.indexing()
        assert indexing[str(acme.id)].retention_days == 7  # a new tenant's
        assert indexing[str(acme.id)].dedicated_from is None
        assert indexing[str(beta.id)].retention_days == 30
        assert indexing[str(beta.id)].dedicated_from == 10
        assert await resources.tenants.retention() == {str(acme.id): 7, str(beta.id): 30}
        assert (await resources.es.cluster.health())["status"] in ("green", "yellow")  # answers
    finally:
        await resources.close()


async def test_retry_waits_with_the_policy_and_logs_what_failed(
        resources: Resources, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("database away")
        return "done"

    try:
        policy = RetryPolicy(initial=0.5, maximum=0.75)
        done = await resources.retry(flaky, "reading rules", policy=policy, sleep=clock.asleep)
        assert done == "done"
        assert clock.slept == [0.5, 0.75]
        assert "reading rules failed (ConnectionError('database away')); retry in 0.5s" \
            in caplog.text
        with pytest.raises(ValueError):  # not retried: raised as it is
            await resources.retry(lambda: _raise(ValueError("bad")), "x",
                                  policy=RetryPolicy(retry_on=ConnectionError), sleep=clock.asleep)
    finally:
        await resources.close()


async def _raise(exc: Exception) -> None:
    raise exc
