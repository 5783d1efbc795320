"""The benchmark harness: a dedicated stack, a LaaS deployment on it, load, probes and sampling.

Used by `bench/system.py` (`laas bench`) and `bench/faults.py`. The dedicated Kafka and
Elasticsearch (state in `.laas/bench-stack`, the shared `.laas/downloads` linked in) run on their
own ports, so stopping or filling them never touches the shared stack on 9092/9200, and their
CPU and memory belong to the benchmark alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from app.kafka.client import client_options
from app.kafka.topics import ALL, RAW, topic_name
from app.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
BENCH_STATE = ROOT / ".laas" / "bench-stack"
KAFKA_PORT, KAFKA_CONTROLLER_PORT, ES_PORT = 19092, 19093, 19200
CHILD_STARTED = re.compile(r"(\w[\w-]*) process started: pid (\d+)")


def exit_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, so `finally` blocks stop the run's subprocesses."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def until(check: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `check()` (sync or async) until truthy; RuntimeError naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


# --- the dedicated stack ----------------------------------------------------------------------

class BenchStack:
    """Single-node Kafka and Elasticsearch of the benchmark (deploy.kafka / deploy.elastic)."""

    def __init__(self, es_heap: str = "1g") -> None:
        from deploy.elastic import Elasticsearch
        from deploy.kafka import Kafka

        BENCH_STATE.mkdir(parents=True, exist_ok=True)
        downloads = BENCH_STATE / "downloads"
        if not downloads.exists():
            downloads.symlink_to((ROOT / ".laas" / "downloads").resolve(),
                                 target_is_directory=True)
        self.settings = load_settings(
            state_dir=BENCH_STATE, kafka_bootstrap=None, es_url=None, kafka_port=KAFKA_PORT,
            kafka_controller_port=KAFKA_CONTROLLER_PORT, es_port=ES_PORT, es_heap=es_heap,
            kafka_local_auth=False)  # the bench's own broker: plaintext, as its processes expect
        self.kafka = Kafka(self.settings)
        self.es = Elasticsearch(self.settings)

    @property
    def kafka_servers(self) -> str:
        return self.settings.kafka_servers

    @property
    def es_url(self) -> str:
        return self.settings.elasticsearch_url

    async def up(self) -> None:
        for server in (self.kafka, self.es):
            if not server.ready():
                if server.running():
                    server.stop()
                server.prepare()
                server.start()
        await until(lambda: asyncio.to_thread(self.kafka.ready), 120, "the bench Kafka", 1)
        await until(lambda: asyncio.to_thread(self.es.ready), 240, "the bench Elasticsearch", 1)
        # 1,000 tenants means 1,000 daily indices: above the default 1,000 shards per node.
        import httpx

        async with httpx.AsyncClient() as client:
            await client.put(f"{self.es_url}/_cluster/settings", json={"persistent": {
                "cluster.max_shards_per_node": 6000}})

    def down(self) -> None:
        self.kafka.stop()
        self.es.stop()

    def pids(self) -> dict[str, int]:
        from deploy import proc

        found = {}
        for name, server in (("kafka", self.kafka), ("elasticsearch", self.es)):
            pid = proc.read_pid(server.pid_file)
            if pid:
                found[name] = pid
        return found

    async def restart_kafka(self) -> None:
        await asyncio.to_thread(self.kafka.stop)
        await asyncio.to_thread(self.kafka.start)
        await until(lambda: asyncio.to_thread(self.kafka.ready), 120, "Kafka restarted", 0.5)


# --- a deployment: topics, accounts and the LaaS processes ---------------------------------

@dataclass
class Proc:
    name: str
    kind: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int
    env: dict[str, str]

    def alive(self) -> bool:
        return self.popen.poll() is None


class Deployment:
    """One benchmark run's private LaaS: own topic/index prefix, app id, user DB and ports."""

    def __init__(self, kafka_servers: str, es_url: str, partitions: int = 4,
                 extra: dict[str, str] | None = None, tag: str = "bench") -> None:
        self.run = f"{tag}{uuid.uuid4().hex[:6]}"
        self.tmp = Path("/tmp") / f"laas-{self.run}"
        self.tmp.mkdir(parents=True)
        self.partitions = partitions
        self.ports = {"web": free_port(), "gateway": free_port()}
        self.base_env = {
            "LAAS_KAFKA_BOOTSTRAP": kafka_servers, "LAAS_ES_URL": es_url,
            "LAAS_APP_ID": self.run, "LAAS_TOPIC_PREFIX": f"{self.run}.",
            "LAAS_INDEX_PREFIX": f"{self.run}-", "LAAS_PARTITIONS": str(partitions),
            "LAAS_DATABASE_URL": f"sqlite+aiosqlite:///{self.tmp / 'users.db'}",
            "LAAS_SECRET_KEY": uuid.uuid4().hex * 2,
            "LAAS_INGEST_DEFAULT_RATE_LIMIT": "0",
            "LAAS_WEB_PORT": str(self.ports["web"]),
            "LAAS_GATEWAY_PORT": str(self.ports["gateway"]),
            "LAAS_OTLP_HTTP_PORT": str(free_port()),  # the gateway's OTLP/HTTP (default 4318)
            "LAAS_GATEWAY_METRICS_PORT": str(free_port()),  # its /metrics (default 9464)
            "LAAS_TAIL_HEARTBEAT_SECONDS": "5",
            **(extra or {}),
        }
        overrides: dict[str, Any] = {k.removeprefix("LAAS_").lower(): v
                                     for k, v in self.base_env.items()}
        self.settings: Settings = load_settings(state_dir=self.tmp / "state", **overrides)
        self.procs: dict[str, Proc] = {}
        self.tenants: list[tuple[int, str, str]] = []  # (id, ingest key, read key)

    def topic(self, name: str = RAW) -> str:
        return topic_name(self.settings, name)

    async def create_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic(n), self.partitions, 1) for n in ALL])
        finally:
            await admin.close()

    async def create_tenants(self, n: int) -> list[tuple[int, str, str]]:
        """`n` tenants, each with an ingest and a read key, in the run's SQLite database."""
        from app.accounts import tenancy
        from app.db.models import Scope
        from web.app import create_app

        app = create_app(self.settings)
        made = []
        async with app.router.lifespan_context(app):
            async with app.state.sessions.begin() as session:
                for i in range(len(self.tenants), len(self.tenants) + n):
                    tenant = await tenancy.create_tenant(session, f"t{i}")
                    _, ingest = await tenancy.create_api_key(session, tenant.id, "in",
                                                              Scope.INGEST)
                    _, read = await tenancy.create_api_key(session, tenant.id, "rd", Scope.READ)
                    made.append((tenant.id, ingest, read))
        self.tenants.extend(made)
        return made

    def start(self, kind: str, name: str | None = None, **extra: str) -> Proc:
        name = name or kind
        port = self.ports.get(kind) or free_port()
        env = {**os.environ, **self.base_env, **extra,
               "LAAS_STATE_DIR": str(self.tmp / f"state-{name}"),
               "LAAS_WORKER_WEB_PORT": str(port if kind == "worker" else free_port())}
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", "app", kind], cwd=ROOT, env=env,
                                     stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(name, kind, popen, log, port, env)
        self.procs[name] = proc
        return proc

    async def ready(self, proc: Proc, timeout: float = 90) -> None:
        def check() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited: {tail(proc.log)}")
            return port_open(proc.port)

        await until(check, timeout, f"{proc.name} listening on {proc.port}", 0.3)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.alive():
            proc.popen.send_signal(sig)
            proc.popen.wait(60)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                proc.popen.terminate()
        for proc in self.procs.values():
            try:
                proc.popen.wait(40)
            except subprocess.TimeoutExpired:
                proc.popen.kill()

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.procs.values() if p.alive()}

    def child_pids(self) -> dict[str, int]:
        """The worker's child processes (`<process>:<child>`, e.g. `worker:index`), from the
        "<child> process started: pid N" lines of its log (agents/children.py); the latest
        start of each child wins."""
        found: dict[str, int] = {}
        for proc in self.procs.values():
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            for match in CHILD_STARTED.finditer(text):
                found[f"{proc.name}:{match[1]}"] = int(match[2])
        return found

    def log_errors(self) -> dict[str, list[str]]:
        """ERROR/Traceback lines in each process's log."""
        found = {}
        for proc in self.procs.values():
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            lines = [ln for ln in text.splitlines()
                     if "ERROR" in ln or "Traceback" in ln or "CRITICAL" in ln]
            found[proc.name] = lines
        return found

    async def cleanup(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        from app.elastic.client import es_client

        self.stop_all()
        es = es_client(self.settings, request_timeout=60)
        try:
            await es.indices.delete(index=f"{self.run}-*", ignore_unavailable=True,
                                    allow_no_indices=True)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
        await es.close()
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        try:
            await admin.start()
            names = [t for t in await admin.list_topics() if t.startswith(self.run)]
            if names:
                await admin.delete_topics(names)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
        finally:
            await admin.close()


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# --- per-process CPU and memory -------------------------------------------------------------

@dataclass
class Sample:
    t: float
    name: str
    cpu: float
    rss_mb: float


MACHINE = "machine (all processes)"
SELF = "bench client"  # the bench's own process: its children are the processes it started


class Sampler:
    """psutil every `interval` s of named pids (children included), in a thread."""

    def __init__(self, pids: Any, interval: float = 1.0, machine: bool = False,
                 solo: tuple[str, ...] = (SELF,)) -> None:
        self.pids = pids  # callable -> dict[name, pid]
        self.interval = interval
        self.solo = solo  # names sampled without their children (the bench's own process)
        self.machine = machine  # also sample the whole machine's CPU as `MACHINE`
        self.samples: list[Sample] = []
        self.load: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._procs: dict[int, list[psutil.Process]] = {}
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        psutil.cpu_percent(None)  # the first machine-wide figure counts from here
        self._thread.start()
        return self

    def mean_cpu(self, since: float, until: float) -> dict[str, float]:
        """Mean CPU % (100 = one core) per sampled name between `since` and `until` (seconds
        after `t0`)."""
        found: dict[str, list[float]] = {}
        for s in list(self.samples):
            if since <= s.t <= until:
                found.setdefault(s.name, []).append(s.cpu)
        return {name: sum(v) / len(v) for name, v in found.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _family(self, pid: int, children: bool = True) -> list[psutil.Process]:
        if pid not in self._procs:
            try:
                root = psutil.Process(pid)
                family = [root, *(root.children(recursive=True) if children else [])]
                for p in family:
                    p.cpu_percent(None)
                self._procs[pid] = family
            except psutil.Error:
                return []
        return self._procs[pid]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.monotonic() - self.t0
            self.load.append((now, os.getloadavg()[0]))
            if self.machine:
                busy = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
                self.samples.append(Sample(now, MACHINE, busy, psutil.virtual_memory().used
                                           / 2**20))
            for name, pid in self.pids().items():
                cpu = rss = 0.0
                for p in self._family(pid, children=name not in self.solo):
                    try:
                        cpu += p.cpu_percent(None)
                        rss += p.memory_info().rss / 2**20
                    except psutil.Error:
                        pass
                if rss:
                    self.samples.append(Sample(now, name, cpu, rss))


# --- load through the gateway ---------------------------------------------------------------

def make_record(run: str, seq: int, size: int = 0, tenant_tag: str = "") -> bytes:
    from app.ingest.wire import pb

    body = f"GET /api/items/{seq} 200 in {seq % 97}ms run={run}{tenant_tag}"
    if size:
        body += " " + "x" * max(0, size - len(body) - 120)
    return pb.LogRecord(
        time_unix_nano=time.time_ns(), severity_text="ERROR" if seq % 50 == 0 else "INFO",
        body=pb.AnyValue(string_value=body),
        attributes={"seq": pb.AnyValue(string_value=str(seq))},
        resource=pb.Resource(service_name=f"svc{seq % 8}", host="bench-host"),
    ).SerializeToString()


def record_pool(run: str, n: int) -> list[bytes]:
    """`n` distinct serialized records (`make_record`) for `Pusher(pool=...)` and the raw bulk
    baseline of the same documents."""
    return [make_record(run, seq) for seq in range(n)]


def batch_bytes(recs: Iterable[bytes]) -> bytes:
    from bench.ingest_gateway import batch_bytes as encode

    return encode(list(recs))


@dataclass
class LoadStats:
    acked: int = 0
    failed_calls: int = 0
    acked_seqs: list[int] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)


class Pusher:
    """Unary `Push` calls through the gateway at a target rate; retries until acknowledged.

    A call that fails (gateway down, Kafka unavailable) is retried with the same records after
    a short pause, as a client should; only acknowledged sequence numbers are recorded.
    With `pool` (serialized records, e.g. `record_pool`), record `seq` is `pool[seq % len]`:
    no record is built during the load, so the generator's CPU goes to the calls alone (the
    documents' `_id`s come from their Kafka offsets, so repeated contents are still distinct
    documents).
    """

    def __init__(self, port: int, key: str, run: str, batch: int = 100, size: int = 0,
                 inflight: int = 4, keep_seqs: bool = False,
                 pool: list[bytes] | None = None) -> None:
        self.port, self.key, self.tag = port, key, run
        self.batch, self.size, self.inflight, self.keep_seqs = batch, size, inflight, keep_seqs
        self.pool = pool
        self.stats = LoadStats()
        self.next_seq = 0
        self._channel: Any = None

    def _open(self) -> Any:
        from grpclib.client import Channel

        if self._channel is None:
            self._channel = Channel("127.0.0.1", self.port)
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def push(self, body: bytes, n: int) -> None:
        from grpclib.const import Cardinality

        from bench.ingest_gateway import Prebuilt
        from protos.laas.v1 import PushAck

        delay = 0.2
        while True:
            try:
                channel = self._open()
                async with channel.request("/laas.v1.LogIngest/Push", Cardinality.UNARY_UNARY,
                                           Prebuilt, PushAck, metadata={"x-api-key": self.key},
                                           timeout=30) as stream:
                    await stream.send_message(Prebuilt(body), end=True)
                    ack = await stream.recv_message()
                if ack is None or ack.accepted != n:
                    raise RuntimeError(f"partial ack {ack}")
                return
            except Exception:  # noqa: BLE001 - retry like a client
                self.stats.failed_calls += 1
                self.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def run(self, rate: float | None, seconds: float | None = None,
                  total: int | None = None, t0: float | None = None) -> None:
        """Push at `rate` records/s (None: as fast as acks come) for `seconds` or `total`."""
        started = time.monotonic()
        t0 = t0 if t0 is not None else started
        sem = asyncio.Semaphore(self.inflight)
        tasks: set[asyncio.Task[None]] = set()
        sent = 0

        async def one(seqs: range) -> None:
            try:
                pool = self.pool
                body = (batch_bytes(pool[s % len(pool)] for s in seqs) if pool else
                        batch_bytes(make_record(self.tag, s, self.size) for s in seqs))
                await self.push(body, len(seqs))
                self.stats.acked += len(seqs)
                if self.keep_seqs:
                    self.stats.acked_seqs.extend(seqs)
                self.stats.timeline.append((time.monotonic() - t0, self.stats.acked))
            finally:
                sem.release()

        while True:
            now = time.monotonic()
            if seconds is not None and now - started >= seconds:
                break
            if total is not None and sent >= total:
                break
            if rate:
                due = started + sent / rate
                if due > now:
                    await asyncio.sleep(due - now)
            await sem.acquire()
            n = self.batch if total is None else min(self.batch, total - sent)
            seqs = range(self.next_seq, self.next_seq + n)
            self.next_seq += n
            sent += n
            task = asyncio.create_task(one(seqs))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


async def consumer_lag(settings: Settings, group: str, topic: str) -> int:
    """End offsets minus the group's committed offsets on `topic` (all partitions)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = AIOKafkaConsumer(**client_options(settings))
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        parts = [tp for tp in committed if tp.topic == topic]
        if not parts:
            return -1
        ends = await consumer.end_offsets(parts)
        return sum(max(0, ends[tp] - committed[tp].offset) for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()


async def loop_lags(dep: Deployment) -> dict[str, dict[str, float]]:
    """Per worker process (`worker`, `analytics`, `index`), from the worker's `/metrics`
    (app/runtime/loop_lag.py): probes so far, those that woke over 100 ms late, the longest lag
    so far and the longest the loop's own CPU explains (s), with the process's RSS (bytes);
    empty when the worker does not answer."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"http://127.0.0.1:{dep.procs['worker'].port}/metrics")
    except httpx.HTTPError:
        return {}
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            process = sample.labels.get("process")
            if process is None or not sample.name.startswith("laas_event_loop_"):
                continue
            row = found.setdefault(process, {})
            if sample.name == "laas_event_loop_lag_seconds_count":
                row["probes"] = sample.value
            elif sample.name == "laas_event_loop_lag_seconds_bucket" and \
                    sample.labels["le"] == "0.1":
                row["within_100ms"] = sample.value
            elif sample.name == "laas_event_loop_lag_max_seconds":
                row["max_s"] = sample.value
            elif sample.name == "laas_event_loop_held_max_seconds":
                row["held_max_s"] = sample.value
    pids = {"worker": dep.pids().get("worker"),
            **{name.split(":", 1)[1]: pid for name, pid in dep.child_pids().items()}}
    for process, row in found.items():
        row["over_100ms"] = row.get("probes", 0.0) - row.pop("within_100ms", 0.0)
        pid = pids.get(process)
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                row["rss_bytes"] = float(psutil.Process(pid).memory_info().rss)
    return found


def machine() -> str:
    from bench.search import machine as describe

    return describe()


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())
