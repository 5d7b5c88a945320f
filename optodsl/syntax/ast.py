"""The syntax tree of a spec: frozen pydantic nodes, each carrying the span of text it came from.

The tree records what was written, not what it means: verbs, site names and setting keys are
plain strings here and are checked against the model by the semantics stage. Unions carry a
`kind` discriminator so that every node says which variant it is.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

from ..errors import Span

BLANK_SPAN = Span(path="", line=1, column=1, end_line=1, end_column=1, line_text="")


class Node(BaseModel):
    """Base of every syntax node: frozen, and located by `span`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span


# Values ---------------------------------------------------------------------------------------


class Number(Node):
    """A numeric literal; `100k` is the int 100000 and `1.5M` the float 1500000.0."""

    kind: Literal["number"] = "number"
    value: int | float


class Bool(Node):
    """The literal `true` or `false`."""

    kind: Literal["bool"] = "bool"
    value: bool


class String(Node):
    """A double-quoted string, with escapes already decoded."""

    kind: Literal["string"] = "string"
    value: str


class Name(Node):
    """A bare identifier used as a value, such as `mean` or `prev_token`."""

    kind: Literal["name"] = "name"
    name: str


class Var(Node):
    """A sweep variable reference `$name`; `name` excludes the dollar sign."""

    kind: Literal["var"] = "var"
    name: str


class Call(Node):
    """A named builder with keyword arguments, such as `prev_token(strength=0.8)`."""

    kind: Literal["call"] = "call"
    name: str
    args: tuple[tuple[str, Value], ...] = ()


class ListValue(Node):
    """A bracketed list of values, such as `["train", "test_classes"]`."""

    kind: Literal["list"] = "list"
    items: tuple[Value, ...] = ()


Value = Annotated[
    Union[Number, Bool, String, Name, Var, Call, ListValue], Field(discriminator="kind")
]

# Index sets (layers and heads) ------------------------------------------------------------------

Atom = Union[int, Var]


class IndexAll(Node):
    """Every index: `*` (and `L2.*` means every head of layer 2)."""

    kind: Literal["all"] = "all"


class IndexSingle(Node):
    """One index: an integer or a sweep variable."""

    kind: Literal["single"] = "single"
    value: Atom


class IndexRange(Node):
    """An inclusive range `start..stop` of indices."""

    kind: Literal["range"] = "range"
    start: Atom
    stop: Atom


class IndexList(Node):
    """An explicit list `[a, b, ...]` of indices."""

    kind: Literal["list"] = "list"
    items: tuple[Atom, ...]


IndexSet = Annotated[Union[IndexAll, IndexSingle, IndexRange, IndexList], Field(discriminator="kind")]

# Selectors ---------------------------------------------------------------------------------------


class GlobalSite(Node):
    """A site outside the layers, named by itself: `embed`, `final_norm`, `logits`."""

    kind: Literal["global"] = "global"
    name: str


class LayerSelector(Node):
    """`L<layers>[.H<heads> | .*][.<site>] [except H<heads>, ...]`; `heads` is None when not written."""

    kind: Literal["layer"] = "layer"
    layers: IndexSet
    heads: IndexSet | None = None
    site: str | None = None
    except_heads: tuple[IndexSet, ...] = ()


Selector = Annotated[Union[GlobalSite, LayerSelector], Field(discriminator="kind")]

# Positions and schedules -------------------------------------------------------------------------


POSITION_NAMES = ("query", "labels", "exemplars", "all")
"""The few-shot task's position words; any name parses, and the resolver checks it against the task's roles."""


class NamedPositions(Node):
    """A named group of sequence positions, a role of the task's layout (`labels`, `query`, `all`, ...)."""

    kind: Literal["named"] = "named"
    name: str


class IndexPosition(Node):
    """One sequence position by index (negative counts from the end)."""

    kind: Literal["index"] = "index"
    index: int


class VarPositions(Node):
    """`@ $p`: positions named by a sweep variable, bound to an index or to a name such as `labels`."""

    kind: Literal["var"] = "var"
    var: Var


class SlicePositions(Node):
    """A half-open slice `start:stop` of positions; either end may be omitted (None) or a variable."""

    kind: Literal["slice"] = "slice"
    start: Atom | None = None
    stop: Atom | None = None


