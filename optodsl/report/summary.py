"""report.md: the runs table, the figures with relative links, and the analysis tables (Tables 1 and 2).

Every function here returns text from loaded runs, so the markdown can be checked without drawing.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..analysis.schema import index_order
from ..tasks.records import TRAIN, set_key, set_order
from .curvestats import phase_change, plateau
from .figures import curves_of
from .load import Run

PHASE_THRESHOLD = 0.9
PLATEAU_TOLERANCE = 0.05
SEEDS_HELDOUT = set_order()[1]
"""The held-out set whose final accuracy the seeds table shows (the paper's held-out labels)."""
FIGURE_CAPTIONS = {
    "loss.png": ("Loss", "Loss on the training set (held-out sets dashed when few runs) against training sequences seen; "
                         "the grey line is chance, ln 2 nats."),
    "accuracy.png": ("Accuracy", "Accuracy on the training set against training sequences seen; the grey line is chance, 0.5."),
    "induction.png": ("Induction strength", "Induction strength of every head on the training set over training (Figure 3b)."),
    "prev_token.png": ("Previous-token attention",
                       "Attention of every head to the previous token on the training set over training."),
    "perfected.png": ("Progress measures of clamps", "Training loss, and the loss of the same checkpoints with each "
                      "`eval.perfected` line added (Appendix Figure 10)."),
    "ablation.png": ("Ablating one head vs keeping only one", "Accuracy with each head ablated and with only that head on; "
                     "dashed: the full model and chance (Figure 4a)."),
    "paths.png": ("One path", "Accuracy with one head of an earlier layer and one of a later layer kept on, "
                              "one panel per layer pair (Figure 11b)."),
    "composition.png": ("Composition", "Q-, K- and V-composition scores from an earlier layer's heads to a later "
                                       "layer's, one row per layer pair (Figure 11c)."),
}


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


def runs_table(runs: list[Run], out: Path) -> str:
    """One row per run: folder, spec, member, status, sequences, final accuracy per set, phase change and plateau."""
    sets = []
    for r in runs:
        sets += [s for s in r.sets() if s not in sets]
    header = (["run", "spec", "member", "status", "sequences"] + [f"{s} accuracy" for s in sets]
              + [f"phase change at (train accuracy ≥ {PHASE_THRESHOLD})",
                 f"plateau (train loss within {PLATEAU_TOLERANCE} of ln 2)"])
    rows = []
    for r in runs:
        span = plateau(r, PLATEAU_TOLERANCE)
        rows.append([f"[{r.path.name}]({_link(r.path, out)})", r.spec, r.member, r.status, fmt_sequences(r.sequences)]
                    + [fmt(r.final(f"{s}/accuracy")) for s in sets]
                    + [fmt_sequences(phase_change(r, PHASE_THRESHOLD)),
                       "–" if span is None else f"{span[0]:,}–{span[1]:,}"])
    return table(header, rows)


def _mean_range(values: list[float], show) -> str:
    """`mean (min-max)` of the values present, with how many of them there are when some are missing."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    text = f"{show(sum(present) / len(present))} ({show(min(present))}–{show(max(present))})"
    return text if len(present) == len(values) else f"{text}, {len(present)} of {len(values)} seeds"


def seeds_table(runs: list[Run]) -> str | None:
    """One row per curve drawn from several seeds: the phase change and final accuracies as mean (range) over
    the seeds, and in how many seeds train accuracy reaches the phase-change threshold; None without seed curves."""
    curves = [c for c in curves_of(runs) if len(c.runs) > 1]
    if not curves:
        return None
    rows = []
    for c in curves:
        changes = [phase_change(r, PHASE_THRESHOLD) for r in c.runs]
        rows.append([c.label.split(" (mean")[0], len(c.runs),
                     _mean_range([None if x is None else float(x) for x in changes], lambda v: fmt_sequences(round(v))),
                     f"{sum(x is not None for x in changes)} of {len(changes)}",
                     _mean_range([r.final(set_key(TRAIN, "accuracy")) for r in c.runs], fmt),
                     _mean_range([r.final(set_key(SEEDS_HELDOUT)) for r in c.runs], fmt)])
    return table(["curve", "seeds", f"phase change at (train accuracy ≥ {PHASE_THRESHOLD}), mean (range)",
                  f"seeds reaching {PHASE_THRESHOLD}", "final train accuracy", f"final {SEEDS_HELDOUT} accuracy"], rows)


def figures_section(figures: dict[str, Path], out: Path) -> str:
    """Each written figure under a heading, linked relative to report.md."""
    parts = ["## Figures"]
    for name, path in figures.items():
        title, caption = FIGURE_CAPTIONS.get(name, (name, ""))
        parts.append(f"### {title}\n\n{caption}\n\n![{title}]({_link(path, out)})")
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
    return "\n\n".join(parts)


def render_report(runs: list[Run], figures: dict[str, Path], out: Path) -> str:
    """The whole report.md text; analysis tables only for runs with an analysis.json."""
    parts = [f"# Report: {len(runs)} run{'s' if len(runs) != 1 else ''}",
             f"Sequences are training sequences seen. Phase change: the first evaluation where train accuracy "
             f"reaches {PHASE_THRESHOLD}. Plateau: the longest stretch of consecutive evaluations (two or more) "
             f"whose train loss stays within {PLATEAU_TOLERANCE} nats of ln 2 ≈ {math.log(2):.3f}.",
             "## Runs", runs_table(runs, out)]
    seeds = seeds_table(runs)
    if seeds:
        parts += ["## Over seeds", "Runs that differ only in the sweep variable `$seed`, as mean (min–max) over the seeds.",
                  seeds]
    parts.append(figures_section(figures, out))
    analysed = [r for r in runs if r.analysis]
    if analysed:
        parts.append("## Analysis")
        parts += [analysis_section(r, out) for r in analysed]
    return "\n\n".join(parts) + "\n"

