"""The Python logging handler and `laas send` against a real gateway and Kafka; the client
package (`laas-client`, app/client/) installed alone in a fresh virtualenv."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from laas_client import LaasHandler
from starlette.applications import Starlette

from app.cli.main import main
from app.ingest.convert import from_any
from app.ingest.service import IngestService
from app.settings import Settings
from protos.laas.v1 import LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, consume
from tests.serving import served
from web.ingest import routes

CLIENT = Path(__file__).resolve().parents[1] / "app" / "client"
# Top-level names of the server (its own packages and its dependencies) that must not be
# importable where only the client is installed.
SERVER_MODULES = ("app", "agents", "tables", "web", "deploy", "protos", "faust", "aiokafka",
                  "sqlalchemy", "elasticsearch", "starlette", "uvicorn", "google.protobuf")
# Run in the fresh venv (python -I: no cwd, no PYTHON* variables): report which server modules
# are importable or loaded there (none may be), then log one record through LaasHandler and
# say what it sent.
SHIP = """
import importlib.util, json, logging, sys
url, key, service, *server = sys.argv[1:]
def findable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
present = [name for name in server if findable(name)]
import laas_client
handler = laas_client.LaasHandler(url, key, service=service, flush_interval=0.05)
logger = logging.getLogger("fresh-venv")
logger.propagate = False
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.warning("shipped from a fresh venv to %s", url, extra={"order": 7})
handler.flush(10)
handler.close()
loaded = sorted({m.split(".")[0] for m in sys.modules} & {n.split(".")[0] for n in server})
print(json.dumps({"file": laas_client.__file__, "present": present, "loaded": loaded,
                  "sent": handler.sent, "failed": handler.failed, "dropped": handler.dropped}))
"""


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


def test_handler_with_dead_endpoint_never_blocks() -> None:
    handler = LaasHandler(f"http://127.0.0.1:{_dead_port()}", "k", service="app",
                          capacity=1000, batch_size=100, flush_interval=0.05, close_timeout=1.0)
    logger = _logger("laas-dead", handler)
    started = time.monotonic()
    for i in range(20_000):
        logger.info("message %d", i)
    emitted = time.monotonic() - started
    assert emitted < 5.0  # ~20k emits; no network wait in the caller
    assert handler.dropped >= 20_000 - 1000 - 100
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 3.0
    assert handler.sent == 0 and handler.failed > 0


async def test_handler_ships_over_grpc(gateway: int, raw_settings: Settings) -> None:
    handler = LaasHandler(f"grpc://127.0.0.1:{gateway}", "ingest-key", service="shop",
                          flush_interval=0.05)
    logger = _logger("laas-grpc", handler)
    logger.warning("order %s shipped", "o-1", extra={"order": 11})
    try:
        raise KeyError("k")
    except KeyError:
        logger.exception("failed")
    await asyncio.to_thread(handler.flush, 5)
    await asyncio.to_thread(handler.close)
    msgs = await consume(raw_settings, 2, timeout=5)
    first, second = (LogRecord().parse(m.value) for m in msgs)
    assert from_any(first.body) == "order o-1 shipped" and first.severity_number == 13
    assert from_any(first.attributes["order"]) == 11
    assert first.resource.service_name == "shop" and msgs[0].key == b"1/shop"
    body = from_any(second.body)
    assert isinstance(body, str) and "KeyError" in body
    assert from_any(second.attributes["exception.type"]) == "KeyError"
    assert handler.sent == 2 and handler.dropped == 0


async def test_laas_send_file_and_demo(
        gateway: int, raw_settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("first line\n\nsecond line\n")
    url = f"grpc://127.0.0.1:{gateway}"

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, ["send", "--api-key", "ingest-key", "--url", url, *args])

    result = await asyncio.to_thread(run, str(path), "--service", "files")
    assert result.exit_code == 0, result.output
    assert "accepted 2, rejected 0" in result.output
    jpath = tmp_path / "app.jsonl"
    jpath.write_text(json.dumps({"message": "j", "level": "error"}) + "\n")
    result = await asyncio.to_thread(run, str(jpath), "--json")
    assert "accepted 1" in result.output
    result = await asyncio.to_thread(run, "--demo", "--count", "50", "--rate", "500")
    assert "accepted 50" in result.output, result.output
    msgs = await consume(raw_settings, 53, timeout=10)
    assert len(msgs) == 53
    assert LogRecord().parse(msgs[0].value).resource.service_name == "files"


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtualenv where pip installed app/client (built from a copy of
    the directory) with the dependencies it declares, and nothing else."""
    tmp = tmp_path_factory.mktemp("laas-client")
    source = tmp / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


@pytest.fixture
async def http_ingest(raw_settings: Settings, keys: KeyTable) -> AsyncIterator[int]:
    """The HTTP ingest routes served by uvicorn on a free port; yields the port."""
    app = Starlette(routes=routes)
    app.state.ingest = IngestService(raw_settings, keys)
    try:
        async with served(app) as port:
            yield port
    finally:
        await app.state.ingest.close()


async def test_the_client_installed_alone_ships_over_grpc(
        client_python: Path, gateway: int, raw_settings: Settings) -> None:
    await ship_from_fresh_venv(client_python, f"grpc://127.0.0.1:{gateway}", raw_settings)


async def test_the_client_installed_alone_ships_over_http(
        client_python: Path, http_ingest: int, raw_settings: Settings) -> None:
    await ship_from_fresh_venv(client_python, f"http://127.0.0.1:{http_ingest}", raw_settings)


async def ship_from_fresh_venv(python: Path, url: str, raw_settings: Settings) -> None:
    """Log one record with LaasHandler in the fresh venv, where no server module is importable,
    and find it on the real logs.raw topic."""
    service = f"fresh-{url.split(':')[0]}"
    ran = await asyncio.to_thread(
        subprocess.run, [str(python), "-I", "-c", SHIP, url, "ingest-key", service,
                         *SERVER_MODULES],
        cwd=python.parent, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = json.loads(ran.stdout.splitlines()[-1])
    assert out["present"] == [] and out["loaded"] == []  # none of the server there
    assert Path(out["file"]).is_relative_to(python.parent.parent / "lib")
    assert (out["sent"], out["failed"], out["dropped"]) == (1, 0, 0), ran.stderr
    (msg,) = await consume(raw_settings, 1, timeout=10)
    record = LogRecord().parse(msg.value)
    assert from_any(record.body) == f"shipped from a fresh venv to {url}"
    assert from_any(record.attributes["order"]) == 7
    assert from_any(record.attributes["logger.name"]) == "fresh-venv"
    assert record.severity_number == 13 and record.severity_text == "WARNING"
    assert record.resource.service_name == service
    assert msg.key == f"1/{service}".encode()
