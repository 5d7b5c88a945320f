"""`opto report` on every task: the reference lines each task declares, its stages, and accuracy crossings.

Run directories are written by hand in the trainer's format with each task's real settings in
config.json and constructed curves (no training), so the stage statistics are known exactly; the
figures are inspected through their lines' labels and y-data, not only as PNG files.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.config import (ExperimentConfig, MarkovTaskConfig, RepeatTaskConfig, TokensTaskConfig)
from optodsl.errors import DataError
from optodsl.report import load_runs, make_report
from optodsl.report.curvestats import crossing, running_crossing, stages
from optodsl.report.figures import curves_figure, divergences_figure, measure_figure
from optodsl.report.summary import console_text, render_report
from optodsl.tasks.fewshot import FewShot

LN2 = math.log(2)
FEWSHOT = ExperimentConfig()
MARKOV = ExperimentConfig(task=MarkovTaskConfig(states=3))
REPEAT = ExperimentConfig(task=RepeatTaskConfig(vocab=64, length=64))
TOKENS = ExperimentConfig(task=TokensTaskConfig(vocab=256, source="corpus.npy"))
HEADS3 = [f"L{layer}.H{h}" for layer in (1, 2, 3) for h in range(2)]


def write_run(path, config: ExperimentConfig, records: list[dict], spec: str, bindings: dict | None = None):
    """A finished run directory: config.json as `opto run` writes it, metrics.jsonl, spec.json and summary.json."""
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / "config.json").write_text(json.dumps(config.model_dump(mode="json")))
    (path / "spec.json").write_text(json.dumps({"sha256": "0" * 64, "path": spec, "bindings": bindings or {},
                                                "member": path.name}))
    (path / "summary.json").write_text(json.dumps({"status": "complete", "sequences": records[-1]["sequences"],
                                                   "step": records[-1]["step"], "final": records[-1]}))
    return path


def records(every: int, **series) -> list[dict]:
    """Records every `every` sequences with the given `key=[values]` (None values left out); the
    running `train_accuracy` and `train_loss` are None at sequence 0, as the trainer writes them."""
    n = len(next(iter(series.values())))
    out = []
    for i in range(n):
        rec = {"sequences": i * every, "step": i * every // 32}
        for key, values in series.items():
            name = key.replace("__", "/")
            if values[i] is not None or name in ("train_accuracy", "train_loss"):
                rec[name] = values[i]
        out.append(rec)
    return out


def lines(fig) -> dict[str, np.ndarray]:
    """Label -> y-data of every labelled line of the figure's first axes."""
    return {ln.get_label(): np.asarray(ln.get_ydata(), float) for ln in fig.axes[0].get_lines()
            if not ln.get_label().startswith("_")}


def horizontal(fig) -> dict[str, float]:
    """Label -> level of the first axes' horizontal reference lines."""
    return {label: float(y[0]) for label, y in lines(fig).items() if len(y) == 2 and y[0] == y[1]}


def section(report: str, title: str) -> list[dict]:
    """The rows of the first table under `## title`, as dicts keyed by its header."""
    body = report.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in body.splitlines() if ln.startswith("|")]
    return [dict(zip(rows[0], r)) for r in rows[2:]]


# The few-shot task: every 10k; train loss within 0.05 of ln 2 from 10k to 30k, accuracy 0.9 at 40k.
FS_ACC = [0.3, 0.5, 0.52, 0.89, 0.9, 0.95, 0.97]
FS_RUNNING = [None, 0.45, 0.5, 0.62, 0.8, 0.93, 0.991]
FS_LOSS = [2.0, 0.70, 0.66, 0.73, 0.3, 0.1, 0.05]


def fewshot_run(path, measures=False):
    extra = {}
    if measures:
        for name in ("induction", "prev_token_labels", "novel_score"):
            for j, head in enumerate(HEADS3):
                extra[f"train__{name}__{head}"] = [0.1 * j + 0.01 * i for i in range(len(FS_ACC))]
    return write_run(path, FEWSHOT, records(10_000, train__accuracy=FS_ACC, train__loss=FS_LOSS,
                                            train_accuracy=FS_RUNNING, train_loss=[None] + FS_LOSS[1:], **extra),
                     "specs/paper/fig3_baseline.opto")


