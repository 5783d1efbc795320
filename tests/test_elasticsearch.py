"""Elasticsearch on the local stack: index and search a document with the async client."""

from __future__ import annotations

from elasticsearch import AsyncElasticsearch


async def test_index_and_search(es: AsyncElasticsearch, unique: str) -> None:
    await es.indices.create(
        index=unique,
        mappings={"properties": {"message": {"type": "text"}, "ts": {"type": "date_nanos"}}},
    )
    try:
        await es.index(
            index=unique,
            id="raw-0-1",
            document={
                "message": "disk quota exceeded on /var",
                "ts": "2026-11-27T10:00:00.123456789Z",
            },
            refresh=True,
        )
        hits = (await es.search(index=unique, query={"match": {"message": "quota"}}))["hits"]
        assert hits["total"]["value"] == 1
        assert hits["hits"][0]["_id"] == "raw-0-1"
        assert hits["hits"][0]["_source"]["ts"].endswith(".123456789Z")
        health = await es.cluster.health()
        assert health["status"] in ("yellow", "green")
    finally:
        await es.indices.delete(index=unique)
