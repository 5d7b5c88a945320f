"""A whole spec to experiments: sweeps and variants expanded, settings applied (`settings.py`
checks them), verbs lowered, conflicts refused and no-effect clauses reported as warnings. Runs
no JAX.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from typing import Callable

from ..config import ExperimentConfig
from ..errors import Span, SpecError, SpecWarning
from ..model.parameters import head_selected
from ..measures import unmet_need
from ..model.protocol import SiteTable
from ..syntax import ast
from ..syntax.format import format_number
from ..syntax.hints import close
from .plan import Action, Member, WeightAction, in_pass
from .registry import VERBS
from ..tasks import Layout, layout
from .resolve import Resolver
from .settings import apply_cli as apply_cli, apply_settings, check_task_settings


PAIRED_HINT = "a paired sweep takes a list of tuples, e.g. sweep (classes, labels) in [(100, 5), (50, 10)]"


def sweep_bindings(spec: ast.Spec) -> list[dict[str, object]]:
    """Every combination of the spec's sweep values (one empty binding without sweeps); the
    variables of a paired sweep take their values together, one row at a time."""
    declared: set[str] = set()
    groups: list[tuple[tuple[str, ...], list[tuple]]] = []
    for st in spec.statements:
        if not isinstance(st, ast.Sweep):
            continue
        for name in st.names:
            if name in declared:
                raise SpecError(st.span, f"sweep variable '${name}' is declared twice", hint="give each sweep its own name")
            declared.add(name)
        groups.append((st.names, _sweep_rows(st)))
    bindings = []
    for combo in itertools.product(*(rows for _, rows in groups)):
        bindings.append({name: value for (names, _), row in zip(groups, combo) for name, value in zip(names, row)})
    return bindings


def _sweep_rows(st: ast.Sweep) -> list[tuple]:
    """The rows of values one sweep statement runs over, a tuple per run."""
    domain = st.values
    paired = len(st.names) > 1
    if isinstance(domain, ast.SweepRange):
        if paired:
            raise SpecError(domain.span, f"sweep ({', '.join(st.names)}) needs a value for each variable", hint=PAIRED_HINT)
        if domain.stop < domain.start:
            raise SpecError(domain.span, f"empty sweep range {domain.start}..{domain.stop}",
                            hint="ranges are inclusive and ascending, e.g. 0..7")
        return [(v,) for v in range(domain.start, domain.stop + 1)]
    if isinstance(domain, ast.ListValue):
        if paired and domain.items:
            raise SpecError(domain.items[0].span, f"sweep ({', '.join(st.names)}) needs a value for each variable",
                            hint=PAIRED_HINT)
        rows = [(_sweep_value(item),) for item in domain.items]
    else:
        rows = []
        for row in domain.items:
            if len(row.items) != len(st.names):
                raise SpecError(row.span, f"this row has {len(row.items)} value{'s' * (len(row.items) != 1)}; "
                                f"sweep ({', '.join(st.names)}) takes {len(st.names)}",
                                hint="give every row one value per variable, in the order of the names")
            rows.append(tuple(_sweep_value(item) for item in row.items))
    if not rows:
        raise SpecError(domain.span, "a sweep needs at least one value")
    return rows


def _sweep_value(item) -> object:
    """One sweep value as plain Python: a number, string, name (as a string) or boolean."""
    if not isinstance(item, (ast.Number, ast.String, ast.Bool, ast.Name)):
        raise SpecError(item.span, "sweep values are numbers, strings, names or true/false")
    return item.name if isinstance(item, ast.Name) else item.value


def variants(spec: ast.Spec) -> list[tuple[str | None, ast.Spec]]:
    """The spec as each of its variants sees it: the common statements, with the variant's own
    statements where its block stands and the other variants' blocks left out. A spec without
    variants is its own single variant, named None."""
    blocks: dict[str, ast.Variant] = {}
    for st in spec.statements:
        if not isinstance(st, ast.Variant):
            continue
        if st.name in blocks:
            raise SpecError(st.span, f"variant '{st.name}' is declared twice (first at line {blocks[st.name].span.line})",
                            hint="give each variant its own name")
        for inner in st.statements:
            if not isinstance(inner, (ast.Set, ast.Intervention)):
                raise SpecError(inner.span, f"a variant holds set statements and interventions, not {_KINDS[inner.kind]}",
                                hint=_OUTSIDE[inner.kind])
        blocks[st.name] = st
    if not blocks:
        return [(None, spec)]
    out = []
    for name in blocks:
        statements = []
        for st in spec.statements:
            if not isinstance(st, ast.Variant):
                statements.append(st)
            elif st.name == name:
                statements.extend(st.statements)
        out.append((name, spec.model_copy(update={"statements": tuple(statements)})))
    return out


_KINDS = {"sweep": "a sweep", "import": "an import", "variant": "another variant"}
_OUTSIDE = {
    "sweep": "declare sweeps at the top level of the file: every sweep crosses with every variant",
    "import": "import at the top level of the file; the imported statements are common to every variant",
    "variant": "variants do not nest; declare each one at the top level of the file",
}


def lower(spec: ast.Spec, r: Resolver) -> list[Action]:
    """Every intervention statement on activations lowered by its verb (`lower_all` adds those on weights)."""
    return lower_all(spec, r)[0]


def lower_all(spec: ast.Spec, r: Resolver) -> tuple[list[Action], list[WeightAction]]:
    """Every intervention statement lowered by its verb: actions on activations, and on parameters."""
    actions: list[Action] = []
    weights: list[WeightAction] = []
    for st in spec.statements:
        if not isinstance(st, ast.Intervention):
            continue
        verb = VERBS.get(st.verb)
        if verb is None:
            span = st.span.model_copy(update={"end_line": st.span.line, "end_column": st.span.column + len(st.verb)})
            raise SpecError(span, f"unknown verb '{st.verb}'", hint=close(st.verb, VERBS, "verbs"))
        if st.only and st.verb != "train":
            raise SpecError(st.span, f"'only' belongs to 'train only', not to '{st.verb}'",
                            hint="write train only SEL to freeze everything else")
        if st.more_sources and st.verb != "stopgrad":
            raise SpecError(st.more_sources[0].span, f"'{st.verb}' reads one source; only a path cut names several",
                            hint="for example: stopgrad L2.H3.k from L1, embed")
        for out in verb.lower(st, r):
            (weights if isinstance(out, WeightAction) else actions).append(out)
    return actions, weights


def _overlap(a: Action, b: Action, seq_len: int) -> bool:
    rows_a = set(a.rows if a.rows is not None else range(seq_len))
    rows_b = set(b.rows if b.rows is not None else range(seq_len))
    same_pass = a.stage == b.stage or "both" in (a.stage, b.stage)
    phases = a.phase == b.phase or "both" in (a.phase, b.phase)
    return bool(rows_a & rows_b) and same_pass and phases and a.start < b.stop and b.start < a.stop


def check_conflicts(actions: list[Action], seq_len: int) -> None:
    """Two different interventions writing the same entries of one site in one pass are an error."""
    by_site: dict[tuple, list[Action]] = {}
    for a in actions:
        by_site.setdefault((a.site, a.head), []).append(a)
    for group in by_site.values():
        for i, b in enumerate(group):
            for a in group[:i]:
                if a.span == b.span or (a.builder, a.params) == (b.builder, b.params) or not _overlap(a, b, seq_len):
                    continue
                if "record" in (a.builder, b.builder):  # holding a site at its first-pass value keeps the other clause's effect
                    continue
                if a.builder == b.builder == "pathcut":
                    raise SpecError(b.span, f"{b.text}'s input is already cut from {a.param('from')} by line {a.span.line}, "
                                    "while this schedule holds", hint=f"name every source in one statement: stopgrad {b.text} "
                                    f"from {a.param('from')}, {b.param('from')}; or give the two disjoint schedules")
                if {"stopgrad", "pathcut"} & {a.builder, b.builder}:  # a cut writes nothing; `weight_warnings` says when it is moot
                    continue
                raise SpecError(b.span, f"conflicting interventions on {b.text}: {b.builder} here, {a.builder} at line {a.span.line}",
                                hint="one site can hold one intervention at a time; give them disjoint positions or schedules")


def warnings_for(actions: list[Action], config: ExperimentConfig) -> list[SpecWarning]:
    """Clauses that can have no effect: schedules that never start, sites another clause decides."""
    out: list[SpecWarning] = []
    t = layout(config).length
    for a in actions:
        if a.phase != "eval" and a.start >= config.train.sequences:
            out.append(SpecWarning(span=a.span, message=f"this schedule starts at {a.start} sequences, after training ends "
                                   f"(train.sequences = {config.train.sequences})", hint="it acts only in evaluation, if at all"))
    full_patterns = {(a.site, a.head): a for a in actions
                     if a.site.endswith(".pattern") and a.builder != "record" and a.rows in (None, tuple(range(t))) and a.stage != "record"}
    upstream = ("q", "k", "q_rot", "k_rot", "attn_logits")
    for a in actions:
        if a.layer is None or a.site.split(".", 1)[1] not in upstream or a.builder in ("stopgrad", "pathcut"):
            continue
        clamp = full_patterns.get((f"L{a.layer}.pattern", a.head))
        if clamp is not None and clamp.start <= a.start and a.stop <= clamp.stop:
            out.append(SpecWarning(span=a.span, message=f"no effect on {a.text}: L{a.layer}.H{a.head}.pattern is set by line {clamp.span.line}",
                                   hint="a head's pattern decides its attention; its queries, keys and logits then change nothing downstream"))
    out.extend(_overwritten(actions, t))
    written = {(a.site, a.head): a for a in in_pass(actions, "last") if a.builder != "record"}
    for a in actions:
        undone = written.get((a.site, a.head)) if a.verb == "preserve" else None
        if undone is not None:
            out.append(SpecWarning(span=a.span, message=f"preserving {a.text} holds it at its first-pass value, undoing "
                                   f"the {undone.verb} of line {undone.span.line} there",
                                   hint="preserve the sites of later layers, e.g. ablate L1.* preserving L2.pattern"))
    seen: dict[tuple, Action] = {}
    for a in actions:
        key = (a.site, a.head, a.rows, a.builder, a.params, a.stage, a.start, a.stop, a.phase)
        if key in seen and seen[key].span != a.span:
            out.append(SpecWarning(span=a.span, message=f"{a.text} is already set the same way at line {seen[key].span.line}",
                                   hint="remove one of the two clauses"))
        seen.setdefault(key, a)
    unique = {(w.span.line, w.span.column, w.message): w for w in out}
    return list(unique.values())


def _covers(c: Action, a: Action, seq_len: int) -> bool:
    """Whether `c` acts wherever and whenever `a` does, in the last pass (the one the loss reads)."""
    rows_a = set(a.rows if a.rows is not None else range(seq_len))
    rows_c = set(c.rows if c.rows is not None else range(seq_len))
    return (rows_a <= rows_c and c.start <= a.start and a.stop <= c.stop and c.phase in ("both", "train")
            and c.stage in ("both", "final"))


def _frozen_through(weights: list[WeightAction], layer: int, head: int, start: int, stop: int) -> WeightAction | None:
    """A freeze (or `train only`) that keeps every slice of head `head` of `layer` fixed from `start` to `stop`."""
    for w in weights:
        if w.reinit or w.scale != 0 or not (w.start <= start and stop <= w.stop):
            continue
        if head_selected(w.paths, layer, head) != w.invert:
            return w
    return None


def weight_warnings(actions: list[Action], weights: list[WeightAction], config: ExperimentConfig) -> list[SpecWarning]:
    """Cuts a clamp already makes (a site a clamp or ablation sets passes no gradient upstream), and
    clamps or ablations of heads a freeze holds fixed all along (their gradient block changes nothing)."""
    out: list[SpecWarning] = []
    t = layout(config).length
    setting = [c for c in actions if c.builder not in ("stopgrad", "pathcut", "record")]
    for a in (a for a in actions if a.builder in ("stopgrad", "pathcut")):
        pattern = f"L{a.layer}.pattern" if a.layer is not None else None
        upstream = a.layer is not None and a.site.split(".", 1)[1] in ("q", "k", "q_rot", "k_rot", "attn_logits")
        for c in setting:
            same = c.site == a.site and c.head == a.head
            above = upstream and c.site == pattern and c.head == a.head and c.rows in (None, tuple(range(t)))
            if (same or above) and _covers(c, a, t):
                out.append(SpecWarning(span=a.span, message=f"the gradient at {a.text} is already stopped: the {c.verb} of "
                                       f"line {c.span.line} sets {c.text}, and a site an intervention sets passes no gradient upstream",
                                       hint="remove the stopgrad, or give the two clauses disjoint schedules"))
                break
        else:
            if a.builder == "pathcut":
                out.extend(_silent_sources(a, setting, t))
    for c in setting:
        if c.head is None or c.layer is None or c.phase == "eval":
            continue
        w = _frozen_through(weights, c.layer, c.head, c.start, min(c.stop, config.train.sequences))
        if w is not None:
            out.append(SpecWarning(span=c.span, message=f"L{c.layer}.H{c.head} is frozen by line {w.span.line} whenever this "
                                   f"{c.verb} acts, so the gradient it blocks there would train nothing (it still changes "
                                   "the forward pass)", hint=f"to study what the {c.verb} lets learn, leave the head trainable while it acts"))
    return out


def _silent_sources(cut: Action, setting: list[Action], t: int) -> list[SpecWarning]:
    """A path cut from heads that each already write nothing that passes a gradient back: their output
    (`z`, `out`) set at every position, or their values set to zero (their output is then zero)."""
    stops = {k: v for k, v in cut.params if k != "from"}
    (key, heads), = stops.items() if len(stops) == 1 else ((None, None),)
    if key is None or not key.endswith(".attn_out"):
        return []
    layer, blockers = int(key.split(".")[0][1:]), []
    for h in (h for h, on in enumerate(heads) if on):
        c = next((c for c in setting if c.layer == layer and c.head == h and c.rows in (None, tuple(range(t)))
                  and _covers(c, cut, t) and (c.site.endswith((".z", ".out")) or (c.site.endswith(".v") and c.builder == "zero"))),
                 None)
        if c is None:
            return []
        blockers.append(c)
    c = blockers[0]
    more = f" (and {len(blockers) - 1} more heads' outputs)" if len(blockers) > 1 else ""
    return [SpecWarning(span=cut.span, message=f"the gradient on the path from {cut.param('from')} into {cut.text} is already "
                        f"stopped: the {c.verb} of line {c.span.line} sets {c.text}{more}, so that write passes no gradient back",
                        hint="remove the stopgrad, or give the two clauses disjoint schedules")]


def _overwritten(actions: list[Action], seq_len: int) -> list[SpecWarning]:
    """Clauses upstream of a block output that another clause sets at every position, in every pass
    and for the whole schedule the first acts in: nothing they write reaches later layers or the logits
    (a transformer's earlier sites feed what follows only through the residual stream)."""
    out = []
    full = [c for c in actions if c.site.endswith(".resid_out") and c.rows in (None, tuple(range(seq_len)))]
    for a in actions:
        if a.stage == "post" or a.site.endswith(".resid_out") and a.layer is not None and a in full:
            continue
        layer = 0 if a.site == "embed" else a.layer
        if layer is None:
            continue
        for c in full:
            if c.layer < layer or (c.layer == layer and a.site == c.site) or c.span == a.span:
                continue
            if not (c.start <= a.start and a.stop <= c.stop and c.phase in ("both", a.phase)):
                continue
            stages = {x.stage for x in full if x.site == c.site and x.span == c.span}
            needed = {"both": {"record", "final"}, "record": {"record"}, "final": {"final"}}[a.stage]
            if "both" in stages or needed <= stages:
                out.append(SpecWarning(span=a.span, message=f"no effect on {a.text}: L{c.layer}.resid_out is set by "
                                       f"line {c.span.line} in every pass, so nothing {a.text} writes reaches later layers",
                                       hint=f"sites up to layer {c.layer} feed what follows only through L{c.layer}.resid_out; "
                                            "remove one of the two clauses, or give them disjoint schedules"))
                break
    return out


def resolve_spec(spec: ast.Spec, base: ExperimentConfig, cli: dict[str, object] | None = None,
                 cli_span: Span | None = None, sites: Callable[[Layout], SiteTable] | None = None,
                 ) -> tuple[list[Member], list[SpecWarning]]:
    """Expand a spec into its runs (one per sweep combination) and the warnings of `opto check`;
    selectors resolve against `sites` (a model's own declaration), else the built-in transformer."""
    members: list[Member] = []
    warnings: list[SpecWarning] = []
    stem = Path(spec.path).stem if spec.path else "spec"
    bindings_list = sweep_bindings(spec)
    warnings.extend(unused_sweep_warnings(spec, len(bindings_list)))
    for variant, flat in variants(spec):
        for bindings in bindings_list:
            r = Resolver(base, bindings, sites)
            config = apply_settings(base, flat, r)
            if cli:
                config = apply_cli(config, cli, cli_span)
            check_task_settings(config, flat.statements, spec.path, cli, cli_span)
            r = Resolver(config, bindings, sites)
            _check_measures(config, r, sites is None, flat.statements, spec)
            actions, weights = lower_all(flat, r)
            check_conflicts(actions, r.seq_len)
            for w in warnings_for(actions, config) + weight_warnings(actions, weights, config):
                if w not in warnings:
                    warnings.append(w)
            name = "-".join([stem, *([variant] if variant else []), *(_run_part(k, v) for k, v in bindings.items() if len(bindings_list) > 1)])
            probes = tuple((text, tuple(_probe(text, i, actions, r, config))) for i, text in enumerate(config.eval.perfected))
            grafts = tuple(sorted({str(a.param("run")) for a in actions + [a for _, p in probes for a in p] if a.builder == "graft"}))
            members.append(Member(name=name, variant=variant, bindings=tuple(bindings.items()), config=config,
                                  actions=tuple(actions), grafts=grafts, probes=probes, weights=tuple(weights)))
    return members, warnings


def _check_measures(config: ExperimentConfig, r: Resolver, built_in: bool, statements, spec: ast.Spec) -> None:
    """Each measure in `eval.measures` can read the network the spec resolves against (its sites, and
    the built-in weights where it reads them): else an error at the `set eval.measures` that named it."""
    for name in config.eval.measures:
        why = unmet_need(name, r.sites, r.layers, built_in)
        if why:
            where = next((st.value.span for st in reversed(statements)
                          if isinstance(st, ast.Set) and st.key == ("eval", "measures")), Span(path=spec.path or "<spec>"))
            raise SpecError(where, f"invalid value for eval.measures: {why}",
                            hint="leave this measure out, or compute it with a measure of your own (measures= of train)")


def unused_sweep_warnings(spec: ast.Spec, runs: int) -> list[SpecWarning]:
    """A warning at each sweep variable no statement reads (`$name`): its runs differ in nothing it
    decides, so they repeat one experiment."""
    used = {node.name for st in spec.statements if not isinstance(st, ast.Sweep) for node in _nodes(st)
            if isinstance(node, ast.Var)}
    out = []
    for st in spec.statements:
        if isinstance(st, ast.Sweep):
            for name in st.names:
                if name not in used:
                    out.append(SpecWarning(span=st.span, message=f"sweep variable '${name}' is used nowhere, so the runs it "
                                           f"adds repeat the same experiment ({runs} runs in all)",
                                           hint=f"write ${name} where it should vary something (e.g. set seed.init = ${name}), "
                                                "or remove the sweep"))
    return out


def _nodes(node) -> list:
    """Every syntax node under `node` (itself included), in fields, tuples and nested nodes."""
    out = [node]
    values = node.__dict__.values() if isinstance(node, ast.Node) else node if isinstance(node, tuple) else ()
    for value in values:
        if isinstance(value, (ast.Node, tuple)):
            out.extend(_nodes(value))
    return out


def _run_part(name: str, value: object) -> str:
    """One sweep value in a run's name: `k50k`, `lr0.001`, `h3`, `pquery`."""
    shown = format_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return f"{name}{shown}"


def _probe(text: str, index: int, actions: list[Action], r: Resolver, config: ExperimentConfig) -> list[Action]:
    """The actions of one `eval.perfected` line; they join the run's own at evaluation, so they must not conflict."""
    from ..syntax import parse

    spec = parse(text, f"eval.perfected[{index}]")
    for st in spec.statements:
        if not isinstance(st, ast.Intervention):
            raise SpecError(st.span, "eval.perfected holds interventions only",
                            hint='for example set eval.perfected = ["clamp L1.H2.pattern = prev_token"]')
    extra = lower(spec, r)
    check_conflicts(actions + extra, r.seq_len)
    return extra
