"""The toy model of Figure 5a: a plateau when free, none when b and c are clamped, hidden progress."""

import numpy as np

from optodsl.analysis.toy import train_toy


def test_free_toy_model_plateaus_then_drops_and_clamping_removes_the_plateau():
    free, c_only, bc = (train_toy(clamp) for clamp in ("none", "c", "bc"))
    loss = free["loss"]
    plateau = loss[100:1000]
    assert np.ptp(plateau) < 0.02 * plateau.mean()  # flat for 900 steps
    assert loss[-1] < 1e-4  # then it is solved
    assert bc["loss"][100] < 0.1 * bc["loss"][0] and np.all(np.diff(bc["loss"][:800]) <= 1e-9)  # smooth, no plateau
    first_solved = lambda curve: int(np.argmax(curve["loss"] < 1e-3))
    assert first_solved(bc) < first_solved(c_only) < first_solved(free)
    # the progress measures move during the plateau, while the loss does not
    assert free["loss_with_b_c_perfect"][1000] < 0.9 * free["loss_with_b_c_perfect"][100]
    assert free["one_minus_cos2_a"][1000] < free["one_minus_cos2_a"][100]


def test_toy_command_writes_its_figure(tmp_path):
    from typer.testing import CliRunner

    from optodsl.cli import app

    result = CliRunner().invoke(app, ["toy", "--out", str(tmp_path), "--steps", "300"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "toy.png").read_bytes()[:4] == b"\x89PNG"
