"""`laas bench`: the whole-system benchmark, fault matrix, scale-out and soak (bench/ package)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click


def register(main: click.Group) -> None:
    """Add `laas bench` to the CLI."""

    @main.command("bench", short_help="Benchmarks on a dedicated local Kafka and Elasticsearch.")
    @click.option("--short", "mode", flag_value="short", default=True,
                  help="A few minutes: shorter steps and burst (default).")
    @click.option("--full", "mode", flag_value="full", help="Full durations (takes long).")
    @click.option("--smoke", "mode", flag_value="smoke", help="Seconds per scenario (checks).")
    @click.option("--faults", is_flag=True, help="Also run the fault matrix (bench/faults.py).")
    @click.option("--scale", is_flag=True, help="Also run the 1/2/3-worker scale-out.")
    @click.option("--soak", type=float, default=None, metavar="MINUTES",
                  help="Also soak at half the knee rate (full mode: 30 unless given).")
    @click.option("--saturation", is_flag=True,
                  help="Only the saturation search (rates rising until the pipeline falls "
                  "behind, against the raw Elasticsearch bulk rate): saturation.md.")
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Report directory (default bench/results).")
    def bench(mode: str, faults: bool, scale: bool, soak: float | None, saturation: bool,
              out: Path | None) -> None:
        """Run the benchmark scenarios on a dedicated local Kafka and Elasticsearch.

        Writes REPORT.md and PNG plots with same-run baselines (raw aiokafka, raw
        Elasticsearch bulk and search, drain3, IsolationForest). Needs the `bench` extra.
        """
        root = Path(__file__).resolve().parents[2]  # bench/ lives next to app/ in the repo
        if (root / "bench").is_dir() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
        try:
            from bench.system import RESULTS, run
        except ImportError as exc:
            raise click.ClickException(
                f"{exc}; install the bench extra: pip install -e '.[bench]'") from exc
        minutes = soak if soak is not None else (30.0 if mode == "full" else 0.0)
        asyncio.run(run(mode, minutes, faults, scale, out or RESULTS, saturation))
        report = "saturation.md" if saturation else "REPORT.md"
        click.echo(f"report: {(out or RESULTS) / report}")
