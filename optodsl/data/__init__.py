"""Feature tables and the few-shot task sampled inside jit."""

from .features import load_features as load_features, synthetic_features as synthetic_features
from .task import EVAL_SETS as EVAL_SETS, Task as Task, make_task as make_task
