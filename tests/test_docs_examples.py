"""Every command line the docs show is a real `opto` command with real options; the rest is run.

tests/test_specs_and_docs.py resolves the ```opto examples; this file checks the shell side:
each `opto ...` line of a ```bash/```console/```sh block or an inline code span in README.md and
docs/*.md (and each `$OPTO ...` line of the specs/paper/*.sh scripts) is parsed against the typer
app itself, every `--group` value is read by `opto analyze`'s own group parser, every `specs/...`
path named exists, and the documented pandas call runs on a real (tiny) run directory. tests/test_docs_snippets.py runs the
```python blocks and the cheap commands as printed.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

import optodsl.cli
import optodsl.commands.options

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README] + sorted((ROOT / "docs").glob("*.md"))
SCRIPTS = sorted((ROOT / "specs" / "paper").glob("*.sh"))
APP = typer.main.get_command(optodsl.cli.app)

SHELL_FENCE = re.compile(r"^```(?:bash|console|sh)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
ANY_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
SEPARATOR = re.compile(r"\s*(?:&&|\|\||;|\|)\s*")
COMMAND = re.compile(r"^(?:\$\s+)?(?:time\s+)?(?:\.venv/bin/)?opto(?:\s|$)")
PLACEHOLDER = re.compile(r"[\[\]<>]|\.\.\.|\b[A-Z][A-Z_]+\b")
SPEC_PATH = re.compile(r"(?<![\w./-])specs/[\w./*-]*")
SCRIPT_COMMAND = re.compile(r'^"?\$\{?(?:OPTO|opto)\}?"?(?=\s|$)')


@dataclass(frozen=True)
class Line:
    """One `opto` command as the docs show it: where, its text, and whether it sits in prose."""

    where: str
    text: str
    inline: bool

    @property
    def args(self) -> list[str]:
        """The arguments after `opto`, as a shell would split them."""
        tokens = shlex.split(self.text)
        while tokens[0] in ("$", "time"):
            tokens = tokens[1:]
        assert tokens[0] in ("opto", ".venv/bin/opto"), self.text
        return tokens[1:]


def _commands(text: str) -> list[str]:
    """The `opto` commands in one shell line or code span (a line may chain commands with &&)."""
    return [part for part in SEPARATOR.split(" ".join(text.split())) if COMMAND.match(part)]


def _doc_lines(path: Path) -> list[Line]:
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(ROOT))
    out = []
    for block in SHELL_FENCE.finditer(text):
        number = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", number
        for offset, raw in enumerate(block.group(1).splitlines()):
            if not pending:
                start = number + offset
            pending += raw
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            out += [Line(f"{name}:{start}", cmd, False) for cmd in _commands(pending)]
            pending = ""
    prose = ANY_FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in INLINE.finditer(prose):
        if "\n\n" not in span.group(1):
            where = f"{name}:{prose.count(chr(10), 0, span.start()) + 1}"
            out += [Line(where, cmd, True) for cmd in _commands(span.group(1))]
    return out


def _script_lines(path: Path) -> list[Line]:
    """The `opto` commands of a shell script, called as `$OPTO ...` or `"$opto" ...` (the variable
    that names the program), with continuation lines joined; comments are skipped."""
    name = str(path.relative_to(ROOT))
    out, pending, start = [], "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not pending:
            start = number
            if raw.lstrip().startswith("#"):
                continue
        pending += raw
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        for part in SEPARATOR.split(" ".join(pending.split())):
            if SCRIPT_COMMAND.match(part):
                out.append(Line(f"{name}:{start}", SCRIPT_COMMAND.sub("opto", part, count=1), False))
        pending = ""
    return out


LINES = [line for path in DOCS for line in _doc_lines(path)]
SCRIPT_LINES = [line for path in SCRIPTS for line in _script_lines(path)]


def _is(error: Exception, kind: str) -> bool:
    """Whether `error` is click's `kind` (typer may vendor click, so compare class names)."""
    return kind in {c.__name__ for c in type(error).__mro__}


def _params(cmd):
    return cmd.get_params(cmd.context_class(cmd, info_name=cmd.name))


def _option_names(cmd) -> set[str]:
    return {name for p in _params(cmd) for name in (*p.opts, *p.secondary_opts) if name.startswith("-")}


def _takes_value(cmd, option: str) -> bool:
    return any(option in p.opts and not getattr(p, "is_flag", False) and not getattr(p, "count", False)
               for p in _params(cmd))


