"""The one Elasticsearch client factory: every client LaaS builds (worker stages, web app, replay,
retention, stack readiness, benches) takes its address, credentials and TLS from the settings."""

from __future__ import annotations

from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch, Elasticsearch
from elasticsearch.serializer import CompatibilityModeJsonSerializer, JsonSerializer

from app.settings import Settings


class _OrjsonLoads(JsonSerializer):
    """Responses parsed by orjson (the stdlib parser of bulk responses was ~3 % of a worker's
    time); requests still serialized by the client's own rules."""

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class _CompatOrjsonLoads(_OrjsonLoads, CompatibilityModeJsonSerializer):
    pass


SERIALIZERS = {JsonSerializer.mimetype: _OrjsonLoads(),
               CompatibilityModeJsonSerializer.mimetype: _CompatOrjsonLoads()}


def es_options(settings: Settings, *, request_timeout: float | None = None) -> dict[str, Any]:
    """Client arguments from the settings: URL, API key or user/password, CA bundle or
    certificate fingerprint, certificate verification, timeout."""
    options: dict[str, Any] = {
        "hosts": [settings.elasticsearch_url],
        "request_timeout": request_timeout or settings.es_request_timeout,
    }
    if settings.es_api_key is not None:
        key = settings.es_api_key.get_secret_value()
        options["api_key"] = tuple(key.split(":", 1)) if ":" in key else key
    elif settings.es_username and settings.es_password is not None:
        options["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
    if settings.es_ca_file is not None:
        options["ca_certs"] = str(settings.es_ca_file)
    if settings.es_ssl_fingerprint:
        options["ssl_assert_fingerprint"] = settings.es_ssl_fingerprint
    if not settings.es_verify_certs:
        options["verify_certs"] = False
        options["ssl_show_warn"] = False
    return options


def es_client(settings: Settings, *, request_timeout: float | None = None) -> AsyncElasticsearch:
    """The asyncio client (responses parsed by orjson)."""
    return AsyncElasticsearch(**es_options(settings, request_timeout=request_timeout),
                              serializers=SERIALIZERS)


def es_sync_client(settings: Settings, *, request_timeout: float | None = None) -> Elasticsearch:
    """The blocking client, for the stack's readiness checks and other short scripts."""
    return Elasticsearch(**es_options(settings, request_timeout=request_timeout))
