"""Webhook SSRF and replay (issue 21, item 2): a webhook may not target loopback, private,
link-local or metadata addresses, checked after DNS resolution when it is created and again at
every delivery (DNS rebinding); the delivery log tells a tenant nothing about internal ports;
deliveries are signed over id, timestamp and body (Standard Webhooks) and a receiver using the
function docs/analytics.md shows refuses a replay.

Only loopback receivers are ever contacted: tests that deliver allow 127.0.0.1 through
`webhook_allow_networks` (the on-premise setting), other names resolve through a stub."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from elasticsearch import AsyncElasticsearch
from starlette.applications import Starlette

from agents.alerts import Webhooks
from agents.resources import Resources
from app.db.models import Role, Webhook, WebhookDelivery
from app.settings import Settings
from tests.auth_fixtures import World, client_for, make_settings, running_app
from tests.stream_fixtures import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
REFUSED = "refused: address not allowed"
LOOPBACK = ["127.0.0.1/32"]


# -- fixtures ------------------------------------------------------------------------------------

@dataclass
class Receiver:
    """A loopback HTTP(S) server recording what it receives; answers `status` (and
    `location` as a redirect)."""

    port: int = 0
    status: int = 200
    location: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(({k.lower(): v for k, v in request.headers.items()},
                              await request.read()))
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=self.status, headers=headers)


@asynccontextmanager
async def receiving(status: int = 200, tls: ssl.SSLContext | None = None
                    ) -> AsyncIterator[Receiver]:
    receiver = Receiver(port=free_port(), status=status)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port, ssl_context=tls).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


@dataclass
class Setup:
    app: Starlette
    settings: Settings
    world: World
    tenant_id: int


@asynccontextmanager
async def laas(tmp_path: Path, **overrides: Any) -> AsyncIterator[Setup]:
    """The web app on an SQLite database with one tenant and its admin."""
    values: dict[str, Any] = {"webhook_attempts": 2, "webhook_retry_initial": 0.05,
                              "webhook_timeout": 3.0}
    values.update(overrides)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}", tmp_path / "state",
                             **values)
    async with running_app(settings) as app:
        from app.accounts import tenancy

        world = World(app=app, sessions=app.state.sessions)
        async with world.sessions.begin() as session:
            world.tenant_ids["acme"] = (await tenancy.create_tenant(session, "acme")).id
        await world.add_user("acme", "admin", Role.ADMIN)
        await world.login("admin")
        yield Setup(app, settings, world, world.tenant_ids["acme"])


async def store_hook(setup: Setup, url: str, secret: str = "0123abcd" * 8) -> int:
    """A webhook row as the database may hold it (created before URLs were checked)."""
    async with setup.world.sessions.begin() as session:
        hook = Webhook(tenant_id=setup.tenant_id, name="h", url=url, secret=secret, enabled=True)
        session.add(hook)
        await session.flush()
        return hook.id


async def deliver(setup: Setup, hook_id: int, url: str, secret: str = "0123abcd" * 8,
                  resolver: Any = None, client: httpx.AsyncClient | None = None
                  ) -> tuple[bool, list[dict[str, Any]]]:
    """Deliver one alert through the worker's code; the result and the delivery log the
    tenant sees (oldest first)."""
    resources = Resources.build(setup.settings)
    hooks = Webhooks(resources)
    hooks.resolver = resolver
    if client is not None:
        hooks._client = client
    alert = {"id": uuid.uuid4().hex[:20], "tenant_id": str(setup.tenant_id), "title": "t"}
    body = b'{"id":"%s","title":"t"}' % alert["id"].encode()
    try:
        delivered = await hooks.deliver(hook_id, url, secret, alert, body)
    finally:
        await resources.close()
        if hooks._client is not None:
            await hooks._client.aclose()
    async with client_for(setup.app) as api:
        answer = await api.get(f"/api/v1/webhooks/{hook_id}/deliveries",
                               headers=setup.world.headers("admin"))
    assert answer.status_code == 200, answer.text
    return delivered, list(reversed(answer.json()["deliveries"]))


def stub(answers: dict[str, list[str]]) -> Callable[[str, int], Any]:
    """A resolver answering from `answers` (no DNS traffic)."""
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"stub: {host} does not resolve")
        return answers[host]
    return resolve


def docs_verifier() -> Callable[..., bool]:
    """The receiver's verification function exactly as docs/analytics.md shows it."""
    text = DOCS.read_text()
    match = re.search(r"<!-- webhook-verify:begin -->\n```python\n(.*?)```\n"
                      r"<!-- webhook-verify:end -->", text, re.S)
    assert match, "docs/analytics.md lost its webhook verification example"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["verify_laas_webhook"]


