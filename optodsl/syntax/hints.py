"""Words for parse errors: what a token is, what was expected there, and close spellings.

Parser states are labelled by sample bad inputs (the idea of lark's `match_examples`): each
example below fails in some parser state, and any later error in that state gets the label's
message and hint. Other states fall back to listing the expected tokens in words.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable

from lark import Token
from lark.exceptions import UnexpectedInput

VALUE_HINT = (
    "a value is a number (0.5, -1, 1e-5, 100k), true or false, a \"string\", a name (mean), "
    "a call (prev_token(strength=0.8)), a $variable or a [list]"
)
LAYER_HINT = "layers count from 1: write L1, L1..2, L[1,2], L* or L$var"
HEAD_HINT = "heads count from 0: write H0, H0..3, H[1,3], H* or H$var"
SELECTOR_HINT = "name a site, e.g. L1.H2, L2.*, L1.H2.pattern, L1.resid_out or embed"
SCHEDULE_HINT = "write during 0..100k, during 200k.., during ..300k, during train or during eval"
SWEEP_HINT = "write sweep h in 0..3 or sweep h in [1, 2]"
SET_HINT = "write set section.key = value, e.g. set train.lr = 1e-4"
POSITIONS_HINT = "positions are query, labels, exemplars, all, an index like 2, or a slice like 2:4"
NUMBER_HINT = "numbers look like 3, -1, 0.5, 1e-5, 600_000, 100k or 1.5M"

# (message, hint, bad inputs whose parser state at the error should get this message)
EXAMPLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("expected a value after '='", VALUE_HINT,
     ("ablate L1.H0 =", "ablate L1.H0 = )", "set train.lr =", "clamp L1 = f(a=)")),
    ("expected a layer index after 'L'", LAYER_HINT,
     ("ablate L", "ablate L.H1", "ablate L = 1")),
    ("expected a head index after 'H'", HEAD_HINT,
     ("ablate L1.H", "ablate L1.H.v", "ablate L1.* except H", "ablate L1.* except H3, H")),
    ("expected a head or a site after '.'",
     "write L1.H2, L1.*, or a site such as L1.resid_out or L1.H2.pattern",
     ("ablate L1.", "ablate L1. = 1", "ablate L1.H0.", "ablate L1.*. = 1")),
    ("expected the end of the range after '..'",
     "index ranges are inclusive and need both ends, like L1..2 or H0..3",
     ("ablate L1..", "ablate L1.H0..", "ablate L1.H0.. = 1")),
    ("expected an index after ','", "index lists look like L[1,2] or H[1,3,5]",
     ("ablate L[1,", "ablate L[1,]", "ablate L[", "ablate L[]")),
    ("expected what to act on after the verb", SELECTOR_HINT,
     ("ablate", "ablate = 1", "ablate @ labels", "ablate during eval", "ablate H3")),
    ("expected another selector after ','",
     "after a comma write a full selector like L1.H2 or embed (an except list continues with H3)",
     ("ablate L1.H0,", "ablate L1, = 1", "ablate L1, 3")),
    ("expected positions after '@'", POSITIONS_HINT,
     ("ablate L1 @", "ablate L1 @ = 1", "ablate L1 @ \"x\"")),
    ("expected what to keep fixed after 'preserving'", SELECTOR_HINT,
     ("ablate L1 preserving", "ablate L1 preserving = 1")),
    ("expected a source after 'from'", "write from L2.H3 or from \"runs/base\"",
     ("copy logits from", "copy logits from = 1")),
    ("expected a schedule after 'during'", SCHEDULE_HINT,
     ("ablate L1 during", "ablate L1 during = 1", "ablate L1 during 3")),
    ("expected heads after 'except'", "write L2.* except H3 or L2.* except H3, H5",
     ("ablate L2.* except", "ablate L2.* except 3", "ablate L2.* except L1")),
    ("call arguments are written name=value", "e.g. prev_token(strength=0.8); there are no positional arguments",
     ("clamp L1 = f(1)", "clamp L1 = f(a)", "clamp L1 = f(a 1)")),
    ("expected a setting name after 'set'", SET_HINT, ("set", "set = 1", "set 3")),
    ("expected a dotted setting key like train.lr", SET_HINT,
     ("set train = 1", "set train", "set train.", "set train. = 1")),
    ("expected a variable name after 'sweep'", SWEEP_HINT, ("sweep", "sweep in 0..3", "sweep $h in 0..3")),
    ("expected 'in' after the sweep variable", SWEEP_HINT,
     ("sweep h 0..3", "sweep h [1, 2]", "sweep h")),
    ("expected a range or a list after 'in'", SWEEP_HINT,
     ("sweep h in", "sweep h in x", "sweep h in 3", "sweep h in 3..")),
    ("expected a quoted path after 'import'", 'write import "other.opto"',
     ("import", "import foo", "import 3")),
    ("a statement starts with a verb or with import, set or sweep",
     "e.g. ablate L1.H2, set train.lr = 1e-4 or sweep h in 0..3",
     ("L1.H0", "= 1", "@", "3", "\"x\"", "ablate L1; L2", "ablate L1\n= 1")),
)

TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a "string"',
    "VAR": "a $variable",
    "LAYER": "a layer (L1)",
    "HEAD": "a head (H0)",
    "HEAD_COMMA": "','",
    "_SEP": "end of statement",
    "$END": "end of file",
}


def describe_token(token: Token) -> str:
    """Say in words which token was found, for 'found ...' in messages."""
    if token.type == "$END":
        return "end of file"
    if token.type == "_SEP":
        return "end of line" if token.value == "\n" else "';'"
    if token.type in ("NAME", "NUMBER", "VAR"):
        return f"{TERMINAL_WORDS[token.type][2:]} {token.value!r}"
    if token.type == "STRING":
        return f"string {token.value}"
    return repr(str(token.value))


def expected_words(names: Iterable[str], patterns: dict[str, str]) -> str:
    """Join the expected terminals as words: names via TERMINAL_WORDS, literals quoted."""
    names = set(names) - {"$END"} if "_SEP" in names else set(names)
    words = sorted({TERMINAL_WORDS.get(name) or f"'{patterns.get(name, name)}'" for name in names})
    if not words:
        return "nothing more here"
    if len(words) == 1:
        return words[0]
    return "one of " + ", ".join(words[:-1]) + " or " + words[-1]


_LOWER_INDEX = re.compile(r"(?<![\w$])([lh])(?=(?:\d+|\*|\[[\d,\s]*\])(?:\.|,|$))")
_SELECTOR_TEXT = re.compile(r"[\w.*\[\],$]+")


def capitals_hint(text: str) -> str | None:
    """For a selector written with a lowercase layer or head (`l1.h2.pattern`), the hint naming
    the capitalised spelling; None when `text` has no lowercase index."""
    if not _LOWER_INDEX.search(text):
        return None
    fixed = _LOWER_INDEX.sub(lambda m: m[1].upper(), text)
    return f"layers and heads are written with capitals: {fixed} (layers count from 1, heads from 0)"


def selector_at(line: str, column: int) -> str:
    """The selector-like word of `line` that covers 1-based `column` (used to quote it in hints)."""
    for match in _SELECTOR_TEXT.finditer(line):
        if match.start() < column <= match.end() + 1:
            return match[0]
    return ""


def word_at(line: str, column: int) -> str:
    """The run of non-blank characters of `line` around 1-based `column` (an unquoted path, to quote in a hint)."""
    start = end = column - 1
    while start > 0 and not line[start - 1].isspace() and line[start - 1] not in "\"=":
        start -= 1
    while end < len(line) and not line[end].isspace() and line[end] not in "#;":
        end += 1
    return line[start:end]


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`did you mean 'X'? ` naming the option spelled closest to `word` (difflib ratio at least 0.6), or ''
    when none is close: the one rule behind every spelling hint."""
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean '{near[0]}'? " if near else ""


