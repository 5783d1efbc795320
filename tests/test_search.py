"""Search API on real Elasticsearch: fields, syntax, paging, histogram, context, isolation."""

from __future__ import annotations

from typing import Any

import pytest

from app.pipeline.events import LogEvent
from app.query import parse
from app.query.match import compile_predicate
from tests.auth_fixtures import *  # noqa: F403
from tests.search_fixtures import *  # noqa: F403
from tests.search_fixtures import LEVELS, TIERS, SearchWorld, event

# Every test on both tiers of the index layout: the tenants in shared or in dedicated indices.
pytestmark = pytest.mark.parametrize("tier", TIERS)

MESSAGES = [
    "Connection from 10.0.0.{i} closed after {i} ms",
    "disk quota exceeded on /var/lib/app{i}",
    "user bob logged in from session {i}",
    "timeout waiting for upstream payments after {i}s",
]


def acme_events(sw: SearchWorld, count: int = 40) -> list[LogEvent]:
    return [
        event(
            sw.world,
            "acme",
            i,
            message=MESSAGES[i % 4].format(i=i),
            level=LEVELS[i % 4],
            service=("api", "web", "db")[i % 3],
            host=f"h{i % 2}",
            attributes={"user": ("bob", "alice")[i % 2], "region": "eu-1",
                        # a number, as text every fifth time (typed attributes: docs/ingest.md)
                        "latency_ms": i * 7 if i % 5 else str(i * 7), "ratio": i / 8},
            template_id=f"tpl{i % 4}",
        )
        for i in range(count)
    ]


async def get(sw: SearchWorld, path: str, who: str = "key_read", **params: Any) -> Any:
    response = await sw.client.get(path, params=params, headers=sw.headers(who))
    return response


async def hits(
    sw: SearchWorld, q: str, who: str = "key_read", **params: Any
) -> list[dict[str, Any]]:
    response = await get(sw, "/api/v1/search", who, q=q, since="1h", limit=1000, **params)
    assert response.status_code == 200, response.text
    return list(response.json()["hits"])


QUERIES = [
    "service:api",
    "host:h1",
    "level:error",
    "level:>=warn",
    "level:[debug TO info]",
    "attributes.user:bob",
    "template:tpl2",
    "quota",
    '"closed after"',
    "timeout AND service:web",
    "service:api OR service:db",
    "-service:api",
    "NOT level:info AND host:h0",
    "upstr*",
    "service:w*",
    "_exists_:attributes.region",
    "bob logged",
    "service:(api OR web) -host:h1",
    "attributes.latency_ms:>100",  # numbers compare as numbers; "105" as text is left out
    "attributes.latency_ms:[0 TO 35}",
    "attributes.ratio:<=0.5",
    "attributes.latency_ms:70",  # the text form matches numbers and text alike
]


async def test_every_field_kind_and_syntax(search_world: SearchWorld) -> None:
    """Each query finds exactly what the Python evaluation of the same query (the tail) finds."""
    sw = search_world
    events = acme_events(sw)
    await sw.index(events)
    docs = {ev.doc_id(): ev for ev in events}
    for q in QUERIES:
        predicate = compile_predicate(parse(q))
        expected = {
            doc_id
            for doc_id, ev in docs.items()
            if predicate({**ev.__dict__, "attributes": ev.attributes})
        }
        found = {hit["id"] for hit in await hits(sw, q)}
        assert found == expected, q
        assert expected, f"{q} should match something in this data"
    errors = await hits(sw, "level:error")
    assert {h["level"] for h in errors} == {"ERROR"}
    assert all(h["attributes"]["region"] == "eu-1" for h in errors)


async def test_highlight_and_order(search_world: SearchWorld) -> None:
    sw = search_world
    await sw.index(acme_events(sw, 12))
    newest = await hits(sw, "quota")
    assert [h["time"] for h in newest] == sorted((h["time"] for h in newest), reverse=True)
    assert all("<mark>quota</mark>" in h["highlight"]["message"][0] for h in newest)
    oldest = await hits(sw, "quota", order="oldest")
    assert [h["id"] for h in oldest] == [h["id"] for h in reversed(newest)]


