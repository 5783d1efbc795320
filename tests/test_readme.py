"""README stays true: the settings table (docs/settings.md) is generated, the Quickstart has
two commands."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings_doc import BEGIN, END, SETTINGS_DOC, markdown_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_configuration_table_matches_the_settings() -> None:
    section = SETTINGS_DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == markdown_table(), "regenerate with: python -m app.settings_doc --write"


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```(?:sh|bash)\n(.*?)```", quickstart, re.S)
    lines = [line for block in commands for line in block.strip().splitlines()]
    assert lines == ["bash deploy/bootstrap.sh up", "bash deploy/bootstrap.sh test"]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "bash deploy/bootstrap.sh test" in ci
