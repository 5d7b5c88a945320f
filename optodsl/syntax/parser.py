"""Parse spec text into the syntax tree of `ast.py`, or raise one located `SpecError`.

The grammar lives in `grammars/opto.lark`; this module loads it once, turns lark's errors into
spec errors with hints (see `hints.py`), and converts the parse tree to frozen AST nodes.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, VisitError

from ..errors import Span, SpecError
from . import ast, hints

MAX_NESTING = 32

_INT = re.compile(r"-?[0-9]+(?:_[0-9]+)*")
_FLOAT = re.compile(r"-?[0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][+-]?[0-9]+)?")
_SCALES = {"k": 1_000, "M": 1_000_000}
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _grammar_text() -> str:
    """The grammar from the source tree, or from the installed package when packaged."""
    path = Path(__file__).resolve().parents[2] / "grammars" / "opto.lark"
    if path.is_file():
        return path.read_text()
    return importlib.resources.files("optodsl").joinpath("grammars/opto.lark").read_text()


@functools.cache
def _lark() -> Lark:
    return Lark(_grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True)


@functools.cache
def _selector_lark() -> Lark:
    return Lark(_grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True, start="targets")


def parse_selectors(text: str, path: str = "<selector>") -> tuple:
    """Parse a comma-separated list of selectors (`L1.H[1,2,5]`, `L1.*`, `L2.H0..7.v`) with the
    grammar's own selector rule, as the command line's options take them; errors are located SpecErrors."""
    source = Source(text, path)
    try:
        tree = _selector_lark().parse(text)
    except UnexpectedInput as error:
        found = (f"character {text[error.pos_in_stream]!r}" if isinstance(error, UnexpectedCharacters)
                 and error.pos_in_stream < len(text) else hints.describe_token(error.token)
                 if hasattr(error, "token") else "end of text")
        raise SpecError(source.span(error.line, error.column) if error.line > 0 else source.end(),
                        f"cannot read selector '{text}': unexpected {found}", hints.SELECTOR_HINT) from None
    return _build(source, tree)


def _build(source, tree):
    """The AST of a parse tree; a SpecError raised while building it is raised as itself, once."""
    try:
        return _Builder(source).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, SpecError):
            raise error.orig_exc from None
        raise error.orig_exc from error


@functools.cache
def _labels() -> hints.StateLabels:
    return hints.StateLabels(_lark().parse)


class Source:
    """Spec text with its path, able to build spans from line and column numbers."""

    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self.lines = [line.rstrip("\r") for line in text.split("\n")]

    def span(self, line: int, column: int, end_line: int | None = None, end_column: int | None = None) -> Span:
        """A span from 1-based positions; the end defaults to one character after the start."""
        line = min(max(line, 1), len(self.lines))
        return Span(path=self.path, line=line, column=column, end_line=end_line or line,
                    end_column=end_column if end_column is not None else column + 1,
                    line_text=self.lines[line - 1])

    def of(self, item: Token | object) -> Span:
        """The span of a token or of a parse-tree node's meta."""
        return self.span(item.line, item.column, item.end_line, item.end_column)

    def end(self) -> Span:
        """A one-character span just past the last character of the text."""
        return self.span(len(self.lines), len(self.lines[-1]) + 1)

    def error(self, item: Token | object, message: str, hint: str | None = None) -> SpecError:
        """A SpecError located at a token or node."""
        return SpecError(self.of(item), message, hint)


def parse(text: str, path: str = "<spec>") -> ast.Spec:
    """Parse spec text into an `ast.Spec`; every problem is raised as a located `SpecError`.

    Example: `parse("ablate L2.* except H3").statements[0].verb == "ablate"`.
    """
    source = Source(text, path)
    _check_nesting(source)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(source, error) from None
    return _build(source, tree)


