"""Read spec files and inline their imports, so later stages see one flat list of statements.

Import paths (and other paths a spec writes, `beside`) are relative to the importing file. Each file is inlined once, at its first
import; a file that (indirectly) imports itself is an error. Statements keep the spans of the
file they were written in.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import Span, SpecError
from . import ast
from .parser import parse


def load_spec(path: str | os.PathLike) -> ast.Spec:
    """Read, parse and inline the spec file at `path`; a missing file is an error at `path:1:1`."""
    display = str(path)
    span = Span(path=display, line=1, column=1, end_line=1, end_column=2, line_text="")
    text = _read(display, span, "check the path; it is relative to the current directory")
    return load_text(text, display)


def load_text(text: str, path: str = "<spec>") -> ast.Spec:
    """Parse `text` as the file `path` and inline its imports (resolved beside `path`)."""
    spec = parse(text, path)
    seen = {_key(path)}
    statements = _inline(spec, chain=(path,), seen=seen)
    return spec.model_copy(update={"statements": statements})


def _inline(spec: ast.Spec, chain: tuple[str, ...], seen: set[str]) -> tuple:
    statements = []
    for statement in spec.statements:
        if not isinstance(statement, ast.Import):
            statements.append(statement)
            continue
        target = beside(spec.path, statement.path)
        if _key(target) in {_key(p) for p in chain}:
            cycle = " -> ".join((*chain[chain.index(_find(chain, target)):], target))
            raise SpecError(statement.span, f"import cycle: {cycle}", "remove one of these imports")
        if _key(target) in seen:
            continue
        seen.add(_key(target))
        text = _read(target, statement.span, "import paths are relative to the importing file")
        statements.extend(_inline(parse(text, target), (*chain, target), seen))
    return tuple(statements)


def beside(spec_path: str, written: str) -> str:
    """A path written in the spec file `spec_path` (an import, a `task.source`), as read from the
    working directory: relative paths are relative to that spec file's folder (spec text given
    without a file: to the working directory)."""
    return os.path.normpath(os.path.join(os.path.dirname(spec_path), written))


def _read(path: str, span: Span, hint: str) -> str:
    """The text of `path`, or a SpecError at `span` saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(span, f"cannot read {path}: no such file", hint) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise SpecError(span, f"cannot read {path}: {reason}") from None


def _key(path: str) -> str:
    return os.path.realpath(path)


def _find(chain: tuple[str, ...], target: str) -> str:
    return next(p for p in chain if _key(p) == _key(target))
