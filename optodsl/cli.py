"""The `opto` command line; the only place that prints errors and picks exit codes.

Exit codes: 0 success, 1 training failed (a non-finite loss), 2 bad input (a spec error, a
missing or malformed file, a bad `--set`). Expected errors never show a Python traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import rundir
from .commands import options
from .commands.distributed import start_distributed
from .commands.runs import accuracies, run_line
from .errors import DataError, Interrupted, OptoError, SpecError, TrainingError, render
from .train.signals import exit_code

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="optodsl: clamp and ablate transformer activations throughout training.\n\n"
                       "Layers count from 1 and heads from 0, as in the paper (L1.H2 is the first layer's head 2).")

SET_HELP = "override a setting, e.g. --set train.lr=1e-4 (repeatable)"


def _fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


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
    _guard(start_distributed)
    from .experiment import run_experiments

    def body():
        settings = options.settings(set_)
        try:
            return [res for wave, root in _training_waves(specs, out, settings)
                    for res in run_experiments(wave, root, settings, progress=progress, tensorboard=tensorboard)]
        except Interrupted as stop:
            _interrupted(stop.sequences, exit_code(stop))
        except KeyboardInterrupt as stop:
            _interrupted({}, exit_code(stop))

    for res in _guard(body):
        final = res.summary["final"]
        accs = accuracies(final)
        typer.echo(f"run directory: {res.run_dir}")
        typer.echo(f"figure: {res.run_dir / rundir.CURVES}")
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
            outcomes.append((path, load_experiment(path, options.settings(set_))))
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
    from .commands.explain_text import explain_lines
    from .experiment import load_experiment
    from .explain import explain_experiment, program_lines

    cli = _guard(lambda: options.settings(set_))
    exp = _guard(lambda: load_experiment(spec, cli))
    runs_ = explain_experiment(exp, cli)
    if as_json:
        typer.echo(json.dumps(runs_, indent=2))
        return
    for line in explain_lines(runs_) + _guard(lambda: program_lines(exp)):
        typer.echo(line)


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
            raise SpecError(options.option_span("--pass", pass_), f"no pass '{pass_}'",
                            hint="choose first (the reference pass of a two-pass plan) or last (the output's pass)")
        exp = load_experiment(spec, options.settings(set_))
        member = member_of(exp, checkpoint) if checkpoint is not None else exp.members[0]
        config = member.config
        default = [f"L{layer}.pattern" for layer in range(1, config.model.layers + 1)]
        return trace_spec(member, options.site_names(site or default, config), checkpoint, seed, pass_)

    result = _guard(body)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo("tokens: " + "  ".join(result["tokens"]))
    index = 1 if result["pass"] == "first" or result["passes"] == 1 else 2
    only = " (the only pass: first and last)" if result["passes"] == 1 else ""
    typer.echo(f"pass {result['pass']}: {index} of {result['passes']}{only}")
    from .commands.trace_text import site_lines

    for name, value in result["sites"].items():
        typer.echo("\n".join(site_lines(name, value, result["tokens"])))


@app.command()
def sites(set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """List every addressable site of the configured model with its shape.

    Example: opto sites --set model.layers=3 --set model.mlp=true
    """
    from .experiment import DEFAULT
    from .semantics.spec import apply_cli
    from .sites import site_table
    from .tasks import layout

    config = _guard(lambda: apply_cli(DEFAULT, options.settings(set_)))
    lay = layout(config)
    typer.echo("layers count from 1 (L1..), heads from 0 (H0..); shapes per sequence "
               f"(T={lay.length} tokens of the {lay.task} task, H={config.model.heads} heads)")
    for key, info in site_table(config.model, lay).items():
        shown = key.replace(".", ".H<h>.", 1) if info.per_head else key
        shape = info.shape[1:] if info.per_head else info.shape
        typer.echo(f"  {shown:<22} {str(tuple(shape)):<14} {info.doc}")


@app.command()
def fmt(spec: Path = typer.Argument(..., help="the spec to format")) -> None:
    """Print a spec in canonical form (one statement per line; comments kept where they stand).

    Example: opto fmt specs/examples/tour.opto
    """
    from .experiment import load_experiment
    from .syntax.format import format_source

    def body():
        if not spec.exists():
            raise DataError(spec, "spec file not found")
        load_experiment(spec)  # a spec `opto check` refuses is not printed as if it were fine
        return format_source(spec.read_text(), str(spec))

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
        typer.echo(run_line(run_dir))


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


def _only_help() -> str:
    """`--only`'s help: the registered analyses, what each computes and when it runs."""
    from .analysis.registry import REGISTRY

    def when(d) -> str:
        notes = ["only when named"] * d.on_request + ["two layers or more"] * d.paired + [f"needs {d.needs}"] * bool(d.needs)
        return f" ({'; '.join(notes)})" if notes else ""

    return ("an analysis to run (repeatable; default: every one that applies, but those run only when named): "
            + "; ".join(f"{d.name}: {d.words}{when(d)}" for d in REGISTRY.values()))