def _targets(cmd, path: list[str], args: list[str]) -> list[tuple[list[str], object, list[str]]]:
    """The (sub)commands `args` names below `cmd`, each with the arguments left for it.

    `run/check/explain` (prose naming several commands at once) names each of them; a
    placeholder (`opto ...`, `opto COMMAND`) names none.
    """
    commands = getattr(cmd, "commands", None)
    if commands is None or not args or args[0].startswith("-") or PLACEHOLDER.search(args[0]):
        return [(path, cmd, args)]
    names = [args[0]] if args[0] in commands else args[0].split("/")
    out = []
    for name in names:
        if name not in commands:
            raise LookupError(f"'{' '.join(path)}' has no command '{name}' (it has: {', '.join(sorted(commands))})")
        out += _targets(commands[name], path + [name], args[1:])
    return out


def _names_only(where: str, cmd, args: list[str]) -> list[str]:
    """Problems of a usage line (`opto run SPEC [--out DIR]`): only its option names are checked."""
    names, problems = _option_names(cmd), []
    for token in args:
        token = token.lstrip("[").rstrip(".").rstrip("]")
        if token.startswith("-"):
            for name in token.split("=")[0].split("/"):
                if name not in names:
                    problems.append(f"'{where}' has no option {name} (it has: {', '.join(sorted(names))})")
    return problems


def _parsed(where: str, cmd, args: list[str]) -> list[str]:
    """Problems of a concrete line, found by click's own parser: unknown options, missing option
    values, extra arguments, values of the wrong type. A missing argument is allowed, so that prose
    can name a command alone (`opto explain`)."""
    try:
        _, extra, _ = cmd.make_parser(cmd.context_class(cmd, info_name=where)).parse_args(list(args))
    except Exception as err:
        if not _is(err, "UsageError"):
            raise
        return [f"{where}: {err.format_message()}"]
    if extra:
        return [f"{where}: unexpected argument(s) {' '.join(extra)}"]
    if "--help" in args:
        return []
    try:
        cmd.make_context(where, list(args))
    except Exception as err:
        if _is(err, "MissingParameter"):
            return []
        if not _is(err, "UsageError"):
            raise
        return [f"{where}: {err.format_message()}"]
    return []


def _problems(args: list[str], inline: bool = False) -> list[str]:
    """Why `opto ARGS` is not a command the app accepts; empty when it is."""
    try:
        targets = _targets(APP, ["opto"], args)
    except LookupError as err:
        return [str(err)]
    problems = []
    for path, cmd, rest in targets:
        where = " ".join(path)
        usage = getattr(cmd, "commands", None) is not None or any(PLACEHOLDER.search(t) for t in rest)
        mention = inline and bool(rest) and _takes_value(cmd, rest[-1])  # prose naming an option: `opto trace --site`
        problems += (_names_only if usage or mention else _parsed)(where, cmd, rest)
    return problems


def test_the_docs_show_command_lines():
    texts = {(line.where.split(":")[0], line.text) for line in LINES}
    assert len(LINES) >= 30, f"only {len(LINES)} command lines found"
    assert ("README.md", ".venv/bin/opto run specs/examples/baseline.opto") in texts
    assert ("README.md", "opto analyze RUN_DIR [--only NAME]... [--group L1.H[1,2,5]]... [--sequences N]") in texts
    assert ("docs/getting-started.md", "$ opto check first.opto") in texts
    assert ("docs/performance.md", "time .venv/bin/opto run specs/examples/baseline.opto") in texts


def test_the_paper_scripts_show_command_lines():
    starts = {(line.where.split(":")[0], " ".join(line.args[:2])) for line in SCRIPT_LINES}
    assert ("specs/paper/anchor.sh", "analyze $OUT/opto") in starts
    assert ("specs/paper/anchor_common.sh", "features export") in starts
    assert ("specs/paper/reproduce.sh", "run $@") in starts
    assert ("specs/paper/reproduce.sh", "analyze $base") in starts


def _group_values(args: list[str]) -> list[str]:
    """The values `opto analyze ARGS` gives `--group`; a usage line's `[--group L1.H[1,2,5]]...`
    gives `L1.H[1,2,5]`."""
    if not args or args[0] != "analyze":
        return []
    out = []
    for i, option in enumerate(args):
        name, equals, value = option.lstrip("[").partition("=")
        if name != "--group" or not (equals or i + 1 < len(args)):
            continue
        value = value if equals else args[i + 1]
        out.append(value.removesuffix("...").removesuffix("]") if option.startswith("[") else value)
    return out


