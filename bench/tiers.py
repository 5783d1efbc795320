"""Many small tenants versus a few large ones through the gateway, on the tiered index layout
(issue 18; docs/scaling.md, "Index layout").

One run against the running local stack (`laas stack up`: its Elasticsearch keeps the default
`cluster.max_shards_per_node` of 1,000), a private deployment (own topics, index prefix, user
database, worker, gateway and web processes):

1. few: `--few` tenants x (`--tenants` x `--per-tenant` / `--few`) events, 100 a call, then
   the same again in calls of `--per-tenant` records (the size of the many's calls);
2. many: `--tenants` new tenants x `--per-tenant` events, the same total. Both pushed through the
   gateway's `Push` with `--concurrency` connections (a call carries one tenant's records);
   then the many once more (their keys known by then); end-to-end records/s = events /
   (first push → every event searchable); and each many-tenant's first event searchable
   after its ack (these include the backlog while pushing faster than the pipeline);
3. paced: `--new` more new tenants at `--new-rate` tenants/s, each call paired with one of an
   existing tenant of the many: first-event-searchable latency of new versus existing tenants
   under the same load;
4. shards: of the run's indices, and on the node.

`--direct` leaves the gateway out: the same records written straight into `logs.raw` as the
gateway writes them, few against many in requests of the same size (the worker and the index).

`python -m bench.tiers [--tenants 10000 --per-tenant 10 --few 10] [--postgres]`; results in
bench/results/tiers.md and tiers.json (`--name`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from app.elastic import esindex
from app.elastic.client import es_client
from app.kafka.client import kafka_login
from app.settings import load_settings
from bench.harness import ROOT, Deployment, Pusher, batch_bytes, loadavg, loop_lags, machine
from bench.probes import summary
from bench.system import Monitor, start_processes

RESULTS = ROOT / "bench" / "results"


def record(tag: str, seq: int) -> bytes:
    """One log record: one service per tenant; `tag` names the phase (a searchable token)."""
    from app.ingest.wire import pb

    return pb.LogRecord(
        time_unix_nano=time.time_ns(), severity_text="INFO",
        body=pb.AnyValue(string_value=f"GET /api/items/{seq} 200 in {seq % 97}ms {tag}"),
        attributes={"seq": pb.AnyValue(string_value=str(seq))},
        resource=pb.Resource(service_name="app", host="bench-host"),
    ).SerializeToString()


class Calls:
    """`Push` calls through a pool of gateway connections, at most `concurrency` in flight."""

    def __init__(self, port: int, concurrency: int) -> None:
        self.pool: asyncio.Queue[Pusher] = asyncio.Queue()
        self.pushers = [Pusher(port, "", "") for _ in range(concurrency)]
        for pusher in self.pushers:
            self.pool.put_nowait(pusher)

    async def push(self, key: str, tag: str, seqs: range) -> float:
        """Push one tenant's records; the monotonic time of the ack."""
        body = batch_bytes(record(tag, s) for s in seqs)
        pusher = await self.pool.get()
        try:
            pusher.key = key
            await pusher.push(body, len(seqs))
            return time.monotonic()
        finally:
            self.pool.put_nowait(pusher)

    def close(self) -> None:
        for pusher in self.pushers:
            pusher.close()


class FirstSeen:
    """When each tenant's first event of a phase became searchable (polled every `interval`
    seconds: a terms aggregation on `tenant_id` over the run's log indices)."""

    def __init__(self, dep: Deployment, tag: str, tenants: list[str], interval: float = 0.25
                 ) -> None:
        self.es = es_client(dep.settings, request_timeout=30)
        self.index = esindex.all_logs_pattern(dep.settings)
        self.tag, self.tenants, self.interval = tag, tenants, interval
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> FirstSeen:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while len(self.seen) < len(self.tenants):
            try:
                found = await self.es.search(
                    index=self.index, size=0, ignore_unavailable=True, allow_no_indices=True,
                    query={"bool": {"filter": [{"match": {"message": self.tag}}]}},
                    aggs={"t": {"terms": {"field": "tenant_id",
                                          "size": len(self.tenants) + 100}}})
                now = time.monotonic()
                for bucket in found["aggregations"]["t"]["buckets"]:
                    self.seen.setdefault(str(bucket["key"]), now)
            except Exception as exc:  # noqa: BLE001 - measured again at the next poll
                print("first-seen poll failed:", repr(exc), flush=True)
            await asyncio.sleep(self.interval)

    async def wait(self, timeout: float) -> None:
        assert self._task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
        await self.es.close()

    def latencies(self, acked: dict[str, float]) -> list[float]:
        """Seconds from each tenant's ack to its first event searchable (seen ones only)."""
        return [self.seen[t] - acked[t] for t in acked if t in self.seen]


