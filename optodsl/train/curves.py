"""`curves.png`: loss and accuracy of every evaluation set against sequences seen."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..files import atomic_write_bytes
from ..tasks.records import set_key, set_of


def plot_curves(metrics: list[dict], path: Path, title: str = "") -> None:
    """Draw loss (with ln 2 marked) and accuracy per evaluation set; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [name for key in (metrics[0] if metrics else {}) if (name := set_of(key, "loss")) is not None]
    xs = [m["sequences"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for s in sets:
        ax_loss.plot(xs, [m[set_key(s, "loss")] for m in metrics], label=s)
        ax_acc.plot(xs, [m[set_key(s, "accuracy")] for m in metrics], label=s)
    ax_loss.axhline(math.log(2), color="grey", ls=":", lw=1, label="ln 2")
    ax_loss.set(xlabel="training sequences seen", ylabel="loss (nats)", title="loss", yscale="log")
    ax_acc.axhline(0.5, color="grey", ls=":", lw=1)
    ax_acc.set(xlabel="training sequences seen", ylabel="accuracy (fraction)", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
