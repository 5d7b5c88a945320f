"""Stage 1: spec text to syntax tree and back; knows nothing about the model."""

from . import ast as ast
from .format import format_spec as format_spec
from .load import load_spec as load_spec
from .load import load_text as load_text
from .parser import parse as parse
from .parser import parse_selectors as parse_selectors
