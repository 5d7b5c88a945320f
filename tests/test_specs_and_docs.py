"""Every shipped spec and every ```opto example in the docs resolves; the docs cover the language.

Fast: parsing and resolving only, no JAX program is built and nothing trains.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optodsl.experiment import load_experiment
from optodsl.interventions import VERBS
from optodsl.interventions.patterns import PATTERNS

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").rglob("*.opto"))
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```opto[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            out.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return out


BLOCKS = _blocks()


def test_there_are_specs_and_examples():
    assert any(p.parent.name == "paper" for p in SPECS)
    assert (ROOT / "specs" / "examples" / "tour.opto") in SPECS
    assert BLOCKS, "docs contain no ```opto example"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_spec_resolves(path: Path):
    exp = load_experiment(path)
    assert exp.members, f"{path} resolves to no run"


@pytest.mark.parametrize("where,text", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_doc_example_resolves(where: str, text: str):
    exp = load_experiment(text + "\n")
    assert exp.members, f"{where}: the example resolves to no run"


def test_paper_specs_say_what_they_mirror():
    for path in SPECS:
        if path.parent.name != "paper":
            continue
        first = path.read_text(encoding="utf-8").lstrip().splitlines()[0]
        assert first.startswith("#"), f"{path.name} must start with a comment saying which figure it reproduces"


def _language_doc() -> str:
    return (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_is_documented(verb: str):
    assert re.search(rf"\|\s*`{re.escape(verb)}`\s*\|", _language_doc()), f"verb '{verb}' is missing from the verbs table of docs/language.md"


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_builtin_pattern_is_documented(pattern: str):
    doc = _language_doc()
    assert re.search(rf"\|\s*`{re.escape(pattern)}`\s*\|", doc), f"pattern '{pattern}' is missing from the patterns table of docs/language.md"
    for param in (p.name for p in PATTERNS[pattern].params):
        assert f"`{param}`" in doc, f"parameter '{param}' of '{pattern}' is not documented"


def test_the_readme_and_getting_started_give_the_same_test_suite_duration():
    """Both pages tell a newcomer how long the tests take; they must say the same."""
    said = re.compile(r"tests?[^.]*?\(about (\w+) minutes on a 2-core CPU")
    durations = {page: said.findall(" ".join((ROOT / page).read_text(encoding="utf-8").split()))
                 for page in ("README.md", "docs/getting-started.md")}
    assert durations == {"README.md": ["30"], "docs/getting-started.md": ["30"]}
