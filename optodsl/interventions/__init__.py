"""The verbs of the language: one registry entry per verb, each lowering a statement to actions;
and the built-in attention patterns, one declaration each (`patterns.PATTERNS`)."""

from .patterns import PATTERNS as PATTERNS, Pattern as Pattern
from ..semantics.registry import VERBS as VERBS, Verb as Verb
from . import verbs as _verbs  # noqa: F401  (registers the built-in verbs)
from . import weights as _weights  # noqa: F401  (registers freeze, train only, lr_scale, reinit and stopgrad)
