"""Every LaaS command that talks to Elasticsearch, against a secured node: HTTPS with a CA made
here, security on, LaaS logging in as a user whose role allows only what LaaS needs
(LAAS_ES_USERNAME / LAAS_ES_PASSWORD, LAAS_ES_CA_FILE; the role is the one docs/settings
guidance gives, plus the tests' index prefix).

One Elasticsearch per module (the distribution the stack downloads, `deploy/elastic.py`, on
ports and a state directory of its own under .laas/). The pipeline test runs the real
commands: HTTP ingest and search in the web app, `laas worker` (index sink and analytics
children), `laas replay`, `laas retention`, `laas stack status`, `/readyz`.

API keys: this distribution cannot create them (they live in the `.security` index, whose
mappings need the analysis-common module the integ-test zip lacks), so the test shows that
LAAS_ES_API_KEY, in both its forms, reaches the node as API-key credentials.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elastic_transport import TlsError
from elasticsearch import AuthenticationException

from app import esindex
from app.cli import main
from app.elastic import es_client
from app.events import NS
from app.settings import Settings, load_settings
from deploy.elastic import Elasticsearch, Security
from tests.auth_fixtures import build_world, client_for, running_app
from tests.stream_fixtures import StreamEnv
from tests.test_kafka import free_port
from tests.tls_fixtures import CertFiles, make_certs

ROOT = Path(__file__).resolve().parent.parent
USER = "laas"
# What LaaS needs: cluster health and index templates; everything on its own indices
# ("t*": the tests' index prefixes).
ROLES = """laas:
  cluster: ["monitor", "manage_index_templates"]
  indices:
    - names: ["laas-*", "t*"]
      privileges: ["all"]
