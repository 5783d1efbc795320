"""The local PostgreSQL cluster: Debian's server binaries, a `laas` database on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from app.settings import LOCAL_HOST, Settings
from deploy import proc

PG_ROOT = Path("/usr/lib/postgresql")
DATABASE = "laas"
ROLE = "laas"


def pg_bin_dir() -> Path | None:
    """The bin directory of the newest PostgreSQL server installed from Debian's packages."""
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


class Postgres:
    """A PostgreSQL cluster in the state dir, trust auth on loopback, run by a non-root user."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.state_dir / "postgres"
        self.data = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log_file = self.base / "postgres.log"
        self.pid_file = self.base / "postgres.pid"

    @property
    def address(self) -> str:
        return self.settings.database_url or self.settings.local_postgres_url

    def prepare(self) -> None:
        """Install Debian's postgresql package if the server binaries are missing."""
        if pg_bin_dir() is not None:
            return
        if not proc.is_root() or shutil.which("apt-get") is None:
            raise proc.StackError(
                "PostgreSQL server binaries not found under /usr/lib/postgresql; install them "
                "(Debian: apt-get install postgresql) "
                "or set LAAS_DATABASE_URL / LAAS_POSTGRES_ENABLED=false"
            )
        log = self.base / "apt.log"
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        try:
            proc.run_logged(
                ["apt-get", "install", "-y", "-q", "postgresql"],
                what="apt-get install postgresql",
                log_file=log,
                env=env,
            )
        except proc.StackError:
            proc.run_logged(
                ["apt-get", "update", "-q"], what="apt-get update", log_file=log, env=env
            )
            proc.run_logged(
                ["apt-get", "install", "-y", "-q", "postgresql"],
                what="apt-get install postgresql",
                log_file=log,
                env=env,
            )

    def start(self) -> None:
        bin_dir = pg_bin_dir()
        assert bin_dir is not None, "prepare() installs PostgreSQL"
        user = proc.service_user()
        proc.give_to(user, self.base)
        if not (self.data / "PG_VERSION").exists():
            proc.run_logged(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data.resolve()),
                    "-U",
                    ROLE,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                what="initdb",
                log_file=self.log_file,
                user=user,
            )
        self.socket_dir.mkdir(exist_ok=True)
        proc.give_to(user, self.socket_dir)
        proc.spawn(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.data.resolve()),
                "-p",
                str(self.settings.postgres_port),
                "-k",
                str(self.socket_dir.resolve()),
                "-c",
                f"listen_addresses={LOCAL_HOST}",
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
            user=user,
        )

    def ready(self) -> bool:
        """The server answers a query (the local `laas` database is created on first start)."""
        url = make_url(self.address)
        if not proc.port_open(url.host or LOCAL_HOST, url.port or 5432):
            return False
        try:
            return proc.run_coroutine(
                lambda: _accepts_query(url, create=self.settings.postgres_managed)
            )
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False

    def running(self) -> bool:
        return proc.read_pid(self.pid_file) is not None

    def stop(self) -> bool:
        return proc.terminate(self.pid_file)


async def _accepts_query(url: URL, *, create: bool) -> bool:
    async def connect(database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=database,
            timeout=3,
        )

    database = url.database or DATABASE
    if create:
        conn = await connect("postgres")
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
    conn = await connect(database)
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()
