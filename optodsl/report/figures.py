"""The report's figures, each a pure function from loaded runs to a matplotlib Figure, saved atomically.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot, so
drawing leaves no global state behind (no backend switch, no figure registry to close).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..analysis.registry import REGISTRY, Declared
from ..analysis.schema import index_order
from ..files import atomic_write_bytes
from ..measures import WORDS
from ..syntax.format import format_number
from ..tasks.records import TRAIN, record_key, set_key, set_order
from ..tasks import Reading
from .load import Run

X_LABEL = "training sequences seen"
HELDOUT_STYLES = dict(zip(set_order()[1:], ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))))
"""Line styles of the held-out sets (the sets after the training distribution, in the tasks' order)."""
MAX_RUNS_WITH_HELDOUT = 3
MEASURE_NAMES = WORDS
"""Title and colour-bar words of each declared measure (`optodsl.measures.measure`); the induction
measure's words are the task's (`Reading.induction_words`), and a measure not declared is drawn under its own name."""


def format_sequences(value: float, _pos=None) -> str:
    """Tick label for a sequence count: 0, 500, 40k, 1.5M."""
    if value == 0:
        return "0"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """Render `fig` as PNG into memory and write it atomically to `path`; the figure is cleared after."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    fig.clear()
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def run_colors(n: int) -> list:
    """Distinct colours for `n` runs: tab10, tab20, then evenly spaced viridis."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


SEED_VARIABLE = "seed"
SEEDS_SUFFIX = "_seeds"


@dataclass(frozen=True)
class PaperCurve:
    """How the paper draws one curve: its colour and the name its text gives it."""

    color: str
    name: str


# (spec stem, variant) -> the paper's colour and name for that run's curve (Sections 3-4, Appendix D).
PAPER_CURVES: dict[tuple[str, str | None], PaperCurve] = {
    ("fig3_baseline", None): PaperCurve("blue", "all heads (Figure 3a)"),
    ("fig4a_over_training", None): PaperCurve("blue", "all heads (Figure 3a)"),  # the baseline, kept at 20 points
    ("fig5b", "only_h3"): PaperCurve("black", "no clamp"),
    ("fig5b", "clamp_prev_token"): PaperCurve("orange", "clamp Step 1 (PT-attend)"),
    ("fig5b", "clamp_layer1"): PaperCurve("red", "clamp Layer 1 (Steps 1, 2)"),
    ("fig5b", "clamp_match"): PaperCurve("green", "clamp match (Steps 1, 2, 3qk, 4)"),
    ("fig5b", "clamp_copy"): PaperCurve("blue", "clamp copy (Steps 3v, 5)"),
    ("fig5b", "clamp_layer1_and_copy"): PaperCurve("purple", "clamp Layer 1 and copy (Steps 1, 2, 3v, 5)"),
    ("fig7_graft_from_seed5", None): PaperCurve("red", "Layer 1 from seed 5 (same seed)"),
    ("fig7_graft_from_seed6", None): PaperCurve("blue", "Layer 1 from seed 6"),
    ("fig7_graft_from_seed7", None): PaperCurve("green", "Layer 1 from seed 7"),
}
# The ladder with each seed's strongest layer-2 head (fig5b_strongest_seeds.opto, Appendix I) is drawn as Figure 5b.
PAPER_CURVES |= {("fig5b_strongest", "only_strongest" if variant == "only_h3" else variant): curve
                 for (figure, variant), curve in list(PAPER_CURVES.items()) if figure == "fig5b"}
# The toy model's three runs (Figure 5a): free black, c clamped blue, b and c clamped purple.
TOY_CURVES: dict[str, PaperCurve] = {
    "none": PaperCurve("black", "free"),
    "c": PaperCurve("blue", "c clamped"),
    "bc": PaperCurve("purple", "b and c clamped"),
}


def _name_parts(run: Run) -> tuple[str | None, list[str]]:
    """The run's spec stem and the dash-separated parts of its member name after the stem."""
    stem = Path(run.spec).stem if run.spec else None
    member = run.member or ""
    if not stem or not (member == stem or member.startswith(stem + "-")):
        return stem, [member] if member else []
    rest = member[len(stem) + 1:]
    return stem, rest.split("-") if rest else []


def _binding_part(name: str, value) -> str:
    shown = format_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return f"{name}{shown}"


def curve_key(run: Run) -> tuple[str | None, str | None]:
    """(spec stem, variant) of a run: its member name without the stem and without its sweep values.

    A seed sweep of a paper spec, named `<spec>_seeds` (specs/paper/fig5b_seeds.opto), keys as `<spec>`.
    """
    stem, parts = _name_parts(run)
    swept = {_binding_part(k, v) for k, v in run.bindings.items()}
    rest = [p for p in parts if p not in swept]
    if stem and stem.endswith(SEEDS_SUFFIX):
        stem = stem[: -len(SEEDS_SUFFIX)]
    return stem, "-".join(rest) or None


def seed_partners(runs: list[Run]) -> dict[str | None, frozenset[str]]:
    """Per spec, the sweep variables paired with `seed` (`sweep (seed, h) in [(5, 1), (6, 3)]`): those whose
    value each seed fixes, one to one, across the spec's runs; such a run differs from its seed group
    only through its seed, so it joins the band."""
    by_spec: dict[str | None, list[Run]] = {}
    for run in runs:
        if SEED_VARIABLE in run.bindings:
            by_spec.setdefault(run.spec, []).append(run)
    partners = {}
    for spec, group in by_spec.items():
        names = set().union(*(r.bindings for r in group)) - {SEED_VARIABLE}
        paired = set()
        for name in names:
            pairs = {(repr(r.bindings.get(SEED_VARIABLE)), repr(r.bindings.get(name))) for r in group}
            seeds, values = {a for a, _ in pairs}, {b for _, b in pairs}
            if len(pairs) == len(seeds) == len(values) > 1:
                paired.add(name)
        partners[spec] = frozenset(paired)
    return partners


def seed_group_key(run: Run, partners: frozenset[str] = frozenset()) -> tuple:
    """Runs that differ only in the `seed` sweep variable (and the variables paired with it, `partners`)
    share this key: they draw one band."""
    stem, parts = _name_parts(run)
    if SEED_VARIABLE not in run.bindings:
        return (run.spec, run.member or str(run.path), str(run.path))
    seeded = {_binding_part(name, run.bindings[name]) for name in {SEED_VARIABLE, *partners} if name in run.bindings}
    return (run.spec, stem, tuple(p for p in parts if p not in seeded))


@dataclass(frozen=True)
class Curve:
    """One curve of a figure: the runs behind it (several seeds make a band), its colour and legend name."""

    runs: tuple[Run, ...]
    color: object
    label: str


def curves_of(runs: list[Run]) -> list[Curve]:
    """Runs grouped into curves (one per seed group), each in the paper's colour and name where the paper
    draws that run, else in a distinct colour under its own label; a paper curve shown twice loses its style."""
    groups: dict[tuple, list[Run]] = {}
    partners = seed_partners(runs)
    for run in runs:
        groups.setdefault(seed_group_key(run, partners.get(run.spec, frozenset())), []).append(run)
    members = list(groups.values())
    keys = [curve_key(g[0]) for g in members]
    colors = run_colors(len(members))
    curves = []
    for group, key, color in zip(members, keys, colors):
        paper = PAPER_CURVES.get(key) if keys.count(key) == 1 else None
        label = paper.name if paper else group[0].label
        if len(group) > 1 and not paper:
            stem, parts = _name_parts(group[0])
            label = "-".join([stem or "", *seed_group_key(group[0], partners.get(group[0].spec, frozenset()))[2]]).strip("-") or label
        if len(group) > 1:
            seeds = ", ".join(format_number(r.bindings[SEED_VARIABLE]) for r in group)
            label = f"{label} (mean, min-max of seeds {seeds})"
        curves.append(Curve(tuple(group), paper.color if paper else color, label))
    return curves


def seed_band(runs: tuple[Run, ...] | list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sequences at which every run has `key`, with the mean, minimum and maximum of `key` over the runs."""
    series = [dict(zip(*run.series(key))) for run in runs]
    xs = sorted(set.intersection(*(set(s) for s in series))) if series else []
    values = np.array([[s[x] for x in xs] for s in series], dtype=float).reshape(len(series), len(xs))
    if not xs:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    return np.asarray(xs), values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _draw_curve(ax, curve: Curve, key: str, lw: float, ls: str = "-", alpha: float = 1.0, label: str | None = None) -> bool:
    """Draw one curve's `key` (a band over seeds when it has several runs); False when no run has it."""
    xs, mean, lo, hi = seed_band(curve.runs, key)
    if not len(xs):
        return False
    ax.plot(xs, mean, color=curve.color, lw=lw, ls=ls, alpha=alpha, label=label)
    if len(curve.runs) > 1 and ls == "-":
        ax.fill_between(xs, lo, hi, color=curve.color, alpha=0.2, lw=0)
    return True


REFERENCE_STYLES = ("--", (0, (8, 3, 2, 3)), (0, (3, 2)), (0, (1, 2)))
"""Line styles of a run's reference curves (a task's metric levels and reference losses, its divergences),
in the order the task declares them; drawn thinner than the run's own curve, in its colour."""
LEVEL_STYLES = (("-", "grey"), (":", "dimgrey"), ("-.", "darkgrey"), ((0, (5, 5)), "black"))
"""Line styles and colours of the fixed reference levels (horizontal lines), in the order a task declares them."""


def readings_of(runs: list[Run]) -> list[Reading]:
    """The distinct readings of the runs (one per task and its settings), in first-run order."""
    out: list[Reading] = []
    for run in runs:
        if run.reading not in out:
            out.append(run.reading)
    return out


def _level_label(reading: Reading, label: str, several: bool) -> str:
    return f"{reading.task}: {label}" if several else label


def fixed_levels(runs: list[Run], metric: str) -> list[tuple[str, float]]:
    """(label, value) of each fixed reference level the runs' tasks declare for `metric` ("loss" or
    "accuracy"), each once; labels name the task when the runs have several readings."""
    readings = readings_of(runs)
    out: list[tuple[str, float]] = []
    for reading in readings:
        levels = reading.loss_levels if metric == "loss" else reading.accuracy_levels
        for level in levels:
            if level.value is not None:
                item = (_level_label(reading, level.label, len(readings) > 1), level.value)
                if item not in out:
                    out.append(item)
    return out


def draw_levels(ax, runs: list[Run], metric: str) -> list[float]:
    """Draw the fixed reference levels of `metric` as horizontal lines; returns their values."""
    levels = fixed_levels(runs, metric)
    for i, (label, value) in enumerate(levels):
        ls, color = LEVEL_STYLES[i % len(LEVEL_STYLES)]
        ax.axhline(value, color=color, ls=ls, lw=1.0, alpha=0.8, label=label)
    return [v for _, v in levels]


def reference_curves(reading: Reading, metric: str) -> list[tuple[str, str]]:
    """(logged metric, words) of the per-evaluation references a task draws beside its `metric`: for
    loss, its metric levels (`unigram_loss`) then its other reference losses (`repeated_loss`); for
    accuracy, its metric levels."""
    levels = reading.loss_levels if metric == "loss" else reading.accuracy_levels
    out = [(level.metric, level.label) for level in levels if level.metric is not None]
    if metric == "loss":
        out += [(name, reading.words(name)) for name in reading.reference_losses if name not in dict(out)]
    return out


def _reference_label(curve: Curve, words: str, name: str, several: bool) -> str:
    text = f"{words} ({record_key(TRAIN, name)})"
    return f"{curve.label}: {text}" if several else text


def curves_figure(runs: list[Run], metric: str) -> Figure:
    """Every run's `metric` ("loss" or "accuracy") on the training set against sequences seen, overlaid.

    With a few runs the held-out sets are drawn too, in the run's colour with dashed styles. The
    reference levels are each run's task's (`Run.reading`): fixed levels as grey horizontal lines,
    per-evaluation ones (a metric the task logs, like the Markov task's `unigram_loss`) and the
    task's reference losses as thin curves in the run's colour.
    """
    fig = _figure(10, 5)
    ax = fig.add_subplot()
    shown = [r for r in runs if r.series(set_key(TRAIN, metric))[0]]
    curves = curves_of(runs)
    drawn = [c for c in curves if any(r in shown for r in c.runs)]
    heldout = len(drawn) <= MAX_RUNS_WITH_HELDOUT
    used_styles = set()
    references: list[float] = []
    for curve in curves:
        if not _draw_curve(ax, curve, set_key(TRAIN, metric), 1.8, label=curve.label):
            continue
        if heldout:
            for name, style in HELDOUT_STYLES.items():
                if _draw_curve(ax, curve, f"{name}/{metric}", 1.1, style, 0.8):
                    used_styles.add(name)
        for (name, words), style in zip(reference_curves(curve.runs[0].reading, metric), REFERENCE_STYLES * 4):
            key = record_key(TRAIN, name)
            if _draw_curve(ax, curve, key, 1.0, style, 0.9, _reference_label(curve, words, name, len(drawn) > 1)):
                references += seed_band(curve.runs, key)[1].tolist()
    levels = draw_levels(ax, shown or runs, metric)
    words = sorted({(r.reading.loss_words if metric == "loss" else r.reading.accuracy_words) for r in shown or runs})
    if metric == "loss":
        values = [y for r in shown for y in r.series(set_key(TRAIN, "loss"))[1]] + references
        if values and min(values) > 0:
            ax.set_yscale("log")
            plain = FuncFormatter(lambda v, _pos: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            spread = values + [v for v in levels if v > 0]
            ax.yaxis.set_minor_formatter(plain if max(spread) / min(spread) < 30 else NullFormatter())
        what = "Loss"
    else:
        ax.set_ylim(0, 1.02)
        what = "Accuracy"
    ax.set_ylabel(words[0] if len(words) == 1 else f"{what.lower()} (each run's task: {'; '.join(words)})",
                  wrap=True)
    extra = " (dashed: held-out sets)" if used_styles else ""
    ax.set_title(f"{what} on the training set{extra}\nagainst training sequences seen")
    ax.set_xlabel(X_LABEL)
    ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
    ax.grid(alpha=0.3)
    _legends(fig, ax, used_styles)
    return fig


def _legends(fig: Figure, ax, used_styles: set) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="run (spec / member, or the paper's name)",
               ncols=max(1, math.ceil(len(handles) / 24)))
    if used_styles:
        styles = [Line2D([], [], color="black", lw=1.8, ls="-")] + [
            Line2D([], [], color="black", lw=1.1, ls=HELDOUT_STYLES[n]) for n in HELDOUT_STYLES if n in used_styles]
        names = [TRAIN] + [n for n in HELDOUT_STYLES if n in used_styles]
        fig.legend(styles, names, loc="outside right lower", fontsize=8, title="evaluation set")


def divergences_figure(runs: list[Run]) -> Figure | None:
    """Each run's divergences from its task's reference predictors on the training set (the Markov
    task's KL to the in-context unigram and to the Bayes bigram), in the run's colour, one style per
    divergence; None when no run logs any."""
    curves = [c for c in curves_of(runs) if any(run.series(record_key(TRAIN, name))[0]
                                                for run in c.runs for name in run.reading.divergences)]
    if not curves:
        return None
    fig = _figure(10, 5)
    ax = fig.add_subplot()
    values: list[float] = []
    for curve in curves:
        reading = curve.runs[0].reading
        for name, style in zip(reading.divergences, REFERENCE_STYLES * 4):
            key = record_key(TRAIN, name)
            if _draw_curve(ax, curve, key, 1.4, style, 1.0,
                           _reference_label(curve, reading.words(name), name, len(curves) > 1)):
                values += seed_band(curve.runs, key)[1].tolist()
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_ylabel("KL divergence (nats per token)")
    ax.set_title("The model's divergence from the task's reference predictors on the training set")
    ax.set_xlabel(X_LABEL)
    ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
    ax.grid(alpha=0.3)
    _legends(fig, ax, set())
    return fig


def _edges(xs: list[int]) -> np.ndarray:
    """Cell edges around evaluation points, halfway between neighbours, never below zero."""
    x = np.asarray(xs, dtype=float)
    if len(x) == 1:
        half = max(x[0] * 0.05, 0.5)
        return np.array([max(x[0] - half, 0.0), x[0] + half])
    mid = (x[1:] + x[:-1]) / 2
    first, last = x[0] - (mid[0] - x[0]), x[-1] + (x[-1] - mid[-1])
    return np.concatenate([[max(first, 0.0) if x[0] >= 0 else first], mid, [last]])


def measure_matrix(run: Run, measure: str, set_name: str = TRAIN) -> tuple[list[str], list[int], np.ndarray]:
    """Heads, evaluation sequences and a heads x evaluations array of `measure` (NaN where missing)."""
    heads = run.heads(measure, set_name)
    records = [r for r in run.metrics if any(f"{set_name}/{measure}/{h}" in r for h in heads)]
    values = np.full((len(heads), len(records)), np.nan)
    for j, r in enumerate(records):
        for i, h in enumerate(heads):
            v = r.get(f"{set_name}/{measure}/{h}")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values[i, j] = v
    return heads, [int(r["sequences"]) for r in records], values


def measure_words(runs: list[Run], measure: str) -> tuple[str, str | None]:
    """A measure's title and colour-bar words for these runs; the colour-bar words are None when the
    runs' tasks define the measure differently (each panel then names its task's)."""
    title, unit = MEASURE_NAMES.get(measure, (measure, measure))
    if unit is not None:
        return title, unit
    words = list(dict.fromkeys(r.reading.induction_words for r in runs))
    return title, f"{title.lower()}: {words[0]}" if len(words) == 1 else None


def measure_figure(runs: list[Run], measure: str, set_name: str = TRAIN) -> Figure | None:
    """One heatmap per run of `measure` per head (rows, every layer's, layers split by a white line)
    over evaluations (columns, in sequences); None if no run has it."""
    panels = [(r, *measure_matrix(r, measure, set_name)) for r in runs if r.heads(measure, set_name)]
    if not panels:
        return None
    finite = np.concatenate([v[np.isfinite(v)] for *_, v in panels])
    lo, hi = (min(0.0, float(finite.min())), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    n_heads = max(len(h) for _, h, _, _ in panels)
    fig = _figure(6.5 * cols + 1.0, max(2.8, 0.22 * n_heads + 1.4) * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    title, unit = measure_words([p[0] for p in panels], measure)
    mesh = None
    for ax, (run, heads, xs, values) in zip(axes, panels):
        mesh = ax.pcolormesh(_edges(xs), np.arange(len(heads) + 1), np.ma.masked_invalid(values),
                             cmap="viridis", vmin=lo, vmax=hi, shading="flat")
        ax.set_yticks(np.arange(len(heads)) + 0.5, heads, fontsize=7 if len(heads) <= 24 else 5)
        layers = [h.split(".")[0] for h in heads]
        for i in range(1, len(heads)):
            if layers[i] != layers[i - 1]:
                ax.axhline(i, color="white", lw=1.5)
        ax.invert_yaxis()
        ax.set_title(run.label if unit else f"{run.label}\n({run.reading.induction_words})", fontsize=10)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel("head (layer.head)")
        ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=list(axes[: len(panels)]), label=unit or f"{title.lower()} (each panel: its task's)", shrink=0.9)
    fig.suptitle(f"{title} per head on the {set_name} set, one panel per run (spec / member)")
    return fig


def _analysed(runs: list[Run], section: str) -> list[Run]:
    return [r for r in runs if r.analysis and r.analysis.get(section)]


def ablation_figure(runs: list[Run]) -> Figure | None:
    """Per run and layer: grouped bars of accuracy with each head ablated vs with only that head on (Figure 4a).

    Dashed lines mark the full model's accuracy and chance; None when no run has a `heads` analysis.
    """
    panels = [(r, layer, modes) for r in _analysed(runs, "heads") for layer, modes in r.analysis["heads"].items() if modes]
    if not panels:
        return None
    layers = sorted({layer for _, layer, _ in panels}, key=index_order)
    analysed = list(dict.fromkeys(r.path for r, _, _ in panels))
    fig = _figure(5.5 * len(layers) + 0.5, 3.6 * len(analysed) + 0.6)
    axes = fig.subplots(len(analysed), len(layers), squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for run, layer, modes in panels:
        ax = axes[analysed.index(run.path), layers.index(layer)]
        ax.set_visible(True)
        heads = sorted({h for per in modes.values() for h in per}, key=index_order)
        x = np.arange(len(heads))
        width = 0.4
        bars = [("ablate_one", "that head ablated", -width / 2, "tab:red"),
                ("only_one", "only that head on", width / 2, "tab:blue")]
        for mode, label, shift, color in bars:
            if mode in modes:
                ys = [modes[mode].get(h, {}).get("accuracy", math.nan) for h in heads]
                ax.bar(x + shift, ys, width, label=label, color=color, alpha=0.85)
        full = run.analysis.get("full", {}).get("accuracy")
        if full is not None and math.isfinite(full):
            ax.axhline(full, color="black", ls="--", lw=1.2, label="full model")
        if run.analysis.get("chance") is not None:  # a task with no chance level (a user's corpus) draws none
            ax.axhline(run.analysis["chance"], color="grey", ls="--", lw=1.0, label="chance")
        ax.set_xticks(x, heads)
        ax.set_ylim(0, 1.05)
        number = layer[1:] if layer[1:].isdigit() else layer
        ax.set_xlabel(f"layer-{number} head")
        ax.set_ylabel("accuracy (fraction correct)")
        ax.set_title(f"{run.label}: {layer} heads", fontsize=10)
    legend: dict = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend), fontsize=8)
    fig.suptitle("Accuracy with one head ablated vs with only that head on")
    return fig


def _annotated_heatmap(ax, matrix: np.ndarray, vmin: float, vmax: float, fmt: str = "{:.2f}"):
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    rows, cols = matrix.shape
    if rows * cols <= 400:
        for i in range(rows):
            for j in range(cols):
                v = matrix[i, j]
                if np.isfinite(v):
                    dark = (v - vmin) / (vmax - vmin) < 0.55
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
    ax.set_xticks(range(cols), [f"H{j}" for j in range(cols)])
    ax.set_yticks(range(rows), [f"H{i}" for i in range(rows)])
    return image


def _pair_names(pair: str) -> tuple[str, str]:
    """`L1-L3` as ("layer-1", "layer-3"), for axis labels."""
    earlier, later = pair.split("-")
    return f"layer-{earlier[1:]}", f"layer-{later[1:]}"


def paths_figure(runs: list[Run]) -> Figure | None:
    """Per run (rows) and layer pair (columns): accuracy with only one head of the earlier layer and
    one of the later layer kept on, values in cells (Figure 11b)."""
    analysed = _analysed(runs, "paths")
    if not analysed:
        return None
    pairs = list(dict.fromkeys(pair for r in analysed for pair in r.analysis["paths"]))
    fig = _figure(6.0 * len(pairs), 5.0 * len(analysed) + 0.4)
    axes = fig.subplots(len(analysed), len(pairs), squeeze=False)
    for row, run in zip(axes, analysed):
        for ax, pair in zip(row, pairs):
            if pair not in run.analysis["paths"]:
                ax.set_visible(False)
                continue
            matrix = np.asarray(run.analysis["paths"][pair]["accuracy"], dtype=float)
            image = _annotated_heatmap(ax, matrix, 0.0, 1.0)
            fig.colorbar(image, ax=ax, label="accuracy (fraction correct)", shrink=0.85)
            earlier, later = _pair_names(pair)
            ax.set_xlabel(f"{later} head kept on")
            ax.set_ylabel(f"{earlier} head kept on")
            ax.set_title(f"{run.label}: {pair}", fontsize=10)
    fig.suptitle("Accuracy through one path:\none head of an earlier layer and one of a later layer kept on")
    return fig


def composition_figure(runs: list[Run]) -> Figure | None:
    """Per run and layer pair (rows): Q-, K- and V-composition between the earlier layer's writers
    (rows of each map) and the later layer's readers (columns) (Figure 11c)."""
    analysed = _analysed(runs, "composition")
    if not analysed:
        return None
    panels = [(run, pair, comp) for run in analysed for pair, comp in run.analysis["composition"].items()]
    kinds = [k for k in ("Q", "K", "V") if any(k in comp for _, _, comp in panels)]
    fig = _figure(5.2 * len(kinds), 4.4 * len(panels) + 0.4)
    axes = fig.subplots(len(panels), len(kinds), squeeze=False)
    for row, (run, pair, comp) in zip(axes, panels):
        values = np.concatenate([np.asarray(m, dtype=float).ravel() for m in comp.values()])
        values = values[np.isfinite(values)]
        lo, hi = (min(0.0, float(values.min())), float(values.max())) if values.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        image = None
        earlier, later = _pair_names(pair)
        for ax, kind in zip(row, kinds):
            if kind not in comp:
                ax.set_visible(False)
                continue
            image = _annotated_heatmap(ax, np.asarray(comp[kind], dtype=float), lo, hi)
            ax.set_xlabel(f"{later} head (reader)")
            ax.set_ylabel(f"{earlier} head (writer)")
            ax.set_title(f"{run.label}: {pair} {kind}-composition", fontsize=10)
        fig.colorbar(image, ax=list(row), label="composition score", shrink=0.85)
    fig.suptitle("Composition of earlier heads' outputs into later heads' queries, keys and values, per layer pair")
    return fig


def perfected_figure(runs: list[Run]) -> Figure | None:
    """Training loss beside the loss with each `eval.perfected` line added, per run (Appendix Figure 10):
    a progress measure against the plain curve."""
    probed = []
    for run in runs:
        prefix = record_key(TRAIN, "")
        names = sorted({k[len(prefix):-len("/loss")] for r in run.metrics for k in r
                        if k.startswith(prefix + "perfected[") and k.endswith("/loss")})
        if names:
            probed.append((run, names))
    if not probed:
        return None
    fig = _figure(10, 4.2 * len(probed))
    for i, (run, names) in enumerate(probed, start=1):
        ax = fig.add_subplot(len(probed), 1, i)
        xs, ys = run.series(set_key(TRAIN, "loss"))
        ax.plot(xs, ys, color="black", lw=1.8, label="as trained")
        for name, color in zip(names, run_colors(len(names))):
            px, py = run.series(record_key(TRAIN, name, "loss"))
            ax.plot(px, py, color=color, lw=1.4, label=name[len("perfected["):-1] + " added")
        draw_levels(ax, [run], "loss")
        ax.set_title(f"{run.label}: loss with a pattern perfected at each evaluation", fontsize=10)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(f"{run.reading.loss_words}, training set")
        ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def toy_figure(curves: dict[str, dict[str, np.ndarray]]) -> Figure:
    """The toy model's loss curves in the paper's colours (Figure 5a), beside the free model's progress measures."""
    fig = _figure(11, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for clamp, curve in curves.items():
        style = TOY_CURVES[clamp]
        ax1.plot(curve["loss"], color=style.color, label=style.name)
    ax1.set(xlabel="gradient steps", ylabel="loss", yscale="log", title="Toy model (Figure 5a)")
    free = curves.get("none")
    if free is not None:
        ax2.plot(free["one_minus_cos2_a"], color="tab:gray", label="1 - cos²(a, a*)")
        ax2.plot(free["loss_with_b_c_perfect"], color="black", ls="--", label="loss with b, c perfect")
        ax2.set(xlabel="gradient steps", ylabel="progress measure", yscale="log", title="Progress measures (free model)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


CURVE_FIGURES = {
    "loss.png": lambda runs: curves_figure(runs, "loss"),
    "accuracy.png": lambda runs: curves_figure(runs, "accuracy"),
    "divergences.png": divergences_figure,
}
ANALYSIS_FIGURES = {
    "perfected.png": perfected_figure,
    "ablation.png": ablation_figure,
    "paths.png": paths_figure,
    "composition.png": composition_figure,
}


def declared_figure(runs: list[Run], declared: Declared) -> Figure | None:
    """One row per run of the heat maps a registered analysis declares for its section (`Declared.figure`);
    None when no run has that section."""
    panels = [(run, maps) for run in _analysed(runs, declared.name) for maps in [declared.figure(run.analysis[declared.name])]
              if maps]
    if not panels:
        return None
    cols = max(len(maps) for _, maps in panels)
    size = max(max(len(m.rows), len(m.columns) / 2) for _, maps in panels for m in maps)
    fig = _figure(max(6.0, 0.25 * size + 3.0) * cols, max(3.0, 0.25 * size + 1.6) * len(panels) + 0.6)
    axes = fig.subplots(len(panels), cols, squeeze=False)
    for row, (run, maps) in zip(axes, panels):
        for ax in row[len(maps):]:
            ax.set_visible(False)
        for ax, m in zip(row, maps):
            values = np.asarray(m.values, dtype=float)
            finite = values[np.isfinite(values)]
            lo, hi = (min(0.0, float(finite.min())), float(finite.max())) if finite.size else (0.0, 1.0)
            image = ax.imshow(values, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1.0, aspect="auto")
            step = max(1, len(m.columns) // 16)
            ax.set_xticks(range(0, len(m.columns), step), m.columns[::step])
            ax.set_yticks(range(len(m.rows)), m.rows, fontsize=7 if len(m.rows) <= 24 else 5)
            ax.set(xlabel=m.xlabel, ylabel=m.ylabel)
            ax.set_title(f"{run.label}: {m.title}", fontsize=10)
            fig.colorbar(image, ax=ax, label=m.unit, shrink=0.85)
    fig.suptitle(declared.title)
    return fig


def declared_figures() -> dict:
    """File name -> figure builder of every registered analysis that declares a figure: `<name>.png`,
    or `analysis_<name>.png` where another figure has that name."""
    out = {}
    for d in REGISTRY.values():
        if d.figure is not None:
            name = f"{d.name}.png"
            name = f"analysis_{name}" if name in CURVE_FIGURES or name in ANALYSIS_FIGURES else name
            out[name] = lambda rs, d=d: declared_figure(rs, d)
    return out


def declared_caption(name: str) -> tuple[str, str] | None:
    """The heading and caption of a registered analysis's figure file, or None for another file."""
    for d in REGISTRY.values():
        if d.figure is not None and name in (f"{d.name}.png", f"analysis_{d.name}.png"):
            return d.title, f"{d.words[0].upper()}{d.words[1:]}; one row of panels per analysed run (`opto analyze --only {d.name}`)."
    return None


def logged_measures(runs: list[Run]) -> list[str]:
    """Every per-head measure any run logged on the training set: those the report names first, in its
    order, then the others in the order they were logged."""
    found = list(dict.fromkeys(m for r in runs for m in r.measures()))
    return [m for m in MEASURE_NAMES if m in found] + [m for m in found if m not in MEASURE_NAMES]


def measure_file(measure: str) -> str:
    """The figure file of a measure's heat maps: `<measure>.png`, unless another figure has that name."""
    name = f"{measure}.png"
    return f"measure_{name}" if name in CURVE_FIGURES or name in ANALYSIS_FIGURES or name in declared_figures() else name


def figures_for(runs: list[Run]) -> dict:
    """File name -> figure builder, in report order: curves, a heat map per logged measure, analyses
    (the report's own, then those the registered analyses declare), then the series files'."""
    from .series_figures import SERIES_FIGURES  # the series files' figures, drawn with this module's helpers

    measures = {measure_file(m): (lambda rs, m=m: measure_figure(rs, m)) for m in logged_measures(runs)}
    return {**CURVE_FIGURES, **measures, **ANALYSIS_FIGURES, **declared_figures(), **SERIES_FIGURES}


def write_figures(runs: list[Run], out: Path) -> dict[str, Path]:
    """Draw every figure the runs have data for into `out`; returns file name -> path, in report order."""
    written = {}
    for name, build in figures_for(runs).items():
        fig = build(runs)
        if fig is not None:
            written[name] = save_figure(fig, Path(out) / name)
    return written


def first_at(run: Run, threshold: float, after: int = 0) -> float:
    """The first evaluated sequence count at or after `after` where train accuracy reaches `threshold` (nan if none)."""
    hit = [x for x, y in zip(*run.series(set_key(TRAIN, "accuracy"))) if x >= after and y >= threshold]
    return hit[0] if hit else math.nan


def _rung_style(rung: str) -> tuple[PaperCurve, str]:
    """A rung's colour and name, and what is held for the first k sequences: a `stopgrad_` rung is its
    clamp rung's gradient stop alone, drawn in grey beside it."""
    if rung.startswith("stopgrad_"):
        clamp = PAPER_CURVES.get(("fig5b", "clamp_" + rung.removeprefix("stopgrad_")), PaperCurve("black", rung))
        return PaperCurve("dimgrey", f"gradient stop only ({clamp.name.removeprefix('clamp ')})"), "gradient stopped"
    return PAPER_CURVES.get(("fig5b", rung), PaperCurve("black", rung)), "clamp held"


def release_map_figure(rungs: dict[str, list[tuple[int, Run]]], references: list[Run] | tuple[Run, ...] = (),
                       threshold: float = 0.9) -> Figure:
    """The release-time map: per rung (a column, in its Figure 5b colour), train accuracy of the runs
    released at k (mean over seeds, a dot marks k), and below, the sequence count (from the start of
    training) at which accuracy first reaches `threshold` after the release, against k: the mean over
    seeds with a min-max band, beside the unclamped `references` (mean and band over their seeds)."""
    fig = _figure(5.2 * len(rungs), 8)
    axes = fig.subplots(2, len(rungs), squeeze=False)
    ref_hits = np.array([first_at(r, threshold) for r in references], dtype=float)
    for col, (rung, released) in enumerate(rungs.items()):
        style, held = _rung_style(rung)
        top, bottom = axes[0, col], axes[1, col]
        by_k: dict[int, list[Run]] = {}
        for k, run in released:
            by_k.setdefault(k, []).append(run)
        ks = sorted(by_k)
        seeds = max(len(v) for v in by_k.values()) if by_k else 0
        shades = colormaps["viridis"](np.linspace(0, 0.9, len(ks)))
        hits = []
        for k, shade in zip(ks, shades):
            xs, mean, lo, hi = seed_band(by_k[k], set_key(TRAIN, "accuracy"))
            top.plot(xs, mean, color=shade, lw=1.2, label=f"k = {format_sequences(k)}")
            at = [y for x, y in zip(xs, mean) if x >= k]
            if at:
                top.plot([k], [at[0]], "o", color=shade, ms=4)
            hits.append([first_at(r, threshold, k) for r in by_k[k]])
        draw_levels(top, [run for _, run in released], "accuracy")
        over = f"mean of {seeds} seeds" if seeds > 1 else "one seed"
        top.set(ylim=(0, 1.02), xlabel=X_LABEL, ylabel=f"train accuracy ({over})",
                title=f"{style.name}, released at k")
        top.title.set_color(style.color)
        top.legend(fontsize=7, ncols=2)
        h = np.array([[np.nan] * (seeds - len(row)) + row for row in hits], dtype=float).reshape(len(ks), max(seeds, 1))
        with warnings.catch_warnings():  # a k at which no seed reaches the threshold is NaN, drawn as a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_h = np.where(np.isnan(h).any(axis=1), np.nan, np.nanmean(h, axis=1)) if h.size else h
            low, high = (np.nanmin(h, axis=1), np.nanmax(h, axis=1)) if h.size else (h, h)
        bottom.plot(ks, mean_h, "o-", color=style.color, label=f"accuracy {threshold} after the release ({over})")
        if seeds > 1:
            bottom.fill_between(ks, low, high, color=style.color, alpha=0.2, lw=0, label="min-max over seeds")
        if len(ref_hits) and np.isfinite(ref_hits).all():
            bottom.axhline(ref_hits.mean(), color="black", ls="--", lw=1.0,
                           label=f"no clamp ever ({'mean of %d seeds' % len(ref_hits) if len(ref_hits) > 1 else 'one seed'})")
            if len(ref_hits) > 1:
                bottom.axhspan(ref_hits.min(), ref_hits.max(), color="black", alpha=0.08, lw=0)
        bottom.plot(ks, ks, color="grey", ls=":", lw=1.0, label="the release (k)")
        bottom.set(xscale="log", xlabel=f"{held} for the first k sequences",
                   ylabel=f"sequences trained (from the start) at train accuracy {threshold}")
        for ax in (top, bottom):
            ax.xaxis.set_major_formatter(FuncFormatter(format_sequences))
            ax.grid(alpha=0.3)
        bottom.yaxis.set_major_formatter(FuncFormatter(format_sequences))
        bottom.legend(fontsize=7)
    highest = max(ax.get_ylim()[1] for ax in axes[1])
    for ax in axes[1]:
        ax.set_ylim(0, highest)  # one scale across the rungs, so their times compare by eye
    fig.suptitle("Release-time map: each Figure 5b rung clamped for the first k sequences, then released")
    return fig
