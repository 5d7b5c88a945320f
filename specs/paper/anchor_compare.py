"""The paper's code and optodsl trained on the same feature file: Figure 3a side by side, and Table 1 both ways.

Usage: python specs/paper/anchor_compare.py OUT_DIR [--figure docs/figures/anchor_fig3a.png]

Reads what `specs/paper/anchor.sh OUT_DIR` leaves: the paper code's `OUT_DIR/paper/runs/<name>/log.h5`
(evaluators fsl_train, fsl_val_rl, fsl_train_valex, fsl_test_class: mean `acc` over the set) and
optodsl's `OUT_DIR/opto/metrics.jsonl` and `analysis.json`. Prints markdown tables and draws one
PNG with both programs' loss and the four accuracies over training sequences.
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


def crossing(curves: dict[str, np.ndarray], level: float) -> str:
    hit = np.nonzero(curves["train"] >= level)[0]
    return f"{curves['sequences'][hit[0]] / 1000:.0f}k" if len(hit) else "not reached"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/anchor_fig3a.png"))
    parser.add_argument("--paper-run", default="fig3a_paper")
    parser.add_argument("--opto-run", type=Path, default=None, help="optodsl run directory (default OUT/opto)")
    args = parser.parse_args()
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
