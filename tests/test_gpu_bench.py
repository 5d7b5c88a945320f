"""benchmarks/gpu.sh's Python entry runs on the CPU at tiny scale and prints its whole table, so
the prepared GPU measurement cannot rot (issue 26). `--reduced` is the same at a larger tiny scale
(about two minutes on the 2-core machine, too long for the suite); this is smaller still."""

from __future__ import annotations

import dataclasses
import importlib
import math
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
    # the main paper at its own lengths: about 0.8M training steps, whatever the tiny ladder was
    paper = float(rows["main paper (Figures 3-6), estimated"]["value"]) * 60
    assert math.isfinite(paper) and paper > 800_000 / max(float(rows["sweep of 2 runs"]["value"]), 1e4)
    rendered = table.render()
    assert all(f"| {what}" in rendered for what in rows)
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == len(rows)
