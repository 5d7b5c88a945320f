"""Scores of a trained model under many intervention plans, on a fixed set of sequences, for any task.

Analyses compare dozens of plans (each head ablated, each 8x8 path, ...) on the same sequences,
so plans of the same structure are stacked and evaluated in one compiled program (`lax.map`
over plans and over chunks of sequences). The task decides everything task-specific: its fixed
sequences (`Task.fixed`, or `Task.every` when they can be enumerated: the paper's 78,400 training
sequences), how a chunk of them becomes a batch inside jit (`Task.gather`: only indices live on
the host for the few-shot task) and what is scored per sequence (`Task.score`: the query's label;
the repeated half; every next token).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..compile.lower import CompiledPlan
from ..config import ExperimentConfig
from ..model.overrides import Context
from ..tasks import Task, build_task
from ..tasks.records import TRAIN
from ..train.program import program_key

CHUNK = 2048
POINT_TOKENS = 1 << 19
"""About how many tokens one batched forward over every point may hold (`evaluate_plans_over_points`
takes chunks of up to CHUNK sequences per point within it): larger chunks ran faster on the CPU,
and this bounds the memory of long sequences at many points."""


@dataclass(frozen=True)
class Sequences:
    """Evaluation sequences in the task's `fixed` layout: arrays with a leading sequence axis."""

    name: str
    index: dict[str, np.ndarray]
    enumerated: bool

    def __len__(self) -> int:
        return len(next(iter(self.index.values())))

    def take(self, rows: np.ndarray) -> "Sequences":
        """The sequences at `rows`, in that order."""
        return Sequences(self.name, {k: v[rows] for k, v in self.index.items()}, self.enumerated)


def evaluation_set(config: ExperimentConfig, which: str = TRAIN, n: int | None = None, seed: int = 0) -> tuple[Task, Sequences]:
    """The task and the sequences analyses use: every sequence of the set if the task can enumerate
    them and `n` is None, else `n` (default 10,000) sequences drawn from `seed`."""
    task = build_task(config)
    if n is None:
        every = task.every(which)
        if every is not None:
            return task, Sequences(f"{which} (every sequence)", every, True)
    return task, Sequences(which, task.fixed(which, n or 10_000, seed), False)


@dataclass(frozen=True)
class Outcome:
    """Per-sequence scores of one plan: `scores` is the task's accuracy of each sequence (1 or 0 for
    a single answer; the fraction of scored tokens right for token tasks), `losses` its loss (nats),
    `extra` any further per-sequence score the task offers (the few-shot `accuracy_in_context`)."""

    scores: np.ndarray
    losses: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    positions: np.ndarray | None = None
    """The mean loss at each position over the sequences (`Task.position_losses`), when asked for."""

    @property
    def correct(self) -> np.ndarray:
        """Per sequence, whether every scored answer is right."""
        return self.scores >= 1.0

    @property
    def accuracy(self) -> float:
        return float(self.scores.mean())

    @property
    def loss(self) -> float:
        return float(self.losses.mean())

    def summary(self, in_context: bool = False) -> dict[str, float]:
        """Accuracy and loss, and with `in_context` the further per-sequence scores the task offers
        (the accuracy among the context's labels only, for the few-shot task)."""
        out = {"accuracy": round(self.accuracy, 6), "loss": round(self.loss, 6)}
        if in_context:
            out.update({k: round(float(v.mean()), 6) for k, v in self.extra.items()})
        return out


def evaluate_plans(model, plans: list[CompiledPlan], task: Task, seqs: Sequences, sequences_seen: int = 0,
                   positions: Collection[int] = ()) -> list[Outcome]:
    """Evaluate every plan on `seqs`; plans that share structure and shapes run as one program. The
    outcomes of the plans numbered in `positions` (a task with `per_position`) also have the mean loss
    at each position, summed over the sequences inside the same program (and so do the other plans of
    their program)."""
    n = len(seqs)
    idx = _chunked(seqs, CHUNK)
    valid = _valid(n, CHUNK)
    out: list[Outcome | None] = [None] * len(plans)
    for members, stacked, static in _groups(plans):
        at_positions = any(i in positions for i in members)
        scores, summed = _run_group(model, stacked, static, task, idx, valid, jnp.asarray(sequences_seen), at_positions)
        results = {k: np.asarray(v).reshape(len(members), -1)[:, :n] for k, v in scores.items()}
        at = None if summed is None else np.asarray(summed).sum(1) / n  # (plans, positions)
        for j, i in enumerate(members):
            extra = {k: v[j] for k, v in results.items() if k not in ("loss", "accuracy")}
            out[i] = Outcome(results["accuracy"][j], results["loss"][j], extra, None if at is None else at[j])
    return out


