"""Resolve syntax against a model: selectors to (layer, head, site), positions, schedules, values.

Layers count from 1 and heads from 0, as in the paper; every error that mentions an index says
so and gives the valid range. Sweep variables are substituted here from `bindings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import ExperimentConfig
from ..errors import Span, SpecError
from ..model.protocol import LAYER_KEY, SiteTable, layer_count
from ..sites import site_table
from ..syntax import ast
from ..syntax.hints import capitals_hint, close, did_you_mean
from ..tasks import Layout, layout
from .plan import MAX_SEQUENCES

NUMBERING = "layers count from 1, heads from 0, as in the paper"
POSITIONS_VAR = "sweep positions over indices or names, e.g. sweep p in [labels, query, 2]"
SCHEDULE_VAR = "sweep schedule bounds over sequence counts, e.g. sweep k in [50k, 100k]"


@dataclass(frozen=True)
class SiteSel:
    """One selected site: activation key, layer (from 1) and head (from 0) where they apply."""

    site: str
    layer: int | None
    head: int | None
    span: Span


class Resolver:
    """Resolves the parts of statements for one model configuration and one sweep binding."""

    def __init__(self, config: ExperimentConfig, bindings: dict[str, object] | None = None,
                 sites: Callable[[Layout], SiteTable] | None = None):
        """`sites` is a model's site declaration (`model.sites`, see `optodsl.model.protocol`);
        without one, selectors resolve against the built-in transformer of `config.model`."""
        self.config = config
        self.bindings = bindings or {}
        self.layout = layout(config)
        self.seq_len = self.layout.length
        self.sites = sites(self.layout) if sites is not None else site_table(config.model, self.layout)
        parsed = [(LAYER_KEY.match(key), info) for key, info in self.sites.items()]
        by_layer = [(int(m.group(1)), m.group(2), info) for m, info in parsed if m]
        self.global_sites = [key for key in self.sites if not LAYER_KEY.match(key)]
        self.head_sites = list(dict.fromkeys(name for _, name, info in by_layer if info.per_head))
        self.layer_sites = list(dict.fromkeys(name for _, name, info in by_layer if not info.per_head))
        self.layers = layer_count(self.sites)
        self.heads = next((info.shape[0] for _, _, info in by_layer if info.per_head), 0)

    # values -------------------------------------------------------------------------------
    def value(self, node):
        """A value with sweep variables substituted (returns the node, or a Number/String/... node)."""
        if isinstance(node, ast.Var):
            if node.name not in self.bindings:
                if not self.bindings:
                    hint = "declare it first: sweep NAME in a..b"
                elif did_you_mean(node.name, self.bindings):
                    hint = close(node.name, self.bindings, "variables")
                else:
                    hint = "declared sweep variables: " + ", ".join(f"${name}" for name in self.bindings)
                raise SpecError(node.span, f"unknown sweep variable '${node.name}'", hint=hint)
            bound = self.bindings[node.name]
            if isinstance(bound, bool):
                return ast.Bool(span=node.span, value=bound)
            if isinstance(bound, (int, float)):
                return ast.Number(span=node.span, value=bound)
            return ast.String(span=node.span, value=str(bound))
        if isinstance(node, ast.Call):
            return node.model_copy(update={"args": tuple((k, self.value(v)) for k, v in node.args)})
        if isinstance(node, ast.ListValue):
            return node.model_copy(update={"items": tuple(self.value(v) for v in node.items)})
        return node

    def python(self, node):
        """A value as a plain Python object (numbers, strings, bools, names as strings, lists)."""
        node = self.value(node)
        if isinstance(node, (ast.Number, ast.Bool, ast.String)):
            return node.value
        if isinstance(node, ast.Name):
            return node.name
        if isinstance(node, ast.ListValue):
            return [self.python(v) for v in node.items]
        raise SpecError(node.span, "a call is not a setting value", hint="use a number, string, true/false or a list")

    def atom(self, atom, span: Span, what: str = "an index",
             hint: str = "sweep indices over whole numbers, e.g. sweep h in 0..7") -> int:
        """A whole number written as such or as a sweep variable (`H$h`, `during 0..$k`, `@ $p`)."""
        if isinstance(atom, ast.Var):
            value = self.python(atom)
            if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
                raise SpecError(atom.span, f"sweep variable '${atom.name}' is {value!r} here; {what} needs a whole number",
                                hint=hint)
            return int(value)
        return atom

    # indices ------------------------------------------------------------------------------
    def indices(self, index, kind: str, count: int, base: int) -> list[int]:
        """Expand an index set of layers (base 1) or heads (base 0), checking the range."""
        if isinstance(index, ast.IndexAll):
            return list(range(base, base + count))
        if isinstance(index, ast.IndexSingle):
            values = [self.atom(index.value, index.span)]
        elif isinstance(index, ast.IndexRange):
            lo, hi = self.atom(index.start, index.span), self.atom(index.stop, index.span)
            if hi < lo:
                raise SpecError(index.span, f"empty {kind} range {lo}..{hi}", hint="ranges are inclusive and ascending, e.g. 0..3")
            values = list(range(lo, hi + 1))
        else:
            values = [self.atom(a, index.span) for a in index.items]
        letter = "L" if kind == "layer" else "H"
        for v in values:
            if not base <= v < base + count:
                valid = f"{letter}{base}..{letter}{base + count - 1}" if count > 1 else f"{letter}{base}"
                extra = " (the first layer is L1)" if kind == "layer" and v == 0 else ""
                raise SpecError(index.span, f"no {kind} {letter}{v} in this model{extra}",
                                hint=f"valid {kind}s are {valid}; {NUMBERING}")
        return values

    # selectors ----------------------------------------------------------------------------
    def select(self, sel, default_head_site: str | None = None, allow_layer_only: bool = True) -> list[SiteSel]:
        """Every (site, layer, head) a selector names; an empty selection is an error."""
        if isinstance(sel, ast.GlobalSite):
            if sel.name not in self.global_sites:
                every = self.global_sites + ["L<layer>.<site>", "L<layer>.H<head>.<site>"]
                raise SpecError(sel.span, f"unknown site '{sel.name}'",
                                hint=capitals_hint(sel.name) or close(sel.name, every, "sites"))
            return [SiteSel(sel.name, None, None, sel.span)]
        layers = self.indices(sel.layers, "layer", self.layers, 1)
        site = sel.site
        if site is not None and site not in self.head_sites and site not in self.layer_sites:
            raise SpecError(_site_span(sel.span, site), f"unknown site '{site}'",
                            hint=capitals_hint(span_text(sel.span)) or close(site, self.head_sites + self.layer_sites, "sites"))
        if site in self.layer_sites:
            if sel.heads is not None or sel.except_heads:
                raise SpecError(sel.span, f"'{site}' is a layer site, not a head site",
                                hint=f"write L<layer>.{site} without a head; head sites are {', '.join(self.head_sites)}")
            return self._present([SiteSel(f"L{layer}.{site}", layer, None, sel.span) for layer in layers])
        if site is None:
            if default_head_site is None:
                raise SpecError(sel.span, "this statement needs a site here",
                                hint="name one, e.g. L1.H2.pattern or L1.resid_out")
            if default_head_site not in self.head_sites:
                raise SpecError(sel.span, f"this statement's default site '{default_head_site}' is not a head site of this model",
                                hint=f"name one of its head sites, e.g. L1.H0.{self.head_sites[0]}" if self.head_sites
                                else "this model has no head sites; name a layer site, e.g. L1.resid_out")
            site = default_head_site
        if sel.heads is None and not allow_layer_only and not sel.except_heads:
            heads = list(range(self.heads))
        else:
            heads = self.indices(sel.heads, "head", self.heads, 0) if sel.heads is not None else list(range(self.heads))
        excluded: set[int] = set()
        for ex in sel.except_heads:
            excluded.update(self.indices(ex, "head", self.heads, 0))
        heads = [h for h in heads if h not in excluded]
        if not heads:
            raise SpecError(sel.span, "this selection is empty: 'except' removes every head",
                            hint=f"heads are H0..H{self.heads - 1}")
        return self._present([SiteSel(f"L{layer}.{site}", layer, h, sel.span) for layer in layers for h in heads])

    def _present(self, selected: list[SiteSel]) -> list[SiteSel]:
        """The selection, or an error at the first site the model lacks in that layer (a model of
        one's own may have a site in some layers only)."""
        for s in selected:
            if s.site not in self.sites:
                layer_has = [m.group(2) for m in map(LAYER_KEY.match, self.sites) if m and int(m.group(1)) == s.layer]
                raise SpecError(s.span, f"layer L{s.layer} of this model has no site '{s.site.split('.', 1)[1]}'",
                                hint=f"its sites are {', '.join(layer_has)}")
        return selected

    # positions and schedules --------------------------------------------------------------
    def rows(self, positions) -> tuple[int, ...] | None:
        """Sequence positions (0-based, `e1 l1 e2 l2 q` = 0..4) a positions clause names; named
        positions are the task's roles."""
        t = self.seq_len
        if positions is None:
            return None
        if isinstance(positions, ast.VarPositions):
            return self.rows(self._bound_positions(positions.var))
        if isinstance(positions, ast.NamedPositions):
            roles = self.layout.roles
            if positions.name not in roles:
                raise SpecError(positions.span, f"the {self.layout.task} task has no positions '{positions.name}'",
                                hint=did_you_mean(positions.name, roles)
                                + f"its positions are {', '.join(roles)}, an index like 2, or a slice like 2:4")
            return roles[positions.name]
        if isinstance(positions, ast.IndexPosition):
            i = positions.index
            if not -t <= i < t:
                raise SpecError(positions.span, f"no position {i} in a sequence of {t} tokens",
                                hint=f"positions are 0..{t - 1}{self.layout.note}, or -{t}..-1 from the end")
            return (i % t,)
        start = 0 if positions.start is None else self.atom(positions.start, positions.span, "a slice bound", POSITIONS_VAR)
        stop = t if positions.stop is None else self.atom(positions.stop, positions.span, "a slice bound", POSITIONS_VAR)
        rows = tuple(range(t))[start:stop]
        if not rows:
            raise SpecError(positions.span, f"the slice {start}:{stop} selects no position of {t}",
                            hint=f"positions are 0..{t - 1}; slices are half-open")
        return rows

    def schedule(self, schedule) -> tuple[int, int, str]:
        """(start, stop, phase) in training sequences."""
        if schedule is None:
            return 0, MAX_SEQUENCES, "both"
        if isinstance(schedule, ast.PhaseSchedule):
            return 0, MAX_SEQUENCES, schedule.phase
        start = 0 if schedule.start is None else self._sequences(schedule.start, schedule.span)
        stop = MAX_SEQUENCES if schedule.stop is None else self._sequences(schedule.stop, schedule.span)
        if stop <= start:
            raise SpecError(schedule.span, f"the schedule {start}..{stop} is empty",
                            hint="write start..stop in training sequences with start < stop, e.g. during 0..100k")
        return start, stop, "both"

    def _sequences(self, bound, span: Span) -> int:
        """A schedule bound in training sequences: a whole number, at least 0."""
        value = self.atom(bound, span, "a schedule bound", SCHEDULE_VAR)
        if value < 0:
            raise SpecError(bound.span, f"sweep variable '${bound.name}' is {value} here; a schedule bound needs at least 0",
                            hint=SCHEDULE_VAR)
        return value

    def _bound_positions(self, var: ast.Var):
        """The positions node a variable in `@ $p` stands for: a named group or one index."""
        value = self.python(var)
        if isinstance(value, str) and value in self.layout.roles:
            return ast.NamedPositions(span=var.span, name=value)
        if not isinstance(value, bool) and (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            return ast.IndexPosition(span=var.span, index=int(value))
        raise SpecError(var.span, f"sweep variable '${var.name}' is {value!r} here; positions need a whole number "
                        f"or one of {', '.join(self.layout.roles)}", hint=POSITIONS_VAR)


def span_text(span: Span) -> str:
    """The text a one-line span covers."""
    return span.line_text[span.column - 1:span.end_column - 1] if span.end_line == span.line else ""


def _site_span(span: Span, site: str) -> Span:
    """The span of the site name at the end of a selector (`patern` in `L1.H0.patern`), else the selector's."""
    if span.end_line != span.line:
        return span
    text = span_text(span)
    at = text.split(" except", 1)[0].rfind("." + site)
    if at < 0:
        return span
    column = span.column + at + 1
    return span.model_copy(update={"column": column, "end_column": column + len(site)})
