"""Property tests: format/parse round trips, and arbitrary text yields a Spec or a SpecError only."""

from hypothesis import given, settings
from hypothesis import strategies as st

from optodsl.errors import SpecError, render
from optodsl.syntax import format_spec, parse
from optodsl.syntax.ast import strip_spans

from .strategies import specs
from .test_parse import CASES

EXAMPLES = "\n".join(CASES)


@settings(max_examples=200, deadline=None)
@given(specs)
def test_format_then_parse_gives_the_same_tree(spec):
    text = format_spec(spec)
    assert strip_spans(parse(text)) == spec


def _parse_or_error(text):
    """Parse `text`; a SpecError must lie inside the text and render; anything else propagates."""
    try:
        return parse(text)
    except SpecError as error:
        lines = text.split("\n")
        span = error.span
        assert 1 <= span.line <= len(lines)
        assert 1 <= span.column <= len(lines[span.line - 1].rstrip("\r")) + 1
        assert (span.end_line, span.end_column) >= (span.line, span.column)
        assert span.line_text == lines[span.line - 1].rstrip("\r")
        assert render(error).startswith(f"<spec>:{span.line}:{span.column}: error: ")
        return error


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list('Lh.H*$[](),=@:;"#\n 0123456789kMe-_abcxyz') + [" except ", " during "]),
               max_size=40).map("".join))
def test_text_over_the_language_alphabet_gives_spec_or_spec_error(text):
    _parse_or_error(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_unicode_gives_spec_or_spec_error(text):
    _parse_or_error(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, len(EXAMPLES)),
                          st.sampled_from(list('LH.*$[](),=@:;"#\n 1_k-x\\'))), min_size=1, max_size=4))
def test_mutated_examples_give_spec_or_spec_error(edits):
    text = EXAMPLES
    for action, where, char in edits:
        where = min(where, len(text))
        if action == "insert":
            text = text[:where] + char + text[where:]
        elif action == "delete":
            text = text[:where] + text[where + 1:]
        else:
            text = text[:where] + char + text[where + 1:]
    result = _parse_or_error(text)
    if not isinstance(result, SpecError):
        assert strip_spans(parse(format_spec(result))) == strip_spans(result)


def test_deep_nesting_is_a_spec_error():
    assert isinstance(_parse_or_error("x L1 = " + "[" * 5000), SpecError)
    assert isinstance(_parse_or_error("x L1 = " + "f(a=" * 500), SpecError)
