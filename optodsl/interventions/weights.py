"""Verbs on what learns: `freeze`, `train only`, `lr_scale` and `reinit` act on parameters, and
`stopgrad` cuts the gradient at an activation site, or with `from` on one path (a head's q, k or v
reading given writes into the residual stream), leaving the forward pass bitwise unchanged.

Parameter selectors reuse the activation selectors' syntax: `L2` (a layer), `L2.H3` (a head's q, k,
v and o slices), `L2.H3.k` (one slice), `L2.attn`, `L2.mlp`, `L2.norm`, and the global parts
`embed`, `unembed`, `final_norm` and `norms`; `optodsl.model.parameters` owns what each names."""

from __future__ import annotations

from ..errors import SpecError
from ..model.parameters import GLOBAL_PARTS, HEAD_MATRICES, LAYER_PARTS, part_paths
from ..semantics.plan import Action, WeightAction
from ..semantics.registry import VERBS, register
from ..semantics.resolve import Resolver
from ..syntax import ast
from ..syntax.hints import close

PARTS_HINT = ("parameters are named L2 (a layer), L2.H3 (a head's q/k/v/o), L2.H3.k, L2.attn, L2.mlp, L2.norm, "
              "embed, unembed, final_norm or norms")


def _refuse(stmt: ast.Intervention, *allowed: str) -> None:
    """A clause the verb does not take is an error at that clause."""
    words = {"positions": "@ positions", "preserving": "preserving", "source": "from", "value": "= value",
             "at": "at", "seed": "seed", "schedule": "during"}
    for name, word in words.items():
        node = getattr(stmt, name)
        if name in allowed or node is None or node == ():
            continue
        span = node[0].span if isinstance(node, tuple) else getattr(node, "span", stmt.span)
        raise SpecError(span, f"'{stmt.verb}' takes no '{word}'", hint=f"for example: {VERBS[stmt.verb].example}")


def parts(stmt: ast.Intervention, r: Resolver) -> tuple[str, tuple[tuple[str, int | None], ...]]:
    """The parameters a statement's selectors name: canonical text and `(path, head)` pairs."""
    texts, paths = [], []
    for sel in stmt.targets:
        for text, found in _one(sel, r):
            texts.append(text)
            paths.extend(p for p in found if p not in paths)
    return ", ".join(texts), tuple(paths)


def _one(sel, r: Resolver) -> list[tuple[str, tuple]]:
    layers = r.layers
    if isinstance(sel, ast.GlobalSite):
        if sel.name not in GLOBAL_PARTS:
            raise SpecError(sel.span, f"'{sel.name}' names no parameters", hint=close(sel.name, GLOBAL_PARTS, "parts") + "; " + PARTS_HINT)
        if sel.name == "final_norm" and not r.config.model.final_norm:
            raise SpecError(sel.span, "this model has no final norm (model.final_norm = false)", hint=PARTS_HINT)
        return [(sel.name, part_paths(sel.name, layers))]
    out = []
    for layer in r.indices(sel.layers, "layer", layers, 1):
        if sel.heads is None and not sel.except_heads:
            if sel.site is None:
                out.append((f"L{layer}", part_paths("layer", layers, layer)))
                continue
            if sel.site not in LAYER_PARTS:
                raise SpecError(sel.span, f"'{sel.site}' names no parameters of a layer",
                                hint=close(sel.site, LAYER_PARTS, "parts") + "; " + PARTS_HINT)
            if sel.site == "mlp" and not r.config.model.mlp:
                raise SpecError(sel.span, "this model has no MLP (model.mlp = false)", hint=PARTS_HINT)
            out.append((f"L{layer}.{sel.site}", part_paths(sel.site, layers, layer)))
            continue
        if sel.site is not None and sel.site not in HEAD_MATRICES:
            raise SpecError(sel.span, f"a head's parameters are q, k, v and o, not '{sel.site}'", hint=PARTS_HINT)
        heads = r.indices(sel.heads, "head", r.heads, 0) if sel.heads is not None else list(range(r.heads))
        excluded = {h for ex in sel.except_heads for h in r.indices(ex, "head", r.heads, 0)}
        for h in (h for h in heads if h not in excluded):
            name = f"L{layer}.H{h}" + (f".{sel.site}" if sel.site else "")
            out.append((name, part_paths(sel.site or "head", layers, layer, h)))
    if not out:
        raise SpecError(sel.span, "this selection is empty: 'except' removes every head", hint=f"heads are H0..H{r.heads - 1}")
    return out


