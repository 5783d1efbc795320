"""Soak: steady load for MINUTES; memory of every process, consumer lag and log errors.

    python -m bench.soak --minutes 5 --rate 300     (also `laas bench --soak MINUTES`)

Holds when each LaaS process's RSS grows less than 10 % between the end of the warm-up (the
first fifth of the run, at least one minute) and the end, the consumer lag of `logs.raw` stays
bounded (its last-quarter maximum is no larger than twice the first-quarter maximum + one
second of load), and no ERROR/CRITICAL/Traceback line appears in the worker, gateway or web logs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchStack, Deployment, Pusher, Sampler, consumer_lag, loadavg
from bench.probes import Probe, summary

RESULTS = Path(__file__).parent / "results"


async def soak(stack: BenchStack | None, minutes: float, rate: float,
               out: Path = RESULTS) -> dict[str, Any]:
    stack = stack or BenchStack()
    await stack.up()
    dep = Deployment(stack.kafka_servers, stack.es_url, partitions=4, tag="soak")
    seconds = minutes * 60
    try:
        await dep.create_topics()
        (_, key, _), probe_t = await dep.create_tenants(2)
        for kind in ("worker", "gateway", "web"):
            await dep.ready(dep.start(kind))
        t0 = time.monotonic()
        sampler = Sampler(lambda: {**dep.pids(), **stack.pids()}, interval=5.0)
        sampler.t0 = t0
        sampler.start()
        probe = Probe(dep, probe_t, interval=1.0)
        probe.start()
        lag: list[tuple[float, int]] = []

        async def watch() -> None:
            while True:
                try:
                    lag.append((time.monotonic() - t0,
                                await consumer_lag(dep.settings, dep.run, dep.topic("logs.raw"))))
                except Exception:  # noqa: BLE001
                    pass
                await asyncio.sleep(5)

        watcher = asyncio.create_task(watch())
        pusher = Pusher(dep.ports["gateway"], key, dep.run)
        await pusher.run(rate, seconds=seconds, t0=t0)
        watcher.cancel()
        await probe.stop()
        sampler.stop()
        pusher.close()
        errors = dep.log_errors()
    finally:
        await dep.cleanup()
    warm = max(60.0, seconds / 5)
    verdicts = {}
    for name in sorted({s.name for s in sampler.samples}):
        points = [s for s in sampler.samples if s.name == name]
        after = [s.rss_mb for s in points if s.t >= warm]
        if len(after) >= 2:
            growth = (after[-1] - after[0]) / after[0]
            verdicts[name] = {"rss_after_warmup": after[0], "rss_end": after[-1],
                              "growth": growth, "ok": growth < 0.10 or name in (
                                  "kafka", "elasticsearch")}
    quarter = seconds / 4
    first = max([v for t, v in lag if t < quarter] or [0])
    last = max([v for t, v in lag if t >= seconds - quarter] or [0])
    lag_ok = last <= 2 * first + rate
    error_lines = {k: v for k, v in errors.items() if v}
    from bench.report import plot_resources

    plot_resources([s.__dict__ for s in sampler.samples], sampler.load, out, "soak.png",
                   f"Soak: {minutes:g} min at {rate:.0f} records/s")
    search, tails = probe.window(0, time.monotonic())
    lines = [
        f"{minutes:g} minutes at {rate:.0f} records/s through the gateway"
        f"{' (a short soak; the full mode soaks 30 min)' if minutes < 30 else ''}; "
        f"{pusher.stats.acked:,} records acked; load at end {loadavg()}.",
        "", "![soak](soak.png)", "",
        "| process | RSS after warm-up MB | RSS at end MB | growth | < 10 % |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, v in verdicts.items():
        note = "yes" if v["growth"] < 0.10 else ("no (JVM heap, not judged)" if name in (
            "kafka", "elasticsearch") else "**no**")
        lines.append(f"| {name} | {v['rss_after_warmup']:.0f} | {v['rss_end']:.0f} | "
                     f"{v['growth']:+.1%} | {note} |")
    lines += ["", f"Consumer lag of `logs.raw`: max {first} in the first quarter, {last} in the "
              f"last (bounded: {'yes' if lag_ok else '**no**'}). Probes: ack→searchable "
              f"p50 {summary(search)['p50']:.0f} ms, p99 {summary(search)['p99']:.0f} ms; "
              f"ack→tail p50 {summary(tails)['p50']:.0f} ms.",
              f"Errors in logs: {error_lines or 'none'}."]
    held = all(v["ok"] for v in verdicts.values()) and lag_ok and not error_lines
    lines.append(f"\nSoak {'held' if held else '**did not hold**'}.")
    return {"held": held, "verdicts": verdicts, "lag": lag, "markdown": "\n".join(lines)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--rate", type=float, default=300)
    args = ap.parse_args(argv)
    result = asyncio.run(soak(None, args.minutes, args.rate))
    (RESULTS / "soak.md").write_text("# Soak\n\n" + result["markdown"] + "\n")
    print(result["markdown"])
    return 0 if result["held"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
