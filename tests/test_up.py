"""`laas up`: the main job brings up the worker and the web app, and stops them on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from app.topics import ALL
from tests.test_kafka import free_port

ROOT = Path(__file__).resolve().parent.parent


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def topics(servers: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_up_runs_worker_and_web(kafka_servers: str, es_url: str, postgres_url: str, unique: str) -> None:
    web_port = free_port()
    env = {
        **os.environ,
        "LAAS_APP_ID": unique,
        "LAAS_TOPIC_PREFIX": f"{unique}.",
        "LAAS_WEB_PORT": str(web_port),
        "LAAS_WORKER_WEB_PORT": str(free_port()),
        "LAAS_GATEWAY_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "app", "up"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wanted = {f"{unique}.{name}" for name in ALL}
        async with asyncio.timeout(120):
            while not (healthz(web_port) and wanted <= await topics(kafka_servers)):
                assert up.poll() is None, up.communicate()[0]
                await asyncio.sleep(0.5)
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert f"LaaS is up: http://127.0.0.1:{web_port}/" in output
    assert not healthz(web_port)
