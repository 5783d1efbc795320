"""Every LaaS command that talks to Elasticsearch, against a secured node: HTTPS with a CA made
here, security on, LaaS logging in with an API key limited to what LaaS needs
(LAAS_ES_API_KEY, LAAS_ES_CA_FILE; the key's role is the one docs/connectivity.md gives, plus
the tests' index prefix).

One Elasticsearch per module (the distribution the stack downloads, `deploy/elastic.py`, on
ports and a state directory of its own under .laas/, with the small analysis plugin that lets
it store API keys). The pipeline test runs the real commands: HTTP ingest and search in the
web app, `laas worker` (index sink and analytics children), `laas replay`, `laas retention`,
`laas stack status`, `/readyz`.
"""

from __future__ import annotations

import asyncio
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
from elasticsearch import AuthenticationException, AuthorizationException

from app.cli.main import main
from app.elastic import esindex
from app.elastic.client import es_client
from app.pipeline.events import NS
from app.settings import Settings, load_settings
from deploy.elastic import Elasticsearch, Security
from tests.auth_fixtures import build_world, client_for, running_app
from tests.stream_fixtures import StreamEnv
from tests.test_kafka import free_port
from tests.tls_fixtures import CertFiles, make_certs

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "laas-admin"
# What LaaS needs (docs/connectivity.md): cluster health and index templates; everything on
# its own indices ("t*": the tests' index prefixes).
LAAS_ROLE = {"cluster": ["monitor", "manage_index_templates"],
             "indices": [{"names": ["laas-*", "t*"], "privileges": ["all"]}]}


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
    admin: Settings  # the superuser, by user and password: set-up and checks
    api_key: str = ""  # LaaS's key: the `encoded` form Elasticsearch returns
    api_key_pair: str = ""  # the same key as `id:api_key`

    def env(self) -> dict[str, str]:
        """What a LaaS process needs to use this cluster."""
        return {"LAAS_ES_URL": self.url, "LAAS_ES_API_KEY": self.api_key,
                "LAAS_ES_CA_FILE": str(self.certs.ca)}

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {"es_url": self.url, "es_api_key": self.api_key,
                                     "es_ca_file": self.certs.ca}
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
    admin = load_settings(state_dir=state, es_port=port, es_heap="512m", es_url=url,
                          es_username=ADMIN, es_password=password, es_ca_file=certs.ca)
    server = Elasticsearch(admin, security=Security(certs.cert, certs.key, ADMIN, password))
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

        async def make_key() -> dict[str, Any]:
            es = es_client(admin)
            try:
                made = await es.security.create_api_key(
                    name="laas", role_descriptors={"laas": LAAS_ROLE})
                return dict(made.body)
            finally:
                await es.close()

        key = asyncio.run(make_key())
        yield Secured(url, certs, admin, key["encoded"], f"{key['id']}:{key['api_key']}")
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
    assert me["authentication_type"] == "api_key" and me["api_key"]["name"] == "laas"
    assert (await _who(secured.settings(es_api_key=secured.api_key_pair)))["api_key"] \
        == me["api_key"]  # `id:api_key` works as well as the encoded form
    admin = await _who(secured.admin)  # LAAS_ES_USERNAME / LAAS_ES_PASSWORD
    assert (admin["username"], admin["authentication_type"]) == (ADMIN, "realm")
    # the certificate pinned by its fingerprint instead of a CA bundle; or not verified at all
    pinned = secured.settings(es_ca_file=None, es_ssl_fingerprint=secured.certs.fingerprint())
    assert (await _who(pinned))["authentication_type"] == "api_key"
    unverified = secured.settings(es_ca_file=None, es_verify_certs=False)
    assert (await _who(unverified))["authentication_type"] == "api_key"
    with pytest.raises(AuthenticationException):  # no credentials: 401
        await _who(secured.settings(es_api_key=None))
    with pytest.raises(AuthenticationException):
        await _who(secured.settings(es_api_key="a2lkMTpzZWNyZXQx"))  # "kid1:secret1"
    with pytest.raises(TlsError):  # the CA is not a public one
        await _who(secured.settings(es_ca_file=None))


async def test_the_key_allows_only_what_laas_needs(secured: Secured) -> None:
    es = es_client(secured.settings())
    try:
        with pytest.raises(AuthorizationException):  # not its indices
            await es.indices.create(index="other-index")
        with pytest.raises(AuthorizationException):  # no cluster settings
            await es.cluster.put_settings(persistent={"cluster.routing.allocation.enable": "all"})
    finally:
        await es.close()


def test_stack_status_checks_the_secured_cluster(secured: Secured, tmp_path: Path) -> None:
    env = {**secured.env(), "LAAS_STATE_DIR": str(tmp_path),
           "LAAS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    up = CliRunner().invoke(main, ["stack", "status", "--json"], env=env)
    assert up.exit_code == 0, up.output
    es = next(s for s in json.loads(up.stdout) if s["name"] == "elasticsearch")
    assert es == {"name": "elasticsearch", "address": secured.url, "up": True,
                  "managed": False, "started_here": False}
    down = CliRunner().invoke(main, ["stack", "status"], env={**env, "LAAS_ES_API_KEY": "bm86a2V5"})
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
