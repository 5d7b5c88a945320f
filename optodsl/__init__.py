"""optodsl: interventions on a transformer's activations throughout training, written as a language."""

from ._xla import configure as configure_xla
from .api import Compiled as Compiled, compile as compile
from .config import (
    DataConfig as DataConfig,
    EvalConfig as EvalConfig,
    ExperimentConfig as ExperimentConfig,
    ModelConfig as ModelConfig,
    SeedConfig as SeedConfig,
    TrainConfig as TrainConfig,
)
from .errors import DataError as DataError, SpecError as SpecError, TrainingError as TrainingError, render as render
from .model.overrides import Context as Context, Overrides as Overrides
from .model.protocol import Intervenable as Intervenable, Site as Site
from .model.transformer import Transformer as Transformer, init_model as init_model
from .train.trainer import load_trained as load_trained, train as train
