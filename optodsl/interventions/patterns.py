"""The built-in attention patterns, each declared once: name, parameters, rows, value, example and doc.

`clamp` checks its values against these declarations, `optodsl.compile.values` builds from
them, and the patterns table of docs/language.md is their rendering (`pattern_table`), checked
by a test. Adding a pattern is one `Pattern(...)` entry in `PATTERNS` plus its test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import jax
import jax.numpy as jnp



@dataclass(frozen=True)
class Param:
    """One parameter of a pattern: its range, default, and the symbol the docs use for it."""

    name: str
    symbol: str
    lo: float
    hi: float
    default: float

    def shown(self) -> str:
        """The docs' 'range, default' text, e.g. `strength` s in [0, 1], default 1."""
        hi = "inf)" if math.isinf(self.hi) else f"{self.hi:g}]"
        return f"`{self.name}` {self.symbol} in [{self.lo:g}, {hi}, default {self.default:g}"


Value = Callable[[dict[str, jax.Array], dict[str, jax.Array], int], jax.Array]
"""`(params, batch, T) -> pattern` broadcasting against `(B, H, T, T)`; `params` holds every
declared parameter as a scalar array. A pattern whose value depends on the task (`induction`,
`match`) has none here: the task's layout defines it (`Layout.patterns`), or lacks it."""


@dataclass(frozen=True)
class Pattern:
    """A built-in pattern. `rows="query"` patterns define only the query's row (they take no
    other positions)."""

    name: str
    params: tuple[Param, ...]
    rows: Literal["all", "query"]
    value: Value | None
    example: str
    doc: str

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _prev_token(params, batch, t):
    s = params["strength"]
    rows = jnp.arange(t)
    eye = jnp.eye(t)
    prev = jnp.zeros((t, t)).at[rows[1:], rows[:-1]].set(1.0)
    first = jnp.zeros((t, t)).at[0, 0].set(1.0)
    return s * prev + (1 - s) * (eye - first) + first


def _uniform(params, batch, t):
    causal = jnp.tril(jnp.ones((t, t)))
    return causal / causal.sum(-1, keepdims=True)


def _attend_first(params, batch, t):
    return jnp.zeros((t, t)).at[:, 0].set(1.0)


_STRENGTH = Param("strength", "s", 0.0, 1.0, 1.0)

PATTERNS: dict[str, Pattern] = {p.name: p for p in (
    Pattern("prev_token", (_STRENGTH,), "all", _prev_token, "clamp L1.H2.pattern = prev_token(strength=0.8)",
            "row i puts s on position i-1 and 1-s on itself; row 0 attends to itself (weight 1)"),
    Pattern("induction", (_STRENGTH,), "query", None, "clamp L2.H3.pattern = induction(strength=0.9)",
            "only the query row is set: s on the label token that follows the exemplar of the query's class, the "
            "remaining 1-s shared equally by the other label tokens (with two pairs: 1-s on the other label), 0 on "
            "every exemplar"),
    Pattern("match", (Param("temperature", "t", 0.0, float("inf"), 0.0),), "query", None,
            "clamp L2.H1.pattern = match(temperature=0.1)",
            "only the query row is set: weights softmax(cos(query exemplar feature, context exemplar feature) / t) "
            "over the context pairs, placed on their label tokens; t = 0 is a hard max (1 on the label of the most "
            "similar exemplar)"),
    Pattern("uniform", (), "all", _uniform, "clamp L1.H3.pattern = uniform", "row i attends evenly to positions 0..i"),
    Pattern("attend_first", (), "all", _attend_first, "clamp L1.H0.pattern = attend_first",
            "every row puts weight 1 on position 0 (the first exemplar)"),
)}
"""Every built-in pattern, by name, in the order the docs list them."""


def pattern_table() -> str:
    """The patterns table of docs/language.md, rendered from the declarations."""
    lines = ["| Pattern | Parameters (range, default) | Definition |", "|---|---|---|"]
    for p in PATTERNS.values():
        params = "; ".join(q.shown() for q in p.params) or "none"
        lines.append(f"| `{p.name}` | {params} | {p.doc} |")
    return "\n".join(lines)
