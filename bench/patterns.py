"""Template grouping accuracy and speed of our miner vs drain3 (defaults) on Loghub-2k samples,
with leave-one-dataset-out tuning.

    python bench/patterns.py [--data DIR] [--out bench/results/patterns.md] [--repeat 5]

The data directory (default: $LAAS_LOGHUB_DIR, else ../shared/data/loghub from the repo root)
holds one folder per dataset with `<name>_2k.log_structured.csv`. Parsers see the `Content`
column; ground truth is `EventId`. Grouping accuracy as in Zhu et al., ICSE-SEIP 2019, on the
template ids the patterns API shows after the run (an id a template left when it widened or
merged counts as the id it now has). The data is Loghub's (https://github.com/logpai/loghub);
its licence notice is the LICENSE file there. Needs the `bench` extra (drain3).

Three accuracy figures: the shipped defaults (`MinerConfig()`) on every dataset; the best
setting of a small grid (similarity, typed-token credit, tree depth; masking stays at its
defaults) chosen on all eight; and leave-one-dataset-out: for each dataset, the setting best on the
other seven, scored on it (what tuning tells about logs it never saw; when settings tie on the
seven, the mean of their held-out scores, so no tie-break can peek). Speed: CPU time of a
fresh miner (masking included) and of drain3 on the same lines, interleaved in one process,
best of `--repeat` (CPU time: other processes on the machine disturb it less than wall time).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.templates import MinerConfig, TenantMiner  # noqa: E402

Parser = Callable[[Sequence[str]], list[str]]
Sets = dict[str, tuple[list[str], list[str]]]


def default_data_dir() -> Path:
    env = os.environ.get("LAAS_LOGHUB_DIR")
    return Path(env) if env else (ROOT / ".." / "shared" / "data" / "loghub").resolve()


def load(data: Path) -> Sets:
    """dataset name -> (contents, ground-truth event ids), for every `*_2k.log_structured.csv`."""
    sets: Sets = {}
    for path in sorted(data.glob("*/*_2k.log_structured.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        sets[path.parent.name] = ([r["Content"] for r in rows], [r["EventId"] for r in rows])
    return sets


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of lines whose predicted group is exactly the set of lines of their true group."""
    truth_size = Counter(truth)
    groups: dict[str, list[str]] = defaultdict(list)
    for t, p in zip(truth, predicted, strict=True):
        groups[p].append(t)
    correct = 0
    for members in groups.values():
        ids = set(members)
        if len(ids) == 1 and truth_size[members[0]] == len(members):
            correct += len(members)
    return correct / len(truth) if truth else 0.0


def ours(lines: Sequence[str], config: MinerConfig | None = None) -> list[str]:
    """Each line's template id as the patterns API shows it after the run."""
    miner = TenantMiner(config)
    ids = [miner.add(line).template_id for line in lines]
    return [resolved.id if (resolved := miner.get(i)) is not None else i for i in ids]


def drain3_defaults(lines: Sequence[str]) -> list[str]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()  # defaults, no masking instructions, no config file
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    return [str(miner.add_log_message(line)["cluster_id"]) for line in lines]


def grid() -> dict[str, MinerConfig]:
    """The settings leave-one-dataset-out chooses from: the miner's tuning only (similarity,
    typed-token credit, depth). Masking is not tuned: every masker switch stays at its shipped
    default (whole-path masking was a grid parameter once; it is fixed on now, like the
    other thirteen switches)."""
    out: dict[str, MinerConfig] = {}
    for sim, typed, depth in itertools.product(
            (0.6, 0.7, 0.75, 0.8, 0.85, 0.9), (0.0, 0.5), (4, 5)):
        config = MinerConfig(similarity=sim, typed=typed, depth=depth)
        out[f"sim {sim} typed {typed} depth {depth}"] = config
    return out


