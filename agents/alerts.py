"""Stage `alerts`: the `alerts` topic → the `{index_prefix}alerts` index and tenant webhooks.

Storage: one Elasticsearch index for every tenant's alerts (`tenant_id` keyword, filtered by
the API), `_id` = alert id, written by read-merge-write with optimistic concurrency
(app/pipeline/alerting.py `merge_alert`; no scripts: the local Elasticsearch has no painless):
a repeated firing updates the evidence and `occurrences` of the one alert, keeps an
acknowledgement and re-opens a resolved alert. The web's ack/resolve endpoints update `status`.

Webhooks: the first firing of an alert (`occurrences == 1`) is POSTed to each enabled webhook
of its tenant (reloaded every `alert_rules_refresh_seconds`): JSON body (the alert), Standard
Webhooks signature headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and the
deprecated `X-LaaS-Signature`, `X-LaaS-Alert-Id`, `X-LaaS-Delivery` (attempt). Each attempt
resolves the URL's host, refuses internal addresses and sends to the checked address
(app/pipeline/webhook_guard.py). 2xx is delivered; 429, 5xx and network errors are retried
`webhook_attempts` times with doubling delays from `webhook_retry_initial`; other statuses and
refusals are final. Every attempt is a row of `webhook_deliveries` (the delivery log, with
generic error texts; the detail goes to the worker's log only).
Deliveries run as background tasks so a slow receiver never stalls the stream; an alert
re-read after a crash may be delivered again (receivers de-duplicate by alert id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import faust
import httpx
from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError

from agents.resources import Resources
from app.db.models import WebhookDelivery
from app.elastic.esindex import ensure_index, small_index
from app.kafka.stamp import ALERTS, Stamps
from app.kafka.topics import Topics
from app.pipeline import webhook_guard
from app.pipeline.alerting import ALERTS_MAPPINGS, alerts_index, merge_alert, webhook_headers
from app.runtime.metrics import METRICS
from app.runtime.retry import RetryPolicy, retry
from app.settings import Settings

log = logging.getLogger(__name__)

STORE_RETRY = RetryPolicy(Exception, initial=0.5, maximum=15.0)  # storing an alert: no limit


class Undelivered(Exception):
    """One webhook attempt failed: `status` (None: no answer), `detail`; `final`: no retry."""

    def __init__(self, status: int | None, detail: str | None, final: bool) -> None:
        super().__init__(f"status {status}, {detail}")
        self.status, self.detail, self.final = status, detail, final


async def ensure_alerts_index(es: AsyncElasticsearch, settings: Settings) -> None:
    await ensure_index(es, alerts_index(settings), mappings=ALERTS_MAPPINGS,
                       settings=small_index(settings))


async def store_alert(es: AsyncElasticsearch, settings: Settings, alert: dict[str, Any]) -> None:
    """Store one alert firing, merged into the stored alert (retried by the caller)."""
    index = alerts_index(settings)
    for _ in range(5):
        try:
            stored = await es.get(index=index, id=alert["id"])
        except NotFoundError:
            try:
                await es.index(
                    index=index,
                    id=alert["id"],
                    document=alert,
                    op_type="create",
                    refresh="wait_for",
                )
                return
            except ConflictError:
                continue  # created meanwhile (an ack): merge into it
        try:
            await es.index(
                index=index,
                id=alert["id"],
                document=merge_alert(stored["_source"], alert),
                if_seq_no=stored["_seq_no"],
                if_primary_term=stored["_primary_term"],
                refresh="wait_for",
            )
            return
        except ConflictError:
            continue  # changed meanwhile (an ack or resolve): merge again
    raise RuntimeError(f"alert {alert['id']}: five concurrent changes in a row")


class Webhooks:
    """Enabled webhooks by tenant, from the user database; deliveries with retries and log."""

    def __init__(self, resources: Resources) -> None:
        self.settings = resources.settings
        self.repository = resources.webhooks
        self.by_tenant: dict[str, list[tuple[int, str, str]]] = {}
        self._client: httpx.AsyncClient | None = None
        self.resolver: webhook_guard.Resolver | None = None  # None: the system's (tests stub it)
        self.tasks: set[asyncio.Task[bool]] = set()

    async def reload(self) -> None:
        try:
            self.by_tenant = await self.repository.enabled()
        except Exception as exc:  # noqa: BLE001 - keep the last known set
            log.warning("webhooks: reload failed (%r)", exc)

    def dispatch(self, alert: dict[str, Any], body: bytes) -> None:
        for hook_id, url, secret in self.by_tenant.get(str(alert["tenant_id"]), []):
            task = asyncio.create_task(self.deliver(hook_id, url, secret, alert, body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def deliver(
        self, hook_id: int, url: str, secret: str, alert: dict[str, Any], body: bytes
    ) -> bool:
        if self._client is None:  # no proxies from the environment: they would resolve the host
            self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout,
                                             follow_redirects=False, trust_env=False)
        client = self._client
        headers = {
            "Content-Type": "application/json",
            "X-LaaS-Alert-Id": str(alert["id"]),
            "User-Agent": "laas-webhooks/1",
        }
        attempt = 0

        async def send() -> None:
            nonlocal attempt
            attempt += 1
            status: int | None = None
            error: str | None = None
            detail = ""
            refused = False
            try:
                target = await webhook_guard.check_url(
                    url, self.settings.webhook_allow_networks, resolver=self.resolver,
                    timeout=self.settings.webhook_timeout)
                signed = webhook_headers(secret, str(alert["id"]), body, time.time())
                status = await webhook_guard.send(client, target, body, {
                    **headers, **signed, "X-LaaS-Delivery": str(attempt)})
            except (webhook_guard.WebhookTargetError, httpx.HTTPError) as exc:
                error = webhook_guard.public_error(exc)  # the tenant's view: nothing internal
                detail = repr(exc)
                refused = isinstance(
                    exc, webhook_guard.AddressRefused | webhook_guard.InvalidTarget)
            delivered = status is not None and 200 <= status < 300
            if status is not None and not delivered:
                error = f"HTTP {status}"
            await self._log(hook_id, alert, attempt, status, error, delivered)
            METRICS.inc("laas_webhook_attempts_total", delivered=str(delivered).lower())
            if not delivered:
                final = refused or (status is not None and status != 429 and status < 500)
                raise Undelivered(status, detail or error, final)

        try:
            await retry(send, RetryPolicy(
                Undelivered, initial=self.settings.webhook_retry_initial, maximum=float("inf"),
                attempts=self.settings.webhook_attempts,
                retry_if=lambda exc: not getattr(exc, "final", True)))
        except Undelivered as exc:
            log.warning("webhook %d: alert %s not delivered (status %s, %s)", hook_id,
                        alert["id"], exc.status, exc.detail)
            return False
        return True

    async def _log(
        self,
        hook_id: int,
        alert: dict[str, Any],
        attempt: int,
        status: int | None,
        error: str | None,
        delivered: bool,
    ) -> None:
        try:
            await self.repository.record(WebhookDelivery(
                webhook_id=hook_id,
                tenant_id=int(alert["tenant_id"]),
                alert_id=str(alert["id"]),
                attempt=attempt,
                status_code=status,
                error=error,
                delivered=delivered,
            ))
        except Exception as exc:  # noqa: BLE001 - the log must not stop deliveries
            log.warning("webhook %d: delivery log write failed (%r)", hook_id, exc)


def register(app: faust.App, topics: Topics, resources: Resources) -> Webhooks:
    settings, es = resources.settings, resources.es
    hooks = Webhooks(resources)
    stamps = Stamps.from_settings(settings)
    index_ready = asyncio.Event()  # the alerts index exists (made once, by the first store)

    async def store(alert: dict[str, Any]) -> None:
        if not index_ready.is_set():
            await ensure_alerts_index(es, settings)
            index_ready.set()
        await store_alert(es, settings, alert)

    @app.agent(topics.alerts, name="alert-store", concurrency=1)
    async def alert_store(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if not stamps.valid_message(event.message, kind=ALERTS):
                log.warning("alerts: skipping a message not signed by LaaS at %s/%d/%d (no "
                            "alert stored, no webhook)", event.message.topic,
                            event.message.partition, event.message.offset)
                continue
            try:
                alert = json.loads(event.value)
                alert["id"] and alert["tenant_id"]  # noqa: B018 - KeyError: not an alert
            except (ValueError, TypeError, KeyError):
                log.warning(
                    "alerts: skipping undecodable record at %s/%d/%d",
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                )
                continue
            # back-pressure: retried until stored, never dropped
            await resources.retry(lambda: store(alert),  # noqa: B023 - awaited here
                                  f"alerts: storing {alert['id']}", policy=STORE_RETRY)
            if alert.get("occurrences") == 1:
                hooks.dispatch(alert, event.value)

    @app.timer(settings.alert_rules_refresh_seconds)
    async def webhooks_reload() -> None:
        await hooks.reload()

    @app.task
    async def webhooks_first_load() -> None:
        await hooks.reload()

    return hooks
