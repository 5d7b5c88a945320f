"""Draw the release-time map (docs/figures/release_map.png) and print its table from the rungs' runs.

Usage: python specs/beyond/plot_release_map.py RUNS_ROOT [--reference RUN_DIR ...] [--out PNG], where
RUNS_ROOT holds the rungs' run folders as `opto run specs/beyond/<rung>.opto --out RUNS_ROOT/<rung>` writes
them: release_prev_token/, release_prev_token_stopgrad/ (the first rung's gradient stop alone),
release_match/, release_copy/, or their three-seed forms release_prev_token_seeds/, ... (taken
first where both are there); a rung not (yet) run is left out.
--reference names the unclamped runs (one per seed, e.g. fig5b_strongest_seeds' only_strongest runs).
Numbers are the mean (min-max) over a rung's seeds at each k.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from optodsl.report import load_runs
from optodsl.report.figures import first_at, release_map_figure, save_figure

RUNGS = {"clamp_prev_token": "release_prev_token", "stopgrad_prev_token": "release_prev_token_stopgrad",
         "clamp_match": "release_match", "stopgrad_match": "release_match_stopgrad", "clamp_copy": "release_copy"}
THRESHOLD = 0.9


def _over(values: list[float], show) -> str:
    """Mean (min-max) of `values`, or the one value; "not by the end" when any run never gets there."""
    if any(v is None or math.isnan(v) for v in values):
        return "not by the end" if len(values) == 1 else f"not by the end in {sum(v is None or math.isnan(v) for v in values)} of {len(values)}"
    mean = sum(values) / len(values)
    return show(mean) if len(values) == 1 else f"{show(mean)} ({show(min(values))}-{show(max(values))})"


def row(rung: str, k: int, runs: list) -> list[str]:
    """One table row over a rung's seeds at k: accuracy just before and after the release, its lowest
    after, when it reaches 0.9 again, and at the end."""
    before, after, lowest, final = [], [], [], []
    for run in runs:
        xs, ys = run.series("train/accuracy")
        before.append(next((y for x, y in reversed(list(zip(xs, ys))) if x < k), math.nan))
        later = [y for x, y in zip(xs, ys) if x >= k]
        after.append(later[0] if later else math.nan)
        lowest.append(min(later) if later else math.nan)
        final.append(ys[-1])
    acc = lambda v: f"{v:.3f}"  # noqa: E731
    seq = lambda v: f"{v / 1000:,.0f}k"  # noqa: E731
    return [rung, f"{k:,}", str(len(runs)), _over(before, acc), _over(after, acc), _over(lowest, acc),
            _over([first_at(r, THRESHOLD, k) for r in runs], seq), _over(final, acc)]


def against_reference(rung: str, k: int, runs: list, reference: dict) -> list[str] | None:
    """One row of the paired table: when a rung's runs at k reach 0.9 (mean, min-max), and each seed's
    difference from its own unclamped run (`reference`: seed -> sequences), with how many are earlier;
    None when a run's seed has no reference."""
    pairs = [(first_at(r, THRESHOLD, k), reference.get(r.bindings.get("seed"))) for r in runs]
    if any(ref is None for _, ref in pairs):
        return None
    seq = lambda v: f"{v / 1000:,.0f}k"  # noqa: E731
    diffs = [hit - ref for hit, ref in pairs if not math.isnan(hit) and not math.isnan(ref)]
    if len(diffs) < len(pairs):
        return [rung, f"{k:,}", _over([hit for hit, _ in pairs], seq), "–"]
    signed = lambda v: f"{v / 1000:+,.0f}k"  # noqa: E731
    spread = signed(min(diffs)) if len(diffs) == 1 else f"{signed(min(diffs))} to {signed(max(diffs))}"
    return [rung, f"{k:,}", _over([hit for hit, _ in pairs], seq),
            f"{spread} ({sum(d < 0 for d in diffs)} of {len(diffs)} earlier)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--reference", type=Path, nargs="*", default=[], help="the unclamped runs, one per seed")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/release_map.png"))
    args = parser.parse_args()
    rungs, rows = {}, []
    for rung, folder in RUNGS.items():
        found = next((args.root / f for f in (f"{folder}_seeds", folder) if (args.root / f).is_dir()), None)
        if found is None:
            continue
        runs = sorted(((int(r.bindings["k"]), r) for r in load_runs([found])), key=lambda kr: kr[0])
        rungs[rung] = runs
        for k in sorted({k for k, _ in runs}):
            rows.append(row(rung, k, [r for kk, r in runs if kk == k]))
    references = load_runs(args.reference) if args.reference else []
    save_figure(release_map_figure(rungs, references, THRESHOLD), args.out)
    header = ["rung", "k", "seeds", "acc before release", "acc after", "lowest after", f"acc {THRESHOLD} again at",
              "final acc"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    if references:
        hits = [first_at(r, THRESHOLD) for r in references]
        print(f"no clamp: train accuracy {THRESHOLD} at {_over(hits, lambda v: f'{v / 1000:,.0f}k')} "
              f"({len(references)} run{'s' if len(references) != 1 else ''})")
        by_seed = {r.bindings.get("seed"): first_at(r, THRESHOLD) for r in references}
        paired = [p for rung, runs in rungs.items() for k in sorted({k for k, _ in runs})
                  for p in [against_reference(rung, k, [r for kk, r in runs if kk == k], by_seed)] if p]
        if paired:
            print(f"\n| rung | k | acc {THRESHOLD} at | minus the same seed's unclamped run |\n|---|---|---|---|")
            print("\n".join("| " + " | ".join(r) + " |" for r in paired))
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
