"""Which metrics keys are an evaluation set's: one rule, read by the command line, the report and curves.png."""

from __future__ import annotations

from optodsl.tasks import TASKS
from optodsl.tasks.records import TRAIN, metric_sets, ordered_sets, record_key, set_key, set_of, set_order


def test_the_sets_come_from_the_tasks_in_the_papers_order():
    assert set_order() == ("train", "heldout_labels", "heldout_exemplars", "test_classes", "in_context", "in_weights")
    assert all(set(cls.sets) <= set(set_order()) for cls in TASKS.values())


def test_every_task_declares_the_training_set_first():
    assert all(cls.sets[0] == TRAIN for cls in TASKS.values())
    assert record_key(TRAIN, "induction", "L1.H0") == "train/induction/L1.H0" and set_key(TRAIN, "loss") == "train/loss"


def test_only_a_two_part_key_is_a_sets_metric():
    assert set_of("heldout_labels/accuracy") == "heldout_labels" and set_of("train/loss", "loss") == "train"
    for key in ("sequences", "train/loss", "train/induction/L1.H0", "train/perfected[ablate L1.*]/accuracy",
                "train/bigram_loss", "accuracy"):
        assert set_of(key) is None, key
    assert set_of(set_key("test_classes", "loss"), "loss") == "test_classes"


def test_sets_are_ordered_declared_first_then_by_name():
    keys = ["zeta/accuracy", "test_classes/accuracy", "alpha/accuracy", "train/accuracy", "train/prev_token/L1.H0"]
    assert metric_sets(keys) == ["train", "test_classes", "alpha", "zeta"]
    assert ordered_sets(["heldout_exemplars", "train", "train"]) == ["train", "heldout_exemplars"]
