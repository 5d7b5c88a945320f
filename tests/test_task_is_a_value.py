"""The task is a value every stage asks, not a name it looks up: no module outside `optodsl/tasks/`
imports a concrete task, names its class, compares a task's name or sniffs a batch's keys.

`optodsl/config.py` declares each task's settings model (the `task` section of the settings
schema, chosen by `task.name`) and is checked like every other module: declaring a name is allowed,
comparing one is not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "optodsl"
CONCRETE = ("fewshot", "markov", "repeat", "tokens")
CLASSES = ("FewShot", "Markov", "Repeat", "Tokens")
FORBIDDEN = [
    (re.compile(r"^\s*(from|import)\s+[\w.]*tasks\.(" + "|".join(CONCRETE) + r")\b", re.M), "imports a concrete task"),
    (re.compile(r"\b(" + "|".join(CLASSES) + r")\b"), "names a concrete task's class"),
    (re.compile(r"task\.name\s*(==|!=|in)\s|(==|!=)\s*[\"'](" + "|".join(CONCRETE) + r")[\"']"), "compares a task's name"),
    (re.compile(r"[\"']\w+[\"']\s+(not\s+)?in\s+batch\b"), "sniffs a batch's keys"),
]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "tasks" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outside_tasks_knows_a_concrete_task(path):
    code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    code = re.sub(r'"""(?:.|\n)*?"""', "", code)  # docstrings may name the tasks they describe
    found = [f"{what}: {m.group(0).strip()!r}" for pattern, what in FORBIDDEN for m in pattern.finditer(code)]
    assert not found, f"{path.relative_to(PACKAGE)} " + "; ".join(found)


def test_the_check_finds_what_it_forbids(tmp_path):
    """The patterns above catch each way a module could know a concrete task."""
    samples = ["from ..tasks.fewshot import label_positions", "isinstance(task, FewShot)",
               'if config.task.name == "markov":', 'if "tokens" in batch:']
    assert FORBIDDEN[2][0].search('if task != "fewshot":')  # a comparison with spaces around it
    for text, (pattern, _) in zip(samples, FORBIDDEN):
        assert pattern.search(text), text
