"""The LaaS services of docker-compose.yml run as the containers would run them, against the
local stack: the Compose file resolved by compose-go's loader (`composecheck`), each LaaS
service's `command:` started with its `environment:`, pointed at the local Kafka,
Elasticsearch and PostgreSQL, and waited for with its `healthcheck:` command.

Only what cannot be the same outside containers changes: servers' addresses (the local stack
instead of `kafka`, `elasticsearch`, `postgres`), free ports instead of the published ones, a
fresh database, topic/index prefix and state directory per run, the test secret.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka.client import client_options
from app.settings import load_settings
from tests.auth_fixtures import TEST_SECRET, _create_postgres_database, _drop_postgres_database
from tests.stream_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
CHECKER = ROOT / ".laas" / "bin" / "composecheck"
LAAS_SERVICES = ("worker", "gateway", "web")  # in start order: the worker creates the topics
PORTS = ("LAAS_WEB_PORT", "LAAS_GATEWAY_PORT", "LAAS_GATEWAY_METRICS_PORT",
         "LAAS_WORKER_WEB_PORT", "LAAS_OTLP_HTTP_PORT")
HEALTHY_WITHIN = 240.0


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to completion in a thread of its own (this may be called while the
    tests' event loop exists; `asyncio.run` here would replace it)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def build_checker() -> Path:
    """`go build` deploy/composecheck (bootstrap.sh does it too; cached: about a second)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is needed to build deploy/composecheck (bash deploy/bootstrap.sh "
                    "install puts it there)", pytrace=False)
    CHECKER.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([go, "build", "-buildvcs=false", "-o", str(CHECKER), "."],
                   cwd=ROOT / "deploy" / "composecheck",
                   check=True, capture_output=True, timeout=600)
    return CHECKER


def resolve(path: Path = COMPOSE, **env: str) -> subprocess.CompletedProcess[str]:
    """`composecheck path` (like `docker compose config`) with `env` as the environment."""
    return subprocess.run([str(build_checker()), str(path)], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home()),
                               **env}, timeout=120)


def resolved_config() -> dict[str, Any]:
    done = resolve(LAAS_SECRET_KEY="compose-test-secret")
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


@dataclass
class ComposeRun:
    """The LaaS services of the Compose file running here."""

    unique: str
    config: dict[str, Any]
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def port(self, name: str) -> int:
        return int(self.env["web"][name])

    def command(self, service: str) -> list[str]:
        """The service's `command:`, its program taken from this virtualenv."""
        program, *args = self.config["services"][service]["command"]
        return [str(Path(sys.executable).with_name(program)), *args]

    def healthcheck(self, service: str) -> list[str]:
        test = self.config["services"][service]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{service}: healthcheck is not a CMD list: {test}"
        program, *args = test[1:]
        return [sys.executable if program == "python" else program, *args]

    def healthy(self, service: str) -> bool:
        done = subprocess.run(self.healthcheck(service), cwd=ROOT, env=self.env[service],
                              capture_output=True, timeout=30)
        return done.returncode == 0

    def tail(self, service: str, chars: int = 3000) -> str:
        return self.logs[service].read_text(errors="replace")[-chars:]

    def laas(self, *args: str) -> str:
        """A `laas` command with the services' settings; its standard output."""
        done = subprocess.run([str(Path(sys.executable).with_name("laas")), *args], cwd=ROOT,
                              env=self.env["web"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"laas {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()


def service_environ(run: ComposeRun, service: str, tmp: Path, overrides: dict[str, str]
                    ) -> dict[str, str]:
    env = {**os.environ, **run.config["services"][service].get("environment", {})}
    del env["LAAS_KAFKA_BOOTSTRAP"]  # the local stack's broker (with its logins), unless ...
    if "LAAS_KAFKA_BOOTSTRAP" in os.environ:  # ... the tests run against a Kafka of their own
        env["LAAS_KAFKA_BOOTSTRAP"] = os.environ["LAAS_KAFKA_BOOTSTRAP"]
    state = tmp / service
    state.mkdir(parents=True, exist_ok=True)
    return {**{k: str(v) for k, v in env.items()}, **overrides, "LAAS_STATE_DIR": str(state)}


def wait_healthy(run: ComposeRun, service: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    while not run.healthy(service):
        proc = run.procs[service]
        if proc.poll() is not None:
            pytest.fail(f"`{' '.join(run.command(service))}` exited {proc.returncode}:\n"
                        f"{run.tail(service)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{service} not healthy within {HEALTHY_WITHIN:.0f}s "
                        f"({run.healthcheck(service)}):\n{run.tail(service)}")
        time.sleep(1)


async def _cleanup(run: ComposeRun, es_url: str) -> None:
    settings = load_settings(topic_prefix=f"{run.unique}.")
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(run.unique)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
    async with httpx.AsyncClient(base_url=es_url, timeout=30) as es:
        await es.delete(f"/{run.unique}-*", params={"ignore_unavailable": "true",
                                                   "allow_no_indices": "true"})


@pytest.fixture(scope="session")
def compose_run(kafka_servers: str, es_url: str, postgres_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeRun]:
    """worker, gateway and web started from docker-compose.yml and healthy."""
    tmp = tmp_path_factory.mktemp("compose")
    run = ComposeRun(f"c{uuid.uuid4().hex[:10]}", resolved_config())
    database = run_async(_create_postgres_database())
    overrides = {
        "LAAS_ES_URL": es_url, "LAAS_DATABASE_URL": database, "LAAS_SECRET_KEY": TEST_SECRET,
        "LAAS_APP_ID": run.unique, "LAAS_TOPIC_PREFIX": f"{run.unique}.",
        "LAAS_INDEX_PREFIX": f"{run.unique}-", "LAAS_ES_LINGER": "0.2",
        "LAAS_METRICS_LAG_INTERVAL": "1",
        **{name: str(free_port()) for name in PORTS},
    }
    try:
        for service in LAAS_SERVICES:
            run.env[service] = service_environ(run, service, tmp, overrides)
            run.logs[service] = tmp / f"{service}.log"
            with run.logs[service].open("ab") as log:
                run.procs[service] = subprocess.Popen(
                    run.command(service), cwd=ROOT, env=run.env[service],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        for service in LAAS_SERVICES:
            wait_healthy(run, service)
        yield run
    finally:
        for proc in run.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in run.procs.values():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        run_async(_cleanup(run, es_url))
        run_async(_drop_postgres_database(database))
