"""docker-compose.yml agrees with the settings: services, ports and LAAS_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port"""
    ports = {}
    for spec in service.get("ports", []):
        host, container = str(spec).split(":")
        ports[int(container)] = int(host)
    return ports


def test_services_present() -> None:
    services = load()["services"]
    assert {"kafka", "elasticsearch", "postgres", "worker", "gateway", "web"} <= set(services)
    for name in ("worker", "gateway", "web"):
        assert services[name]["command"][:2] == ["laas", name]


def test_laas_variables_are_settings_fields() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in load()["services"].items():
        for var in service.get("environment", {}):
            if var.startswith("LAAS_"):
                assert var.removeprefix("LAAS_") in fields, f"{name}: {var} is not a setting"


def test_addresses_and_ports_match_settings() -> None:
    defaults = Settings.model_construct()  # field defaults, whatever the environment says
    services = load()["services"]
    env = services["web"]["environment"]
    assert env["LAAS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["LAAS_ES_URL"] == "http://elasticsearch:9200"
    assert "@postgres:5432/" in env["LAAS_DATABASE_URL"]
    assert "kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert published(services["kafka"])[9092] == defaults.kafka_port
    assert published(services["elasticsearch"])[9200] == defaults.es_port
    assert published(services["postgres"])[5432] == defaults.postgres_port
    assert published(services["web"])[defaults.web_port] == defaults.web_port
    assert published(services["gateway"])[defaults.gateway_port] == defaults.gateway_port
    assert env["LAAS_WEB_HOST"] == "0.0.0.0"
    for name in ("worker", "gateway", "web"):
        assert services[name]["environment"]["LAAS_KAFKA_BOOTSTRAP"] == env["LAAS_KAFKA_BOOTSTRAP"]
