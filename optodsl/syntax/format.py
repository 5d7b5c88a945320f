"""Print a syntax tree as canonical spec text: one statement per line, one spacing style.

Comments and blank lines are not in the tree, so `format_spec` (the canonical text a run's hash
is taken of) drops them; `format_source` (what `opto fmt` prints) puts each comment back where it
stood, own-line or trailing, and keeps one blank line where the file had any. The output parses
back to the same tree (spans aside): numbers keep their int/float kind and strings are re-escaped.
"""

from __future__ import annotations

from . import ast
from .parser import parse


def format_source(text: str, path: str = "<spec>") -> str:
    """Canonical text of a spec file with its comments kept: an own-line comment stays before the
    statement it preceded (at that statement's indent), a trailing comment stays after the last
    statement of its line (or after a variant's `{` or `}`), and runs of blank lines become one."""
    spec = parse(text, path)
    lines = text.splitlines()
    comments = [(n, col, comment) for n, line in enumerate(lines, 1)
                for col, comment in [_comment_of(line)] if comment is not None]
    out: list[str] = []
    state = {"last": 0}  # the source line of what was printed last

    def gap_before(line: int) -> None:
        if out and out[-1] and not out[-1].endswith("{") and any(not lines[i - 1].strip() for i in range(state["last"] + 1, line)):
            out.append("")

    def own_line_comments_before(position: tuple[int, int], indent: str) -> None:
        while comments and comments[0][:2] < position:
            n, _, comment = comments.pop(0)
            gap_before(n)
            out.append(indent + comment)
            state["last"] = n

    def trailing(line: int, after: int) -> str:
        if comments and comments[0][0] == line and comments[0][1] >= after:
            return "  " + comments.pop(0)[2]
        return ""

    def block(statements, indent: str, close: tuple[int, int] | None) -> None:
        for i, st in enumerate(statements):
            own_line_comments_before((st.span.line, st.span.column), indent)
            gap_before(st.span.line)
            nxt = statements[i + 1].span.line if i + 1 < len(statements) else (close[0] if close else None)
            if isinstance(st, ast.Variant):
                brace = _brace(lines, (st.span.end_line, st.span.end_column), "{")
                first = st.statements[0].span.line if st.statements else None
                shut = _brace(lines, (st.statements[-1].span.end_line, st.statements[-1].span.end_column) if st.statements
                              else (brace[0], brace[1] + 1), "}")
                header = trailing(brace[0], brace[1]) if first != brace[0] and shut[0] != brace[0] else ""
                out.append(f"{indent}variant {st.name} {{{header}")
                state["last"] = brace[0]
                block(st.statements, indent + "    ", shut)
                own_line_comments_before(shut, indent + "    ")
                after = trailing(shut[0], shut[1]) if nxt != shut[0] else ""
                out.append(f"{indent}}}{after}")
                state["last"] = shut[0]
                continue
            end = st.span.end_line
            after = trailing(end, st.span.end_column) if nxt != end else ""
            out.append(indent + format_statement(st, indent) + after)
            state["last"] = end

    block(spec.statements, "", None)
    own_line_comments_before((len(lines) + 1, 0), "")
    return "".join(line + "\n" for line in out)


def _comment_of(line: str) -> tuple[int, str | None]:
    """Where the line's comment starts (1-based) and its text without trailing blanks; `#` inside a
    string literal starts none."""
    quoted = escaped = False
    for i, ch in enumerate(line):
        if quoted:
            escaped, quoted = (not escaped and ch == "\\"), quoted and (escaped or ch != '"')
        elif ch == '"':
            quoted = True
        elif ch == "#":
            return i + 1, line[i:].rstrip()
    return 0, None


def _brace(lines: list[str], start: tuple[int, int], brace: str) -> tuple[int, int]:
    """The (line, column) of the first `brace` in code (not in a comment or string) at or after `start`."""
    line, column = start
    while line <= len(lines):
        text = lines[line - 1]
        code_end = _comment_of(text)[0] - 1 if _comment_of(text)[1] is not None else len(text)
        quoted = escaped = False
        for i in range(code_end):
            ch = text[i]
            if quoted:
                escaped, quoted = (not escaped and ch == "\\"), quoted and (escaped or ch != '"')
            elif ch == '"':
                quoted = True
            elif ch == brace and i + 1 >= column:
                return line, i + 1
        line, column = line + 1, 1
    raise ValueError(f"no {brace!r} after line {start[0]}")  # the parser accepted the text, so there is one


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
        during = f" during {format_schedule(statement.during)}" if statement.during is not None else ""
        return f"set {'.'.join(statement.key)} = {format_value(statement.value)}{during}"
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
        parts += ["from", format_string(source.value) if isinstance(source, ast.String)
                  else format_targets((source, *node.more_sources))]
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