def _window(stmt: ast.Intervention, r: Resolver) -> dict:
    start, stop, phase = r.schedule(stmt.schedule)
    if phase != "both":
        raise SpecError(stmt.schedule.span, f"'{stmt.verb}' acts on training; a phase schedule means nothing here",
                        hint="give sequence counts, e.g. during 0..100k")
    return {"start": start, "stop": stop}


def _weight(stmt: ast.Intervention, r: Resolver, **kw) -> WeightAction:
    text, paths = parts(stmt, r)
    return WeightAction(verb=stmt.verb, part=text, paths=paths, span=stmt.span, **kw)


@register("freeze", "keep parameters fixed (no update, and their optimiser moments neither grow nor decay), "
          "for the whole run or `during` a schedule", "freeze L2.H3 during 0..100k")
def freeze(stmt: ast.Intervention, r: Resolver) -> list[WeightAction]:
    _refuse(stmt, "schedule")
    return [_weight(stmt, r, scale=0.0, **_window(stmt, r))]


@register("train", "`train only SEL`: freeze every parameter but those named", "train only L2, unembed")
def train_only(stmt: ast.Intervention, r: Resolver) -> list[WeightAction]:
    if not stmt.only:
        raise SpecError(stmt.span, "'train' is written 'train only' followed by the parameters that train",
                        hint=f"for example: {VERBS['train'].example}")
    _refuse(stmt, "schedule")
    return [_weight(stmt, r, invert=True, scale=0.0, **_window(stmt, r))]


@register("lr_scale", "multiply the learning rate of some parameters by a factor (0 is a freeze)",
          "lr_scale L1 = 0.1 during 0..200k")
def lr_scale(stmt: ast.Intervention, r: Resolver) -> list[WeightAction]:
    _refuse(stmt, "value", "schedule")
    if stmt.value is None:
        raise SpecError(stmt.span, "'lr_scale' needs a factor: lr_scale SEL = FACTOR", hint=f"for example: {VERBS['lr_scale'].example}")
    value = r.value(stmt.value)
    if not isinstance(value, ast.Number) or isinstance(value.value, bool) or not 0 <= value.value <= 1e6:
        raise SpecError(value.span, "a learning-rate scale is a number from 0 up", hint="for example lr_scale L1 = 0.1")
    return [_weight(stmt, r, scale=float(value.value), **_window(stmt, r))]


@register("reinit", "re-initialise parameters at a sequence count, drawn from the initialiser with a stated seed; "
          "their optimiser moments restart from zero", "reinit L2.H3 at 300k seed 1")
def reinit(stmt: ast.Intervention, r: Resolver) -> list[WeightAction]:
    _refuse(stmt, "at", "seed")
    if stmt.at is None or stmt.seed is None:
        raise SpecError(stmt.span, "'reinit' needs when and from which seed: reinit SEL at COUNT seed N",
                        hint=f"for example: {VERBS['reinit'].example}")
    at = r.atom(stmt.at, stmt.span, "a sequence count", "sweep sequence counts, e.g. sweep k in [100k, 300k]")
    seed = r.atom(stmt.seed, stmt.span, "a seed", "sweep seeds over whole numbers, e.g. sweep s in [1, 2, 3]")
    return [_weight(stmt, r, at=at, seed=seed)]


@register("stopgrad", "stop the gradient at a site (the forward pass is bitwise unchanged): nothing upstream "
          "learns through it; with `from`, only on the direct path from those sources into a head's q, k or v",
          "stopgrad L1.H2.z during 0..100k")
