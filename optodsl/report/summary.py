"""report.md: the runs table, the figures with relative links, and the analysis tables (Tables 1 and 2).

Every function here returns text from loaded runs, so the markdown can be checked without drawing.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..analysis.registry import REGISTRY, analysis_layout
from ..analysis.schema import index_order
from ..tasks import Level, Reading
from ..tasks.records import TRAIN, record_key, running_key, set_key, set_order
from .curvestats import PER, Stages, chosen_points, crossing, curve_key, running_crossing, series_run, stages
from .figures import curves_of, declared_caption, fixed_levels, measure_words, readings_of, reference_curves
from .load import Run, value_keys

SEEDS_HELDOUT = set_order()[1]
"""The held-out set whose final accuracy the seeds table shows (the paper's held-out labels), where runs have it."""
ANALYSIS_CAPTIONS = {
    "perfected.png": ("Progress measures of clamps", "Training loss, and the loss of the same checkpoints with each "
                      "`eval.perfected` line added (Appendix Figure 10); grey lines: the task's fixed levels."),
    "ablation.png": ("Ablating one head vs keeping only one", "Accuracy with each head ablated and with only that head on; "
                     "dashed: the full model and chance (Figure 4a)."),
    "paths.png": ("One path", "Accuracy with one head of an earlier layer and one of a later layer kept on, "
                              "one panel per layer pair (Figure 11b)."),
    "ablation_over_training.png": ("Ablation cost over training", "Loss increase over the full model with each head "
                                   "ablated alone, at every kept point of the run's checkpoint series (`opto analyze "
                                   "--over-training`; red: the head helps). Olsson et al.'s view of when each head comes to matter."),
    "over_training.png": ("Over training", "The full model's loss at every kept point (`analysis_series.json`) and each "
                          "`opto eval --over-training` run's on the training set (`eval_series.json`); then each measure "
                          "per head at the same points."),
    "loss_trajectory.png": ("Per-token loss trajectory", "The full model's loss on each fixed evaluation sequence at every "
                            "kept point, as one vector per point, projected on the first two principal components of the "
                            "points' vectors (centred); colour: training sequences seen (Olsson et al. 2022's view of "
                            "the phase change as a turn of the trajectory)."),
    "table1_over_training.png": ("Table 1 over training", "Accuracy with each head group of Table 1 ablated (red), ablated "
                                 "keeping the next layer's attention pattern (blue) or its values (green), and the full "
                                 "model's (dashed), at every kept point; the groups are the latest checkpoint's; dotted: "
                                 "the points whose tables are shown below."),
    "paths_over_training.png": ("One path over training", "The path map (Figure 11b: accuracy with one head of an earlier "
                                "layer and one of a later layer kept on) at the points shown, and every path's accuracy "
                                "over training, the three best at the last point coloured."),
    "llc.png": ("Local learning coefficient", "Above, each run's stage curve; below, its local learning coefficient "
                "(`opto llc --over-training`, SGLD around each kept point: the mean over chains, bars the chains' "
                "standard deviation, hollow where the split-R-hat exceeds 1.1) against training sequences, log-scaled; "
                "dotted: the run's plateau and the end of its phase change, read from its evaluations."),
    "composition.png": ("Composition", "Q-, K- and V-composition scores from an earlier layer's heads to a later "
                                       "layer's, one row per layer pair (Figure 11c)."),
}


def _per_task(runs: list[Run], text) -> str:
    """`text(reading)` for the runs' one reading, or one `task: ...` clause per reading."""
    readings = readings_of(runs)
    if len(readings) == 1:
        return text(readings[0])
    return " ".join(f"{r.task}: {text(r)}" for r in readings)


def _curve_caption(runs: list[Run], metric: str) -> str:
    what = "loss" if metric == "loss" else "accuracy"
    levels = [label for label, _ in fixed_levels(runs, metric)]

    def refs(reading: Reading) -> str:
        words = (reading.loss_words if metric == "loss" else reading.accuracy_words)
        named = [f"{w} (`{record_key(TRAIN, n)}`)" for n, w in reference_curves(reading, metric)]
        return f"{words}" + (f"; thin curves in the run's colour: {', '.join(named)}." if named else ".")

    held = " (held-out sets dashed when few runs)" if metric == "loss" else ""
    lines = f" Grey lines: {', '.join(levels)}." if levels else " No fixed reference level."
    return f"Training-set {what}{held} against training sequences seen. " + _per_task(runs, refs) + lines


def caption(name: str, runs: list[Run]) -> tuple[str, str]:
    """A figure's heading and caption, in the words of the runs' tasks."""
    if name == "loss.png":
        return "Loss", _curve_caption(runs, "loss")
    if name == "accuracy.png":
        return "Accuracy", _curve_caption(runs, "accuracy")
    if name == "divergences.png":
        diverging = [r for r in runs if r.reading.divergences]
        return "Divergences", "The model's divergence from the task's reference predictors on the training set: " + _per_task(
            diverging, lambda r: ", ".join(f"{r.words(n)} (`{record_key(TRAIN, n)}`)" for n in r.divergences) + ".")
    if name in ANALYSIS_CAPTIONS:
        return ANALYSIS_CAPTIONS[name]
    declared = declared_caption(name)
    if declared is not None:
        return declared
    measure = name[len("measure_"):] if name.startswith("measure_") else name
    measure = measure.removesuffix(".png")
    measured = [r for r in runs if measure in r.measures()] or runs
    title, unit = measure_words(measured, measure)
    unit = f"{unit}." if unit else _per_task(measured, lambda r: r.induction_words + ".")
    return title, f"{title} of every head (rows, layer by layer) on the training set over training: {unit}"


def cell(value) -> str:
    """Table cell text: pipes escaped, newlines flattened, None and NaN as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def fmt(value: float | None, digits: int = 3) -> str:
    """A number to `digits` decimals, or an en dash when missing."""
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def fmt_sequences(value: int | None) -> str:
    """A sequence count with thousands separators, or an en dash."""
    return "–" if value is None else f"{int(value):,}"


def table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _link(target: Path, out: Path) -> str:
    try:
        rel = os.path.relpath(Path(target).resolve(), Path(out).resolve())
    except ValueError:
        rel = str(Path(target).resolve())
    return rel.replace(os.sep, "/")


def _span(span: tuple[int, int] | None) -> str:
    return "–" if span is None else f"{span[0]:,}–{span[1]:,}"


def threshold_text(t: float) -> str:
    """A threshold as written on the command line: 0.9, 0.99."""
    return f"{t:g}"


def level_text(level: Level) -> str:
    """A level in words: its label, and where it is a logged metric, which one."""
    return level.label if level.metric is None else f"{level.label} (`{record_key(TRAIN, level.metric)}` at each evaluation)"


def stage_rule(reading: Reading) -> str:
    """How the stages of a task's runs are read, in one sentence."""
    curve = f"`{set_key(TRAIN, reading.curve)}`"
    tol = f"{reading.tolerance:g}"
    if reading.plateau is None:
        text = f"no plateau level is declared; stages are not read (the steepest fall is of {curve})"
    else:
        text = (f"plateau: the longest stretch of consecutive evaluations (two or more) with {curve} within {tol} nats "
                f"of {level_text(reading.plateau)}; the phase change starts at the first evaluation after it")
    ends = []
    if reading.solved is not None:
        ends.append(f"{curve} comes within {tol} nats of {level_text(reading.solved)}")
    if reading.accuracy_phase is not None:
        ends.append(f"`{set_key(TRAIN)}` reaches {threshold_text(reading.accuracy_phase)}")
    if ends:
        text += " and ends at the first evaluation after the plateau where " + ", or where ".join(ends)
    return text + "."


def slope_text(run_stages: Stages) -> str:
    s = run_stages.steepest
    return "–" if s is None else f"{s.per_k:.3g} at {s.start:,}–{s.end:,}"


def runs_table(runs: list[Run], out: Path) -> str:
    """One row per run: folder, spec, member, task, model (built-in or one's own), status, sequences, final accuracy per set, plateau and
    where the phase change ends (as the run's task reads them)."""
    sets = []
    for r in runs:
        sets += [s for s in r.sets() if s not in sets]
    header = (["run", "spec", "member", "task", "model", "status", "sequences"] + [f"{s} accuracy" for s in sets]
              + ["plateau", "phase change ends at"])
    rows = []
    for r in runs:
        st = stages(r)
        rows.append([f"[{r.path.name}]({_link(r.path, out)})", r.spec, r.member, r.reading.task, r.model, r.status,
                     fmt_sequences(r.sequences)] + [fmt(r.final(f"{s}/accuracy")) for s in sets]
                    + [_span(st.plateau), fmt_sequences(st.end)])
    return table(header, rows)


def stages_table(runs: list[Run]) -> str:
    """One row per run: the curve its stages are read on, the plateau (level, span, length), the phase
    change's start and end, and the steepest fall of the log of that curve; and one more per run with an
    analysis series, read at its kept points (`curvestats.series_run`)."""
    rows = []
    read = [(r.label, r) for r in runs] + [(f"{r.label} (series points)", series_run(r)) for r in runs if series_run(r)]
    for label, r in read:
        st = stages(r)
        rows.append([label, f"`{curve_key(r)}`", "–" if r.reading.plateau is None else r.reading.plateau.label,
                     _span(st.plateau), fmt_sequences(st.plateau_length), fmt_sequences(st.start), fmt_sequences(st.end),
                     slope_text(st)])
    return table(["run", "curve", "plateau level", "plateau", "plateau length", "phase change starts at",
                  "phase change ends at", f"steepest fall of ln(curve) per {PER:,} sequences, at"], rows)


def default_thresholds(runs: list[Run]) -> tuple[float, ...]:
    """The accuracy thresholds the runs' tasks mark their phase change with (0.9 for the few-shot task)."""
    return tuple(sorted({r.reading.accuracy_phase for r in runs if r.reading.accuracy_phase is not None}))


def _logs_running(runs: list[Run]) -> bool:
    return any(r.series(running_key("accuracy"))[0] for r in runs)


def crossing_columns(runs: list[Run], at: tuple[float, ...], sets: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    """(header, run -> sequences) per threshold: the evaluated training accuracy, the running one where
    logged, and the accuracy of each further evaluation set in `sets` (e.g. `in_context`)."""
    cols = []
    for t in at:
        cols.append((f"{set_key(TRAIN)} ≥ {threshold_text(t)}", lambda r, t=t: crossing(r, t)))
        if _logs_running(runs):
            cols.append((f"running {running_key('accuracy')} ≥ {threshold_text(t)}", lambda r, t=t: running_crossing(r, t)))
        cols += [(f"{set_key(s)} ≥ {threshold_text(t)}", lambda r, t=t, s=s: crossing(r, t, set_key(s)))
                 for s in sets if s != TRAIN]
    return cols


def crossings_table(runs: list[Run], at: tuple[float, ...], sets: tuple[str, ...] = ()) -> str | None:
    """One row per run: the first evaluation where each accuracy reaches each threshold; None without thresholds."""
    cols = crossing_columns(runs, at, sets)
    if not cols:
        return None
    return table(["run"] + [h for h, _ in cols], [[r.label] + [fmt_sequences(f(r)) for _, f in cols] for r in runs])


def _mean_range(values: list[float], show) -> str:
    """`mean (min-max)` of the values present, with how many of them there are when some are missing."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    text = f"{show(sum(present) / len(present))} ({show(min(present))}–{show(max(present))})"
    return text if len(present) == len(values) else f"{text}, {len(present)} of {len(values)} seeds"


def _seq_range(values: list[int | None]) -> str:
    return _mean_range([None if x is None else float(x) for x in values], lambda v: fmt_sequences(round(v)))


def seed_curves(runs: list[Run]):
    """The curves drawn from several seeds (runs that differ only in the sweep variable `$seed`)."""
    return [c for c in curves_of(runs) if len(c.runs) > 1]


def seeds_table(runs: list[Run], sets: tuple[str, ...] = ()) -> str | None:
    """One row per curve drawn from several seeds: where the phase change ends, in how many seeds it does, the
    final accuracies (of the training set, the first held-out set and each set in `sets`), the plateau's
    length, where the phase change starts and the steepest fall, as mean (range) over the seeds; None without
    seed curves."""
    curves = seed_curves(runs)
    if not curves:
        return None
    heldout = any(SEEDS_HELDOUT in r.sets() for r in runs)
    more = tuple(s for s in sets if s not in (TRAIN, SEEDS_HELDOUT) or (s == SEEDS_HELDOUT and not heldout))
    rows = []
    for c in curves:
        st = [stages(r) for r in c.runs]
        ends = [s.end for s in st]
        slopes = [None if s.steepest is None else s.steepest.per_k for s in st]
        rows.append([c.label.split(" (mean")[0], len(c.runs), _seq_range(ends),
                     f"{sum(x is not None for x in ends)} of {len(ends)}",
                     _mean_range([r.final(set_key(TRAIN, "accuracy")) for r in c.runs], fmt)]
                    + ([_mean_range([r.final(set_key(SEEDS_HELDOUT)) for r in c.runs], fmt)] if heldout else [])
                    + [_mean_range([r.final(set_key(s)) for r in c.runs], fmt) for s in more]
                    + [_seq_range([s.plateau_length for s in st]), _seq_range([s.start for s in st]),
                       _mean_range(slopes, lambda v: f"{v:.3g}")])
    return table(["curve", "seeds", "phase change ends at, mean (range)", "seeds where it ends", "final train accuracy"]
                 + ([f"final {SEEDS_HELDOUT} accuracy"] if heldout else []) + [f"final {s} accuracy" for s in more]
                 + ["plateau length", "phase change starts at", f"steepest fall of ln(curve) per {PER:,} sequences"], rows)


def seeds_crossings_table(runs: list[Run], at: tuple[float, ...], sets: tuple[str, ...] = ()) -> str | None:
    """One row per seed curve: each crossing of `crossings_table` as mean (range) over the seeds."""
    curves, cols = seed_curves(runs), crossing_columns(runs, at, sets)
    if not curves or not cols:
        return None
    return table(["curve", "seeds"] + [h for h, _ in cols],
                 [[c.label.split(" (mean")[0], len(c.runs)] + [_seq_range([f(r) for r in c.runs]) for _, f in cols]
                  for c in curves])


def figures_section(figures: dict[str, Path], out: Path, runs: list[Run]) -> str:
    """Each written figure under a heading, linked relative to report.md."""
    parts = ["## Figures"]
    for name, path in figures.items():
        title, text = caption(name, runs)
        parts.append(f"### {title}\n\n{text}\n\n![{title}]({_link(path, out)})")
    return "\n\n".join(parts)


def _scores(s: dict | None) -> list[str]:
    return [fmt((s or {}).get("accuracy")), fmt((s or {}).get("loss"))]


def analysis_section(run: Run, out: Path) -> str:
    """The tables of one run's analysis.json: heads, groups (Table 1), paths and subset (Table 2)."""
    a = run.analysis
    parts = [f"### {cell(run.label)} ([{run.path.name}]({_link(run.path, out)}))"]
    facts = []
    if isinstance(a.get("sequences"), int):
        facts.append(f"checkpoint after {a['sequences']:,} training sequences")
    ev = a.get("eval")
    if isinstance(ev, dict):
        count = fmt_sequences(ev["sequences"]) if isinstance(ev.get("sequences"), int) else "some"
        facts.append(f"evaluated on {count} sequences of the {ev.get('set', '?')} set")
    if "full" in a:
        facts.append(f"full model: accuracy {fmt(a['full']['accuracy'])}, loss {fmt(a['full']['loss'])} nats")
    facts.append(f"chance accuracy {fmt(a['chance'], 2)}")
    parts.append("; ".join(facts) + ".")
    if a.get("heads"):
        rows = []
        for layer, modes in a["heads"].items():
            heads = sorted({h for per in modes.values() for h in per}, key=index_order)
            for h in heads:
                ablated, only = modes.get("ablate_one", {}).get(h), modes.get("only_one", {}).get(h)
                rows.append([layer, h] + _scores(ablated) + _scores(only))
        parts.append("#### One head ablated, or only one on (Figure 4a)\n\n" + table(
            ["layer", "head", "accuracy, head ablated", "loss, head ablated", "accuracy, only this head",
             "loss, only this head"], rows))
    if a.get("groups"):
        rows = []
        for g in a["groups"]:
            heads = ",".join(str(h) for h in g["heads"]) if isinstance(g.get("heads"), list) else g.get("heads")
            rows.append([g["name"], g.get("layer"), heads] + _scores(g.get("ablated"))
                        + _scores(g.get("pattern_preserving")) + _scores(g.get("value_preserving")))
        parts.append("#### Head groups (Table 1)\n\n" + table(
            ["group", "layer", "heads", "accuracy, ablated", "loss, ablated", "accuracy, pattern-preserving",
             "loss, pattern-preserving", "accuracy, value-preserving", "loss, value-preserving"], rows))
    for pair, paths in (a.get("paths") or {}).items():
        earlier, later = pair.split("-")
        matrix = paths["accuracy"]
        rows = [[f"{earlier}.H{i}"] + [fmt(v) for v in row] for i, row in enumerate(matrix)]
        parts.append(f"#### One path {pair}: accuracy (Figure 11b)\n\n"
                     f"Rows: the {earlier} head kept on; columns: the {later} head kept on (the other layers' heads all on).\n\n"
                     + table([f"{earlier} \\ {later}"] + [f"{later}.H{j}" for j in range(len(matrix[0]))], rows))
    if a.get("subset"):
        s = a["subset"]
        heads = sorted(set(s["accuracy_all"]) | set(s["accuracy_on_wrong"]), key=index_order)
        ref = str(s.get("reference") or "the reference head")
        layer = ref.split(".")[0] + "." if re.match(r"^L\d+\.H\d+$", ref) else ""
        rows = [[layer + h if h.startswith("H") else h, fmt(s["accuracy_all"].get(h)),
                 fmt(s["accuracy_on_wrong"].get(h))] for h in heads]
        counts = ""
        if isinstance(s.get("sequences"), int) and isinstance(s.get("wrong"), int):
            counts = f", wrong on {s['wrong']:,} of {s['sequences']:,} sequences"
        parts.append(f"#### The sequences the reference head gets wrong (Table 2)\n\nReference: {cell(ref)}{counts}.\n\n"
                     + table(["head", "accuracy, all sequences", f"accuracy, sequences {ref} gets wrong"], rows))
    parts += declared_tables(a)
    return "\n\n".join(parts)


MARKDOWN_TABLES = ("heads", "groups", "paths", "subset")
"""The sections `analysis_section` writes as markdown tables; every other registered section is shown
as its analysis's console table."""


def declared_tables(a: dict) -> list[str]:
    """The console table of each registered analysis's section in `a` (the report's dict) that has no
    markdown table here, under the analysis's title."""
    present = [d for d in REGISTRY.values() if d.name not in MARKDOWN_TABLES and a.get(d.name) is not None]
    if not present:
        return []
    result = analysis_layout().model_validate(a)
    out = []
    for d in present:
        text = "\n".join(d.table(result.section(d.name), result)).strip("\n")
        if text:
            out.append(f"#### {d.title}\n\n```text\n{text}\n```")
    return out


def series_section(run: Run, out: Path) -> str | None:
    """One run's analysis series at its chosen points (`curvestats.chosen_points`): Table 1 (accuracy
    of each group ablated, pattern-preserving, value-preserving) and the path map, and the per-token
    loss trajectory's share of the variance per component; None without those sections."""
    series = run.analysis_series
    if series is None or not (series.analyses or series.trajectory):
        return None
    shown = chosen_points(run)
    how = "the kept points nearest `--points`" if run.shown_points else "the stage boundaries read at the series points, and the last point"
    parts = [f"### {cell(run.label)} ([{run.path.name}]({_link(run.path, out)}))",
             f"{len(series.points)} kept points on {series.eval['sequences']:,} {series.eval['set']} sequences; "
             f"shown at {', '.join(fmt_sequences(x) for x in shown)} ({how})."]
    if series.trajectory:
        t = series.trajectory
        parts.append("Per-token loss trajectory: " + ", ".join(f"PC{k + 1} holds {100 * e:.1f}%" for k, e in
                                                               enumerate(t.explained)) + " of the variance over points.")
    groups = series.analyses.get("groups")
    if groups:
        rows = []
        for seen in shown:
            i = series.sequences.index(seen)
            for g in groups[i]:
                rows.append([fmt_sequences(seen), g["name"], fmt(series.full.accuracy[i])] + [
                    fmt((g.get(k) or {}).get("accuracy")) for k in ("ablated", "pattern_preserving", "value_preserving")])
        parts.append("#### Table 1 at the points shown\n\n" + table(
            ["sequences", "group", "accuracy, full model", "accuracy, ablated", "accuracy, pattern-preserving",
             "accuracy, value-preserving"], rows))
    for pair in (series.analyses.get("paths") or [{}])[-1]:
        earlier, later = pair.split("-")
        for seen in shown:
            matrix = series.analyses["paths"][series.sequences.index(seen)][pair]["accuracy"]
            rows = [[f"{earlier}.H{i}"] + [fmt(v) for v in row] for i, row in enumerate(matrix)]
            parts.append(f"#### One path {pair} at {fmt_sequences(seen)} sequences: accuracy (Figure 11b)\n\n"
                         + table([f"{earlier} \\ {later}"] + [f"{later}.H{j}" for j in range(len(matrix[0]))], rows))
    return "\n\n".join(parts)


def stage_rules(runs: list[Run]) -> str:
    """How each of the runs' tasks reads its stages, one line per task."""
    return " " + _per_task(runs, stage_rule) if len(readings_of(runs)) == 1 else "\n\n" + "\n".join(
        f"- {r.task}: {stage_rule(r)}" for r in readings_of(runs))


def _llc_settings(run: Run) -> str:
    """How a run's LLC was estimated, in one line (the settings that decide its value)."""
    r = run.llc
    st = r.settings
    return (f"{r.weights} weights, {r.interventions} interventions, nbeta {r.nbeta:.3g}, {st.chains} chains x {st.steps} "
            f"steps (burn-in {st.burn_in}), eps {st.eps:g}, gamma {st.gamma:g}, batch {st.batch}")


def llc_section(runs: list[Run]) -> str | None:
    """Each run's LLC at its kept points (estimate, the chains' standard deviation, split-R-hat, whether
    the chains converged), and for runs that differ only in `$seed`, the mean (range) at each point they
    share; None when no run has an llc.json."""
    estimated = [r for r in runs if r.llc is not None and r.llc.points]
    if not estimated:
        return None
    parts = ["## Local learning coefficient",
             "`opto llc RUN --over-training`: SGLD around each kept point (docs/series.md); `converged` is NO "
             "where the chains' split-R-hat exceeds 1.1 or a chain diverged. Compare points of one run, at one setting."]
    for c in seed_curves(estimated):
        shared = sorted(set.intersection(*({p.sequences for p in r.llc.points} for r in c.runs)))
        by = [{p.sequences: p for p in r.llc.points} for r in c.runs]
        rows = [[fmt_sequences(x), _mean_range([b[x].llc for b in by], lambda v: f"{v:.2f}"),
                 f"{sum(b[x].converged for b in by)} of {len(by)}"] for x in shared]
        parts += [f"### {cell(c.label.split(' (mean')[0])}, over {len(c.runs)} seeds",
                  table(["sequences", "LLC, mean (range)", "seeds converged"], rows)]
    for r in estimated:
        rows = [[fmt_sequences(p.sequences), f"{p.llc:.2f}", f"{p.llc_std:.2f}", "–" if p.rhat is None else f"{p.rhat:.2f}",
                 "yes" if p.converged else "NO"] for p in r.llc.points]
        parts += [f"### {cell(r.label)}", _llc_settings(r) + ".",
                  table(["sequences", "LLC", "std over chains", "R-hat", "converged"], rows)]
    return "\n\n".join(parts)


def values_table(runs: list[Run], values: tuple[str, ...], points: tuple[int, ...] | None) -> str:
    """One row per run and logged key that `values` names (`value_keys`), its value at the evaluation
    nearest each of `points` (default: the last), so a document can quote a curve at chosen lengths."""
    rows = []
    for r in runs:
        for key in dict.fromkeys(k for v in values for k in value_keys(r, v)):
            logged = [m for m in r.metrics if isinstance(m.get(key), (int, float)) and "sequences" in m]
            cells = []
            for point in points or ((logged[-1]["sequences"],) if logged else ()):
                if not logged:
                    cells.append(None)
                    continue
                m = min(logged, key=lambda m: abs(m["sequences"] - point))
                text = "–" if math.isnan(m[key]) else f"{m[key]:.3g}"
                cells.append(text if m["sequences"] == point else f"{text} (at {fmt_sequences(m['sequences'])})")
            rows.append([r.label, f"`{key}`", *cells])
    heads = [f"at {fmt_sequences(p)}" for p in points] if points else ["last evaluation"]
    return table(["run", "value", *heads], rows)


def render_report(runs: list[Run], figures: dict[str, Path], out: Path, at: tuple[float, ...] | None = None,
                  sets: tuple[str, ...] = (), values: tuple[str, ...] = (), points: tuple[int, ...] | None = None) -> str:
    """The whole report.md text; crossings at the thresholds `at` (default: the tasks' phase-change
    accuracies) of the training accuracy and of each evaluation set in `sets`, whose final accuracies
    the seeds' table shows too; analysis tables only for runs with an analysis.json."""
    at = default_thresholds(runs) if at is None else at
    parts = [f"# Report: {len(runs)} run{'s' if len(runs) != 1 else ''}",
             "Sequences are training sequences seen. Each run is read as its task declares:" + stage_rules(runs),
             "## Runs", runs_table(runs, out),
             "## Stages", f"The steepest fall is of the natural log of the curve per {PER:,} training sequences, between two "
                          "consecutive evaluations from the plateau on (over the whole curve without a plateau).",
             stages_table(runs)]
    crossings = crossings_table(runs, at, sets)
    if crossings:
        named = ", ".join(f"`{set_key(s)}`" for s in sets if s != TRAIN)
        parts += ["## Crossings", f"The first evaluation where `{set_key(TRAIN)}` (the evaluated training-set accuracy), "
                  f"{'' if named else 'and '}the running `{running_key('accuracy')}` (the mean over the training batches "
                  f"since the previous evaluation) where logged, {f'and {named}, ' if named else ''}reaches each threshold.",
                  crossings]
    seeds = seeds_table(runs, sets)
    if seeds:
        parts += ["## Over seeds", "Runs that differ only in the sweep variable `$seed`, as mean (min–max) over the seeds.",
                  seeds]
        over = seeds_crossings_table(runs, at, sets)
        if over:
            parts.append(over)
    if values:
        parts += ["## Values", "Logged values at the evaluation nearest each length (`opto report --values ... --points ...`)"
                  "; a cell names the evaluation it comes from where that is not the length asked.",
                  values_table(runs, values, points)]
    parts.append(figures_section(figures, out, runs))
    llc = llc_section(runs)
    if llc:
        parts.append(llc)
    over = [text for text in (series_section(r, out) for r in runs) if text]
    if over:
        parts += ["## Over training", "Each run's `analysis_series.json` (`opto analyze --over-training`) at chosen "
                  "kept points (`opto report --points`)."] + over
    analysed = [r for r in runs if r.analysis]
    if analysed:
        parts.append("## Analysis")
        parts += [analysis_section(r, out) for r in analysed]
    return "\n\n".join(parts) + "\n"


def console_text(runs: list[Run], at: tuple[float, ...] | None = None, sets: tuple[str, ...] = ()) -> str:
    """What `opto report` prints: each run's stages and crossings, and their mean (range) over seeds."""
    at = default_thresholds(runs) if at is None else at
    cols = crossing_columns(runs, at, sets)
    lines = []
    for r in runs:
        st = stages(r)
        level = "" if r.reading.plateau is None else f" at {r.reading.plateau.label}"
        lines.append(f"{r.label}: plateau{level} {_span(st.plateau)} ({fmt_sequences(st.plateau_length)} sequences); "
                     f"phase change {fmt_sequences(st.start)} to {fmt_sequences(st.end)}; steepest fall of "
                     f"ln({curve_key(r)}) per {PER:,} sequences {slope_text(st)}")
        if cols:
            lines.append("  " + "; ".join(f"{h} at {fmt_sequences(f(r))}" for h, f in cols))
        over = series_run(r)
        if over is not None:
            so = stages(over)
            lines.append(f"  at its {len(over.metrics)} series points (analysis_series.json): plateau {_span(so.plateau)}; "
                         f"phase change {fmt_sequences(so.start)} to {fmt_sequences(so.end)}")
    for c in seed_curves(runs):
        st = [stages(r) for r in c.runs]
        lines.append(f"{c.label.split(' (mean')[0]}, mean (range) over {len(c.runs)} seeds: plateau length "
                     f"{_seq_range([s.plateau_length for s in st])}; phase change {_seq_range([s.start for s in st])} "
                     f"to {_seq_range([s.end for s in st])}")
        if cols:
            lines.append("  " + "; ".join(f"{h} at {_seq_range([f(r) for r in c.runs])}" for h, f in cols))
        over = [series_run(r) for r in c.runs]
        if all(over):
            so = [stages(r) for r in over]
            lines.append(f"  at the series points: phase change {_seq_range([s.start for s in so])} to "
                         f"{_seq_range([s.end for s in so])}")
    return "\n".join(lines)
