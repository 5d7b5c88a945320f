"""The `opto` command line; the only place that prints errors and picks exit codes.

Exit codes: 0 success, 1 training failed (a non-finite loss), 2 bad input (a spec error, a
missing or malformed file, a bad `--set`). Expected errors never show a Python traceback.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import List, Optional

import typer

from . import rundir
from .errors import DataError, Interrupted, OptoError, Span, SpecError, TrainingError, render
from .tasks.records import metric_sets, set_key
from .train.signals import exit_code

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="optodsl: clamp and ablate transformer activations throughout training.\n\n"
                       "Layers count from 1 and heads from 0, as in the paper (L1.H2 is the first layer's head 2).")

SET_HELP = "override a setting, e.g. --set train.lr=1e-4 (repeatable)"


def _fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _option_span(option: str, text: str) -> Span:
    """Where a bad command-line value is: the whole value, shown under the option's name."""
    return Span(path=option, line=1, column=1, end_line=1, end_column=len(text) + 1, line_text=text)


def _settings(pairs: list[str]) -> dict[str, object]:
    from .experiment import coerce

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            span = _option_span("--set", pair)
            raise SpecError(span, f"expected key=value, got '{pair}'", hint="for example --set train.lr=1e-4")
        out[key.strip()] = coerce(value)
    return out


def _os_message(err: OSError) -> str:
    """An OSError no module turned into a DataError itself (each names its own files): its file and cause."""
    return str(DataError(err.filename or "output", err.strerror or str(err)))


def _guard(fn):
    """Run a command body, turning optodsl's errors into their rendering and exit code."""
    try:
        return fn()
    except SpecError as err:
        _fail(render(err), 2)
    except DataError as err:
        _fail(str(err), 2)
    except TrainingError as err:
        _fail(f"error: {err}", 1)
    except OSError as err:
        _fail(_os_message(err), 2)


def _accuracies(final: dict) -> str:
    """`train 1.000  heldout_labels 0.990 ...`: each evaluation set's accuracy, in the paper's order."""
    return "  ".join(f"{n} {final[set_key(n)]:.3f}" for n in metric_sets(final))


def _start_distributed() -> None:
    """With OPTODSL_DISTRIBUTED=1, join the other processes (docs/distributed.md): JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID when set, else whatever the cluster (SLURM, TPU) tells JAX."""
    import os

    if os.environ.get("OPTODSL_DISTRIBUTED") != "1":
        return
    import jax

    env = {k: os.environ.get(f"JAX_{k.upper()}") for k in ("coordinator_address", "num_processes", "process_id")}
    try:
        kwargs = {k: (v if k == "coordinator_address" else int(v)) for k, v in env.items() if v}
    except ValueError as exc:
        raise DataError("JAX_NUM_PROCESSES / JAX_PROCESS_ID", "not a whole number", found=str(exc)) from exc
    jax.distributed.initialize(**kwargs)


@app.command()
def run(
    specs: List[Path] = typer.Argument(..., metavar="SPEC...", help="the .opto specs to train (runs of several specs "
                                                                   "that share shapes train as one program)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<spec name>); with several "
                                                          "specs, the folder holding runs/<spec name>"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: only on a terminal)"),
    tensorboard: bool = typer.Option(False, "--tensorboard", help='also log metrics to RUN_DIR/tensorboard (pip install "optodsl[tensorboard]")'),
) -> None:
    """Train specs (every member of a sweep) and write their run directories; rerun to resume.

    Example: opto run specs/examples/baseline.opto --set train.sequences=200k --out runs/short
    """
    _guard(_start_distributed)
    from .experiment import run_experiments

    def body():
        settings = _settings(set_)
        try:
            return [res for wave, root in _training_waves(specs, out, settings)
                    for res in run_experiments(wave, root, settings, progress=progress, tensorboard=tensorboard)]
        except Interrupted as stop:
            _interrupted(stop.sequences, exit_code(stop))
        except KeyboardInterrupt as stop:
            _interrupted({}, exit_code(stop))

    for res in _guard(body):
        final = res.summary["final"]
        accs = _accuracies(final)
        typer.echo(f"run directory: {res.run_dir}")
        typer.echo(f"figure: {res.run_dir / 'curves.png'}")
        if res.summary.get("already_complete"):
            typer.echo(f"already complete at {res.summary['sequences']:,} sequences: nothing to train "
                       f"(to continue it, raise train.sequences, e.g. --set train.sequences=...)")
            typer.echo(f"final accuracy: {accs}")
        else:
            typer.echo(f"final accuracy: {accs}  ({res.summary['sequences']:,} sequences, "
                       f"{res.summary['wall_seconds']:.0f} s, {res.summary['steps_per_second'] or 0:,.0f} steps/s)")


