"""Figures of the series files (`--over-training`): heads x time heat maps of ablation cost, and the
full model's loss and each measure over training. Pure functions from loaded runs, drawn with the
helpers of `figures` (its figure factory, cell edges and sequence ticks)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .figures import X_LABEL, _edges, _figure, format_sequences, measure_words, run_colors
from .load import Run


def _series_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.analysis_series is not None and r.analysis_series.heads]


def ablation_cost_figure(runs: list[Run]) -> Figure | None:
    """Per run (rows) and layer (columns): the loss increase over the full model when each head
    (rows of the panel) is ablated alone, at each kept point (columns, in sequences); None without a series."""
    analysed = _series_runs(runs)
    if not analysed:
        return None
    layers = list(dict.fromkeys(layer for r in analysed for layer in r.analysis_series.heads))
    costs = {(r.path, layer): r.analysis_series.ablation_cost(layer) for r in analysed for layer in r.analysis_series.heads}
    values = np.concatenate([np.ravel(c) for _, c in costs.values() if c])
    hi = max(float(np.nanmax(np.abs(values))), 1e-6) if values.size else 1.0
    n_heads = max(len(h) for h, _ in costs.values())
    fig = _figure(5.0 * len(layers) + 1.2, max(2.4, 0.25 * n_heads + 1.3) * len(analysed) + 0.6)
    axes = fig.subplots(len(analysed), len(layers), squeeze=False)
    mesh = None
    for i, run in enumerate(analysed):
        xs = run.analysis_series.sequences
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            if (run.path, layer) not in costs:
                ax.set_visible(False)
                continue
            heads, cost = costs[(run.path, layer)]
            mesh = ax.pcolormesh(_edges(xs), np.arange(len(heads) + 1), np.asarray(cost), cmap="RdBu_r", vmin=-hi, vmax=hi,
                                 shading="flat")
            ax.set_yticks(np.arange(len(heads)) + 0.5, [f"{layer}.{h}" for h in heads], fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{run.label}: {layer}", fontsize=10)
            ax.set_xlabel(X_LABEL)
            ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
    fig.colorbar(mesh, ax=list(axes.ravel()), label="loss increase when ablated (nats)", shrink=0.9)
    fig.suptitle("Each head ablated alone at every kept point: its cost over the full model")
    return fig


def over_training_figure(runs: list[Run]) -> Figure | None:
    """Per run (rows): the full model's loss at each kept point, with each `opto eval --over-training`
    run's loss on the training set beside it; then one panel per measure, a line per head."""
    drawn = [r for r in runs if r.analysis_series is not None or r.eval_series is not None]
    if not drawn:
        return None
    measures = list(dict.fromkeys(m for r in drawn if r.analysis_series for m in r.analysis_series.measures))
    fig = _figure(4.2 * (1 + len(measures)) + 0.5, 3.2 * len(drawn) + 0.6)
    axes = fig.subplots(len(drawn), 1 + len(measures), squeeze=False)
    for i, run in enumerate(drawn):
        ax = axes[i, 0]
        series = run.analysis_series
        if series is not None:
            ax.plot(series.sequences, series.full.loss, "o-", color="black", ms=3, label="full model (analysis)")
        if run.eval_series is not None:
            names = list(run.eval_series.runs)
            for name, color in zip(names, run_colors(len(names))):
                scores = next(iter(run.eval_series.runs[name].sets.values()))
                ax.plot(run.eval_series.sequences, scores.loss, ".--", color=color, lw=1, label=name)
        ax.set(xlabel=X_LABEL, ylabel="loss (nats)", title=f"{run.label}: loss at each point")
        ax.legend(fontsize=6)
        for j, measure in enumerate(measures, start=1):
            panel = axes[i, j]
            per_layer = series.measures.get(measure, {}) if series is not None else {}
            heads = [(layer, h, v) for layer, per_head in per_layer.items() for h, v in per_head.items()]
            for (layer, h, v), color in zip(heads, run_colors(len(heads))):
                panel.plot(series.sequences, v, "o-", ms=2, lw=1, color=color, label=f"{layer}.{h}")
            title, _ = measure_words([run], measure)
            panel.set(xlabel=X_LABEL, title=f"{title} per head")
            if heads:
                panel.legend(fontsize=5, ncols=math.ceil(len(heads) / 8))
        for a in axes[i]:
            a.xaxis.set_major_formatter(FuncFormatter(format_sequences))
            a.grid(alpha=0.3)
    fig.suptitle("Over training, at each kept point of the checkpoint series")
    return fig


SERIES_FIGURES = {
    "ablation_over_training.png": ablation_cost_figure,
    "over_training.png": over_training_figure,
}
