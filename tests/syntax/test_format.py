"""Canonical text: fixed spacing, one statement per line, idempotent; `format_spec` (hashed) drops
comments, `format_source` (`opto fmt`) keeps every comment where it stands."""

from pathlib import Path

import pytest

from optodsl.syntax import format_spec, parse
from optodsl.syntax.ast import strip_spans
from optodsl.syntax.format import _comment_of, format_source

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").rglob("*.opto"))

CANONICAL = {
    "clamp  L1.H2.pattern=prev_token( strength = 0.8 )": "clamp L1.H2.pattern = prev_token(strength=0.8)",
    "ablate L2.H*  except H3 ,H5": "ablate L2.* except H3, H5",
    "ablate L2.H[1,3,5]": "ablate L2.H[1, 3, 5]",
    "ablate L1.H0.v@2:4=0.5": "ablate L1.H0.v @ 2:4 = 0.5",
    "x L1 @ :3": "x L1 @ :3",
    "clamp L1.H2.pattern = prev_token during 0..100_000": "clamp L1.H2.pattern = prev_token during 0..100k",
    "ablate L2.H1 during 1M..": "ablate L2.H1 during 1M..",
    "set train.steps = 600000": "set train.steps = 600k",
    "set train.seed = 1000": "set train.seed = 1000",
    "set train.lr = 1e-4": "set train.lr = 0.0001",
    "set x.y = 1.5M": "set x.y = 1500000.0",
    'set eval.sets = ["train","test_classes"]': 'set eval.sets = ["train", "test_classes"]',
    'graft L1.resid_out from "a\\"b"': 'graft L1.resid_out from "a\\"b"',
    "sweep h in 0 .. 3": "sweep h in 0..3",
    'import "base.opto" # shared settings': 'import "base.opto"',
    "copy logits from L2.H3 during eval": "copy logits from L2.H3 during eval",
    "ablate L1.H1,L1.H2 preserving L2.pattern,L2.v": "ablate L1.H1, L1.H2 preserving L2.pattern, L2.v",
}


@pytest.mark.parametrize("text", list(CANONICAL))
def test_canonical_text(text):
    assert format_spec(parse(text)) == CANONICAL[text] + "\n"


def test_statements_one_per_line_and_comments_dropped():
    text = "# header\nablate L1;ablate L2   # why\n\n\nset train.lr = 0.001\n"
    assert format_spec(parse(text)) == "ablate L1\nablate L2\nset train.lr = 0.001\n"


@pytest.mark.parametrize("text", list(CANONICAL.values()))
def test_canonical_text_is_a_fixed_point(text):
    assert format_spec(parse(text)) == text + "\n"


def _comments(text: str) -> list[str]:
    return [c for line in text.splitlines() for c in [_comment_of(line)[1]] if c is not None]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_fmt_keeps_every_comment_of_every_spec_and_is_a_fixed_point(path):
    text = path.read_text()
    formatted = format_source(text, str(path))
    assert _comments(formatted) == _comments(text)
    assert strip_spans(parse(formatted)) == strip_spans(parse(text))
    assert format_source(formatted, str(path)) == formatted


def test_comments_stay_where_they_stand():
    text = ("# header\n\n\nset train.lr=1e-3   # why\nablate L1;ablate L2 # second\n  # own line\n"
            "variant v { # head\n  # inside\n  ablate L2.H1 # in\n} # after\n"
            'graft L1.resid_out from "runs/a#b"\n# end\n')
    assert format_source(text) == (
        "# header\n\nset train.lr = 0.001  # why\nablate L1\nablate L2  # second\n# own line\n"
        "variant v {  # head\n    # inside\n    ablate L2.H1  # in\n}  # after\n"
        'graft L1.resid_out from "runs/a#b"\n# end\n')
