"""The generic fused trainer: any Forward, many steps per dispatch, evaluation inside jit.

Training data for step `s` is drawn from `fold_in(data_key, s)`, so the stream depends only on
the step: a resumed run sees exactly the batches an uninterrupted one would. One jitted
`chunk` runs the steps between two evaluations with `lax.scan` and then evaluates every set,
so the host synchronises once per evaluation, not once per step.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import numpy as np
import jax
import jax.numpy as jnp
import optax

from ..config import ExperimentConfig, SeedConfig
from ..errors import DataError, Interrupted, TrainingError
from ..measures import measures_fn
from ..model.overrides import Context, Forward, as_forward
from ..model.protocol import Intervenable, ModelSource, check_sites, declared, factory, layer_count
from ..model.transformer import init_model
from ..tasks import Task, build_task, eval_sets, layout
from ..tasks.base import query_loss_and_accuracy
from . import checkpoint
from .curves import plot_curves
from .progress import Progress
from .restore import load_trained as load_trained, make_optimizer as make_optimizer, new_model as new_model
from .signals import StopRequests

Measures = Callable[[dict[str, jax.Array], dict[str, jax.Array], jax.Array], dict[str, jax.Array]]
"""`(activations, batch, query logits) -> {name: scalar}`, evaluated on each evaluation set."""


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


def sweep_key(config: ExperimentConfig) -> ExperimentConfig:
    """The settings that must agree for runs to share one program (all but seeds and learning rate)."""
    return config.model_copy(update={"seed": SeedConfig(), "train": config.train.model_copy(update={"lr": 1.0})})


@dataclass
class Program:
    """The jitted pieces of a sweep of M runs that share shapes: initial states, evaluation and
    the fused chunk, all vmapped over a leading member axis (sharded across local devices)."""

    configs: list[ExperimentConfig]
    static_forward: Any
    forward_arrays: Any
    task: Task
    eval_batches: dict[str, dict[str, jax.Array]]
    shared_eval: bool
    measures: Measures | None = None
    steps_per_eval: int = 1
    sharding: Any = None
    init_model: Callable[[jax.Array], Intervenable] | None = None
    """A model of one's own as a factory `key -> model`; None builds the built-in `new_model`."""
    _chunks: dict[int, Callable] = field(default_factory=dict)

    @property
    def config(self) -> ExperimentConfig:
        return self.configs[0]

    def forward(self, arrays) -> Forward:
        return eqx.combine(arrays, self.static_forward)

    def init_state(self):
        """Stacked (model, optimiser state, step) of every member, from each member's init seed and lr."""
        cfg = self.config
        keys = jnp.stack([jax.random.PRNGKey(c.seed.init) for c in self.configs])
        lrs = jnp.asarray([c.train.lr for c in self.configs], jnp.float32)
        make = self.init_model if self.init_model is not None else (lambda key: new_model(cfg, key))

        def one(key, lr):
            model = make(key)
            return model, make_optimizer(cfg, lr).init(eqx.filter(model, eqx.is_array)), jnp.zeros((), jnp.int32)

        return self.place(eqx.filter_vmap(one)(keys, lrs))

    def place(self, tree):
        """Put member-stacked arrays on their devices (a no-op on one device)."""
        if self.sharding is None:
            return tree
        return jax.tree.map(lambda x: jax.device_put(x, self.sharding) if eqx.is_array(x) else x, tree)

    def data_keys(self) -> jax.Array:
        return self.place(jnp.stack([jax.random.PRNGKey(c.seed.data) for c in self.configs]))

    def evaluate(self, forward, model, step: jax.Array, task: Task, eval_batches) -> dict[str, jax.Array]:
        """Loss, accuracy and measures of every evaluation set for one member (traceable)."""
        out: dict[str, jax.Array] = {}
        ctx = Context(sequences=step * self.config.train.batch, training=False)
        for name, batch in eval_batches.items():
            logits, acts = forward(model, batch, ctx)
            loss, acc = task.loss_and_accuracy(logits, batch)
            out[f"{name}/loss"], out[f"{name}/accuracy"] = loss, acc
            for key, value in task.metrics(logits, batch).items():
                out[f"{name}/{key}"] = value
            if self.measures is not None:
                for key, value in self.measures(acts, batch, logits).items():
                    out[f"{name}/{key}"] = value
            for probe_name, probe in forward.probes.items():
                probe_logits, _ = probe(model, batch, ctx)
                out[f"{name}/{probe_name}/loss"], out[f"{name}/{probe_name}/accuracy"] = task.loss_and_accuracy(probe_logits, batch)
        return out

    def evaluate_all(self) -> Callable:
        """The jitted `(state, forward_arrays, task, eval_batches) -> metrics` over every member."""
        def one(state, arrays, task, eval_batches):
            return self.evaluate(self.forward(arrays), state[0], state[2], task, eval_batches)

        axes = (0, 0, None, None if self.shared_eval else 0)
        return eqx.filter_jit(eqx.filter_vmap(one, in_axes=axes))

    def chunk(self, n_steps: int) -> Callable:
        """The jitted `(states, forward_arrays, data_keys, task, eval_batches) -> (states, metrics)`:
        `n_steps` training steps per member fused with `lax.scan`, then an evaluation."""
        if n_steps in self._chunks:
            return self._chunks[n_steps]
        batch_size = self.config.train.batch
        optimizer = make_optimizer(self.config)

        def run(state, arrays, data_key, task, eval_batches):
            forward = self.forward(arrays)
            model, opt_state, step0 = state
            params, static = eqx.partition(model, eqx.is_array)

            def loss_fn(params, batch, ctx):
                logits, _ = forward(eqx.combine(params, static), batch, ctx)
                return task.loss_and_accuracy(logits, batch)

            def one(carry, _):
                params, opt_state, step = carry
                batch = task.sample(jax.random.fold_in(data_key, step), "train", batch_size)
                ctx = Context(sequences=step * batch_size, training=True)
                (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, ctx)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state, step + 1), (loss, acc)

            (params, opt_state, step), (losses, accs) = jax.lax.scan(one, (params, opt_state, step0), None, length=n_steps)
            model = eqx.combine(params, static)
            metrics = self.evaluate(forward, model, step, task, eval_batches)
            metrics["train_loss"] = losses.mean()
            metrics["train_accuracy"] = accs.mean()
            metrics["finite"] = jnp.all(jnp.isfinite(losses))
            return (model, opt_state, step), metrics

        axes = (0, 0, 0, None, None if self.shared_eval else 0)
        fn = eqx.filter_jit(eqx.filter_vmap(run, in_axes=axes))
        self._chunks[n_steps] = fn
        return fn