@app.command()
def analyze(
    run_dir: Path = typer.Argument(..., help="a run directory written by opto run (with --over-training, also a folder of runs: a sweep)"),
    only: List[str] = typer.Option([], "--only", help=_only_help()),
    group: List[str] = typer.Option([], "--group", help="a head group for Table 1 in the spec's selector syntax, e.g. "
                                                         "L1.H[1,2,5] or L1.* (repeatable; default: "
                                                        "layer 1's previous-token heads, the rest, all)"),
    sequences: str = typer.Option("10000", "--sequences", help="how many training sequences to evaluate on, or 'all' "
                                                               "(every distinct training sequence: 78,400 for the paper's task)"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampled sequences"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of tables"),
    bare: bool = typer.Option(False, "--bare", help="score the network without the run's own training interventions "
                                                    "(default: with them, as its evaluations ran)"),
    over_training: bool = typer.Option(False, "--over-training", help="score every kept point of the run's checkpoint "
                                       "series (set train.keep) and its latest checkpoint as one program: the full model, "
                                       "each head ablated alone, the task's measures, the per-token loss trajectory, Table 1's "
                                       "groups and the path map (--only groups, paths; heads for none of these two); writes "
                                       "RUN_DIR/analysis_series.json. RUN_DIR may be a sweep's folder: runs that share a "
                                       "program are scored as one"),
) -> None:
    """Analyse a checkpoint: each head ablated / alone (Fig. 4a), Table 1's pattern- vs value-preserving
    ablations, path maps and composition scores of every layer pair (Fig. 11b, 11c), Table 2, on token tasks the
    loss at each position with each head ablated; when named, each last-layer head with a perfect match
    (Fig. 16, Table 3) and heads added by strength (Fig. 14) (see --only). Writes RUN_DIR/analysis.json;
    with --only, the sections it did not compute stay from an earlier analysis of the same checkpoint, interventions
    and sequences. Every ablation is added to the run's own interventions (refused where both set one site), unless --bare.

    Example: opto analyze runs/fig3_baseline --sequences all --group L1.H[1,2,5]
    """
    from .analysis.heads import analyze as run_analyses
    from .analysis.registry import REGISTRY
    from .analysis.runs import load_run

    if over_training:
        return _over_training(lambda: _series_commands().analyze_series(run_dir, only, group, options.sequences_option(sequences),
                                                                        seed, bare), as_json)

    def body():
        n = options.sequences_option(sequences)
        for name in only:
            if name not in REGISTRY:
                bad = options.option_span("--only", name)
                raise SpecError(bad, f"no analysis '{name}'", hint="choose from " + ", ".join(REGISTRY))
        run_ = load_run(run_dir)
        groups = options.parse_groups(group, run_.config)
        return run_analyses(run_, tuple(only) or None, groups or None, n=n, seed=seed, bare=bare)

    result = _guard(body)
    from .analysis.registry import analysis_layout
    from .files import atomic_write_text

    Analysis = analysis_layout()

    path = run_dir / rundir.ANALYSIS
    note = ""
    if only and path.is_file():
        try:
            older = Analysis.checked(rundir.read_json(path, "analysis"), path)
        except DataError as err:  # the new sections are not lost to a damaged old file
            older, note = None, f" (it replaces the earlier one, which could not be read: {err.problem})"
        merged, kept = Analysis.model_validate(result).merged(older) if older else (None, ())
        written = merged.to_json() if merged else result
        if older and kept:
            note = f" (kept from the earlier analysis of this checkpoint and these sequences: {', '.join(kept)})"
        elif older and not written.keys() >= older.to_json().keys():
            note = " (it replaces an earlier analysis of another checkpoint, other interventions or other sequences)"
    else:
        written = result
    atomic_write_text(path, json.dumps(written, indent=2))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from .analysis.tables import render_tables

    typer.echo(render_tables(result))
    typer.echo(f"written: {path}{note}")


