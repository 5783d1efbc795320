"""`laas web` over TLS (a throwaway CA made here), and its refusal to serve plain HTTP off
loopback unless told it sits behind a TLS-terminating proxy."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli.up import web_healthy
from app.settings import load_settings
from tests.test_kafka import free_port
from tests.tls_fixtures import CertFiles, make_certs
from web.app import create_app, server_config

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAAS_")}
    env |= {"LAAS_STATE_DIR": str(tmp_path / "state"), "LAAS_WEB_PORT": str(port),
            "LAAS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
            "LAAS_KAFKA_CREDENTIALS_FILE": os.environ["LAAS_KAFKA_CREDENTIALS_FILE"], **extra}
    return env


@contextmanager
def laas_web(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "web"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, **client: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=2, **client).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    pytest.fail(f"laas web did not answer on {url}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


def test_https_with_the_configured_certificate(tmp_path: Path, certs: CertFiles,
                                               kafka_servers: str, es_url: str) -> None:
    port = free_port()
    env = _env(tmp_path, port, LAAS_TLS_CERTFILE=str(certs.cert),
               LAAS_TLS_KEYFILE=str(certs.key))
    log = tmp_path / "web.log"
    with laas_web(env, log) as proc:
        url = f"https://127.0.0.1:{port}"
        _wait_healthy(url, proc, log, verify=ssl.create_default_context(cafile=str(certs.ca)))
        with httpx.Client(verify=ssl.create_default_context(cafile=str(certs.ca))) as client:
            ready = client.get(f"{url}/readyz")
            assert ready.status_code == 200, ready.text
            login = client.post(f"{url}/api/v1/auth/login",
                                json={"email": "nobody@example.com", "password": "wrong"})
            assert login.status_code == 401  # the API answers over TLS
        # the served certificate is ours, and a client without our CA refuses it
        served = ssl.get_server_certificate(("127.0.0.1", port))
        assert ssl.PEM_cert_to_DER_cert(served) == \
            ssl.PEM_cert_to_DER_cert(certs.cert.read_text())
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz", timeout=5)
        # `laas up`'s liveness probe of its web child speaks https when TLS is on
        assert web_healthy(load_settings(web_port=port, tls_certfile=certs.cert,
                                         tls_keyfile=certs.key))
        assert not web_healthy(load_settings(web_port=port))  # plain HTTP: no answer
        # plain HTTP to the TLS port gets no HTTP answer
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        # `laas search` finds the web app at https:// and trusts the CA in SSL_CERT_FILE: the
        # API itself answers (an unknown key), not the TLS layer
        def search(**extra: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "app", "search", "x", "--api-key", "laas_unknown_key"],
                cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=60)
            assert done.returncode == 1
            return done.stderr

        assert "not authenticated" in search(SSL_CERT_FILE=str(certs.ca))
        assert "CERTIFICATE_VERIFY_FAILED" in search()


def test_plain_http_off_loopback_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "app", "web"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env=_env(tmp_path, free_port(), LAAS_WEB_HOST="0.0.0.0"))
    assert done.returncode == 1
    assert "refusing to serve plain text on 0.0.0.0" in done.stderr
    assert "LAAS_TLS_CERTFILE" in done.stderr and "LAAS_TLS_PLAINTEXT_OK" in done.stderr


def test_plain_http_off_loopback_when_plaintext_ok(tmp_path: Path, kafka_servers: str,
                                                   es_url: str) -> None:
    port = free_port()
    env = _env(tmp_path, port, LAAS_WEB_HOST="0.0.0.0", LAAS_TLS_PLAINTEXT_OK="true")
    log = tmp_path / "web.log"
    with laas_web(env, log) as proc:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, log)


def test_certificate_without_key_or_unreadable(tmp_path: Path, certs: CertFiles) -> None:
    app = create_app(load_settings())
    with pytest.raises(ValueError, match="go together"):
        server_config(app, load_settings(tls_certfile=certs.cert))
    with pytest.raises(ValueError, match="cannot read the TLS certificate or key"):
        server_config(app, load_settings(tls_certfile=certs.cert,
                                         tls_keyfile=tmp_path / "missing.key"))
    plain = server_config(app, load_settings())  # loopback: plain HTTP is fine
    assert plain.host == "127.0.0.1" and plain.ssl_certfile is None
    tls = server_config(app, load_settings(tls_certfile=certs.cert, tls_keyfile=certs.key,
                                           web_host="0.0.0.0"))
    assert tls.ssl_certfile == str(certs.cert) and tls.ssl_keyfile == str(certs.key)
