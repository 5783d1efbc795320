"""Fuzzing every ingest and query endpoint with hostile input (issue 21): no 5xx over HTTP, no
UNKNOWN or INTERNAL over gRPC.

`tests/test_openapi.py` runs schemathesis from the OpenAPI document; this file aims where that
generator does not reach: query text built from the query language's own operators (long NOT
chains, deep groups), times far outside any index, JSON nested past the decoder's limit, keys
with NUL and lone surrogates, and protobuf payloads that are random, mutated or nested deep.
The shipper endpoints get the same treatment in their own formats: Loki push (JSON, and
protobuf inside snappy: valid, mutated and fake), Elasticsearch `_bulk` NDJSON (broken action
lines, odd indexes, every action, missing documents) and the calls ES clients make before they
send, OTLP/HTTP on the gateway's own port, with bodies that claim gzip or snappy and are not,
numbers JSON readers choke on (`1e400`, 5,000 digits) and every credential form they accept.

Bounded and reproducible: `EXAMPLES` examples per target (60; `FUZZ_EXAMPLES=500` for a deeper
run), derandomized (the same inputs on every run), against the whole web app (SQLite user DB,
the real Elasticsearch and Kafka, fresh names) and a real gateway (gRPC and its OTLP/HTTP port,
over TCP). Hypothesis drives the examples from a worker thread; each request runs on the test's
event loop, where the app, its database engine and the gateway live.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import cramjam
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest as OtlpRequest,
)

from app.ingest.gateway import OTLP_EXPORT, PUSH, PUSH_STREAM, bound_port, start_gateway
from app.kafka.topics import RAW, topic_name
from app.query.match import compile_predicate
from app.query.search import BadParameter, read_query
from app.settings import Settings
from protos.laas.v1 import PushAck
from protos.opentelemetry.proto.collector.logs.v1 import ExportLogsServiceResponse
from tests.auth_fixtures import build_world, client_for, make_settings, running_app
from tests.conftest import kafka_options
from tests.search_fixtures import event, index_events
from tests.test_bad_input import deep_export, field, varint
from web.ingest import TOO_LONG
from web.ingest_bulk import ACTIONS, WRITE_ACTIONS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))  # more for a deeper (slower) run
T = TypeVar("T")

bounded = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its input as is
    suppress_health_check=list(HealthCheck),
)

# --- strategies ----------------------------------------------------------------------------------

NASTY = st.sampled_from(["\x00", "\ud800", "\udfff", "\uffff", "\u202e", "💥", "\\", '"', "\n"])
TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.text(max_size=4), NASTY), max_size=8).map("".join),
)
TOKENS = ["NOT ", "-", "!", "+", "(", ")", " AND ", " OR ", "&&", "||", '"', "\\", ":", "*",
          "?", "[", "]", "{", "}", " TO ", "level:", "service:", "attributes.x:", "_exists_:",
          ">=", "<", "~", "^2", "/re/", "error", "warn", "ti*", "a", " ", "\x00", "\ud800"]
QUERY = st.one_of(
    st.builds(lambda op, n, rest: op * n + rest,
              st.sampled_from(["NOT ", "-", "!", "NOT (", "-(", "a OR (", "a AND -", "+", "("]),
              st.one_of(st.integers(0, 40), st.integers(300, 1500)),
              st.sampled_from(["a", "", ")", "level:error", "(b"])),
    st.lists(st.sampled_from(TOKENS), max_size=80).map("".join),
    TEXT,
)
TIME = st.one_of(
    TEXT,
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**8), st.sampled_from("smhdwy")),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["now", "100000w", "999999w", "0001-01-01", "9999-12-31T23:59:59+23:59",
                     "2262-04-11T23:47:16.854775808Z", "1970-01-01T00:00:00Z", "-1m", "1e9"]),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)
RECORD = st.one_of(
    st.dictionaries(st.one_of(TEXT, st.sampled_from(
        ["message", "msg", "level", "ts", "time", "service", "host", "trace_id", "span_id",
         "attributes", "body", "timeUnixNano", "severityNumber", "severityText", "resource",
         "traceId", "spanId", "flags", "scope", "eventName"])), JSON_VALUE, max_size=6),
    st.builds(lambda key, value: {"message": "m", "attributes": {key: value}}, TEXT, JSON_VALUE),
    st.builds(lambda key: {"message": json.dumps({key: 1}, ensure_ascii=False)}, TEXT),
    JSON_VALUE,
)


def deep_json(n: int, opener: str) -> bytes:
    return (opener * n).encode()


DEEP_JSON = st.builds(deep_json, st.integers(1, 200_000), st.sampled_from(["[", '{"a":', "[{}, "]))


def ndjson(records: list[Any]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def valid_export() -> bytes:
    request = OtlpRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "fuzz"
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "s"
    record = scope_logs.log_records.add(time_unix_nano=time.time_ns(), severity_number=9)
    record.body.string_value = "hello"
    record.attributes.add(key="k").value.int_value = 3
    return request.SerializeToString()


def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out)


PROTOBUF = st.one_of(
    st.binary(max_size=600),
    st.builds(mutate, st.just(valid_export()),
              st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)),
    st.builds(deep_export, st.integers(0, 300)),
    st.builds(lambda n, data: field(1, data) * n, st.integers(1, 50), st.binary(max_size=40)),
)
OTLP_JSON = st.one_of(
    st.builds(lambda records: json.dumps({"resourceLogs": [{"scopeLogs": [
        {"logRecords": records}]}]}).encode(), st.lists(RECORD, max_size=3)),
    JSON_VALUE.map(lambda v: json.dumps(v).encode()),
    DEEP_JSON,
)


def params(*names: str) -> st.SearchStrategy[dict[str, Any]]:
    """Query parameters: each hostile or (as often) sane, so that one bad one at a time reaches
    the code behind the others' checks (Elasticsearch sees a query only when all are valid)."""
    sane = {"q": "error", "since": "1h", "until": "now", "limit": "5", "order": "oldest",
            "cursor": "", "highlight": "true", "interval": "1m", "top": "3", "before": "2",
            "after": "2", "status": "open", "kind": "rule"}
    hostile = {"q": QUERY, "since": TIME, "until": TIME, "limit": TEXT, "order": TEXT,
               "cursor": st.one_of(TEXT, st.binary(max_size=60).map(
                   lambda b: base64.urlsafe_b64encode(b).decode())),
               "highlight": TEXT, "interval": st.one_of(TEXT, TIME), "top": TEXT,
               "before": TEXT, "after": TEXT, "status": TEXT, "kind": TEXT}
    return st.fixed_dictionaries({}, optional={
        name: st.one_of(st.just(sane[name]), hostile[name]) for name in names})


