"""Reports from run directories: figures, the runs table, sweeps, torn metrics, bad folders, analysis tables.

Run directories are written by hand in the trainer's format (no training), so these tests take seconds.
"""

from __future__ import annotations

import json
import math
import struct

import pytest

from optodsl.errors import DataError
from optodsl.report import load_runs, write_report
from optodsl.report.figures import format_sequences
from optodsl.report.curvestats import phase_change, plateau
from optodsl.report.summary import render_report

SETS = ("train", "heldout_labels", "heldout_exemplars", "test_classes")
HEADS = [f"L{layer}.H{h}" for layer in (1, 2) for h in range(4)]
EVERY = 10_000


def write_run(path, accuracy, loss=None, spec="specs/paper/fig3_baseline.opto", member=None, measures=False,
              summary=True, analysis=None):
    """A run directory as the trainer writes it: one evaluation every 10,000 sequences."""
    path.mkdir(parents=True)
    loss = loss or [max(0.01, 1.4 - a) for a in accuracy]
    records = []
    for i, (acc, ls) in enumerate(zip(accuracy, loss)):
        rec = {"sequences": i * EVERY, "step": i * EVERY // 32,
               "train_loss": None if i == 0 else ls, "train_accuracy": None if i == 0 else acc}
        for k, name in enumerate(SETS):
            rec[f"{name}/accuracy"] = acc if name == "train" else acc - 0.01 * k
            rec[f"{name}/loss"] = ls if name == "train" else ls + 0.02 * k
            if measures:
                for j, head in enumerate(HEADS):
                    rec[f"{name}/induction/{head}"] = (0.1 * i if head == "L2.H3" else 0.01 * j)
                    rec[f"{name}/prev_token/{head}"] = (0.9 if head == "L1.H2" else 0.2)
        records.append(rec)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / "config.json").write_text(json.dumps({"model": {"layers": 2, "heads": 4}, "train": {"batch": 32}}))
    (path / "spec.json").write_text(json.dumps({"sha256": "0" * 64, "path": spec, "bindings": {},
                                                "member": member or path.name}))
    if summary:
        final = {k: v for k, v in records[-1].items() if k not in ("sequences", "step")}
        (path / "summary.json").write_text(json.dumps({"status": "complete", "sequences": records[-1]["sequences"],
                                                       "step": records[-1]["step"], "final": final}))
    if analysis is not None:
        (path / "analysis.json").write_text(json.dumps(analysis))
    return path


