"""Plain-text tables of an analysis result, for the console; read through `schema.Analysis`, the one
layout of `analysis.json`."""

from __future__ import annotations

from .schema import Analysis, Scores


def _acc(entry: Scores | float | None) -> str:
    if entry is None:
        return "-"
    return f"{entry.accuracy:.3f}" if isinstance(entry, Scores) else f"{entry:.3f}"


def _loss(entry: Scores | None) -> str:
    return "-" if entry is None or entry.loss is None else f"{entry.loss:.3f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def ablation_ranking(result: Analysis) -> list[tuple[str, float]]:
    """Every head of every layer, most costly first: the loss its ablation adds to the full model's."""
    if result.heads is None or result.full is None or result.full.loss is None:
        return []
    costs = [(f"{layer}.{h}", s.loss - result.full.loss) for layer, kinds in result.heads.items()
             for h, s in kinds.ablate_one.items() if s.loss is not None]
    return sorted(costs, key=lambda kv: -kv[1])


def interventions_line(result: Analysis) -> str:
    """Which forward every score below comes from: the run's own interventions, or the bare network."""
    if result.bare:
        return "scored on the bare network (--bare): none of the run's own interventions applied"
    if result.interventions == "none":
        return "scored as the run trained: it has no interventions"
    bindings = ", ".join(f"${k}={v}" for k, v in result.bindings.items())
    return (f"scored under the run's own interventions{f' ({bindings})' if bindings else ''}, every ablation added to them: "
            + "; ".join(result.interventions))


def render_tables(data: dict) -> str:
    """The analysis dict (`opto analyze`'s JSON) as aligned text tables."""
    result = Analysis.model_validate(data)
    ev = result.eval
    lines = [f"{result.run_dir}: checkpoint at {result.sequences:,} sequences; "
             f"{ev.sequences:,} sequences of {ev.set}; chance {result.chance:.2f}",
             interventions_line(result)]
    if result.scored:
        lines.append(f"every loss (nats) and accuracy below is on {result.scored}")
    if result.full is not None:
        lines.append(f"full model: accuracy {result.full.accuracy:.4f}, loss {result.full.loss:.4f}")
    if result.references:
        lines.append("reference losses: " + ", ".join(f"{k} {v:.4f}" for k, v in result.references.items()))
    for layer, kinds in (result.heads or {}).items():
        heads = list(kinds.ablate_one)
        lines += ["", f"{layer} (Figure 4a)          " + "  ".join(f"{h:>6}" for h in heads),
                  "  that head ablated, acc  " + "  ".join(f"{_acc(kinds.ablate_one[h]):>6}" for h in heads),
                  "  that head ablated, loss " + "  ".join(f"{_loss(kinds.ablate_one[h]):>6}" for h in heads),
                  "  only that head on, acc  " + "  ".join(f"{_acc(kinds.only_one[h]):>6}" for h in heads),
                  "  only that head on, loss " + "  ".join(f"{_loss(kinds.only_one[h]):>6}" for h in heads)]
    ranked = ablation_ranking(result)
    if ranked:
        base = result.full.loss
        lines += ["", "heads ranked by the loss their ablation costs (nats above the full model's "
                      f"{base:.4f}):",
                  "  " + ", ".join(f"{name} {cost:+.4f}" for name, cost in ranked)]
    for name, table in (result.measures or {}).items():
        for layer, per_head in table.items():
            lines.append(f"{name} {layer}: " + "  ".join(f"{h} {_num(v)}" for h, v in per_head.items()))
    if result.groups:
        lines += ["", "head groups (Table 1)        ablated  pattern-preserving  value-preserving"]
        for g in result.groups:
            lines.append(f"  {g.name:<26} {_acc(g.ablated):>7}  {_acc(g.pattern_preserving):>18}  "
                         f"{_acc(g.value_preserving):>16}")
    for pair, paths in (result.paths or {}).items():
        earlier, later = pair.split("-")
        acc = paths.accuracy
        lines += ["", f"one path {pair} (Figure 11b): rows {earlier} head kept on, columns {later} head kept on",
                  "       " + "  ".join(f"{later}.H{b}" for b in range(len(acc[0])))]
        lines += [f"  {earlier}.H{a} " + "  ".join(f"{v:>5.3f}" for v in row) for a, row in enumerate(acc)]
    for pair, kinds in (result.composition or {}).items():
        earlier, later = pair.split("-")
        for name, matrix in ((name, getattr(kinds, name)) for name in ("Q", "K", "V")):
            if matrix is None:
                continue
            lines += ["", f"{name}-composition {pair} (Figure 11c): rows {earlier} head (writer), columns {later} head (reader)",
                      *("  " + "  ".join(f"{v:.3f}" for v in row) for row in matrix)]
    if result.subset is not None:
        s = result.subset
        heads = list(s.accuracy_all)
        lines += ["", f"Table 2: {s.reference} alone is wrong on {s.wrong:,} of {s.sequences:,} sequences",
                  "  head alone           " + "  ".join(f"{h:>6}" for h in heads),
                  "  accuracy, all        " + "  ".join(f"{_acc(s.accuracy_all[h]):>6}" for h in heads),
                  "  accuracy, its misses " + "  ".join(f"{_acc(s.accuracy_on_wrong[h]):>6}" for h in heads)]
    if result.perfected is not None:
        lines += _perfected_lines(result.perfected)
    if result.added is not None:
        a = result.added
        lines += ["", f"{a.layer} heads kept on, added in order of induction strength (Figure 14): "
                      + ", ".join(f"{h} {a.strength[h]:.2f}" for h in a.order),
                  "  heads on                 " + "  ".join(f"{k:>6}" for k in range(1, len(a.from_strongest) + 1)),
                  "  from the strongest, loss " + "  ".join(f"{s.loss:>6.3f}" for s in a.from_strongest),
                  "  from the second, loss    " + "  ".join(f"{s.loss:>6.3f}" for s in a.from_second)]
    return "\n".join(lines)


def _perfected_lines(p) -> list[str]:
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