def _chunked(seqs: Sequences, chunk: int) -> dict[str, jax.Array]:
    """`seqs`' arrays zero-padded to whole chunks and shaped (chunks, chunk, ...)."""
    pad = (-len(seqs)) % chunk
    return {k: jnp.asarray(np.pad(v, ((0, pad),) + ((0, 0),) * (v.ndim - 1))).reshape(-1, chunk, *v.shape[1:])
            for k, v in seqs.index.items()}


def _valid(n: int, chunk: int) -> jax.Array:
    """1 for each of the `n` real sequences, 0 for the padding, shaped (chunks, chunk) like `_chunked`."""
    return jnp.asarray(np.arange(n + (-n) % chunk) < n, jnp.float32).reshape(-1, chunk)


def _groups(plans: list[CompiledPlan]) -> list[tuple[list[int], tuple, object]]:
    """Plans of one structure and shapes: (their indices, their arrays stacked and numbered, the shared static part)."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(program_key(plan), []).append(i)
    out = []
    for members in groups.values():
        arrays = [eqx.partition(plans[i], eqx.is_array) for i in members]
        stacked = (jnp.arange(len(members)), jax.tree.map(lambda *xs: jnp.stack(xs), *[a[0] for a in arrays]))
        out.append((members, stacked, arrays[0][1]))
    return out


def evaluate_plans_over_points(params, static, plans: list[CompiledPlan], task: Task, seqs: Sequences,
                               sequences_seen: np.ndarray) -> list[dict[str, np.ndarray]]:
    """`evaluate_plans` at P checkpoints at once: `params` is the networks' arrays stacked on a leading
    axis of P points (`static` their shared rest), `sequences_seen` (P,) each point's training length
    (what schedules see). One program per group of plans, `jax.vmap` over the points: per plan, the
    task's per-sequence scores as arrays (P, sequences)."""
    points = len(sequences_seen)
    width = max((v.shape[1] for v in seqs.index.values() if v.ndim > 1), default=1)
    chunk = int(min(CHUNK, max(64, POINT_TOKENS // (points * width))))
    n = len(seqs)
    idx = _chunked(seqs, chunk)
    valid = _valid(n, chunk)
    out: list[dict[str, np.ndarray] | None] = [None] * len(plans)
    for members, stacked, plan_static in _groups(plans):
        results = _run_points(params, static, stacked, plan_static, task, idx, valid, jnp.asarray(sequences_seen))
        results = {k: np.asarray(v).reshape(points, len(members), -1)[:, :, :n] for k, v in results.items()}
        for j, i in enumerate(members):
            out[i] = {k: v[:, j] for k, v in results.items()}
    return out


@eqx.filter_jit
def _run_points(params, static, stacked, plan_static, task, idx, valid, sequences_seen):
    def per_point(point_params, seen):
        return _score_plans(eqx.combine(point_params, static), stacked, plan_static, task, idx, valid, seen)[0]

    return jax.vmap(per_point)(params, sequences_seen)


def _score_plans(model, stacked, static, task, idx, valid, sequences_seen, positions: bool = False):
    """Per plan of `stacked` (lax.map) and chunk of `idx` (lax.map), the task's per-sequence scores, and
    with `positions` the loss at each position summed over the chunk's real sequences (else None)."""
    ctx = Context(sequences=sequences_seen, training=False)

    def per_plan(numbered):
        plan = eqx.combine(numbered[1], static)

        def per_chunk(chunk):
            index, rows = chunk
            batch = task.gather(index)
            logits, _ = plan(model, batch, ctx)
            summed = (task.position_losses(logits, batch) * rows[:, None]).sum(0) if positions else None
            return task.score(logits, batch), summed

        return jax.lax.map(per_chunk, (idx, valid))

    return jax.lax.map(per_plan, stacked)


_run_group = eqx.filter_jit(_score_plans)


def activations(model, task: Task, seqs: Sequences, limit: int = CHUNK, plan: CompiledPlan | None = None,
                sequences_seen: int = 0) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
    """The activations, batch and logits on the first `limit` sequences (for pattern statistics and
    measures): the plain model's, or under `plan` as an evaluation after `sequences_seen` training
    sequences runs it."""
    batch = task.gather({k: jnp.asarray(v[:limit]) for k, v in seqs.index.items()})
    if plan is None:
        logits, acts = eqx.filter_jit(lambda m, b: m(b))(model, batch)
    else:
        ctx = Context(sequences=jnp.asarray(sequences_seen), training=False)
        logits, acts = eqx.filter_jit(lambda p, m, b, c: p(m, b, c))(plan, model, batch, ctx)
    return acts, batch, logits