GROUPS = [(line.where, value) for line in LINES + SCRIPT_LINES for value in _group_values(line.args)]


def test_the_docs_and_scripts_name_head_groups():
    wheres = {where.split(":")[0] for where, _ in GROUPS}
    assert {"README.md", "docs/reproduction.md", "specs/paper/anchor.sh"} <= wheres
    assert _group_values(["analyze", "R", "[--group", "L1.H[1,2,5]]...", "--group=L1.*"]) == ["L1.H[1,2,5]", "L1.*"]


@pytest.mark.parametrize("where,value", GROUPS, ids=[f"{w} {v}" for w, v in GROUPS])
def test_every_group_shown_is_one_analyze_reads(where: str, value: str):
    from optodsl.errors import SpecError, render
    from optodsl.experiment import DEFAULT

    try:
        (group,) = optodsl.commands.options.parse_groups([value], DEFAULT)
    except SpecError as err:
        pytest.fail(f"{where}: --group {value} is refused by opto analyze:\n{render(err)}")
    assert group.heads, f"{where}: --group {value} names no head"


def test_the_group_check_refuses_the_old_comma_form():
    from optodsl.errors import SpecError
    from optodsl.experiment import DEFAULT

    with pytest.raises(SpecError, match="cannot read selector 'L1.H1,H2,H5'"):
        optodsl.commands.options.parse_groups(["L1.H1,H2,H5"], DEFAULT)


@pytest.mark.parametrize("line", LINES + SCRIPT_LINES, ids=[f"{line.where} {line.text}" for line in LINES + SCRIPT_LINES])
def test_command_line_names_a_real_command_and_real_options(line: Line):
    problems = _problems(line.args, line.inline)
    assert not problems, f"{line.where}: `{line.text}`: " + "; ".join(problems)


@pytest.mark.parametrize("text", [
    "opto rn first.opto",
    "opto run first.opto --outt runs/x",
    "opto explain first.opto runs/x",
    "opto run first.opto --out",
    "opto toy --steps many",
    "opto features omnigot --root data",
    "opto run SPEC [--output DIR]",
    "opto run/chek SPEC",
])
def test_the_checker_rejects_wrong_lines(text: str):
    assert _problems(Line("-", text, False).args)


@pytest.mark.parametrize("text", [
    "opto run first.opto --out runs/x --set train.sequences=20k --set eval.every=5k --no-progress",
    "opto check a.opto b.opto",
    "opto features omniglot --root data/ --weights resnet18.pth --out omniglot.h5",
    "opto runs",
    "opto run SPEC [--out DIR] [--set key=value]...",
    "opto run/check/explain --set KEY=VALUE",
    "opto --help",
])
def test_the_checker_accepts_real_lines(text: str):
    assert _problems(Line("-", text, False).args) == []


def test_an_option_named_in_prose_is_a_mention_not_a_command():
    assert _problems(["trace", "--checkpoint"], inline=True) == []
    assert _problems(["trace", "--checkpoint"], inline=False)


def _spec_paths() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in SPEC_PATH.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            out.append((where, match.group(0).rstrip(".")))
    return out


SPEC_PATHS = _spec_paths()


def test_the_docs_name_spec_files():
    assert any(p == "specs/examples/baseline.opto" for _, p in SPEC_PATHS)


@pytest.mark.parametrize("where,name", SPEC_PATHS, ids=[f"{w} {p}" for w, p in SPEC_PATHS])
def test_every_spec_path_in_the_docs_exists(where: str, name: str):
    if "*" in name:
        assert list(ROOT.glob(name)), f"{where}: '{name}' matches no file"
    else:
        assert (ROOT / name).exists(), f"{where}: '{name}' does not exist"


