"""`laas stack` against the real local services: status and an idempotent `up`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from deploy.kafka import new_cluster_id
from deploy.stack import Stack

ROOT = Path(__file__).resolve().parent.parent


def laas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_status_reports_three_services_up(
    kafka_servers: str, es_url: str, postgres_url: str
) -> None:
    result = laas("stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows == [["kafka", "up"], ["elasticsearch", "up"], ["postgres", "up"]]


def test_up_twice_is_harmless(
    settings: Settings, kafka_servers: str, es_url: str, postgres_url: str
) -> None:
    stack = Stack(settings)
    pids_before = [(s.name, s.pid_file.read_text()) for s, _ in stack.services if s.running()]
    result = laas("stack", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"kafka: already up at {settings.kafka_servers}",
        f"elasticsearch: already up at {settings.elasticsearch_url}",
        f"postgres: already up at {settings.local_postgres_url}",
    ]
    pids_after = [(s.name, s.pid_file.read_text()) for s, _ in stack.services if s.running()]
    assert pids_after == pids_before


def test_down_stops_only_what_it_started(
    tmp_path: Path, kafka_servers: str, es_url: str, postgres_url: str
) -> None:
    """A stack whose state dir started nothing stops nothing, even with the servers up."""
    other = Stack(Settings(state_dir=tmp_path))
    assert list(other.down()) == [
        "postgres: was not running",
        "elasticsearch: was not running",
        "kafka: was not running",
    ]
    assert all(status.up for status in Stack(Settings()).status())


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """StorageTool reads `--cluster-id -x...` as an option: a fresh format failed 1 in 64."""
    import uuid

    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 '-A...' (0xf8 >> 2 = 62 = '-')
    draws = iter([dashed, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    made = new_cluster_id()
    assert made == "AAAAAAAAAAAAAAAAAAAAAQ" and not made.startswith("-")
