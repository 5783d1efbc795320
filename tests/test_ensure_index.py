"""app/elastic/esindex.ensure_index on the real Elasticsearch: idempotent, concurrent callers."""

from __future__ import annotations

import asyncio

import pytest
from elasticsearch import AsyncElasticsearch, BadRequestError

from app.elastic import esindex
from app.elastic.template_index import PATTERNS_MAPPINGS, ensure_patterns_index, patterns_index
from app.settings import Settings

pytestmark = pytest.mark.integration


async def test_creates_once_then_leaves_it(es: AsyncElasticsearch, unique: str) -> None:
    name, alias = f"{unique}-logs-1-2026.01.01", f"{unique}-logs-1"
    mappings = {"properties": {"message": {"type": "text"}}}
    try:
        assert await esindex.ensure_index(es, name, alias, mappings=mappings,
                                          settings={"number_of_shards": 2}) is True
        await es.index(index=name, id="1", document={"message": "kept"}, refresh=True)
        # again, with other mappings: the existing index (and its document) stays as it was
        assert await esindex.ensure_index(es, name, alias, mappings={
            "properties": {"message": {"type": "keyword"}}}) is False
        got = await es.indices.get(index=name)
        assert got[name]["mappings"]["properties"]["message"]["type"] == "text"
        assert got[name]["settings"]["index"]["number_of_shards"] == "2"
        assert alias in got[name]["aliases"]
        assert (await es.count(index=alias))["count"] == 1
    finally:
        await es.indices.delete(index=name, ignore_unavailable=True)


async def test_concurrent_callers_one_creates(es: AsyncElasticsearch, unique: str) -> None:
    name = f"{unique}-concurrent"
    try:
        created = await asyncio.gather(*(esindex.ensure_index(es, name) for _ in range(8)))
        assert sorted(created) == [False] * 7 + [True]
        assert await es.indices.exists(index=name)
    finally:
        await es.indices.delete(index=name, ignore_unavailable=True)


async def test_other_errors_are_raised(es: AsyncElasticsearch) -> None:
    with pytest.raises(BadRequestError) as raised:
        await esindex.ensure_index(es, "Not_Lower_Case")
    assert raised.value.error == "invalid_index_name_exception"


async def test_patterns_index_gets_newer_fields(es: AsyncElasticsearch, unique: str) -> None:
    settings = Settings(index_prefix=f"{unique}-")
    index = patterns_index(settings)
    try:
        # an index made by an older version: one field of the mappings only
        assert await esindex.ensure_index(es, index, mappings={"properties": {
            "template": PATTERNS_MAPPINGS["properties"]["template"]}})
        await asyncio.gather(*(ensure_patterns_index(es, settings) for _ in range(3)))
        fields = (await es.indices.get_mapping(index=index))[index]["mappings"]["properties"]
        assert set(fields) == set(PATTERNS_MAPPINGS["properties"])
        got = await es.indices.get_settings(index=index)
        assert got[index]["settings"]["index"]["number_of_shards"] == "1"
    finally:
        await es.indices.delete(index=index, ignore_unavailable=True)