def build_program(configs: ExperimentConfig | list[ExperimentConfig], forwards=None, *, features=None,
                  measures: Measures | None = None, model: ModelSource | None = None) -> Program:
    """Assemble task, evaluation sets and member-stacked forwards for runs that share shapes.

    `configs` may differ only in seeds and learning rate (see `sweep_key`); `forwards` are
    overrides builders, Forwards or None, one per config (or one for all), whose static parts agree.
    `model` is a model of one's own (an instance, or a factory `key -> model`) in place of the
    built-in transformer; its forward must record the sites it declares (`check_sites`).
    """
    configs = [configs] if isinstance(configs, ExperimentConfig) else list(configs)
    if not isinstance(forwards, (list, tuple)):
        forwards = [forwards] * len(configs)
    if any(not isinstance(f, eqx.Module) and f is not forwards[0] for f in forwards):
        # plain functions carry no arrays to stack: only one shared function can serve every run
        raise ValueError("runs of one program need one shared overrides function, or compiled plans")
    forwards = [as_forward(f) for f in forwards]
    config = configs[0]
    if any(sweep_key(c) != sweep_key(config) for c in configs):
        raise ValueError("runs of one program may differ only in seeds and learning rate")
    parts = [eqx.partition(f, eqx.is_array) for f in forwards]
    static = parts[0][1]
    if any(jax.tree.structure(f) != jax.tree.structure(forwards[0]) for f in forwards):
        raise ValueError("runs of one program need interventions of the same structure")
    forward_arrays = jax.tree.map(lambda *xs: jnp.stack(xs), *[p[0] for p in parts]) if parts[0][0] is not None else None
    task = build_task(config, features)

    def batches(cfg):
        key = jax.random.PRNGKey(cfg.seed.eval)
        return {name: task.sample(jax.random.fold_in(key, i), name, cfg.eval.sequences) for i, name in enumerate(eval_sets(cfg))}

    shared_eval = len({c.seed.eval for c in configs}) == 1
    eval_batches = batches(config) if shared_eval else jax.tree.map(lambda *xs: jnp.stack(xs), *[batches(c) for c in configs])
    steps_per_eval = max(1, round(config.eval.every / config.train.batch))
    layers = config.model.layers
    if model is not None:
        lay = layout(config)
        check_sites(model, jax.eval_shape(lambda key: task.sample(key, eval_sets(config)[0], 1), jax.random.PRNGKey(0)), lay)
        layers = layer_count(declared(model).sites(lay))
    if measures is None:
        measures = measures_fn(config.eval.measures, layers)
    devices = jax.local_devices()
    sharding = None
    if len(configs) > 1 and len(devices) > 1 and len(configs) % len(devices) == 0:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("members",)), PartitionSpec("members"))
    program = Program(configs, static, forward_arrays, task, eval_batches, shared_eval, measures, steps_per_eval, sharding,
                      init_model=factory(model) if model is not None else None)
    program.forward_arrays = program.place(forward_arrays)
    if not shared_eval:
        program.eval_batches = program.place(eval_batches)
    return program


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