async def test_cursor_pages_cover_every_hit_once_while_events_arrive(
    search_world: SearchWorld,
) -> None:
    sw = search_world
    await sw.index(acme_events(sw, 45))
    expected = {h["id"] for h in await hits(sw, "")}
    assert len(expected) == 45
    seen: list[str] = []
    cursor = None
    for page in range(10):
        params: dict[str, Any] = {"q": "", "since": "1h", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = (await get(sw, "/api/v1/search", **params)).json()
        seen += [h["id"] for h in body["hits"]]
        assert body["total"] == {"value": 45, "relation": "eq"}
        if page == 0:  # new events arrive after the first page
            await sw.index(
                [event(sw.world, "acme", 1000 + i, message="late arrival") for i in range(5)]
            )
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))


async def test_histogram_sums_to_the_total(search_world: SearchWorld) -> None:
    sw = search_world
    await sw.index(acme_events(sw))
    for q in ("", "level:>=warn", "service:api"):
        response = await get(sw, "/api/v1/histogram", q=q, since="1h")
        assert response.status_code == 200, response.text
        body = response.json()
        assert sum(b["count"] for b in body["buckets"]) == body["total"] == len(await hits(sw, q))
        assert all(sum(b["levels"].values()) == b["count"] for b in body["buckets"])
        assert body["interval_seconds"] == 30  # 1h / 120 buckets
    bad = await get(sw, "/api/v1/histogram", q="", since="1h", interval="1s")
    assert bad.status_code == 400 and bad.json()["parameter"] == "interval"