@app.command()
def llc(
    run_dir: Path = typer.Argument(..., help="a run directory written by opto run"),
    chains: int = typer.Option(4, "--chains", help="SGLD chains per checkpoint"),
    steps: int = typer.Option(200, "--steps", help="SGLD steps per chain, burn-in included"),
    burn_in: int = typer.Option(100, "--burn-in", help="steps before the draws"),
    eps: float = typer.Option(1e-4, "--eps", help="SGLD step size"),
    gamma: float = typer.Option(100.0, "--gamma", help="localisation strength (pull towards the checkpoint)"),
    nbeta: Optional[float] = typer.Option(None, "--nbeta", help="n * beta (default: batch / log batch, as devinterp)"),
    batch: int = typer.Option(32, "--batch", help="training sequences per SGLD step"),
    seed: int = typer.Option(0, "--seed", help="seed of the chains' noise and batches"),
    head: Optional[str] = typer.Option(None, "--head", help="move only this head's q/k/v/o weights, e.g. L2.H3 "
                                                             "(the refined LLC of one head)"),
    over_training: bool = typer.Option(False, "--over-training", help="also every point of the run's checkpoint "
                                                                      "series (set train.keep), as one program"),
    bare: bool = typer.Option(False, "--bare", help="the network without the run's own training interventions"),
) -> None:
    """Estimate the local learning coefficient (Lau et al. 2023) of a run's latest checkpoint, and with
    --over-training of every kept point, on its task's training batches and loss; writes RUN_DIR/llc.json.
    A point whose chains disagree (split-R-hat above 1.1) or diverge is marked NO under `converged`.

    Example: opto llc runs/baseline --chains 4 --steps 200 --over-training
    """
    from pydantic import ValidationError

    import warnings

    from .analysis.llc import LLCSettings, run_llc, table
    from .train.series import SeriesWarning
    from .files import atomic_write_text

    def body():
        try:
            settings = LLCSettings(chains=chains, steps=steps, burn_in=burn_in, eps=eps, gamma=gamma, nbeta=nbeta,
                                   batch=batch, seed=seed)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = "--" + str(err["loc"][0]).replace("_", "-")
            raise SpecError(options.option_span(name, str(err.get("input"))), f"invalid {name}: {err['msg']}") from None
        if settings.burn_in >= settings.steps:
            raise SpecError(options.option_span("--burn-in", str(burn_in)), "--burn-in leaves no draws",
                            hint=f"choose fewer than --steps ({steps})")
        with warnings.catch_warnings():  # the damaged points are printed below, once
            warnings.simplefilter("ignore", SeriesWarning)
            result, problems = run_llc(run_dir, settings, head, over_training, bare)
        atomic_write_text(run_dir / rundir.LLC, result.model_dump_json(indent=2))
        return result, problems

    result, problems = _guard(body)
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)
    typer.echo(table(result))
    typer.echo(f"written: {run_dir / rundir.LLC}")


