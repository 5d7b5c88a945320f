"""The paper's code and optodsl trained on the same feature file: Figure 3a side by side, Table 1 both ways,
and the final accuracies and crossings over init seeds.

Usage: python specs/paper/anchor_compare.py OUT_DIR [--figure docs/figures/anchor_fig3a.png]
       python specs/paper/anchor_compare.py OUT_DIR --seeds 5 6 7 --opto-sweep OUT_DIR/opto_seeds
           [--seeds-figure docs/figures/anchor_seeds.png]

Reads what `specs/paper/anchor.sh OUT_DIR` leaves: the paper code's `OUT_DIR/paper/runs/<name>/log.h5`
(evaluators fsl_train, fsl_val_rl, fsl_train_valex, fsl_test_class: mean `acc` over the set) and
optodsl's `OUT_DIR/opto/metrics.jsonl` and `analysis.json`. Prints markdown tables and draws one
PNG with both programs' loss and the four accuracies over training sequences. With `--seeds` it
reads what `specs/paper/anchor_seeds.sh OUT_DIR` leaves instead (the paper code's runs `fig3a_paper`
for seed 5 and `fig3a_paper_s<seed>` otherwise; optodsl's `fig3_baseline_seeds-seed<seed>` under
`--opto-sweep`) and prints each seed and the mean and range over the seeds, side by side.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# evaluation set: (optodsl's name, the paper code's evaluator)
SETS = {"train": "fsl_train", "held-out labels": "fsl_val_rl", "held-out exemplars": "fsl_train_valex",
        "test classes": "fsl_test_class"}
OURS = {"train": "train", "held-out labels": "heldout_labels", "held-out exemplars": "heldout_exemplars",
        "test classes": "test_classes"}
GROUPS = {"pt": (1, 2, 5), "rest": (0, 3, 4, 6, 7), "all": tuple(range(8))}  # layer-1 heads, the paper's groups
TABLE1 = ("pt_pattern", "pt_value", "rest_pattern", "rest_value", "all_pattern", "all_value", "all_plain")


def paper_curves(log: Path) -> dict[str, np.ndarray]:
    """Sequences, train-set loss and each set's accuracy from one run of the paper's main.py."""
    with h5py.File(log, "r") as f:
        out = {"sequences": f["eval_iter"][()].astype(float), "loss": f["fsl_train/loss"][()].mean(1)}
        for name, key in SETS.items():
            out[name] = f[f"{key}/acc"][()].mean(1)
    return out


def opto_curves(metrics: Path) -> dict[str, np.ndarray]:
    """The same curves from an optodsl run's metrics.jsonl."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    out = {"sequences": np.array([r["sequences"] for r in rows], float),
           "loss": np.array([r["train/loss"] for r in rows])}
    for name, key in OURS.items():
        out[name] = np.array([r[f"{key}/accuracy"] for r in rows])
    return out


def opto_series_curves(series: Path) -> dict[str, np.ndarray]:
    """The same curves from an optodsl run's eval_series.json (`opto eval SPEC --checkpoint RUN
    --over-training`, a spec of one run): its scores at every kept point instead of the training run's
    own evaluations."""
    data = json.loads(series.read_text())
    (scores,) = [r["sets"] for r in data["runs"].values()]
    out = {"sequences": np.array([p["sequences"] for p in data["points"]], float),
           "loss": np.array(scores["train"]["loss"])}
    for name, key in OURS.items():
        out[name] = np.array(scores[key]["accuracy"])
    return out


def crossing(curves: dict[str, np.ndarray], level: float) -> str:
    hit = first(curves, level)
    return "not reached" if math.isnan(hit) else f"{hit / 1000:.0f}k"


def first(curves: dict[str, np.ndarray], level: float, name: str = "train") -> float:
    """Training sequences at the first evaluation where `name`'s accuracy is at least `level` (NaN if never)."""
    hit = np.nonzero(curves[name] >= level)[0]
    return float(curves["sequences"][hit[0]]) if len(hit) else math.nan


def at(curves: dict[str, np.ndarray], name: str, seqs: float) -> float:
    return float(curves[name][int(np.argmin(np.abs(curves["sequences"] - seqs)))])


def paper_table1(out: Path) -> dict[str, float]:
    """fsl_train accuracy of each Table 1 evaluation run of the paper's code (one final evaluation each)."""
    result = {}
    for name in TABLE1:
        log = out / "paper" / "runs" / f"table1_{name}" / "log.h5"
        if log.is_file():
            with h5py.File(log, "r") as f:
                result[name] = float(f["fsl_train/acc"][-1].mean())
    return result


def opto_table1(analysis: Path) -> dict[str, float]:
    """The same cells from optodsl's analysis.json (the layer-1 groups `anchor.sh` names)."""
    groups = {tuple(g["heads"]): g for g in json.loads(analysis.read_text())["groups"] if g["layer"] == 1}
    result = {}
    for short, heads in GROUPS.items():
        g = groups.get(heads)
        if g is not None:
            result[f"{short}_pattern"] = g["pattern_preserving"]["accuracy"]
            result[f"{short}_value"] = g["value_preserving"]["accuracy"]
            if short == "all":
                result["all_plain"] = g["ablated"]["accuracy"]
    return result


