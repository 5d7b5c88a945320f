"""Draw the release-time map (docs/figures/release_map.png) and print its table from the three rungs' runs.

Usage: python specs/beyond/plot_release_map.py RUNS_ROOT [--reference RUN_DIR] [--out PNG], where RUNS_ROOT
holds release_prev_token/, release_match/ and release_copy/ as `opto run specs/beyond/<rung>.opto --out
RUNS_ROOT/<rung>` writes them; a rung not (yet) run is left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optodsl.report import load_runs
from optodsl.report.figures import release_map_figure, save_figure

RUNGS = {"clamp_prev_token": "release_prev_token", "clamp_match": "release_match", "clamp_copy": "release_copy"}
THRESHOLD = 0.9


def row(rung: str, k: int, run) -> list[str]:
    """One table row: accuracy just before and after the release, its lowest after, and when it reaches 0.9 again."""
    xs, ys = run.series("train/accuracy")
    before = [y for x, y in zip(xs, ys) if x < k]
    after = [(x, y) for x, y in zip(xs, ys) if x >= k]
    again = next((x for x, y in after if y >= THRESHOLD), None)
    return [rung, f"{k:,}", f"{before[-1]:.3f}" if before else "-", f"{after[0][1]:.3f}" if after else "-",
            f"{min(y for _, y in after):.3f}" if after else "-", f"{again:,}" if again else "not by the end",
            f"{ys[-1]:.3f}", f"{run.sequences:,}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--reference", type=Path, help="the unclamped only-L2.H3 run (fig5b-only_h3)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/release_map.png"))
    args = parser.parse_args()
    rungs, rows = {}, []
    for rung, folder in RUNGS.items():
        if not (args.root / folder).is_dir():
            continue
        runs = sorted(((int(r.bindings["k"]), r) for r in load_runs([args.root / folder])), key=lambda kr: kr[0])
        rungs[rung] = runs
        rows += [row(rung, k, r) for k, r in runs]
    reference = load_runs([args.reference])[0] if args.reference else None
    save_figure(release_map_figure(rungs, reference, THRESHOLD), args.out)
    header = ["rung", "k", "acc before release", "acc after", "lowest after", f"acc {THRESHOLD} again at",
              "final acc", "sequences"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
