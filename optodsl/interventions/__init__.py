"""The verbs of the language: one registry entry per verb, each lowering a statement to actions."""

from .registry import VERBS as VERBS, Verb as Verb
from . import verbs as _verbs  # noqa: F401  (registers the built-in verbs)
