"""Every ```python block of README.md and docs/*.md runs as printed, and so do the cheap `opto` commands.

tests/test_docs_examples.py parses the `opto` lines against the CLI; this file runs them.

- A page runs in a fresh temporary directory that stands for the reader's clone (`specs/` is
  linked into it), its blocks in document order: a ```opto block after "Save this as `NAME`:"
  is written to NAME, every `$ ` line of a ```console block runs (`opto ...` through the typer
  app in-process, anything else, such as `sed`, in bash), and the ```python blocks run in one
  namespace, as a reader would run them in one session.
- Training is made tiny by one explicit mechanism: every `opto run` gets `TINY` appended, and a
  later `--set` replaces an earlier one, so `opto run first.opto --set train.sequences=20k` trains
  640 sequences. Nothing else in a command or snippet is changed.
- A console line's exit status is 2 where its printed output has `error:`, else 0. Output is
  compared in full where it does not depend on training (`check`, `explain`, `fmt`, `sites`, and
  `trace` without `--checkpoint`); elsewhere, a line starting as the first printed line does, up
  to its first digit, and the site headers (lines ending in `:`) of a trace.
- The README's ```bash blocks run their `opto` commands (tiny); the venv, pip and pytest steps are
  the environment the test itself runs in. docs/embedding.md reads the `runs/baseline` that the
  README's command writes.
- docs/features.md's weights check loads a `resnet18.pth` that the test saves from an untrained
  torchvision ResNet18 (the ImageNet file is a download).
- docs/export.md trains its tiny repeat run, exports it and loads it in TransformerLens (the
  `transformer-lens` extra, part of the test extras).
- Not run: commands on placeholders (`RUN_DIR`, `ROOT`), on inputs the reader fetches by hand
  (`opto features omniglot`), on other hosts' paths (`/shared/runs`), and the cookbook's
  analyses of the 1M-sequence paper runs.
- Every module a python block imports comes with `pip install -e .` or with an extra the same
  page tells the reader to install (read from pyproject.toml; the `test` extra does not count).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optodsl.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))
TINY = ["--set", "train.sequences=640", "--set", "eval.every=320", "--set", "eval.sequences=64"]
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
SAVE_AS = re.compile(r"Save this as `([^`]+)`:\s*$")
DETERMINISTIC = ("check", "explain", "fmt", "sites")
RUN_PAGES = {"docs/getting-started.md", "docs/embedding.md", "docs/features.md", "docs/export.md", "docs/series.md",
             "docs/language.md"}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _blocks(path: Path) -> list[tuple[str, str, str]]:
    """(language, text, the prose line before it) of each fenced block, in document order."""
    text = path.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        out.append((match.group(1), match.group(2), before))
    return out


def _console_lines(block: str) -> list[tuple[str, str]]:
    """(command, its printed output) for each `$ ` line of a console block."""
    out: list[tuple[str, list[str]]] = []
    for raw in block.splitlines():
        if raw.startswith("$ "):
            out.append((raw[2:], []))
        elif out:
            out[-1][1].append(raw)
    return [(cmd, "\n".join(lines)) for cmd, lines in out]


def _opto(args: list[str]) -> tuple[int, str]:
    """Run `opto ARGS` in-process, with TINY appended to `opto run`; (exit status, output)."""
    if args[:1] == ["run"]:
        args = [*args, *TINY]
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _run_console_line(command: str, printed: str, cwd: Path) -> None:
    where = f"`$ {command}`"
    tokens = shlex.split(command)
    if tokens[0] != "opto":
        done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, f"{where} failed: {done.stderr}"
        return
    code, output = _opto(tokens[1:])
    assert code == (2 if "error:" in printed else 0), f"{where} exited {code}:\n{output}"
    got, shown = output.strip("\n"), printed.strip("\n")
    if tokens[1] in DETERMINISTIC or (tokens[1] == "trace" and "--checkpoint" not in tokens):
        assert got == shown, f"{where} printed\n{got}\nbut the page shows\n{shown}"
        return
    first = re.split(r"\d", shown.splitlines()[0])[0]  # progress lines off a terminal may come before it
    assert any(line.startswith(first) for line in got.splitlines()), \
        f"{where} printed\n{got}\nwithout a line starting {first!r}"
    headers = [line for line in shown.splitlines() if line.endswith(":")]
    assert all(h in got.splitlines() for h in headers), f"{where} printed\n{got}\nwithout the headers {headers}"


def _run_page(path: Path, cwd: Path) -> str:
    """Run a page's saved files, console lines and python blocks in order in `cwd`; the python output."""
    namespace: dict = {"__name__": "__docs__"}
    printed = io.StringIO()
    for language, text, before in _blocks(path):
        saved = SAVE_AS.search(before)
        if saved:
            (cwd / saved.group(1)).write_text(text, encoding="utf-8")
        if language == "console":
            for command, shown in _console_lines(text):
                _run_console_line(command, shown, cwd)
        if language == "python":
            with contextlib.redirect_stdout(printed):
                exec(compile(text, _name(path), "exec"), namespace)
    return printed.getvalue()