def figure(paper: dict, ours: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True, dpi=90)
    colours = {"train": "black", "held-out labels": "tab:red", "held-out exemplars": "tab:blue", "test classes": "tab:green"}
    for ax, (title, c) in zip(axes, (("the paper's code (icl-dynamics)", paper), ("optodsl", ours))):
        ax.plot(c["sequences"], c["loss"], color="grey", lw=1, label="train-set loss")
        for name, colour in colours.items():
            ax.plot(c["sequences"], c[name], color=colour, lw=1, label=f"{name} acc")
        ax.axhline(math.log(2), color="grey", ls=":", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training sequences")
        ax.set_ylim(0, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle("Figure 3a on one feature file (lr 1e-5, init seed 5)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def paper_run_name(seed: int, pattern: str | None = None) -> str:
    """The paper code's run of one init seed: `pattern` with {seed} filled in, or by default
    `anchor_seeds.sh`'s names (seed 5 is anchor.sh's run)."""
    if pattern is not None:
        return pattern.format(seed=seed)
    return "fig3a_paper" if seed == 5 else f"fig3a_paper_s{seed}"


def seed_rows(points: tuple[int, ...] = (600_000, 800_000)) -> list:
    """What the seed tables show per run, (row label, value from the curves, format): the held-out
    labels' accuracy at each of `points` (sequences) among them."""
    return [(f"final {name}", lambda c, n=name: float(c[n][-1]), "{:.3f}") for name in SETS] + [
        (f"train acc {x} first at", lambda c, x=x: first(c, x), "k") for x in (0.6, 0.9, 0.99)] + [
        (f"held-out labels {x} first at", lambda c, x=x: first(c, x, "held-out labels"), "k") for x in (0.6, 0.9)] + [
        (f"held-out labels at {s // 1000}k", lambda c, s=s: at(c, "held-out labels", s), "{:.3f}") for s in points]


def _fmt(value: float, style: str) -> str:
    if math.isnan(value):
        return "not reached"
    return f"{value / 1000:.0f}k" if style == "k" else style.format(value)


def _spread(values: list[float], style: str) -> str:
    """Mean and range of one row over the seeds; a seed that never crossed makes it 'not reached (n)'."""
    missing = sum(math.isnan(v) for v in values)
    if missing:
        return f"not reached ({missing} of {len(values)})"
    return f"{_fmt(float(np.mean(values)), style)} ({_fmt(min(values), style)}-{_fmt(max(values), style)})"


def finished_paper_run(out: Path, name: str) -> dict[str, np.ndarray] | None:
    """The curves of the paper code's run `name` if it finished (its log records the total time), else None."""
    log, text = out / "paper" / "runs" / name / "log.h5", out / "paper" / "logs" / f"{name}.log"
    if log.is_file() and text.is_file() and "total training time" in text.read_text(errors="replace"):
        return paper_curves(log)
    return None


def finished_opto_run(run: Path, series: bool = False) -> dict[str, np.ndarray] | None:
    """The curves of an optodsl run directory if it finished (it has its summary.json), else None: its
    own evaluations, or with `series` its eval_series.json's scores (None without one)."""
    if not (run / "summary.json").is_file():
        return None
    if series:
        return opto_series_curves(run / "eval_series.json") if (run / "eval_series.json").is_file() else None
    return opto_curves(run / "metrics.jsonl")


def seeds_report(out: Path, sweep: Path, seeds: list[int], figure_path: Path | None,
                 extra: list[str] = (), paper_names: str | None = None,
                 opto_names: str = "fig3_baseline_seeds-seed{seed}", points: tuple[int, ...] = (600_000, 800_000),
                 series: bool = False) -> None:
    """Per-seed and mean/range tables of both programs over init seeds (the runs named by the patterns
    `paper_names` and `opto_names`), then one column per `extra` run (a paper-code run name under
    OUT/paper, or an optodsl run directory); missing runs are listed and skipped."""
    rows = seed_rows(points)
    runs: dict[str, dict[int, dict[str, np.ndarray]]] = {"the paper's code": {}, "optodsl": {}}
    for seed in seeds:
        for program, curves in (("the paper's code", finished_paper_run(out, paper_run_name(seed, paper_names))),
                                ("optodsl", finished_opto_run(sweep / opto_names.format(seed=seed), series))):
            if curves is not None:
                runs[program][seed] = curves
    for program, got in runs.items():
        missing = [s for s in seeds if s not in got]
        if missing:
            print(f"{program}: no finished run yet for seed(s) {', '.join(map(str, missing))}")
    print("\n| | " + " | ".join(f"{p}, seed {s}" for p, got in runs.items() for s in got) + " |")
    print("|---|" + "---|" * sum(len(g) for g in runs.values()))
    for label, get, style in rows:
        cells = [_fmt(get(c), style) for got in runs.values() for c in got.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    names = [f"{p}, seeds {', '.join(map(str, got)) or '(none finished)'}" for p, got in runs.items()]
    print("\n| mean (range) | " + " | ".join(names) + " |\n|---|---|---|")
    for label, get, style in rows:
        cells = [_spread([get(c) for c in got.values()], style) if got else "-" for got in runs.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    extras = {}
    for name in extra:
        curves = finished_opto_run(Path(name)) if Path(name).is_dir() else finished_paper_run(out, name)
        if curves is None:
            print(f"\n{name}: not finished yet")
        else:
            extras[name] = curves
    if extras:
        print("\n| | " + " | ".join(extras) + " |\n|---|" + "---|" * len(extras))
        for label, get, style in rows:
            print(f"| {label} | " + " | ".join(_fmt(get(c), style) for c in extras.values()) + " |")
    if figure_path is not None and all(runs.values()):
        seeds_figure(runs, figure_path)
        print(f"\nfigure: {figure_path}")


def seeds_figure(runs: dict[str, dict[int, dict[str, np.ndarray]]], path: Path) -> None:
    """Train and held-out-label accuracy of every seed, one panel per program."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True, dpi=90)
    styles = ("-", "--", ":")
    for ax, (program, got) in zip(axes, runs.items()):
        for style, (seed, c) in zip(styles, got.items()):
            ax.plot(c["sequences"], c["train"], color="black", ls=style, lw=1, label=f"train acc, seed {seed}")
            ax.plot(c["sequences"], c["held-out labels"], color="tab:red", ls=style, lw=1,
                    label=f"held-out labels acc, seed {seed}")
        ax.set_title(program, fontsize=10)
        ax.set_xlabel("training sequences")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("accuracy (1,000 sequences per set)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle("One feature file, init seeds " + ", ".join(map(str, next(iter(runs.values())))), fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/anchor_fig3a.png"))
    parser.add_argument("--paper-run", default="fig3a_paper")
    parser.add_argument("--opto-run", type=Path, default=None, help="optodsl run directory (default OUT/opto)")
    parser.add_argument("--seeds", type=int, nargs="+", help="compare these init seeds (anchor_seeds.sh's runs)")
    parser.add_argument("--opto-sweep", type=Path, default=None, help="optodsl's seed sweep (default OUT/opto_seeds)")
    parser.add_argument("--seeds-figure", type=Path, default=None, help="with --seeds: draw every seed's curves here")
    parser.add_argument("--extra", nargs="+", default=[],
                        help="with --seeds: also show these runs (the paper code's run names, or optodsl run directories)")
    parser.add_argument("--paper-names", default=None,
                        help="with --seeds: the paper code's run of each seed, e.g. zipf1_s{seed} (default: anchor_seeds.sh's)")
    parser.add_argument("--opto-names", default="fig3_baseline_seeds-seed{seed}",
                        help="with --seeds: optodsl's run directory of each seed under --opto-sweep")
    parser.add_argument("--points", type=int, nargs="+", default=[600_000, 800_000],
                        help="with --seeds: the sequence counts at which to show the held-out labels' accuracy")
    parser.add_argument("--opto-eval-series", action="store_true",
                        help="with --seeds: read optodsl's scores from each run's eval_series.json (`opto eval "
                             "--over-training`) instead of its own evaluations")
    args = parser.parse_args()
    if args.seeds:
        seeds_report(args.out, args.opto_sweep or args.out / "opto_seeds", args.seeds, args.seeds_figure, args.extra,
                     args.paper_names, args.opto_names, tuple(args.points), args.opto_eval_series)
        return
    paper = paper_curves(args.out / "paper" / "runs" / args.paper_run / "log.h5")
    run = args.opto_run or args.out / "opto"
    ours = opto_curves(run / "metrics.jsonl")
    figure(paper, ours, args.figure)
    print(f"figure: {args.figure}\n")
    print("| | the paper's code | optodsl |\n|---|---|---|")
    for seqs in (80_000, 160_000):
        print(f"| train loss at {seqs // 1000}k | {at(paper, 'loss', seqs):.4f} | {at(ours, 'loss', seqs):.4f} |")
    print("| train acc 0.6 / 0.9 / 0.99 at | " + " / ".join(crossing(paper, x) for x in (0.6, 0.9, 0.99)) + " | "
          + " / ".join(crossing(ours, x) for x in (0.6, 0.9, 0.99)) + " |")
    for name in SETS:
        print(f"| final {name} acc | {paper[name][-1]:.3f} | {ours[name][-1]:.3f} |")
    table_paper = paper_table1(args.out)
    analysis = run / "analysis.json"
    table_ours = opto_table1(analysis) if analysis.is_file() else {}
    if table_paper or table_ours:
        print("\n| Table 1 cell | the paper's code | optodsl |\n|---|---|---|")
        for name in TABLE1:
            cells = [f"{t[name]:.3f}" if name in t else "-" for t in (table_paper, table_ours)]
            print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
