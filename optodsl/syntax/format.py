"""Print a syntax tree as canonical spec text: one statement per line, one spacing style.

Comments and blank lines are not in the tree, so they are dropped. The output parses back to
the same tree (spans aside): numbers keep their int/float kind and strings are re-escaped.
"""

from __future__ import annotations

from . import ast


def format_spec(spec: ast.Spec) -> str:
    """Canonical text of a whole spec, each statement on its own line.

    Example: `format_spec(parse("clamp  L1.H2.pattern=prev_token(strength = 0.8)"))`
    gives `"clamp L1.H2.pattern = prev_token(strength=0.8)\\n"`.
    """
    return "".join(format_statement(statement) + "\n" for statement in spec.statements)


def format_statement(statement: ast.Import | ast.Set | ast.Sweep | ast.Variant | ast.Intervention,
                     indent: str = "") -> str:
    """Canonical text of one statement, without a line ending; a variant's block spans several
    lines, its statements indented by four spaces more than `indent`."""
    if isinstance(statement, ast.Import):
        return f"import {format_string(statement.path)}"
    if isinstance(statement, ast.Set):
        return f"set {'.'.join(statement.key)} = {format_value(statement.value)}"
    if isinstance(statement, ast.Sweep):
        return _format_sweep(statement)
    if isinstance(statement, ast.Variant):
        inner = indent + "    "
        body = "".join(f"{inner}{format_statement(s, inner)}\n" for s in statement.statements)
        return f"variant {statement.name} {{\n{body}{indent}}}"
    return _format_intervention(statement)


def _format_sweep(sweep: ast.Sweep) -> str:
    """`sweep h in 0..7`, `sweep s in [0.5, 1.0]` or `sweep (a, b) in [(1, 2), (3, 4)]`."""
    domain = sweep.values
    if isinstance(domain, ast.SweepRange):
        text = f"{domain.start}..{domain.stop}"
    elif isinstance(domain, ast.SweepTuples):
        text = "[" + ", ".join("(" + ", ".join(format_value(v) for v in row.items) + ")" for row in domain.items) + "]"
    else:
        text = format_value(domain)
    names = sweep.names[0] if len(sweep.names) == 1 and not isinstance(domain, ast.SweepTuples) else \
        "(" + ", ".join(sweep.names) + ")"
    return f"sweep {names} in {text}"


def _format_intervention(node: ast.Intervention) -> str:
    parts = [node.verb, *(["only"] if node.only else []), format_targets(node.targets)]
    if node.positions is not None:
        parts += ["@", format_positions(node.positions)]
    if node.value is not None:
        parts += ["=", format_value(node.value)]
    if node.preserving:
        parts += ["preserving", format_targets(node.preserving)]
    if node.source is not None:
        source = node.source
        parts += ["from", format_string(source.value) if isinstance(source, ast.String) else format_selector(source)]
    if node.at is not None:
        parts += ["at", _optional(node.at, format_number)]
    if node.seed is not None:
        parts += ["seed", _atom(node.seed)]
    if node.schedule is not None:
        parts += ["during", format_schedule(node.schedule)]
    return " ".join(parts)


def format_targets(selectors: tuple[ast.GlobalSite | ast.LayerSelector, ...]) -> str:
    """Selectors joined by ', '."""
    return ", ".join(format_selector(selector) for selector in selectors)


def format_selector(selector: ast.GlobalSite | ast.LayerSelector) -> str:
    """`embed`, or `L<layers>[.H<heads> | .*][.<site>][ except H<heads>, ...]`."""
    if isinstance(selector, ast.GlobalSite):
        return selector.name
    text = "L" + format_index(selector.layers)
    if isinstance(selector.heads, ast.IndexAll):
        text += ".*"
    elif selector.heads is not None:
        text += ".H" + format_index(selector.heads)
    if selector.site is not None:
        text += "." + selector.site
    if selector.except_heads:
        text += " except " + ", ".join("H" + format_index(heads) for heads in selector.except_heads)
    return text


def format_index(index: ast.IndexAll | ast.IndexSingle | ast.IndexRange | ast.IndexList) -> str:
    """`*`, `3`, `1..2` or `[1, 3]`, without the `L`/`H` prefix."""
    if isinstance(index, ast.IndexAll):
        return "*"
    if isinstance(index, ast.IndexSingle):
        return _atom(index.value)
    if isinstance(index, ast.IndexRange):
        return f"{_atom(index.start)}..{_atom(index.stop)}"
    return "[" + ", ".join(_atom(item) for item in index.items) + "]"


def _atom(atom: int | ast.Var) -> str:
    return f"${atom.name}" if isinstance(atom, ast.Var) else str(atom)


def format_positions(positions: ast.NamedPositions | ast.IndexPosition | ast.VarPositions | ast.SlicePositions) -> str:
    """`labels`, `2`, `$p` or `2:4` (an omitted slice end prints as nothing)."""
    if isinstance(positions, ast.NamedPositions):
        return positions.name
    if isinstance(positions, ast.IndexPosition):
        return str(positions.index)
    if isinstance(positions, ast.VarPositions):
        return f"${positions.var.name}"
    return f"{_optional(positions.start, str)}:{_optional(positions.stop, str)}"


def format_schedule(schedule: ast.RangeSchedule | ast.PhaseSchedule) -> str:
    """`train`, `eval`, or `start..stop` with sequence counts like `100k` (or variables, `0..$k`)."""
    if isinstance(schedule, ast.PhaseSchedule):
        return schedule.phase
    return f"{_optional(schedule.start, format_number)}..{_optional(schedule.stop, format_number)}"


def _optional(value: int | ast.Var | None, number) -> str:
    """A bound: nothing when absent, `$name` for a variable, else the number as `number` prints it."""
    if value is None:
        return ""
    return _atom(value) if isinstance(value, ast.Var) else number(value)


def format_value(value) -> str:
    """Canonical text of any value node."""
    if isinstance(value, ast.Number):
        return format_number(value.value)
    if isinstance(value, ast.Bool):
        return "true" if value.value else "false"
    if isinstance(value, ast.String):
        return format_string(value.value)
    if isinstance(value, ast.Name):
        return value.name
    if isinstance(value, ast.Var):
        return f"${value.name}"
    if isinstance(value, ast.Call):
        return value.name + "(" + ", ".join(f"{key}={format_value(arg)}" for key, arg in value.args) + ")"
    return "[" + ", ".join(format_value(item) for item in value.items) + "]"


def format_number(value: int | float) -> str:
    """An int prints as digits, shortened to `100k`/`3M` from 10000 up; a float prints via repr."""
    if isinstance(value, float):
        return repr(value)
    if abs(value) >= 10_000 and value % 1_000_000 == 0:
        return f"{value // 1_000_000}M"
    if abs(value) >= 10_000 and value % 1_000 == 0:
        return f"{value // 1_000}k"
    return str(value)


def format_string(text: str) -> str:
    """A double-quoted string literal with backslash, quote, newline and tab escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'