# --- shipper formats: Loki push, Elasticsearch _bulk, credentials -------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON literal spliced in as written: numbers `json.dumps` cannot write (or refuses to)."""

    text: str


def render(value: Any) -> str:
    """JSON text of `value` (lone surrogates as `\\ud800` escapes), `Raw` parts as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value)


def too_long(value: Any) -> bool:
    """Whether `value` holds an integer past `json.loads`'s limit (`sys.int_info`)."""
    if isinstance(value, dict):
        return any(map(too_long, value.values()))
    if isinstance(value, list):
        return any(map(too_long, value))
    return isinstance(value, Raw) and value.text.lstrip("-").isdigit() and len(value.text) > 4300


# 4,301+ digits: past Python's int/str conversion limit (json.loads raises a plain ValueError)
HUGE = ["1e400", "-1e400", "1E-400", "1e99999999999999999999", "-0", "18446744073709551616",
        "-9223372036854775809", "1" * 4301, "-" + "9" * 5000, "1" * 400 + ".5"]
RAW_NUMBER = st.sampled_from(HUGE).map(Raw)
HOSTILE = st.recursive(st.one_of(SCALAR, RAW_NUMBER), lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)
NOW_NS = time.time_ns()
NOW_ISO = datetime.now(UTC).isoformat()

# Loki: labels, [timestamp, line, metadata] entries, streams
LOKI_TS = st.one_of(
    st.just(str(NOW_NS)), st.integers(-(2**70), 2**70).map(str), st.integers(-(2**70), 2**70),
    RAW_NUMBER, st.floats(), TEXT,
    st.sampled_from(["", " 1", "1_000", "+1", "0x10", "²", "١٢٣", "０", "NaN", "1e400",
                     str(2**64), str(2**64 - 1), "1" * 5000, "-1"]))
LABEL_NAMES = st.sampled_from(["job", "app", "service_name", "host", "level", "detected_level",
                               "pod", "namespace", "container", "k8s.container.name",
                               "__name__", ""])
LOKI_LABELS = st.one_of(
    st.dictionaries(st.one_of(LABEL_NAMES, TEXT), TEXT, max_size=4),
    st.dictionaries(st.one_of(LABEL_NAMES, TEXT), HOSTILE, max_size=3),
    HOSTILE)
LOKI_ENTRY = st.one_of(
    st.tuples(LOKI_TS, st.one_of(TEXT, HOSTILE)).map(list),
    st.tuples(LOKI_TS, TEXT, st.one_of(st.dictionaries(TEXT, TEXT, max_size=3), HOSTILE)).map(list),
    HOSTILE)
LOKI_STREAM = st.one_of(
    st.fixed_dictionaries({"stream": LOKI_LABELS, "values": st.one_of(
        st.lists(LOKI_ENTRY, max_size=4), HOSTILE)}),
    HOSTILE)


def loki_good_stream() -> dict[str, Any]:
    """One stream with one entry any push accepts (the request's valid part)."""
    return {"stream": {"app": "fuzz"}, "values": [[str(time.time_ns()), "good"]]}


def pb_varint(number: int, value: int) -> bytes:
    """A varint field (negative numbers as 64-bit two's complement, as protobuf writes them)."""
    return varint(number << 3) + varint(value & (2**64 - 1))


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate is invalid UTF-8


def loki_entry(seconds: int, nanos: int, line: bytes, metadata: list[tuple[bytes, bytes]]) -> bytes:
    stamp = pb_varint(1, seconds) + pb_varint(2, nanos)
    pairs = b"".join(field(3, field(1, name) + field(2, value)) for name, value in metadata)
    return field(1, stamp) + field(2, line) + pairs


def loki_stream(labels: bytes, entries: list[bytes]) -> bytes:
    return field(1, labels) + b"".join(field(2, e) for e in entries)


def label_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


WIRE_TEXT = st.one_of(TEXT.map(encoded), st.binary(max_size=30))
PB_ENTRY = st.builds(
    loki_entry,
    st.one_of(st.just(NOW_NS // 10**9), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.integers(0, 10**9 - 1), st.integers(-(2**31), 2**31 - 1), st.just(-1)),
    WIRE_TEXT, st.lists(st.tuples(WIRE_TEXT, WIRE_TEXT), max_size=3))
PB_LABELS = st.one_of(
    st.builds(label_text, st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}",
                                                        fullmatch=True), TEXT, max_size=3)
              ).map(encoded),
    st.sampled_from([b"", b"{}", b'{a="b"', b"{a=b}", b'{a="\\', b'{="x"}', b'{a="1" b="2"}',
                     b"{" + b'a="x",' * 2000 + b"}", b'{a="\xff"}']),
    WIRE_TEXT)
