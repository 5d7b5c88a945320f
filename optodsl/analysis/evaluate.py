"""Accuracy of a trained model under many intervention plans, on a fixed set of sequences.

Analyses compare dozens of plans (each head ablated, each 8x8 path, ...) on the same sequences,
so plans of the same structure are stacked and evaluated in one compiled program (`lax.map`
over plans and over chunks of sequences); only indices live on the host, features are gathered
inside jit. The evaluation set is the task's *whole* training set when it can be enumerated
(the paper's 78,400 sequences: 50x49 class orders x 2 queries x 16 label pairs), otherwise a
seeded sample.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..compile.lower import CompiledPlan
from ..config import ExperimentConfig
from ..errors import DataError
from ..model.overrides import Context
from ..tasks import build_task
from ..tasks.fewshot import FewShot as Task
from ..tasks.records import TRAIN
from ..train.program import program_key

ENUMERATE_LIMIT = 200_000
CHUNK = 2048


@dataclass(frozen=True)
class Sequences:
    """Evaluation sequences as indices: classes and exemplar numbers (N, P+1) and labels (N, P+1)."""

    name: str
    classes: np.ndarray
    exemplars: np.ndarray
    labels: np.ndarray
    enumerated: bool

    def __len__(self) -> int:
        return len(self.classes)


def training_sequences(task: Task) -> Sequences | None:
    """Every distinct training sequence, or None when there are too many (or more than one training exemplar)."""
    cfg = task.config
    label_orders = [perm for s in np.asarray(task.train_label_sets) for perm in itertools.permutations(tuple(s))]
    n_orders = math.perm(cfg.classes, cfg.pairs)
    total = n_orders * cfg.pairs * len(label_orders)
    if cfg.train_exemplars != 1 or total > ENUMERATE_LIMIT:
        return None
    orders = np.array(list(itertools.permutations(range(cfg.classes), cfg.pairs)), dtype=np.int32)
    lab = np.array(label_orders, dtype=np.int32)
    o, q, l = np.meshgrid(np.arange(len(orders)), np.arange(cfg.pairs), np.arange(len(lab)), indexing="ij")
    o, q, l = o.ravel(), q.ravel(), l.ravel()
    cls = orders[o]
    labels = lab[l]
    classes = np.concatenate([cls, cls[np.arange(len(o)), q][:, None]], axis=1)
    labels = np.concatenate([labels, labels[np.arange(len(o)), q][:, None]], axis=1)
    return Sequences(f"{TRAIN} (every sequence)", classes, np.zeros_like(classes), labels, True)


def sampled_sequences(task: Task, which: str, n: int, seed: int) -> Sequences:
    """`n` sequences of evaluation set `which`, drawn with the task's own sampler."""
    idx = jax.device_get(task.sample_indices(jax.random.PRNGKey(seed), which, n))
    return Sequences(which, idx["classes"], idx["exemplar_ids"], idx["labels"], False)


def evaluation_set(config: ExperimentConfig, which: str = TRAIN, n: int | None = None, seed: int = 0) -> tuple[Task, Sequences]:
    """The task and the sequences analyses use: all training sequences if enumerable and `n` is None.
    The checkpoint analyses read the few-shot layout (labels, query); other tasks are refused."""
    task = build_task(config)
    if not isinstance(task, Task):
        raise DataError(f"task.name = {config.task.name!r}", "the checkpoint analyses are defined for the few-shot task only",
                        expected='task.name = "fewshot" (they read its labels and query)')
    if which == TRAIN and n is None:
        every = training_sequences(task)
        if every is not None:
            return task, every
    return task, sampled_sequences(task, which, n or 10_000, seed)


@dataclass(frozen=True)
class Outcome:
    """Per-sequence correctness and mean loss of one plan; `in_context`: per sequence, whether the
    query's label wins among the context's labels only (`FewShot.in_context_correct`)."""

    correct: np.ndarray
    loss: float
    in_context: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def summary(self, in_context: bool = False) -> dict[str, float]:
        """Accuracy and loss, and with `in_context` the accuracy among the context's labels only."""
        out = {"accuracy": round(self.accuracy, 6), "loss": round(self.loss, 6)}
        if in_context:
            out["accuracy_in_context"] = round(float(self.in_context.mean()), 6)
        return out


def evaluate_plans(model, plans: list[CompiledPlan], task: Task, seqs: Sequences, sequences_seen: int = 0) -> list[Outcome]:
    """Evaluate every plan on `seqs`; plans that share structure and shapes run as one program."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(program_key(plan), []).append(i)
    n = len(seqs)
    pad = (-n) % CHUNK
    idx = {k: jnp.asarray(np.pad(getattr(seqs, k), ((0, pad), (0, 0)))).reshape(-1, CHUNK, seqs.classes.shape[1])
           for k in ("classes", "exemplars", "labels")}
    out: list[Outcome | None] = [None] * len(plans)
    for members in groups.values():
        arrays = [eqx.partition(plans[i], eqx.is_array) for i in members]
        static = arrays[0][1]
        stacked = (jnp.arange(len(members)), jax.tree.map(lambda *xs: jnp.stack(xs), *[a[0] for a in arrays]))
        results = _run_group(model, stacked, static, task, idx, jnp.asarray(sequences_seen))
        correct, nll, in_context = (np.asarray(r).reshape(len(members), -1)[:, :n] for r in results)
        for j, i in enumerate(members):
            out[i] = Outcome(correct[j], float(nll[j].mean()), in_context[j])
    return out


@eqx.filter_jit
def _run_group(model, stacked, static, task, idx, sequences_seen):
    ctx = Context(sequences=sequences_seen, training=False)

    def per_plan(numbered):
        plan = eqx.combine(numbered[1], static)

        def per_chunk(chunk):
            cls, ex, labels = chunk
            batch = task.gather(cls, ex, labels)
            logits, _ = plan(model, batch, ctx)
            return per_sequence(task, logits, batch)

        return jax.lax.map(per_chunk, (idx["classes"], idx["exemplars"], idx["labels"]))

    return jax.lax.map(per_plan, stacked)


def per_sequence(task: Task, logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each sequence's correctness (B,) and loss (B,), by the task's own `loss_and_accuracy` (the one
    loss, the trainer's) applied to one sequence at a time, and its correctness among the context's
    labels only (B,)."""
    def one(row_logits, row):
        return task.loss_and_accuracy(row_logits[None], jax.tree.map(lambda x: x[None], row))

    loss, accuracy = jax.vmap(one)(logits, batch)
    return accuracy == 1, loss, task.in_context_correct(logits, batch)


def activations(model, task: Task, seqs: Sequences, limit: int = CHUNK, plan: CompiledPlan | None = None,
                sequences_seen: int = 0) -> dict[str, jax.Array]:
    """The activations on the first `limit` sequences (for pattern statistics): the plain model's,
    or under `plan` as an evaluation after `sequences_seen` training sequences runs it."""
    k = min(limit, len(seqs))
    cls, ex, labels = (jnp.asarray(getattr(seqs, a)[:k]) for a in ("classes", "exemplars", "labels"))
    batch = task.gather(cls, ex, labels)
    if plan is None:
        return eqx.filter_jit(lambda m, b: m(b))(model, batch)[1]
    ctx = Context(sequences=jnp.asarray(sequences_seen), training=False)
    return eqx.filter_jit(lambda p, m, b, c: p(m, b, c))(plan, model, batch, ctx)[1]
