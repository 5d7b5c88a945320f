"""benchmarks/gpu.sh's Python entry runs on the CPU at tiny scale and prints its whole table, so
the prepared GPU measurement cannot rot (issue 26). `--reduced` is the same at a larger tiny scale
(about two minutes on the 2-core machine, too long for the suite); this is smaller still."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_measures_every_row_at_tiny_scale(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the specs are named from the repository root, as gpu.sh runs it
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: its folder first
    bench = importlib.import_module("gpu_bench")
    tiny = dataclasses.replace(bench.REDUCED, every=64, eval_sequences=16, chunks=1, markov_every=64,
                               sweep_sizes=(2,), ladder="fig3_baseline",
                               ladder_sets=("train.sequences=64", "eval.every=64", "eval.sequences=16"), name="tiny")
    table = bench.run(tiny, tmp_path / "runs", tmp_path / "rows.jsonl")
    rows = {r["what"]: r for r in table.rows}
    number = re.compile(r"^\d+(\.\d+)?$")
    for what in ("one run, baseline", "one run, two-pass clamp", "one run, Markov task", "sweep of 2 runs",
                 "paper spec fig3_baseline, end to end", "main paper (Figures 3-6), estimated"):
        assert number.match(rows[what]["value"]) and float(rows[what]["value"]) > 0, rows[what]
    assert rows["sweep of 2 runs"]["memory"] == "n/a"  # the CPU reports no device memory
    assert rows["paper spec fig3_baseline, end to end"]["runs"] == 1
    assert len(list((tmp_path / "runs").rglob("summary.json"))) == 1
    # the main paper at its own lengths (whatever the tiny ladder's), at rates between the measured extremes
    paper = float(rows["main paper (Figures 3-6), estimated"]["value"]) * 60
    steps = sum(p["steps"] for p in bench.paper_time.programs(bench.paper_time.MAIN))
    assert steps > 500_000
    per_run = [float(rows[w]["value"]) for w in ("one run, baseline", "one run, two-pass clamp")]
    per_run.append(float(rows["sweep of 2 runs"]["value"]) / 2)
    assert steps / max(per_run) * 0.99 - 1 <= paper <= steps / min(per_run) * 1.01 + 1
    rendered = table.render()
    assert all(f"| {what}" in rendered for what in rows)
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == len(rows)