def test_fewshot_report_draws_ln2_and_half_and_reads_its_stages_on_accuracy(tmp_path):
    (run,) = load_runs([fewshot_run(tmp_path / "fs")])
    st = stages(run)
    assert st.plateau == (10_000, 30_000) and st.plateau_length == 20_000
    assert st.start == 40_000 and st.end == 40_000  # the first evaluation after the plateau; accuracy 0.9 there
    # steepest fall of ln(loss): 0.3 -> 0.1 between 40k and 50k, per 1,000 sequences
    assert (st.steepest.start, st.steepest.end) == (40_000, 50_000)
    assert st.steepest.per_k == pytest.approx(math.log(0.1 / 0.3) / 10)
    assert horizontal(curves_figure([run], "loss")) == pytest.approx({"chance among the context's labels (ln 2)": LN2})
    assert horizontal(curves_figure([run], "accuracy")) == pytest.approx({"chance among the context's labels (1/2)": 0.5})
    assert divergences_figure([run]) is None


@pytest.mark.parametrize("data, level", [
    ({}, 2),  # the paper's stream: two pairs, each its own class
    ({"pairs": 8, "labels": 50, "classes": 1500}, 8),  # eight distinct classes: chance 1/8
    ({"pairs": 8, "labels": 50, "classes": 1500, "burstiness": 3, "rest": "any"}, 2),  # 3 + 3 + 2 items
    ({"pairs": 8, "labels": 50, "classes": 1500, "burstiness": 3, "rest": "any", "relabel": False}, None),  # weights know
    ({"pairs": 8, "labels": 50, "classes": 1500, "burstiness": [3, 0], "mixture": [0.9, 0.1], "rest": "any"}, None),
    ({"pairs": 8, "labels": 50, "classes": 1500, "burstiness": 0, "rest": "any"}, None),  # the query's class absent
])
def test_fewshot_plateau_level_is_the_labels_the_stream_offers(data, level):
    """Issue 23: the grey line and the plateau of a few-shot run follow its stream; a stream with no one
    level (Chan et al.'s mixtures) gets none rather than the paper's ln 2 or ln pairs."""
    config = ExperimentConfig.model_validate({"data": data})
    reading = FewShot.reading(config)
    if level is None:
        assert reading.plateau is None and reading.loss_levels == () and reading.accuracy_levels == ()
    else:
        assert reading.plateau.value == pytest.approx(math.log(level))
        assert [lv.value for lv in reading.accuracy_levels] == pytest.approx([1 / level])


def test_a_mixed_stream_run_gets_no_chance_line_and_no_plateau_where_the_papers_would_find_one(tmp_path):
    """The same curves as the paper-stream run above (resting at ln 2 for three evaluations), on a 90/10
    mixture of the paper's two-pair sequences and sequences without the query's class: the report draws no chance line and reads no
    plateau, rather than the paper's ln 2, while the phase change's accuracy crossing still shows."""
    config = ExperimentConfig.model_validate({"data": {"burstiness": [1, 0], "mixture": [0.9, 0.1]}})
    path = write_run(tmp_path / "mixed", config, records(10_000, train__accuracy=FS_ACC, train__loss=FS_LOSS),
                     "specs/icl/zipf.opto")
    (run,) = load_runs([path])
    st = stages(run)
    assert st.plateau is None and st.plateau_length is None
    assert horizontal(curves_figure([run], "loss")) == {} and horizontal(curves_figure([run], "accuracy")) == {}
    assert crossing(run, 0.9) == 40_000


def test_every_logged_measure_gets_a_heat_map_with_every_layers_heads(tmp_path):
    path = fewshot_run(tmp_path / "fs", measures=True)
    out = tmp_path / "out"
    text = make_report([path], out)[0].read_text()
    for name in ("induction.png", "prev_token_labels.png", "novel_score.png"):
        assert (out / name).stat().st_size > 1000 and f"]({name})" in text
    (run,) = load_runs([path])
    fig = measure_figure([run], "novel_score")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == HEADS3
    assert fig.axes[1].get_ylabel() == "novel_score"  # a measure the report has no words for: its own name
    induction = measure_figure([run], "induction")
    assert induction.axes[1].get_ylabel() == "induction strength: attention from the query: correct label − other labels"


