"""Figures the paper's way: each paper curve in the paper's colour and name, seeds drawn as a mean with a min-max band."""

from __future__ import annotations

import json

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.collections import PolyCollection

from optodsl.report import load_runs
from optodsl.report.figures import curves_figure, curves_of, seed_band, toy_figure

FIG5B = {"only_h3": ("black", "no clamp"), "clamp_prev_token": ("orange", "clamp Step 1 (PT-attend)"),
         "clamp_layer1": ("red", "clamp Layer 1 (Steps 1, 2)"), "clamp_match": ("green", "clamp match (Steps 1, 2, 3qk, 4)"),
         "clamp_copy": ("blue", "clamp copy (Steps 3v, 5)"),
         "clamp_layer1_and_copy": ("purple", "clamp Layer 1 and copy (Steps 1, 2, 3v, 5)")}


def fake_run(path, spec, member, bindings, losses):
    """A run directory with one evaluation every 1,000 sequences and the given train losses."""
    path.mkdir(parents=True)
    records = [{"sequences": i * 1000, "step": i * 1000 // 32, "train/loss": ls, "train/accuracy": 1 - ls / 2}
               for i, ls in enumerate(losses)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / "config.json").write_text(json.dumps({"model": {"layers": 2, "heads": 8}}))
    (path / "spec.json").write_text(json.dumps({"sha256": "0" * 64, "path": spec, "bindings": bindings, "member": member}))
    return path


def test_fig5b_curves_take_the_paper_colours_and_names(tmp_path):
    for variant in FIG5B:
        fake_run(tmp_path / f"fig5b-{variant}", "specs/paper/fig5b.opto", f"fig5b-{variant}", {}, [0.7, 0.5, 0.1])
    fig = curves_figure(load_runs([tmp_path]), "loss")
    drawn = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    for color, name in FIG5B.values():
        assert to_rgba(drawn[name]) == to_rgba(color), name


def test_seeds_of_one_variant_make_one_curve_whose_band_spans_their_min_and_max(tmp_path):
    losses = {5: [0.9, 0.6, 0.2], 6: [0.8, 0.7, 0.1], 7: [1.0, 0.5, 0.3, 0.05]}
    for seed, ls in losses.items():
        name = f"fig5b_seeds-clamp_match-seed{seed}"
        fake_run(tmp_path / name, "specs/paper/fig5b_seeds.opto", name, {"seed": seed}, ls)
    runs = load_runs([tmp_path])
    (curve,) = curves_of(runs)
    assert curve.color == "green" and curve.label.startswith("clamp match")
    xs, mean, lo, hi = seed_band(curve.runs, "train/loss")
    assert xs.tolist() == [0, 1000, 2000]  # only the evaluations every seed has
    assert np.allclose(lo, [0.8, 0.5, 0.1]) and np.allclose(hi, [1.0, 0.7, 0.3])
    assert np.allclose(mean, [0.9, 0.6, 0.2])
    fig = curves_figure(runs, "loss")
    (band,) = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 0.1) and np.isclose(ys.max(), 1.0)


def test_runs_outside_the_paper_keep_their_own_labels_and_distinct_colours(tmp_path):
    for k in ("5000", "10k"):
        fake_run(tmp_path / f"release-k{k}", "specs/beyond/release.opto", f"release-k{k}", {"k": int(k.replace("k", "000"))},
                 [0.7, 0.6])
    curves = curves_of(load_runs([tmp_path]))
    assert sorted(c.label for c in curves) == ["release-k10k", "release-k5000"]
    assert curves[0].color != curves[1].color


def test_toy_figure_draws_free_c_and_bc_in_black_blue_purple():
    curve = {"loss": np.array([1.0, 0.5]), "one_minus_cos2_a": np.array([1.0, 0.9]),
             "loss_with_b_c_perfect": np.array([0.8, 0.7])}
    fig = toy_figure({"none": curve, "c": curve, "bc": curve})
    drawn = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    assert drawn == {"free": "black", "c clamped": "blue", "b and c clamped": "purple"}


def test_the_seeds_table_gives_mean_range_and_how_many_seeds_reach_the_phase_change(tmp_path):
    from optodsl.report.summary import seeds_table

    # train accuracy is 1 - loss / 2: >= 0.9 from loss 0.2 on; seed 7 never gets there
    losses = {5: [0.9, 0.6, 0.2], 6: [0.8, 0.2, 0.1], 7: [1.0, 0.5, 0.3]}
    for seed, ls in losses.items():
        name = f"fig5b_seeds-clamp_copy-seed{seed}"
        fake_run(tmp_path / name, "specs/paper/fig5b_seeds.opto", name, {"seed": seed}, ls)
    text = seeds_table(load_runs([tmp_path]))
    row = text.splitlines()[2]
    assert row.startswith("| clamp copy (Steps 3v, 5) | 3 | 1,500 (1,000–2,000), 2 of 3 seeds | 2 of 3 |")
    assert "0.900 (0.850–0.950)" in row


def _bare_run(spec, member, bindings):
    from pathlib import Path

    from optodsl.report.load import Run

    return Run(Path(member), member, spec, member, bindings)


def test_a_variable_paired_with_the_seed_joins_its_band_and_a_crossed_one_does_not():
    """`sweep (seed, h) in [(5, 1), (6, 3), (7, 2)]` (each seed its own head) draws one band per variant;
    `sweep h in [1, 3]` crossed with `sweep seed in [5, 6]` draws one band per head."""
    spec = "specs/paper/fig5b_strongest_seeds.opto"
    paired = [_bare_run(spec, f"fig5b_strongest_seeds-{v}-seed{s}-h{h}", {"seed": s, "h": h})
              for v in ("only_strongest", "clamp_match") for s, h in ((5, 1), (6, 3), (7, 2))]
    curves = curves_of(paired)
    assert sorted(c.label.split(" (mean")[0] for c in curves) == ["clamp match (Steps 1, 2, 3qk, 4)", "no clamp"]
    assert all(len(c.runs) == 3 for c in curves)
    assert next(c for c in curves if c.label.startswith("no clamp")).color == "black"
    crossed = [_bare_run("x.opto", f"x-h{h}-seed{s}", {"h": h, "seed": s}) for h in (1, 3) for s in (5, 6)]
    assert sorted(len(c.runs) for c in curves_of(crossed)) == [2, 2]
    assert {tuple(sorted(r.bindings["h"] for r in c.runs)) for c in curves_of(crossed)} == {(1, 1), (3, 3)}
