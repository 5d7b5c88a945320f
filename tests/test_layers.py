"""The pipeline's layers hold: no module imports from a later stage (the contract is in
pyproject.toml, `[tool.importlinter]`), and the verbs register into semantics, not the reverse."""

from __future__ import annotations

import os
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_imports_from_a_later_stage():
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
    finally:
        os.chdir(cwd)


def test_semantics_finds_the_built_in_verbs_without_importing_them():
    import optodsl.semantics.spec as spec
    from optodsl.semantics.registry import VERBS

    imports = [line for line in Path(spec.__file__).read_text().splitlines() if line.startswith(("from ", "import "))]
    assert imports and not [line for line in imports if "interventions" in line]
    assert {"ablate", "clamp", "copy", "graft", "temperature"} <= set(VERBS)
