"""The `task` settings section: per-task keys, hints for keys and roles a task lacks, task-checked sets."""

from __future__ import annotations

import pytest

from optodsl.config import ExperimentConfig
from optodsl.errors import SpecError
from optodsl.experiment import load_experiment


def config_of(text: str, settings=None) -> ExperimentConfig:
    return load_experiment(text, settings).members[0].config


def error_of(text: str, settings=None) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_experiment(text, settings)
    return info.value


def test_a_spec_chooses_a_task_and_its_keys_in_any_order():
    cfg = config_of('set task.states = 5\nset task.name = "markov"\n')
    assert (cfg.task.name, cfg.task.states, cfg.task.length) == ("markov", 5, 100)
    assert config_of("", {"task.states": 4, "task.name": "markov"}).task.states == 4


def test_a_key_the_task_lacks_lists_the_keys_it_has():
    err = error_of("set task.states = 4\n")
    assert "the fewshot task has no setting 'task.states'" in err.message and "task.name" in err.hint
    err = error_of("", {"task.alpah": 1.0})
    assert "did you mean 'task.alpha'?" in err.hint


def test_an_unknown_task_name_is_hinted():
    err = error_of('set task.name = "markv"\n')
    assert err.message == "unknown task 'markv'" and "markov" in err.hint


def test_a_position_role_the_task_lacks_lists_its_roles():
    err = error_of('set task.name = "markov"\nablate L1.H0 @ labels\n')
    assert "the markov task has no positions 'labels'" in err.message and "all" in err.hint


def test_evaluation_sets_and_measures_are_the_tasks():
    assert error_of('set task.name = "markov"\nset eval.sets = ["heldout_labels"]\n').message.endswith(
        "task 'markov' has no evaluation set 'heldout_labels' (it has: train)")
    assert "no measure 'copying'" in error_of('set eval.measures = ["copying"]\n').message  # the few-shot task's model embeds features
    assert "no measure 'copy'" in error_of('set task.name = "markov"\nset eval.measures = ["copy"]\n').message


@pytest.mark.parametrize("key, value, then", [
    ("eval.measures", '["prev_token_labels"]', "set train.sequences = 2k"),
    ("eval.sets", '["heldout_labels"]', "set train.lr = 1e-3"),
])
def test_a_task_dependent_list_setting_is_blamed_at_its_own_line(key, value, then):
    """The error of a set or measure the task lacks points at the `set` that wrote it, and names its
    key, whatever other settings follow it."""
    text = f'set task.name = "repeat"\nset model.layers = 2\nset {key} = {value}\n{then}\n'
    err = error_of(text)
    assert (err.span.line, err.span.column) == (3, len(f"set {key} = ") + 1)
    assert err.message.startswith(f"invalid value for {key}: task 'repeat' has no ")
