"""The built-in verbs, with the paper's exact meanings (see docs/language.md for the full table).

Each verb is one `@register` entry: its name, doc and example live there, and every hint
quotes the example through the registry."""

from __future__ import annotations

from ..errors import SpecError
from ..semantics.plan import Action
from ..semantics.resolve import Resolver, span_text
from ..syntax import ast
from ..syntax.format import format_value
from ..syntax.hints import close
from .patterns import PATTERNS
from ..semantics.registry import VERBS, register


def _common(stmt: ast.Intervention, r: Resolver) -> dict:
    start, stop, phase = r.schedule(stmt.schedule)
    return {"verb": stmt.verb, "start": start, "stop": stop, "phase": phase, "span": stmt.span}


def _sites(stmt: ast.Intervention, r: Resolver, default: str | None):
    return [s for sel in stmt.targets for s in r.select(sel, default)]


def _action(common: dict, sel, builder: str, **kw) -> Action:
    return Action(builder=builder, site=sel.site, layer=sel.layer, head=sel.head, **common, **kw)


def _no_modifiers(stmt: ast.Intervention, *allowed: str) -> None:
    for name in ("positions", "preserving", "source", "value"):
        if name in allowed:
            continue
        node = getattr(stmt, name)
        if node:
            span = node[0].span if isinstance(node, tuple) else node.span
            word = {"positions": "@ positions", "preserving": "preserving", "source": "from", "value": "= value"}[name]
            raise SpecError(span, f"'{stmt.verb}' takes no '{word}'", hint=f"for example: {_example(stmt)}")


def _required(stmt: ast.Intervention, message: str):
    """The statement's `= VALUE`, or a spec error saying the verb needs one."""
    if stmt.value is None:
        raise SpecError(stmt.span, message, hint=f"for example: {_example(stmt)}")
    return stmt.value


def _name(r: Resolver, value, stmt: ast.Intervention, options: tuple[str, ...]) -> str:
    value = r.value(value)
    if isinstance(value, ast.Name) and value.name in options:
        return value.name
    shown = value.name if isinstance(value, (ast.Name, ast.Call)) else None
    raise SpecError(value.span, f"'{stmt.verb}' takes {' or '.join(options)} here",
                    hint=close(shown, options, "values") if shown else f"for example: {_example(stmt)}")


def _number(r: Resolver, value, stmt: ast.Intervention, lo: float, hi: float, what: str) -> float:
    value = r.value(value)
    if not isinstance(value, ast.Number) or isinstance(value.value, bool):
        raise SpecError(value.span, f"'{stmt.verb}' needs a number for the {what}", hint=f"for example: {_example(stmt)}")
    if not lo <= value.value <= hi:
        raise SpecError(value.span, f"{what} {value.value} is out of range", hint=f"the {what} must be in [{lo:g}, {hi:g}]")
    return float(value.value)


def _pattern_params(r: Resolver, value) -> tuple[str, tuple]:
    value = r.value(value)
    name = value.name
    pattern = PATTERNS[name]
    args = dict(value.args) if isinstance(value, ast.Call) else {}
    params = {}
    for key, node in args.items():
        param = pattern.param(key)
        if param is None:
            names = [q.name for q in pattern.params]
            raise SpecError(node.span, f"'{name}' has no parameter '{key}'",
                            hint=(close(key, names, "parameters") if names else f"'{name}' takes no parameters"))
        node = r.value(node)
        if not isinstance(node, ast.Number) or not param.lo <= node.value <= param.hi:
            shown = format_value(node)
            raise SpecError(node.span, f"{name}({key}=...) must be a number in [{param.lo:g}, {param.hi:g}], not {shown}",
                            hint=f"for example {name}({key}={param.default:g}), the default")
        params[key] = float(node.value)
    for param in pattern.params:
        params.setdefault(param.name, param.default)
    return name, tuple(sorted(params.items()))


def _example(stmt: ast.Intervention) -> str:
    """The statement's verb's declared example, for hints."""
    return VERBS[stmt.verb].example


@register("ablate", "set a site to zero (a head: its values), or to its mean with `= mean` (over the batch, or a fixed "
          "set: semantics.mean_reference); `preserving SITES` holds those sites at their values from an unablated first pass",
          "ablate L2.* except H3")
