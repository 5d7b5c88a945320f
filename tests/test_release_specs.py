"""The release-time map's specs (specs/beyond/): each checks and explains as eight runs, one clamp released at k."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

K = [5_000, 10_000, 20_000, 35_000, 60_000, 100_000, 175_000, 300_000]
RUNGS = {"release_prev_token": ("clamp", "L1.H2.pattern"), "release_match": ("clamp", "L2.H3.pattern"),
         "release_copy": ("copy", "logits"), "release_prev_token_stopgrad": ("stopgrad", "L1.H2.pattern")}


def opto(*args):
    return subprocess.run([sys.executable, "-m", "optodsl", *args], capture_output=True, text=True)


@pytest.mark.parametrize("rung", sorted(RUNGS))
def test_each_rung_checks_and_explains_as_eight_schedules_released_at_k(rung):
    path = f"specs/beyond/{rung}.opto"
    checked = opto("check", path)
    assert checked.returncode == 0 and "8 runs, 0 warnings" in checked.stdout, checked.stdout + checked.stderr
    explained = opto("explain", path, "--json")
    assert explained.returncode == 0, explained.stderr
    actions = [{"run": r["run"], **a} for r in json.loads(explained.stdout) for a in r["interventions"]]
    verb, site = RUNGS[rung]
    released = {a["run"]: a["schedule"] for a in actions if a["verb"] == verb and a["site"] == site}
    assert len(released) == 8
    assert sorted(released.values(), key=lambda s: int(s.split("..")[1])) == [f"0..{k}" for k in K]
    kept = {a["schedule"] for a in actions if a["verb"] == "ablate"}
    assert kept <= {"always"}


def _fake_run(folder, member, bindings, curve):
    """A finished run directory as `opto run` leaves it, with a given train accuracy curve."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "spec.json").write_text(json.dumps({"path": "release_prev_token_seeds.opto", "member": member, "bindings": bindings}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"sequences": x, "train/accuracy": y}) + "\n" for x, y in curve))


def test_the_release_map_gives_each_k_its_mean_and_range_over_seeds_beside_the_unclamped_runs(tmp_path):
    """Two seeds released at 10k and 20k: the table gives each k's mean (min-max) over the seeds of the
    first evaluation at or after the release with accuracy 0.9, and the unclamped runs' own crossing."""
    root = tmp_path / "runs"
    curve = lambda dip, back: [(5_000, 0.95), (10_000, dip), (15_000, 0.5), (back, 0.92), (60_000, 0.99)]  # noqa: E731
    for seed, back in ((5, 30_000), (6, 40_000)):
        for k in (10_000, 20_000):
            name = f"release_prev_token_seeds-k{k // 1000}k-seed{seed}"
            _fake_run(root / "release_prev_token_seeds" / name, name, {"k": k, "seed": seed}, curve(0.6, back + k - 10_000))
    refs = []
    for seed, at in ((5, 45_000), (6, 55_000)):
        ref = tmp_path / f"ref{seed}"
        _fake_run(ref, f"only-seed{seed}", {"seed": seed}, [(20_000, 0.5), (at, 0.9), (60_000, 0.95)])
        refs.append(ref)
    result = subprocess.run([sys.executable, ROOT / "specs" / "beyond" / "plot_release_map.py", root, "--reference", *refs,
                             "--out", tmp_path / "map.png"], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    same = lambda v: f"{v} ({v}-{v})"  # noqa: E731
    assert (f"| clamp_prev_token | 10,000 | 2 | {same('0.950')} | {same('0.600')} | {same('0.500')} | 35k (30k-40k) | "
            f"{same('0.990')} |") in lines
    assert (f"| clamp_prev_token | 20,000 | 2 | {same('0.500')} | {same('0.920')} | {same('0.920')} | 45k (40k-50k) | "
            f"{same('0.990')} |") in lines
    assert "no clamp: train accuracy 0.9 at 50k (45k-55k) (2 runs)" in lines and (tmp_path / "map.png").stat().st_size > 0
    # paired by seed: each released run against its own seed's unclamped run
    assert "| clamp_prev_token | 10,000 | 35k (30k-40k) | -15k to -15k (2 of 2 earlier) |" in lines
    assert "| clamp_prev_token | 20,000 | 45k (40k-50k) | -5k to -5k (2 of 2 earlier) |" in lines


SEED_RUNGS = {"release_prev_token_seeds": ("clamp", "L1.H2.pattern"), "release_prev_token_stopgrad_seeds": ("stopgrad", "L1.H2.pattern"),
              "release_match_seeds": ("clamp", "L2.H{h}.pattern"), "release_match_stopgrad_seeds": ("stopgrad", "L2.H{h}.pattern"),
              "release_copy_seeds": ("copy", "logits")}
STRONGEST = {5: 1, 6: 3, 7: 2}  # each seed's strongest layer-2 head, as specs/paper/fig5b_strongest_seeds.opto


@pytest.mark.parametrize("rung", sorted(SEED_RUNGS))
def test_each_three_seed_rung_releases_at_each_k_on_each_seed_with_that_seeds_strongest_head(rung):
    from typer.testing import CliRunner

    from optodsl.cli import app

    explained = CliRunner().invoke(app, ["explain", f"specs/beyond/{rung}.opto", "--json"])
    assert explained.exit_code == 0, explained.output
    runs = json.loads(explained.stdout)
    assert len(runs) == 24
    verb, site = SEED_RUNGS[rung]
    released = set()
    for run in runs:
        seed, h = int(run["bindings"]["seed"]), int(run["bindings"]["h"])
        assert STRONGEST[seed] == h
        (action,) = [a for a in run["interventions"] if a["verb"] == verb]
        assert action["site"] == site.format(h=h)
        released.add((seed, action["schedule"]))
        ablated = [a for a in run["interventions"] if a["verb"] == "ablate"]
        if rung != "release_copy_seeds":  # only the seed's strongest layer-2 head on, as in Figure 5b's ladder
            assert {a["site"] for a in ablated} == {f"L2.H{x}.v" for x in range(8) if x != h}
        else:
            assert not ablated
    assert released == {(s, f"0..{k}") for s in STRONGEST for k in K}


def test_a_stopgrad_rung_is_drawn_in_grey_and_named_for_the_clamp_rung_whose_side_effect_it_keeps():
    from optodsl.report.figures import _rung_style

    style, held = _rung_style("stopgrad_prev_token")
    clamp, clamp_held = _rung_style("clamp_prev_token")
    assert (held, clamp_held) == ("gradient stopped", "clamp held")
    assert style.color == "dimgrey" and style.name == f"gradient stop only ({clamp.name.removeprefix('clamp ')})"
    assert clamp.color == "orange"
