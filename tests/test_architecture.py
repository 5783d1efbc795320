"""The architecture checks of docs/architecture.md, run with the suite (so in CI).

- the dependency direction, by import-linter's contracts in pyproject.toml ([tool.importlinter]);
- every package of app/ is below the command line (the contract names them one by one, so a new
  package must be added there);
- every package opens with a docstring saying what it owns;
- the whole tree type-checks (mypy, the project's config) and lints (ruff).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("app", "agents", "tables", "web")


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_imports_follow_the_dependency_direction() -> None:
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout
    assert result.stdout.count("KEPT") == len(contracts())


def test_every_part_of_app_is_below_the_command_line() -> None:
    below = set(contracts()["cli-on-top"]["source_modules"])
    parts = {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py")
             if p.stem not in ("__init__", "__main__")}
    parts |= {f"app.{p.parent.name}" for p in (ROOT / "app").glob("*/__init__.py")}
    missing = parts - {"app.cli"} - below
    assert not missing, f"add to the cli-on-top contract in pyproject.toml: {sorted(missing)}"


def test_every_package_says_what_it_owns() -> None:
    for package in PACKAGES:
        for init in (ROOT / package).rglob("__init__.py"):
            if "migrations" in init.parts:
                continue
            text = init.read_text().lstrip()
            assert text.startswith('"""') and len(text.splitlines()[0]) > 10, (
                f"{init.relative_to(ROOT)} has no docstring saying what the package owns")


def test_the_whole_tree_type_checks() -> None:
    result = run(str(BIN / "mypy"), "app", "agents", "deploy", "web", "tables", "tests", "bench")
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_the_whole_tree_lints() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