def accuracy_table(sets: Sets, configs: dict[str, MinerConfig]
                   ) -> dict[str, dict[str, float]]:
    """config name -> dataset -> grouping accuracy."""
    return {name: {ds: grouping_accuracy(truth, ours(lines, config))
                   for ds, (lines, truth) in sets.items()}
            for name, config in configs.items()}


def best_on(scores: dict[str, dict[str, float]], datasets: Sequence[str]) -> list[str]:
    """The settings with the best average on `datasets` (all of them when several tie)."""
    averages = {name: sum(scores[name][d] for d in datasets) / len(datasets) for name in scores}
    top = max(averages.values())
    return [name for name, avg in averages.items() if avg >= top - 1e-9]


def held_out(scores: dict[str, dict[str, float]], chosen: list[str], dataset: str) -> float:
    """The held-out score of a choice among tied settings: their mean (what a tie-break that
    knows nothing of the held-out dataset gets on average)."""
    return sum(scores[name][dataset] for name in chosen) / len(chosen)


def describe(chosen: list[str]) -> str:
    return chosen[0] if len(chosen) == 1 else f"{len(chosen)} tied: " + "; ".join(chosen)


def timed(parsers: dict[str, Parser], lines: Sequence[str], repeat: int) -> dict[str, float]:
    """Best seconds per parser over `repeat` rounds, the parsers interleaved in each round."""
    best = {name: float("inf") for name in parsers}
    for _ in range(repeat):
        for name, parser in parsers.items():
            start = time.process_time()
            parser(lines)
            best[name] = min(best[name], time.process_time() - start)
    return best


@dataclasses.dataclass
class Row:
    name: str
    lines: int
    default: float
    all_best: float
    lodo: float
    lodo_setting: str
    drain3: float
    ours_s: float
    drain3_s: float


def measure(parser: Parser, lines: Sequence[str], repeat: int) -> tuple[list[str], float]:
    """Predicted ids of one fresh run, and the best lines/s over `repeat` fresh runs."""
    best = float("inf")
    predicted: list[str] = []
    for _ in range(repeat):
        start = time.process_time()
        predicted = parser(lines)
        best = min(best, time.process_time() - start)
    return predicted, len(lines) / best


def render(rows: list[tuple[str, int, float, float, float, float]]) -> str:
    """The short table (dataset, lines, GA ours/drain3, lines/s ours/drain3) of bench/system.py."""
    head = "| dataset | lines | ours GA | drain3 GA | ours lines/s | drain3 lines/s |\n"
    head += "|---|---:|---:|---:|---:|---:|\n"
    body = "".join(f"| {n} | {c} | {a:.3f} | {b:.3f} | {s1:,.0f} | {s2:,.0f} |\n"
                   for n, c, a, b, s1, s2 in rows)
    avg = [sum(float(r[i]) for r in rows) / len(rows) for i in (2, 3, 4, 5)]
    body += (f"| **average** | | **{avg[0]:.3f}** | **{avg[1]:.3f}** | {avg[2]:,.0f} "
             f"| {avg[3]:,.0f} |\n")
    return head + body


