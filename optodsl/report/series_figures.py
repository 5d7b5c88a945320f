"""Figures of the series files (`--over-training`): heads x time heat maps of ablation cost, and the
full model's loss and each measure over training. Pure functions from loaded runs, drawn with the
helpers of `figures` (its figure factory, cell edges and sequence ticks)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from matplotlib import colormaps
from matplotlib.colors import LogNorm

from .curvestats import chosen_points, curve_key, stages
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


def trajectory_figure(runs: list[Run]) -> Figure | None:
    """Per run: the per-token loss trajectory, each kept point on the first two principal components of
    the points' loss vectors (the first against the sequences when there is one), coloured by its
    length; the points the report's tables show are labelled."""
    drawn = [r for r in runs if r.analysis_series is not None and r.analysis_series.trajectory is not None]
    if not drawn:
        return None
    fig = _figure(4.2 * len(drawn) + 1.0, 3.9)
    axes = fig.subplots(1, len(drawn), squeeze=False)[0]
    xs_all = [x for r in drawn for x in r.analysis_series.sequences]
    norm = LogNorm(max(1, min(xs_all)), max(2, max(xs_all)))
    scatter = None
    for ax, run in zip(axes, drawn):
        series = run.analysis_series
        t, xs = series.trajectory, series.sequences
        x = t.coordinates[0]
        y = t.coordinates[1] if len(t.coordinates) > 1 else xs
        ax.plot(x, y, "-", color="0.6", lw=1, zorder=1)
        scatter = ax.scatter(x, y, c=xs, cmap="viridis", norm=norm, s=22, zorder=2)
        for seen in sorted({xs[0], *chosen_points(run)}):
            i = xs.index(seen)
            ax.annotate(format_sequences(seen), (x[i], y[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"PC1 ({100 * t.explained[0]:.0f}% of the variance)")
        ax.set_ylabel(f"PC2 ({100 * t.explained[1]:.0f}%)" if len(t.coordinates) > 1 else X_LABEL)
        ax.set_title(f"{run.label}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.colorbar(scatter, ax=list(axes), label=X_LABEL, format=FuncFormatter(format_sequences))
    fig.suptitle(f"Per-token loss trajectory: the loss on {drawn[0].analysis_series.trajectory.sequences:,} fixed "
                 "sequences at each kept point, on its first principal components")
    return fig


def _marks(ax, run: Run) -> None:
    """Dotted lines at the points whose tables the report shows."""
    for seen in chosen_points(run):
        ax.axvline(seen, color="0.5", ls=":", lw=0.8)


KINDS = (("ablated", "ablated", "tab:red"), ("pattern_preserving", "pattern-preserving", "tab:blue"),
         ("value_preserving", "value-preserving", "tab:green"))


def groups_figure(runs: list[Run]) -> Figure | None:
    """Table 1 over training: per run (rows) and group (columns), the accuracy with the group ablated,
    ablated keeping the next layer's pattern, and keeping its values, with the full model's, at each point."""
    drawn = [r for r in runs if r.analysis_series is not None and r.analysis_series.analyses.get("groups")]
    if not drawn:
        return None
    cols = max(len(r.analysis_series.analyses["groups"][-1]) for r in drawn)
    fig = _figure(3.6 * cols + 0.5, 2.8 * len(drawn) + 0.6)
    axes = fig.subplots(len(drawn), cols, squeeze=False)
    for i, run in enumerate(drawn):
        series = run.analysis_series
        sections = series.analyses["groups"]
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(sections[-1]):
                ax.set_visible(False)
                continue
            name = sections[-1][j]["name"]
            ax.plot(series.sequences, series.full.accuracy, "--", color="black", lw=1, label="full model")
            for key, words, color in KINDS:
                ys = [next((g.get(key) or {}).get("accuracy", math.nan) for g in s if g["name"] == name) for s in sections]
                if not all(math.isnan(y) for y in ys):
                    ax.plot(series.sequences, ys, "o-", ms=2.5, lw=1.2, color=color, label=words)
            _marks(ax, run)
            ax.set(xlabel=X_LABEL, ylabel=f"{run.label}\naccuracy" if j == 0 else "accuracy", ylim=(-0.02, 1.02))
            ax.set_title(name, fontsize=9)
            ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    fig.suptitle("Table 1 over training: each head group ablated, and ablated keeping the next layer's pattern or values")
    return fig


def paths_figure(runs: list[Run]) -> Figure | None:
    """The path map (Figure 11b) over training: per run and layer pair (rows), the map at each point the
    report shows (heat maps), then every path's accuracy over training, the three best at the last point
    coloured."""
    rows = [(r, pair) for r in runs if r.analysis_series is not None and r.analysis_series.analyses.get("paths")
            for pair in r.analysis_series.analyses["paths"][-1]]
    if not rows:
        return None
    cols = max(len(chosen_points(r)) for r, _ in rows) + 1
    fig = _figure(2.9 * cols + 1.5, 2.8 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    mesh = None
    for i, (run, pair) in enumerate(rows):
        series = run.analysis_series
        sections = series.analyses["paths"]
        earlier, later = pair.split("-")
        shown = chosen_points(run)
        for j in range(cols - 1):
            ax = axes[i, j]
            if j >= len(shown):
                ax.set_visible(False)
                continue
            acc = np.asarray(sections[series.sequences.index(shown[j])][pair]["accuracy"], dtype=float)
            mesh = ax.imshow(acc, vmin=0, vmax=1, cmap="viridis")
            ax.set_title(f"at {format_sequences(shown[j])}", fontsize=9)
            ax.set_xlabel(f"{later} head kept on", fontsize=8)
            ax.set_ylabel(f"{run.label}\n{earlier} head kept on" if j == 0 else f"{earlier} head kept on", fontsize=8)
        ax = axes[i, -1]
        every = np.asarray([s[pair]["accuracy"] for s in sections], dtype=float)  # (points, a, b)
        last = every[-1].ravel()
        best = np.argsort(-np.nan_to_num(last, nan=-1))[:3]
        flat = every.reshape(len(sections), -1)
        for k in range(flat.shape[1]):
            if k not in best:
                ax.plot(series.sequences, flat[:, k], color="0.75", lw=0.6)
        n = every.shape[2]
        for k, color in zip(best, colormaps["tab10"].colors):
            ax.plot(series.sequences, flat[:, k], "o-", ms=2, lw=1.3, color=color, label=f"{earlier}.H{k // n}->{later}.H{k % n}")
        _marks(ax, run)
        ax.set(xlabel=X_LABEL, ylabel="accuracy", ylim=(-0.02, 1.02))
        ax.set_title(f"every path {pair}", fontsize=9)
        ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes[:, :-1].ravel()), label="accuracy, one path kept on", shrink=0.8)
    fig.suptitle("One path (Figure 11b) over training: the map at the points shown, and every path's accuracy")
    return fig


def llc_figure(runs: list[Run]) -> Figure | None:
    """The local learning coefficient beside the loss: above, each run's stage curve (the one its task
    reads stages on); below, its LLC at every estimated point with the chains' spread (hollow where
    the chains did not converge); dotted lines at each run's stage boundaries (the plateau, the end of
    the phase change). Log-scaled sequences, as series are kept log-spaced; None without an llc.json."""
    estimated = [r for r in runs if r.llc is not None and r.llc.points]
    if not estimated:
        return None
    fig = _figure(9, 7)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for run, color in zip(estimated, run_colors(len(estimated))):
        xs, ys = run.series(curve_key(run))
        kept = [(x, y) for x, y in zip(xs, ys) if x > 0]
        if kept:
            top.plot(*zip(*kept), color=color, lw=1.2, label=run.label)
        points = run.llc.points
        px = np.array([p.sequences for p in points], dtype=float)
        llc = np.array([p.llc for p in points])
        std = np.array([p.llc_std for p in points])
        bottom.errorbar(px, llc, yerr=std, color=color, lw=1.2, capsize=2, label=run.label)
        ok = np.array([p.converged for p in points])
        bottom.plot(px[ok], llc[ok], "o", color=color, ms=4)
        bottom.plot(px[~ok], llc[~ok], "o", mfc="white", mec=color, ms=4)
        st = stages(run)
        for edge in [*(st.plateau or ()), st.end]:
            if edge:
                for ax in (top, bottom):
                    ax.axvline(edge, color=color, ls=":", lw=0.9)
    reading = estimated[0].reading
    top.set(ylabel=f"{curve_key(estimated[0])} ({reading.loss_words})" if len(estimated) == 1 or
            len({curve_key(r) for r in estimated}) == 1 else "each run's stage curve", xscale="log")
    settings = estimated[0].llc
    bottom.set(xlabel=X_LABEL, ylabel=f"LLC ({settings.weights} weights, nbeta {settings.nbeta:.3g})", xscale="log")
    bottom.xaxis.set_major_formatter(FuncFormatter(format_sequences))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)
    fig.suptitle("Local learning coefficient beside the loss (dotted: plateau and end of the phase change; "
                 "hollow: chains not converged)", fontsize=10)
    return fig


SERIES_FIGURES = {
    "ablation_over_training.png": ablation_cost_figure,
    "over_training.png": over_training_figure,
    "loss_trajectory.png": trajectory_figure,
    "table1_over_training.png": groups_figure,
    "paths_over_training.png": paths_figure,
    "llc.png": llc_figure,
}
