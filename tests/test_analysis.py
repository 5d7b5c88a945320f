"""Checkpoint analyses (`optodsl.analysis`) against their definitions, computed again by hand.

One small model is trained once for the module; `analyze` is run on it once, and each of its
numbers is recomputed here with hand-built `Overrides` on the very same sequences (accuracies
must agree exactly, losses to 1e-5). The paper's enumerated training set needs no model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.analysis.evaluate import evaluation_set
from optodsl.analysis.heads import composition_scores, analyze
from optodsl.analysis.runs import load_run
from optodsl.cli import app
from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from optodsl.tasks.fewshot import make_task
from optodsl.errors import DataError
from optodsl.experiment import load_experiment
from optodsl.model import Overrides
from optodsl.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
N = 500  # evaluation sequences (sampled with seed 0, as `analyze(run, n=N, bare=True)` samples them)
CONFIG = ExperimentConfig(
    data=DataConfig(total_classes=200),
    train=TrainConfig(sequences=3200, lr=1e-3, checkpoint_every=3200),
    eval=EvalConfig(every=3200, sequences=64),
)


# --------------------------------------------------------------------------- the enumerated set


def test_the_paper_training_set_is_78400_distinct_valid_sequences():
    config = load_experiment(ROOT / "specs/paper/common.opto").members[0].config
    d = config.data
    assert (d.classes, d.labels, d.heldout_label_fraction, d.pairs, d.train_exemplars) == (50, 5, 0.2, 2, 1)
    task = make_task(d)
    seqs = task.every("train")
    assert seqs is not None
    train_sets = {tuple(map(int, s)) for s in np.asarray(task.train_label_sets)}
    assert len(train_sets) == 8  # 10 unordered label pairs, 20% (2) held out
    assert len(seqs["classes"]) == 78_400 == math.perm(50, 2) * 2 * 2 * len(train_sets)

    cls, ex, lab = (np.asarray(seqs[k]) for k in ("classes", "exemplar_ids", "labels"))
    assert cls.shape == ex.shape == lab.shape == (78_400, 3)
    # all distinct (exemplar ids are all 0, so classes and labels identify a sequence)
    assert len(np.unique(np.concatenate([cls, lab], axis=1), axis=0)) == 78_400
    # two distinct training classes, in any order
    assert ((cls[:, :2] >= 0) & (cls[:, :2] < 50)).all()
    assert (cls[:, 0] != cls[:, 1]).all()
    # the query is one of them, and carries that class's label
    first, second = cls[:, 2] == cls[:, 0], cls[:, 2] == cls[:, 1]
    assert (first ^ second).all()
    assert (lab[:, 2] == np.where(first, lab[:, 0], lab[:, 1])).all()
    # the label pair is an ordering of a training label set; both orders occur
    assert (lab[:, 0] != lab[:, 1]).all()
    assert {tuple(sorted(p)) for p in map(tuple, lab[:, :2].tolist())} == train_sets
    assert len({tuple(p) for p in lab[:, :2].tolist()}) == 16
    assert (ex == 0).all()
    # both query positions occur equally often
    assert first.sum() == second.sum() == 39_200

    # analyses with no `n` use exactly this set
    _, every = evaluation_set(config)
    assert every.enumerated and np.array_equal(every.index["classes"], cls) and np.array_equal(every.index["labels"], lab)


def test_no_enumeration_with_several_training_exemplars():
    task = make_task(DataConfig(total_classes=200, train_exemplars=2))
    assert task.every("train") is None


# --------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis") / "run"
    train(CONFIG, None, path, progress=False)
    return path


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def result(run):
    return analyze(run, n=N, bare=True)  # trained from Python, without interventions (and without a spec.opto)


_forward = eqx.filter_jit(lambda model, batch, ov: model(batch, ov))


class Hand:
    """The same N sequences `analyze` sees, evaluated with hand-built overrides."""

    def __init__(self, run):
        self.model = run.model
        self.heads = run.config.model.heads
        task, seqs = evaluation_set(run.config, "train", N, 0)
        assert len(seqs) == N and not seqs.enumerated
        self.batch = task.gather({k: jnp.asarray(v) for k, v in seqs.index.items()})
        self.target = np.asarray(seqs.index["labels"][:, -1])
        logits, acts = _forward(self.model, self.batch, Overrides.empty())
        self.plain_logits = logits
        self.acts = acts

    def heads_mask(self, heads) -> jax.Array:
        """A (H, 1, 1) mask of the given heads, broadcasting against `L<l>.v` (B, H, T, Dh)."""
        return jnp.asarray(np.isin(np.arange(self.heads), list(heads)))[:, None, None]

    def zero_v(self, **layers) -> Overrides:
        """Zero `L<l>.v` of the listed heads, e.g. zero_v(L1=[0, 3], L2=[5])."""
        return Overrides({f"{k}.v": jnp.zeros(()) for k in layers},
                         {f"{k}.v": self.heads_mask(h) for k, h in layers.items()})

    def outcome(self, logits) -> tuple[np.ndarray, float]:
        logits = np.asarray(logits, np.float64)
        correct = logits.argmax(-1) == self.target
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        return correct, float(-logp[np.arange(len(self.target)), self.target].mean())

    def run(self, ov: Overrides) -> tuple[np.ndarray, float]:
        return self.outcome(_forward(self.model, self.batch, ov)[0])

    def others(self, h) -> list[int]:
        return [g for g in range(self.heads) if g != h]


@pytest.fixture(scope="module")
def hand(run):
    return Hand(run)


def assert_same(entry: dict, outcome: tuple[np.ndarray, float], what: str):
    correct, loss = outcome
    assert entry["accuracy"] == round(float(correct.mean()), 6), what
    assert abs(entry["loss"] - loss) < 1e-5, what


def test_the_run_loads_with_its_settings_and_length(run, run_dir):
    assert run.run_dir == run_dir
    assert run.config == CONFIG
    assert run.sequences == 3200
    assert len(run.model.blocks) == 2 and run.model.blocks[0].wq.shape == (8, 64, 8)


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(DataError, match="not a run directory"):
        load_run(tmp_path)


def test_the_result_describes_its_evaluation(result, run):
    assert result["eval"] == {"set": "train", "sequences": N, "enumerated": False, "seed": 0}
    assert result["sequences"] == 3200 and result["chance"] == 0.5
    assert set(result) >= {"full", "heads", "groups", "paths", "composition", "subset"}
    # the model must be trained enough that heads differ, or the comparisons below prove little
    alone = [v["accuracy"] for v in result["heads"]["L2"]["only_one"].values()]
    assert len(set(alone)) > 2


def test_full_is_the_plain_model(result, hand):
    plain_logits, _ = hand.model(hand.batch)  # the model called directly, no overrides, no jit
    assert_same(result["full"], hand.outcome(plain_logits), "full")
    assert np.allclose(np.asarray(plain_logits), np.asarray(hand.plain_logits), atol=1e-5)


def test_each_head_ablated_and_each_head_alone(result, hand):
    for layer in ("L1", "L2"):
        for h in range(hand.heads):
            assert_same(result["heads"][layer]["only_one"][f"H{h}"], hand.run(hand.zero_v(**{layer: hand.others(h)})),
                        f"{layer}.H{h} only one")
            assert_same(result["heads"][layer]["ablate_one"][f"H{h}"], hand.run(hand.zero_v(**{layer: [h]})),
                        f"{layer}.H{h} ablate one")


def test_groups_ablated_pattern_and_value_preserving(result, hand):
    groups = result["groups"]
    # default groups: layer 1's previous-token heads (attention to i-1 >= 0.5, else the top three), the rest, all
    pattern = np.asarray(hand.acts["L1.pattern"])
    scores = np.stack([pattern[:, :, i, i - 1] for i in range(1, pattern.shape[-1])], -1).mean((0, 2))
    pt = [h for h in range(hand.heads) if scores[h] >= 0.5] or sorted(np.argsort(-scores)[:3].tolist())
    expected = [pt] + ([[h for h in range(hand.heads) if h not in pt]] if len(pt) < hand.heads else []) + [list(range(hand.heads))]
    assert [g["heads"] for g in groups] == expected
    assert all(g["layer"] == 1 and g["name"] == "L1." + ",".join(f"H{h}" for h in g["heads"]) for g in groups)

    recorded_pattern, recorded_v = hand.acts["L2.pattern"], hand.acts["L2.v"]  # pass 1: the plain model
    everywhere = jnp.ones((), bool)
    for g in groups:
        zero = hand.heads_mask(g["heads"])
        assert_same(g["ablated"], hand.run(hand.zero_v(L1=g["heads"])), f"{g['name']} ablated")
        held_pattern = Overrides({"L1.v": jnp.zeros(()), "L2.pattern": recorded_pattern}, {"L1.v": zero, "L2.pattern": everywhere})
        assert_same(g["pattern_preserving"], hand.run(held_pattern), f"{g['name']} pattern-preserving")
        held_v = Overrides({"L1.v": jnp.zeros(()), "L2.v": recorded_v}, {"L1.v": zero, "L2.v": everywhere})
        assert_same(g["value_preserving"], hand.run(held_v), f"{g['name']} value-preserving")
    # holding L2's values undoes any layer-1 ablation's effect on the values layer 2 moves, so the
    # three kinds differ for the group of every head (else the test could not tell them apart)
    every = groups[-1]
    assert len({every[k]["loss"] for k in ("ablated", "pattern_preserving", "value_preserving")}) == 3


def test_the_path_map(result, hand):
    assert list(result["paths"]) == ["L1-L2"]
    acc = result["paths"]["L1-L2"]["accuracy"]
    assert len(acc) == hand.heads and all(len(row) == hand.heads for row in acc)
    for a, b in [(0, 0), (2, 5), (5, 2), (7, 3)]:
        correct, _ = hand.run(hand.zero_v(L1=hand.others(a), L2=hand.others(b)))
        assert acc[a][b] == round(float(correct.mean()), 6), (a, b)
    assert len({v for row in acc for v in row}) > 1


def _composition(model, writer=0, reader=1) -> dict[str, np.ndarray]:
    w, r = model.blocks[writer], model.blocks[reader]
    wv, wo = np.asarray(w.wv, np.float64), np.asarray(w.wo, np.float64)
    gain = np.asarray(r.ln.weight, np.float64)
    out = {}
    for name, m in (("Q", r.wq), ("K", r.wk), ("V", r.wv)):
        m = np.asarray(m, np.float64)
        scores = np.zeros((wv.shape[0], m.shape[0]))
        for a in range(wv.shape[0]):
            A = wv[a] @ wo[a]  # (D, D): the writer head's output map
            for b in range(m.shape[0]):
                B = np.diag(gain) @ m[b]  # (D, Dh): the reader head's input map
                scores[a, b] = np.linalg.norm(A @ B) / (np.linalg.norm(A) * np.linalg.norm(B))
        out[name] = scores
    return out


def test_composition_scores_are_the_normalised_frobenius_norm(result, run):
    expected = _composition(run.model)
    assert list(result["composition"]) == ["L1-L2"] and set(result["composition"]["L1-L2"]) == {"Q", "K", "V"}
    for name, scores in expected.items():
        got = np.asarray(result["composition"]["L1-L2"][name])
        assert got.shape == (8, 8)
        np.testing.assert_allclose(got, scores, atol=1e-5, err_msg=name)  # rows writer heads, columns reader heads
        assert (scores > 0).all() and (scores <= 1).all()


def test_composition_is_zero_when_the_writer_and_reader_spaces_are_orthogonal(run):
    model = run.model
    half = model.blocks[0].wo.shape[-1] // 2
    # layer 1 writes only the first half of the residual dimensions ...
    model = eqx.tree_at(lambda m: m.blocks[0].wo, model, model.blocks[0].wo.at[:, :, half:].set(0.0))
    # ... and layer 2 reads only the second half
    reads_second = eqx.tree_at(lambda m: (m.blocks[1].wq, m.blocks[1].wk, m.blocks[1].wv), model,
                               tuple(w.at[:, :half, :].set(0.0) for w in (model.blocks[1].wq, model.blocks[1].wk, model.blocks[1].wv)))
    # ... or reads everything, but its LayerNorm gain removes the first half
    gain_off = eqx.tree_at(lambda m: m.blocks[1].ln.weight, model, model.blocks[1].ln.weight.at[:half].set(0.0))
    for case in (reads_second, gain_off):
        scores = composition_scores(dataclasses.replace(run, model=case))
        for name in ("Q", "K", "V"):
            assert np.asarray(scores[name]).shape == (8, 8)
            assert np.all(np.asarray(scores[name]) == 0.0), name
    # while the writer alone restricted still composes with an unrestricted reader
    assert np.all(np.asarray(composition_scores(dataclasses.replace(run, model=model))["V"]) > 0)


def test_table2_subset(result, hand):
    s = result["subset"]
    alone = {h: hand.run(hand.zero_v(L2=hand.others(h)))[0] for h in range(hand.heads)}
    accuracy = {h: float(c.mean()) for h, c in alone.items()}
    ref = max(range(hand.heads), key=lambda h: accuracy[h])
    assert s["reference"] == f"L2.H{ref}"
    assert s["sequences"] == N
    misses = ~alone[ref]
    assert s["wrong"] == int(misses.sum()) > 0
    assert s["accuracy_all"] == {f"H{h}": round(accuracy[h], 6) for h in range(hand.heads)}
    assert s["accuracy_all"] == {h: v["accuracy"] for h, v in result["heads"]["L2"]["only_one"].items()}
    assert s["accuracy_all"][f"H{ref}"] == max(s["accuracy_all"].values())
    assert s["wrong"] == round((1 - s["accuracy_all"][f"H{ref}"]) * N)
    assert s["accuracy_on_wrong"][f"H{ref}"] == 0.0
    assert s["accuracy_on_wrong"] == {f"H{h}": round(float(alone[h][misses].mean()), 6) for h in range(hand.heads)}


# --------------------------------------------------------------------------- Figures 14 and 16, Table 3


@pytest.fixture(scope="module")
def extra(run):
    return analyze(run, what=("perfected", "added"), n=N, bare=True)


def perfect_match(hand, h) -> Overrides:
    """Every layer-2 head but `h` silenced (values zeroed), and `h`'s query row attending only to the
    correct label's token (position 2p+1 of the pair p whose class is the query's)."""
    classes = np.asarray(hand.batch["classes"])
    t = classes.shape[1] * 2 - 1
    row = np.zeros((len(classes), t))
    pair = (classes[:, :-1] == classes[:, -1:]).argmax(1)
    row[np.arange(len(classes)), 2 * pair + 1] = 1.0
    value = np.zeros((len(classes), 1, t, t), np.float32)
    value[:, 0, t - 1] = row
    mask = np.zeros((hand.heads, t, t), bool)
    mask[h, t - 1] = True
    silenced = hand.zero_v(L2=hand.others(h))
    return Overrides({**silenced.values, "L2.pattern": jnp.asarray(value)}, {**silenced.masks, "L2.pattern": jnp.asarray(mask)})


def test_each_head_alone_with_a_perfect_match_and_its_labels(extra, result, hand):
    p = extra["perfected"]
    assert p["layer"] == "L2"
    assert p["label_counts"] == np.bincount(hand.target, minlength=5).tolist()
    for h in range(hand.heads):
        entry = p["heads"][f"H{h}"]
        assert entry["computed"] == result["heads"]["L2"]["only_one"][f"H{h}"]
        correct, loss = hand.run(perfect_match(hand, h))
        assert_same(entry["perfected"], (correct, loss), f"H{h} perfected")
        for lab in range(5):
            these = hand.target == lab
            assert entry["accuracy_by_label"][lab] == round(float(correct[these].mean()), 6)
            wrong = ~correct
            share = entry["mistake_share_by_label"][lab]
            assert share == (round(float((wrong & these).sum() / wrong.sum()), 6) if wrong.any() else None)
        if (~correct).any():
            assert abs(sum(entry["mistake_share_by_label"]) - 1) < 1e-5
    # Table 3: Table 2's rule on the perfected heads
    alone = {h: hand.run(perfect_match(hand, h))[0] for h in range(hand.heads)}
    ref = max(range(hand.heads), key=lambda h: alone[h].mean())
    s = p["subset"]
    assert s["reference"] == f"L2.H{ref}" and s["wrong"] == int((~alone[ref]).sum())
    assert s["accuracy_on_wrong"][f"H{ref}"] == (0.0 if s["wrong"] else None)
    assert s["accuracy_all"] == {f"H{h}": p["heads"][f"H{h}"]["perfected"]["accuracy"] for h in range(hand.heads)}


def test_heads_added_in_order_of_induction_strength(extra, result, hand):
    a = extra["added"]
    query = hand.acts["L2.pattern"][:, :, -1, 1:-1:2]  # (B, H, pairs): attention from the query to each label
    correct = np.asarray(hand.batch["classes"][:, :-1] == hand.batch["classes"][:, -1:], np.float32)
    strength = np.asarray((query * (correct[:, None] - (1 - correct[:, None]))).sum(-1).mean(0))
    order = sorted(range(hand.heads), key=lambda h: -strength[h])
    assert a["order"] == [f"H{h}" for h in order]
    assert all(abs(a["strength"][f"H{h}"] - strength[h]) < 1e-5 for h in range(hand.heads))
    assert len(a["from_strongest"]) == hand.heads and len(a["from_second"]) == hand.heads - 1
    assert a["from_strongest"][-1] == result["full"]
    assert a["from_strongest"][0] == result["heads"]["L2"]["only_one"][f"H{order[0]}"]
    for k in (2, 5):
        on = order[:k]
        assert_same(a["from_strongest"][k - 1], hand.run(hand.zero_v(L2=[g for g in range(hand.heads) if g not in on])), f"first {k}")
        on = order[1 : k + 1]
        assert_same(a["from_second"][k - 1], hand.run(hand.zero_v(L2=[g for g in range(hand.heads) if g not in on])), f"second {k}")


def test_perfected_and_added_run_only_when_named(result):
    assert "perfected" not in result and "added" not in result


# --------------------------------------------------------------------------- the command line


def _no_traceback(res):
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


def test_cli_analyze_errors_exit_2_without_a_traceback(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    runner = CliRunner()
    cases = [
        (["--group", "L3.H1"], ["no layer L3", "layers count from 1, heads from 0", "L1..L2"]),
        (["--group", "L1.H8"], ["no head H8", "layers count from 1, heads from 0", "H0..H7"]),
        (["--group", "L1.H1,H2"], ["--group:1:6: error:", "L1.H[1,2,5]"]),
        (["--group", "L[1,2].H1"], ["names heads of more than one layer"]),
        (["--group", "L0.H1"], ["L0", "layers count from 1, heads from 0"]),
        (["--only", "nonsense"], ["nonsense", "heads, groups, paths, composition, subset"]),
        (["--sequences", "zero"], ["zero", "a positive number, or 'all'"]),
        (["--sequences", "0"], ["cannot read --sequences '0'"]),
    ]
    for args, expected in cases:
        res = runner.invoke(app, ["analyze", str(copy), *args])
        assert res.exit_code == 2, (args, res.output)
        for text in expected:
            assert text in res.output, (args, text, res.output)
        _no_traceback(res)
        assert not (copy / "analysis.json").exists(), args

    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    res = runner.invoke(app, ["analyze", str(not_a_run), "--sequences", "10"])
    assert res.exit_code == 2
    assert str(not_a_run) in res.output and "not a run directory" in res.output
    _no_traceback(res)
    assert not (not_a_run / "analysis.json").exists()


def test_cli_analyze_json_then_report(run_dir, tmp_path, result):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", str(copy), "--sequences", str(N), "--only", "heads", "--json", "--bare"])
    assert res.exit_code == 0, res.output
    _no_traceback(res)
    printed = json.loads(res.stdout)
    assert json.loads((copy / "analysis.json").read_text()) == printed
    assert set(printed) == {"run_dir", "spec", "sequences", "bare", "interventions", "bindings", "eval", "chance", "scored", "references", "measures", "full", "heads"}
    assert printed["bare"] is True and printed["interventions"] == "none"
    assert printed["run_dir"] == str(copy) and printed["eval"]["sequences"] == N
    # the same sequences (seed 0) as the in-process analysis: the same numbers
    assert printed["full"] == result["full"] and printed["heads"] == result["heads"]

    out = tmp_path / "report"
    res = runner.invoke(app, ["report", str(copy), "--out", str(out)])
    assert res.exit_code == 0, res.output
    _no_traceback(res)
    text = (out / "report.md").read_text()
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ablation.png" in text
    assert "One head ablated, or only one on (Figure 4a)" in text  # the tables read from analysis.json


def test_cli_analyze_only_keeps_the_sections_of_the_same_checkpoint_and_sequences(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    runner = CliRunner()

    def analyze_(*args):
        res = runner.invoke(app, ["analyze", str(copy), "--sequences", str(N), "--bare", *args])
        assert res.exit_code == 0, res.output
        _no_traceback(res)
        return res.stdout.splitlines()[-1], json.loads((copy / "analysis.json").read_text())

    analyze_("--only", "heads")
    line, written = analyze_("--only", "composition")
    assert "kept from the earlier analysis of this checkpoint and these sequences: heads" in line
    assert {"heads", "composition"} <= set(written)
    # other sequences (another sampling seed): the earlier sections are not mixed in
    line, written = analyze_("--only", "composition", "--seed", "1")
    assert "replaces an earlier analysis" in line and "heads" not in written and written["eval"]["seed"] == 1
    # a damaged earlier file does not cost the new sections
    (copy / "analysis.json").write_text("{")
    line, written = analyze_("--only", "heads")
    assert "could not be read" in line and "heads" in written