def _check_nesting(source: Source) -> None:
    """Reject brackets nested deeper than MAX_NESTING before they can exhaust the recursion limit."""
    depth, in_string, in_comment, line, column = 0, False, False, 1, 0
    chars = iter(source.text)
    for char in chars:
        column += 1
        if char == "\n":
            line, column, in_string, in_comment = line + 1, 0, False, False
        elif in_comment:
            continue
        elif in_string:
            if char == "\\":
                next(chars, None)
                column += 1
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char == "#":
            in_comment = True
        elif char in "[({":
            depth += 1
            if depth > MAX_NESTING:
                raise SpecError(source.span(line, column), f"brackets nested more than {MAX_NESTING} deep",
                                "flatten the value; specs never need this much nesting")
        elif char in "])}":
            depth = max(depth - 1, 0)


def _syntax_error(source: Source, error: UnexpectedInput) -> SpecError:
    """Translate a lark error into a SpecError at the offending character or token."""
    lark = _lark()
    patterns = {t.name: t.pattern.value.removesuffix("\\b") for t in lark.terminals}
    if isinstance(error, UnexpectedCharacters):
        span = source.span(error.line, error.column)
        char = source.text[error.pos_in_stream] if error.pos_in_stream < len(source.text) else ""
        if char == '"':
            return SpecError(span, "unclosed string",
                             'end the string with " on the same line; escapes are \\" \\\\ \\n \\t')
        if char == "$":
            return SpecError(span, "'$' must start a variable name", "variables are written $name, e.g. $h")
        if char in "/\\~":
            path = hints.word_at(source.lines[error.line - 1], error.column)
            return SpecError(span, f"unexpected character {char!r}", f'paths are quoted strings: write "{path}"')
        found = f"character {char!r}"
    else:
        token = error.token
        if token.type == "HEAD_COMMA":
            head = token.end_column + len(source.lines[token.line - 1][token.end_column - 1:]) - len(
                source.lines[token.line - 1][token.end_column - 1:].lstrip(" \t"))
            return SpecError(source.span(token.line, head), "a head needs its layer here",
                             "after a comma write a full selector like L1.H2; "
                             "to leave heads out write L1.* except H0, H2")
        found = hints.describe_token(token)
        if token.type == "$END":
            span = source.end()
        elif token.type == "_SEP":
            span = source.span(token.line, token.column)
        else:
            span = source.of(token)
    capitals = hints.capitals_hint(hints.selector_at(source.lines[span.line - 1], span.column))
    if capitals is not None:
        return SpecError(span, f"unexpected {found}", capitals)
    label = _labels().label(hints.state_key(error))
    if label is not None:
        message, hint = label
        return SpecError(span, f"{message}, found {found}", hint)
    return SpecError(span, f"unexpected {found}", "expected " + hints.expected_words(hints.accepted(error), patterns))


def _number(source: Source, token: Token) -> int | float:
    """The value of a NUMBER token: ints stay ints (`100k` is 100000), the rest are floats."""
    text = token.value
    scale = _SCALES.get(text[-1], 1)
    core = text[:-1] if scale != 1 else text
    if len(core) > 64:
        raise source.error(token, f"number {text[:20]}... is too long", hints.NUMBER_HINT)
    if _INT.fullmatch(core):
        return int(core.replace("_", "")) * scale
    if _FLOAT.fullmatch(core):
        value = float(core.replace("_", "")) * scale
        if math.isfinite(value):
            return value
        raise source.error(token, f"number {text} is too large", hints.NUMBER_HINT)
    raise source.error(token, f"malformed number {text!r}", hints.NUMBER_HINT)


def _whole(source: Source, token: Token, what: str, hint: str, minimum: int | None = 0) -> int:
    """A NUMBER token that must be a whole number (`1.5M` counts), at least `minimum` unless None."""
    value = _number(source, token)
    if isinstance(value, float) and value.is_integer() and token.value[-1] in _SCALES:
        value = int(value)
    if isinstance(value, float):
        raise source.error(token, f"{what} must be a whole number, found {token.value}", hint)
    if minimum is not None and value < minimum:
        raise source.error(token, f"{what} must be at least {minimum}, found {token.value}", hint)
    return value


