"""Shared fixtures: settings and the real local stack (Kafka, Elasticsearch, PostgreSQL).

The README's test command starts the stack before pytest; these fixtures only check that each
service answers and fail (never skip) when one does not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch
from hypothesis import settings as hypothesis_settings

from app.kafka.client import client_options, credentials_file
from app.settings import Settings, load_settings
from deploy.elastic import Elasticsearch
from deploy.kafka import Kafka
from deploy.postgres import Postgres

# No per-example deadline: the suite shares two cores with Kafka and Elasticsearch, and a slow
# example is not a failure (CI once failed on one, and betterproto's repr hid the cause).
hypothesis_settings.register_profile("laas", deadline=None)
hypothesis_settings.load_profile("laas")

# Session fixtures shared by several test modules (one instance per session, not per module)
pytest_plugins = ["tests.compose_fixtures"]

# The local Kafka's passwords (app/kafka/client.py) for every process a test starts with a state
# directory of its own: they all log in to the one stack broker.
os.environ.setdefault("LAAS_KAFKA_CREDENTIALS_FILE",
                      str(credentials_file(load_settings()).resolve()))


def kafka_options() -> dict[str, Any]:
    """aiokafka client arguments for the stack's broker, logged in as LaaS."""
    return client_options(load_settings())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


def _require(service: Kafka | Elasticsearch | Postgres) -> None:
    if not service.ready():
        pytest.fail(
            f"{service.name} at {service.address} does not answer: start the stack with "
            f"`laas stack up` (or `bash deploy/bootstrap.sh test`)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kafka_servers(settings: Settings) -> str:
    _require(Kafka(settings))
    return settings.kafka_servers


@pytest.fixture(scope="session")
def es_url(settings: Settings) -> str:
    _require(Elasticsearch(settings))
    return settings.elasticsearch_url


@pytest.fixture(scope="session")
def postgres_url(settings: Settings) -> str:
    _require(Postgres(settings))
    return settings.local_postgres_url


@pytest.fixture
async def es(es_url: str) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(es_url)
    yield client
    await client.close()


@pytest.fixture
def unique() -> str:
    """A fresh name for a topic, consumer group, index or database."""
    return f"t{uuid.uuid4().hex[:12]}"