def stopgrad(stmt: ast.Intervention, r: Resolver) -> list[Action]:
    _refuse(stmt, "positions", "schedule", "source")
    start, stop, phase = r.schedule(stmt.schedule)
    rows = r.rows(stmt.positions)
    if stmt.source is not None:
        return _path_cut(stmt, r, rows, start, stop, phase)
    out = []
    for sel in stmt.targets:
        for s in r.select(sel, None):
            out.append(Action(verb="stopgrad", builder="stopgrad", site=s.site, layer=s.layer, head=s.head, rows=rows,
                              start=start, stop=stop, phase=phase, span=stmt.span))
    return out


READS = ("q", "k", "v")
"""The sites a path cut reads at: a head's query, key and value, each a projection of the residual stream."""
PATH_HINT = ("a path cut names a head's q, k or v and the writes into the residual stream it reads, "
             "e.g. stopgrad L2.H3.k from L1 (sources: embed, L1, L1.H2, L1.attn_out, L1.mlp_out)")


def _path_cut(stmt: ast.Intervention, r: Resolver, rows, start: int, stop: int, phase: str) -> list[Action]:
    """`stopgrad READER from SOURCES`: one `pathcut` action per reading head slice, its sources as params."""
    if isinstance(stmt.source, ast.String):
        raise SpecError(stmt.source.span, "a path cut's source is a part of the network, not a run", hint=PATH_HINT)
    readers = []
    for sel in stmt.targets:
        if not isinstance(sel, ast.LayerSelector) or sel.site not in (None, *READS):
            raise SpecError(sel.span, "a path cut reads at a head's q, k or v (its input from the residual stream)",
                            hint=PATH_HINT)
        for name in (READS if sel.site is None else (sel.site,)):
            readers.extend(r.select(sel.model_copy(update={"site": name}), None))
    first = min(s.layer for s in readers)
    texts, stops = [], {}
    for sel in (stmt.source, *stmt.more_sources):
        for text, key, heads, layer in _sources(sel, r):
            if layer is not None and layer >= first:
                raise SpecError(sel.span, f"{text} does not write before L{first} reads: a path cut's sources are "
                                "embed and the writes of earlier layers", hint=PATH_HINT)
            texts.append(text)
            stops[key] = True if heads is None else stops.get(key, set()) | heads
    params = (("from", ", ".join(dict.fromkeys(texts))),
              *sorted((key, True if heads is True else tuple(int(h in heads) for h in range(r.heads)))
                      for key, heads in stops.items()))
    return [Action(verb="stopgrad", builder="pathcut", site=s.site, layer=s.layer, head=s.head, rows=rows,
                   params=params, start=start, stop=stop, phase=phase, span=stmt.span) for s in readers]


def _sources(sel, r: Resolver) -> list[tuple[str, str, "set[int] | None", "int | None"]]:
    """A path cut's source selector as writes into the residual stream: (text, write site, the heads of
    an attention write or None for a write that is one array, layer)."""
    if isinstance(sel, ast.GlobalSite):
        if sel.name != "embed":
            raise SpecError(sel.span, f"'{sel.name}' writes nothing a head reads", hint=PATH_HINT)
        return [("embed", "embed", None, None)]
    out = []
    mlp = r.config.model.mlp
    for layer in r.indices(sel.layers, "layer", r.layers, 1):
        p = f"L{layer}."
        if sel.heads is None and not sel.except_heads:
            if sel.site is None:
                out.append((f"L{layer}", p + "attn_out", set(range(r.heads)), layer))
                if mlp:
                    out.append((f"L{layer}", p + "mlp_out", None, layer))
            elif sel.site == "attn_out":
                out.append((p + sel.site, p + sel.site, set(range(r.heads)), layer))
            elif sel.site == "mlp_out" and mlp:
                out.append((p + sel.site, p + sel.site, None, layer))
            else:
                raise SpecError(sel.span, f"L{layer}.{sel.site} is not a write into the residual stream"
                                + (" (this model has no MLP)" if sel.site == "mlp_out" else ""), hint=PATH_HINT)
            continue
        if sel.site is not None:
            raise SpecError(sel.span, "a head's write into the residual stream is named by the head alone (L1.H2)",
                            hint=PATH_HINT)
        for s in r.select(sel.model_copy(update={"site": "out"}), None):
            out.append((f"L{layer}.H{s.head}", p + "attn_out", {s.head}, layer))
    return out