def _fences(path: Path, language: str) -> list[str]:
    fence = re.compile(rf"^```{language}[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
    return fence.findall(path.read_text(encoding="utf-8"))


def test_getting_started_repeats_the_readme_set_up_commands_exactly():
    ours = _fences(ROOT / "docs" / "getting-started.md", "bash")
    for block in _fences(README, "bash"):
        assert block in ours, f"docs/getting-started.md must show the README's command exactly:\n{block}"


METRIC_COLUMNS = {"sequences", "step", "train_loss", "train_accuracy"} | {
    f"{name}/{metric}" for name in ("train", "heldout_labels", "heldout_exemplars", "test_classes")
    for metric in ("loss", "accuracy")}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real run directory, `runs/first` under a fresh folder: 640 sequences, 2 evaluations.

    The settings are tests/test_trainer.py's short run, so the compiled program is shared through
    the on-disk compilation cache instead of compiled again.
    """
    from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
    from optodsl.train.trainer import train

    config = ExperimentConfig(data=DataConfig(total_classes=200),
                              train=TrainConfig(sequences=640, lr=1e-3, checkpoint_every=1280),
                              eval=EvalConfig(every=640, sequences=64))
    root = tmp_path_factory.mktemp("docs")
    train(config, None, root / "runs" / "first", progress=False)
    return root


def _check_metrics(frame) -> None:
    assert set(frame.columns) == METRIC_COLUMNS
    assert list(frame["sequences"]) == [0, 640] and list(frame["step"]) == [0, 20]
    assert math.isnan(frame["train_loss"][0]) and frame["train_loss"][1:].gt(0).all()
    assert frame["train/accuracy"].between(0, 1).all()


def test_the_documented_pandas_call_loads_a_real_run(tiny_run, monkeypatch):
    pandas = pytest.importorskip("pandas")
    monkeypatch.chdir(tiny_run)
    calls = [(path, call) for path in DOCS for call in re.findall(r"pandas\.read_json\([^)`]*\)", path.read_text(encoding="utf-8"))]
    assert any(path == README for path, _ in calls), "README.md no longer shows pandas.read_json"
    for path, call in calls:
        call = re.sub(r"runs/<[^>]+>/", "runs/first/", call)
        _check_metrics(eval(call, {"pandas": pandas}))


def test_reproduce_sh_reaches_every_paper_spec():
    """Issue 14: every spec of specs/paper has a result, so reproduce.sh names it, names its family in
    the comment that says which are scored on a checkpoint instead (`table1_*`), or another spec
    imports it (common.opto)."""
    script = (ROOT / "specs" / "paper" / "reproduce.sh").read_text()
    families = re.findall(r"\b(\w+)_\*", script)
    imported = {m for spec in (ROOT / "specs" / "paper").glob("*.opto")
                for m in re.findall(r'^import "(\w+)\.opto"', spec.read_text(), re.M)}
    left = [spec.stem for spec in sorted((ROOT / "specs" / "paper").glob("*.opto"))
            if not re.search(rf"\b{spec.stem}\b", script) and spec.stem not in imported
            and not any(spec.stem.startswith(f + "_") for f in families)]
    assert families and not left, f"specs reproduce.sh does not reach: {left}"


BENCH_CALL = re.compile(r"python3? benchmarks/\w+\.py[^`\n]*")


def _benchmark_line(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """`python benchmarks/NAME.py ARGS...` as (NAME, ARGS), and the calls a side_by_side.py line times
    (its `NAME=COMMAND` arguments)."""
    i = next(k for k, t in enumerate(tokens) if t.startswith("benchmarks/"))
    name, args = Path(tokens[i]).stem, tokens[i + 1:]
    if "#" in args:
        args = args[:args.index("#")]
    calls = [(name, args)]
    if name == "side_by_side":
        for arg in args:
            command = shlex.split(arg.partition("=")[2]) if "=" in arg else []
            if any(t.startswith("benchmarks/") for t in command):
                calls += _benchmark_line(command)
    return calls


def _benchmark_calls() -> list[tuple[str, str, list[str]]]:
    """Every `python benchmarks/...` call shown in the docs (continued lines joined), outside quotes."""
    calls = []
    for doc in DOCS:
        for line in doc.read_text().replace("\\\n", " ").splitlines():
            for m in BENCH_CALL.finditer(line):
                if line[:m.start()].count('"') % 2:
                    continue  # inside a side_by_side.py argument: checked with its line
                calls += [(doc.name, name, args) for name, args in _benchmark_line(shlex.split(m.group(0)))]
    return calls


def test_every_benchmark_call_in_the_docs_parses_with_its_script(monkeypatch):
    """The benchmarks take minutes, so the docs' calls are not run here; each is read by its script's
    own argument parser, and every `--spec` it names exists (from the root, or from benchmarks/)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: its folder first
    calls = _benchmark_calls()
    assert {name for _, name, _ in calls} >= {"train_speed", "sweep_speed", "task_vs_plain", "side_by_side", "plain_loop"}
    for where, name, args in calls:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parsed = module.parser().parse_args(args)
        specs = getattr(parsed, "spec", None) or []
        for path in [specs] if isinstance(specs, str) else specs:
            assert any((base / path).is_file() for base in (ROOT, ROOT / "benchmarks")), (where, name, args)