def _read_metrics(path: Path, upto_step: int) -> list[dict]:
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a kill
            if rec.get("step", math.inf) <= upto_step:
                records.append(rec)
    return records


def _differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """The dotted settings whose values differ between two config dicts: {name: (old, new)}."""
    out: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


GROWABLE = "train.sequences"
"""The one setting a finished or interrupted run may change: it continues to the new length."""


def _prepare_dir(run_path: Path, config: ExperimentConfig) -> None:
    """Create or reopen a run directory; refuse settings that differ from the run's, naming them.

    Only `train.sequences` may change, and only to at least what the run has checkpointed
    (a schedule whose shape depends on the length, cosine, may not change at all)."""
    run_path.mkdir(parents=True, exist_ok=True)
    config_json = config.model_dump_json(indent=2)
    existing = run_path / "config.json"
    if existing.exists():
        try:
            old = json.loads(existing.read_text())
        except ValueError as exc:
            raise DataError(existing, "unreadable run settings", expected="the config.json `opto run` writes",
                            found=str(exc)) from exc
        diffs = _differences(old, json.loads(config_json))
        others = {k: v for k, v in diffs.items() if k != GROWABLE}
        if others:
            shown = "; ".join(f"{k}: {json.dumps(a)} in the run, {json.dumps(b)} now" for k, (a, b) in others.items())
            raise DataError(existing, "this run directory holds a different experiment",
                            expected=f"the same settings to resume (only {GROWABLE} may change, to continue the run), "
                                     "or a new --out directory", found=shown)
        if diffs:
            meta = checkpoint.read_meta(run_path)
            done = int(meta.get("sequences", meta["step"] * config.train.batch)) if meta else 0
            if config.train.sequences < done:
                raise DataError(existing, f"this run has already trained {done:,} sequences",
                                expected=f"{GROWABLE} of at least {done:,} to continue it", found=f"{config.train.sequences:,}")
            if config.train.schedule == "cosine":
                raise DataError(existing, f"a cosine schedule's shape depends on {GROWABLE}, so this run cannot be continued",
                                expected=f"the run's own {GROWABLE} ({old['train']['sequences']:,}), or a new --out directory")
    checkpoint.atomic_write_text(existing, config_json)


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
) -> list[RunResult]:
    """Train runs that share shapes as one vmapped program (sharded over local devices), each
    written to its own run directory and resumed from its checkpoint.

    Args:
        configs: one per run; they may differ in seeds and learning rate only.
        forwards: one per run (overrides builders, Forwards or None) with the same structure.
        run_dirs: where each run's config, metrics.jsonl, summary.json, checkpoints and curves.png go.
        stop_after_chunks: stop (as if killed) after this many evaluation chunks; for tests.
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
        for path, cfg in zip(paths, configs):
            _prepare_dir(path, cfg)
        metas = [checkpoint.read_meta(p) for p in paths]
        step = min(m["step"] if m is not None else 0 for m in metas)
        if step > 0:
            template = jax.tree.map(lambda x: x[0], state)
            loaded = [checkpoint.load(p, template, step=step)[0] for p in paths]
            state = program.place(jax.tree.map(lambda *xs: jnp.stack(xs), *loaded))
            saved_step = step
        for i, path in enumerate(paths):
            # rows written after the checkpoint resumed from would be written again: drop them
            metrics[i] = _read_metrics(path / "metrics.jsonl", step) if step > 0 else []
            checkpoint.atomic_write_text(path / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics[i]))
    if paths is not None and step >= total_steps and all(_complete(p) for p in paths):
        return [_finished(path, metrics[i], jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, state[0]))
                for i, path in enumerate(paths)]
    if paths is not None:
        for path in paths:
            (path / "summary.json").unlink(missing_ok=True)

    def emit(records: list[dict]) -> None:
        for i, record in enumerate(records):
            metrics[i].append(record)
            if paths is not None:
                with open(paths[i] / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            if on_record is not None:
                on_record(i, record)

    def save(at_state, at_step: int) -> None:
        host = jax.device_get(at_state)  # one transfer, then per-member slices on the host
        for i, path in enumerate(paths):
            member = jax.tree.map(lambda x: x[i], host)
            checkpoint.save(path, member, {"step": at_step, "sequences": at_step * batch, "seeds": configs[i].seed.model_dump()})

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
            bar = Progress(total_steps * batch, mode, "sequences" if n == 1 else f"sequences ({n} runs)", start=step * batch)
            t0 = time.perf_counter()
            keys = program.data_keys()
            while step < total_steps:
                k = min(program.steps_per_eval, total_steps - step)
                new_state, out = program.chunk(k)(state, program.forward_arrays, keys, program.task, program.eval_batches)
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
                emit(records)
                chunks += 1
                bar.update(step * batch, records[0])
                stopping = stops.received is not None
                due = step * batch - last_ckpt_seq >= config.train.checkpoint_every or step >= total_steps or stopping
                if paths is not None and due:
                    save(state, step)
                    saved_step, last_ckpt_seq = step, step * batch
                    for i, path in enumerate(paths):
                        plot_curves(metrics[i], path / "curves.png", type(program.task), title=path.name)
                if stopping:
                    break
                if stop_after_chunks is not None and chunks >= stop_after_chunks and step < total_steps:
                    status = "stopped"
                    break
            if step >= total_steps:
                status = "complete"
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
                checkpoint.atomic_write_text(paths[i] / "summary.json", json.dumps(summary, indent=2))
                if metrics[i]:
                    plot_curves(metrics[i], paths[i] / "curves.png", type(program.task), title=paths[i].name)
            model = jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, state[0])
            results.append(RunResult(model, metrics[i], paths[i] if paths else None, summary))
    if status == "interrupted" and stops.received is not None:
        raise Interrupted(stops.received, {str(r.run_dir): r.summary["sequences"] for r in results})
    return results


def _complete(path: Path) -> bool:
    """Whether a run directory's summary says the run trained to its end."""
    try:
        return json.loads((path / "summary.json").read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def _finished(path: Path, records: list[dict], model) -> RunResult:
    """A run that had already trained to its length: its summary as written, marked so for the caller."""
    summary = json.loads((path / "summary.json").read_text())
    return RunResult(model, records, path, {**summary, "already_complete": True})