def render_report(rows: list[Row], all_best_name: str) -> str:
    head = ("| dataset | lines | ours, defaults | ours, best of grid on all 8 "
            "| ours, leave-one-out | drain3 GA | ours lines/s | drain3 lines/s | speed ratio |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r.name} | {r.lines} | {r.default:.3f} | {r.all_best:.3f} | {r.lodo:.3f} "
        f"| {r.drain3:.3f} | {r.lines / r.ours_s:,.0f} | {r.lines / r.drain3_s:,.0f} "
        f"| {r.drain3_s / r.ours_s:.2f}x |\n" for r in rows)
    n = len(rows)
    total = sum(r.lines for r in rows)
    ours_s = sum(r.ours_s for r in rows)
    drain_s = sum(r.drain3_s for r in rows)
    body += (f"| **average / all lines** | {total} | **{sum(r.default for r in rows) / n:.3f}** "
             f"| **{sum(r.all_best for r in rows) / n:.3f}** "
             f"| **{sum(r.lodo for r in rows) / n:.3f}** "
             f"| **{sum(r.drain3 for r in rows) / n:.3f}** | {total / ours_s:,.0f} "
             f"| {total / drain_s:,.0f} | **{drain_s / ours_s:.2f}x** |\n")
    chosen = "".join(f"| {r.name} | {r.lodo_setting} |\n" for r in rows)
    lowest = min(rows, key=lambda r: r.lodo)
    behind = [f"{r.name} ({'tie at' if r.lodo == r.drain3 else 'ours'} {r.lodo:.3f}"
              f"{'' if r.lodo == r.drain3 else f' vs {r.drain3:.3f}'})"
              for r in rows if r.lodo <= r.drain3]
    slower = [f"{r.name} ({r.drain3_s / r.ours_s:.2f}x)" for r in rows if r.ours_s > r.drain3_s]
    summary = (
        f"\nLeave-one-dataset-out: average {sum(r.lodo for r in rows) / n:.3f}, lowest "
        f"{lowest.lodo:.3f} ({lowest.name}); not ahead of drain3 on: "
        f"{', '.join(behind) if behind else 'none'} (a tie counts as not ahead). "
        f"Speed: ours {drain_s / ours_s:.2f}x drain3's lines/s over all lines; slower than "
        f"drain3 on: {', '.join(slower) if slower else 'none'}.\n"
        f"Best setting of the grid on all eight: {all_best_name}.\n\n"
        "Setting chosen for each held-out dataset (best average on the other seven; when "
        "several tie there, the held-out score is their mean):\n\n"
        "| held out | setting |\n|---|---|\n" + chosen)
    return head + body + summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "patterns.md")
    ap.add_argument("--repeat", type=int, default=5, help="timing rounds per dataset")
    args = ap.parse_args(argv)
    sets = load(args.data)
    if not sets:
        print(f"no *_2k.log_structured.csv under {args.data}", file=sys.stderr)
        return 2
    names = list(sets)
    configs = grid()
    scores = accuracy_table(sets, configs)
    default = accuracy_table(sets, {"defaults": MinerConfig()})["defaults"]
    all_best = best_on(scores, names)
    drain3_defaults(["warm up the import"])
    rows = []
    for name, (lines, truth) in sets.items():
        chosen = best_on(scores, [n for n in names if n != name])
        seconds = timed({"ours": ours, "drain3": drain3_defaults}, lines, args.repeat)
        rows.append(Row(name, len(lines), default[name], held_out(scores, all_best, name),
                        held_out(scores, chosen, name), describe(chosen),
                        grouping_accuracy(truth, drain3_defaults(lines)),
                        seconds["ours"], seconds["drain3"]))
    table = render_report(rows, describe(all_best))
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Template grouping accuracy on Loghub-2k\n\n"
        "Generated by `python bench/patterns.py` in one run. GA: grouping accuracy (Zhu et al.,"
        " ICSE-SEIP 2019) on the `Content` column, on the template ids the patterns API shows "
        "after the run (former ids re-pointed). *Defaults*: `MinerConfig()` as shipped. *Best "
        f"of grid on all 8*: the best of {len(configs)} settings (similarity, typed-token "
        "credit, depth) on the average of all eight datasets; masking is not tuned (every "
        "masker switch at its shipped default: whole-path masking, a grid parameter in "
        "earlier runs, is fixed on like the rest; it was taken out of the grid after HDFS "
        "held out was seen to need it while the other seven could not tell, so HDFS's "
        "held-out figure is not blind to that choice). "
        "*Leave-one-out*: each dataset scored with the setting best on the other seven (the "
        "mean over settings tied there). "
        f"lines/s: best of {args.repeat} single-core runs (CPU time) with a fresh miner "
        "(includes masking), ours and drain3 interleaved on the same lines. drain3 runs with its "
        "defaults (no masking instructions). Data: Loghub 2k samples "
        "(https://github.com/logpai/loghub), used under its licence notice (LICENSE in the "
        "data directory).\n\n" + table
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
