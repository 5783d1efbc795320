"""Settings: environment parsing, defaults, secrets, frozen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.settings import Settings, load_settings


def test_defaults_use_the_local_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("LAAS_")]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.kafka_managed and settings.es_managed and settings.postgres_managed
    assert settings.kafka_servers == "127.0.0.1:9092"
    assert settings.elasticsearch_url == "http://127.0.0.1:9200"
    assert settings.db_url == f"sqlite+aiosqlite:///{tmp_path / '.laas' / 'laas.db'}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAAS_KAFKA_BOOTSTRAP", "kafka.example:9092")
    monkeypatch.setenv("LAAS_ES_URL", "http://es.example:9200")
    monkeypatch.setenv("LAAS_DATABASE_URL", "postgresql+asyncpg://u@db.example/laas")
    monkeypatch.setenv("LAAS_PARTITIONS", "12")
    monkeypatch.setenv("LAAS_SECRET_KEY", "s3cret")
    settings = load_settings()
    assert not (settings.kafka_managed or settings.es_managed or settings.postgres_managed)
    assert settings.kafka_servers == "kafka.example:9092"
    assert settings.elasticsearch_url == "http://es.example:9200"
    assert settings.db_url == "postgresql+asyncpg://u@db.example/laas"
    assert settings.partitions == 12
    assert isinstance(settings.secret_key, SecretStr)
    assert "s3cret" not in repr(settings)


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAAS_WEB_PORT", raising=False)
    (tmp_path / ".env").write_text("LAAS_WEB_PORT=9999\n")
    assert load_settings().web_port == 9999


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAAS_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.web_port = 1  # type: ignore[misc]


def test_a_copy_derives_its_addresses_from_its_own_fields(tmp_path: Path) -> None:
    """`model_copy(update=...)` keeps no address derived from the original's fields (they were
    cached properties: a copy with another es_url still pointed at the first one)."""
    settings = load_settings(state_dir=tmp_path, es_url=None, kafka_bootstrap=None,
                             database_url=None, tls_certfile=None)
    before = (settings.elasticsearch_url, settings.kafka_servers, settings.db_url,
              settings.web_url)
    copy = settings.model_copy(update={
        "es_url": "http://es.example:9200", "kafka_bootstrap": "kafka.example:9092",
        "database_url": "postgresql+asyncpg://u@db.example/laas",
        "tls_certfile": tmp_path / "cert.pem"})
    assert (copy.elasticsearch_url, copy.kafka_servers, copy.db_url) == (
        "http://es.example:9200", "kafka.example:9092", "postgresql+asyncpg://u@db.example/laas")
    assert copy.web_url.startswith("https://")
    assert (settings.elasticsearch_url, settings.kafka_servers, settings.db_url,
            settings.web_url) == before