def ablate(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "preserving", "value")
    common = _common(stmt, r)
    how = "zero" if stmt.value is None else _name(r, stmt.value, stmt, ("zero", "mean"))
    rows = r.rows(stmt.positions)
    two_pass = how == "mean" or bool(stmt.preserving)
    actions = [
        _action(common, s, how, rows=rows, stage="final" if two_pass else "both", record=s.site if how == "mean" else None)
        for s in _sites(stmt, r, "v")
    ]
    for sel in stmt.preserving:
        for s in r.select(sel, None):
            actions.append(_action({**common, "verb": "preserve"}, s, "record", stage="final", record=s.site))
    return actions


@register("clamp", "set a site to a constant, an attention pattern to a built-in one "
          f"({', '.join(PATTERNS)}), or a block's output to the perfect previous-token input "
          "(prev_token_input)", "clamp L1.H2.pattern = prev_token(strength=0.8)")
def clamp(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "value")
    _required(stmt, "'clamp' needs a value: clamp SITE = VALUE")
    common = _common(stmt, r)
    value = r.value(stmt.value)
    rows = r.rows(stmt.positions)
    if isinstance(value, ast.Number):
        return [_action(common, s, "const", rows=rows, params=(("value", float(value.value)),)) for s in _sites(stmt, r, None)]
    name = value.name if isinstance(value, (ast.Name, ast.Call)) else None
    if name == "prev_token_input":
        return _prev_token_input(stmt, r, common)
    if name not in PATTERNS:
        options = list(PATTERNS) + ["prev_token_input", "<number>"]
        raise SpecError(value.span, f"unknown clamp value {name or 'here'!r}" if name else "a clamp value must be a number or a built-in",
                        hint=close(name, options, "clamp values") if name else "valid clamp values: " + ", ".join(options))
    sites = _sites(stmt, r, "pattern")
    for s in sites:
        if not s.site.endswith(".pattern"):
            raise SpecError(stmt.targets[0].span, f"'{name}' is an attention pattern; it cannot clamp {s.site.split('.', 1)[-1]}",
                            hint="patterns clamp a head's pattern site, e.g. clamp L1.H2.pattern = prev_token")
    lay = r.layout
    if PATTERNS[name].value is None and name not in lay.patterns:
        raise SpecError(value.span, f"the {lay.task} task defines no pattern '{name}'",
                        hint="its patterns are " + ", ".join(_task_patterns(lay)))
    pattern, params = _pattern_params(r, value)
    query_only = pattern in lay.patterns and lay.patterns[pattern].rows == "query"
    if query_only and rows not in (None, (r.seq_len - 1,)):
        raise SpecError(stmt.positions.span, f"'{pattern}' defines only the query's row", hint="drop the positions or write @ query")
    if query_only:
        rows = (r.seq_len - 1,)
    return [_action(common, s, pattern, rows=rows, params=params) for s in sites]


def _task_verb(stmt: ast.Intervention, r: Resolver) -> None:
    """Refuse a verb defined by the few-shot layout (its labels and query) under a task without it."""
    lay = r.layout
    if stmt.verb not in lay.verbs:
        raise SpecError(stmt.span, f"the {lay.task} task has no '{stmt.verb}' (it reads the few-shot task's labels and query)",
                        hint="its patterns are " + ", ".join(_task_patterns(lay)))


def _task_patterns(lay) -> list[str]:
    """The declared patterns a task's layout defines: the task-free ones and those it gives a value."""
    return [name for name, p in PATTERNS.items() if p.value is not None or name in lay.patterns]


def _prev_token_input(stmt: ast.Intervention, r: Resolver, common: dict) -> list[Action]:
    sites = _sites(stmt, r, None)
    if len(sites) != 1 or not sites[0].site.endswith(".resid_out") or sites[0].layer >= r.layers:
        raise SpecError(stmt.targets[0].span, "prev_token_input clamps one block's output before the last layer",
                        hint="for example: clamp L1.resid_out = prev_token_input")
    s = sites[0]
    actions = [
        _action(common, s, "shift_embed", stage="record"),
        _action(common, s, "embed", stage="final"),
    ]
    for later in range(s.layer + 1, r.layers + 1):
        for h in range(r.heads):
            key = f"L{later}.pattern"
            actions.append(Action(builder="record", site=key, layer=later, head=h, stage="final", record=key, **common))
    return actions


@register("forbid", "forbid previous-token attention: the logit i -> i-1 becomes -inf (with @ labels, only at label rows)",
          "forbid L1.* = prev_token")