def close(word: str, options: Iterable[str], what: str) -> str:
    """A hint naming the closest valid spelling, or else listing the valid options (`valid {what}: ...`)."""
    options = list(options)
    return did_you_mean(word, options).rstrip() or f"valid {what}: " + ", ".join(options)


def accepted(error: UnexpectedInput) -> frozenset[str]:
    """The terminals the parser would have accepted where `error` happened."""
    parser = getattr(error, "interactive_parser", None)
    if parser is not None:
        return frozenset(parser.accepts())
    return frozenset(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())


def state_key(error: UnexpectedInput) -> tuple[int, frozenset[str]] | None:
    """The LALR state number an error happened in plus what it accepts, when lark recorded them."""
    state = getattr(error, "state", None)
    position = getattr(state, "position", state)
    return (position, accepted(error)) if isinstance(position, int) else None


class StateLabels:
    """Maps parser states to (message, hint) by failing on each example once, lazily."""

    def __init__(self, parse: Callable[[str], object]):
        self._parse = parse
        self._labels: dict[tuple[int, frozenset[str]], tuple[str, str]] | None = None

    def _build(self) -> dict[tuple[int, frozenset[str]], tuple[str, str]]:
        labels: dict[tuple[int, frozenset[str]], tuple[str, str]] = {}
        for message, hint, examples in EXAMPLES:
            for example in examples:
                state = self.state_of(example)
                if state is not None:
                    labels.setdefault(state, (message, hint))
        return labels

    def state_of(self, text: str) -> tuple[int, frozenset[str]] | None:
        """The parser state in which `text` fails, or None if it parses or fails while lexing."""
        try:
            self._parse(text)
        except UnexpectedInput as error:
            return state_key(error)
        return None

    def label(self, state: tuple[int, frozenset[str]] | None) -> tuple[str, str] | None:
        """The (message, hint) for an error in `state`, if some example fails there."""
        if self._labels is None:
            self._labels = self._build()
        return self._labels.get(state)