Positions = Annotated[Union[NamedPositions, IndexPosition, VarPositions, SlicePositions], Field(discriminator="kind")]


class RangeSchedule(Node):
    """Training sequences `start..stop`, start inclusive and stop exclusive; None is an open end.
    Either bound may be a sweep variable (`during 0..$k`)."""

    kind: Literal["range"] = "range"
    start: Atom | None = None
    stop: Atom | None = None


class PhaseSchedule(Node):
    """A whole phase: `train` (every training step) or `eval` (evaluation passes only)."""

    kind: Literal["phase"] = "phase"
    phase: Literal["train", "eval"]


Schedule = Annotated[Union[RangeSchedule, PhaseSchedule], Field(discriminator="kind")]

# Statements ---------------------------------------------------------------------------------------


class Import(Node):
    """`import "path"`: inline another spec, the path relative to the importing file."""

    kind: Literal["import"] = "import"
    path: str


class Set(Node):
    """`set section.key = value [during SCHEDULE]`: a configuration override; `key` holds the dotted
    parts; `during` makes it a data value that holds only while the schedule does."""

    kind: Literal["set"] = "set"
    key: tuple[str, ...]
    value: Value
    during: Schedule | None = None


class SweepRange(Node):
    """An inclusive integer range `start..stop` that a sweep variable runs over."""

    kind: Literal["range"] = "range"
    start: int
    stop: int


class SweepTuple(Node):
    """One row `(v1, v2, ...)` of a paired sweep: a value for each of its variables."""

    kind: Literal["tuple"] = "tuple"
    items: tuple[Value, ...]


class SweepTuples(Node):
    """The rows `[(a, b), (c, d), ...]` of a paired sweep."""

    kind: Literal["tuples"] = "tuples"
    items: tuple[SweepTuple, ...]


class Sweep(Node):
    """`sweep name in a..b`, `sweep name in [v, ...]`, or the paired `sweep (a, b) in [(1, 2), ...]`:
    one run per value (per row of a paired sweep). `names` holds the one name, or the paired names."""

    kind: Literal["sweep"] = "sweep"
    names: tuple[str, ...]
    values: Annotated[Union[SweepRange, ListValue, SweepTuples], Field(discriminator="kind")]


class Intervention(Node):
    """`VERB [only] TARGETS [@ POSITIONS] [= VALUE] [preserving TARGETS] [from SOURCE, ...] [at COUNT] [seed N]
    [during SCHEDULE]`; `only` is written by `train only`, `at` and `seed` by `reinit`."""

    kind: Literal["intervention"] = "intervention"
    verb: str
    only: bool = False
    targets: tuple[Selector, ...]
    positions: Positions | None = None
    value: Value | None = None
    preserving: tuple[Selector, ...] = ()
    source: Annotated[Union[GlobalSite, LayerSelector, String], Field(discriminator="kind")] | None = None
    more_sources: tuple[Selector, ...] = ()
    """The selectors after the first of `from A, B, ...` (a path cut's further sources)."""
    at: Atom | None = None
    seed: Atom | None = None
    schedule: Schedule | None = None


class Variant(Node):
    """`variant name { statements }`: the named variant's runs add these statements where the block
    stands; the file's other statements are common to every variant. Its span is the `variant NAME`
    header (its statements carry their own)."""

    kind: Literal["variant"] = "variant"
    name: str
    statements: tuple[Statement, ...] = ()


Statement = Annotated[Union[Import, Set, Sweep, Variant, Intervention], Field(discriminator="kind")]


class Spec(Node):
    """A whole spec file: its path and its statements in order."""

    kind: Literal["spec"] = "spec"
    path: str
    statements: tuple[Statement, ...] = ()


for _model in (Call, ListValue, SweepTuple, SweepTuples, Set, Sweep, Variant, Intervention, Spec):
    _model.model_rebuild()

T = TypeVar("T")


def strip_spans(node: T) -> T:
    """Return a copy of `node` with every span blanked, so trees can be compared by content alone."""
    if isinstance(node, Node):
        update = {name: strip_spans(getattr(node, name)) for name in type(node).model_fields}
        update["span"] = BLANK_SPAN
        return node.model_copy(update=update)
    if isinstance(node, tuple):
        return tuple(strip_spans(item) for item in node)
    return node
