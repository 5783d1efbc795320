"""Simultaneous start: do workers started together on a backlog consume every partition?

    python -m bench.stall [--reps 10] [--workers 2 3] [--watchdog 0 20] [--events 12000]

FINDINGS 7 / issue 16: when several workers start at the same moment, a worker sometimes keeps
partitions assigned and never fetches them. Each repetition gets a fresh deployment (topic
prefix, app id, state directories) on the running stack: every LaaS topic created first with
`--partitions` partitions, `--events` records written to `logs.raw`, then `--workers` workers
started in the same instant. Once a second the bench reads, for the three consumer groups
(normalize = app id on `logs.raw`; analytics and index on `logs.events`), the group's state and
member assignment, the committed offsets and the end offsets. A partition is **stalled** when
the group is Stable, the partition is assigned to a member, it has lag, and its committed
offset has not moved for `--stall-after` seconds while assigned (to that member). The run ends
when every group has caught up, or `--timeout` s after the start; without the watchdog a run
that stalled ends `GIVE_UP` s after the stall is seen (it is a stall already).

`--watchdog` lists values of `LAAS_WATCHDOG_SECONDS` to run with (0 = watchdog off); the modes
alternate within each repetition so both see the same machine load. Results: printed, and
written to `--out` (bench/results/stall.md) after every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from app.ingest.wire import pb
from app.kafka.client import client_options, cluster_env
from app.kafka.stamp import Stamps
from app.kafka.topics import ALL, EVENTS, RAW, topic_name
from app.settings import Settings, load_settings
from bench.tenants import ensure_tenants

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
BENCH_SECRET = "laas-bench-secret"  # the workers' LAAS_SECRET_KEY: the bench signs as the gateway
STAMPS = Stamps(BENCH_SECRET.encode())
HEADERS = [("content-type", b"application/x-protobuf; messageType=laas.v1.LogRecord"),
           ("laas-tenant-id", b"1"), ("laas-tenant", b"bench"), ("laas-source", b"gateway")]
GIVE_UP = 10.0  # s a run goes on after a stall was seen with the watchdog off


@dataclass
class Stall:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    idle_s: float
    at_s: float  # seconds after the workers' start


@dataclass
class Run:
    workers: int
    watchdog: float
    rep: int
    injected: bool = False  # workers with bench/stall_inject.py's stall
    settings: str = ""  # further LAAS_* settings of the workers (--env)
    done_s: float | None = None  # every group caught up, seconds after the start
    stalls: list[Stall] = field(default_factory=list)
    max_idle_s: float = 0.0  # longest lagging-and-assigned time without progress, any group
    watchdog_lines: int = 0  # the watchdog's WARNING lines in the workers' logs
    exited: list[str] = field(default_factory=list)  # workers that died during the run
    tracebacks: int = 0  # in the workers' logs (a crashed stage also stops progress)
    load: str = ""

    @property
    def stalled(self) -> bool:
        return bool(self.stalls)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deployment:
    """One run's private LaaS on the running stack: topic and index prefix, app id, state
    directories, worker subprocesses (self-contained: the bench extra is not needed)."""

    def __init__(self, kafka: str, es: str, partitions: int, watchdog: float,
                 extra: dict[str, str], inject: bool = False) -> None:
        self.module = "bench.stall_inject" if inject else "app"
        self.run = f"stall{uuid.uuid4().hex[:8]}"
        self.tmp = Path("/tmp") / f"laas-{self.run}"
        self.tmp.mkdir(parents=True)
        self.partitions = partitions
        # the stack's broker as a Kafka of the workers' own (login included); one secret for
        # the bench's signed stamps and every worker (app/kafka/stamp.py)
        self.env = {**cluster_env(load_settings()), "LAAS_SECRET_KEY": BENCH_SECRET,
                    "LAAS_ES_URL": es, "LAAS_APP_ID": self.run,
                    "LAAS_TOPIC_PREFIX": f"{self.run}.", "LAAS_INDEX_PREFIX": f"{self.run}-",
                    "LAAS_PARTITIONS": str(partitions),
                    "LAAS_DATABASE_URL": f"sqlite+aiosqlite:///{self.tmp / 'users.db'}",
                    "LAAS_WATCHDOG_SECONDS": f"{watchdog:g}", **extra}
        self.settings: Settings = load_settings(
            **{k.removeprefix("LAAS_").lower(): v for k, v in self.env.items()},
            state_dir=self.tmp / "state")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def topic(self, name: str) -> str:
        return topic_name(self.settings, name)

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    async def create_topics(self) -> None:
        """Every LaaS topic, and the run's user database (the workers read alert rules)."""
        from app.db.migrations import upgrade_database_async

        await upgrade_database_async(self.settings)
        await ensure_tenants(self.settings, {1: "bench"})  # the stamps' tenant (index checks it)
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic(n), self.partitions, 1) for n in ALL])
        finally:
            await admin.close()

    async def prefill(self, n: int) -> None:
        """`n` LogRecord messages to `logs.raw`, keys spread over every partition."""
        producer = AIOKafkaProducer(**client_options(self.settings), acks="all",
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            futures = []
            for i in range(n):
                body = pb.AnyValue(string_value=f"request {i} done user=u{i % 97} ms={i % 500}")
                record = pb.LogRecord(time_unix_nano=time.time_ns(), severity_number=9,
                                      body=body, resource=pb.Resource(service_name=f"svc{i % 8}",
                                                                      host=f"h{i % 3}"))
                key, value = f"1/svc{i % 64}".encode(), record.SerializeToString()
                futures.append(await producer.send(self.topic(RAW), value, key=key,
                                                   headers=STAMPS.sign(key, value, HEADERS)))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    def start(self, name: str) -> None:
        env = {**os.environ, **self.env, "LAAS_STATE_DIR": str(self.tmp / f"state-{name}"),
               "LAAS_WORKER_WEB_PORT": str(free_port())}
        with self.log(name).open("ab") as out:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", self.module, "worker"],
                                                cwd=ROOT, env=env, stdout=out,
                                                stderr=subprocess.STDOUT)

    def exited(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    async def cleanup(self) -> None:
        """Stop the workers; delete the run's topics, indices, template and directory."""
        from app.elastic.client import es_client

        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        es = es_client(self.settings, request_timeout=60)
        try:
            await es.indices.delete(index=f"{self.run}-*", ignore_unavailable=True,
                                    allow_no_indices=True)
            await es.options(ignore_status=404).indices.delete_index_template(
                name=f"{self.run}-logs")
        except Exception as exc:  # noqa: BLE001 - cleanup only
            print(f"    index cleanup failed: {exc!r}", flush=True)
        finally:
            await es.close()
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        try:
            await admin.start()
            names = [t for t in await admin.list_topics() if t.startswith(self.run)]
            if names:
                await admin.delete_topics(names)
        except Exception as exc:  # noqa: BLE001 - cleanup only
            print(f"    topic cleanup failed: {exc!r}", flush=True)
        finally:
            await admin.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Track:
    """One (group, partition): its committed offset and owner over the samples."""

    def __init__(self, now: float) -> None:
        self.committed = -1
        self.progress = now
        self.owner: str | None = None
        self.assigned = now
        self.reported = False


class GroupWatch:
    """Samples the three groups of one deployment: state, owners, committed and end offsets."""

    def __init__(self, dep: Deployment, t0: float) -> None:
        s = dep.settings
        raw, events = dep.topic(RAW), dep.topic(EVENTS)
        # label → (consumer group, topic); with `analytics_process` off one app reads both
        analytics = f"{s.app_id}-analytics" if s.analytics_process else s.app_id
        self.groups = {"normalize": (s.app_id, raw), "analytics": (analytics, events),
                       "index": (f"{s.app_id}-index", events)}
        self.partitions = dep.partitions
        self.t0 = t0
        self.tracks: dict[tuple[str, int], Track] = {}
        self.admin = AIOKafkaAdminClient(**client_options(s))
        self.consumer = AIOKafkaConsumer(**client_options(s))

    async def __aenter__(self) -> GroupWatch:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def owners(self, group: str, topic: str) -> tuple[str, dict[int, str]]:
        """The group's state and, for each partition of `topic`, the member it is assigned to."""
        [described] = await self.admin.describe_consumer_groups([group])
        _error, _group, state, _ptype, _protocol, members, *_ = described.groups[0]
        owned: dict[int, str] = {}
        for member_id, _client, _host, _meta, assignment in members:
            if not assignment:
                continue
            for tp in ConsumerProtocolMemberAssignment.decode(assignment).partitions():
                if tp.topic == topic:
                    owned[tp.partition] = member_id
        return state, owned

    async def sample(self, stall_after: float, run: Run) -> bool:
        """One look at every group; record new stalls in `run`. True when all caught up."""
        now = time.monotonic()
        topics = {topic for _, topic in self.groups.values()}
        tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
        ends = await self.consumer.end_offsets(tps)
        caught_up = True
        for label, (group, topic) in self.groups.items():
            state, owned = await self.owners(group, topic)
            committed = await self.admin.list_consumer_group_offsets(group)
            for p in range(self.partitions):
                tp = TopicPartition(topic, p)
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else 0
                track = self.tracks.setdefault((label, p), Track(now))
                if offset != track.committed:
                    track.committed, track.progress = offset, now
                owner = owned.get(p) if state == "Stable" else None
                if owner != track.owner:
                    track.owner, track.assigned, track.reported = owner, now, False
                lag = ends[tp] - offset
                if lag > 0:
                    caught_up = False
                if owner is None or lag <= 0:
                    continue
                idle = now - max(track.progress, track.assigned)
                run.max_idle_s = max(run.max_idle_s, idle)
                if idle >= stall_after and not track.reported:
                    track.reported = True
                    run.stalls.append(Stall(label, topic, p, offset, ends[tp], round(idle, 1),
                                            round(now - self.t0, 1)))
        return caught_up


async def one(kafka: str, es: str, workers: int, watchdog: float, rep: int,
              args: argparse.Namespace) -> Run:
    extra = dict(kv.split("=", 1) for kv in args.env)
    if args.inject_hard:
        extra["BENCH_STALL_INJECT"] = "hard"
    dep = Deployment(kafka, es, args.partitions, watchdog, extra,
                     args.inject or args.inject_hard)
    run = Run(workers, watchdog, rep, injected=args.inject or args.inject_hard,
              settings=" ".join(args.env + (["BENCH_STALL_INJECT=hard"] if args.inject_hard
                                            else [])))
    try:
        await dep.create_topics()
        await dep.prefill(args.events)
        t0 = time.monotonic()
        for i in range(workers):
            dep.start(f"worker{i + 1}")
        stalled_at: float | None = None
        caught_up = 0
        async with GroupWatch(dep, t0) as watch:
            while time.monotonic() - t0 < args.timeout:
                await asyncio.sleep(1.0)
                try:
                    done = await watch.sample(args.stall_after, run)
                except Exception as exc:  # noqa: BLE001 - a group not there yet, a rebalance
                    print(f"    sample failed: {exc!r}", flush=True)
                    continue
                run.exited = dep.exited()
                caught_up = caught_up + 1 if done else 0
                if caught_up >= 2:  # twice in a row: normalize's last sends are in too
                    run.done_s = round(time.monotonic() - t0, 1)
                    break
                if run.stalled and stalled_at is None:
                    stalled_at = time.monotonic()
                if stalled_at is not None and not watchdog \
                        and time.monotonic() - stalled_at > GIVE_UP:
                    break
        run.load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        logs = [dep.log(name).read_text(errors="replace") for name in dep.procs
                if dep.log(name).exists()]
        run.watchdog_lines = sum(text.count("watchdog: partition") for text in logs)
        run.tracebacks = sum(text.count("Traceback") for text in logs)
        if args.keep_logs and (run.stalled or run.exited or run.done_s is None
                               or run.watchdog_lines or run.tracebacks):
            for name in dep.procs:
                shutil.copy(dep.log(name), args.keep_logs / f"{dep.run}-{name}.log")
        return run
    finally:
        await dep.cleanup()


def _kind(r: Run) -> str:
    return ("injected" if r.injected else "natural") + (f", `{r.settings}`" if r.settings else "")


def render(runs: list[Run], args: argparse.Namespace) -> str:
    lines = [
        f"{args.events:,} records written to `logs.raw` ({args.partitions} partitions) before "
        "N workers start at the same moment (`bench/stall.py`, the running local stack; "
        "a fresh topic prefix, app id and state directories per run). A partition counts as "
        f"**stalled** when its group is Stable, it is assigned, has lag and its committed "
        f"offset did not move for {args.stall_after:.0f} s; a run ends when all three groups "
        f"caught up or after {args.timeout:.0f} s. Watchdog = `LAAS_WATCHDOG_SECONDS` "
        "(0 = off). Stall: natural, or injected (bench/stall_inject.py: Faust's recovery never "
        "resumes `logs.raw` partition 0 in the normalize app). 2-vCPU machine shared with "
        "Kafka, Elasticsearch and other test runs.",
        "",
        "| workers | stall (settings) | watchdog s | runs | stalled runs | rate | stalled "
        "partitions (group) | longest idle s (max over runs) | caught up: median s | "
        "not caught up | watchdog recoveries (log lines) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workers, kind, wd in sorted({(r.workers, _kind(r), r.watchdog) for r in runs}):
        rows = [r for r in runs if (r.workers, _kind(r), r.watchdog) == (workers, kind, wd)]
        stalled = [r for r in rows if r.stalled]
        groups = Counter(s.group for r in rows for s in r.stalls)
        done = [r.done_s for r in rows if r.done_s is not None]
        lines.append(
            f"| {workers} | {kind} | {wd:g} | {len(rows)} | {len(stalled)} | "
            f"{len(stalled) / len(rows):.2f} | "
            f"{sum(groups.values())} ({', '.join(f'{g}: {n}' for g, n in groups.items())}) | "
            f"{max(r.max_idle_s for r in rows):.0f} | "
            f"{f'{statistics.median(done):.1f}' if done else '—'} | {len(rows) - len(done)} | "
            f"{sum(r.watchdog_lines for r in rows)} |")
    lines += ["", "Runs:", "", "| workers | stall (settings) | watchdog s | rep | caught up s | "
              "stalls | longest idle s | watchdog lines | exited | tracebacks | load |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        stalls = "; ".join(f"{s.group} {s.topic.split('.', 1)[1]}"
                           f"[{s.partition}] at {s.committed}/{s.end} idle {s.idle_s:.0f}s "
                           f"(t={s.at_s:.0f}s)" for s in r.stalls) or "—"
        lines.append(f"| {r.workers} | {_kind(r)} | {r.watchdog:g} | {r.rep} | "
                     f"{r.done_s or '—'} | {stalls} | {r.max_idle_s:.0f} | {r.watchdog_lines} | "
                     f"{', '.join(r.exited) or '—'} | {r.tracebacks} | {r.load} |")
    return "\n".join(lines)


def load_runs(paths: list[Path]) -> list[Run]:
    """Runs appended to `--jsonl` files by earlier invocations."""
    runs = []
    for path in paths:
        for line in path.read_text().splitlines():
            data = json.loads(line)
            data["stalls"] = [Stall(**s) for s in data["stalls"]]
            runs.append(Run(**data))
    return runs


HAND = "<!-- written by hand below this line; a re-run keeps it -->"


def write(out: Path, table: str) -> None:
    """The report: the generated tables, then whatever was written by hand after `HAND`."""
    kept = out.read_text().split(HAND, 1)[1] if out.exists() and HAND in out.read_text() else "\n"
    out.write_text(f"# Simultaneous start: stalled partitions\n\n{table}\n\n{HAND}{kept}")


async def bench(args: argparse.Namespace) -> list[Run]:
    settings = load_settings()
    runs: list[Run] = load_runs(args.include)
    for rep in range(args.reps):
        for workers in args.workers:
            for wd in args.watchdog:
                run = await one(settings.kafka_servers, settings.elasticsearch_url, workers, wd,
                                rep, args)
                runs.append(run)
                print(f"  {workers} workers, watchdog {wd:g}, rep {rep}: done "
                      f"{run.done_s} s, stalls {[asdict(s) for s in run.stalls]}, "
                      f"longest idle {run.max_idle_s:.0f} s, watchdog lines "
                      f"{run.watchdog_lines}, exited {run.exited}, tracebacks "
                      f"{run.tracebacks}", flush=True)
                write(args.out, render(runs, args))
                if args.jsonl:
                    with args.jsonl.open("a") as out:
                        out.write(json.dumps(asdict(run)) + "\n")
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10, help="repetitions per worker count and mode")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--watchdog", type=float, nargs="+", default=[0.0, 20.0],
                    help="LAAS_WATCHDOG_SECONDS of each mode (0: off)")
    ap.add_argument("--events", type=int, default=12_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--stall-after", type=float, default=45.0)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--inject", action="store_true",
                    help="start the workers with an injected stall (bench/stall_inject.py)")
    ap.add_argument("--inject-hard", action="store_true",
                    help="... that the watchdog's resume does not undo either")
    ap.add_argument("--env", nargs="*", default=[], metavar="LAAS_X=VALUE",
                    help="further settings of the workers, e.g. LAAS_ANALYTICS_PROCESS=false")
    ap.add_argument("--include", type=Path, nargs="*", default=[],
                    help="--jsonl files of earlier invocations to report together with these")
    ap.add_argument("--out", type=Path, default=RESULTS / "stall.md")
    ap.add_argument("--jsonl", type=Path, default=None, help="also append each run as JSON")
    ap.add_argument("--keep-logs", type=Path, default=None,
                    help="copy the worker logs of runs that stalled (or did not finish) here")
    args = ap.parse_args(argv)
    runs = asyncio.run(bench(args))
    write(args.out, render(runs, args))
    print(render(runs, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
