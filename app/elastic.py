"""The Elasticsearch client, built from the settings (one per process)."""

from __future__ import annotations

from elasticsearch import AsyncElasticsearch

from app.settings import Settings


def es_client(settings: Settings) -> AsyncElasticsearch:
    auth = None
    if settings.es_username and settings.es_password is not None:
        auth = (settings.es_username, settings.es_password.get_secret_value())
    return AsyncElasticsearch(
        settings.elasticsearch_url, basic_auth=auth, request_timeout=settings.es_request_timeout
    )