async def phase(dep: Deployment, mon: Monitor, calls: Calls, name: str,
                group: list[tuple[int, str, str]], per_tenant: int, batch: int,
                expected: list[int], drain: float) -> dict[str, Any]:
    """Every tenant of `group` pushes `per_tenant` events in calls of `batch`, as fast as the
    gateway acknowledges; until all of them are searchable."""
    tag = f"{dep.run}{name}"
    watch = FirstSeen(dep, tag, [str(tid) for tid, _, _ in group]).start()
    acked: dict[str, float] = {}
    calls_of = [(str(tid), key, range(start, min(start + batch, per_tenant)))
                for start in range(0, per_tenant, batch) for tid, key, _ in group]
    begin = time.monotonic()

    async def one(tid: str, key: str, seqs: range) -> None:
        when = await calls.push(key, tag, seqs)
        acked.setdefault(tid, when)

    sem = asyncio.Semaphore(len(calls.pushers) * 2)

    async def bounded(tid: str, key: str, seqs: range) -> None:
        async with sem:
            await one(tid, key, seqs)

    await asyncio.gather(*(bounded(*c) for c in calls_of))
    acked_s = time.monotonic() - begin
    events = per_tenant * len(group)
    expected[0] += events
    done = await mon.wait_indexed(expected[0], drain)
    await watch.wait(30)
    took = None if done is None else acked_s + done
    first = watch.latencies(acked)
    out = {"tenants": len(group), "events": events, "events_per_call": batch,
           "calls": len(calls_of), "acked_s": acked_s, "acked_per_s": events / acked_s,
           "searchable_s": took, "end_to_end_per_s": None if took is None else events / took,
           "first_event_searchable_s": summary([x * 1000 for x in first]) | {
               "unit": "ms", "seen": len(first)}, "load": loadavg(),
           "loop_lag": await loop_lags(dep)}
    print(f"  {name}: {out}", flush=True)
    return out


async def paced(dep: Deployment, mon: Monitor, calls: Calls, new: list[tuple[int, str, str]],
                old: list[tuple[int, str, str]], per_tenant: int, rate: float,
                expected: list[int], drain: float) -> dict[str, Any]:
    """New tenants at `rate` per second, each call paired with one of an existing tenant."""
    tag_new, tag_old = f"{dep.run}pacednew", f"{dep.run}pacedold"
    watch_new = FirstSeen(dep, tag_new, [str(t) for t, _, _ in new]).start()
    watch_old = FirstSeen(dep, tag_old, [str(t) for t, _, _ in old]).start()
    acked_new: dict[str, float] = {}
    acked_old: dict[str, float] = {}
    begin = time.monotonic()
    tasks = []

    async def one(tid: int, key: str, tag: str, acked: dict[str, float]) -> None:
        acked[str(tid)] = await calls.push(key, tag, range(per_tenant))

    for i, ((tid, key, _), (otid, okey, _)) in enumerate(zip(new, old, strict=False)):
        due = begin + i / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        tasks.append(asyncio.create_task(one(tid, key, tag_new, acked_new)))
        tasks.append(asyncio.create_task(one(otid, okey, tag_old, acked_old)))
    await asyncio.gather(*tasks)
    expected[0] += 2 * per_tenant * len(acked_new)
    await mon.wait_indexed(expected[0], drain)
    await watch_new.wait(30)
    await watch_old.wait(30)
    new_ms = [x * 1000 for x in watch_new.latencies(acked_new)]
    old_ms = [x * 1000 for x in watch_old.latencies(acked_old)]
    out = {"new_tenants": len(acked_new), "tenants_per_s": rate,
           "events_per_s": 2 * rate * per_tenant, "seconds": time.monotonic() - begin,
           "new_first_event_ms": summary(new_ms) | {"seen": len(new_ms)},
           "existing_event_ms": summary(old_ms) | {"seen": len(old_ms)}, "load": loadavg(),
           "loop_lag": await loop_lags(dep)}
    print(f"  paced: {out}", flush=True)
    return out