PB_STREAM = st.one_of(st.builds(loki_stream, PB_LABELS, st.lists(PB_ENTRY, max_size=3)),
                      st.binary(max_size=80))


def loki_good_pb() -> bytes:
    return loki_stream(b'{app="fuzz"}', [loki_entry(time.time_ns() // 10**9, 5, b"good", [])])


def snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


SNAPPY_BODIES = st.one_of(
    st.binary(max_size=300),  # garbage claiming to be snappy
    st.binary(max_size=300).map(snappy),  # snappy of garbage
    st.builds(lambda streams: snappy(b"".join(field(1, s) for s in streams)),
              st.lists(PB_STREAM, max_size=3)),
    st.builds(mutate, st.builds(lambda: snappy(field(1, loki_good_pb()))),
              st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                       max_size=4)),
    st.builds(lambda: bytes(cramjam.snappy.compress(field(1, loki_good_pb())))),  # framed
    st.builds(lambda: field(1, loki_good_pb())),  # not compressed at all
    st.builds(lambda n, rest: varint(n) + rest, st.integers(0, 2**70), st.binary(max_size=40)),
    st.just(b"\xff" * 11),  # a length varint that never ends
)

# Elasticsearch _bulk: lines of actions and documents


def not_blank(line: str) -> bool:
    return line.strip() != "" and "\n" not in line  # a blank line is no line to bulk


PARSED_META = st.fixed_dictionaries({}, optional={  # odd but readable action metadata
    "_index": st.one_of(TEXT, JSON_VALUE), "_id": st.one_of(TEXT, JSON_VALUE), "pipeline": TEXT,
    "require_alias": JSON_VALUE, "routing": JSON_VALUE})
META = st.one_of(PARSED_META, HOSTILE)
BROKEN_ACTION = st.one_of(
    st.sampled_from(["{", "garbage", "[]", "null", "1e400", "\"index\"", '{"index": {}',
                     '{"index": {}, "create": {}}', '{"index": "x"}', '{"index": []}',
                     '{"upsert": {}}', '{"": {}}', '{"INDEX": {}}', "{}",
                     '{"index": 1' + "0" * 5000 + "}", '{"index": {"_id": ' + "1" * 4301 + "}}",
                     "[" * 100_000]),
    st.builds(lambda action, meta: render({action: meta}),
              TEXT.filter(lambda a: a not in ACTIONS), META),
    TEXT.filter(not_blank),
)
GOOD_DOC = st.sampled_from([{"message": "good"}, {"log": "good", "@timestamp": NOW_ISO},
                            {"message": "good", "host": {"name": "h"}, "log.level": "warn"}])
BAD_DOC = st.one_of(
    st.sampled_from(["{", "[1]", '"x"', "5", "null", "true", "{]", "\x00", "[" * 100_000]),
    HOSTILE.filter(lambda v: not isinstance(v, dict)).map(render))


@dataclass(frozen=True)
class BulkItem:
    """Lines giving one item of a bulk answer, and the status it must get (None: either)."""

    lines: list[str]
    action: str
    expect: int | None


def write_item(action: str, meta: Any, doc: Any, expect: int | None) -> BulkItem:
    return BulkItem([render({action: meta}), doc if isinstance(doc, str) else render(doc)],
                    action, expect)


BULK_ITEM = st.one_of(
    st.builds(write_item, st.sampled_from(["index", "create"]), PARSED_META, GOOD_DOC,
              st.just(201)),
    st.builds(write_item, st.sampled_from(["index", "create"]), st.just({}),
              st.one_of(RECORD, HOSTILE).map(render).filter(not_blank), st.just(None)),
    st.builds(write_item, st.sampled_from(["index", "create"]), st.just({}), BAD_DOC,
              st.just(400)),
    st.builds(write_item, st.just("update"), PARSED_META,
              st.one_of(st.just({"doc": {"a": 1}}), BAD_DOC), st.just(400)),
    st.builds(lambda meta: BulkItem([render({"delete": meta})], "delete", 400),
              PARSED_META),
    st.builds(lambda line: BulkItem([line], "?", 400), BROKEN_ACTION),
)
INDEX_NAMES = st.one_of(TEXT.filter(bool), st.sampled_from(
    ["logs", "_all", "..", ".", "%2F", "a/b", "-x", "UPPER", "x" * 300, "ü", "*", "a,b"]))
BULK_TYPE = st.sampled_from(["application/x-ndjson", "application/json",
                             "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
                             "text/plain", "application/x-ndjson; charset=utf-8"])
PROTOBUF_TYPE = st.sampled_from(["application/x-protobuf", "application/protobuf"])
ODD_TYPE = st.sampled_from(["", "application/xml", "multipart/form-data", "text/html",
                            "application/x-protobuf", ";;", "application/json; charset=utf-16"])
# about one in four unsupported: the rest reaches the decoders (honestly compressed or not)
ENCODING = st.sampled_from(["", "", "", "", "identity", "gzip", "gzip", "deflate", "br", "snappy",
                            "gzip, gzip"])


def mostly(usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`odd` about one time in four: a 415 or 406 ends the request before the decoders."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda u: usual if u else odd)


def encode(body: bytes, encoding: str, honest: bool) -> tuple[bytes, dict[str, str]]:
    """The body under `content-encoding: encoding`: compressed as it says, or not (a lie)."""
    if not encoding:
        return body, {}
    if honest and encoding == "gzip":
        body = gzip.compress(body)
    elif honest and encoding == "deflate":
        body = bytes(cramjam.zlib.compress(body))
    return body, {"content-encoding": encoding}


def credential_forms(key: str, read_key: str) -> st.SearchStrategy[tuple[dict[str, bytes], int]]:
    """Credentials in every form the shipper endpoints read, each with what it must get:
    0 (accepted), 401 (no key found or an unknown one), 403 (a key that may not ingest)."""
    def b64(data: bytes) -> bytes:
        return base64.b64encode(data)

    k = key.encode()
    good = [b"Bearer " + k, b"bearer  " + k, b"Basic " + b64(b"user:" + k),
            b"Basic " + b64(k), b"Basic " + b64(b":" + k), b"Basic " + b64(k + b":x"),
            b"ApiKey " + k, b"ApiKey " + b64(b"id:" + k), b"ApiKey " + b64(k),
            b"Basic " + k]  # not base64: taken as the key itself
    bad = [b"", b"Bearer", b"Bearer ", b"Basic", b"Basic !!!", b"Basic " + b64(b"user:"),
           b"Basic " + b64(b"\xff\xfe:" + b"\xff"), b"Basic " + b64(encoded("u:\ud800")),
           b"ApiKey", b"ApiKey " + b64(b"id:"), b"ApiKey =", b"Token " + k, b"Bearer " + k[:-1],
           b"Bearer " + k + b"x", b"Bearer " + b"a" * 10_000, b"Basic " + b64(b"u:" + k[:-1]),
           b"Bearer \xe9\xff", b"Bearer " + k + b"\x00"]
    return st.one_of(
        st.sampled_from(good).map(lambda v: ({"Authorization": v}, 0)),
        st.just(({"x-api-key": k}, 0)),
        st.sampled_from([b"Bearer " + read_key.encode(),
                         b"Basic " + b64(b"u:" + read_key.encode())]).map(
            lambda v: ({"Authorization": v}, 403)),
        st.sampled_from(bad).map(lambda v: ({"Authorization": v}, 401)),
        st.builds(lambda v: ({"Authorization": b"Bearer " + v}, 401),
                  st.binary(min_size=1, max_size=40).filter(lambda b: b.strip() and b"\n" not in b
                                                            and b"\r" not in b)),
    )


OTLP_HOSTILE_JSON = st.one_of(  # records with times and numbers JSON readers choke on
    st.lists(st.one_of(RECORD, HOSTILE, st.builds(lambda ts: {"timeUnixNano": ts, "body": {
        "stringValue": "x"}}, LOKI_TS)), max_size=3).map(
        lambda records: render({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})),
    HOSTILE.map(render)).map(encoded)


def tcp_safe(headers: dict[str, bytes]) -> bool:
    """Header values an HTTP/1.1 client sends (no control characters, no outer blanks)."""
    return all(v == v.strip() and all(b >= 0x20 and b != 0x7F for b in v)
               for v in headers.values())


def check_auth(response: httpx.Response, credential: tuple[dict[str, bytes], int]) -> None:
    """An accepted credential is never a 401/403; a bad one is refused with its status."""
    headers, expect = credential
    if expect == 0:
        assert response.status_code not in (401, 403), (headers, response.text[:300])
    else:
        assert response.status_code == expect, (headers, response.status_code, response.text[:300])


# --- the system under test -----------------------------------------------------------------------


@dataclass
class Target:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    port: int
    creds: dict[str, str]
    event_id: str
    gateway_http: httpx.AsyncClient  # the gateway's OTLP/HTTP port, over TCP

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the test's loop from hypothesis's thread."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout=120)

    def http(self, method: str, path: str, who: str | None, *,
             via: httpx.AsyncClient | None = None, **kwargs: Any) -> httpx.Response:
        """One request (to the web app unless `via` another client), as `who` (None: the
        credentials are in `headers`); `params` and `json` may hold lone surrogates, which httpx
        would refuse to encode: params go as their UTF-8 bytes (%ED%A0%80), JSON as `\\ud800`
        escapes."""
        client = via or self.client
        auth = {"Authorization": f"Bearer {self.creds[who]}"} if who else {}
        headers = {**auth, **kwargs.pop("headers", {})}
        if "json" in kwargs:  # escaped as \\ud800: the server reads a lone surrogate back
            kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
            headers["content-type"] = "application/json"
        if query := kwargs.pop("params", None):
            path += "?" + "&".join(f"{quoted(k)}={quoted(v)}" for k, v in query.items())
        try:
            response = self.run(lambda: client.request(method, path, headers=headers, **kwargs))
        except Exception as exc:  # the app's own exceptions come through the ASGI transport
            exc.add_note(f"request: {method} {path} {headers} {str(kwargs)[:1000]}")
            raise
        assert response.status_code < 500, (method, path, kwargs, response.text[:500])
        return response

    def grpc(self, method: str, data: bytes, reply: type[Any], *, stream: bool = False) -> None:
        async def call() -> Status | None:
            channel = Channel("127.0.0.1", self.port)
            cardinality = Cardinality.STREAM_STREAM if stream else Cardinality.UNARY_UNARY
            with closing(channel):
                try:
                    async with channel.request(
                        method, cardinality, _Raw, reply,
                        metadata={"authorization": f"Bearer {self.creds['key_ingest']}"},
                    ) as call:
                        await call.send_message(_Raw(data), end=True)
                        await call.recv_message()
                        if stream:
                            await call.recv_trailing_metadata()
                    return None
                except GRPCError as exc:
                    return exc.status

        status = self.run(call)
        assert status in (None, Status.INVALID_ARGUMENT, Status.RESOURCE_EXHAUSTED), (
            method, data[:200], status)


def quoted(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - the codec's interface
        return self.data


@pytest.fixture
async def target(
    tmp_path: Path, es: AsyncElasticsearch, kafka_servers: str, unique: str
) -> AsyncIterator[Target]:
    settings: Settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", tmp_path / "state",
        index_prefix=f"{unique}-", topic_prefix=f"{unique}.", ingest_key_cache_seconds=0,
        ingest_produce_timeout=5.0, ingest_default_rate_limit=0)  # no 429 hiding an answer
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    await admin.create_topics([NewTopic(topic_name(settings, RAW), 1, 1)])
    try:
        async with running_app(settings) as app, client_for(app) as client:
            world = await build_world(app)
            acme = event(world, "acme", 0, message="disk error on sda", level="ERROR",
                         attributes={"user": "u1"})
            await index_events(es, settings, [acme])
            server, service = await start_gateway(settings, host="127.0.0.1", port=0,
                                                  http_port=0)
            try:
                async with httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{server.http_port}") as gateway_http:
                    yield Target(asyncio.get_running_loop(), client, bound_port(server),
                                 dict(world.creds), acme.doc_id(), gateway_http)
            finally:
                server.close()
                await server.wait_closed()
                await service.close()
    finally:
        try:
            await admin.delete_topics([topic_name(settings, RAW)])
        finally:
            await admin.close()
            await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


def run_all(*fuzzers: Callable[[], None]) -> None:
    """Run every fuzzer, then fail with what each one found (and where, and the input)."""
    failures = []
    for fuzz in fuzzers:
        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report them all
            where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            notes = "\n".join(getattr(exc, "__notes__", []))[:2000]
            failures.append(f"{fuzz.__name__}: {type(exc).__name__}: {str(exc)[:2000]}\n"
                            f"{where}{notes}")
    assert not failures, "\n\n".join(failures)


# --- the fuzzers ---------------------------------------------------------------------------------


def fuzz_ingest(t: Target) -> None:
    @bounded
    @given(st.lists(RECORD, max_size=5), st.sampled_from(["application/json",
                                                        "application/x-ndjson", "text/plain"]))
    def records(docs: list[Any], media: str) -> None:
        body = json.dumps(docs).encode() if media == "application/json" else ndjson(docs)
        t.http("POST", "/api/v1/logs", "key_ingest", content=body,
               headers={"content-type": media})

    @bounded
    @given(st.one_of(DEEP_JSON, st.binary(max_size=300), HOSTILE.map(render).map(encoded)),
           st.sampled_from(["application/json", "application/x-ndjson", "text/plain"]))
    def raw_bodies(body: bytes, media: str) -> None:
        t.http("POST", "/api/v1/logs", "key_ingest", content=body,
               headers={"content-type": media})

    @bounded
    @given(PROTOBUF)
    def otlp_protobuf(body: bytes) -> None:
        t.http("POST", "/v1/logs", "key_ingest", content=body,
               headers={"content-type": "application/x-protobuf"})

    @bounded
    @given(OTLP_JSON)
    def otlp_json(body: bytes) -> None:
        t.http("POST", "/v1/logs", "key_ingest", content=body,
               headers={"content-type": "application/json"})

    @bounded
    @given(PROTOBUF)
    def grpc(data: bytes) -> None:
        t.grpc(OTLP_EXPORT, data, ExportLogsServiceResponse)
        t.grpc(PUSH, data, PushAck)
        t.grpc(PUSH_STREAM, data, PushAck, stream=True)

    @bounded
    @given(st.one_of(st.tuples(PROTOBUF, st.just("application/x-protobuf")),
                     st.tuples(OTLP_JSON | OTLP_HOSTILE_JSON, st.just("application/json")),
                     st.tuples(st.binary(max_size=100), ODD_TYPE)),
           ENCODING, st.booleans())
    def gateway_otlp_http(body_type: tuple[bytes, str], encoding: str, honest: bool) -> None:
        """OTLP/HTTP on the gateway's own port (4318 by default), over TCP."""
        body, headers = encode(body_type[0], encoding, honest)
        t.http("POST", "/v1/logs", "key_ingest", via=t.gateway_http, content=body,
               headers={"content-type": body_type[1], **headers})

    @bounded
    @given(credential_forms(t.creds["key_ingest"], t.creds["key_read"]).filter(
        lambda c: tcp_safe(c[0])), st.booleans())
    def gateway_otlp_credentials(credential: tuple[dict[str, bytes], int], as_json: bool) -> None:
        headers, expect = credential
        media = "application/json" if as_json else "application/x-protobuf"
        body = (json.dumps({"resourceLogs": []}).encode() if as_json else valid_export())
        r = t.http("POST", "/v1/logs", None, via=t.gateway_http, content=body,
                   headers={**headers, "content-type": media})
        check_auth(r, credential)
        if expect == 0:
            assert r.status_code == 200, r.text[:300]

    run_all(records, raw_bodies, otlp_protobuf, otlp_json, grpc, gateway_otlp_http,
            gateway_otlp_credentials)


LOKI_PUSH = "/loki/api/v1/push"
LOKI_PARTIAL = re.compile(r"(\d+) of (\d+) entries rejected, (\d+) accepted")


def loki_accepted_good(response: httpx.Response) -> None:
    """The request's good entry was accepted: 204 (all were), or a 400 naming the rejected
    entries and counting at least one accepted."""
    assert response.status_code in (204, 400), (response.status_code, response.text[:500])
    if response.status_code == 400:
        counts = LOKI_PARTIAL.match(response.text)
        assert counts and int(counts[3]) >= 1, response.text[:500]


def fuzz_loki(t: Target) -> None:
    @bounded
    @given(st.lists(LOKI_STREAM, max_size=3), st.booleans())
    def json_push(streams: list[Any], gzipped: bool) -> None:
        """Hostile streams and entries next to a good one: that one is never lost, unless
        the body is no JSON Python reads (a number past its int limit): a 400 saying so."""
        doc = {"streams": [loki_good_stream(), *streams]}
        body, headers = encode(render(doc).encode(), "gzip" if gzipped else "", honest=True)
        r = t.http("POST", LOKI_PUSH, "key_ingest", content=body,
                   headers={"content-type": "application/json", **headers})
        if too_long(doc):
            assert (r.status_code, r.text) == (400, f"body is not JSON: {TOO_LONG}\n"), r.text
        else:
            loki_accepted_good(r)

    @bounded
    @given(st.one_of(st.lists(LOKI_STREAM, max_size=3).map(lambda s: {"streams": s}),
                     st.builds(lambda s: {"streams": s}, HOSTILE), HOSTILE).map(render).map(encoded)
           | DEEP_JSON | st.binary(max_size=200),
           mostly(st.sampled_from(["application/json", "application/json; charset=utf-8",
                                   "application/json; charset=utf-16"]), ODD_TYPE),
           ENCODING, st.booleans())
    def json_bodies(body: bytes, media: str, encoding: str, honest: bool) -> None:
        body, headers = encode(body, encoding, honest)
        t.http("POST", LOKI_PUSH, "key_ingest", content=body,
               headers={"content-type": media, **headers})

    @bounded
    @given(st.lists(PB_STREAM, max_size=3))
    def protobuf_push(streams: list[bytes]) -> None:
        """Hostile streams (bad labels, times, invalid UTF-8, garbage) next to a good one."""
        body = snappy(b"".join(field(1, s) for s in [loki_good_pb(), *streams]))
        loki_accepted_good(t.http("POST", LOKI_PUSH, "key_ingest", content=body,
                                  headers={"content-type": "application/x-protobuf"}))

    @bounded
    @given(SNAPPY_BODIES, mostly(PROTOBUF_TYPE, ODD_TYPE), ENCODING, st.booleans())
    def snappy_bodies(body: bytes, media: str, encoding: str, honest: bool) -> None:
        body, headers = encode(body, encoding, honest)
        t.http("POST", LOKI_PUSH, "key_ingest", content=body,
               headers={"content-type": media, **headers})

    @bounded
    @given(credential_forms(t.creds["key_ingest"], t.creds["key_read"]), st.booleans())
    def credentials(credential: tuple[dict[str, bytes], int], as_json: bool) -> None:
        headers, expect = credential
        if as_json:
            body, media = render({"streams": [loki_good_stream()]}).encode(), "application/json"
        else:
            body, media = snappy(field(1, loki_good_pb())), "application/x-protobuf"
        r = t.http("POST", LOKI_PUSH, None, content=body,
                   headers={**headers, "content-type": media})
        check_auth(r, credential)
        if expect == 0:
            assert r.status_code == 204, r.text[:300]

    run_all(json_push, json_bodies, protobuf_push, snappy_bodies, credentials)


def check_es_answer(response: httpx.Response) -> dict[str, Any]:
    """Every answer of the Elasticsearch-compatible endpoints is marked as Elasticsearch's, and
    an error is shaped as Elasticsearch's (`{"error": {"type", "reason", ...}, "status"}`)."""
    assert response.headers.get("x-elastic-product") == "Elasticsearch", (
        response.request.url, response.status_code, response.headers)
    if response.status_code < 300 or response.request.method == "HEAD":
        return response.json() if response.request.method != "HEAD" else {}
    answer = response.json()
    error = answer["error"]
    assert answer["status"] == response.status_code, answer
    assert isinstance(error["type"], str) and isinstance(error["reason"], str), answer
    assert error["root_cause"][0]["type"] == error["type"], answer
    return dict(answer)


def bulk_path(index: str | None) -> str:
    return "/_bulk" if index is None else f"/{quoted(index)}/_bulk"


def fuzz_bulk(t: Target) -> None:
    @bounded
    @given(st.lists(BULK_ITEM, min_size=1, max_size=6), st.none() | INDEX_NAMES, BULK_TYPE,
           st.booleans(), st.sampled_from(["POST", "PUT"]), st.sampled_from(["", *WRITE_ACTIONS]))
    def items(entries: list[BulkItem], index: str | None, media: str, gzipped: bool,
              method: str, last: str) -> None:
        """One answer item per action, in order: the good ones 201, the bad ones a 4xx with an
        Elasticsearch error, hostile documents either (never a whole-request failure); `last`:
        a final write action whose document line is missing."""
        if last:
            entries = [*entries, BulkItem([render({last: {}})], last, 400)]
        body = encoded("\n".join(line for e in entries for line in e.lines) + "\n")
        body, headers = encode(body, "gzip" if gzipped else "", honest=True)
        r = t.http(method, bulk_path(index), "key_ingest", content=body,
                   headers={"content-type": media, **headers})
        if index is not None and "/" in index:
            return  # `a/b/_bulk` is no bulk path (nor is it in Elasticsearch)
        assert r.status_code == 200, r.text[:500]
        answer = check_es_answer(r)
        assert len(answer["items"]) == len(entries), (entries, answer)
        statuses = []
        for entry, item in zip(entries, answer["items"], strict=True):
            ((action, result),) = item.items()
            assert action in ACTIONS and entry.action in (action, "?"), (entry, item)
            statuses.append(result["status"])
            if entry.expect is not None:
                assert result["status"] == entry.expect, (entry, item)
            if result["status"] >= 300:
                assert result["status"] == 400, item
                assert isinstance(result["error"]["type"], str), item
                assert isinstance(result["error"]["reason"], str), item
            else:
                assert (result["status"], result["result"]) == (201, "created"), item
        assert answer["errors"] == any(s >= 300 for s in statuses), answer

    @bounded
    @given(st.one_of(
        st.binary(max_size=300), DEEP_JSON,
        st.builds(mutate, st.just(encoded("\n".join([render({"index": {}}), render(
            {"message": "m", "@timestamp": NOW_ISO}), render({"create": {"_index": "x"}}),
            render({"log": "l"})]))), st.lists(st.tuples(st.integers(0, 10**6),
                                                         st.integers(0, 255)), max_size=6)),
        st.lists(HOSTILE, max_size=4).map(lambda lines: encoded("\n".join(map(render, lines))))),
        st.none() | INDEX_NAMES, mostly(BULK_TYPE, ODD_TYPE), ENCODING, st.booleans(),
        st.dictionaries(st.sampled_from(["refresh", "pipeline", "routing", "filter_path",
                                         "timeout", "require_alias", "_source"]) | TEXT,
                        TEXT, max_size=3))
    def bodies(body: bytes, index: str | None, media: str, encoding: str, honest: bool,
               query: dict[str, str]) -> None:
        """Random, mutated and hostile bodies, odd types and encodings, and the query
        parameters clients add (ignored: `refresh`, `pipeline`, `filter_path`...)."""
        body, headers = encode(body, encoding, honest)
        r = t.http("POST", bulk_path(index), "key_ingest", content=body, params=query,
                   headers={"content-type": media, **headers})
        if index is not None and "/" in index:
            return
        answer = check_es_answer(r)
        if r.status_code == 200:
            assert answer["items"] and all(
                len(item) == 1 and next(iter(item.values()))["status"] in (201, 400)
                for item in answer["items"]), answer

    @bounded
    @given(credential_forms(t.creds["key_ingest"], t.creds["key_read"]))
    def credentials(credential: tuple[dict[str, bytes], int]) -> None:
        headers, expect = credential
        body = encoded(render({"index": {}}) + "\n" + render({"message": "m"}) + "\n")
        r = t.http("POST", "/_bulk", None, content=body,
                   headers={**headers, "content-type": "application/x-ndjson"})
        check_auth(r, credential)
        check_es_answer(r)
        if expect == 0:
            assert r.status_code == 200, r.text[:300]

    @bounded
    @given(st.sampled_from(["/", "/_license", "/_cluster/health", "/_index_template/{}",
                            "/_template/{}", "/_ilm/policy/{}"]),
           INDEX_NAMES, st.sampled_from(["GET", "HEAD", "PUT"]),
           credential_forms(t.creds["key_ingest"], t.creds["key_read"]),
           st.fixed_dictionaries({"accept": st.sampled_from([
               "application/json", "application/vnd.elasticsearch+json; compatible-with=8",
               "*/*"])}, optional={"user-agent": st.sampled_from(
                   ["elasticsearch-py/8.19", "Filebeat/8.19", "Vector/0.4", ""]),
                   "x-elastic-client-meta": st.just("es=8.19,py=3.11")}),
           HOSTILE.map(render).map(encoded))
    def set_up_calls(path: str, name: str, method: str,
                     credential: tuple[dict[str, bytes], int], extra: dict[str, str],
                     body: bytes) -> None:
        """What clients ask before they send: version, license, health, templates and ILM
        policies (with hostile names and bodies). `Accept: application/json` or an
        Elasticsearch client's headers, so that `/` answers as Elasticsearch (else the UI)."""
        headers, expect = credential
        if "{}" not in path:
            method = "GET" if method == "PUT" else method  # no PUT route: a 405 before the key
        if "/" in name or name in (".", ".."):
            name = "n"  # another path
        target = path.format(quoted(name))
        if extra["accept"] == "*/*":
            extra = {**extra, "x-elastic-client-meta": "es=8.19"}
        r = t.http(method, target, None, content=body if method == "PUT" else b"",
                   headers={**headers, **extra})
        check_auth(r, credential)
        check_es_answer(r)
        if expect == 0:
            assert r.status_code in (200, 404), r.text[:300]

    run_all(items, bodies, credentials, set_up_calls)


def fuzz_queries(t: Target) -> None:
    @bounded
    @given(st.sampled_from(["/api/v1/search", "/api/v1/histogram", "/api/v1/fields"]),
           params("q", "since", "until", "limit", "order", "cursor", "highlight", "interval",
                  "top"),
           st.booleans())
    def search(path: str, query: dict[str, Any], post: bool) -> None:
        if post:
            t.http("POST", path, "key_read", json=query)
        else:
            t.http("GET", path, "key_read", params=query)

    @bounded
    @given(st.sampled_from(["/api/v1/search", "/api/v1/histogram", "/api/v1/alert-rules"]),
           st.one_of(DEEP_JSON, JSON_VALUE.map(lambda v: json.dumps(v).encode())))
    def bodies(path: str, body: bytes) -> None:
        t.http("POST", path, "admin", content=body, headers={"content-type": "application/json"})

    @bounded
    @given(st.one_of(TEXT, st.just(t.event_id)), params("before", "after"))
    def context(doc_id: str, query: dict[str, Any]) -> None:
        t.http("GET", f"/api/v1/logs/{quoted(doc_id)}/context", "key_read", params=query)

    @bounded
    @given(params("since", "status", "kind", "limit"))
    def alerts(query: dict[str, Any]) -> None:
        t.http("GET", "/api/v1/alerts", "key_read", params=query)

    @bounded
    @given(QUERY, st.one_of(st.integers(-5, 10**10), TEXT))
    def rules(query: str, threshold: Any) -> None:
        t.http("POST", "/api/v1/alert-rules", "admin",
               json={"name": "fuzz", "query": query, "threshold": threshold})

    @bounded
    @given(QUERY, st.one_of(st.just("1s"), TIME))
    def tail_filter(query: str, since: str) -> None:
        """What the live tail does with `q` and `since` before it subscribes (web/tail.py)."""
        try:
            checked = read_query({"q": query, "since": since}, now_ns=time.time_ns())
        except BadParameter:
            return
        predicate = compile_predicate(checked.node)
        predicate({"message": "disk error", "severity": "ERROR", "severity_number": 17,
                   "attributes": {"x": "1"}})

    run_all(search, bodies, context, alerts, rules, tail_filter)


async def test_ingest_endpoints_answer_hostile_input_without_server_errors(target: Target) -> None:
    await asyncio.to_thread(fuzz_ingest, target)


async def test_query_endpoints_answer_hostile_input_without_server_errors(target: Target) -> None:
    await asyncio.to_thread(fuzz_queries, target)


async def test_loki_and_bulk_answer_hostile_input_without_server_errors(target: Target) -> None:
    """Loki push and Elasticsearch _bulk (one app and gateway set-up for both)."""
    await asyncio.to_thread(run_all, lambda: fuzz_loki(target), lambda: fuzz_bulk(target))


async def test_what_the_shipper_fuzzers_found_is_a_400_naming_it(target: Target) -> None:
    """The 500s the fuzzers above found, as their inputs: a number past Python's int/str limit
    (json.loads raises a plain ValueError), a Loki timestamp of digits int() refuses, and lone
    surrogates echoed in an answer (which then cannot be encoded). The valid part of each
    request is still accepted."""
    long = "1" * 5000
    headers = {"Authorization": f"Bearer {target.creds['key_ingest']}"}
    ndjson_type = {**headers, "content-type": "application/x-ndjson"}
    json_type = {**headers, "content-type": "application/json"}

    async def post(path: str, body: str, headers: dict[str, str]) -> httpx.Response:
        response = await target.client.post(path, content=encoded(body), headers=headers)
        assert response.status_code < 500, response.text
        return response

    r = await post("/api/v1/logs", '{"message": "good"}\n{"n": ' + long + "}", ndjson_type)
    assert r.json() == {"accepted": 1, "rejected": 1, "errors": [
        {"line": 2, "field": "line", "reason": f"not JSON: {TOO_LONG}"}]}
    r = await post("/api/v1/logs", '[{"message": "m", "n": ' + long + "}]", json_type)
    assert (r.status_code, r.json()) == (400, {"error": f"body is not JSON: {TOO_LONG}"})

    export = '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": ' + long + "}]}]}]}"
    r = await post("/v1/logs", export, json_type)  # a 400 before too, with Python's hint
    assert (r.status_code, r.json()["message"]) == (
        400, f"not an OTLP ExportLogsServiceRequest: request: not JSON: {TOO_LONG}")

    r = await post(LOKI_PUSH, render({"streams": [loki_good_stream(), {
        "stream": {"app": "\ud800"}, "values": [[long, "l"], ["²", "l"], [Raw(long), "l"]]}]}),
                   json_type)
    assert (r.status_code, r.text) == (400, f"body is not JSON: {TOO_LONG}\n")
    r = await post(LOKI_PUSH, render({"streams": [loki_good_stream(), {
        "stream": {"app": "\ud800"}, "values": [[long, "l"], ["²", "l"]]}]}), json_type)
    assert r.status_code == 400 and r.text.startswith("2 of 3 entries rejected, 1 accepted: "
                                                      'stream 1 {"app": "\\ud800"} entry 0: '
                                                      "timestamp: '1111"), r.text

    body = "\n".join([render({"index": {"_id": Raw(long)}}), render({"create": {}}),
                      '{"n": ' + long + "}", render({"index": {"_index": "\ud800"}}),
                      render({"message": "good"})]) + "\n"
    r = await post("/_bulk", body, ndjson_type)
    items = r.json()["items"]
    assert [(next(iter(i)), i[next(iter(i))]["status"]) for i in items] == [
        ("index", 400), ("create", 400), ("index", 201)], items
    assert items[0]["index"]["error"]["reason"] == (
        f"line 1: malformed action/metadata line, not JSON: {TOO_LONG}")
    assert items[1]["create"]["error"]["reason"] == f"document: line 3 is not JSON: {TOO_LONG}"
    assert items[2]["index"]["_index"] == "\\ud800"
