"""The generic fused trainer: any Forward, many steps per dispatch, evaluation inside jit.

Training data for step `s` is drawn from `fold_in(data_key, s)`, so the stream depends only on
the step: a resumed run sees exactly the batches an uninterrupted one would. The jitted program is
`program.py`'s (one `lax.scan` between evaluations, so the host synchronises once per evaluation);
this module runs it: claims the run directories (`claim.py`), resumes from checkpoints, writes
metrics, checkpoints, curves and summaries (`runfiles.py`), and stops cleanly on a signal.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import numpy as np
import jax.numpy as jnp

from ..config import ExperimentConfig
from ..errors import Interrupted, TrainingError
from ..model.protocol import Intervenable, ModelSource, describe
from ..tasks import layout, unread_sections
from ..tasks.base import query_loss_and_accuracy
from .. import rundir
from . import checkpoint, runfiles, series
from .claim import GROWABLE as GROWABLE, claim
from .program import Measures, Program as Program, build_program, sweep_key as sweep_key
from .progress import Progress
from .restore import load_trained as load_trained, make_optimizer as make_optimizer, new_model as new_model
from .signals import StopRequests


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk (`$OPTODSL_CACHE`, default ~/.cache/optodsl/xla) so a rerun skips compiling.

    `OPTODSL_CACHE=off` keeps everything in memory: the test session uses it, since writing an
    executable to the cache is the one step of a run that has aborted the process (a crash inside
    XLA's serialisation, seen once in CI), and a test gains nothing from a cache it throws away.
    """
    import os

    if jax.config.jax_compilation_cache_dir:
        return
    path = os.environ.get("OPTODSL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "optodsl", "xla"))
    if path == "off":
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


loss_and_accuracy = query_loss_and_accuracy
"""Mean cross-entropy and accuracy of query logits (B, L) against labels (B,); each task says where it applies."""



@dataclass
class RunResult:
    """What `train` returns: the final model, every metrics record and where they were written."""

    model: Intervenable
    metrics: list[dict]
    run_dir: Path | None
    summary: dict


def _records(metrics: dict[str, jax.Array], step: int, batch: int, members: int) -> list[dict]:
    """Per-member metrics records from member-stacked device arrays (one host transfer)."""
    host = jax.device_get(metrics)
    out = []
    for i in range(members):
        record = {"sequences": step * batch, "step": step}
        record.update({k: (bool(v[i]) if k == "finite" else float(v[i])) for k, v in host.items()})
        out.append(record)
    return out


def _pieces(k: int) -> list[int]:
    """`k` steps as powers of two, largest first (13: 8, 4, 1)."""
    return [1 << b for b in reversed(range(k.bit_length())) if k >> b & 1]


def _joined(parts: list[tuple[int, dict]], steps: int) -> dict[str, jax.Array]:
    """The training metrics of a chunk whose training ran in parts (split at kept series points):
    the step-weighted mean loss and accuracy, finite only if every part was."""
    out = {key: sum(n * part[key] for n, part in parts) / steps for key in ("train_loss", "train_accuracy")}
    finite = parts[0][1]["finite"]
    for _, part in parts[1:]:
        finite = finite & part["finite"]
    return {**out, "finite": finite}


def train(config: ExperimentConfig, forward=None, run_dir: str | Path | None = None, **kwargs) -> RunResult:
    """Train one experiment; with `run_dir`, write it there and resume from its checkpoint if any.

    `forward` is an overrides builder `(model, batch) -> Overrides`, a Forward (a compiled spec's
    `forward`), or None; `model=` trains a model of one's own (see `train_sweep` for it and the
    other keyword arguments).
    """
    return train_sweep([config], [forward], [run_dir] if run_dir is not None else None, **kwargs)[0]


def train_sweep(
    configs: list[ExperimentConfig],
    forwards: list | None = None,
    run_dirs: list[str | Path] | None = None,
    *,
    features=None,
    measures: Measures | None = None,
    progress: bool | None = None,
    stop_after_chunks: int | None = None,
    on_record: Callable[[int, dict], None] | None = None,
    model: ModelSource | None = None,
    label: str | None = None,
) -> list[RunResult]:
    """Train runs that share shapes as one vmapped program (sharded over local devices), each
    written to its own run directory and resumed from its checkpoint.

    Args:
        configs: one per run; they may differ in seeds, learning rate and the task's values only.
        forwards: one per run (overrides builders, Forwards or None) with the same structure.
        run_dirs: where each run's config, metrics.jsonl, summary.json, checkpoints and curves.png go.
        stop_after_chunks: stop (as if killed) after this many evaluation chunks; for tests.
        label: what the progress lines call this program's runs (`opto run` of several runs names them).
        on_record: called as `on_record(member, record)` with every metrics record as it is written.
        model: a model of one's own in place of the built-in transformer: an instance (every run starts
            from it) or a factory `key -> model` (each run from its `seed.init`). It implements the site
            protocol (`optodsl.model.protocol.Intervenable`); compile its spec against it
            (`optodsl.compile(..., model=...)`).
    """
    enable_compilation_cache()
    n = len(configs)
    program = build_program(configs, forwards if forwards is not None else [None] * n, features=features, measures=measures,
                            model=model)
    config = program.config
    state = program.init_state()
    total_steps, batch = config.train.steps, config.train.batch
    paths = [Path(d) for d in run_dirs] if run_dirs is not None else None
    metrics: list[list[dict]] = [[] for _ in range(n)]
    saved_step = None
    step = 0
    if paths is not None:
        described = describe(model, layout(config)) if model is not None else None
        for path, cfg in zip(paths, configs):
            claim(path, cfg, unread_sections(cfg) + (("model",) if model is not None else ()), described)
        metas = [checkpoint.read_meta(p) for p in paths]
        step = min(m["step"] if m is not None else 0 for m in metas)
        if step > 0:
            template = jax.tree.map(lambda x: x[0], state)
            loaded = [checkpoint.load(p, template, step=step)[0] for p in paths]
            state = program.place(jax.tree.map(lambda *xs: jnp.stack(xs), *loaded))
            saved_step = step
        metrics = [runfiles.resume_metrics(path, step) for path in paths]
    kept = series.kept_steps(config) if paths is not None else []
    evals = series.eval_steps(config)
    manifests = [series.resume(path, step) for path in paths] if kept else []
    if paths is not None and step >= total_steps and all(runfiles.is_complete(p) for p in paths):
        return [_finished(path, metrics[i], jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, state[0]))
                for i, path in enumerate(paths)]
    if paths is not None:
        for path in paths:
            runfiles.clear_summary(path)

    def emit(records: list[dict]) -> None:
        for i, record in enumerate(records):
            record.update(type(program.task).settings_at(configs[i], record["sequences"]))
            metrics[i].append(record)
            if paths is not None:
                runfiles.append_metrics(paths[i], record)
            if on_record is not None:
                on_record(i, record)

    def save(at_state, at_step: int) -> None:
        host = jax.device_get(at_state)  # one transfer, then per-member slices on the host
        for i, path in enumerate(paths):
            member = jax.tree.map(lambda x: x[i], host)
            checkpoint.save(path, member, {"step": at_step, "sequences": at_step * batch, "seeds": configs[i].seed.model_dump()})

    def keep(points: list[tuple[int, object]]) -> None:
        """Write each member's series point at each (step, stacked state) reached."""
        for at_step, at_state in points:
            host = jax.device_get(at_state[0])
            for i, path in enumerate(paths):
                member = jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, host)
                manifests[i] = series.write_point(path, manifests[i], at_step, at_step * batch, member)

    stops = StopRequests()
    # until the loop reaches the end, whatever stops the run (a signal, a kill, an error) leaves it unfinished
    status = "interrupted"
    bar = None
    t0, steps0, chunks = time.perf_counter(), step, 0
    try:
        with stops:
            if not metrics[0]:
                first = program.evaluate_all()(state, program.forward_arrays, program.task, program.eval_batches)
                emit([{**r, "train_loss": None, "train_accuracy": None} for r in _records(first, 0, batch, n)])
            last_ckpt_seq = step * batch
            mode = {True: "bar", False: "off", None: None}[progress]
            what = "sequences" if n == 1 else f"sequences ({n} runs)"
            bar = Progress(total_steps * batch, mode, f"{label} {what}" if label else what, start=step * batch)
            t0 = time.perf_counter()
            keys = program.data_keys()
            while step < total_steps:
                if evals is None:
                    k, cuts = min(program.steps_per_eval, total_steps - step), set()
                else:  # listed points: the gap's training in pieces of powers of two, so few lengths compile
                    k = next(s for s in evals if s > step) - step
                    cuts = {step + int(c) for c in np.cumsum(_pieces(k))[:-1]}
                # a kept series point inside the chunk splits its training there (the evaluation stays at its end)
                cuts = sorted(cuts | {s for s in kept if step < s < step + k})
                reached, parts, at, new_state = [], [], step, state
                for cut in cuts:
                    new_state, part = program.train_steps(cut - at)(new_state, program.forward_arrays, keys, program.task_values,
                                                                          program.task)
                    parts.append((cut - at, part))
                    if cut in kept:
                        reached.append((cut, new_state))
                    at = cut
                new_state, out = program.chunk(step + k - at)(new_state, program.forward_arrays, keys, program.task_values,
                                                              program.task, program.eval_batches)
                if parts:
                    out = {**out, **_joined([*parts, (step + k - at, out)], k)}
                if step + k in kept:
                    reached.append((step + k, new_state))
                records = _records(out, step + k, batch, n)
                bad = [i for i, r in enumerate(records) if not r.pop("finite") or not math.isfinite(r["train_loss"])]
                if bad:
                    status = "failed: non-finite loss"
                    if paths is not None and saved_step != step:
                        save(state, step)
                        saved_step = step
                    names = ", ".join(str(paths[i]) if paths else f"run {i}" for i in bad)
                    where = f"; the last good checkpoint (sequences {step * batch}) is in {names}" if paths else ""
                    raise TrainingError(
                        f"the training loss became NaN or inf between sequences {step * batch} and {(step + k) * batch}{where}. "
                        f"Try a lower train.lr (now {configs[bad[0]].train.lr:g}) or check the interventions' values.")
                state, step = new_state, step + k
                if reached:
                    keep(reached)
                emit(records)
                chunks += 1
                bar.update(step * batch, records[0])
                stopping = stops.received is not None
                due = step * batch - last_ckpt_seq >= config.train.checkpoint_every or step >= total_steps or stopping
                if paths is not None and due:
                    save(state, step)
                    saved_step, last_ckpt_seq = step, step * batch
                    for i, path in enumerate(paths):
                        runfiles.write_curves(path, metrics[i], program.task.reading(program.config))
                if stopping:
                    break
                if stop_after_chunks is not None and chunks >= stop_after_chunks and step < total_steps:
                    status = "stopped"
                    break
            if step >= total_steps:
                status = rundir.COMPLETE
    except Exception as exc:
        if status == "interrupted":
            status = f"failed: {type(exc).__name__}"
        raise
    finally:
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - t0
        results = []
        for i in range(n):
            # what is safely on disk: the checkpoint a rerun resumes from
            done = step if paths is None else (saved_step or 0)
            summary = {
                "status": status,
                "sequences": done * batch,
                "step": done,
                "runs_in_program": n,
                "wall_seconds": round(elapsed, 3),
                "steps_per_second": round((step - steps0) / elapsed, 1) if elapsed > 0 and step > steps0 else None,
                "final": {k: v for k, v in (metrics[i][-1] if metrics[i] else {}).items() if k not in ("sequences", "step")},
            }
            if paths is not None and status != "stopped":
                runfiles.write_summary(paths[i], summary)
                if metrics[i]:
                    runfiles.write_curves(paths[i], metrics[i], program.task.reading(program.config))
            model = jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, state[0])
            results.append(RunResult(model, metrics[i], paths[i] if paths else None, summary))
    if status == "interrupted" and stops.received is not None:
        raise Interrupted(stops.received, {str(r.run_dir): r.summary["sequences"] for r in results})
    return results


def _finished(path: Path, records: list[dict], model) -> RunResult:
    """A run that had already trained to its length: its summary as written, marked so for the caller."""
    return RunResult(model, records, path, {**rundir.summary(path), "already_complete": True})
