"""The built-in verbs, with the paper's exact meanings (see docs/language.md for the full table)."""

from __future__ import annotations

from ..errors import SpecError
from ..semantics.plan import Action
from ..semantics.resolve import Resolver, close, span_text
from ..syntax import ast
from .registry import register

PATTERNS = {
    "prev_token": {"strength": (0.0, 1.0, 1.0)},
    "induction": {"strength": (0.0, 1.0, 1.0)},
    "match": {"temperature": (0.0, float("inf"), 0.0)},
    "uniform": {},
}
"""Built-in attention patterns and their parameters: name -> {param: (min, max, default)}."""

QUERY_ONLY = ("induction", "match")


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
            raise SpecError(span, f"'{stmt.verb}' takes no '{word}'", hint=f"for example: {_EXAMPLES[stmt.verb]}")


def _required(stmt: ast.Intervention, message: str):
    """The statement's `= VALUE`, or a spec error saying the verb needs one."""
    if stmt.value is None:
        raise SpecError(stmt.span, message, hint=f"for example: {_EXAMPLES[stmt.verb]}")
    return stmt.value


def _name(r: Resolver, value, stmt: ast.Intervention, options: tuple[str, ...]) -> str:
    value = r.value(value)
    if isinstance(value, ast.Name) and value.name in options:
        return value.name
    shown = value.name if isinstance(value, (ast.Name, ast.Call)) else None
    raise SpecError(value.span, f"'{stmt.verb}' takes {' or '.join(options)} here",
                    hint=close(shown, options, "values") if shown else f"for example: {_EXAMPLES[stmt.verb]}")


def _number(r: Resolver, value, stmt: ast.Intervention, lo: float, hi: float, what: str) -> float:
    value = r.value(value)
    if not isinstance(value, ast.Number) or isinstance(value.value, bool):
        raise SpecError(value.span, f"'{stmt.verb}' needs a number for the {what}", hint=f"for example: {_EXAMPLES[stmt.verb]}")
    if not lo <= value.value <= hi:
        raise SpecError(value.span, f"{what} {value.value} is out of range", hint=f"the {what} must be in [{lo:g}, {hi:g}]")
    return float(value.value)


def _pattern_params(r: Resolver, value) -> tuple[str, tuple]:
    value = r.value(value)
    name = value.name
    spec = PATTERNS[name]
    args = dict(value.args) if isinstance(value, ast.Call) else {}
    params = {}
    for key, node in args.items():
        if key not in spec:
            raise SpecError(node.span, f"'{name}' has no parameter '{key}'",
                            hint=(close(key, spec, "parameters") if spec else f"'{name}' takes no parameters"))
        lo, hi, _ = spec[key]
        node = r.value(node)
        if not isinstance(node, ast.Number) or not lo <= node.value <= hi:
            shown = _shown(node)
            raise SpecError(node.span, f"{name}({key}=...) must be a number in [{lo:g}, {hi:g}], not {shown}",
                            hint=f"for example {name}({key}={spec[key][2]:g}), the default")
        params[key] = float(node.value)
    for key, (_, _, default) in spec.items():
        params.setdefault(key, default)
    return name, tuple(sorted(params.items()))


def _shown(node) -> str:
    """A value as written, for messages: 2, true, "x", mean, f(...), [...]."""
    if isinstance(node, ast.Bool):
        return "true" if node.value else "false"
    if isinstance(node, ast.String):
        return f'"{node.value}"'
    if isinstance(node, ast.Name):
        return node.name
    if isinstance(node, ast.Call):
        return f"{node.name}(...)"
    if isinstance(node, ast.ListValue):
        return "a list"
    return str(node.value)


_EXAMPLES = {
    "ablate": "ablate L2.* except H3",
    "clamp": "clamp L1.H2.pattern = prev_token(strength=0.8)",
    "forbid": "forbid L1.* = prev_token",
    "temperature": "temperature L2.H3 = 2.0",
    "attend": "attend L2.H3 = labels_only",
    "copy": "copy logits from L2.H3",
    "graft": 'graft L1.resid_out from "runs/baseline"',
}


