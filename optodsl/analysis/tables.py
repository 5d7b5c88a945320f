"""Plain-text tables of an analysis result, for the console; read through the one layout of
`analysis.json` (`registry.analysis_layout`). Each registered analysis names its table; those of
the built-in sections are here."""

from __future__ import annotations

from .registry import REGISTRY, analysis_layout
from .schema import Added, AnalysisBase, Perfected, Scores, Subset


def _acc(entry: Scores | float | None) -> str:
    if entry is None:
        return "-"
    return f"{entry.accuracy:.3f}" if isinstance(entry, Scores) else f"{entry:.3f}"


def _loss(entry: Scores | None) -> str:
    return "-" if entry is None or entry.loss is None else f"{entry.loss:.3f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def ablation_ranking(result: AnalysisBase) -> list[tuple[str, float]]:
    """Every head of every layer, most costly first: the loss its ablation adds to the full model's."""
    heads = result.section("heads")
    if heads is None or result.full is None or result.full.loss is None:
        return []
    costs = [(f"{layer}.{h}", s.loss - result.full.loss) for layer, kinds in heads.items()
             for h, s in (kinds.ablate_one or {}).items() if s.loss is not None]
    return sorted(costs, key=lambda kv: -kv[1])


def interventions_line(result: AnalysisBase) -> str:
    """Which forward every score below comes from: the run's own interventions, or the bare network."""
    if result.bare:
        return "scored on the bare network (--bare): none of the run's own interventions applied"
    if result.interventions == "none":
        return "scored as the run trained: it has no interventions"
    bindings = ", ".join(f"${k}={v}" for k, v in result.bindings.items())
    return (f"scored under the run's own interventions{f' ({bindings})' if bindings else ''}, every ablation added to them: "
            + "; ".join(result.interventions))


def render_tables(data: dict) -> str:
    """The analysis dict (`opto analyze`'s JSON) as aligned text tables: what every file has, then each
    registered analysis's section it holds, as that analysis's table."""
    result = analysis_layout().model_validate(data)
    ev = result.eval
    chance = "" if result.chance is None else f"; chance {result.chance:.2f}"
    lines = [f"{result.run_dir}: checkpoint at {result.sequences:,} sequences; "
             f"{ev.sequences:,} sequences of {ev.set}{chance}",
             interventions_line(result)]
    if result.scored:
        lines.append(f"every loss (nats) and accuracy below is on {result.scored}")
    if result.full is not None:
        lines.append(f"full model: accuracy {result.full.accuracy:.4f}, loss {result.full.loss:.4f}")
    if result.references:
        lines.append("reference losses: " + ", ".join(f"{k} {v:.4f}" for k, v in result.references.items()))
    for name, table in (result.measures or {}).items():
        for layer, per_head in table.items():
            lines.append(f"{name} {layer}: " + "  ".join(f"{h} {_num(v)}" for h, v in per_head.items()))
    for declared in REGISTRY.values():
        section = result.section(declared.name)
        if section is not None:
            lines += declared.table(section, result)
    return "\n".join(lines)


def heads_lines(heads: dict, result: AnalysisBase) -> list[str]:
    """Figure 4a per layer, and every head ranked by the loss its ablation costs."""
    lines = []
    for layer, kinds in heads.items():
        names = list(kinds.ablate_one)
        lines += ["", f"{layer} (Figure 4a)          " + "  ".join(f"{h:>6}" for h in names),
                  "  that head ablated, acc  " + "  ".join(f"{_acc(kinds.ablate_one[h]):>6}" for h in names),
                  "  that head ablated, loss " + "  ".join(f"{_loss(kinds.ablate_one[h]):>6}" for h in names),
                  "  only that head on, acc  " + "  ".join(f"{_acc(kinds.only_one[h]):>6}" for h in names),
                  "  only that head on, loss " + "  ".join(f"{_loss(kinds.only_one[h]):>6}" for h in names)]
    ranked = ablation_ranking(result)
    if ranked:
        lines += ["", "heads ranked by the loss their ablation costs (nats above the full model's "
                      f"{result.full.loss:.4f}):",
                  "  " + ", ".join(f"{name} {cost:+.4f}" for name, cost in ranked)]
    return lines


