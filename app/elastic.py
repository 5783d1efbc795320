"""The Elasticsearch client, built from the settings (one per process)."""

from __future__ import annotations

from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch
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


def es_client(settings: Settings) -> AsyncElasticsearch:
    auth = None
    if settings.es_username and settings.es_password is not None:
        auth = (settings.es_username, settings.es_password.get_secret_value())
    return AsyncElasticsearch(
        settings.elasticsearch_url, basic_auth=auth, request_timeout=settings.es_request_timeout,
        serializers=SERIALIZERS,
    )
