"""The intervenable transformer and the site protocol: every site readable and overridable, nothing more."""

from .overrides import Context as Context, Forward as Forward, Overrides as Overrides, Plan as Plan, as_forward as as_forward
from .protocol import Embedding as Embedding, Intervenable as Intervenable, ModelSource as ModelSource, Site as Site
from .transformer import Transformer as Transformer, init_model as init_model, tokens as tokens
