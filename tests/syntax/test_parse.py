"""Table tests: each spec line parses to the expected tree (spans stripped)."""

import pytest

from optodsl.errors import SpecError
from optodsl.syntax import ast, parse
from optodsl.syntax.ast import strip_spans

S = ast.BLANK_SPAN


def one(i):
    return ast.IndexSingle(span=S, value=i)


def sel(layers, heads=None, site=None, except_heads=()):
    return ast.LayerSelector(span=S, layers=layers, heads=heads, site=site, except_heads=except_heads)


def glob(name):
    return ast.GlobalSite(span=S, name=name)


def act(verb, *targets, **fields):
    return ast.Intervention(span=S, verb=verb, targets=targets, **fields)


def num(value):
    return ast.Number(span=S, value=value)


def name(text):
    return ast.Name(span=S, name=text)


def rng(start=None, stop=None):
    return ast.RangeSchedule(span=S, start=start, stop=stop)


ALL = ast.IndexAll(span=S)
LABELS = ast.NamedPositions(span=S, name="labels")
PREV = name("prev_token")

CASES = {
    "ablate L2.* except H3": act("ablate", sel(one(2), ALL, except_heads=(one(3),))),
    "ablate L1.H1, L1.H2, L1.H5": act("ablate", sel(one(1), one(1)), sel(one(1), one(2)), sel(one(1), one(5))),
    "clamp L1.H2.pattern = prev_token": act("clamp", sel(one(1), one(2), "pattern"), value=PREV),
    "clamp L1.H2.pattern = prev_token(strength=0.8)": act(
        "clamp", sel(one(1), one(2), "pattern"),
        value=ast.Call(span=S, name="prev_token", args=(("strength", num(0.8)),))),
    "clamp L2.H3.pattern = induction": act("clamp", sel(one(2), one(3), "pattern"), value=name("induction")),
    "ablate L1.* preserving L2.pattern": act(
        "ablate", sel(one(1), ALL), preserving=(sel(one(2), None, "pattern"),)),
    "ablate L1.H0 = mean": act("ablate", sel(one(1), one(0)), value=name("mean")),
    "ablate embed": act("ablate", glob("embed")),
    "ablate L1.H0.v @ labels": act("ablate", sel(one(1), one(0), "v"), positions=LABELS),
    "clamp L1.H0.v @ 2:4 = 0.5": act(
        "clamp", sel(one(1), one(0), "v"), positions=ast.SlicePositions(span=S, start=2, stop=4), value=num(0.5)),
    "clamp L1.H2.pattern @ labels = prev_token": act(
        "clamp", sel(one(1), one(2), "pattern"), positions=LABELS, value=PREV),
    "clamp L2.H3.pattern = match(temperature=0.1)": act(
        "clamp", sel(one(2), one(3), "pattern"),
        value=ast.Call(span=S, name="match", args=(("temperature", num(0.1)),))),
    "clamp L2.H3.pattern = uniform": act("clamp", sel(one(2), one(3), "pattern"), value=name("uniform")),
    "clamp L1.resid_out = prev_token_input": act(
        "clamp", sel(one(1), None, "resid_out"), value=name("prev_token_input")),
    "forbid L1.* = prev_token": act("forbid", sel(one(1), ALL), value=PREV),
    "forbid L1.H2 @ labels = prev_token": act("forbid", sel(one(1), one(2)), positions=LABELS, value=PREV),
    "temperature L2.H3 = 2.0": act("temperature", sel(one(2), one(3)), value=num(2.0)),
    "attend L2.H3 = labels_only": act("attend", sel(one(2), one(3)), value=name("labels_only")),
    "copy logits from L2.H3": act("copy", glob("logits"), source=sel(one(2), one(3))),
    'graft L1.resid_out from "runs/base"': act(
        "graft", sel(one(1), None, "resid_out"), source=ast.String(span=S, value="runs/base")),
    "ablate L1.H1, L1.H2, L1.H5 preserving L2.pattern, L2.v": act(
        "ablate", sel(one(1), one(1)), sel(one(1), one(2)), sel(one(1), one(5)),
        preserving=(sel(one(2), None, "pattern"), sel(one(2), None, "v"))),
    "clamp L1.H2.pattern = prev_token during 0..100k": act(
        "clamp", sel(one(1), one(2), "pattern"), value=PREV, schedule=rng(0, 100_000)),
    "ablate L2.* during eval": act("ablate", sel(one(2), ALL), schedule=ast.PhaseSchedule(span=S, phase="eval")),
    "ablate L2.H1 during 200k..": act("ablate", sel(one(2), one(1)), schedule=rng(200_000, None)),
    "ablate L2.H1 during ..300k": act("ablate", sel(one(2), one(1)), schedule=rng(None, 300_000)),
    "ablate L1.H0, L1.H3 during train": act(
        "ablate", sel(one(1), one(0)), sel(one(1), one(3)), schedule=ast.PhaseSchedule(span=S, phase="train")),
    # selector forms
    "x L2": act("x", sel(one(2))),
    "x L*.H*": act("x", sel(ALL, ALL)),
    "x L1..2.H0": act("x", sel(ast.IndexRange(span=S, start=1, stop=2), one(0))),
    "x L2.H0..3": act("x", sel(one(2), ast.IndexRange(span=S, start=0, stop=3))),
    "x L2.H[1,3,5]": act("x", sel(one(2), ast.IndexList(span=S, items=(1, 3, 5)))),
    "x L2.H$h": act("x", sel(one(2), one(ast.Var(span=S, name="h")))),
    "x L$l..$m": act("x", sel(ast.IndexRange(span=S, start=ast.Var(span=S, name="l"),
                                              stop=ast.Var(span=S, name="m")))),
    "x L2.*.v": act("x", sel(one(2), ALL, "v")),
    "x L2.* except H3, H5": act("x", sel(one(2), ALL, except_heads=(one(3), one(5)))),
    "x L2.* except H3, L1.H2": act("x", sel(one(2), ALL, except_heads=(one(3),)), sel(one(1), one(2))),
    "x L2.* except H3, embed": act("x", sel(one(2), ALL, except_heads=(one(3),)), glob("embed")),
    "x L2.*.pattern except H1": act("x", sel(one(2), ALL, "pattern", except_heads=(one(1),))),
    # positions
    "x L1 @ query": act("x", sel(one(1)), positions=ast.NamedPositions(span=S, name="query")),
    "x L1 @ -1": act("x", sel(one(1)), positions=ast.IndexPosition(span=S, index=-1)),
    "x L1 @ 3:": act("x", sel(one(1)), positions=ast.SlicePositions(span=S, start=3)),
    "x L1 @ :": act("x", sel(one(1)), positions=ast.SlicePositions(span=S)),
    # values
    "x L1 = -1": act("x", sel(one(1)), value=num(-1)),
    "x L1 = 1e-5": act("x", sel(one(1)), value=num(1e-5)),
    "x L1 = 600_000": act("x", sel(one(1)), value=num(600_000)),
    "x L1 = 1.5M": act("x", sel(one(1)), value=num(1.5e6)),
    "x L1 = true": act("x", sel(one(1)), value=ast.Bool(span=S, value=True)),
    'x L1 = "a\\"b\\\\c\\n"': act("x", sel(one(1)), value=ast.String(span=S, value='a"b\\c\n')),
    "x L1 = $lr": act("x", sel(one(1)), value=ast.Var(span=S, name="lr")),
    "x L1 = [1, [], f()]": act("x", sel(one(1)), value=ast.ListValue(span=S, items=(
        num(1), ast.ListValue(span=S), ast.Call(span=S, name="f")))),
    # keywords only count as whole words
    "importer L1 = settings": act("importer", sel(one(1)), value=name("settings")),
    "fromage exceptional = inset": act("fromage", glob("exceptional"), value=name("inset")),
    "during_x Lx = preserving_y": act("during_x", glob("Lx"), value=name("preserving_y")),
    # other statements
    'import "other.opto"': ast.Import(span=S, path="other.opto"),
    "set train.lr = 1e-4": ast.Set(span=S, key=("train", "lr"), value=num(1e-4)),
    "set model.layers = 3": ast.Set(span=S, key=("model", "layers"), value=num(3)),
    'set eval.sets = ["train", "test_classes"]': ast.Set(span=S, key=("eval", "sets"), value=ast.ListValue(
        span=S, items=(ast.String(span=S, value="train"), ast.String(span=S, value="test_classes")))),
    "sweep h in 0..3": ast.Sweep(span=S, names=("h",), values=ast.SweepRange(span=S, start=0, stop=3)),
    "sweep lr in [1e-3, $x]": ast.Sweep(span=S, names=("lr",), values=ast.ListValue(
        span=S, items=(num(1e-3), ast.Var(span=S, name="x")))),
    # sweep variables in schedules and positions, paired sweeps, variants
    "x L1 during 0..$k": act("x", sel(one(1)), schedule=ast.RangeSchedule(span=S, start=0, stop=ast.Var(span=S, name="k"))),
    "x L1 during $a..": act("x", sel(one(1)), schedule=ast.RangeSchedule(span=S, start=ast.Var(span=S, name="a"))),
    "x L1 @ $p": act("x", sel(one(1)), positions=ast.VarPositions(span=S, var=ast.Var(span=S, name="p"))),
    "x L1 @ $a:-1": act("x", sel(one(1)), positions=ast.SlicePositions(span=S, start=ast.Var(span=S, name="a"), stop=-1)),
    "sweep (c, n) in [(100, 5), (50, x)]": ast.Sweep(span=S, names=("c", "n"), values=ast.SweepTuples(span=S, items=(
        ast.SweepTuple(span=S, items=(num(100), num(5))), ast.SweepTuple(span=S, items=(num(50), name("x")))))),
    "sweep (c) in [(1)]": ast.Sweep(span=S, names=("c",), values=ast.SweepTuples(
        span=S, items=(ast.SweepTuple(span=S, items=(num(1),)),))),
    "variant v { x L1; set a.b = 1\n}": ast.Variant(span=S, name="v", statements=(
        act("x", sel(one(1))), ast.Set(span=S, key=("a", "b"), value=num(1)))),
    "variant empty {\n\n}": ast.Variant(span=S, name="empty"),
}