# crosses 0.9 at exactly 40,000 sequences (0.89 just before); train loss within 0.05 of ln 2 from 10k to 30k
CROSSING = [0.3, 0.5, 0.52, 0.89, 0.9, 0.95, 0.97]
CROSSING_LOSS = [2.0, 0.70, 0.66, 0.73, 0.3, 0.1, 0.05]
NEVER = [0.2, 0.4, 0.5, 0.6, 0.7]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def runs_table(report: str) -> list[dict]:
    """The rows of report.md's runs table as dicts keyed by the header."""
    section = report.split("## Runs", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    return [dict(zip(split[0], row)) for row in split[2:]]


ANALYSIS = {
    "run_dir": "runs/a", "spec": "specs/paper/fig3_baseline.opto", "sequences": 60000,
    "eval": {"set": "train", "sequences": 512},
    "full": {"accuracy": 0.97, "loss": 0.05},
    "heads": {f"L{layer}": {mode: {f"H{h}": {"accuracy": 0.5 + 0.1 * h, "loss": 0.4} for h in range(4)}
                            for mode in ("ablate_one", "only_one")} for layer in (1, 2)},
    "groups": [{"name": "L1.H1,H2", "layer": 1, "heads": [1, 2], "ablated": {"accuracy": 0.51, "loss": 0.69},
                "pattern_preserving": {"accuracy": 0.93, "loss": 0.1}, "value_preserving": {"accuracy": 0.62, "loss": 0.6}}],
    "paths": {"accuracy": [[0.5 + 0.01 * (i + j) for j in range(4)] for i in range(4)]},
    "composition": {k: [[0.1 * (i + j) for j in range(4)] for i in range(4)] for k in ("Q", "K", "V")},
    "subset": {"reference": "L2.H3", "sequences": 512, "wrong": 40,
               "accuracy_all": {f"H{h}": 0.6 + 0.05 * h for h in range(4)},
               "accuracy_on_wrong": {f"H{h}": 0.1 * h for h in range(4)}},
    "chance": 0.5,
}


def test_report_draws_figures_and_tabulates_each_run_with_phase_change_and_plateau(tmp_path):
    a = write_run(tmp_path / "runs" / "a", CROSSING, CROSSING_LOSS, measures=True)
    b = write_run(tmp_path / "runs" / "b", NEVER, spec="specs/paper/fig4b_single_heads.opto", member="fig4b_single_heads-h3",
                  summary=False)
    out = tmp_path / "report"
    report = write_report([a, b], out)
    assert report == out / "report.md"
    for name in ("loss.png", "accuracy.png", "induction.png", "prev_token.png"):
        width, height = png_size(out / name)
        assert 400 <= width <= 3000 and 200 <= height <= 3000, (name, width, height)
    assert not any((out / n).exists() for n in ("ablation.png", "paths.png", "composition.png"))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    text = report.read_text()
    rows = runs_table(text)
    assert len(rows) == 2
    first, second = rows
    assert first["run"] == "[a](../runs/a)" and first["status"] == "complete" and first["sequences"] == "60,000"
    assert first["train accuracy"] == "0.970" and first["heldout_labels accuracy"] == "0.960"
    assert first["test_classes accuracy"] == "0.940"
    assert first["task"] == "fewshot" and first["phase change ends at"] == "40,000"
    assert first["plateau"] == "10,000–30,000"
    assert second["member"] == "fig4b_single_heads-h3" and second["status"] == "running or interrupted before its first checkpoint (rerun to start again)"
    assert second["train accuracy"] == "0.700" and second["phase change ends at"] == "–"
    for name in ("loss.png", "accuracy.png", "induction.png", "prev_token.png"):
        assert f"]({name})" in text
    assert "## Analysis" not in text and "Table 1" not in text


def test_a_sweep_folder_expands_to_its_member_runs_in_order(tmp_path):
    sweep = tmp_path / "fig4b_single_heads"
    for h in (2, 10, 0, 1):
        write_run(sweep / f"fig4b_single_heads-h{h}", CROSSING, spec="specs/paper/fig4b_single_heads.opto")
    (sweep / "notes").mkdir()
    (sweep / "notes" / "todo.txt").write_text("not a run")
    runs = load_runs([sweep])
    order = [f"fig4b_single_heads-h{h}" for h in (0, 1, 2, 10)]
    assert [r.path.name for r in runs] == order and [r.label for r in runs] == order
    again = load_runs([sweep, sweep / "fig4b_single_heads-h1"])  # a run named twice is listed once
    rows = runs_table(render_report(again, {}, tmp_path / "out"))
    assert [row["member"] for row in rows] == order


def test_a_torn_last_metrics_line_is_ignored_but_a_malformed_middle_line_is_an_error(tmp_path):
    run = write_run(tmp_path / "killed", CROSSING, summary=False)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"sequences": 70000, "train/accu')
    (loaded,) = load_runs([run])
    assert len(loaded.metrics) == len(CROSSING) and loaded.final("train/accuracy") == 0.97
    rows = runs_table(render_report([loaded], {}, tmp_path / "out"))
    assert rows[0]["sequences"] == "60,000" and rows[0]["train accuracy"] == "0.970"

    bad = write_run(tmp_path / "bad", CROSSING)
    lines = (bad / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:20]
    (bad / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_runs([bad])
    assert info.value.path == str(bad / "metrics.jsonl") and "line 3" in info.value.problem


def test_a_folder_that_is_not_a_run_raises_data_error_naming_it_and_writes_nothing(tmp_path):
    good = write_run(tmp_path / "good", CROSSING)
    not_a_run = tmp_path / "figures"
    not_a_run.mkdir()
    (not_a_run / "plot.png").write_bytes(b"x")
    out = tmp_path / "out"
    for path in (not_a_run, tmp_path / "missing", good / "config.json"):
        with pytest.raises(DataError) as info:
            write_report([good, path], out)
        assert info.value.path == str(path)
        assert str(path) in str(info.value) and "expected" in str(info.value)
    with pytest.raises(DataError, match="plot.png"):
        write_report([not_a_run], out)
    assert not out.exists()


def test_analysis_json_adds_its_figures_and_tables_for_the_runs_that_have_one(tmp_path):
    a = write_run(tmp_path / "a", CROSSING, analysis=ANALYSIS)
    b = write_run(tmp_path / "b", NEVER)
    out = tmp_path / "out"
    text = write_report([a, b], out).read_text()
    for name in ("ablation.png", "paths.png", "composition.png"):
        width, height = png_size(out / name)
        assert width >= 400 and height >= 300
        assert f"]({name})" in text
    analysis = text.split("## Analysis", 1)[1]
    assert "[a](../a)" in analysis and "[b](../b)" not in analysis
    assert "full model: accuracy 0.970, loss 0.050 nats" in analysis
    assert "| L2 | H3 | 0.800 | 0.400 | 0.800 | 0.400 |" in analysis
    assert "| L1.H1,H2 | 1 | 1,2 | 0.510 | 0.690 | 0.930 | 0.100 | 0.620 | 0.600 |" in analysis
    assert "Table 2" in analysis and "wrong on 40 of 512 sequences" in analysis
    assert "| L2.H3 | 0.750 | 0.300 |" in analysis
    assert "| L1.H3 | 0.530 | 0.540 | 0.550 | 0.560 |" in analysis



def test_a_malformed_analysis_section_is_a_data_error_naming_the_section(tmp_path):
    run = write_run(tmp_path / "a", CROSSING, analysis={**ANALYSIS, "paths": {"accuracy": [[0.5, 0.6], [0.7]]}})
    with pytest.raises(DataError) as info:
        write_report([run], tmp_path / "out")
    assert info.value.path == str(run / "analysis.json") and "paths" in info.value.problem


def test_phase_change_plateau_and_tick_labels_from_constructed_curves(tmp_path):
    (crossing,) = load_runs([write_run(tmp_path / "a", CROSSING, CROSSING_LOSS)])
    assert phase_change(crossing) == 40_000
    assert plateau(crossing) == (10_000, 30_000)
    (flat,) = load_runs([write_run(tmp_path / "b", NEVER, [math.log(2) + 0.04] + [2.0] * 4)])
    assert phase_change(flat) is None and plateau(flat) is None  # one evaluation is not a plateau
    assert [format_sequences(v) for v in (0, 500, 40_000, 1_000_000, 1_500_000)] == ["0", "500", "40k", "1M", "1.5M"]


def test_perfected_losses_get_their_figure_and_do_not_count_as_evaluation_sets(tmp_path):
    from optodsl.report import load_runs

    run = write_run(tmp_path / "probed", CROSSING, CROSSING_LOSS)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    key = "train/perfected[clamp L1.H2.pattern = prev_token]"
    records = [{**json.loads(line), f"{key}/loss": 0.5, f"{key}/accuracy": 0.8} for line in lines]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = write_report([run], tmp_path / "out")
    assert png_size(tmp_path / "out" / "perfected.png")[0] > 300
    assert "perfected.png" in report.read_text()
    (loaded,) = load_runs([run])
    assert loaded.sets() == list(SETS)
    plain = write_run(tmp_path / "plain", CROSSING, CROSSING_LOSS)
    write_report([plain], tmp_path / "out2")
    assert not (tmp_path / "out2" / "perfected.png").exists()


def test_a_measure_is_drawn_under_the_words_of_its_one_declaration(tmp_path, monkeypatch):
    """A new measure's heat map and caption come from its declaration (`measures.measure`) alone."""
    from optodsl import measures
    from optodsl.report.figures import figures_for
    from optodsl.report.summary import caption

    monkeypatch.setitem(measures.MEASURES, "toy_spread", None)  # both undone after the test
    monkeypatch.setitem(measures.WORDS, "toy_spread", None)
    measures.measure("toy_spread", "Toy spread", "spread of the toy's attention (nats)")(lambda *a: {})
    run = write_run(tmp_path / "a", CROSSING)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for i, rec in enumerate(records):
        rec.update({f"train/toy_spread/{h}": 0.1 * i for h in HEADS})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    runs = load_runs([run])
    assert "toy_spread.png" in figures_for(runs)
    title, text = caption("toy_spread.png", runs)
    assert title == "Toy spread" and text.endswith("spread of the toy's attention (nats).")