# -- the reproductions -----------------------------------------------------------------------------

async def test_internal_urls_are_refused_at_creation(tmp_path: Path) -> None:
    async with laas(tmp_path) as setup, client_for(setup.app) as api:
        admin = setup.world.headers("admin")
        for url, says in [
            ("http://127.0.0.1:9200/laas-logs/_doc/1",
             "url: 127.0.0.1 is an address webhooks may not target (loopback)"),
            ("http://localhost:9200/",
             "url: localhost resolves to an address webhooks may not target (loopback)"),
            ("http://[::ffff:127.0.0.1]:9092/", "may not target (loopback)"),
            ("http://2130706433:5433/", "resolves to an address webhooks may not target"),
            ("http://0.0.0.0:9200/", "may not target (unspecified)"),
            ("http://10.1.2.3/hook", "url: 10.1.2.3 is an address webhooks may not target"),
            ("http://169.254.169.254/latest/meta-data/", "may not target (cloud metadata)"),
            ("http://[fd00:ec2::254]/", "may not target (cloud metadata)"),
            ("http://100.64.0.1/", "may not target (shared (100.64.0.0/10))"),
            ("ftp://example.com/", "url must be an http:// or https:// URL"),
        ]:
            answer = await api.post("/api/v1/webhooks", headers=admin,
                                    json={"name": "x", "url": url})
            assert answer.status_code == 422, (url, answer.text)
            error = answer.json()
            assert error["error"] == "invalid_input" and error["field"] == "url", error
            assert says in error["detail"], (url, error)
            if not url.startswith("ftp"):
                assert "LAAS_WEBHOOK_ALLOW_NETWORKS" in error["detail"], error
        listed = (await api.get("/api/v1/webhooks", headers=admin)).json()["webhooks"]
        assert listed == []


