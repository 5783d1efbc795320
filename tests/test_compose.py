"""docker-compose.yml would run: it loads as Docker Compose loads it (compose-go's loader: the
Compose Specification's JSON schema, interpolation, references), agrees with the settings,
the image builds the UI, and the LaaS services' own commands come up healthy, as checked by
their own health checks, against the local stack (tests/compose_fixtures.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.compose_fixtures import (
    COMPOSE,
    LAAS_SERVICES,
    ROOT,
    ComposeRun,
    resolve,
    resolved_config,
)

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return resolved_config()


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port) of a resolved service"""
    return {int(p["target"]): (p.get("host_ip", ""), int(p["published"]))
            for p in service.get("ports", [])}


def test_the_file_loads_as_docker_compose_loads_it(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"kafka", "elasticsearch", "postgres", *LAAS_SERVICES}
    for name in LAAS_SERVICES:
        assert services[name]["command"] == ["laas", name]
        assert services[name]["environment"]["LAAS_SECRET_KEY"] == "compose-test-secret"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert {d: c["condition"] for d, c in services[name]["depends_on"].items()} == {
            "kafka": "service_healthy", "elasticsearch": "service_healthy",
            "postgres": "service_healthy"}


def test_the_loader_refuses_a_missing_secret_and_an_unknown_field(tmp_path: Path) -> None:
    missing = resolve()
    assert missing.returncode == 1
    assert "LAAS_SECRET_KEY" in missing.stderr and "set LAAS_SECRET_KEY" in missing.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    command: [\"laas\", \"web\"]\n",
                                                  "    command: [\"laas\", \"web\"]\n"
                                                  "    commands: oops\n"))
    refused = resolve(broken, LAAS_SECRET_KEY="x")
    assert refused.returncode == 1 and "commands" in refused.stderr, refused.stderr


def test_laas_variables_are_settings_fields(config: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name in LAAS_SERVICES:
        for var in config["services"][name]["environment"]:
            assert var.startswith("LAAS_") and var.removeprefix("LAAS_") in fields, \
                f"{name}: {var} is not a setting"


def test_processes_bind_every_interface_and_ports_match_the_settings(
        config: dict[str, Any]) -> None:
    defaults = Settings.model_construct()  # field defaults, whatever the environment says
    services = config["services"]
    for name in LAAS_SERVICES:
        env = services[name]["environment"]
        assert env["LAAS_WEB_HOST"] == env["LAAS_GATEWAY_HOST"] == "0.0.0.0"
        assert env["LAAS_TLS_PLAINTEXT_OK"] == "true"  # required off loopback without TLS
        assert env["LAAS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["LAAS_ES_URL"] == "http://elasticsearch:9200"
        assert "@postgres:5432/" in env["LAAS_DATABASE_URL"]
        assert env["LAAS_STATE_DIR"] == "/var/lib/laas"
        assert [v["target"] for v in services[name]["volumes"]] == ["/var/lib/laas"]
        assert services[name]["healthcheck"]["test"] == [
            "CMD", "python", "-m", "deploy.healthcheck", name]
        ports = {"LAAS_WEB_PORT": defaults.web_port, "LAAS_GATEWAY_PORT": defaults.gateway_port,
                 "LAAS_GATEWAY_METRICS_PORT": defaults.gateway_metrics_port,
                 "LAAS_OTLP_HTTP_PORT": defaults.otlp_http_port,
                 "LAAS_WORKER_WEB_PORT": defaults.worker_web_port}
        assert {k: int(env[k]) for k in ports} == ports
    assert published(services["web"]) == {defaults.web_port: ("127.0.0.1", defaults.web_port)}
    assert published(services["gateway"]) == {
        defaults.gateway_port: ("127.0.0.1", defaults.gateway_port),
        defaults.otlp_http_port: ("127.0.0.1", defaults.otlp_http_port),
        defaults.gateway_metrics_port: ("127.0.0.1", defaults.gateway_metrics_port)}
    assert published(services["worker"]) == {
        defaults.worker_web_port: ("127.0.0.1", defaults.worker_web_port)}
    assert published(services["elasticsearch"])[9200] == ("127.0.0.1", defaults.es_port)
    assert published(services["postgres"])[5432] == ("127.0.0.1", defaults.postgres_port)
    assert "kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("kafka", "elasticsearch", "postgres"):
        assert services[name]["healthcheck"]["test"][0] == "CMD-SHELL"


def test_the_image_builds_the_ui_and_holds_every_package() -> None:
    text = DOCKERFILE.read_text()
    copied: set[str] = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            copied.add(source.rstrip("/"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"packages not in the image: {packages - copied}"
    # The UI: built by npm in a stage of its own, copied where web/ui.py looks for it.
    assert re.search(r"^FROM node:\S+ AS ui$", text, re.M)
    assert re.search(r"^RUN npm ci", text, re.M) and re.search(r"^RUN npm run build$", text, re.M)
    from web.ui import DIST

    assert DIST == ROOT / "web" / "ui" / "dist"
    assert re.search(r"^WORKDIR /srv/laas$", text, re.M)
    assert "COPY --from=ui /src/web/ui/dist web/ui/dist" in text
    assert "pip install -e ." in text  # runs from /srv/laas, where web/ui/dist is
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".laas", "**/node_modules", "web/ui/dist"} <= set(dockerignore)


@pytest.mark.integration
async def test_the_services_commands_come_up_healthy(compose_run: ComposeRun) -> None:
    """The fixture started each `command:` and waited for its `healthcheck:`; the readiness
    behind the web's check says what it checked."""
    for service in LAAS_SERVICES:
        assert compose_run.procs[service].poll() is None, compose_run.tail(service)
        assert compose_run.healthy(service)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{compose_run.port('LAAS_WEB_PORT')}",
                                 timeout=10) as web:
        ready = await web.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"].values()) == {"ok"}
        assert (await web.get("/healthz")).json() == {"status": "ok"}


def test_the_files_the_image_copies_make_an_installable_project(tmp_path: Path) -> None:
    """What `pip install -e .` gets in the image (the COPY sources, less .dockerignore) builds,
    with the `laas` command and the health check module."""
    import shutil
    import subprocess
    import sys
    import zipfile

    context = tmp_path / "srv"
    context.mkdir()
    ignore = shutil.ignore_patterns("node_modules", "dist", "__pycache__")
    final_stage = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    for line in re.findall(r"^COPY (?!--from)(.+)$", final_stage, re.M):
        for source in line.split()[:-1]:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, context / source, ignore=ignore)
            else:
                shutil.copy(ROOT / source, context / source)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
                           cwd=context, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("laas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"deploy/healthcheck.py", "app/runtime/metrics.py", "web/ui.py"} <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "laas = app.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
