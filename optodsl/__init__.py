"""optodsl: interventions on a transformer's activations throughout training, written as a language."""

from .config import ExperimentConfig as ExperimentConfig
from .errors import DataError as DataError, SpecError as SpecError, TrainingError as TrainingError
from .model.overrides import Overrides as Overrides
from .train.trainer import train as train