async def test_changing_a_url_to_an_internal_one_is_refused(tmp_path: Path) -> None:
    async with laas(tmp_path) as setup, client_for(setup.app) as api:
        hook_id = await store_hook(setup, "http://127.0.0.1:9/")  # as stored before the fix
        answer = await api.patch(f"/api/v1/webhooks/{hook_id}",
                                 headers=setup.world.headers("admin"),
                                 json={"url": "http://localhost:9200/x/_doc/1"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "url"


async def test_a_stored_hook_to_elasticsearch_is_refused_at_delivery(
        tmp_path: Path, es: AsyncElasticsearch) -> None:
    index = f"ssrf-{uuid.uuid4().hex[:12]}"
    url = f"http://127.0.0.1:9200/{index}/_doc/1"
    try:
        async with laas(tmp_path) as setup:
            hook_id = await store_hook(setup, url)
            delivered, log = await deliver(setup, hook_id, url)
        assert not delivered
        # refused once, not retried, nothing written into Elasticsearch
        assert [(d["attempt"], d["status_code"], d["error"], d["delivered"]) for d in log] == \
            [(1, None, REFUSED, False)]
        assert not await es.indices.exists(index=index)
    finally:
        await es.indices.delete(index=index, ignore_unavailable=True)


async def test_localhost_is_refused_at_delivery_and_nothing_is_sent(tmp_path: Path) -> None:
    async with receiving() as receiver, laas(tmp_path) as setup:
        url = f"http://localhost:{receiver.port}/hook"
        hook_id = await store_hook(setup, url)
        delivered, log = await deliver(setup, hook_id, url)
    assert not delivered
    assert [(d["status_code"], d["error"]) for d in log] == [(None, REFUSED)]
    assert receiver.received == []


async def test_delivery_errors_do_not_tell_closed_ports_from_services(
        tmp_path: Path, settings: Settings) -> None:
    """Even with loopback allowed (on-premise), a closed port, Kafka and PostgreSQL all read
    `connection failed`; before, each had its own exception text."""
    async with laas(tmp_path, webhook_allow_networks=LOOPBACK, webhook_attempts=1) as setup:
        errors = {}
        for name, port in [("closed", free_port()), ("kafka", settings.kafka_port),
                           ("postgres", settings.postgres_port)]:
            url = f"http://127.0.0.1:{port}/"
            hook_id = await store_hook(setup, url)
            delivered, log = await deliver(setup, hook_id, url)
            assert not delivered
            errors[name] = [(d["status_code"], d["error"]) for d in log]
    assert errors == {name: [(None, "connection failed")] for name in errors}, errors


async def test_old_delivery_log_rows_do_not_show_internal_errors(tmp_path: Path) -> None:
    async with laas(tmp_path) as setup, client_for(setup.app) as api:
        hook_id = await store_hook(setup, "http://127.0.0.1:9092/")
        async with setup.world.sessions.begin() as session:
            for error, status in [("ConnectError: [Errno 111] Connection refused", None),
                                  ("RemoteProtocolError: Server disconnected", None),
                                  (None, 201), ("HTTP 500", 500), ("timed out", None)]:
                session.add(WebhookDelivery(webhook_id=hook_id, tenant_id=setup.tenant_id,
                                            alert_id="a", attempt=1, status_code=status,
                                            error=error, delivered=status == 201))
        rows = (await api.get(f"/api/v1/webhooks/{hook_id}/deliveries",
                              headers=setup.world.headers("admin"))).json()["deliveries"]
    assert [d["error"] for d in reversed(rows)] == [
        "connection failed", "connection failed", None, "HTTP 500", "timed out"]


async def test_signature_covers_timestamp_and_a_replay_is_refused(tmp_path: Path) -> None:
    verify = docs_verifier()
    async with receiving() as receiver, laas(tmp_path, webhook_allow_networks=LOOPBACK) as setup:
        async with client_for(setup.app) as api:
            created = await api.post("/api/v1/webhooks", headers=setup.world.headers("admin"),
                                     json={"name": "ops",
                                           "url": f"http://127.0.0.1:{receiver.port}/hook"})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")
        before = time.time()
        delivered, log = await deliver(setup, hook["id"], hook["url"], hook["secret"])
    assert delivered and [(d["status_code"], d["error"]) for d in log] == [(200, None)]
    ((headers, body),) = receiver.received
    stamp = int(headers["webhook-timestamp"])
    assert int(before) <= stamp <= time.time()
    assert headers["webhook-id"] == headers["x-laas-alert-id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(hook["secret"], headers, body)
    assert verify(hook["secret"], headers, body, now=stamp + 299)
    # the same request replayed later, or with a changed body, id or timestamp, is refused
    assert not verify(hook["secret"], headers, body, now=stamp + 301)
    assert not verify(hook["secret"], headers, body, now=stamp - 301)
    assert not verify(hook["secret"], headers, body.replace(b'"t"', b'"u"'))
    assert not verify(hook["secret"], {**headers, "webhook-id": "other"}, body)
    assert not verify(hook["secret"], {**headers, "webhook-timestamp": str(stamp + 1)}, body)
    assert not verify("whsec_" + base64.b64encode(b"k" * 32).decode(), headers, body)
    assert not verify(hook["secret"], {}, body)
    assert not verify(hook["secret"], {**headers, "webhook-timestamp": "１２"}, body)
    assert not verify(hook["secret"], {**headers, "webhook-signature": "v1,é"}, body)
    # several signatures (a key rotation, in the specification): any valid one is enough
    assert verify(hook["secret"], {**headers, "webhook-signature":
                                   "v1,bm90IGl0 " + headers["webhook-signature"]}, body)


# -- delivery pinning ------------------------------------------------------------------------------

async def test_dns_rebinding_is_refused_at_delivery(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The name resolved to a public address when the hook was created and resolves to
    loopback when the alert is delivered: refused, nothing sent."""
    from app.pipeline import webhook_guard

    async with receiving() as receiver, laas(tmp_path) as setup:
        url = f"http://rebind.example:{receiver.port}/hook"
        monkeypatch.setattr(webhook_guard, "resolve", stub({"rebind.example": ["93.184.215.14"]}))
        async with client_for(setup.app) as api:
            created = await api.post("/api/v1/webhooks", headers=setup.world.headers("admin"),
                                     json={"name": "ops", "url": url})
        assert created.status_code == 201, created.text
        sent: list[httpx.Request] = []

        def never(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(599)
        delivered, log = await deliver(
            setup, created.json()["id"], url, resolver=stub({"rebind.example": ["127.0.0.1"]}),
            client=httpx.AsyncClient(transport=httpx.MockTransport(never)))
    assert not delivered
    assert [(d["status_code"], d["error"]) for d in log] == [(None, REFUSED)]
    assert sent == [] and receiver.received == []


async def test_a_name_with_one_internal_address_is_refused() -> None:
    from app.pipeline import webhook_guard

    mixed = stub({"mixed.example": ["93.184.215.14", "10.0.0.7"]})
    with pytest.raises(webhook_guard.AddressRefused) as refused:
        await webhook_guard.check_url("https://mixed.example/x", resolver=mixed)
    assert refused.value.reason.startswith(
        "url: mixed.example resolves to an address webhooks may not target (private)")
    with pytest.raises(webhook_guard.Unresolvable):
        await webhook_guard.check_url("https://nowhere.example/", resolver=mixed)
    target = await webhook_guard.check_url(
        "https://ok.example/", resolver=stub({"ok.example": ["93.184.215.14"]}))
    assert target.addresses == (ipaddress.ip_address("93.184.215.14"),)


async def test_delivery_connects_to_the_checked_address_with_host_and_tls_name(
        tmp_path: Path) -> None:
    """hooks.example resolves (stub) to allowed 127.0.0.1: the worker connects there, keeps
    `Host: hooks.example:<port>` and sends the TLS server name the certificate is checked
    against."""
    server_tls, client_tls = tls_pair("hooks.example", tmp_path)
    async with receiving(tls=server_tls) as receiver, \
            laas(tmp_path, webhook_allow_networks=LOOPBACK) as setup:
        url = f"https://hooks.example:{receiver.port}/hook"
        hook_id = await store_hook(setup, url)
        delivered, log = await deliver(
            setup, hook_id, url, resolver=stub({"hooks.example": ["127.0.0.1"]}),
            client=httpx.AsyncClient(verify=client_tls, trust_env=False, timeout=5))
        assert delivered, log
        ((headers, _),) = receiver.received
        assert headers["host"] == f"hooks.example:{receiver.port}"
        # a name the certificate does not cover fails the TLS check: the name really is sent
        other = f"https://other.example:{receiver.port}/hook"
        other_id = await store_hook(setup, other)
        delivered, log = await deliver(
            setup, other_id, other, resolver=stub({"other.example": ["127.0.0.1"]}),
            client=httpx.AsyncClient(verify=client_tls, trust_env=False, timeout=5))
    assert not delivered and {d["error"] for d in log} == {"connection failed"}
    assert len(receiver.received) == 1


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    async with receiving() as elsewhere, receiving(status=307) as first, \
            laas(tmp_path, webhook_allow_networks=LOOPBACK) as setup:
        first.location = f"http://127.0.0.1:{elsewhere.port}/internal"
        url = f"http://127.0.0.1:{first.port}/hook"
        hook_id = await store_hook(setup, url)
        delivered, log = await deliver(setup, hook_id, url)
    assert not delivered
    assert [(d["status_code"], d["error"]) for d in log] == [(307, "HTTP 307")]
    assert len(first.received) == 1 and elsewhere.received == []


def tls_pair(name: str, folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for `name` and a client context that
    trusts it (and checks host names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return server, ssl.create_default_context(cadata=pem.decode())


# -- pure parts ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("0.1.2.3", "private"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"), ("192.0.2.10", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"), ("100.64.0.1", "shared (100.64.0.0/10)"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "private"),
    ("255.255.255.255", "private"), ("fec0::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "cloud metadata"),
    ("64:ff9b::a00:1", "private"), ("2002:7f00:1::1", "loopback"),
    ("8.8.8.8", None), ("93.184.215.14", None), ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None), ("64:ff9b::808:808", None),
])
def test_address_classes(address: str, why: str | None) -> None:
    from app.pipeline.webhook_guard import refusal

    assert refusal(ipaddress.ip_address(address)) == why


def test_allowlist_admits_its_networks_but_never_metadata() -> None:
    from app.pipeline.webhook_guard import refusal

    ip = ipaddress.ip_address
    lan = [ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("127.0.0.1/32")]
    assert refusal(ip("10.20.3.4"), lan) is None
    assert refusal(ip("127.0.0.1"), lan) is None
    assert refusal(ip("::ffff:127.0.0.1"), lan) is None
    assert refusal(ip("10.21.0.1"), lan) == "private"
    assert refusal(ip("127.0.0.2"), lan) == "loopback"
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    assert refusal(ip("169.254.169.254"), everything) == "cloud metadata"
    assert refusal(ip("fd00:ec2::254"), everything) == "cloud metadata"


def test_signature_matches_the_standard_webhooks_vector() -> None:
    """The example of the Standard Webhooks libraries' tests."""
    from app.pipeline.alerting import sign_standard

    assert sign_standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                         1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_old_hex_secrets_still_sign_and_verify() -> None:
    from app.pipeline.alerting import SIGNATURE_HEADER, sign, webhook_headers

    secret, body, now = "ab" * 32, b'{"id":"x"}', time.time()
    headers = webhook_headers(secret, "x", body, now)
    assert headers[SIGNATURE_HEADER] == sign(secret, body)  # the deprecated header, unchanged
    assert docs_verifier()(secret, headers, body, now=now)


async def test_resolution_waits_no_longer_than_the_timeout() -> None:
    from app.pipeline import webhook_guard

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["93.184.215.14"]
    started = time.monotonic()
    with pytest.raises(webhook_guard.Unresolvable):
        await webhook_guard.check_url("http://slow.example/", resolver=slow, timeout=0.2)
    assert time.monotonic() - started < 2
