"""`curves.png`: loss and accuracy of every evaluation set against sequences seen."""

from __future__ import annotations

import io
from pathlib import Path

from ..files import atomic_write_bytes
from ..tasks import Reading
from ..tasks.records import set_key, set_of


def plot_curves(metrics: list[dict], path: Path, reading: Reading, title: str = "") -> None:
    """`curve_figure` as a PNG, written atomically."""
    import matplotlib.pyplot as plt

    fig = curve_figure(metrics, reading, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def curve_figure(metrics: list[dict], reading: Reading, title: str = ""):
    """Loss and accuracy per evaluation set, with the fixed levels and reference losses the task's
    reading declares (the few-shot task's ln 2 plateau; the Markov task's unigram and bigram predictors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [name for key in (metrics[0] if metrics else {}) if (name := set_of(key, "loss")) is not None]
    xs = [m["sequences"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for s in sets:
        ax_loss.plot(xs, [m[set_key(s, "loss")] for m in metrics], label=s)
        ax_acc.plot(xs, [m[set_key(s, "accuracy")] for m in metrics], label=s)
        for name in reading.reference_losses:
            if set_key(s, name) in metrics[0]:
                ax_loss.plot(xs, [m[set_key(s, name)] for m in metrics], ls="--", lw=1, label=f"{s}/{name}")
    for level in reading.loss_levels:
        if level.value is not None:
            ax_loss.axhline(level.value, color="grey", ls=":", lw=1, label=level.label)
    ax_loss.set(xlabel="training sequences seen", ylabel="loss (nats)", title="loss", yscale="log")
    for level in reading.accuracy_levels:
        if level.value is not None:
            ax_acc.axhline(level.value, color="grey", ls=":", lw=1, label=level.label)
    ax_acc.set(xlabel="training sequences seen", ylabel="accuracy (fraction)", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
