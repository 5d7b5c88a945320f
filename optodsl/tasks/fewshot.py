"""The paper's few-shot task, sampled inside jit from a feature table.

A sequence is `e1 l1 ... eP lP q`: P distinct classes in random order, one exemplar each,
each given a label, then a query exemplar of one of them. Labels are re-drawn per sequence
from sets of P distinct labels; a fraction of those sets is held out (for P=2, L=5: 2 of the
10 unordered pairs, i.e. 4 of the 20 ordered ones, as in the paper). Training classes are the
table's first `classes`, test classes its last `test_classes`; exemplars `0..train_exemplars-1`
train and the rest are held out. The loss and accuracy are the query's label.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import DataConfig, ExperimentConfig
from ..data.features import load_features, synthetic_features
from ..errors import DataError
from .base import Layout, Task, TaskPattern, query_loss_and_accuracy
from .reading import Level, Reading

EVAL_SETS = ("train", "heldout_labels", "heldout_exemplars", "test_classes")
SetName = Literal["train", "heldout_labels", "heldout_exemplars", "test_classes"]
MAX_LABEL_SETS = 2_000_000
ENUMERATE_LIMIT = 200_000
"""The most training sequences `FewShot.every` enumerates."""


class FewShot(Task):
    """The feature table on device plus the splits; `sample` draws a batch of one set."""

    name: ClassVar[str] = "fewshot"
    sets: ClassVar[tuple[str, ...]] = EVAL_SETS
    measures: ClassVar[tuple[str, ...]] = ("induction", "prev_token", "prev_token_labels")
    sections: ClassVar[tuple[str, ...]] = ("data",)

    features: jax.Array  # (classes, exemplars, F)
    train_label_sets: jax.Array  # (n_train, P) sorted label sets usable in training
    heldout_label_sets: jax.Array  # (n_heldout, P)
    config: DataConfig = eqx.field(static=True)

    @staticmethod
    def layout(config: ExperimentConfig) -> Layout:
        t = config.data.seq_len
        roles = {"all": tuple(range(t)), "query": (t - 1,), "labels": label_positions(t),
                 "exemplars": tuple(range(0, t, 2))}
        patterns = {"induction": TaskPattern(_induction, "query"), "match": TaskPattern(_match, "query")}
        return Layout(length=t, roles=roles, outputs=config.data.labels, note=" (e1 l1 e2 l2 q for 2 pairs)",
                      patterns=patterns, verbs=("copy", "attend"), task="fewshot")

    @classmethod
    def build(cls, config: ExperimentConfig, features=None) -> "FewShot":
        return make_task(config.data, features)

    @staticmethod
    def reading(config: ExperimentConfig) -> Reading:
        """The paper's reading: the loss rests at ln 2 (a guess between the two context labels) and the
        phase change is the query's accuracy reaching 0.9."""
        pairs = config.data.pairs
        return Reading(task="fewshot", loss_words="cross-entropy of the query's label (nats)",
                       accuracy_words="accuracy of the query's label",
                       loss_levels=(Level(label=f"chance among the context's labels (ln {pairs})", value=math.log(pairs)),),
                       accuracy_levels=(Level(label=f"chance among the context's labels (1/{pairs})", value=1 / pairs),),
                       plateau=Level(label=f"ln {pairs}", value=math.log(pairs)), accuracy_phase=0.9,
                       induction_words="attention from the query: correct label − other labels",
                       analysis_words="the query's label")

    def loss_and_accuracy(self, logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """The query's label: logits (B, L) against the last label of each row."""
        return query_loss_and_accuracy(logits, batch["labels"][:, -1])

    def in_context_correct(self, logits: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        """Per sequence (B,), whether the query's label wins among the labels in its context only (the
        paper's accuracy takes the argmax over every label; this one asks only which pair it copied)."""
        context = batch["labels"][:, :-1]  # (B, P)
        chosen = jnp.take_along_axis(logits, context, axis=-1).argmax(-1)  # (B,)
        return jnp.take_along_axis(context, chosen[:, None], axis=-1)[:, 0] == batch["labels"][:, -1]

    def inputs(self, batch: dict[str, jax.Array]) -> dict[str, list]:
        """The first sequence's class of each exemplar (the query's last) and each label (the query's is its target)."""
        return {"classes": np.asarray(batch["classes"][0]).tolist(), "labels": np.asarray(batch["labels"][0]).tolist()}

    def words(self, batch: dict[str, jax.Array]) -> list[str]:
        seq = self.inputs(batch)
        cls, lab = seq["classes"], seq["labels"]
        out = []
        for i in range(self.config.pairs):
            out += [f"e{i + 1}(class {cls[i]})", f"l{i + 1}(label {lab[i]})"]
        return out + [f"q(class {cls[-1]}, target label {lab[-1]})"]

    def readout(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, object]:
        """The predicted and the target label of the first sequence's query."""
        return {"prediction": int(jnp.argmax(logits[0])), "target": int(batch["labels"][0, -1])}

    def pools(self, which: SetName) -> tuple[int, int, int, int, jax.Array]:
        """(first class, number of classes, first exemplar, number of exemplars, label sets) of a set."""
        cfg = self.config
        n_total, n_ex = self.features.shape[:2]
        train_cls = (0, cfg.classes)
        test_cls = (n_total - cfg.test_classes, cfg.test_classes)
        train_ex = (0, cfg.train_exemplars)
        held_ex = (cfg.train_exemplars, n_ex - cfg.train_exemplars)
        cls, ex, labels = {
            "train": (train_cls, train_ex, self.train_label_sets),
            "heldout_labels": (train_cls, train_ex, self.heldout_label_sets),
            "heldout_exemplars": (train_cls, held_ex, self.train_label_sets),
            "test_classes": (test_cls, train_ex, self.train_label_sets),
        }[which]
        return (*cls, *ex, labels)

    def sample_indices(self, key: jax.Array, which: SetName, batch: int) -> dict[str, jax.Array]:
        """A batch of `which` as table indices: `classes`, `exemplar_ids` and `labels`, each (B, P+1).

        The last entry of each row is the query; its label is the target and is not shown.
        """
        c0, nc, e0, ne, label_sets = self.pools(which)
        p = self.config.pairs
        k_cls, k_ex, k_lab, k_perm, k_q = jax.random.split(key, 5)
        cls = jax.vmap(lambda k: jax.random.choice(k, nc, (p,), replace=False))(jax.random.split(k_cls, batch)) + c0
        ex = jax.random.randint(k_ex, (batch, p + 1), 0, ne) + e0
        sets = label_sets[jax.random.randint(k_lab, (batch,), 0, label_sets.shape[0])]
        labels = jax.vmap(lambda k, s: jax.random.permutation(k, s))(jax.random.split(k_perm, batch), sets)
        q = jax.random.randint(k_q, (batch,), 0, p)
        rows = jnp.arange(batch)
        classes = jnp.concatenate([cls, cls[rows, q][:, None]], axis=1)
        labels = jnp.concatenate([labels, labels[rows, q][:, None]], axis=1)
        return {"classes": classes, "exemplar_ids": ex, "labels": labels}

    def sample(self, key: jax.Array, which: SetName, batch: int) -> dict[str, jax.Array]:
        """A batch of `which`: `exemplars` (B, P+1, F), `labels` (B, P+1), `classes` (B, P+1)."""
        return self.gather(self.sample_indices(key, which, batch))

    def gather(self, index: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The model's batch for sequences given as table indices (`classes`, `exemplar_ids`, `labels`):
        only indices live on the host, features are looked up inside jit."""
        classes = index["classes"]
        return {"exemplars": self.features[classes, index["exemplar_ids"]], "labels": index["labels"], "classes": classes}

    def fixed(self, which: str, n: int, seed: int) -> dict[str, np.ndarray]:
        """`n` sequences of `which` as table indices, drawn with the training sampler from `seed`."""
        return jax.device_get(self.sample_indices(jax.random.PRNGKey(seed), which, n))

    def every(self, which: str) -> dict[str, np.ndarray] | None:
        """Every distinct training sequence (the paper's 78,400: 50x49 class orders x 2 queries x 16 label
        orders), or None for another set, more than `ENUMERATE_LIMIT`, or several training exemplars."""
        cfg = self.config
        label_orders = [perm for s in np.asarray(self.train_label_sets) for perm in itertools.permutations(tuple(s))]
        total = math.perm(cfg.classes, cfg.pairs) * cfg.pairs * len(label_orders)
        if which != "train" or cfg.train_exemplars != 1 or total > ENUMERATE_LIMIT:
            return None
        orders = np.array(list(itertools.permutations(range(cfg.classes), cfg.pairs)), dtype=np.int32)
        lab = np.array(label_orders, dtype=np.int32)
        o, q, l = (a.ravel() for a in np.meshgrid(np.arange(len(orders)), np.arange(cfg.pairs), np.arange(len(lab)), indexing="ij"))
        cls, labels, rows = orders[o], lab[l], np.arange(len(o))
        classes = np.concatenate([cls, cls[rows, q][:, None]], axis=1)
        labels = np.concatenate([labels, labels[rows, q][:, None]], axis=1)
        return {"classes": classes, "exemplar_ids": np.zeros_like(classes), "labels": labels}

    def score(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per sequence: the query label's loss, whether it is the argmax over every label (the paper's
        accuracy), and whether it wins among the context's labels only (`accuracy_in_context`)."""
        target = batch["labels"][:, -1]
        logp = jax.nn.log_softmax(logits, axis=-1)
        loss = -jnp.take_along_axis(logp, target[:, None], axis=-1)[:, 0]
        correct = (jnp.argmax(logits, axis=-1) == target).astype(jnp.float32)
        return {"loss": loss, "accuracy": correct, "accuracy_in_context": self.in_context_correct(logits, batch).astype(jnp.float32)}

    def answers(self, index: dict[str, np.ndarray]) -> np.ndarray | None:
        """The query's label of each sequence."""
        return np.asarray(index["labels"])[:, -1]

    @staticmethod
    def induction_weights(batch: dict[str, jax.Array], t: int) -> tuple[jax.Array, jax.Array]:
        """The query's row only: +1 on the correct label token, -1/(P-1) on each other label token."""
        correct = correct_labels(batch["classes"])  # (B, P)
        n_other = jnp.maximum(correct.shape[1] - 1, 1)
        weights = _query_row(correct - (1 - correct) / n_other, t)[:, 0]
        rows = jnp.zeros(weights.shape[:2]).at[:, t - 1].set(1.0)
        return weights, rows

    @staticmethod
    def induction_pattern(batch: dict[str, jax.Array], strength: jax.Array, t: int) -> jax.Array:
        """The query's row only: s on the correct label token, 1-s shared by the other label tokens."""
        correct = correct_labels(batch["classes"])  # (B, P)
        n_other = jnp.maximum(correct.shape[1] - 1, 1)
        return _query_row(correct * strength + (1 - correct) * (1 - strength) / n_other, t)


def _induction(params, batch, t):
    return FewShot.induction_pattern(batch, params["strength"], t)


def _match(params, batch, t):
    """The `match` pattern: the query's row weighs the context's label tokens by the softmax of the
    cosine between the query's exemplar feature and each context exemplar's, at temperature t."""
    ex = batch["exemplars"]
    unit = ex / jnp.linalg.norm(ex, axis=-1, keepdims=True)
    cos = (unit[:, :-1] * unit[:, -1:]).sum(-1)  # (B, P)
    temp = params["temperature"]
    soft = jax.nn.softmax(cos / jnp.maximum(temp, 1e-6), axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(cos, axis=-1), cos.shape[1])
    return _query_row(jnp.where(temp > 0, soft, hard), t)


def _query_row(weights: jax.Array, t: int) -> jax.Array:
    """(B, P) weights on the label tokens, placed on the query row of a (B, 1, T, T) pattern."""
    b = weights.shape[0]
    row = jnp.zeros((b, t)).at[:, jnp.asarray(label_positions(t))].set(weights)
    return jnp.zeros((b, 1, t, t)).at[:, 0, t - 1].set(row)


def label_positions(t: int) -> tuple[int, ...]:
    """The label tokens' positions 1, 3, ... of an `e1 l1 e2 l2 ... q` sequence of length t: the
    `labels` role, read by the patterns, the copy and the induction-strength measure."""
    return tuple(range(1, t - 1, 2))


def correct_labels(classes: jax.Array) -> jax.Array:
    """(B, P) 1.0 where a context pair's class is the query's (its label is the answer), else 0.0, from
    a batch's `classes` (B, P+1); read by the `induction` pattern and the induction-strength measure."""
    return (classes[:, :-1] == classes[:, -1:]).astype(jnp.float32)


def label_sets(n_labels: int, pairs: int, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the unordered sets of `pairs` distinct labels into training and held-out ones (seeded)."""
    n_sets = math.comb(n_labels, pairs)
    if n_sets > MAX_LABEL_SETS:
        raise ValueError(f"{n_sets} label sets (labels={n_labels}, pairs={pairs}) is too many to enumerate")
    sets = np.array(list(itertools.combinations(range(n_labels), pairs)), dtype=np.int32)
    order = np.random.default_rng(seed).permutation(n_sets)
    n_held = int(round(heldout_fraction * n_sets))
    if heldout_fraction > 0:
        n_held = min(max(n_held, 1), n_sets - 1)
    held, train = sets[order[:n_held]], sets[order[n_held:]]
    return train, (held if len(held) else train)


def make_task(cfg: DataConfig, features: np.ndarray | None = None) -> FewShot:
    """Build the task: synthetic features unless `cfg.source` names a file (or `features` is given)."""
    if features is None:
        if cfg.source == "synthetic":
            features = synthetic_features(cfg.total_classes, cfg.exemplars, cfg.feature_dim, cfg.proto_noise, cfg.shared, seed=cfg.seed)
        else:
            features = load_features(cfg.source)
            check_shape(cfg, features, cfg.source)
    train, held = label_sets(cfg.labels, cfg.pairs, cfg.heldout_label_fraction, cfg.seed)
    return FewShot(jnp.asarray(features, jnp.float32), jnp.asarray(train), jnp.asarray(held), cfg)


def check_shape(cfg: DataConfig, features: np.ndarray, path: str) -> None:
    """Refuse a feature table that does not fit the data settings, naming what differs."""
    n_cls, n_ex, dim = features.shape
    problems = []
    if dim != cfg.feature_dim:
        problems.append(f"feature_dim is {dim}, data.feature_dim says {cfg.feature_dim}")
    if n_cls < cfg.classes + cfg.test_classes:
        problems.append(f"{n_cls} classes cannot hold data.classes={cfg.classes} + data.test_classes={cfg.test_classes}")
    if n_ex <= cfg.train_exemplars:
        problems.append(f"{n_ex} exemplars per class leave none held out (data.train_exemplars={cfg.train_exemplars})")
    if problems:
        raise DataError(path, "feature table does not fit the data settings", expected="; ".join(problems),
                        found=f"shape {features.shape}")
