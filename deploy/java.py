"""Finding the JDK that runs the local Kafka and Elasticsearch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from app.settings import Settings
from deploy.proc import StackError

MIN_JAVA = 17


def java_home(settings: Settings) -> Path:
    """The JDK home: the java_home setting, else JAVA_HOME, else the java on PATH (version ≥ 17)."""
    if settings.java_home:
        home = settings.java_home
    elif os.environ.get("JAVA_HOME"):
        home = Path(os.environ["JAVA_HOME"])
    else:
        java = shutil.which("java")
        if java is None:
            raise StackError(
                f"no Java found; install a JDK ≥ {MIN_JAVA} "
                "(Debian: apt-get install openjdk-17-jdk-headless)"
                " or set LAAS_JAVA_HOME"
            )
        home = Path(java).resolve().parent.parent
    java_bin = home / "bin" / "java"
    if not java_bin.exists():
        raise StackError(f"{java_bin} does not exist; set LAAS_JAVA_HOME to a JDK ≥ {MIN_JAVA}")
    version = java_major(java_bin)
    if version < MIN_JAVA:
        raise StackError(
            f"{java_bin} is Java {version}; Kafka and Elasticsearch need Java ≥ {MIN_JAVA}"
        )
    return home


def java_major(java_bin: Path) -> int:
    out = subprocess.run([str(java_bin), "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        raise StackError(f"cannot read the Java version from `{java_bin} -version`: {out.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major