# The Markov task: every 1,000; the unigram level drifts (so only a per-evaluation level fits the plateau).
def markov_series(plateau_evals: int = 5) -> dict[str, list]:
    n = 2 + plateau_evals + 4
    unigram = [1.0 + 0.02 * i for i in range(n)]
    bigram = [0.90 - 0.001 * i for i in range(n)]
    wobble = [0.01, 0.01, 0.015, 0.0, -0.015, 0.01, -0.01]
    loss = [1.5, 1.2] + [unigram[2 + k] + wobble[k % len(wobble)] for k in range(plateau_evals)] + [0.98, 0.95, 0.905, 0.90]
    acc = [0.33, 0.36] + [0.40] * plateau_evals + [0.45, 0.48, 0.52, 0.55]
    return dict(train__loss=loss, train__accuracy=acc, train__unigram_loss=unigram, train__bigram_loss=bigram,
                train__kl_unigram=[abs(a - b) + 0.01 for a, b in zip(loss, unigram)],
                train__kl_bigram=[a - b for a, b in zip(loss, bigram)],
                train_accuracy=[None] + acc[:-1], train_loss=[None] + loss[:-1],
                **{f"train__induction__{h}": [0.1 * i for i in range(n)] for h in HEADS3},
                **{f"train__copying__{h}": [0.5] * n for h in HEADS3})


def test_markov_report_draws_unigram_bigram_and_kl_curves_and_reads_the_plateau_at_the_unigram_level(tmp_path):
    series = markov_series()
    path = write_run(tmp_path / "markov", MARKOV, records(1000, **series), "specs/tasks/markov.opto")
    (run,) = load_runs([path])
    st = stages(run)
    # within the task's 0.02 nats of the unigram loss logged at each evaluation from 2k to 6k (not of its first
    # value, 1.0: 1.10 at 5k); leaves it at 7k; within 0.02 of the Bayes bigram loss at 9k (0.905 against 0.891)
    assert st.plateau == (2000, 6000) and st.start == 7000 and st.end == 9000
    # steepest fall of ln(loss) from the plateau on (not the fall from initialisation): 1.105 -> 0.98 at 6k-7k
    assert (st.steepest.start, st.steepest.end) == (6000, 7000)
    assert st.steepest.per_k == pytest.approx(math.log(0.98 / 1.105))

    loss = lines(curves_figure([run], "loss"))
    assert np.allclose(loss["in-context unigram (train/unigram_loss)"], series["train__unigram_loss"])
    assert np.allclose(loss["Bayes bigram (train/bigram_loss)"], series["train__bigram_loss"])
    assert horizontal(curves_figure([run], "loss")) == pytest.approx({"uniform (ln 3)": math.log(3)})
    assert horizontal(curves_figure([run], "accuracy")) == pytest.approx({"uniform (1/3)": 1 / 3})
    kl = lines(divergences_figure([run]))
    assert np.allclose(kl["KL to the in-context unigram (train/kl_unigram)"], series["train__kl_unigram"])
    assert np.allclose(kl["KL to the Bayes bigram (train/kl_bigram)"], series["train__kl_bigram"])
    for fig in (curves_figure([run], "loss"), curves_figure([run], "accuracy")):
        assert not any(re.search(r"ln 2(?!\d)|0\.5|1/2(?!\d)", label) for label in lines(fig))

    out = tmp_path / "out"
    report, console = make_report([path], out)
    text = report.read_text()
    (row,) = section(text, "Stages")
    assert row["plateau level"] == "in-context unigram" and row["plateau"] == "2,000–6,000"
    assert row["plateau length"] == "4,000" and row["phase change starts at"] == "7,000"
    assert row["phase change ends at"] == "9,000" and row["curve"] == "`train/loss`"
    assert "within 0.02 nats of in-context unigram (`train/unigram_loss` at each evaluation)" in text
    assert "ln 2" not in text and "chance" not in text
    for name in ("divergences.png", "induction.png", "copying.png"):
        assert (out / name).exists() and f"]({name})" in text
    assert "markov: plateau at in-context unigram 2,000–6,000 (4,000 sequences); phase change 7,000 to 9,000" in console
    assert "## Crossings" not in text  # a token task declares no phase-change accuracy: crossings only with --at