@app.command("eval")
def eval_(
    spec: Path = typer.Argument(..., help="the spec whose interventions to score the checkpoint under"),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a run directory written by opto run (its latest checkpoint; "
                                    "with --over-training, also a folder of runs: a sweep)"),
    sequences: str = typer.Option("all", "--sequences", help="sequences per evaluation set, or 'all' (the training "
                                                            "set's every distinct sequence, 10,000 of each other set)"),
    seed: int = typer.Option(0, "--seed", help="seed of the sampled sequences"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of a table"),
    in_context: bool = typer.Option(False, "--in-context", help="show the accuracy among the labels in each sequence's "
                                                                "context only, instead of over every label"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    over_training: bool = typer.Option(False, "--over-training", help="score every kept point of the run's checkpoint "
                                       "series (set train.keep) and its latest checkpoint as one program (a folder's runs "
                                       "whose networks stack, together); writes each run's eval_series.json"),
) -> None:
    """Score a trained network under each run of a spec (its variants and sweep members, their
    interventions only) on the evaluation sets, without training. The spec's model settings must
    match the run's. The JSON holds both accuracies: over every label (the task's, as in training)
    and among the context's labels only (`accuracy_in_context`).

    Example: opto eval specs/paper/table1.opto --checkpoint runs/fig3_baseline
    """
    from .evaluate_spec import evaluate_spec
    from .experiment import load_experiment

    if over_training:
        return _over_training(lambda: _series_commands().eval_series(
            load_experiment(spec, options.settings(set_)), checkpoint, options.sequences_option(sequences), seed, in_context),
            as_json)

    def body():
        n = options.sequences_option(sequences)
        return evaluate_spec(load_experiment(spec, options.settings(set_)), checkpoint, n, seed)

    result = _guard(body)
    for line in result["warnings"]:
        typer.echo(line, err=True)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    sets = list(result["eval"])
    counts = ", ".join(f"{k} {v['sequences']:,}" + (" (every one)" if v["enumerated"] else "") for k, v in result["eval"].items())
    key, what = ("accuracy_in_context", "accuracy among the context's labels") if in_context else ("accuracy", "accuracy")
    if in_context and any(key not in scores for r in result["runs"].values() for scores in r["sets"].values()):
        _fail(f"error: {result['checkpoint']}: the run's task scores no accuracy among the context's labels "
              "(the few-shot task's query only); leave out --in-context", 2)
    typer.echo(f"{result['checkpoint']} at {result['sequences_trained']:,} sequences; {what} on {counts}")
    width = max(len(name) for name in result["runs"])
    for metric, title in ((key, None), ("loss", "loss (nats)")):
        if title:
            typer.echo(f"\n{title}")
        typer.echo(f"{'run':<{width}}  " + "  ".join(f"{s:>17}" for s in sets))
        for name, r in result["runs"].items():
            typer.echo(f"{name:<{width}}  " + "  ".join(f"{r['sets'][s][metric]:>17.3f}" if s in r["sets"] else f"{'-':>17}"
                                                        for s in sets))


def _series_commands():
    from .commands import overtraining

    return overtraining


def _over_training(body, as_json: bool) -> None:
    """Run an `--over-training` command body (-> table, warning lines, JSON) and print its output."""
    text, problems, written = _guard(body)
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo(written if as_json else text)


EXPORT_TARGETS = ("transformer-lens",)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a run directory written by opto run (its latest checkpoint)"),
    to: str = typer.Option(..., "--to", help="the tool to export for: transformer-lens"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder to write (default RUN_DIR/transformer-lens)"),
) -> None:
    """Write a token-task run's trained network for another tool: for TransformerLens 4.x, config.json
    (TransformerBridge.boot_native's fields), model.safetensors (HookedTransformer's parameter names;
    load with convert_tl_checkpoint, see docs/export.md) and tokenizer.json (token ids as decimal words).
    The run's interventions are not part of it.

    Example: opto export runs/repeat --to transformer-lens
    """
    from .export.transformer_lens import export as export_tl

    def body():
        if to not in EXPORT_TARGETS:
            raise DataError(f"--to {to}", f"no export for '{to}'", expected="one of: " + ", ".join(EXPORT_TARGETS))
        return export_tl(run_dir, out)

    done = _guard(body)
    typer.echo(f"exported: {done.folder} (config.json, model.safetensors, tokenizer.json) for TransformerLens, "
               f"the network at {done.sequences:,} sequences")
    if done.interventions:
        typer.echo("not exported: the run's interventions, which acted on its activations while it trained "
                   "and are no part of the network:")
        for line in done.interventions:
            typer.echo(f"  {line}")
    elif done.interventions is None:
        typer.echo("not exported: any clamps and ablations the run trained under (it has no spec.opto to list them)")
    else:
        typer.echo("the run trained without interventions")
    typer.echo("load it: docs/export.md")


def _thresholds(text: str | None) -> tuple[float, ...] | None:
    """`--at 0.6,0.9,0.99` as accuracies in [0, 1]; exit 2 naming the bad part."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            _fail(f"error: --at: '{part.strip()}' is not an accuracy between 0 and 1\n  hint: --at 0.6,0.9,0.99", 2)
        out.append(value)
    return tuple(out)


@app.command()
def report(
    runs_: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="run directories, or folders of them (a sweep)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the figures and report.md (default: report; "
                                                           "with --section: the figures only, and none without --out)"),
    at: Optional[str] = typer.Option(None, "--at", metavar="T1,T2,...",
                                     help="accuracy thresholds whose crossings to print, e.g. 0.6,0.9,0.99 (default: "
                                          "the task's phase-change accuracy, 0.9 for the few-shot task)"),
    sets: Optional[str] = typer.Option(None, "--sets", metavar="SET,...",
                                       help="further evaluation sets whose accuracy crossings (at --at) and final "
                                            "accuracies to show beside the training set's, e.g. in_context,in_weights"),
    section: Optional[str] = typer.Option(None, "--section", metavar="NAME",
                                          help="print only this section of report.md (e.g. Stages, Crossings, 'Over seeds'), "
                                               "as a generated block of a document holds it"),
    points: Optional[str] = typer.Option(None, "--points", metavar="N1,N2,...",
                                         help="training lengths at which to show the analysis series' Table 1 and path "
                                              "map, e.g. 100k,300k,1M (the kept point nearest each; default: the stage "
                                              "boundaries read at the series points, and the last point), and the "
                                              "--values table (the evaluation nearest each; default: the last)"),
    values: Optional[str] = typer.Option(None, "--values", metavar="KEY,...",
                                         help="logged values to show at --points, as metrics.jsonl names them or as shell "
                                              "patterns, e.g. 'train/loss,train/perfected*/loss' (the 'Values' section)"),
) -> None:
    """Draw figures (loss and accuracy overlaid with the task's reference levels, its reference losses and
    divergences, a heat map per logged measure, ablation bars, path and composition maps) and a markdown
    summary for runs; print each run's stages (plateau, phase change, steepest fall of the log-loss) and
    accuracy crossings, and their mean and range over a sweep's seeds; includes each run's analysis.json if present.

    Example: opto report runs/fig5b --out reports/fig5b --at 0.6,0.9,0.99
    """
    from .report import make_report

    thresholds = _thresholds(at)
    named = tuple(s.strip() for s in sets.split(",")) if sets else ()
    shown = tuple(v.strip() for v in values.split(",")) if values else ()
    if section is not None:  # as a document's generated block prints it: links from --out, else from here
        from .report.docblocks import render_section

        typer.echo(_guard(lambda: render_section(tuple(str(p) for p in runs_), section, thresholds, "opto report",
                                                 out or Path.cwd(), str(out) if out else None, named, shown,
                                                 options.points_option(points))))
        return
    out = out or Path("report")
    path, stages = _guard(lambda: make_report(list(runs_), out, thresholds, options.points_option(points), named, shown))
    typer.echo(f"report: {path}")
    for png in sorted(out.glob("*.png")):
        typer.echo(f"figure: {png}")
    if stages:
        typer.echo(stages)


@app.command()
def record(
    runs_: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="finished run directories, or folders of them (a sweep)"),
    out: Path = typer.Option(..., "--out", help="folder for the records (each run as out/<name>, a sweep's as out/<folder>/...)"),
) -> None:
    """Write compact records of finished runs to commit beside a document: what `opto report` reads,
    without checkpoints, metrics rounded to 5 significant digits and per-head curves thinned to 25
    evaluations; every accuracy and loss evaluation is kept, so crossings and stages are the run's.

    Example: opto record runs/fig3_baseline_seeds --out docs/reproduction/records
    """
    from .report.compact import record_runs

    written = _guard(lambda: record_runs(list(runs_), out))
    for dest, info in written:
        typer.echo(f"{dest}: {info.rows} evaluations, {info.bytes / 1024:.0f} KiB")
    typer.echo(f"{len(written)} record{'s' if len(written) != 1 else ''}, "
               f"{sum(i.bytes for _, i in written) / 1024:.0f} KiB in all")


@app.command()
def docs(
    documents: List[Path] = typer.Argument(..., metavar="DOC.md...", help="markdown documents with generated blocks"),
    check: bool = typer.Option(False, "--check", help="change nothing; exit 1 naming each block that differs"),
) -> None:
    """Regenerate every generated block of markdown documents: each block's table is the output of the
    `opto report ... --section NAME` command in its opening comment, over committed run records, and
    its figures are redrawn where the command names --out. With --check, report the blocks that differ.

    Example: opto docs docs/reproduction.md --check
    """
    from .report.docblocks import regenerate

    stale = []
    for doc in documents:
        changed = _guard(lambda doc=doc: regenerate(doc, check=check))
        stale += [f"{doc}:{b.line}: {'differs from' if check else 'regenerated by'}: {b.command}" for b in changed]
    for line in stale:
        typer.echo(line)
    if check and stale:
        _fail(f"error: {len(stale)} generated block{'s differ' if len(stale) != 1 else ' differs'} from "
              "its command's output\n  hint: run `opto docs` without --check to regenerate", 1)
    typer.echo(f"{'checked' if check else 'regenerated'}: {', '.join(map(str, documents))}"
               f"{'' if check or stale else ' (no block changed)'}")


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

    config = _guard(lambda: apply_cli(DEFAULT, options.settings(set_)))
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