async def test_context_returns_neighbours_from_the_same_source(search_world: SearchWorld) -> None:
    sw = search_world
    events = [
        event(sw.world, "acme", i, message=f"line {i}", service="api" if i % 2 else "web")
        for i in range(30)
    ]
    await sw.index(events)
    anchor = events[15]  # service api: odd offsets
    response = await get(sw, f"/api/v1/logs/{anchor.doc_id()}/context", before=3, after=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event"]["message"] == "line 15"
    assert [h["message"] for h in body["before"]] == ["line 9", "line 11", "line 13"]
    assert [h["message"] for h in body["after"]] == ["line 17", "line 19"]
    missing = await get(sw, "/api/v1/logs/logs.raw/0/999999/context")
    assert missing.status_code == 404


async def test_fields_lists_top_values(search_world: SearchWorld) -> None:
    sw = search_world
    await sw.index(acme_events(sw))
    response = await get(sw, "/api/v1/fields", since="1h")
    assert response.status_code == 200, response.text
    fields = {
        f["field"]: {v["value"]: v["count"] for v in f["values"]} for f in response.json()["fields"]
    }
    assert fields["service"] == {"api": 14, "web": 13, "db": 13}
    assert fields["level"] == {"DEBUG": 10, "INFO": 10, "WARN": 10, "ERROR": 10}
    assert fields["attributes.user"] == {"bob": 20, "alice": 20}


@pytest.mark.parametrize(
    ("params", "parameter", "position"),
    [
        ({"q": "level:error AND"}, "q", 15),
        ({"q": "*timeout"}, "q", 0),
        ({"q": "nosuchfield:x"}, "q", 0),
        ({"q": "(a OR b"}, "q", 0),
        ({"q": "x", "since": "yesterday"}, "since", None),
        ({"q": "x", "limit": "100000"}, "limit", None),
        ({"q": "x", "cursor": "garbage"}, "cursor", None),
        ({"q": "x", "order": "sideways"}, "order", None),
    ],
)
async def test_bad_requests_say_what_is_wrong(
    search_world: SearchWorld, params: dict[str, str], parameter: str, position: int | None
) -> None:
    response = await get(search_world, "/api/v1/search", **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == parameter
    assert body.get("position") == position
    assert body["detail"]


async def test_post_body_works_like_get(search_world: SearchWorld) -> None:
    sw = search_world
    await sw.index(acme_events(sw, 8))
    response = await sw.client.post(
        "/api/v1/search", json={"q": "service:api", "since": "1h"}, headers=sw.headers("viewer")
    )
    assert response.status_code == 200, response.text
    assert {h["id"] for h in response.json()["hits"]} == {
        h["id"] for h in await hits(sw, "service:api")
    }


async def test_tenants_cannot_see_each_other(search_world: SearchWorld) -> None:
    sw = search_world
    events = acme_events(sw, 10)
    await sw.index(events)
    await sw.index([event(sw.world, "beta", 500, message="beta only line")])
    acme_id = str(sw.world.tenant_ids["acme"])
    # Crafted queries: tenant fields, index names, wildcards, negations. Each is refused (400,
    # an unknown field) or answers beta's own line only, whatever the tier.
    crafted = (
        "",
        "*",
        "quota",
        "bob",
        "tenant:acme",
        "tenant:*",
        "tenant:ac*",
        "NOT tenant:beta",
        "tenant:acme OR tenant:beta OR *",
        f"tenant:{acme_id}",
        f"tenant_id:{acme_id}",
        "tenant_id:*",
        f"_index:{sw.settings.index_prefix}*",
        f"_index:{sw.settings.index_prefix}logs-{acme_id}",
        "_routing:" + acme_id,
        "_id:*",
        "_exists_:tenant",
        "_exists_:attributes.user",
        "attributes.user:bob",
        "service:api",
        "-service:nothing",
    )
    for q in crafted:
        response = await get(sw, "/api/v1/search", "b_key_admin", q=q, since="1h", limit=1000)
        assert response.status_code in (200, 400), (q, response.text)
        if response.status_code == 200:
            assert all(h["message"] == "beta only line" for h in response.json()["hits"]), q
        histogram = await get(sw, "/api/v1/histogram", "b_admin", q=q, since="1h")
        assert histogram.status_code == response.status_code, (q, histogram.text)
        if histogram.status_code == 200:
            assert histogram.json()["total"] <= 1, q
        patterns = await get(sw, "/api/v1/patterns", "b_admin", q=q, since="1h")
        assert patterns.status_code == response.status_code, (q, patterns.text)
        assert not {p["template_id"] for p in patterns.json().get("patterns", [])} & {
            f"tpl{i}" for i in range(4)}, q
    assert len(await hits(sw, "", who="b_key_admin")) == 1
    histogram = (await get(sw, "/api/v1/histogram", "b_admin", q="", since="1h")).json()
    assert histogram["total"] == 1
    for ev in events:
        context = await get(sw, f"/api/v1/logs/{ev.doc_id()}/context", "b_key_admin")
        assert context.status_code == 404
    fields = (await get(sw, "/api/v1/fields", "b_admin", since="1h")).json()
    values = {v["value"] for f in fields["fields"] for v in f["values"]}
    assert "bob" not in values and "acme" not in values
    assert len(await hits(sw, "")) == 10  # acme sees only its own
    own = await get(sw, f"/api/v1/logs/{events[0].doc_id()}/context", "key_read")
    assert own.status_code == 200, own.text  # the same requests work for the owner
    mine = (await get(sw, "/api/v1/patterns", "admin", since="1h")).json()["patterns"]
    assert {p["template_id"] for p in mine} == {f"tpl{i}" for i in range(4)}


async def test_ingest_key_and_anonymous_cannot_search(search_world: SearchWorld) -> None:
    sw = search_world
    for path in ("/api/v1/search", "/api/v1/histogram", "/api/v1/fields"):
        assert (await get(sw, path, "key_ingest")).status_code == 403
        assert (await get(sw, path, "anonymous")).status_code == 401
