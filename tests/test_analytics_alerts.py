"""Detection and alerting through the real pipeline (Kafka, Elasticsearch, worker subprocess,
uvicorn): an injected error burst gives exactly one grouped anomaly alert on the tenant's
alert stream, in `GET /api/v1/alerts` and at a webhook (signed, retried after a 500, logged);
a user rule fires from the stream; tenant B's stream sees none of tenant A's alerts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from elasticsearch import AsyncElasticsearch
from websockets.asyncio.client import ClientConnection, connect

from app.pipeline.alerting import SIGNATURE_HEADER, sign, sign_standard
from tests.auth_fixtures import build_world, client_for, make_settings, running_app
from tests.serving import served
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, free_port, produce_raw


class Hook:
    """A webhook receiver answering 500 to the first request, 200 afterwards."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=500 if len(self.received) == 1 else 200)


async def frames(ws: ClientConnection, into: list[dict[str, Any]]) -> None:
    async for text in ws:
        into.append(json.loads(text))


def _lines(tenant: str, messages: list[str], level: str) -> list[Any]:
    headers = [("laas-tenant-id", tenant.encode()), ("laas-tenant", b"acme"),
               ("laas-service", b"payments")]
    return [(f"{tenant}/payments".encode(),
             json.dumps({"message": m, "level": level, "host": "pay-1"}).encode(), headers)
            for m in messages]