def _interrupted(sequences: dict[str, int], code: int) -> None:
    """Say where an interrupted `opto run` stopped and how to resume it, then exit non-zero."""
    import shlex

    where = "".join(f"\n  {path}: checkpoint at {seqs:,} sequences" for path, seqs in sequences.items())
    again = "opto " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "the same opto run command"
    _fail(f"interrupted: the run stopped and is marked `interrupted`{where or ' at its last checkpoint'}\n"
          f"to resume, run the same command again: {again}", code)


def _graft_check(loaded: list[tuple[Path, object]], root) -> object:
    """`semantics.grafts.check_graft_sources` over the specs of one command line (path, Experiment),
    each training into `root(path, exp)` (a spec's run root, as `opto run` picks it)."""
    from .pipeline import run_dirs
    from .semantics.grafts import SpecRuns, check_graft_sources

    return check_graft_sources([SpecRuns(str(path), exp.members, run_dirs(exp, root(path, exp))) for path, exp in loaded])


def _spec_warnings(exp) -> list:
    """The spec's own warnings, less the per-spec 'graft source does not exist' ones that the
    command line's graft check decides instead (an error, or a warning naming the spec that trains it)."""
    from .pipeline import graft_warnings

    decided = graft_warnings(exp.members)
    return [w for w in exp.warnings if w not in decided]


def _training_waves(specs: list[Path], out: Optional[Path], settings: dict) -> list[tuple[list[Path], Optional[Path]]]:
    """The specs of `opto run` as (specs, --out) calls of `run_experiments`, those that train a graft
    source before those that graft from it; prints the graft warnings, and every graft error (exit 2)."""
    from .experiment import load_experiment

    several = len(specs) > 1

    def root(path: Path, exp) -> Optional[Path]:
        return (out or Path("runs")) / Path(exp.spec.path or "spec").stem if several else out

    loaded = [(path, load_experiment(path, settings)) for path in specs]
    grafts = _graft_check(loaded, root)
    for warning in (w for ws in grafts.warnings for w in ws):
        typer.echo(render(warning, "warning"), err=True)
    errors = [e for es in grafts.errors for e in es]
    if errors:
        _fail("\n".join(render(e) for e in errors), 2)
    if len(grafts.order) == 1:
        return [(list(specs), out)]
    return [([specs[i] for i in wave], out if len(wave) > 1 else root(*loaded[wave[0]])) for wave in grafts.order]