def test_repeat_report_draws_ln_vocab_and_the_repeated_half_and_reads_stages_on_it(tmp_path):
    repeated = [4.62, 4.30, 4.18, 4.12, 4.20, 3.0, 1.6, 0.7, 0.15, 0.08]
    first = [4.64, 4.3, 4.25, 4.2, 4.2, 4.3, 4.3, 4.3, 4.2, 4.19]
    loss = [(a + b) / 2 for a, b in zip(first, repeated)]
    series = dict(train__loss=loss, train__accuracy=[0.02 + 0.05 * i for i in range(10)], train__first_loss=first,
                  train__repeated_loss=repeated, train__icl_score=[b - a for a, b in zip(first, repeated)])
    path = write_run(tmp_path / "repeat", REPEAT, records(4000, **series), "specs/tasks/repeat.opto")
    (run,) = load_runs([path])
    st = stages(run)
    # on the repeated half's loss: within 0.1 of ln 64 = 4.159 from 8k to 16k, at 0 (within 0.1) at 36k
    assert st.plateau == (8000, 16_000) and st.start == 20_000 and st.end == 36_000
    assert (st.steepest.start, st.steepest.end) == (28_000, 32_000)
    assert st.steepest.per_k == pytest.approx(math.log(0.15 / 0.7) / 4)
    fig = curves_figure([run], "loss")
    drawn = lines(fig)
    assert horizontal(fig) == pytest.approx({"uniform (ln 64)": math.log(64)})
    assert np.allclose(drawn["loss on the repeated half (train/repeated_loss)"], repeated)
    assert np.allclose(drawn["loss on the first part (train/first_loss)"], first)
    assert horizontal(curves_figure([run], "accuracy")) == pytest.approx({"uniform (1/64)": 1 / 64})
    text = render_report([run], {}, tmp_path / "out")
    (row,) = section(text, "Stages")
    assert row["curve"] == "`train/repeated_loss`" and row["plateau level"] == "uniform (ln 64)"
    assert "ln 2" not in text


def test_a_token_task_draws_no_ln2_or_half_and_reads_no_stages_without_a_level(tmp_path):
    loss = [5.5, 4.0, 3.0, 2.5]
    path = write_run(tmp_path / "tokens", TOKENS, records(1000, train__loss=loss, train__accuracy=[0.0, 0.2, 0.3, 0.35]),
                     "specs/corpus.opto")
    (run,) = load_runs([path])
    loss_fig, acc_fig = curves_figure([run], "loss"), curves_figure([run], "accuracy")
    assert horizontal(loss_fig) == pytest.approx({"uniform (ln 256)": math.log(256)})
    assert horizontal(acc_fig) == {}
    for fig in (loss_fig, acc_fig):
        ys = np.concatenate(list(lines(fig).values()))
        assert not np.isclose(ys, LN2).any() and not np.isclose(ys, 0.5).any()
        assert not any(re.search(r"ln 2(?!\d)|0\.5|1/2(?!\d)", label) for label in lines(fig))
    st = stages(run)
    assert st.plateau is None and st.start is None and st.end is None
    assert st.steepest.per_k == pytest.approx(math.log(4.0 / 5.5))
    text = render_report([run], {}, tmp_path / "out")
    (row,) = section(text, "Stages")
    assert row["plateau"] == "–" and row["phase change ends at"] == "–"
    assert "no plateau level is declared" in text and not re.search(r"ln 2(?!\d)", text)


def test_runs_of_different_tasks_in_one_report_each_get_their_own_lines(tmp_path):
    fs = fewshot_run(tmp_path / "runs" / "fs")
    mk = write_run(tmp_path / "runs" / "markov", MARKOV, records(1000, **markov_series()), "specs/tasks/markov.opto")
    runs = load_runs([fs, mk])
    fig = curves_figure(runs, "loss")
    assert horizontal(fig) == pytest.approx({"fewshot: chance among the context's labels (ln 2)": LN2,
                                             "markov: uniform (ln 3)": math.log(3)})
    assert "markov: in-context unigram (train/unigram_loss)" in lines(fig)
    text = render_report(runs, {}, tmp_path / "out")
    rows = {r["run"]: r for r in section(text, "Stages")}
    assert rows["fig3_baseline / fs"]["plateau level"] == "ln 2" and rows["markov"]["plateau level"] == "in-context unigram"
    assert "- fewshot: plateau:" in text and "- markov: plateau:" in text


def test_crossings_at_any_thresholds_on_evaluated_and_running_accuracy(tmp_path):
    (run,) = load_runs([fewshot_run(tmp_path / "fs")])
    assert [crossing(run, t) for t in (0.6, 0.9, 0.99)] == [30_000, 40_000, None]
    assert [running_crossing(run, t) for t in (0.6, 0.9, 0.99)] == [30_000, 50_000, 60_000]
    text = render_report([run], {}, tmp_path / "out", at=(0.6, 0.9, 0.99))
    (row,) = section(text, "Crossings")
    assert row["train/accuracy ≥ 0.6"] == "30,000" and row["train/accuracy ≥ 0.99"] == "–"
    assert row["running train_accuracy ≥ 0.9"] == "50,000" and row["running train_accuracy ≥ 0.99"] == "60,000"
    default = section(render_report([run], {}, tmp_path / "out"), "Crossings")
    assert list(default[0]) == ["run", "train/accuracy ≥ 0.9", "running train_accuracy ≥ 0.9"]


