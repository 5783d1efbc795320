"""`laas up`: worker, gateway and web come up, the printed login works, a killed process is
restarted, Ctrl-C stops them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka.topics import ALL
from deploy.proc import port_open
from tests.conftest import kafka_options
from tests.stream_fixtures import children_of
from tests.test_kafka import free_port

ROOT = Path(__file__).resolve().parent.parent


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def topics(servers: str) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def child_running(up: subprocess.Popen[str], command: str) -> int | None:
    """The pid of `up`'s child `python -m app <command>`."""
    for pid in children_of(up.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command.encode() in argv:
            return pid
    return None


async def test_up_runs_every_process_and_prints_a_working_login(
    kafka_servers: str, es_url: str, postgres_url: str, unique: str, tmp_path: Path
) -> None:
    web_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "LAAS_STATE_DIR": str(tmp_path),  # fresh SQLite user database: the demo login is made
        "LAAS_APP_ID": unique,
        "LAAS_TOPIC_PREFIX": f"{unique}.",
        "LAAS_WEB_PORT": str(web_port),
        "LAAS_GATEWAY_PORT": str(gateway_port),
        "LAAS_OTLP_HTTP_PORT": str(free_port()),  # the gateway's OTLP/HTTP (default 4318)
        "LAAS_GATEWAY_METRICS_PORT": str(free_port()),  # its /metrics (default 9464)
        "LAAS_WORKER_WEB_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "app", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wanted = {f"{unique}.{name}" for name in ALL}
        async with asyncio.timeout(120):
            while not (
                healthz(web_port)
                and port_open("127.0.0.1", gateway_port)
                and wanted <= await topics(kafka_servers)
            ):
                assert up.poll() is None, up.communicate()[0]
                await asyncio.sleep(0.5)
        saved = dict(
            line.split(": ", 1) for line in (tmp_path / "demo-login.txt").read_text().splitlines()
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as client:
            response = await client.post(
                "/api/v1/auth/login", json={"email": saved["email"], "password": saved["password"]}
            )
            assert response.status_code == 200, response.text
            token = response.json()["access_token"]
            me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text

        gateway = child_running(up, "gateway")
        assert gateway is not None
        os.kill(gateway, signal.SIGKILL)  # a crash: `laas up` restarts it and keeps running
        async with asyncio.timeout(60):
            while (again := child_running(up, "gateway")) in (None, gateway) \
                    or not port_open("127.0.0.1", gateway_port):
                assert up.poll() is None, up.communicate()[0]
                await asyncio.sleep(0.5)
        assert healthz(web_port)
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert f"LaaS is up: http://127.0.0.1:{web_port}/" in output
    assert f"gateway exited with -{signal.SIGKILL.value}" in output
    assert f"gateway  restarted: pid {again}" in output
    printed = re.search(r"log in as (\S+) with password (\S+) \(tenant demo\)", output)
    assert printed is not None, output
    assert printed.groups() == (saved["email"], saved["password"])
    assert not healthz(web_port)
    assert not port_open("127.0.0.1", gateway_port)
