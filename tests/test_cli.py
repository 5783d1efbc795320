"""The `laas` command line without servers: help, external services, missing prerequisites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from app.cli.main import main
from app.settings import Settings
from deploy.java import java_home
from deploy.kafka import Kafka
from deploy.proc import StackError

ROOT = Path(__file__).resolve().parent.parent
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


def _command_rows(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(command path, the short help `--help` shows for it) of every command, as click renders
    them at its widest (80 columns)."""
    ctx = click.Context(group, info_name="laas")
    names = group.list_commands(ctx)
    limit = 78 - 6 - max(len(name) for name in names)
    rows = []
    for name in names:
        command = group.get_command(ctx, name)
        assert command is not None
        rows.append((" ".join((*path, name)), command.get_short_help_str(limit)))
        if isinstance(command, click.Group):
            rows.extend(_command_rows(command, (*path, name)))
    return rows


def test_short_help_reads_whole() -> None:
    rows = _command_rows(main)
    assert len(rows) > 25
    for command, text in rows:
        assert text and not text.endswith("...") and not text.endswith("e.g."), (command, text)
        assert text.endswith("."), (command, text)
    listed = CliRunner().invoke(main, ["--help"], terminal_width=80).output
    assert "search      Search your tenant's logs (Lucene query syntax)." in listed
    assert "tail        Watch your tenant's logs live." in listed


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"laas, version {version('laas')}\n"


def test_stack_status_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAAS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LAAS_KAFKA_BOOTSTRAP", CLOSED)
    monkeypatch.setenv("LAAS_ES_URL", f"http://{CLOSED}")
    monkeypatch.setenv("LAAS_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    result = CliRunner().invoke(main, ["stack", "status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {"name": "kafka", "address": CLOSED, "up": False, "managed": False,
         "started_here": False},
        {"name": "elasticsearch", "address": f"http://{CLOSED}", "up": False,
         "managed": False, "started_here": False}]


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    """The script `laas completion bash` prints, loaded in a real bash, completes `laas st`
    and `laas tenant list --j` (click asks the `laas` program itself for the words)."""
    script = CliRunner().invoke(main, ["completion", "bash"])
    assert script.exit_code == 0 and "_LAAS_COMPLETE=bash_complete" in script.output
    shim = tmp_path / "laas"  # the `laas` on PATH that the completion function runs
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m app \"$@\"\n")
    shim.chmod(0o755)
    (tmp_path / "completion.bash").write_text(script.output)

    def complete(*words: str) -> list[str]:
        line = " ".join(("laas", *words))
        probe = (f"source {tmp_path / 'completion.bash'}\n"
                 f"COMP_WORDS=(laas {' '.join(words)}); COMP_CWORD={len(words)}; "
                 f"COMP_LINE='{line}'; COMP_POINT={len(line)}\n"
                 "_laas_completion laas; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True,
                              timeout=60, cwd=ROOT,
                              env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("st") == ["stack"]
    assert complete("tenant", "list", "--j") == ["--json"]
    assert set(complete("completion", "")) == {"bash", "zsh", "fish"}