@app.command()
def check(
    specs: List[Path] = typer.Argument(..., help="spec files to check"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Check specs without running anything: errors (exit 2) and warnings for clauses with no effect.
    A graft source that does not exist is an error, unless another spec given here trains it.

    Example: opto check specs/paper/*.opto
    """
    from .experiment import load_experiment

    outcomes: list[tuple[Path, object]] = []
    for path in specs:
        try:
            outcomes.append((path, load_experiment(path, _settings(set_))))
        except SpecError as err:
            outcomes.append((path, err))
    loaded = [(path, exp) for path, exp in outcomes if not isinstance(exp, SpecError)]
    grafts = _graft_check(loaded, lambda path, exp: None)
    checked = {id(exp): (errors, warnings) for (_, exp), errors, warnings in zip(loaded, grafts.errors, grafts.warnings)}
    failed = False
    for path, exp in outcomes:
        if isinstance(exp, SpecError):
            typer.echo(render(exp), err=True)
            failed = True
            continue
        errors, extra = checked[id(exp)]
        warnings = _spec_warnings(exp) + extra
        for w in warnings:
            typer.echo(render(w, "warning"), err=True)
        for e in errors:
            typer.echo(render(e), err=True)
        failed = failed or bool(errors)
        if not errors:
            runs = len(exp.members)
            typer.echo(f"{path}: ok ({runs} run{'s' if runs != 1 else ''}, {len(warnings)} warning{'s' if len(warnings) != 1 else ''})")
    if failed:
        raise typer.Exit(2)


@app.command()
def explain(
    spec: Path = typer.Argument(..., help="the spec to explain"),
    as_json: bool = typer.Option(False, "--json", help="the same as JSON: a list of runs, each with its settings, "
                                                       "perfected probes, pass structure and interventions"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Show everything that decides each run: the settings the spec names or that differ from the
    defaults, eval.perfected lines, the passes in words, and the resolved interventions, one per
    site: verb, site, positions, pass, schedule, and for reading verbs which pass they read.

    Example: opto explain specs/paper/fig5b.opto --json
    """
    from .experiment import load_experiment
    from .explain import ALL_DEFAULTS, explain_experiment

    cli = _guard(lambda: _settings(set_))
    exp = _guard(lambda: load_experiment(spec, cli))
    runs_ = explain_experiment(exp, cli)
    if as_json:
        typer.echo(json.dumps(runs_, indent=2))
        return
    for r in runs_:
        bind = ", ".join(f"${k}={v}" for k, v in r["bindings"].items())
        n = len(r["interventions"])
        typer.echo(f"run {r['run']}" + (f" ({bind})" if bind else "") + f": {r['passes']} pass{'es' if r['passes'] > 1 else ''}, "
                   f"{n} intervention{'s' if n != 1 else ''}")
        for s in r["settings"]:
            default = "the default" if s["value"] == s["default"] else f"default {_setting_text(s['default'])}"
            typer.echo(f"  set {s['key']} = {_setting_text(s['value'])}  ({default})")
        if not r["settings"]:
            typer.echo(f"  {ALL_DEFAULTS}")
        for p in r["perfected"]:
            typer.echo(f"  eval.perfected: {p['line']}  (evaluation only, {len(p['interventions'])} more intervention{'s' if len(p['interventions']) != 1 else ''})")
        if r["passes"] > 1 or len(r["pass_structure"]) > 1:
            for line in r["pass_structure"]:
                typer.echo(f"  {line}")
        for rec in r["interventions"]:
            typer.echo("  " + _intervention_line(rec))


def _setting_text(value) -> str:
    """A setting's value as a spec writes it: 1e-05, 1000000, true, "x", [a, b]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_setting_text(v) for v in value) + "]"
    return str(value)


def _intervention_line(r: dict) -> str:
    """One `opto explain` line: verb, site, rows, pass, schedule, value (and what it reads, from which pass)."""
    params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
    reads = f" <- {r['reads']} ({r['reads_pass']} pass)" if r["reads"] else ""
    value = r["value"] + (f"({params})" if params else "") + reads
    pos = r["positions"] if r["positions"] == "all" else ",".join(map(str, r["positions"]))
    return f"{r['verb']:<11} {r['site']:<18} rows {pos:<6} pass {r['pass']:<10} {r['schedule']:<14} {value}"


_SITE = re.compile(r"^(?:L(\d+)\.)?(?:H(\d+)\.)?([a-z_]+)$")


def _site_text(layer: str | None, head: str | None, name: str) -> str:
    """A site as written on the command line: `L1.H2.pattern`, `L1.resid_out` or `embed`."""
    return ".".join(part for part in (layer and f"L{layer}", head and f"H{head}", name) if part)


def _site_names(texts: list[str], config) -> list[tuple[str, str, int | None]]:
    """Parse `--site` names (`L1.H2.pattern`, `L1.pattern`, `embed`) to (label, key, head)."""
    from .semantics.resolve import NUMBERING
    from .syntax.hints import close
    from .sites import site_table
    from .tasks import layout

    table = site_table(config.model, layout(config))
    out = []
    for text in texts:
        span = _option_span("--site", text)
        m = _SITE.match(text)
        if not m:
            raise SpecError(span, f"cannot read site '{text}'", hint="write e.g. L1.H2.pattern, L1.resid_out or logits")
        layer, head, name = m.groups()
        if layer is not None and not 1 <= int(layer) <= config.model.layers:
            raise SpecError(span, f"no layer L{layer} in this model",
                            hint=f"valid layers are L1..L{config.model.layers}; {NUMBERING}")
        key = f"L{layer}.{name}" if layer else name
        if key not in table:
            names = {k.split(".")[-1]: info.per_head for k, info in table.items() if ("." in k) == (layer is not None)}
            near = close(name, names, "site names")
            if near.startswith("did you mean"):
                spelled = near.split("'")[1]
                near = f"did you mean '{_site_text(layer, head if names[spelled] else None, spelled)}'?"
            else:
                near += " (opto sites lists every site with its shape)"
            raise SpecError(span, f"no site '{text}' in this model", hint=near)
        if head is not None:
            if not table[key].per_head:
                raise SpecError(span, f"'{name}' is a layer site, not a head site", hint=f"write L{layer}.{name}")
            if int(head) >= config.model.heads:
                raise SpecError(span, f"no head H{head} in this model", hint=f"heads are H0..H{config.model.heads - 1}; {NUMBERING}")
        out.append((text, key, int(head) if head is not None else None))
    return out


@app.command()
def trace(
    spec: Path = typer.Argument(..., help="the spec whose interventions to apply"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="a run directory to load the model from (of a "
                                                                          "sweep: one member's, whose interventions apply)"),
    site: List[str] = typer.Option([], "--site", help="a site to print, e.g. L1.H2.pattern (repeatable; default: every pattern)"),
    seed: int = typer.Option(0, "--seed", help="which sampled training sequence"),
    pass_: str = typer.Option("last", "--pass", help="which pass to print: first (the reference pass of a two-pass "
                                                     "plan) or last (the one that makes the output)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON: tokens, the pass and each site's values"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Run one forward pass with the spec's interventions on one sequence and print activations
    of the chosen pass (`opto explain` says which pass each intervention acts in and reads).
    With --checkpoint, a sweep's interventions are those of the member the run directory holds.

    Example: opto trace specs/examples/clamp_prev_token.opto --site L1.H2.pattern
    """
    from .trace import trace_spec

    def body():
        from .analysis.runs import member_of
        from .experiment import load_experiment
        from .semantics.plan import PASS_NAMES

        if pass_ not in PASS_NAMES:
            raise SpecError(_option_span("--pass", pass_), f"no pass '{pass_}'",
                            hint="choose first (the reference pass of a two-pass plan) or last (the output's pass)")
        exp = load_experiment(spec, _settings(set_))
        member = member_of(exp, checkpoint) if checkpoint is not None else exp.members[0]
        config = member.config
        default = [f"L{layer}.pattern" for layer in range(1, config.model.layers + 1)]
        return trace_spec(member, _site_names(site or default, config), checkpoint, seed, pass_)

    result = _guard(body)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo("tokens: " + "  ".join(result["tokens"]))
    index = 1 if result["pass"] == "first" or result["passes"] == 1 else 2
    only = " (the only pass: first and last)" if result["passes"] == 1 else ""
    typer.echo(f"pass {result['pass']}: {index} of {result['passes']}{only}")
    import numpy as np

    np.set_printoptions(precision=3, suppress=True, linewidth=120)
    for name, value in result["sites"].items():
        typer.echo(f"{name}:")
        typer.echo(textwrap.indent(np.array2string(np.asarray(value)), "  "))


@app.command()
def sites(set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """List every addressable site of the configured model with its shape.

    Example: opto sites --set model.layers=3 --set model.mlp=true
    """
    from .experiment import DEFAULT
    from .semantics.spec import apply_cli
    from .sites import site_table
    from .tasks import layout

    config = _guard(lambda: apply_cli(DEFAULT, _settings(set_)))
    lay = layout(config)
    typer.echo("layers count from 1 (L1..), heads from 0 (H0..); shapes per sequence "
               f"(T={lay.length} tokens of the {config.task.name} task, H={config.model.heads} heads)")
    for key, info in site_table(config.model, lay).items():
        shown = key.replace(".", ".H<h>.", 1) if info.per_head else key
        shape = info.shape[1:] if info.per_head else info.shape
        typer.echo(f"  {shown:<22} {str(tuple(shape)):<14} {info.doc}")


@app.command()
def fmt(spec: Path = typer.Argument(..., help="the spec to format")) -> None:
    """Print a spec in canonical form (one statement per line; comments are not kept).

    Example: opto fmt specs/examples/tour.opto
    """
    from .experiment import load_experiment
    from .syntax import format_spec, parse

    def body():
        if not spec.exists():
            raise DataError(spec, "spec file not found")
        load_experiment(spec)  # a spec `opto check` refuses is not printed as if it were fine
        return format_spec(parse(spec.read_text(), str(spec)))

    typer.echo(_guard(body), nl=False)


@app.command()
def runs(root: Path = typer.Argument(Path("runs"), help="folder to search for run directories")) -> None:
    """List run directories under ROOT: spec, status, sequences and final accuracies.

    Example: opto runs runs/   (metrics load into pandas with pandas.read_json(RUN/"metrics.jsonl", lines=True))
    """
    found = rundir.find_runs(root)
    if not found:
        _fail(f"{root}: no run directories (folders with {' or '.join(rundir.RUN_FILES)}) found", 2)
    for run_dir in found:
        spec, status, seqs, accs = "-", "not started", 0, ""
        info, summary = run_dir / rundir.SPEC_RECORD, run_dir / rundir.SUMMARY
        bad = info
        try:
            if info.exists():
                spec = json.loads(info.read_text()).get("path") or "-"
            bad = summary
            data = json.loads(summary.read_text()) if summary.exists() else None
            bad = run_dir / rundir.POINTER
            status, seqs = rundir.status(run_dir, data)
            accs = _accuracies(data["final"]) if data else ""
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            status = f"unreadable {bad}: {exc}"
        typer.echo(f"{run_dir}  [{spec}]  {status}  {seqs:,} sequences  {accs}")


@app.command()
def rollback(run_dir: Path = typer.Argument(..., help="a run directory whose latest checkpoint is damaged")) -> None:
    """Make a run's previous checkpoint (kept beside the latest) its latest, so that rerunning
    `opto run` resumes from it; for a latest checkpoint that is truncated, corrupted or missing.

    Example: opto rollback runs/baseline
    """
    from .train.checkpoint import rollback as roll_back

    meta = _guard(lambda: roll_back(run_dir))
    typer.echo(f"{run_dir}: latest checkpoint is now {meta['file']} (step {meta['step']:,}); "
               "rerun the same `opto run` command to train on from it")


@app.command()
def toy(
    out: Path = typer.Option(Path("runs/toy"), "--out", help="folder for toy.png and toy.json"),
    steps: int = typer.Option(2000, "--steps", help="gradient steps"),
    lr: float = typer.Option(0.2, "--lr", help="gradient-descent step size"),
    seed: int = typer.Option(0, "--seed", help="seed of the initial and target vectors"),
) -> None:
    """The paper's toy model (Figure 5a): a*b*c* fit free, with c clamped, with b and c clamped.

    Example: opto toy --out runs/toy
    """
    from .analysis.toy import train_toy
    from .report.figures import save_figure, toy_figure

    from .files import atomic_write_text, make_dir

    curves = {clamp: train_toy(clamp, steps, lr, seed=seed) for clamp in ("none", "c", "bc")}

    def write():
        make_dir(out)
        atomic_write_text(out / "toy.json", json.dumps({k: {m: v.tolist() for m, v in c.items()} for k, c in curves.items()}))
        save_figure(toy_figure(curves), out / "toy.png")

    _guard(write)
    for clamp, curve in curves.items():
        loss = curve["loss"]
        typer.echo(f"{clamp:>4}: loss {loss[0]:.3g} -> {loss[len(loss) // 2]:.3g} (step {len(loss) // 2}) -> {loss[-1]:.3g}")
    typer.echo(f"figure: {out / 'toy.png'}")


GROUP_HINT = "name one layer's heads in the spec's selector syntax, e.g. L1.H[1,2,5], L1.H0..3 or L1.*"


def _parse_groups(texts: list[str], config):
    """`--group` options (the spec's selectors: `L1.H[1,2,5]`, `L1.*`, `L1.* except H0`) as analysis
    groups, resolved against the run's model."""
    from .analysis.heads import Group
    from .semantics.resolve import Resolver
    from .syntax import parse_selectors

    groups = []
    for text in texts:
        try:
            selectors = parse_selectors(text, "--group")
        except SpecError as err:
            raise SpecError(err.span, err.message, hint=GROUP_HINT) from None
        sites = [s for sel in selectors for s in Resolver(config).select(sel, "v")]
        layers = {s.layer for s in sites}
        if len(layers) != 1 or any(s.head is None or not s.site.endswith(".v") for s in sites):
            what = "heads of more than one layer" if len(layers) > 1 else "a site, not heads"
            raise SpecError(_option_span("--group", text), f"a head group names one layer's heads; '{text}' names {what}",
                            hint=GROUP_HINT)
        groups.append(Group(layers.pop(), tuple(sorted({s.head for s in sites}))))
    return groups


@app.command()
def analyze(
    run_dir: Path = typer.Argument(..., help="a run directory written by opto run"),
    only: List[str] = typer.Option([], "--only", help="heads, groups, paths, composition or subset (repeatable; default all that apply: "
                                                      "paths and composition need two layers)"),
    group: List[str] = typer.Option([], "--group", help="a head group for Table 1 in the spec's selector syntax, e.g. "
                                                         "L1.H[1,2,5] or L1.* (repeatable; default: "
                                                        "layer 1's previous-token heads, the rest, all)"),
    sequences: str = typer.Option("10000", "--sequences", help="how many training sequences to evaluate on, or 'all' "
                                                               "(every distinct training sequence: 78,400 for the paper's task)"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampled sequences"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of tables"),
    bare: bool = typer.Option(False, "--bare", help="score the network without the run's own training interventions "
                                                    "(default: with them, as its evaluations ran)"),
) -> None:
    """Analyse a checkpoint: each head ablated / alone (Fig. 4a), Table 1's pattern- vs value-preserving
    ablations, path maps and composition scores of every layer pair (Fig. 11b, 11c), Table 2. Writes RUN_DIR/analysis.json.
    Every ablation is added to the run's own interventions (refused where both set one site), unless --bare.

    Example: opto analyze runs/fig3_baseline --sequences all --group L1.H[1,2,5]
    """
    from .analysis.heads import ANALYSES, analyze as run_analyses
    from .analysis.runs import load_run

    def body():
        n = _sequences_option(sequences)
        for name in only:
            if name not in ANALYSES:
                bad = _option_span("--only", name)
                raise SpecError(bad, f"no analysis '{name}'", hint="choose from " + ", ".join(ANALYSES))
        run_ = load_run(run_dir)
        groups = _parse_groups(group, run_.config)
        return run_analyses(run_, tuple(only) or None, groups or None, n=n, seed=seed, bare=bare)

    result = _guard(body)
    from .files import atomic_write_text

    atomic_write_text(run_dir / "analysis.json", json.dumps(result, indent=2))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from .analysis.tables import render_tables

    typer.echo(render_tables(result))
    typer.echo(f"written: {run_dir / 'analysis.json'}")


def _sequences_option(text: str) -> int | None:
    """`--sequences N` or `all` (None: every distinct training sequence where they can be enumerated)."""
    if text != "all" and not (text.isdigit() and int(text) > 0):
        raise SpecError(_option_span("--sequences", text), f"cannot read --sequences '{text}'", hint="a positive number, or 'all'")
    return None if text == "all" else int(text)


@app.command("eval")
def eval_(
    spec: Path = typer.Argument(..., help="the spec whose interventions to score the checkpoint under"),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a run directory written by opto run (its latest checkpoint)"),
    sequences: str = typer.Option("all", "--sequences", help="sequences per evaluation set, or 'all' (the training "
                                                            "set's every distinct sequence, 10,000 of each other set)"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampled sequences"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of a table"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Score a trained network under each run of a spec (its variants and sweep members, their
    interventions only) on the evaluation sets, without training. The spec's model settings must
    match the run's.

    Example: opto eval specs/paper/table1.opto --checkpoint runs/fig3_baseline
    """
    from .evaluate_spec import evaluate_spec
    from .experiment import load_experiment

    def body():
        n = _sequences_option(sequences)
        return evaluate_spec(load_experiment(spec, _settings(set_)), checkpoint, n, seed)

    result = _guard(body)
    for line in result["warnings"]:
        typer.echo(line, err=True)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    sets = list(result["eval"])
    counts = ", ".join(f"{k} {v['sequences']:,}" + (" (every one)" if v["enumerated"] else "") for k, v in result["eval"].items())
    typer.echo(f"{result['checkpoint']} at {result['sequences_trained']:,} sequences; accuracy on {counts}")
    width = max(len(name) for name in result["runs"])
    typer.echo(f"{'run':<{width}}  " + "  ".join(f"{s:>17}" for s in sets))
    for name, r in result["runs"].items():
        typer.echo(f"{name:<{width}}  " + "  ".join(f"{r['sets'][s]['accuracy']:>17.3f}" if s in r["sets"] else f"{'-':>17}"
                                                    for s in sets))


@app.command()
def report(
    runs_: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="run directories, or folders of them (a sweep)"),
    out: Path = typer.Option(Path("report"), "--out", help="folder for the figures and report.md"),
) -> None:
    """Draw figures (loss and accuracy overlaid, induction heatmaps, ablation bars, path and
    composition maps) and a markdown summary for runs; includes each run's analysis.json if present.

    Example: opto report runs/fig5b --out reports/fig5b
    """
    from .report import write_report

    path = _guard(lambda: write_report(list(runs_), out))
    typer.echo(f"report: {path}")
    for png in sorted(out.glob("*.png")):
        typer.echo(f"figure: {png}")


features_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                            help="Make exemplar feature tables: the paper's Omniglot/ResNet18 features, or the synthetic ones as a file.\n\n"
                                 "Example: opto features omniglot --root data/ --weights resnet18.pth --out omniglot.h5")
app.add_typer(features_app, name="features")


@features_app.command("omniglot")
def features_omniglot(
    root: Path = typer.Option(..., "--root", help="folder holding omniglot-py/images_background (and images_evaluation)"),
    weights: Path = typer.Option(..., "--weights", help="a ResNet18 state dict saved with torch.save (never downloaded)"),
    out: Path = typer.Option(..., "--out", help="the HDF5 file to write (key resnet18/224/feat)"),
    per_class: int = typer.Option(5, "--per-class", help="exemplars kept per class (the paper: 5)"),
    seed: int = typer.Option(0, "--seed", help="seed of the random class order"),
    batch_size: int = typer.Option(64, "--batch-size", help="images per ResNet18 forward pass"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: only on a terminal)"),
) -> None:
    """Omniglot images through a frozen ResNet18 into the paper's HDF5 layout; rerun to resume.

    Example: opto features omniglot --root data/ --weights resnet18.pth --out omniglot.h5
    (needs the optional extra: pip install "optodsl[omniglot]")
    """
    from .data.omniglot import make_omniglot_features

    table = _guard(lambda: make_omniglot_features(root, weights, out, per_class=per_class, seed=seed,
                                                  batch_size=batch_size, progress=progress))
    typer.echo(f"features: {out} {tuple(table.shape)} (classes, exemplars, features)")
    typer.echo(f'use it with: set data.source = "{out}"')


@features_app.command("export")
def features_export(
    out: Path = typer.Option(..., "--out", help="the HDF5 file to write (key resnet18/224/feat, float32)"),
    set_: List[str] = typer.Option([], "--set", help="a data setting, e.g. --set data.seed=1 (repeatable)"),
) -> None:
    """Write the built-in synthetic features in the paper's HDF5 layout (classes x exemplars x 512),
    the table a run with the same data settings trains on, for the paper's code (--data_file) or data.source.

    Example: opto features export --out synthetic.h5
    """
    from .tasks.export import export_synthetic
    from .experiment import DEFAULT
    from .semantics.spec import apply_cli

    config = _guard(lambda: apply_cli(DEFAULT, _settings(set_)))
    table = _guard(lambda: export_synthetic(config.data, out))
    typer.echo(f"features: {out} {tuple(table.shape)} {table.dtype} (classes, exemplars, features)")
    typer.echo(f'use it with: set data.source = "{out}", or the paper\'s main.py --data_file {out}')


def main() -> None:
    """Entry point of the `opto` script: optodsl's XLA flags first, then the command."""
    from ._xla import configure

    configure()
    try:
        app()
    except OptoError as err:
        typer.echo(render(err) if isinstance(err, SpecError) else str(err) if isinstance(err, DataError) else f"error: {err}",
                   err=True)
        sys.exit(2)
    except OSError as err:
        typer.echo(_os_message(err), err=True)
        sys.exit(2)