@register("ablate", "set a site to zero (a head: its values), or to its batch mean with `= mean`; "
          "`preserving SITES` holds those sites at their values from an unablated first pass", _EXAMPLES["ablate"])
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
          "(prev_token, induction, match, uniform), or a block's output to the perfect previous-token input "
          "(prev_token_input)", _EXAMPLES["clamp"])
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
    pattern, params = _pattern_params(r, value)
    if pattern in QUERY_ONLY and rows not in (None, (r.seq_len - 1,)):
        raise SpecError(stmt.positions.span, f"'{pattern}' defines only the query's row", hint="drop the positions or write @ query")
    if pattern in QUERY_ONLY:
        rows = (r.seq_len - 1,)
    return [_action(common, s, pattern, rows=rows, params=params) for s in sites]


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
          _EXAMPLES["forbid"])
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
                            hint=f"name heads only, e.g. {_EXAMPLES[stmt.verb]}")
    return sites


@register("temperature", "divide a head's attention logits (from an unmodified first pass) by t", _EXAMPLES["temperature"])
def temperature(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "value")
    t = _number(r, _required(stmt, "'temperature' needs a value"), stmt, 1e-6, 1e6, "temperature")
    return [_action(_common(stmt, r), s, "scale_record", rows=r.rows(stmt.positions), params=(("scale", 1.0 / t),),
                    stage="final", record=s.site) for s in _head_logit_sites(stmt, r)]


@register("attend", "attend only to labels: logits from the query (or the given rows) to exemplar positions become -inf",
          _EXAMPLES["attend"])
def attend(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "value")
    _name(r, _required(stmt, "'attend' needs what to attend to"), stmt, ("labels_only",))
    rows = r.rows(stmt.positions) or (r.seq_len - 1,)
    if 0 in rows:  # position 0 sees no label: every logit of its row would be -inf (a uniform, acausal row)
        raise SpecError(stmt.positions.span, "position 0 has no label token before it to attend to",
                        hint="labels_only acts on rows that follow a label, e.g. @ query or @ 1:")
    return [_action(_common(stmt, r), s, "labels_only", rows=rows) for s in _head_logit_sites(stmt, r)]


@register("copy", "the paper's perfect copy: the query's output logits become a head's attention logits to the "
          "in-context label tokens (placed at those labels), every other label -inf", _EXAMPLES["copy"])
def copy(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "source")
    if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.GlobalSite) or stmt.targets[0].name != "logits":
        raise SpecError(stmt.targets[0].span, "'copy' writes the output logits", hint=f"write: {_EXAMPLES['copy']}")
    if stmt.source is None or not isinstance(stmt.source, ast.LayerSelector):
        raise SpecError(stmt.span, "'copy' needs the head to copy from", hint=f"write: {_EXAMPLES['copy']}")
    heads = r.select(stmt.source, "attn_logits")
    if len(heads) != 1 or heads[0].head is None:
        raise SpecError(stmt.source.span, "'copy' reads exactly one head", hint=f"write: {_EXAMPLES['copy']}")
    src = heads[0]
    out = r.select(stmt.targets[0])[0]
    return [_action(_common(stmt, r), out, "copy", rows=(r.seq_len - 1,), stage="post",
                    params=(("head", src.head), ("layer", src.layer)), record=f"L{src.layer}.attn_logits")]


@register("graft", "take a site's value from another trained run's checkpoint (same architecture), for all inputs",
          _EXAMPLES["graft"])
def graft(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _no_modifiers(stmt, "positions", "source")
    if not isinstance(stmt.source, ast.String):
        raise SpecError(stmt.span, "'graft' needs the run directory to graft from", hint=f"write: {_EXAMPLES['graft']}")
    for target in stmt.targets:
        if isinstance(target, ast.LayerSelector) and target.heads is None and target.site is None and not target.except_heads:
            layer = span_text(target.span)
            raise SpecError(target.span, f"'graft {layer}' could mean three sites: name the one to take",
                            hint=f"write {layer}.resid_out (the block's output), {layer}.* (every head's output "
                                 f"{layer}.H<h>.out) or {layer}.attn_out (the attention's output)")
    sites = _sites(stmt, r, "out")
    return [_action(_common(stmt, r), s, "graft", rows=r.rows(stmt.positions), params=(("run", stmt.source.value),))
            for s in sites]
