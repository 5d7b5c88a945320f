"""Error values shared by every stage: spans, spec errors, file errors, and their one renderer.

Errors are raised once, where they are found, and rendered in one place (`render`), so the
command line prints the same `path:line:col: error: ...` form whichever stage failed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A region of spec text: 1-based line and column, end exclusive, plus the first line's text."""

    model_config = ConfigDict(frozen=True)

    path: str = "<spec>"
    line: int = 1
    column: int = 1
    end_line: int = 1
    end_column: int = 2
    line_text: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class OptoError(Exception):
    """Root of every error optodsl raises on purpose; anything else is a bug."""


class SpecError(OptoError):
    """A problem in a spec, located at a span, with an optional hint on how to fix it."""

    def __init__(self, span: Span, message: str, hint: str | None = None):
        super().__init__(message)
        self.span = span
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return render(self)


class SpecWarning(BaseModel):
    """A clause that is valid but can have no effect; printed by `opto check`, never fatal."""

    model_config = ConfigDict(frozen=True)

    span: Span
    message: str
    hint: str | None = None


class DataError(OptoError):
    """A missing or malformed data file or checkpoint: names the file, what was expected and found."""

    def __init__(self, path: str, problem: str, expected: str | None = None, found: str | None = None,
                 hint: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: error: {self.problem}"
        if self.expected:
            text += f"\n  expected: {self.expected}"
        if self.found:
            text += f"\n  found: {self.found}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def write_error(path, exc: OSError) -> DataError:
    """The DataError for a failed write or folder creation (read-only, full, no permission): path and cause."""
    return DataError(path, f"cannot write: {exc.strerror or exc}")


class TrainingError(OptoError):
    """Training stopped for a reason the user must see (a non-finite loss, say)."""


class Interrupted(OptoError):
    """Training stopped on a signal after checkpointing; rerunning the same command resumes it."""

    def __init__(self, signum: int, sequences: dict[str, int]):
        self.signum, self.sequences = signum, sequences
        super().__init__(f"interrupted by signal {signum}")


def render(error: SpecError | SpecWarning, kind: str = "error") -> str:
    """Render a spec error or warning as `path:line:col: kind: message`, the line, a caret, a hint."""
    span = error.span
    lines = [f"{span.path}:{span.line}:{span.column}: {kind}: {error.message}"]
    if span.line_text:
        text = span.line_text.rstrip("\n")
        start = max(span.column - 1, 0)
        if span.end_line == span.line:
            width = max(span.end_column - span.column, 1)
        else:
            width = max(len(text) - start, 1)
        width = min(width, max(len(text) - start, 1))
        lines.append(f"  {text}")
        lines.append("  " + " " * start + "^" * width)
    if error.hint:
        lines.append(f"  hint: {error.hint}")
    return "\n".join(lines)