"""


def _port_pair() -> int:
    """A free port whose `port + 100` (Elasticsearch's transport port) is free too."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 100))
            except OSError:
                continue
        return port


@dataclass(frozen=True)
class Secured:
    url: str
    certs: CertFiles
    password: str

    def env(self) -> dict[str, str]:
        """What a LaaS process needs to use this cluster."""
        return {"LAAS_ES_URL": self.url, "LAAS_ES_USERNAME": USER,
                "LAAS_ES_PASSWORD": self.password, "LAAS_ES_CA_FILE": str(self.certs.ca)}

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {"es_url": self.url, "es_username": USER,
                                     "es_password": self.password, "es_ca_file": self.certs.ca}
        return load_settings(**(values | overrides))


@pytest.fixture(scope="module")
def secured(settings: Settings) -> Iterator[Secured]:
    # Inside the main state directory, not pytest's tmp (mode 0700): Elasticsearch runs as the
    # unprivileged user `laas`, which must reach its files.
    state = (settings.state_dir / "test-es-secured").resolve()
    state.mkdir(parents=True, exist_ok=True)
    downloads = state / "downloads"
    if not downloads.exists():
        downloads.symlink_to((settings.state_dir / "downloads").resolve())
    certs = make_certs(state / "certs")
    port, password = _port_pair(), secrets.token_urlsafe(16)
    url = f"https://127.0.0.1:{port}"
    secured = Secured(url, certs, password)
    server = Elasticsearch(secured.settings(state_dir=state, es_port=port, es_heap="512m"),
                           security=Security(certs.cert, certs.key, USER, password, "laas", ROLES))
    if server.running():
        server.stop()
    shutil.rmtree(server.data, ignore_errors=True)  # a fresh cluster each run
    server.prepare()
    server.start()
    try:
        deadline = time.monotonic() + 180
        while not server.ready():
            if time.monotonic() > deadline or not server.running():
                pytest.fail(f"the secured Elasticsearch did not start:\n"
                            f"{server.console_log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield secured
    finally:
        server.stop()


async def _who(settings: Settings) -> dict[str, Any]:
    es = es_client(settings)
    try:
        return dict((await es.security.authenticate()).body)
    finally:
        await es.close()


async def test_the_node_is_secured_and_the_settings_reach_it(secured: Secured) -> None:
    me = await _who(secured.settings())
    assert (me["username"], me["roles"]) == (USER, ["laas"])
    # the certificate pinned by its fingerprint instead of a CA bundle; or not verified at all
    pinned = secured.settings(es_ca_file=None, es_ssl_fingerprint=secured.certs.fingerprint())
    assert (await _who(pinned))["username"] == USER
    assert (await _who(secured.settings(es_ca_file=None, es_verify_certs=False)))["username"] \
        == USER
    with pytest.raises(AuthenticationException):  # no credentials: 401
        await _who(secured.settings(es_username=None, es_password=None))
    with pytest.raises(AuthenticationException):
        await _who(secured.settings(es_password="wrong"))
    with pytest.raises(TlsError):  # the CA is not a public one
        await _who(secured.settings(es_ca_file=None))


@pytest.mark.parametrize("key", ["a2lkMTpzZWNyZXQx", "kid1:secret1"])
async def test_an_api_key_reaches_the_node_as_one(secured: Secured, key: str) -> None:
    """Both forms of LAAS_ES_API_KEY (`encoded`, `id:api_key`) are sent as API-key credentials
    (the node cannot store keys, see above, so it names the id it failed to find); the key wins
    over the user and password."""
    with pytest.raises(AuthenticationException) as refused:
        await _who(secured.settings(es_api_key=key))
    detail = refused.value.body["error"]["additional_unsuccessful_credentials"]
    assert detail == "API key: apikey authentication for id kid1 encountered a failure"


def test_stack_status_checks_the_secured_cluster(secured: Secured, tmp_path: Path) -> None:
    env = {**secured.env(), "LAAS_STATE_DIR": str(tmp_path),
           "LAAS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    up = CliRunner().invoke(main, ["stack", "status", "--json"], env=env)
    assert up.exit_code == 0, up.output
    es = next(s for s in json.loads(up.stdout) if s["name"] == "elasticsearch")
    assert es == {"name": "elasticsearch", "address": secured.url, "up": True,
                  "managed": False, "started_here": False}
    down = CliRunner().invoke(main, ["stack", "status"], env={**env, "LAAS_ES_PASSWORD": "no"})
    assert down.exit_code == 1
    assert [line.split()[:2] for line in down.output.splitlines()][1] == ["elasticsearch", "DOWN"]


@pytest.fixture
async def secured_stream(kafka_servers: str, secured: Secured, unique: str,
                         tmp_path: Path) -> AsyncIterator[StreamEnv]:
    extra = {k: v for k, v in secured.env().items() if k != "LAAS_ES_URL"}
    env = StreamEnv(unique, tmp_path, es_url=secured.url, extra=extra)
    await env.create_topics()
    admin = es_client(env.settings)
    try:
        yield env
    finally:
        await env.cleanup(admin)
        await admin.close()


def _laas(env: StreamEnv, *args: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LAAS_")}
    environ |= {**env.environ(), "LAAS_STATE_DIR": str(env.tmp / "cli-state"),
                "LAAS_KAFKA_CREDENTIALS_FILE": os.environ["LAAS_KAFKA_CREDENTIALS_FILE"]}
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_every_command_works_on_the_secured_cluster(
        secured: Secured, secured_stream: StreamEnv) -> None:
    env = secured_stream
    async with running_app(env.settings) as app, client_for(app) as client:
        world = await build_world(app)
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["elasticsearch"] == "ok"

        # ingest through the web app, index through `laas worker`'s sink child
        lines = "".join(json.dumps({"message": f"secured hello {i}", "service": "vault",
                                    "level": "WARN"}) + "\n" for i in range(20))
        sent = await client.post("/api/v1/logs", content=lines, headers={
            "content-type": "application/x-ndjson", "x-api-key": world.creds["key_ingest"]})
        assert sent.status_code == 200 and sent.json()["accepted"] == 20, sent.text
        env.worker()

        async def hits() -> list[dict[str, object]] | None:
            found = await client.get("/api/v1/search", params={
                "q": "secured AND service:vault", "since": "1h", "limit": 100},
                headers=world.headers("viewer"))
            if found.status_code == 503:  # a new daily index whose shard is not started yet
                return None
            assert found.status_code == 200, found.text
            events = found.json()["hits"]
            return events if len(events) == 20 else None

        events = await env.wait(hits, 120, "20 events searchable on the secured cluster")
        assert {e["message"] for e in events} == {f"secured hello {i}" for i in range(20)}

        async def sources() -> bool:  # the analytics child's stats snapshots
            listed = await client.get("/api/v1/sources", headers=world.headers("viewer"))
            if listed.status_code == 503:  # the sources index's shard is not started yet
                return False
            assert listed.status_code == 200, listed.text
            return any(s["service"] == "vault" for s in listed.json()["sources"])

        await env.wait(sources, 60, "source statistics on the secured cluster")

    # `laas replay` into a new index set: same events, alias swapped
    acme = str(world.tenant_ids["acme"])
    replayed = _laas(env, "replay", "--tenant", "acme", "--since", "1h", "--to-index", "v2")
    assert "20 events indexed" in replayed, replayed
    admin = es_client(env.settings)
    try:
        await admin.indices.refresh(index=esindex.tenant_alias(env.settings, acme))
        count = await admin.count(index=f"{env.settings.index_prefix}replay-v2-*")
        assert count["count"] == 20

        # `laas retention`: an index of acme from 400 days ago goes, today's stays
        old = esindex.daily_index(env.settings, acme, time.time_ns() - 400 * 86_400 * NS)
        await admin.indices.create(index=old)
        retention = _laas(env, "retention")
        assert f"deleted {old}" in retention, retention
        assert not await admin.indices.exists(index=old)
        assert await admin.indices.exists(index=f"{env.settings.index_prefix}replay-v2-*")
    finally:
        await admin.close()
