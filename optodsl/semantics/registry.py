"""The verb registry: adding an intervention is one `@register` entry plus its test.

A verb lowers one resolved statement to `Action`s (plain data); the value builders those
actions name live in `optodsl.compile.values`. The registry belongs to semantics, which looks
verbs up here; the verbs themselves (`optodsl.interventions`) register into it, so semantics
imports no verb and the import graph stays one-way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .plan import Action
from ..syntax import ast

Lower = Callable[[ast.Intervention, "object"], list[Action]]


@dataclass(frozen=True)
class Verb:
    """A verb's name, one-line meaning, an example, and its lowering function."""

    name: str
    doc: str
    example: str
    lower: Lower


VERBS: dict[str, Verb] = {}


def register(name: str, doc: str, example: str) -> Callable[[Lower], Lower]:
    def wrap(fn: Lower) -> Lower:
        VERBS[name] = Verb(name, doc, example, fn)
        return fn
    return wrap
