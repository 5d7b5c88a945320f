"""curves.png draws what the run's task declares: the few-shot task's ln 2 plateau, the Markov task's
unigram and Bayes bigram predictors beside the model's loss (never the few-shot plateau there)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from optodsl.config import ExperimentConfig, MarkovTaskConfig
from optodsl.tasks import reading
from optodsl.train.curves import curve_figure, plot_curves


def _loss_axis(metrics, task):
    fig = curve_figure(metrics, task)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    plt.close(fig)
    return lines


def test_markov_curves_show_the_reference_predictors_and_no_ln2():
    metrics = [{"sequences": s, "train/loss": 1.0 - s / 1e6, "train/accuracy": 0.5, "train/unigram_loss": 1.008,
                "train/bigram_loss": 0.888, "train/kl_bigram": 0.1} for s in (0, 3200, 6400)]
    lines = _loss_axis(metrics, reading(ExperimentConfig(task=MarkovTaskConfig())))
    assert set(lines) == {"train", "train/unigram_loss", "train/bigram_loss", "uniform (ln 3)"}
    assert lines["uniform (ln 3)"].get_ydata()[0] == math.log(3)
    assert list(lines["train/bigram_loss"].get_ydata()) == [0.888] * 3


def test_fewshot_curves_mark_the_plateau_at_ln2(tmp_path):
    metrics = [{"sequences": s, "train/loss": 0.7, "train/accuracy": 0.5, "test_classes/loss": 0.7,
                "test_classes/accuracy": 0.5} for s in (0, 5000)]
    fewshot = reading(ExperimentConfig())
    lines = _loss_axis(metrics, fewshot)
    plateau = "chance among the context's labels (ln 2)"
    assert set(lines) == {"train", "test_classes", plateau}
    assert lines[plateau].get_ydata()[0] == math.log(2)
    plot_curves(metrics, tmp_path / "curves.png", fewshot, title="run")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
