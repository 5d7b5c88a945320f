"""The few-shot task's old home: it lives in `optodsl.tasks.fewshot` now; these names stay importable."""

from ..tasks.fewshot import EVAL_SETS as EVAL_SETS, FewShot as Task, check_shape as check_shape, label_sets as label_sets
from ..tasks.fewshot import make_task as make_task