def groups_lines(groups: list, result: AnalysisBase) -> list[str]:
    """Table 1."""
    if not groups:
        return []
    lines = ["", "head groups (Table 1)        ablated  pattern-preserving  value-preserving"]
    for g in groups:
        lines.append(f"  {g.name:<26} {_acc(g.ablated):>7}  {_acc(g.pattern_preserving):>18}  "
                     f"{_acc(g.value_preserving):>16}")
    return lines


def paths_lines(paths: dict, result: AnalysisBase) -> list[str]:
    """Figure 11b per layer pair."""
    lines = []
    for pair, entry in paths.items():
        earlier, later = pair.split("-")
        acc = entry.accuracy
        lines += ["", f"one path {pair} (Figure 11b): rows {earlier} head kept on, columns {later} head kept on",
                  "       " + "  ".join(f"{later}.H{b}" for b in range(len(acc[0])))]
        lines += [f"  {earlier}.H{a} " + "  ".join(f"{v:>5.3f}" for v in row) for a, row in enumerate(acc)]
    return lines


def composition_lines(composition: dict, result: AnalysisBase) -> list[str]:
    """Figure 11c per layer pair."""
    lines = []
    for pair, kinds in composition.items():
        earlier, later = pair.split("-")
        for name, matrix in ((name, getattr(kinds, name)) for name in ("Q", "K", "V")):
            if matrix is None:
                continue
            lines += ["", f"{name}-composition {pair} (Figure 11c): rows {earlier} head (writer), columns {later} head (reader)",
                      *("  " + "  ".join(f"{v:.3f}" for v in row) for row in matrix)]
    return lines


def subset_lines(s: Subset, result: AnalysisBase) -> list[str]:
    """Table 2."""
    heads = list(s.accuracy_all)
    return ["", f"Table 2: {s.reference} alone is wrong on {s.wrong:,} of {s.sequences:,} sequences",
            "  head alone           " + "  ".join(f"{h:>6}" for h in heads),
            "  accuracy, all        " + "  ".join(f"{_acc(s.accuracy_all[h]):>6}" for h in heads),
            "  accuracy, its misses " + "  ".join(f"{_acc(s.accuracy_on_wrong[h]):>6}" for h in heads)]


def added_lines(a: Added, result: AnalysisBase) -> list[str]:
    """Figure 14."""
    return ["", f"{a.layer} heads kept on, added in order of induction strength (Figure 14): "
                + ", ".join(f"{h} {a.strength[h]:.2f}" for h in a.order),
            "  heads on                 " + "  ".join(f"{k:>6}" for k in range(1, len(a.from_strongest) + 1)),
            "  from the strongest, loss " + "  ".join(f"{s.loss:>6.3f}" for s in a.from_strongest),
            "  from the second, loss    " + "  ".join(f"{s.loss:>6.3f}" for s in a.from_second)]


def perfected_lines(p: Perfected, result: AnalysisBase) -> list[str]:
    """Figure 16's per-head and per-label numbers and Table 3."""
    heads = list(p.heads)
    labels = range(len(p.label_counts))
    lines = ["", f"{p.layer} head alone, its match computed or perfected (Figure 16)   " + "  ".join(f"{h:>6}" for h in heads),
             "  accuracy, computed match                             " + "  ".join(f"{_acc(p.heads[h].computed):>6}" for h in heads),
             "  accuracy, perfected match                            " + "  ".join(f"{_acc(p.heads[h].perfected):>6}" for h in heads)]
    for name, field in (("accuracy with the perfected match, correct label", "accuracy_by_label"),
                        ("share of its mistakes, correct label", "mistake_share_by_label")):
        lines.append(f"  {name}:")
        lines += [f"    label {lab:<47}" + "  ".join(f"{_acc(getattr(p.heads[h], field)[lab]):>6}" for h in heads) for lab in labels]
    if p.subset is not None:
        s = p.subset
        lines += ["", f"Table 3: {s.reference} alone with a perfect match is wrong on {s.wrong:,} of {s.sequences:,} sequences",
                  "  head alone, perfect match " + "  ".join(f"{h:>6}" for h in heads),
                  "  accuracy, all             " + "  ".join(f"{_acc(s.accuracy_all[h]):>6}" for h in heads),
                  "  accuracy, its misses      " + "  ".join(f"{_acc(s.accuracy_on_wrong[h]):>6}" for h in heads)]
    return lines