def test_stages_and_crossings_over_seeds_as_mean_and_range(tmp_path):
    for seed, n in ((5, 3), (6, 5), (7, 7)):
        name = f"markov_seeds-seed{seed}"
        write_run(tmp_path / name, MARKOV, records(1000, **markov_series(n)), "specs/tasks/markov_seeds.opto", {"seed": seed})
    runs = load_runs([tmp_path])
    assert [stages(r).plateau_length for r in runs] == [2000, 4000, 6000]
    text = render_report(runs, {}, tmp_path / "out", at=(0.5,))
    over = text.split("## Over seeds", 1)[1]
    (row, crossings) = [ln for ln in over.splitlines() if ln.startswith("| markov_seeds")]
    # phase change ends at 7k, 9k, 11k; starts at 5k, 7k, 9k; plateau 2k, 4k, 6k long
    assert row.startswith("| markov_seeds | 3 | 9,000 (7,000–11,000) | 3 of 3 |")
    assert "| 4,000 (2,000–6,000) | 7,000 (5,000–9,000) |" in row
    # accuracy 0.52 two evaluations after the plateau; the running mean one evaluation later
    assert crossings == "| markov_seeds | 3 | 9,000 (7,000–11,000) | 10,000 (8,000–12,000) |"
    console = console_text(runs, (0.5,))
    assert ("markov_seeds, mean (range) over 3 seeds: plateau length 4,000 (2,000–6,000); "
            "phase change 7,000 (5,000–9,000) to 9,000 (7,000–11,000)") in console
    assert "train/accuracy ≥ 0.5 at 9,000 (7,000–11,000); running train_accuracy ≥ 0.5 at 10,000 (8,000–12,000)" in console


def test_opto_report_prints_stages_and_crossings_at_the_thresholds_given(tmp_path):
    path = fewshot_run(tmp_path / "fs")
    res = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "out"), "--at", "0.6,0.9,0.99"])
    assert res.exit_code == 0, res.output
    assert "fig3_baseline / fs: plateau at ln 2 10,000–30,000 (20,000 sequences); phase change 40,000 to 40,000" in res.output
    assert ("train/accuracy ≥ 0.6 at 30,000; running train_accuracy ≥ 0.6 at 30,000; train/accuracy ≥ 0.9 at 40,000; "
            "running train_accuracy ≥ 0.9 at 50,000; train/accuracy ≥ 0.99 at –; running train_accuracy ≥ 0.99 at 60,000"
            in res.output)
    for bad in ("0.9,x", "1.5"):
        res = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "bad"), "--at", bad])
        assert res.exit_code == 2 and "is not an accuracy between 0 and 1" in res.output and "Traceback" not in res.output
        assert not (tmp_path / "bad").exists()


def test_a_config_json_with_invalid_task_settings_is_a_data_error_naming_it(tmp_path):
    path = fewshot_run(tmp_path / "fs")
    (path / "config.json").write_text(json.dumps({"task": {"name": "markov", "states": 1}}))
    with pytest.raises(DataError) as info:
        load_runs([path])
    assert info.value.path == str(path / "config.json") and "run settings" in info.value.problem


def test_crossings_and_final_accuracies_of_further_sets_over_seeds_and_an_unlogged_set_refused(tmp_path):
    """`--sets in_context`: its crossings beside the training set's, and its final accuracy in the seeds'
    table, as mean (range); a set no run logs is refused with the sets they do log, nothing written."""
    for seed, shift in ((5, 0), (6, 1), (7, 2)):
        in_context = [0.02, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.7, 0.95, 0.99][:7 + shift][-7:]
        write_run(tmp_path / "runs" / f"bursty-seed{seed}", FEWSHOT,
                  records(10_000, train__accuracy=FS_ACC, train__loss=FS_LOSS, in_context__accuracy=in_context),
                  "specs/icl/bursty.opto", {"seed": seed})
    runs = load_runs([tmp_path / "runs"])
    text = render_report(runs, {}, tmp_path / "out", at=(0.6, 0.9), sets=("in_context",))
    rows = [r for r in section(text, "Crossings")]
    assert [r["in_context/accuracy ≥ 0.6"] for r in rows] == ["–", "60,000", "50,000"]
    assert [r["in_context/accuracy ≥ 0.9"] for r in rows] == ["–", "–", "60,000"]
    assert [r["train/accuracy ≥ 0.9"] for r in rows] == ["40,000"] * 3
    seeds = section(text, "Over seeds")[0]
    assert seeds["final train accuracy"] == "0.970 (0.970–0.970)" and seeds["final in_context accuracy"] == "0.717 (0.500–0.950)"
    assert ("| bursty | 3 | 30,000 (30,000–30,000) | 55,000 (50,000–60,000), 2 of 3 seeds | 40,000 (40,000–40,000) "
            "| 60,000 (60,000–60,000), 1 of 3 seeds |") in text
    res = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "bad"), "--sets", "in_weights"])
    assert res.exit_code == 2 and "--sets: error: no run evaluates in_weights" in res.output
    assert "the runs' sets: in_context, train" in res.output and not (tmp_path / "bad").exists()