async def test_error_burst_gives_one_grouped_alert_everywhere(
        stream: StreamEnv, es: AsyncElasticsearch, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    # the receiver is on loopback: allowed as an on-premise network, in the web app and worker
    settings = make_settings(db, tmp_path / "web", index_prefix=f"{stream.unique}-",
                             topic_prefix=f"{stream.unique}.", tail_heartbeat_seconds=1.0,
                             webhook_allow_networks=["127.0.0.1/32"])
    hook = Hook()
    receiver = web.Application()
    receiver.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(receiver)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    async with running_app(settings) as app:
        world = await build_world(app)
        acme = str(world.tenant_ids["acme"])
        async with served(app) as port:
            async with client_for(app) as client:
                admin = world.headers("admin")
                created = await client.post("/api/v1/webhooks", headers=admin, json={
                    "name": "ops", "url": f"http://127.0.0.1:{hook_port}/hook"})
                assert created.status_code == 201
                secret, hook_id = created.json()["secret"], created.json()["id"]
                rule = await client.post("/api/v1/alert-rules", headers=world.headers("member"),
                                         json={"name": "db errors", "query": "level:error AND "
                                               "refused", "window_seconds": 2, "threshold": 20,
                                               "cooldown_seconds": 600})
                assert rule.status_code == 201, rule.text
                rule_id = rule.json()["id"]
                # the other tenant cannot see or change acme's rule
                beta_admin = world.headers("b_admin")
                assert (await client.get("/api/v1/alert-rules", headers=beta_admin)
                        ).json()["rules"] == []
                assert (await client.patch(f"/api/v1/alert-rules/{rule_id}", headers=beta_admin,
                                           json={"threshold": 1})).status_code == 404

            stream.worker("w1", LAAS_DATABASE_URL=db, LAAS_DETECT_WINDOW_SECONDS="1",
                          LAAS_DETECT_WARMUP_WINDOWS="5",
                          LAAS_DETECT_HST_WARMUP_WINDOWS="100000",
                          LAAS_ALERT_RULES_REFRESH_SECONDS="1",
                          LAAS_WEBHOOK_RETRY_INITIAL="0.2",
                          LAAS_WEBHOOK_ALLOW_NETWORKS='["127.0.0.1/32"]')
            url = f"ws://127.0.0.1:{port}/api/v1/alerts/stream"
            got_a: list[dict[str, Any]] = []
            got_b: list[dict[str, Any]] = []
            async with connect(url, additional_headers=world.headers("viewer")) as ws_a, \
                    connect(url, additional_headers=world.headers("b_admin")) as ws_b:
                readers = [asyncio.create_task(frames(ws_a, got_a)),
                           asyncio.create_task(frames(ws_b, got_b))]
                # steady background: ~10 INFO events per second for 9 s, one source
                for i in range(18):
                    await produce_raw(stream.settings, _lines(
                        acme, [f"request {i}-{j} served in {j + 3} ms" for j in range(5)],
                        "info"))
                    await asyncio.sleep(0.5)
                await produce_raw(stream.settings, _lines(
                    acme, [f"database connection refused to 10.0.0.5 port 5432 attempt {i}"
                           for i in range(80)], "error"))

                def alerts(kind: str) -> list[dict[str, Any]]:
                    return [f["alert"] for f in got_a
                            if f["type"] == "alert" and f["alert"]["kind"] == kind]

                async def both_fired() -> bool:
                    return bool(alerts("anomaly")) and bool(alerts("rule"))

                await stream.wait(both_fired, 60, "an anomaly and a rule alert on the stream")
                await asyncio.sleep(3)  # room for (wrongly) ungrouped repeats to show up
                anomaly_ids = {a["id"] for a in alerts("anomaly")}
                assert len(anomaly_ids) == 1, alerts("anomaly")
                (alert_id,) = anomaly_ids
                first = alerts("anomaly")[0]
                assert first["source"] == f"{acme}/payments/pay-1"
                assert first["detector"] in ("error_burst", "new_error_template",
                                             "volume_spike")
                assert first["score"] > first["threshold"]
                assert first["features"]["count_error"] >= 1 and first["baseline"]
                assert first["samples"] and "refused" in json.dumps(first["samples"])
                assert 'service:"payments"' in first["query"] and first["status"] == "open"
                assert first["window"]["start"] < first["window"]["end"]
                assert "tenant_id" not in first
                assert {a["rule_id"] for a in alerts("rule")} == {rule_id}
                assert len({a["id"] for a in alerts("rule")}) == 1
                assert not [f for f in got_b if f["type"] == "alert"], got_b
                for task in readers:
                    task.cancel()

            async with client_for(app) as client:
                viewer = world.headers("viewer")

                async def stored() -> Any:
                    got = (await client.get("/api/v1/alerts?kind=anomaly",
                                            headers=viewer)).json()
                    return got if got["total"] >= 1 else None

                listed = await stream.wait(stored, 30, "the alert stored")
                assert [a["id"] for a in listed["alerts"]] == [alert_id]
                assert (await client.get("/api/v1/alerts", headers=beta_admin)
                        ).json()["alerts"] == []
                assert (await client.post(f"/api/v1/alerts/{alert_id}/ack",
                                          headers=viewer)).status_code == 403
                assert (await client.post(f"/api/v1/alerts/{alert_id}/ack",
                                          headers=beta_admin)).status_code == 404
                acked = await client.post(f"/api/v1/alerts/{alert_id}/ack",
                                          headers=world.headers("member"))
                assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
                open_now = (await client.get("/api/v1/alerts?status=open&kind=anomaly",
                                             headers=viewer)).json()
                assert open_now["alerts"] == []
                resolved = await client.post(f"/api/v1/alerts/{alert_id}/resolve",
                                             headers=world.headers("admin"))
                assert resolved.json()["status"] == "resolved"

                # webhook: one alert id per kind, the first try answered 500 and retried
                async def delivered() -> bool:
                    ok = {json.loads(b)["id"] for _, b in hook.received[1:]}
                    return alert_id in ok
                await stream.wait(delivered, 30, "the anomaly alert at the webhook")
                bodies = [json.loads(b) for _, b in hook.received]
                assert len({b["id"] for b in bodies if b["kind"] == "anomaly"}) == 1
                for headers, body in hook.received:
                    assert headers[SIGNATURE_HEADER] == sign(secret, body)
                    assert headers["webhook-signature"] == sign_standard(
                        secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
                    assert headers["Content-Type"] == "application/json"
                log = (await client.get(f"/api/v1/webhooks/{hook_id}/deliveries",
                                        headers=admin)).json()["deliveries"]
                tries = [d for d in log if d["alert_id"] == bodies[0]["id"]]
                assert sorted((d["attempt"], d["status_code"], d["delivered"]) for d in tries) \
                    == [(1, 500, False), (2, 200, True)]
            await runner.cleanup()


async def test_a_restarted_worker_keeps_open_alerts_and_rule_cooldowns(
        stream: StreamEnv, es: AsyncElasticsearch, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    settings = make_settings(db, tmp_path / "web", index_prefix=f"{stream.unique}-",
                             topic_prefix=f"{stream.unique}.")
    async with running_app(settings) as app:
        world = await build_world(app)
        acme = str(world.tenant_ids["acme"])
        async with client_for(app) as client:
            ids = {}
            for name, query, cooldown in (("grouped", "level:error AND refused", 0),
                                          ("cooled", "level:error AND refused", 600),
                                          ("marker", "level:error AND marker", 0)):
                created = await client.post(
                    "/api/v1/alert-rules", headers=world.headers("member"),
                    json={"name": name, "query": query, "window_seconds": 2,
                          "threshold": 20, "cooldown_seconds": cooldown})
                assert created.status_code == 201, created.text
                ids[name] = created.json()["id"]
    env = {"LAAS_DATABASE_URL": db, "LAAS_ALERT_RULES_REFRESH_SECONDS": "1"}
    index = f"{stream.unique}-alerts"

    async def rule_alerts() -> dict[int, dict[str, Any]]:
        try:
            await es.indices.refresh(index=index)
            found = await es.search(index=index, query={"term": {"kind": "rule"}}, size=20)
        except Exception:  # noqa: BLE001 - not there yet
            return {}
        alerts = [h["_source"] for h in found["hits"]["hits"]]
        rules = [a["rule_id"] for a in alerts]
        assert len(rules) == len(set(rules)), f"a rule opened a second alert: {alerts}"
        return {a["rule_id"]: a for a in alerts}

    async def burst(text: str = "connection refused to 10.0.0.5") -> None:
        await produce_raw(stream.settings, _lines(
            acme, [f"{text} attempt {i}" for i in range(80)], "error"))

    first = stream.worker("w1", **env)
    await burst()
    before = await stream.wait(lambda: _when(rule_alerts, lambda a: len(a) == 2), 90,
                               "both rules' alerts stored")
    assert ids["marker"] not in before
    first.stop()
    stream.worker("w2", state="w1", **env)
    await burst()

    def grouped_again(alerts: dict[int, dict[str, Any]]) -> bool:
        return alerts.get(ids["grouped"], {}).get("occurrences") == 2

    after = await stream.wait(lambda: _when(rule_alerts, grouped_again), 90,
                              "the rule without cooldown firing again after the restart")
    assert after[ids["grouped"]]["id"] == before[ids["grouped"]]["id"]
    assert after[ids["grouped"]]["first_fired"] == before[ids["grouped"]]["first_fired"]
    # a barrier: the marker rule fires in a later tick; its alert goes to the same `alerts`
    # partition (keyed by tenant) and is stored after anything the tick above sent
    await burst("marker")
    final = await stream.wait(lambda: _when(rule_alerts, lambda a: ids["marker"] in a), 90,
                              "the marker rule's alert stored")
    assert set(final) == set(ids.values())  # one alert per rule (rule_alerts checks it)
    assert final[ids["cooled"]]["occurrences"] == 1  # in its cooldown: did not fire again
    assert final[ids["grouped"]]["occurrences"] == 2


async def _when(get: Any, ok: Any) -> Any:
    value = await get()
    return value if ok(value) else None
