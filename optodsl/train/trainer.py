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
import jax
import jax.numpy as jnp
import optax

from ..config import ExperimentConfig
from ..data.task import Task, make_task
from ..errors import DataError, TrainingError
from ..measures import measures_fn
from ..model.overrides import Context, Forward, as_forward
from ..model.transformer import Transformer, init_model
from . import checkpoint
from .curves import plot_curves

Measures = Callable[[dict[str, jax.Array], dict[str, jax.Array], jax.Array], dict[str, jax.Array]]
"""`(activations, batch, query logits) -> {name: scalar}`, evaluated on each evaluation set."""


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk (`$OPTODSL_CACHE`, default ~/.cache/optodsl/xla) so a rerun skips compiling."""
    import os

    if jax.config.jax_compilation_cache_dir:
        return
    path = os.environ.get("OPTODSL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "optodsl", "xla"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def make_optimizer(cfg: ExperimentConfig) -> optax.GradientTransformation:
    """Adam (or AdamW/SGD) with the configured learning-rate schedule, counted in steps."""
    t = cfg.train
    steps = t.steps
    warm = t.warmup // t.batch
    if t.schedule == "cosine":
        lr = optax.cosine_decay_schedule(t.lr, max(steps, 1))
    elif t.schedule == "linear_warmup":
        lr = optax.linear_schedule(0.0, t.lr, max(warm, 1))
    else:
        lr = t.lr
    if t.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return optax.sgd(lr)
    return optax.adam(lr)


def loss_and_accuracy(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy of query logits (B, L) against target labels (B,)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(logp, targets[:, None], axis=-1).mean()
    acc = (jnp.argmax(logits, axis=-1) == targets).mean()
    return loss, acc


@dataclass
class Program:
    """The jitted pieces of one experiment: initial state, evaluation and the fused chunk."""

    config: ExperimentConfig
    forward: Forward
    task: Task
    optimizer: optax.GradientTransformation
    eval_batches: dict[str, dict[str, jax.Array]]
    measures: Measures | None = None
    steps_per_eval: int = 1
    _chunks: dict[int, Callable] = field(default_factory=dict)

    def init_state(self) -> tuple[Transformer, Any, jax.Array]:
        model = init_model(self.config.model, self.config.data, jax.random.PRNGKey(self.config.seed.init))
        return model, self.optimizer.init(eqx.filter(model, eqx.is_array)), jnp.zeros((), jnp.int32)

    def evaluate(self, model: Transformer, step: jax.Array, task: Task, eval_batches) -> dict[str, jax.Array]:
        """Loss, accuracy and measures of every evaluation set (traceable)."""
        out: dict[str, jax.Array] = {}
        ctx = Context(sequences=step * self.config.train.batch, training=False)
        for name, batch in eval_batches.items():
            logits, acts = self.forward(model, batch, ctx)
            loss, acc = loss_and_accuracy(logits, batch["labels"][:, -1])
            out[f"{name}/loss"], out[f"{name}/accuracy"] = loss, acc
            if self.measures is not None:
                for key, value in self.measures(acts, batch, logits).items():
                    out[f"{name}/{key}"] = value
        return out

    def chunk(self, n_steps: int) -> Callable:
        """The jitted `(state, task, eval_batches) -> (state, metrics)` running `n_steps` then evaluating."""
        if n_steps in self._chunks:
            return self._chunks[n_steps]
        batch_size = self.config.train.batch
        data_key = jax.random.PRNGKey(self.config.seed.data)
        forward, optimizer = self.forward, self.optimizer

        def loss_fn(params, static, batch, ctx):
            logits, _ = forward(eqx.combine(params, static), batch, ctx)
            return loss_and_accuracy(logits, batch["labels"][:, -1])

        def run(state, task, eval_batches):
            model, opt_state, step0 = state
            params, static = eqx.partition(model, eqx.is_array)

            def one(carry, _):
                params, opt_state, step = carry
                batch = task.sample(jax.random.fold_in(data_key, step), "train", batch_size)
                ctx = Context(sequences=step * batch_size, training=True)
                (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, static, batch, ctx)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state, step + 1), (loss, acc)

            (params, opt_state, step), (losses, accs) = jax.lax.scan(one, (params, opt_state, step0), None, length=n_steps)
            model = eqx.combine(params, static)
            metrics = self.evaluate(model, step, task, eval_batches)
            metrics["train_loss"] = losses.mean()
            metrics["train_accuracy"] = accs.mean()
            metrics["finite"] = jnp.all(jnp.isfinite(losses))
            return (model, opt_state, step), metrics

        fn = eqx.filter_jit(run)
        self._chunks[n_steps] = fn
        return fn


def build_program(config: ExperimentConfig, forward: Forward | Callable | None = None, *,
                  features=None, measures: Measures | None = None) -> Program:
    """Assemble task, optimiser and evaluation sets for an experiment."""
    task = make_task(config.data, features)
    eval_key = jax.random.PRNGKey(config.seed.eval)
    eval_batches = {
        name: task.sample(jax.random.fold_in(eval_key, i), name, config.eval.sequences)
        for i, name in enumerate(config.eval.sets)
    }
    steps_per_eval = max(1, round(config.eval.every / config.train.batch))
    if measures is None:
        measures = measures_fn(config.eval.measures, config.model.layers)
    return Program(config, as_forward(forward), task, make_optimizer(config), eval_batches, measures, steps_per_eval)


@dataclass
class RunResult:
    """What `train` returns: the final model, every metrics record and where they were written."""

    model: Transformer
    metrics: list[dict]
    run_dir: Path | None
    summary: dict


def _to_host(metrics: dict[str, jax.Array], step: int, batch: int) -> dict:
    record = {"sequences": step * batch, "step": step}
    record.update({k: (bool(v) if k == "finite" else float(v)) for k, v in jax.device_get(metrics).items()})
    return record


class _Progress:
    """A rich progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool | None):
        enabled = sys.stdout.isatty() if enabled is None else enabled
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("sequences"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task("train", total=total, info="")
            self.bar.start()

    def update(self, seqs: int, record: dict, rate: float) -> None:
        if self.bar is not None:
            info = f"loss {record.get('train/loss', record.get('train_loss', float('nan'))):.4f}  acc {record.get('train/accuracy', float('nan')):.3f}  {rate:,.0f} seq/s"
            self.bar.update(self.task, completed=seqs, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


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


def train(
    config: ExperimentConfig,
    forward: Forward | Callable | None = None,
    run_dir: str | Path | None = None,
    *,
    features=None,
    measures: Measures | None = None,
    progress: bool | None = None,
    stop_after_chunks: int | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train one experiment; with `run_dir`, write it there and resume from its checkpoint if any.

    Args:
        config: the experiment's settings.
        forward: an overrides builder `(model, batch) -> Overrides`, a Forward, or None (no intervention).
        run_dir: where config, metrics.jsonl, summary.json, checkpoints and curves.png go.
        stop_after_chunks: stop (as if killed) after this many evaluation chunks; for tests of resume.
    """
    enable_compilation_cache()
    program = build_program(config, forward, features=features, measures=measures)
    state = program.init_state()
    total_steps = config.train.steps
    batch = config.train.batch
    metrics: list[dict] = []
    run_path = Path(run_dir) if run_dir is not None else None
    ckpt_meta = None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        config_json = config.model_dump_json(indent=2)
        existing = run_path / "config.json"
        if existing.exists() and json.loads(existing.read_text()) != json.loads(config_json):
            raise DataError(existing, "this run directory holds a different experiment",
                            expected="the same resolved configuration to resume, or a new --out directory")
        checkpoint.atomic_write_text(existing, config_json)
        ckpt_meta = checkpoint.read_meta(run_path)
        if ckpt_meta is not None:
            state, ckpt_meta = checkpoint.load(run_path, state)
            metrics = _read_metrics(run_path / "metrics.jsonl", ckpt_meta["step"])
            checkpoint.atomic_write_text(run_path / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
        (run_path / "summary.json").unlink(missing_ok=True)

    def emit(record: dict) -> None:
        metrics.append(record)
        if run_path is not None:
            with open(run_path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if on_record is not None:
            on_record(record)

    if not metrics:
        first = eqx.filter_jit(program.evaluate)(state[0], state[2], program.task, program.eval_batches)
        emit({**_to_host(first, 0, batch), "train_loss": None, "train_accuracy": None})
    step = int(state[2])
    last_ckpt_seq = step * batch
    bar = _Progress(total_steps * batch, progress)
    t0, steps0, chunks = time.perf_counter(), step, 0
    status = "complete"
    try:
        while step < total_steps:
            n = min(program.steps_per_eval, total_steps - step)
            new_state, out = program.chunk(n)(state, program.task, program.eval_batches)
            record = _to_host(out, step + n, batch)
            if not record.pop("finite") or not math.isfinite(record["train_loss"]):
                status = "failed: non-finite loss"
                if run_path is not None and (ckpt_meta is None or ckpt_meta["step"] < step):
                    checkpoint.save(run_path, state, {"step": step, "sequences": step * batch, "seeds": config.seed.model_dump()})
                where = f"; the last good checkpoint (sequences {step * batch}) is in {run_path}" if run_path else ""
                raise TrainingError(
                    f"the training loss became NaN or inf between sequences {step * batch} and {(step + n) * batch}{where}. "
                    f"Try a lower train.lr (now {config.train.lr:g}) or check the interventions' values.")
            state, step = new_state, step + n
            emit(record)
            chunks += 1
            bar.update(step * batch, record, (step - steps0) * batch / max(time.perf_counter() - t0, 1e-9))
            if run_path is not None and (step * batch - last_ckpt_seq >= config.train.checkpoint_every or step >= total_steps):
                ckpt_meta = {"step": step, "sequences": step * batch, "seeds": config.seed.model_dump()}
                checkpoint.save(run_path, state, ckpt_meta)
                last_ckpt_seq = step * batch
                plot_curves(metrics, run_path / "curves.png", title=run_path.name)
            if stop_after_chunks is not None and chunks >= stop_after_chunks and step < total_steps:
                status = "stopped"
                break
    finally:
        bar.close()
        elapsed = time.perf_counter() - t0
        summary = {
            "status": status,
            "sequences": step * batch,
            "step": step,
            "wall_seconds": round(elapsed, 3),
            "steps_per_second": round((step - steps0) / elapsed, 1) if elapsed > 0 and step > steps0 else None,
            "final": {k: v for k, v in (metrics[-1] if metrics else {}).items() if k not in ("sequences", "step")},
        }
        if run_path is not None and status != "stopped":
            checkpoint.atomic_write_text(run_path / "summary.json", json.dumps(summary, indent=2))
            if metrics:
                plot_curves(metrics, run_path / "curves.png", title=run_path.name)
    return RunResult(state[0], metrics, run_path, summary)