def _string(token: Token) -> str:
    """Decode a STRING token's body (the grammar admits only the escapes in _ESCAPES)."""
    return re.sub(r"\\(.)", lambda match: _ESCAPES[match[1]], token.value[1:-1])


@v_args(meta=True)
class _Builder(Transformer):
    """Turns the lark parse tree into AST nodes; each rule method builds one node kind."""

    def __init__(self, source: Source):
        super().__init__()
        self.src = source

    def _span(self, meta) -> Span:
        return self.src.of(meta)

    def _atom(self, item: Token) -> int | ast.Var:
        if item.type == "VAR":
            return ast.Var(span=self.src.of(item), name=item.value[1:])
        hint = "to pick a head write L1.H2 (heads count from 0)" if "." in item.value else hints.LAYER_HINT
        return _whole(self.src, item, "an index", hint)

    # statements

    def start(self, meta, children):
        return ast.Spec(span=self.src.span(1, 1, len(self.src.lines), len(self.src.lines[-1]) + 1),
                        path=self.src.path, statements=tuple(children))

    def import_stmt(self, meta, children):
        return ast.Import(span=self._span(meta), path=_string(children[1]))

    def set_stmt(self, meta, children):
        return ast.Set(span=self._span(meta), key=children[1], value=children[2], during=children[3])

    def setting_key(self, meta, children):
        return tuple(str(name) for name in children)

    def sweep_stmt(self, meta, children):
        return ast.Sweep(span=self._span(meta), names=children[1], values=children[3])

    def sweep_names(self, meta, children):
        return (str(children[0]),)

    def sweep_names_paired(self, meta, children):
        return tuple(str(name) for name in children)

    def sweep_tuples(self, meta, children):
        return ast.SweepTuples(span=self._span(meta), items=tuple(children))

    def sweep_tuple(self, meta, children):
        return ast.SweepTuple(span=self._span(meta), items=tuple(children))

    def variant_stmt(self, meta, children):
        keyword, name = children[0], children[1]
        span = self.src.span(keyword.line, keyword.column, name.end_line, name.end_column)
        return ast.Variant(span=span, name=str(name), statements=tuple(children[2:]))

    def sweep_range(self, meta, children):
        start, stop = (_whole(self.src, token, "a sweep bound", hints.SWEEP_HINT, None) for token in children)
        return ast.SweepRange(span=self._span(meta), start=start, stop=stop)

    def intervention(self, meta, children):
        verb, only, targets, positions, value, preserving, source, at, seed, schedule = children
        source, *more = source if isinstance(source, list) else [source]
        return ast.Intervention(span=self._span(meta), verb=str(verb), only=only is not None, targets=targets,
                                positions=positions, value=value, preserving=preserving or (), source=source,
                                more_sources=tuple(more), at=at, seed=seed, schedule=schedule)

    def at_clause(self, meta, children):
        return children[0]

    def assign_clause(self, meta, children):
        return children[0]

    def preserving_clause(self, meta, children):
        return children[1]

    def from_clause(self, meta, children):
        source = children[1]
        if isinstance(source, Token):
            return ast.String(span=self.src.of(source), value=_string(source))
        return source if len(children) == 2 else list(children[1:])

    def during_clause(self, meta, children):
        return children[1]

    def when_clause(self, meta, children):
        return self._bound(children[1], "a sequence count", hints.SCHEDULE_HINT, 0)

    def seed_clause(self, meta, children):
        return self._bound(children[1], "a seed", "write a whole number, e.g. seed 1", 0)

    # selectors

    def targets(self, meta, children):
        return tuple(children)

    def global_site(self, meta, children):
        return ast.GlobalSite(span=self._span(meta), name=str(children[0]))

    def layer_selector(self, meta, children):
        _, layers, heads, site, except_heads = children
        return ast.LayerSelector(span=self._span(meta), layers=layers, heads=heads,
                                 site=None if site is None else str(site), except_heads=except_heads or ())

    def heads(self, meta, children):
        return children[1]

    def heads_all(self, meta, children):
        return ast.IndexAll(span=self._span(meta))

    def except_clause(self, meta, children):
        return tuple(child for child in children if not isinstance(child, Token))

    def head_item(self, meta, children):
        return children[1]

    def index_all(self, meta, children):
        return ast.IndexAll(span=self._span(meta))

    def index_single(self, meta, children):
        return ast.IndexSingle(span=self._span(meta), value=self._atom(children[0]))

    def index_range(self, meta, children):
        return ast.IndexRange(span=self._span(meta), start=self._atom(children[0]), stop=self._atom(children[1]))

    def index_list(self, meta, children):
        return ast.IndexList(span=self._span(meta), items=tuple(self._atom(child) for child in children))

    # positions and schedules

    def positions_named(self, meta, children):
        """Any position word; the resolver checks it against the task's roles."""
        return ast.NamedPositions(span=self._span(meta), name=str(children[0]))

    def positions_index(self, meta, children):
        index = _whole(self.src, children[0], "a position", hints.POSITIONS_HINT, None)
        return ast.IndexPosition(span=self._span(meta), index=index)

    def positions_var(self, meta, children):
        return ast.VarPositions(span=self._span(meta), var=ast.Var(span=self._span(meta), name=children[0].value[1:]))

    def positions_slice(self, meta, children):
        start, stop = (self._bound(token, "a slice bound", hints.POSITIONS_HINT, None) for token in children)
        return ast.SlicePositions(span=self._span(meta), start=start, stop=stop)

    def bound(self, meta, children):
        return children[0]

    def _bound(self, token: Token | None, what: str, hint: str, minimum: int | None) -> int | ast.Var | None:
        """A schedule or slice bound: absent (None), a sweep variable, or a whole number."""
        if token is None:
            return None
        if token.type == "VAR":
            return ast.Var(span=self.src.of(token), name=token.value[1:])
        return _whole(self.src, token, what, hint, minimum)

    def schedule_phase(self, meta, children):
        name = str(children[0])
        if name not in ("train", "eval"):
            raise self.src.error(children[0], f"unknown schedule {name!r}",
                                 hints.did_you_mean(name, ("train", "eval")) + hints.SCHEDULE_HINT)
        return ast.PhaseSchedule(span=self._span(meta), phase=name)

    def schedule_range(self, meta, children):
        if children == [None, None]:
            raise SpecError(self._span(meta), "a schedule range needs a start or a stop", hints.SCHEDULE_HINT)
        start, stop = (self._bound(token, "a schedule bound", hints.SCHEDULE_HINT, 0) for token in children)
        return ast.RangeSchedule(span=self._span(meta), start=start, stop=stop)

    # values

    def number(self, meta, children):
        return ast.Number(span=self._span(meta), value=_number(self.src, children[0]))

    def true(self, meta, children):
        return ast.Bool(span=self._span(meta), value=True)

    def false(self, meta, children):
        return ast.Bool(span=self._span(meta), value=False)

    def string(self, meta, children):
        return ast.String(span=self._span(meta), value=_string(children[0]))

    def name(self, meta, children):
        return ast.Name(span=self._span(meta), name=str(children[0]))

    def var(self, meta, children):
        return ast.Var(span=self._span(meta), name=children[0].value[1:])

    def call(self, meta, children):
        args = tuple(child for child in children[1:] if child is not None)
        seen: set[str] = set()
        for key, _ in args:
            if key in seen:
                raise SpecError(self._span(meta), f"argument {key!r} is given twice", "give each argument once")
            seen.add(key)
        return ast.Call(span=self._span(meta), name=str(children[0]), args=tuple((str(k), v) for k, v in args))

    def kwarg(self, meta, children):
        return (str(children[0]), children[1])

    def list_value(self, meta, children):
        return ast.ListValue(span=self._span(meta), items=tuple(child for child in children if child is not None))
