"""Hypothesis strategies that build valid syntax trees (with blank spans) for round-trip tests."""

from hypothesis import strategies as st

from optodsl.syntax import ast

S = ast.BLANK_SPAN
KEYWORDS = {"import", "set", "sweep", "in", "preserving", "from", "during", "except", "variant", "true", "false"}

names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
texts = st.text(st.sampled_from('ab #;"\\\n\t=é'), max_size=8)
indices = st.integers(0, 12)
atoms = st.one_of(indices, names.map(lambda n: ast.Var(span=S, name=n)))
ints = st.integers(-(10**12), 10**12)
floats = st.floats(allow_nan=False, allow_infinity=False)

index_sets = st.one_of(
    st.just(ast.IndexAll(span=S)),
    atoms.map(lambda a: ast.IndexSingle(span=S, value=a)),
    st.tuples(atoms, atoms).map(lambda p: ast.IndexRange(span=S, start=p[0], stop=p[1])),
    st.lists(atoms, min_size=1, max_size=3).map(lambda xs: ast.IndexList(span=S, items=tuple(xs))),
)
layer_selectors = st.builds(
    lambda layers, heads, site, excepted: ast.LayerSelector(
        span=S, layers=layers, heads=heads, site=site, except_heads=tuple(excepted)),
    index_sets, st.none() | index_sets, st.none() | names, st.lists(index_sets, max_size=2))
selectors = st.one_of(names.map(lambda n: ast.GlobalSite(span=S, name=n)), layer_selectors)
targets = st.lists(selectors, min_size=1, max_size=3).map(tuple)

scalars = st.one_of(
    st.one_of(ints, floats).map(lambda v: ast.Number(span=S, value=v)),
    st.booleans().map(lambda b: ast.Bool(span=S, value=b)),
    texts.map(lambda t: ast.String(span=S, value=t)),
    names.map(lambda n: ast.Name(span=S, name=n)),
    names.map(lambda n: ast.Var(span=S, name=n)),
)


def _compound(children):
    kwargs = st.dictionaries(names, children, max_size=3).map(lambda d: tuple(d.items()))
    return st.one_of(
        st.builds(lambda n, a: ast.Call(span=S, name=n, args=a), names, kwargs),
        st.lists(children, max_size=3).map(lambda xs: ast.ListValue(span=S, items=tuple(xs))),
    )


values = st.recursive(scalars, _compound, max_leaves=6)
variables = names.map(lambda n: ast.Var(span=S, name=n))
slice_bounds = st.none() | st.integers(-5, 20) | variables
positions = st.one_of(
    st.sampled_from(ast.POSITION_NAMES).map(lambda n: ast.NamedPositions(span=S, name=n)),
    st.integers(-5, 20).map(lambda i: ast.IndexPosition(span=S, index=i)),
    variables.map(lambda v: ast.VarPositions(span=S, var=v)),
    st.tuples(slice_bounds, slice_bounds).map(lambda p: ast.SlicePositions(span=S, start=p[0], stop=p[1])),
)
schedule_bounds = st.none() | st.integers(0, 10**9) | variables
schedules = st.one_of(
    st.sampled_from(["train", "eval"]).map(lambda p: ast.PhaseSchedule(span=S, phase=p)),
    st.tuples(schedule_bounds, schedule_bounds)
    .filter(lambda p: p != (None, None)).map(lambda p: ast.RangeSchedule(span=S, start=p[0], stop=p[1])),
)
interventions = st.builds(
    lambda verb, tg, pos, val, pres, src, sch: ast.Intervention(
        span=S, verb=verb, targets=tg, positions=pos, value=val, preserving=pres, source=src, schedule=sch),
    names, targets, st.none() | positions, st.none() | values, st.just(()) | targets,
    st.none() | selectors | texts.map(lambda t: ast.String(span=S, value=t)), st.none() | schedules)
sweeps = st.one_of(
    st.builds(lambda n, d: ast.Sweep(span=S, names=(n,), values=d), names, st.one_of(
        st.tuples(ints, ints).map(lambda p: ast.SweepRange(span=S, start=p[0], stop=p[1])),
        st.lists(scalars, max_size=3).map(lambda xs: ast.ListValue(span=S, items=tuple(xs))))),
    st.builds(lambda ns, rows: ast.Sweep(span=S, names=tuple(ns), values=ast.SweepTuples(span=S, items=tuple(
        ast.SweepTuple(span=S, items=tuple(row)) for row in rows))),
        st.lists(names, min_size=1, max_size=3), st.lists(st.lists(scalars, min_size=1, max_size=3), min_size=1, max_size=3)),
)
plain_statements = st.one_of(
    interventions,
    texts.map(lambda t: ast.Import(span=S, path=t)),
    st.builds(lambda k, v: ast.Set(span=S, key=tuple(k), value=v), st.lists(names, min_size=2, max_size=3), values),
    sweeps,
)
statements = st.recursive(plain_statements, lambda children: st.builds(
    lambda n, body: ast.Variant(span=S, name=n, statements=tuple(body)), names, st.lists(children, max_size=3)),
    max_leaves=5)
specs = st.lists(statements, max_size=4).map(lambda xs: ast.Spec(span=S, path="<spec>", statements=tuple(xs)))
