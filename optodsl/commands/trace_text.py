"""`opto trace`'s text: each site's values as lines that fit a console. A matrix narrow enough is
printed whole; a wider attention pattern prints every row as its strongest positions and weights;
any other value too large to print whole says it is shortened and how to get all of it (`--json`)."""

from __future__ import annotations

import numpy as np

WHOLE_COLUMNS = 16
"""A matrix with at most this many columns prints whole (3 decimals fit 120 characters)."""
TOP = 4
"""Positions per row shown for a wider pattern."""


def site_lines(name: str, value, words: list[str]) -> list[str]:
    """The lines of one site (`words`: the sequence's positions as `opto trace` names them)."""
    array = np.asarray(value)
    if name.endswith(".pattern") and array.ndim >= 2 and array.shape[-1] > WHOLE_COLUMNS:
        return [f"{name}: each row's {TOP} strongest positions (query -> key weight; every weight with --json)",
                *_pattern_rows(array, words, "  ")]
    with np.printoptions(precision=3, suppress=True, linewidth=120):
        text = np.array2string(array)
    lines = [f"{name}:", *("  " + line for line in text.splitlines())]
    if "..." in text:
        lines.append(f"  (shape {tuple(array.shape)}, shortened: opto trace --json prints every value)")
    return lines


def _pattern_rows(pattern: np.ndarray, words: list[str], indent: str) -> list[str]:
    """Every row of a (..., T, T) pattern: the query position, its strongest key positions (those that
    round to a weight above 0), and what the other positions hold together."""
    if pattern.ndim > 2:
        return [line for h, sub in enumerate(pattern) for line in (f"{indent}H{h}:", *_pattern_rows(sub, words, indent + "  "))]
    out = []
    for q, row in enumerate(pattern):
        top = [k for k in np.argsort(-row, kind="stable")[:TOP] if round(float(row[k]), 3) > 0] or [int(np.argmax(row))]
        rest = float(row.sum() - row[top].sum())
        shown = "  ".join(f"{_word(words, k)} {row[k]:.3f}" for k in top) + (f"  (rest {rest:.3f})" if round(rest, 3) > 0 else "")
        out.append(f"{indent}{_word(words, q)} -> {shown}")
    return out


def _word(words: list[str], i: int) -> str:
    return words[i] if i < len(words) else str(i)
