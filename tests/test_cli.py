"""The `laas` command line without servers: help, external services, missing prerequisites."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.settings import Settings
from deploy.java import java_home
from deploy.kafka import Kafka
from deploy.proc import StackError

CLOSED = "127.0.0.1:1"  # nothing listens on port 1


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "stack", "worker", "web"):
        assert f"  {command} " in result.output


def test_status_of_unreachable_external_services(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAAS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LAAS_KAFKA_BOOTSTRAP", CLOSED)
    monkeypatch.setenv("LAAS_ES_URL", f"http://{CLOSED}")
    monkeypatch.setenv("LAAS_DATABASE_URL", f"postgresql+asyncpg://x@{CLOSED}/x")
    result = CliRunner().invoke(main, ["stack", "status"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["kafka", "DOWN"],
        ["elasticsearch", "DOWN"],
        ["postgres", "DOWN"],
    ]
    assert all("(external)" in line for line in lines[:2])


def test_up_names_an_unreachable_external_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAAS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LAAS_KAFKA_BOOTSTRAP", CLOSED)
    monkeypatch.setenv("LAAS_ES_URL", f"http://{CLOSED}")
    monkeypatch.setenv("LAAS_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    result = CliRunner().invoke(main, ["stack", "up"])
    assert result.exit_code == 1
    assert "kafka: using 127.0.0.1:1 (configured, not started here)" in result.output
    assert "kafka at 127.0.0.1:1 (configured) does not answer" in result.output


def test_missing_maven_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn here
    kafka = Kafka(Settings(state_dir=tmp_path))
    with pytest.raises(StackError, match=r"`mvn` is not installed; install Maven"):
        kafka.prepare()


def test_bad_java_home_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="set LAAS_JAVA_HOME"):
        java_home(Settings(java_home=tmp_path))