def _llc_json(seed: int, converged=(True, True, False)) -> dict:
    """An llc.json as `opto llc --over-training` writes it, at 10k, 30k and 60k sequences."""
    points = [{"sequences": x, "llc": 4.0 + i + 0.5 * (seed - 5), "llc_std": 0.1, "chains": [3.9, 4.1],
               "rhat": 1.02 if ok else 1.3, "converged": ok, "trace": [[0.0, 1.0, 2.0]] * 2}
              for i, (x, ok) in enumerate(zip((10_000, 30_000, 60_000), converged))]
    return {"run": "r", "settings": {"chains": 2, "steps": 3, "burn_in": 1}, "nbeta": 9.23, "weights": "all",
            "interventions": "own", "points": points}


def test_the_llc_is_tabulated_per_run_and_over_seeds_drawn_beside_the_loss_and_recorded_without_traces(tmp_path):
    from optodsl.report import make_report
    from optodsl.report.compact import record_runs
    from optodsl.report.series_figures import llc_figure

    for seed in (5, 6, 7):
        run = write_run(tmp_path / "runs" / f"base-seed{seed}", FEWSHOT,
                        records(10_000, train__accuracy=FS_ACC, train__loss=FS_LOSS), "specs/base.opto", {"seed": seed})
        (run / "llc.json").write_text(json.dumps(_llc_json(seed)))
    runs = load_runs([tmp_path / "runs"])
    text = render_report(runs, {}, tmp_path / "out")
    llc = text.split("## Local learning coefficient", 1)[1]
    assert "| 10,000 | 4.50 (4.00–5.00) | 3 of 3 |" in llc and "| 60,000 | 6.50 (6.00–7.00) | 0 of 3 |" in llc
    assert "| 30,000 | 5.50 | 0.10 | 1.02 | yes |" in llc and "| 60,000 | 7.00 | 0.10 | 1.30 | NO |" in llc
    assert "all weights, own interventions, nbeta 9.23, 2 chains x 3 steps (burn-in 1)" in llc
    fig = llc_figure(runs)
    bottom = fig.axes[1]
    hollow = [ln for ln in bottom.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    assert [list(ln.get_xdata()) for ln in hollow] == [[60_000]] * 3
    # the dotted stage boundaries: the plateau 10k-30k and the end of the phase change at 40k, per run
    assert sorted({ln.get_xdata()[0] for ln in bottom.get_lines() if ln.get_linestyle() == ":"}) == [10_000, 30_000, 40_000]
    path, _ = make_report([tmp_path / "runs"], tmp_path / "report")
    assert (tmp_path / "report" / "llc.png").is_file() and "## Local learning coefficient" in path.read_text()
    record_runs([tmp_path / "runs"], tmp_path / "records")
    kept = json.loads((tmp_path / "records" / "runs" / "base-seed5" / "llc.json").read_text())
    assert all(p["trace"] == [] for p in kept["points"])
    assert json.loads((tmp_path / "records" / "runs" / "base-seed5" / "record.json").read_text())["llc_traces"] is False
    again = render_report(load_runs([tmp_path / "records" / "runs"]), {}, tmp_path / "out")
    assert again.split("## Local learning coefficient", 1)[1] == llc
    (tmp_path / "runs" / "base-seed6" / "llc.json").write_text('{"points": 3}')
    with pytest.raises(DataError) as info:
        load_runs([tmp_path / "runs"])
    assert info.value.path == str(tmp_path / "runs" / "base-seed6" / "llc.json") and "LLC estimate" in info.value.problem
