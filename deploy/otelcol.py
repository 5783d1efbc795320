"""Build the OpenTelemetry Collector the tests ship with (`deploy/otelcol/builder.yaml`).

    python -m deploy.otelcol [--state-dir .laas]    # prints the binary's path

The collector's own `builder` (go.opentelemetry.io/collector/cmd/builder at the config's
`dist.version`, from the Go module proxy) generates and compiles the distribution. The binary
is cached under `{state_dir}/downloads/otelcol-{hash of the config}/`, so a clean clone builds
it once (about two minutes on two cores) and later runs reuse it. Needs Go (`go` on PATH or
/usr/local/go/bin/go).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "otelcol" / "builder.yaml"
BUILDER = "go.opentelemetry.io/collector/cmd/builder"
NAME = "otelcol-laas"


class CollectorBuildError(RuntimeError):
    """Go is missing or the collector did not build; the message says which and how."""


def go_executable() -> str:
    """The `go` command: on PATH, else the standard install location."""
    found = shutil.which("go") or ("/usr/local/go/bin/go"
                                   if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise CollectorBuildError("Go is needed to build the OpenTelemetry Collector for the "
                                  "tests: install it (go.dev/doc/install) or put `go` on PATH")
    return found


def builder_version(config: Path = CONFIG) -> str:
    """`dist.version` of the builder config (the builder's own version matches it)."""
    m = re.search(r"^\s*version:\s*([0-9][0-9.]*)\s*$", config.read_text(), re.MULTILINE)
    if not m:
        raise CollectorBuildError(f"{config}: no dist.version")
    return m.group(1)


def collector_binary(state_dir: Path, config: Path = CONFIG, timeout: float = 900) -> Path:
    """The built collector, building it first unless the cached one matches `config`."""
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
    home = (state_dir / "downloads" / f"otelcol-{digest}").resolve()
    binary = home / NAME
    if binary.exists():
        return binary
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (parallel test processes)
        if binary.exists():
            return binary
        go = go_executable()
        env = {**os.environ, "GOBIN": str(home / "bin"),
               "PATH": f"{Path(go).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        build = home / "build"
        build.mkdir(exist_ok=True)
        shutil.copyfile(config, build / "builder.yaml")
        steps = [[go, "install", f"{BUILDER}@v{builder_version(config)}"],
                 [str(home / "bin" / "builder"), "--config", "builder.yaml"]]
        for cmd in steps:
            done = subprocess.run(cmd, cwd=build, env=env, capture_output=True, text=True,
                                  timeout=timeout)
            if done.returncode != 0:
                raise CollectorBuildError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                                          f"{(done.stdout + done.stderr)[-3000:]}")
        built = build / NAME / NAME
        if not built.exists():
            raise CollectorBuildError(f"the builder left no binary at {built}")
        tmp = home / f".{NAME}.tmp"
        shutil.copyfile(built, tmp)
        tmp.chmod(0o755)
        tmp.replace(binary)
        shutil.rmtree(build, ignore_errors=True)
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=Path(".laas"))
    print(collector_binary(parser.parse_args().state_dir))


if __name__ == "__main__":
    main()