async def direct(dep: Deployment, mon: Monitor, name: str, tenants: list[int], per_tenant: int,
                 request: int, expected: list[int], drain: float) -> dict[str, Any]:
    """The records of `tenants` written straight into `logs.raw` as the gateway writes them
    (requests of `request` records, one signed message per request and service): the worker
    and the index alone, without the gateway's per-call and per-key costs."""
    from aiokafka import AIOKafkaProducer

    from app.ingest.wire import pb
    from app.ingest.writer import raw_batches
    from app.kafka.client import client_options
    from app.kafka.headers import LOG_BATCH_CONTENT_TYPE as CONTENT_TYPE
    from app.kafka.stamp import Stamps

    stamps = Stamps.from_settings(dep.settings)
    tag = f"{dep.run}{name}"
    messages: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    for tid in tenants:
        headers = [("content-type", CONTENT_TYPE), ("laas-tenant-id", str(tid).encode()),
                   ("laas-tenant", f"t{tid}".encode()), ("laas-source", b"gateway")]
        for start in range(0, per_tenant, request):
            chunk = [pb.LogRecord.FromString(record(tag, s))
                     for s in range(start, min(start + request, per_tenant))]
            messages += [(b.key, b.value, stamps.sign(b.key, b.value, headers))
                         for b in raw_batches(chunk, range(len(chunk)), str(tid), 512 * 1024)]
    producer = AIOKafkaProducer(**client_options(dep.settings), acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    begin = time.monotonic()
    try:
        futures = [await producer.send(dep.topic(), value, key=key, headers=headers)
                   for key, value, headers in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    produced_s = time.monotonic() - begin
    events = per_tenant * len(tenants)
    expected[0] += events
    stages = asyncio.create_task(drained(dep, begin))
    done = await mon.wait_indexed(expected[0], drain)
    took = None if done is None else produced_s + done
    drained_s = await stages
    out = {"tenants": len(tenants), "events": events, "events_per_request": request,
           "messages": len(messages), "produced_s": produced_s, "searchable_s": took,
           "normalize_drained_s": drained_s[0], "index_drained_s": drained_s[1],
           "end_to_end_per_s": None if took is None else events / took, "load": loadavg()}
    print(f"  {name}: {out}", flush=True)
    return out


async def drained(dep: Deployment, begin: float, timeout: float = 600
                  ) -> tuple[float | None, float | None]:
    """Seconds from `begin` until normalize (its group on `logs.raw`) and then the index stage
    (its group on `logs.events`) had committed everything: which stage held the rest up."""
    from agents.index import index_group
    from app.kafka.topics import EVENTS
    from bench.harness import consumer_lag

    at: list[float | None] = [None, None]
    checks = ((dep.run, dep.topic()), (index_group(dep.settings), dep.topic(EVENTS)))
    while None in at and time.monotonic() - begin < timeout:
        for i, (group, topic) in enumerate(checks):
            if at[i] is None and (i == 0 or at[0] is not None):
                try:
                    if await consumer_lag(dep.settings, group, topic) == 0:
                        at[i] = time.monotonic() - begin
                except Exception:  # noqa: BLE001 - asked again
                    pass
        await asyncio.sleep(0.25)
    return at[0], at[1]


async def run_direct(args: argparse.Namespace, argv: str) -> dict[str, Any]:
    """`--direct`: few against many straight into `logs.raw`, with calls of the same size."""
    from bench.tenants import ensure_tenants

    stack = load_settings()
    results: dict[str, Any] = {"started": time.ctime(), "argv": argv, "machine": machine(),
                               "load_start": loadavg()}
    login = kafka_login(stack)
    extra = {"LAAS_KAFKA_SECURITY_PROTOCOL": login.protocol}
    if login.mechanism and login.username and login.password:
        extra |= {"LAAS_KAFKA_SASL_MECHANISM": login.mechanism,
                  "LAAS_KAFKA_SASL_USERNAME": login.username,
                  "LAAS_KAFKA_SASL_PASSWORD": login.password}
    dep = Deployment(stack.kafka_servers, stack.elasticsearch_url, partitions=4, tag="tiersd",
                     extra=extra)
    try:
        await dep.create_topics()
        ids = list(range(1, 2 + args.few + args.tenants))
        begin = time.monotonic()
        await ensure_tenants(dep.settings, {i: "t" for i in ids})
        results["create_s"], results["created"] = time.monotonic() - begin, len(ids)
        await start_processes(dep)
        mon = Monitor(dep, time.monotonic())
        expected = [0]
        total = args.tenants * args.per_tenant
        few, many = ids[1:1 + args.few], ids[1 + args.few:]
        results["warmup"] = await direct(dep, mon, "warm", ids[:1], 500, 100, expected,
                                         args.drain)
        results["few"] = await direct(dep, mon, "few", few, total // args.few,
                                      args.per_tenant, expected, args.drain)
        results["many"] = await direct(dep, mon, "many", many, args.per_tenant,
                                       args.per_tenant, expected, args.drain)
        results["many_again"] = await direct(dep, mon, "manyagain", many, args.per_tenant,
                                             args.per_tenant, expected, args.drain)
        await mon.es.close()
        results["shards"] = await shards(dep)
        for key, many_key in (("ratio_many_few", "many"), ("ratio_again_few", "many_again")):
            f, m = results["few"]["end_to_end_per_s"], results[many_key]["end_to_end_per_s"]
            results[key] = m / f if f and m else None
        results["errors"] = dep.log_errors()
    finally:
        await dep.cleanup()
    return results


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_direct(r: dict[str, Any]) -> str:
    lines = [
        "# Many small tenants versus few large ones, straight into logs.raw (issue 18)",
        "",
        f"Run {r['started']} by `python -m bench.tiers {r['argv']}` on {r['machine']}; load at "
        f"start {r['load_start']}. The records written into `logs.raw` as the gateway writes "
        "them (signed, one message per request and service, requests of the same size for "
        "both cases), one worker of a private deployment against the running local stack: the "
        "worker and the index without the gateway. User database: SQLite.",
        "",
        "| case | tenants | events | events per request | messages | produced in s "
        "| normalize done after s | index stage done after s | all searchable after s "
        "| end-to-end rec/s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, key in (("few", "few"), ("many (first events)", "many"),
                      ("many, second round", "many_again")):
        row = r[key]
        took = "-" if row["searchable_s"] is None else format(row["searchable_s"], ".1f")
        rate = "-" if row["end_to_end_per_s"] is None else format(row["end_to_end_per_s"], ",.0f")
        lines.append(f"| {name} | {row['tenants']:,} | {row['events']:,} | "
                     f"{row['events_per_request']} | {row['messages']:,} | "
                     f"{row['produced_s']:.1f} | {secs(row['normalize_drained_s'])} | "
                     f"{secs(row['index_drained_s'])} | {took} | {rate} | {row['load']} |")
    ratio = {k: "-" if r[k] is None else format(r[k], ".2f")
             for k in ("ratio_many_few", "ratio_again_few")}
    sh = r["shards"]
    lines += ["", f"Ratio many/few of the end-to-end records/s: **{ratio['ratio_many_few']}** "
              f"(first events), **{ratio['ratio_again_few']}** (second round); target ≥ 0.8.",
              "", f"Shards of the run's indices: **{sh['run_shards']}** "
              f"({', '.join(sh['run_indices'])}); `cluster.max_shards_per_node`: "
              f"{sh['max_shards_per_node']}.", ""]
    return "\n".join(lines)


async def shards(dep: Deployment) -> dict[str, Any]:
    es = es_client(dep.settings, request_timeout=60)
    try:
        found = await es.cat.shards(index=f"{dep.run}-*", format="json", h="index,prirep")
        assert isinstance(found.body, list)  # format=json (the client types cat as text or JSON)
        mine: list[dict[str, str]] = list(found.body)
        names = sorted({row["index"] for row in mine})
        health = await es.cluster.health()
        cap = await es.cluster.get_settings(include_defaults=True,
                                            filter_path="*.cluster.max_shards_per_node")
        caps = [v["cluster"]["max_shards_per_node"] for v in cap.body.values()]
        return {"run_shards": len(mine), "run_indices": names,
                "node_shards": health["active_shards"],
                "max_shards_per_node": caps[0] if caps else None}
    finally:
        await es.close()


def pct(values: dict[str, Any], key: str) -> str:
    value = values.get(key)
    return "-" if value is None else f"{value:,.0f}"


LAG_ROWS = (("warm-up", "warmup"), ("few", "few"), ("few, small calls", "few_small_calls"),
            ("many (new tenants)", "many"), ("many, second round", "many_again"),
            ("paced", "paced"))


def lag_row(name: str, lags: dict[str, dict[str, float]]) -> str:
    def cell(process: str, rss: bool = False) -> str:
        row = lags.get(process)
        if not row:
            return "-"
        text = f"{row.get('over_100ms', 0):,.0f} / {row.get('probes', 0):,.0f}, " \
            f"{1000 * row.get('max_s', 0):,.0f} ({1000 * row.get('held_max_s', 0):,.0f})"
        return text + (f", {row['rss_bytes'] / 1e6:,.0f}" if rss and "rss_bytes" in row else "")

    return f"| {name} | {cell('analytics', rss=True)} | {cell('worker')} | {cell('index')} |"


def render(r: dict[str, Any]) -> str:
    many, pace, sh = r["many"], r["paced"], r["shards"]
    ratios = {k: "-" if v is None else format(v, ".2f") for k, v in r.items()
              if k.startswith("ratio_")}
    lines = [
        "# Many small tenants versus few large ones, tiered index layout (issue 18)",
        "",
        f"Run {r['started']} by `python -m bench.tiers {r['argv']}` on {r['machine']}; "
        f"load at start {r['load_start']}. One worker, gateway and web of a private deployment "
        "against the running local stack (its Elasticsearch with the default shard cap); "
        "every other engineer's processes were running on the same 2 cores.",
        "",
        f"User database: {r['user_database']}. Creating {r['created']:,} tenants with keys: "
        f"{r['create_s']:.1f} s.",
        "",
        "| case | tenants | events | events per call | acked rec/s | all searchable after s "
        "| end-to-end rec/s | first event searchable p50 / p99 / max ms | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in (("few", r["few"]), ("few, small calls", r["few_small_calls"]),
                      ("many (new tenants)", many), ("many, second round", r["many_again"])):
        f = row["first_event_searchable_s"]
        lines.append(
            f"| {name} | {row['tenants']:,} | {row['events']:,} | {row['events_per_call']} | "
            f"{row['acked_per_s']:,.0f} | "
            f"{'-' if row['searchable_s'] is None else format(row['searchable_s'], '.1f')} | "
            f"{'-' if row['end_to_end_per_s'] is None else format(row['end_to_end_per_s'], ',.0f')}"
            f" | {pct(f, 'p50')} / {pct(f, 'p99')} / {pct(f, 'max')} | {row['load']} |")
    n, o = pace["new_first_event_ms"], pace["existing_event_ms"]
    lines += [
        "",
        "Ratio many/few of the end-to-end records/s (target ≥ 0.8):",
        "",
        "| many | against few, 100 a call | against few, calls of the many's size |",
        "| --- | --- | --- |",
        f"| new tenants (first use of each key) | {ratios['ratio_many_few']} | "
        f"{ratios['ratio_many_few_same_calls']} |",
        f"| second round (keys known) | {ratios['ratio_again_few']} | "
        f"{ratios['ratio_again_few_same_calls']} |",
        "",
        f"Paced: {pace['new_tenants']:,} new tenants at {pace['tenants_per_s']:.0f}/s, each "
        f"call paired with one of an existing tenant ({pace['events_per_s']:,.0f} events/s in "
        "all), ack → first event searchable:",
        "",
        "| tenants | p50 ms | p99 ms | max ms | seen |",
        "| --- | --- | --- | --- | --- |",
        f"| new | {pct(n, 'p50')} | {pct(n, 'p99')} | {pct(n, 'max')} | {n['seen']:,} |",
        f"| existing | {pct(o, 'p50')} | {pct(o, 'p99')} | {pct(o, 'max')} | {o['seen']:,} |",
        "",
        "The worker's event loops (`laas_event_loop_*` of its `/metrics`, a 50 ms sleep's "
        "lateness; counts since the start of the run, the longest so far after each case, in "
        "brackets the longest the loop's own CPU explains — the rest was waiting for a core) "
        "and the analytics process's memory (its sources: one per tenant):",
        "",
        "| after | analytics: probes over 100 ms / probes, longest (own) ms, RSS MB | normalize "
        "(worker): over 100 ms, longest (own) ms | index: over 100 ms, longest (own) ms |",
        "| --- | --- | --- | --- |",
        *[lag_row(name, r[key].get("loop_lag", {})) for name, key in LAG_ROWS if key in r],
        "",
        f"Shards of the run's indices: **{sh['run_shards']}** ({', '.join(sh['run_indices'])}); "
        f"on the node: {sh['node_shards']} (every engineer's test indices included); "
        f"`cluster.max_shards_per_node`: {sh['max_shards_per_node']} (target < 200 shards for "
        f"{r['created']:,} tenants).",
        "",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace, argv: str) -> dict[str, Any]:
    stack = load_settings()
    results: dict[str, Any] = {"started": time.ctime(), "argv": argv, "machine": machine(),
                               "load_start": loadavg()}
    login = kafka_login(stack)  # the local stack's LaaS login, as a Kafka of one's own
    extra = {"LAAS_KAFKA_SECURITY_PROTOCOL": login.protocol}
    if login.mechanism and login.username and login.password:
        extra |= {"LAAS_KAFKA_SASL_MECHANISM": login.mechanism,
                  "LAAS_KAFKA_SASL_USERNAME": login.username,
                  "LAAS_KAFKA_SASL_PASSWORD": login.password}
    database = await create_database(stack.local_postgres_url) if args.postgres else None
    if database:
        extra["LAAS_DATABASE_URL"] = database
    dep = Deployment(stack.kafka_servers, stack.elasticsearch_url, partitions=4, tag="tiers",
                     extra=extra)
    results["user_database"] = "PostgreSQL (the local stack's)" if database else "SQLite"
    try:
        await dep.create_topics()
        begin = time.monotonic()
        total = args.tenants * args.per_tenant
        made = await dep.create_tenants(1 + args.few + args.tenants + args.new)
        results["create_s"], results["created"] = time.monotonic() - begin, len(made)
        warm, few, many = made[0], made[1:1 + args.few], made[1 + args.few:1 + args.few +
                                                               args.tenants]
        new = made[1 + args.few + args.tenants:]
        await start_processes(dep)
        calls = Calls(dep.ports["gateway"], args.concurrency)
        mon = Monitor(dep, time.monotonic())
        expected = [0]
        print("warm-up ...", flush=True)
        results["warmup"] = await phase(dep, mon, calls, "warm", [warm], 500, 100, expected,
                                        args.drain)
        print("few ...", flush=True)
        results["few"] = await phase(dep, mon, calls, "few", few, total // args.few, 100,
                                     expected, args.drain)
        print("few, calls of the many's size ...", flush=True)
        results["few_small_calls"] = await phase(dep, mon, calls, "fewsmall", few,
                                                 total // args.few, args.per_tenant, expected,
                                                 args.drain)
        print("many ...", flush=True)
        results["many"] = await phase(dep, mon, calls, "many", many, args.per_tenant,
                                      args.per_tenant, expected, args.drain)
        print("many, second round ...", flush=True)
        results["many_again"] = await phase(dep, mon, calls, "manyagain", many, args.per_tenant,
                                            args.per_tenant, expected, args.drain)
        print("paced ...", flush=True)
        results["paced"] = await paced(dep, mon, calls, new, many[:len(new)], args.per_tenant,
                                       args.new_rate, expected, args.drain)
        calls.close()
        await mon.es.close()
        results["shards"] = await shards(dep)
        for key, many_key, few_key in (
                ("ratio_many_few", "many", "few"),
                ("ratio_many_few_same_calls", "many", "few_small_calls"),
                ("ratio_again_few", "many_again", "few"),
                ("ratio_again_few_same_calls", "many_again", "few_small_calls")):
            few_rate = results[few_key]["end_to_end_per_s"]
            many_rate = results[many_key]["end_to_end_per_s"]
            results[key] = many_rate / few_rate if few_rate and many_rate else None
        results["errors"] = dep.log_errors()
    finally:
        await dep.cleanup()
        if database:
            await drop_database(stack.local_postgres_url, database)
    return results


async def create_database(server: str) -> str:
    """A new database on the PostgreSQL at `server` (a URL); its URL."""
    import uuid

    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"laas_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def drop_database(server: str, url: str) -> None:
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(
                f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--per-tenant", type=int, default=10)
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--new", type=int, default=1000, help="new tenants of the paced phase")
    parser.add_argument("--new-rate", type=float, default=50.0, help="new tenants per second")
    parser.add_argument("--concurrency", type=int, default=32, help="Push calls in flight")
    parser.add_argument("--drain", type=float, default=600.0, help="most seconds to wait")
    parser.add_argument("--postgres", action="store_true",
                        help="the user database on the local stack's PostgreSQL (else SQLite)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="tiers", help="results file names (NAME.md, .json)")
    parser.add_argument("--direct", action="store_true",
                        help="straight into logs.raw (no gateway): the worker and the index")
    args = parser.parse_args()
    argv = " ".join(sys.argv[1:])
    results = asyncio.run(run_direct(args, argv) if args.direct else run(args, argv))
    text = (render_direct if args.direct else render)(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
