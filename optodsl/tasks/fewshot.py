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
from .base import Layout, Task, query_loss_and_accuracy
from .reading import Level, Reading

EVAL_SETS = ("train", "heldout_labels", "heldout_exemplars", "test_classes")
SetName = Literal["train", "heldout_labels", "heldout_exemplars", "test_classes"]
MAX_LABEL_SETS = 2_000_000


class FewShot(Task):
    """The feature table on device plus the splits; `sample` draws a batch of one set."""

    name: ClassVar[str] = "fewshot"
    sets: ClassVar[tuple[str, ...]] = EVAL_SETS
    measures: ClassVar[tuple[str, ...]] = ("induction", "prev_token", "prev_token_labels")
    lacks_patterns: ClassVar[tuple[str, ...]] = ()
    query_rows_as_declared: ClassVar[bool] = True
    verbs: ClassVar[tuple[str, ...]] = ("copy", "attend")

    features: jax.Array  # (classes, exemplars, F)
    train_label_sets: jax.Array  # (n_train, P) sorted label sets usable in training
    heldout_label_sets: jax.Array  # (n_heldout, P)
    config: DataConfig = eqx.field(static=True)

    @staticmethod
    def layout(config: ExperimentConfig) -> Layout:
        t = config.data.seq_len
        roles = {"all": tuple(range(t)), "query": (t - 1,), "labels": label_positions(t),
                 "exemplars": tuple(range(0, t, 2))}
        return Layout(length=t, roles=roles, outputs=config.data.labels, note=" (e1 l1 e2 l2 q for 2 pairs)")

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
        idx = self.sample_indices(key, which, batch)
        return self.gather(idx["classes"], idx["exemplar_ids"], idx["labels"])

    def gather(self, classes: jax.Array, exemplar_ids: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
        """The model's batch for sequences given as table indices."""
        return {"exemplars": self.features[classes, exemplar_ids], "labels": labels, "classes": classes}


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
