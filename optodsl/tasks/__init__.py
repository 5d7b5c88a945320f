"""Tasks by name: the registry every stage asks for a task's layout, sets, measures and batches.

A new task is one module with a `Task` subclass, its settings model in `optodsl.config`
(`TASK_CONFIGS`), and its entry in `TASKS` below.
"""

from __future__ import annotations

from ..config import TASK_SECTIONS, ExperimentConfig, SettingValueError
from .base import Layout as Layout, Task as Task
from .reading import Level as Level, Reading as Reading
from .fewshot import FewShot
from .markov import Markov
from .repeat import Repeat
from .tokens import Tokens

TASKS: dict[str, type[Task]] = {"fewshot": FewShot, "markov": Markov, "repeat": Repeat, "tokens": Tokens}


def task_class(config: ExperimentConfig) -> type[Task]:
    """The task class the settings name (`task.name`)."""
    return TASKS[config.task.name]


def layout(config: ExperimentConfig) -> Layout:
    """The sequence layout of the configured task."""
    return task_class(config).layout(config)


def reading(config: ExperimentConfig) -> Reading:
    """How to read the configured task's runs: its reference levels, stages and words."""
    return task_class(config).reading(config)


def build_task(config: ExperimentConfig, features=None) -> Task:
    """The configured task's device state (`features` overrides the few-shot feature table)."""
    return task_class(config).build(config, features)


def eval_sets(config: ExperimentConfig) -> tuple[str, ...]:
    """The evaluation sets a run scores: `eval.sets`, or those its task logs by default (`Task.logged`,
    else every set)."""
    cls = task_class(config)
    return config.eval.sets or cls.logged or cls.sets


def check_inputs(config: ExperimentConfig) -> None:
    """Refuse the configured task's input files that cannot run (a DataError naming the file)."""
    task_class(config).check_inputs(config)


def reads_section(task: str, section: str) -> bool:
    """Whether task `task` (a `task.name`) reads settings section `section`: every section but the
    task-owned ones it does not declare (`Task.sections`)."""
    return section not in TASK_SECTIONS or section in TASKS[task].sections


def section_readers(section: str) -> list[str]:
    """The names of the tasks that read settings section `section`."""
    return [name for name in TASKS if reads_section(name, section)]


def unread_sections(config: ExperimentConfig) -> tuple[str, ...]:
    """The task-owned settings sections (`TASK_SECTIONS`) the configured task does not read."""
    return tuple(s for s in TASK_SECTIONS if s not in task_class(config).sections)


def check_config(config: ExperimentConfig) -> None:
    """Refuse evaluation sets and measures the configured task does not have, listing those it has."""
    cls = task_class(config)
    for key, what, chosen, valid in (("eval.sets", "evaluation set", config.eval.sets, cls.sets),
                                     ("eval.measures", "measure", config.eval.measures, cls.measures)):
        for name in chosen:
            if name not in valid:
                listed = ", ".join(valid) if valid else "none"
                raise SettingValueError(key, f"task '{cls.name}' has no {what} '{name}' (it has: {listed})")