def _clone(tmp: Path) -> Path:
    """A directory standing for a fresh clone: the shipped specs and nothing else."""
    (tmp / "specs").symlink_to(ROOT / "specs")
    return tmp


@pytest.fixture(scope="module")
def readme_clone(tmp_path_factory) -> Path:
    """A clone where the `opto` commands of the README's ```bash blocks have run (tiny)."""
    clone = _clone(tmp_path_factory.mktemp("readme"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(clone)
        for language, text, _ in _blocks(README):
            if language != "bash":
                continue
            for part in re.split(r"\s*&&\s*", " ".join(text.split())):
                tokens = shlex.split(part)
                if tokens and Path(tokens[0]).name == "opto":
                    code, output = _opto(tokens[1:])
                    assert code == 0, f"README.md: `{part}` exited {code}:\n{output}"
    return clone


def test_the_readme_set_up_command_runs(readme_clone):
    summary = (readme_clone / "runs" / "baseline" / "summary.json").read_text()
    assert '"status": "complete"' in summary


def test_getting_started_runs_as_printed(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.chdir(_clone(tmp_path))
    output = _run_page(ROOT / "docs" / "getting-started.md", tmp_path)
    assert (tmp_path / "first.opto").exists() and (tmp_path / "typo.opto").exists()
    assert "heldout_labels/accuracy" in output and "640" in output


def test_language_page_runs_as_printed(tmp_path, monkeypatch):
    """Its data schedule: the spec saved as printed, `opto explain` printing exactly what the page shows."""
    monkeypatch.chdir(_clone(tmp_path))
    _run_page(ROOT / "docs" / "language.md", tmp_path)  # compares explain's output with the page's in full
    assert (tmp_path / "curriculum.opto").exists()


def test_series_page_runs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(_clone(tmp_path))
    _run_page(ROOT / "docs" / "series.md", tmp_path)
    manifest = json.loads((tmp_path / "runs" / "series" / "series" / "manifest.json").read_text())
    assert [p["sequences"] for p in manifest["points"]] == [320, 640]
    assert [p["sequences"] for p in json.loads((tmp_path / "runs" / "series" / "llc.json").read_text())["points"]] == [320, 640]
    for name in ("analysis_series.json", "eval_series.json"):
        assert [p["sequences"] for p in json.loads((tmp_path / "runs" / "series" / name).read_text())["points"]] == [320, 640]
    assert (tmp_path / "reports" / "series" / "ablation_over_training.png").is_file()
    for seed in (1, 2):  # a sweep's folder, evaluated over training in one program
        written = json.loads((tmp_path / "runs" / "seeds" / f"seeds-seed{seed}" / "eval_series.json").read_text())
        assert [p["sequences"] for p in written["points"]] == [320, 640] and written["warnings"] == []


def test_embedding_snippets_run_as_printed(readme_clone, monkeypatch):
    monkeypatch.chdir(readme_clone)
    output = _run_page(ROOT / "docs" / "embedding.md", readme_clone)
    assert re.search(r"^loss \d\.\d{3}$", output, re.M)
    assert "[[1. 0. 0. 0. 0.]\n [1. 0. 0. 0. 0.]\n [0. 1. 0. 0. 0.]" in output, output
    assert "'accuracy'" in output
    # the run records the model that ran and its clamp (config.json, spec.opto, model.json, opto runs)
    assert "clamp L1.H2.pattern = prev_token" in output and re.search(r"^\S+\.OneLayer$", output, re.M), output
    assert re.search(r"^False$", output, re.M), output
    line = next(l for l in output.splitlines() if l.startswith("runs/one-layer"))
    assert "[spec.opto: clamp L1.H2.pattern = prev_token" in line and "model " in line and "OneLayer" in line, line
    assert "complete" in line and "640 sequences" in line, line
    assert re.search(r"^\{'H0': \d\.\d+, 'H1': \d\.\d+, 'H2': \d\.\d+, 'H3': \d\.\d+\}$", output, re.M), output


def test_features_weights_check_runs_and_refuses_another_state_dict(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.chdir(tmp_path)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, "resnet18.pth")
    _run_page(ROOT / "docs" / "features.md", tmp_path)
    del state["layer1.0.conv1.weight"]
    torch.save(state, "resnet18.pth")
    with pytest.raises(RuntimeError, match="layer1.0.conv1.weight"):
        _run_page(ROOT / "docs" / "features.md", tmp_path)


def test_export_page_trains_exports_and_loads_in_transformer_lens_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(_clone(tmp_path))
    output = _run_page(ROOT / "docs" / "export.md", tmp_path)
    assert "(1, 12, 16) (1, 4, 12, 12)" in output, output
    assert len(re.findall(r"^tensor\(\[\[", output, re.M)) == 2, output  # both detectors' (layers, heads) scores


def test_every_page_with_python_or_console_lines_is_run():
    pages = {_name(p) for p in PAGES if any(lang in ("python", "console") for lang, _, _ in _blocks(p))}
    assert pages, "no page has a ```python or ```console block"
    assert pages <= RUN_PAGES, f"add a test that runs {sorted(pages - RUN_PAGES)} (and name it in RUN_PAGES)"


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normal(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in requirements}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_by(page_text: str) -> set[str]:
    """Distributions `pip install -e .` gives, plus those of each extra the page names; not the
    `test` extra, which installs everything for the test suite, not for a reader's snippets."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = _requirement_names(project["dependencies"]) | {"optodsl"}
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "test" and re.search(rf"""(\.|optodsl)\[{re.escape(extra)}\]""", page_text):
            names |= _requirement_names(requirements)
    return names


def _imports(block: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


PYTHON_BLOCKS = [(_name(p), text) for p in PAGES for lang, text, _ in _blocks(p) if lang == "python"]


@pytest.mark.parametrize("where,block", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_python_blocks_import_only_what_the_install_gives(where: str, block: str):
    installed = _installed_by((ROOT / where).read_text(encoding="utf-8"))
    providers = importlib.metadata.packages_distributions()
    for module in _imports(block) - set(sys.stdlib_module_names):
        dists = {_normal(d) for d in providers.get(module, [module])}
        assert dists & installed, (f"{where} imports {module}, which `pip install -e .` does not install; "
                                   f"name the extra that does on the page, or add one to pyproject.toml")


def test_a_console_line_is_held_to_its_printed_output_and_status(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.opto").write_text("ablate L2.H1\n", encoding="utf-8")
    _run_console_line("opto check a.opto", "a.opto: ok (1 run, 0 warnings)", tmp_path)
    with pytest.raises(AssertionError, match="but the page shows"):
        _run_console_line("opto check a.opto", "a.opto: ok (2 runs, 0 warnings)", tmp_path)
    with pytest.raises(AssertionError, match="exited 0"):
        _run_console_line("opto check a.opto", "a.opto:1:1: error: ...", tmp_path)
    with pytest.raises(AssertionError, match="failed"):
        _run_console_line("false", "", tmp_path)
