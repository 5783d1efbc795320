"""`laas stack up | down | status`: the local Kafka, Elasticsearch and PostgreSQL servers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.settings import Settings
from deploy.elastic import Elasticsearch
from deploy.kafka import Kafka
from deploy.postgres import Postgres
from deploy.proc import StackError, wait_until

__all__ = ["Stack", "StackError", "ServiceStatus"]

START_TIMEOUT = {"kafka": 120.0, "elasticsearch": 240.0, "postgres": 60.0}


class Service(Protocol):
    name: str
    log_file: Path
    pid_file: Path

    @property
    def address(self) -> str: ...
    def prepare(self) -> None: ...
    def start(self) -> None: ...
    def ready(self) -> bool: ...
    def running(self) -> bool: ...
    def stop(self) -> bool: ...


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    up: bool
    managed: bool
    started_here: bool

    def line(self) -> str:
        state = "up" if self.up else "DOWN"
        origin = (
            "local stack"
            if self.started_here
            else ("external" if not self.managed else "not started")
        )
        return f"{self.name:<14} {state:<5} {self.address:<48} ({origin})"


class Stack:
    """The services this machine runs for LaaS; those configured elsewhere are only checked."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: list[tuple[Service, bool]] = [
            (Kafka(settings), settings.kafka_managed),
            (Elasticsearch(settings), settings.es_managed),
        ]
        if settings.postgres_managed or settings.db_url.startswith("postgresql"):
            self.services.append((Postgres(settings), settings.postgres_managed))

    def up(self) -> Iterator[str]:
        """Prepare and start every managed service that is not up, then wait for all of them."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        started: list[Service] = []
        for service, managed in self.services:
            if not managed:
                yield f"{service.name}: using {service.address} (configured, not started here)"
                continue
            if service.ready():
                yield f"{service.name}: already up at {service.address}"
                continue
            if service.running():
                yield f"{service.name}: starting (process already launched), waiting"
            else:
                service.prepare()
                service.start()
                yield f"{service.name}: started, waiting for {service.address}"
            started.append(service)
        for service in started:
            wait_until(
                service.ready,
                service=service.name,
                log_file=service.log_file,
                timeout=START_TIMEOUT[service.name],
                alive=service.running,
            )
            yield f"{service.name}: ready at {service.address} (log: {service.log_file})"
            if isinstance(service, Kafka) and self.settings.kafka_local_auth:
                service.grant()
                yield (f"kafka: SASL/SCRAM logins and ACLs on; direct producers log in as "
                       f"laas-producer ({service.home / 'producer.conf'}, for kcat -F)")
        for service, managed in self.services:
            if not managed and not service.ready():
                raise StackError(
                    f"{service.name} at {service.address} (configured) does not answer"
                )

    def down(self) -> Iterator[str]:
        """Stop what this stack started, newest first; configured services are left alone."""
        for service, managed in reversed(self.services):
            if managed and service.stop():
                yield f"{service.name}: stopped"
            elif managed:
                yield f"{service.name}: was not running"

    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                name=service.name,
                address=service.address,
                up=service.ready(),
                managed=managed,
                started_here=managed and service.running(),
            )
            for service, managed in self.services
        ]
