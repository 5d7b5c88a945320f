"""How a metrics record names an evaluation set's numbers, and the order sets are shown in.

The tasks declare their evaluation sets (`Task.sets`); an evaluation writes each set's loss and
accuracy as `<set>/loss` and `<set>/accuracy`, beside keys with more parts: a progress measure
(`train/induction/L1.H0`), a probe (`train/perfected[...]/accuracy`) or a task's reference metric
(`train/bigram_loss`). Every reader of metrics.jsonl or summary.json asks here which keys are a set's.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import TASKS

TRAIN = "train"
"""The training distribution's set name: the set every task declares first, sampled for the training
steps and shown as the solid line of every curve."""


def set_order() -> tuple[str, ...]:
    """Every task's evaluation sets, each once, in the order the tasks declare them (the first is
    the training distribution; the few-shot task's four come first: the paper's order)."""
    return tuple(dict.fromkeys(name for cls in TASKS.values() for name in cls.sets))


RUNNING = "train_{metric}"
"""How a record names the running mean of a training metric over the steps since the previous
evaluation (`train_loss`, `train_accuracy`: the training batches' own numbers, not an evaluation)."""


def running_key(metric: str = "accuracy") -> str:
    """The record key of the running mean of `metric` ("loss" or "accuracy") over the training steps."""
    return RUNNING.format(metric=metric)


def set_key(name: str, metric: str = "accuracy") -> str:
    """The record key of an evaluation set's `metric` ("loss" or "accuracy"): `heldout_labels/accuracy`."""
    return record_key(name, metric)


def record_key(name: str, *parts: str) -> str:
    """The record key of any number measured on evaluation set `name`: a set's metric, a measure
    (`train/induction/L1.H0`), a probe's (`train/perfected[...]/loss`) or a task's own metric."""
    return "/".join((name, *parts))


def set_of(key: str, metric: str = "accuracy") -> str | None:
    """The evaluation set whose `metric` the record key is, or None for any other key (a measure, a
    probe, a task's reference metric, `sequences`)."""
    parts = key.split("/")
    return parts[0] if len(parts) == 2 and parts[1] == metric else None


def ordered_sets(names: Iterable[str]) -> list[str]:
    """Set names, each once: the declared sets in `set_order()`, then any others by name."""
    found = set(names)
    known = set_order()
    return [s for s in known if s in found] + sorted(found - set(known))


def metric_sets(keys: Iterable[str], metric: str = "accuracy") -> list[str]:
    """The evaluation sets with a `metric` among the record `keys`, in `ordered_sets` order."""
    return ordered_sets(name for key in keys if (name := set_of(key, metric)) is not None)