def forbid(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "value")
    _name(r, _required(stmt, "'forbid' needs what to forbid"), stmt, ("prev_token",))
    sites = _head_logit_sites(stmt, r)
    return [_action(_common(stmt, r), s, "forbid_prev", rows=r.rows(stmt.positions)) for s in sites]


def _head_logit_sites(stmt: ast.Intervention, r: Resolver):
    sites = _sites(stmt, r, "attn_logits")
    for s in sites:
        if not s.site.endswith(".attn_logits"):
            raise SpecError(stmt.targets[0].span, f"'{stmt.verb}' acts on a head's attention logits, not {s.site.split('.', 1)[-1]}",
                            hint=f"name heads only, e.g. {_example(stmt)}")
    return sites


@register("temperature", "divide a head's attention logits, read from a first pass without the temperature "
          "(semantics.first_pass says whether the spec's other interventions act in it), by t", "temperature L2.H3 = 2.0")
def temperature(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "value")
    t = _number(r, _required(stmt, "'temperature' needs a value"), stmt, 1e-6, 1e6, "temperature")
    return [_action(_common(stmt, r), s, "scale_record", rows=r.rows(stmt.positions), params=(("scale", 1.0 / t),),
                    stage="final", record=s.site) for s in _head_logit_sites(stmt, r)]


@register("attend", "attend only to labels: logits from the query (or the given rows) to exemplar positions become -inf",
          "attend L2.H3 = labels_only")
def attend(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _task_verb(stmt, r)
    _no_modifiers(stmt, "positions", "value")
    _name(r, _required(stmt, "'attend' needs what to attend to"), stmt, ("labels_only",))
    rows = r.rows(stmt.positions) or (r.seq_len - 1,)
    if 0 in rows:  # position 0 sees no label: every logit of its row would be -inf (a uniform, acausal row)
        raise SpecError(stmt.positions.span, "position 0 has no label token before it to attend to",
                        hint="labels_only acts on rows that follow a label, e.g. @ query or @ 1:")
    return [_action(_common(stmt, r), s, "labels_only", rows=rows) for s in _head_logit_sites(stmt, r)]


@register("copy", "the paper's perfect copy: the query's output logits become a head's attention logits to the "
          "in-context label tokens (placed at those labels), every other label -inf", "copy logits from L2.H3")
def copy(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _task_verb(stmt, r)
    _no_modifiers(stmt, "source")
    if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.GlobalSite) or stmt.targets[0].name != "logits":
        raise SpecError(stmt.targets[0].span, "'copy' writes the output logits", hint=f"write: {_example(stmt)}")
    if stmt.source is None or not isinstance(stmt.source, ast.LayerSelector):
        raise SpecError(stmt.span, "'copy' needs the head to copy from", hint=f"write: {_example(stmt)}")
    heads = r.select(stmt.source, "attn_logits")
    if len(heads) != 1 or heads[0].head is None:
        raise SpecError(stmt.source.span, "'copy' reads exactly one head", hint=f"write: {_example(stmt)}")
    src = heads[0]
    out = r.select(stmt.targets[0])[0]
    return [_action(_common(stmt, r), out, "copy", rows=(r.seq_len - 1,), stage="post",
                    params=(("head", src.head), ("layer", src.layer), ("labels", r.layout.roles["labels"])),
                    record=f"L{src.layer}.attn_logits")]


@register("graft", "take a site's value from another trained run's checkpoint (same architecture), for all inputs",
          'graft L1.resid_out from "runs/baseline"')
def graft(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "source")
    if not isinstance(stmt.source, ast.String):
        raise SpecError(stmt.span, "'graft' needs the run directory to graft from", hint=f"write: {_example(stmt)}")
    for target in stmt.targets:
        if isinstance(target, ast.LayerSelector) and target.heads is None and target.site is None and not target.except_heads:
            layer = span_text(target.span)
            raise SpecError(target.span, f"'graft {layer}' could mean three sites: name the one to take",
                            hint=f"write {layer}.resid_out (the block's output), {layer}.* (every head's output "
                                 f"{layer}.H<h>.out) or {layer}.attn_out (the attention's output)")
    sites = _sites(stmt, r, "out")
    return [_action(_common(stmt, r), s, "graft", rows=r.rows(stmt.positions), params=(("run", stmt.source.value),))
            for s in sites]