@pytest.mark.parametrize("text", list(CASES))
def test_statement_parses_to_expected_tree(text):
    spec = parse(text)
    assert strip_spans(spec.statements) == (CASES[text],)


@pytest.mark.parametrize(("text", "value", "kind"), [
    ("100k", 100_000, int), ("1.5M", 1_500_000.0, float), ("2M", 2_000_000, int), ("0.5", 0.5, float),
    ("-1", -1, int), ("1e-5", 1e-5, float), ("1E+3", 1000.0, float), ("600_000", 600_000, int), ("2.0", 2.0, float),
])
def test_numbers_keep_value_and_kind(text, value, kind):
    number = parse(f"x L1 = {text}").statements[0].value
    assert number.value == value and type(number.value) is kind


def test_separators_comments_and_blank_lines():
    spec = parse("\n# header\nablate L1 ; ablate L2  # trailing\n\n;;\nablate embed\n")
    assert [strip_spans(s.targets[0]) for s in spec.statements] == [sel(one(1)), sel(one(2)), glob("embed")]


def test_empty_spec_has_no_statements():
    assert parse("").statements == () and parse("# only a comment\n").statements == ()


def test_spans_point_at_their_text():
    text = "ablate L1.H0\nclamp L2.H3.pattern @ labels = prev_token(strength=0.8) during 0..100k"
    statement = parse(text, "s.opto").statements[1]
    line = text.splitlines()[1]

    def cut(span):
        assert span.path == "s.opto" and span.line == span.end_line == 2 and span.line_text == line
        return line[span.column - 1:span.end_column - 1]

    assert cut(statement.span) == line
    assert cut(statement.targets[0].span) == "L2.H3.pattern"
    assert cut(statement.positions.span) == "labels"
    assert cut(statement.value.span) == "prev_token(strength=0.8)"
    assert cut(statement.value.args[0][1].span) == "0.8"
    assert cut(statement.schedule.span) == "0..100k"


def test_schedule_bounds_accept_whole_scaled_floats():
    assert parse("x L1 during 0..1.5M").statements[0].schedule.stop == 1_500_000


@pytest.mark.parametrize("text", ["x L1 during 0..1.5", "x L1 @ 1.5", "x L1.H2.5", "sweep h in 0..2.5"])
def test_fractional_indices_are_rejected(text):
    with pytest.raises(SpecError, match="whole number"):
        parse(text)
