"""The paper's few-shot task, sampled inside jit from a feature table.

A sequence is `e1 l1 ... eP lP q`: by default P distinct classes in random order, one exemplar
each, each given a label, then a query exemplar of one of them. Labels are re-drawn per sequence
from sets of P distinct labels; a fraction of those sets is held out (for P=2, L=5: 2 of the
10 unordered pairs, i.e. 4 of the 20 ordered ones, as in the paper). Training classes are the
table's first `classes`, test classes its last `test_classes`; exemplars `0..train_exemplars-1`
train and the rest are held out. The loss and accuracy are the query's label.

The data settings of the paper's codebase (burstiness, distractors, Zipf-distributed classes,
fixed labels, exemplar noise, a mixture of generators) change how a sequence is drawn; each
evaluation set declares its own draw (`set_draws`). docs/tasks.md gives each setting's meaning.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import SCHEDULABLE, DataConfig, ExperimentConfig
from ..data.features import load_features, synthetic_features
from ..errors import DataError
from .base import Layout, Task, TaskPattern, query_loss_and_accuracy
from .reading import Level, Reading

EVAL_SETS = ("train", "heldout_labels", "heldout_exemplars", "test_classes", "in_context", "in_weights")
LOGGED_SETS = EVAL_SETS[:4]
"""The sets a run scores when `eval.sets` is empty: the paper's four (the in-context and in-weights
sets are chosen with `eval.sets`, so the default metrics stay the paper's)."""
SetName = Literal["train", "heldout_labels", "heldout_exemplars", "test_classes", "in_context", "in_weights"]
MAX_LABEL_SETS = 2_000_000
SAMPLED_LABEL_SETS = 20_000
"""Label sets drawn at random, under fixed labels, when there are more than `MAX_LABEL_SETS`."""
ENUMERATE_LIMIT = 200_000
"""The most training sequences `FewShot.every` enumerates."""


@dataclass(frozen=True)
class Generator:
    """One class sampler of the paper's code (`get_constant_burst_seq_idxs`): `burstiness` items of
    the query's class in the context, as many of one distractor class when `distractors` (and
    burstiness > 0), and the other items `unique` (distinct classes, neither the query's nor the
    distractor's), `no_support` (any classes but those two) or `any`, in random order."""

    burstiness: int
    distractors: bool
    rest: str

    def counts(self, pairs: int) -> tuple[int, int, int]:
        """(items of the query's class, of the distractor class, others) in a context of `pairs`."""
        d = self.burstiness if self.distractors and self.burstiness > 0 else 0
        return self.burstiness, d, pairs - self.burstiness - d

    def distinct(self, pairs: int) -> bool:
        """Whether every context item is a different class, the query's among them: the stream before
        these settings, drawn as it was (P distinct classes in random order, the query one of them)."""
        return self.burstiness == 1 and (self.rest == "unique" or self.counts(pairs)[2] == 0)


@dataclass(frozen=True)
class Draw:
    """How one evaluation set draws its sequences: its class split (`train`, `test`) and exemplar
    split (`train`, `heldout`), its labels (`relabel`: re-drawn per sequence from the training label
    sets; `heldout`: from the held-out ones; `fixed`: each class its own), its generators with their
    weights, and the Zipf exponent of its classes (0: uniform). A `stream` draw follows the training
    stream's values (`StreamValues`: burstiness, distractors, weights and, when `ranked`, the Zipf
    exponent), which a sweep or schedule may change without changing the program; the others are constants."""

    classes: Literal["train", "test"]
    exemplars: Literal["train", "heldout"]
    labels: Literal["relabel", "heldout", "fixed"]
    generators: tuple[Generator, ...]
    weights: tuple[float, ...]
    zipf: float
    stream: bool = False
    ranked: bool = False

    def always_present(self, pairs: int) -> bool:
        """Whether every sequence shows the query's class in its context."""
        return all(g.burstiness > 0 for g in self.generators)


def stream_generators(cfg: DataConfig) -> tuple[Generator, ...]:
    """The training stream's generators: one per `data.mixture` weight, each per-generator setting
    given once for all or once per generator."""
    pick = lambda values, i: values[i if len(values) > 1 else 0]
    return tuple(Generator(pick(cfg.burstiness, i), pick(cfg.distractors, i), pick(cfg.rest, i))
                 for i in range(len(cfg.mixture)))


STREAM_SHAPE_KEYS = frozenset({"burstiness", "distractors", "rest", "mixture"})
"""Data settings that change which labels a context offers (a schedule of them changes the plateau)."""


def plateau_choices(cfg: DataConfig) -> int | None:
    """How many labels a context offers as the query's before the network reads which item matches:
    every item a distinct class (the paper's stream, burstiness 1) gives `pairs`; the query's class
    beside one distractor class of as many items gives 2 (the two most frequent classes' labels).
    None where the stream has no one such number: fixed labels (the weights can know a class's label,
    so the loss need not rest at the context's level), unlike generators mixed, a context without the
    query's class, other items besides the two classes, or a schedule that changes the stream's shape."""
    if not cfg.relabel or any(c.key in STREAM_SHAPE_KEYS for c in cfg.schedule):
        return None
    choices = set()
    for gen in stream_generators(cfg):
        query, distractor, others = gen.counts(cfg.pairs)
        if gen.distinct(cfg.pairs):
            choices.add(cfg.pairs)
        elif query > 0 and distractor == query and others < query:
            choices.add(2)
        else:
            return None
    return choices.pop() if len(choices) == 1 else None


def set_draws(cfg: DataConfig) -> dict[str, Draw]:
    """Every evaluation set's draw: the declaration of what each set measures (docs/tasks.md).

    `train` is the training stream; the three held-out sets are that stream with one thing held out
    (test classes are drawn uniformly: their order has no rank); `in_context` shows the query's class
    in the context with labels re-drawn per sequence (the paper's code's `icl` evaluator: half the
    context the query's class, half a distractor's); `in_weights` gives each class its fixed label
    and keeps the query's class out of the context (its `pure_iwl` evaluator)."""
    gens, weights, lab = stream_generators(cfg), tuple(cfg.mixture), "relabel" if cfg.relabel else "fixed"
    half = Generator(max(1, cfg.pairs // 2), True, "unique")
    absent = Generator(0, False, "unique" if cfg.classes > cfg.pairs else "no_support")
    return {"train": Draw("train", "train", lab, gens, weights, cfg.zipf, True, True),
            "heldout_labels": Draw("train", "train", "heldout", gens, weights, cfg.zipf, True, True),
            "heldout_exemplars": Draw("train", "heldout", lab, gens, weights, cfg.zipf, True, True),
            "test_classes": Draw("test", "train", lab, gens, weights, 0.0, True, False),
            "in_context": Draw("train", "train", "relabel", (half,), (1.0,), 0.0),
            "in_weights": Draw("train", "train", "fixed", (absent,), (1.0,), 0.0)}


VALUES = SCHEDULABLE
"""The `data.*` settings that are values of the training stream rather than its shape: traced inside
the jitted sampler (`StreamValues`), so runs that differ only in them share one program, and a
schedule may change them during training (`DataConfig.schedule`)."""


class StreamValues(eqx.Module):
    """The training stream's `VALUES` as arrays, one row per segment of the run (K rows: the settings
    from `starts[k]` sequences on; one row without a schedule), G columns per generator."""

    starts: jax.Array  # (K,) sequences at which each segment starts; starts[0] == 0
    weights: jax.Array  # (K, G) the generators' weights (data.mixture)
    burstiness: jax.Array  # (K, G)
    distractors: jax.Array  # (K, G)
    zipf: jax.Array  # (K,)
    noise: jax.Array  # (K,)

    def at(self, sequences: jax.Array) -> "StreamValues":
        """The one segment (K=1) in effect after `sequences` training sequences (traceable)."""
        k = jnp.sum(self.starts <= sequences) - 1
        return jax.tree.map(lambda x: x[k][None], self)


def stream_values(cfg: DataConfig) -> StreamValues:
    """The `StreamValues` of these settings (host arrays)."""
    rows = [(start, stream_generators(c), c) for start, c in cfg.segments()]
    return StreamValues(starts=np.array([r[0] for r in rows], np.int32),
                        weights=np.array([r[2].mixture for r in rows], np.float32),
                        burstiness=np.array([[g.burstiness for g in r[1]] for r in rows], np.int32),
                        distractors=np.array([[g.distractors for g in r[1]] for r in rows], bool),
                        zipf=np.array([r[2].zipf for r in rows], np.float32),
                        noise=np.array([r[2].noise for r in rows], np.float32))


def stream_paths(cfg: DataConfig) -> frozenset[str]:
    """Which optional computations the training stream needs at some point of the run: `general` (a
    draw other than the one before the data settings), `absent` (a query whose class the context may
    lack) and `noise`. A program takes the union over its runs; a run without one skips it, so the
    default stream is drawn exactly as before."""
    out = set()
    for _, c in cfg.segments():
        gens = stream_generators(c)
        if c.zipf > 0 or not all(g.distinct(c.pairs) for g in gens):
            out.add("general")
        if any(g.burstiness == 0 for g in gens):
            out.add("absent")
        if c.noise > 0:
            out.add("noise")
    return frozenset(out)


class FewShot(Task):
    """The feature table on device plus the splits; `sample` draws a batch of one set."""

    name: ClassVar[str] = "fewshot"
    sets: ClassVar[tuple[str, ...]] = EVAL_SETS
    logged: ClassVar[tuple[str, ...]] = LOGGED_SETS
    measures: ClassVar[tuple[str, ...]] = ("induction", "prev_token", "prev_token_labels")
    sections: ClassVar[tuple[str, ...]] = ("data",)

    features: jax.Array  # (classes, exemplars, F)
    train_label_sets: jax.Array  # (n_train, P) sorted label sets usable in training
    heldout_label_sets: jax.Array  # (n_heldout, P)
    values: StreamValues  # the training stream's values (per run inside a program's vmap)
    config: DataConfig = eqx.field(static=True)
    paths: frozenset[str] = eqx.field(static=True, default=frozenset())
    """`stream_paths`, of every run of the program."""

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
    def values_of(config: ExperimentConfig) -> StreamValues:
        return stream_values(config.data)

    @staticmethod
    def without_values(config: ExperimentConfig) -> ExperimentConfig:
        """The settings with the stream's `VALUES` at their defaults (their number of generators kept)."""
        n = len(config.data.mixture)
        blank = {"mixture": (1.0,) * n, "burstiness": (1,) * n, "distractors": (True,) * n, "zipf": 0.0, "noise": 0.0,
                 "schedule": ()}
        return config.model_copy(update={"data": config.data.model_copy(update=blank)})

    def with_values(self, values: StreamValues, configs: list[ExperimentConfig] | None = None) -> "FewShot":
        """This task drawing with another run's stream values; with `configs`, taking every path any of
        those runs needs (a program of several runs)."""
        task = eqx.tree_at(lambda t: t.values, self, values)
        if configs is None:
            return task
        paths = frozenset().union(*(stream_paths(c.data) for c in configs))
        return FewShot(task.features, task.train_label_sets, task.heldout_label_sets, task.values, task.config, paths)

    def at(self, sequences: jax.Array) -> "FewShot":
        return eqx.tree_at(lambda t: t.values, self, self.values.at(sequences))

    @staticmethod
    def settings_at(config: ExperimentConfig, sequences: int) -> dict[str, float]:
        """Each scheduled data value in effect from `sequences` on, as `data.KEY` (one per generator,
        `data.KEY[i]`, for a per-generator setting of several generators)."""
        keys = dict.fromkeys(c.key for c in config.data.schedule)
        now = next(c for start, c in reversed(config.data.segments()) if start <= sequences)
        out = {}
        for key in keys:
            value = getattr(now, key)
            if not isinstance(value, tuple):
                out[f"data.{key}"] = float(value)
            elif len(config.data.mixture) == 1:
                out[f"data.{key}"] = float(value[0])
            else:
                gens = len(config.data.mixture)
                out.update({f"data.{key}[{i + 1}]": float(value[i if len(value) > 1 else 0]) for i in range(gens)})
        return out

    @staticmethod
    def reading(config: ExperimentConfig) -> Reading:
        """The paper's reading: the loss rests at ln n, a guess among the n labels the context offers
        (`plateau_choices`: n = 2 on the paper's stream), and the phase change is the query's
        accuracy reaching 0.9. A stream with no one such n (`plateau_choices` says which) has no
        plateau level, rather than a wrong one."""
        n = plateau_choices(config.data)
        levels = {} if n is None else dict(
            loss_levels=(Level(label=f"chance among the context's labels (ln {n})", value=math.log(n)),),
            accuracy_levels=(Level(label=f"chance among the context's labels (1/{n})", value=1 / n),),
            plateau=Level(label=f"ln {n}", value=math.log(n)))
        return Reading(task="fewshot", loss_words="cross-entropy of the query's label (nats)",
                       accuracy_words="accuracy of the query's label", accuracy_phase=0.9,
                       induction_words="attention from the query: correct label − other labels",
                       analysis_words="the query's label", **levels)

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

    def pools(self, which: SetName) -> tuple[int, int, int, int]:
        """(first class, number of classes, first exemplar, number of exemplars) of a set."""
        cfg = self.config
        n_total, n_ex = self.features.shape[:2]
        draw = set_draws(cfg)[which]
        cls = (0, cfg.classes) if draw.classes == "train" else (n_total - cfg.test_classes, cfg.test_classes)
        ex = (0, cfg.train_exemplars) if draw.exemplars == "train" else (cfg.train_exemplars, n_ex - cfg.train_exemplars)
        return (*cls, *ex)

    def sample_indices(self, key: jax.Array, which: SetName, batch: int) -> dict[str, jax.Array]:
        """A batch of `which` as table indices: `classes`, `exemplar_ids` and `labels`, each (B, P+1).

        The last entry of each row is the query; its label is the target and is not shown.
        """
        draw = set_draws(self.config)[which]
        c0, nc, e0, ne = self.pools(which)
        p = self.config.pairs
        k_cls, k_ex, k_lab, k_perm, k_q = jax.random.split(key, 5)
        classes = self._classes(k_cls, k_q, draw, nc, batch) + c0
        ex = jax.random.randint(k_ex, (batch, p + 1), 0, ne) + e0
        labels = self._labels(k_lab, k_perm, draw, classes)
        if self.config.query_label_in_context:  # the paper's --assign_query_label_random
            at = jax.random.randint(jax.random.fold_in(k_q, 1), (batch,), 0, p)
            labels = labels.at[jnp.arange(batch), at].set(labels[:, -1])
        return {"classes": classes, "exemplar_ids": ex, "labels": labels}

    def _stream(self, draw: Draw) -> tuple[list, list, jax.Array, jax.Array, frozenset[str]]:
        """Per generator its burstiness and distractors, the weights, the Zipf exponent, and the paths
        a draw may take: the stream's traced values for a `stream` draw, else the draw's constants."""
        if draw.stream:
            v, g = self.values, len(draw.generators)
            zipf = v.zipf[0] if draw.ranked else jnp.float32(0.0)
            return ([v.burstiness[0, i] for i in range(g)], [v.distractors[0, i] for i in range(g)], v.weights[0],
                    zipf, self.paths)
        gens = draw.generators
        paths = {"general"} if draw.zipf or not all(x.distinct(self.config.pairs) for x in gens) else set()
        paths |= {"absent"} if not draw.always_present(self.config.pairs) else set()
        return ([x.burstiness for x in gens], [x.distractors for x in gens], jnp.asarray(draw.weights, jnp.float32),
                draw.zipf, frozenset(paths))

    def _classes(self, k_cls: jax.Array, k_q: jax.Array, draw: Draw, nc: int, batch: int) -> jax.Array:
        """(B, P+1) class indices within the set's split (the query last): one generator's, or per
        sequence one generator drawn by weight (the paper's `get_mixed_seq_idxs`)."""
        bs, ds, weights, zipf, paths = self._stream(draw)
        rests = [g.rest for g in draw.generators]
        if len(draw.generators) == 1:
            return self._generate(rests[0], bs[0], ds[0], k_cls, k_q, zipf, nc, batch, paths)
        keys = jax.random.split(k_cls, len(draw.generators) + 1)
        each = jnp.stack([self._generate(rests[i], bs[i], ds[i], *jax.random.split(keys[i]), zipf, nc, batch, paths)
                          for i in range(len(rests))])  # (G, B, P+1)
        which = jax.random.categorical(keys[-1], jnp.log(weights), shape=(batch,))
        return each[which, jnp.arange(batch)]

    def _generate(self, rest: str, burstiness, distractors, k_a: jax.Array, k_b: jax.Array, zipf, nc: int, batch: int,
                  paths: frozenset[str]) -> jax.Array:
        """One generator's (B, P+1) class indices: the query's class drawn by weight (rank^-zipf), the
        distractor by weight among the others, the rest as the generator says, in random order.
        `burstiness`, `distractors` and `zipf` may be traced: the context is then filled by position
        (the first b items the query's class, the next d the distractor's, the rest after them) before
        its shuffle, and the draw before these settings is chosen where they ask for it."""
        p = self.config.pairs
        rows = jnp.arange(batch)

        def before(_):  # the stream as it was drawn before these settings, bit for bit
            cls = jax.vmap(lambda k: jax.random.choice(k, nc, (p,), replace=False))(jax.random.split(k_a, batch))
            q = jax.random.randint(k_b, (batch,), 0, p)
            return jnp.concatenate([cls, cls[rows, q][:, None]], axis=1)

        if "general" not in paths:
            return before(None)
        b = jnp.asarray(burstiness, jnp.int32)
        d = jnp.where(jnp.asarray(distractors) & (b > 0), b, 0)
        n_rest = p - b - d

        def general(_):
            logw = -jnp.asarray(zipf, jnp.float32) * jnp.log(jnp.arange(1, nc + 1, dtype=jnp.float32))  # (nc,)
            k_query, k_dis, k_rest = jax.random.split(k_a, 3)
            query = jax.random.categorical(k_query, logw, shape=(batch,))
            taken = jnp.arange(nc)[None] == query[:, None]  # (B, nc)
            dis = jax.random.categorical(k_dis, jnp.where(taken, -jnp.inf, logw), axis=-1)
            taken = taken | ((jnp.arange(nc)[None] == dis[:, None]) & (d > 0))
            masked = jnp.where(taken, -jnp.inf, logw)
            if rest == "unique":  # without replacement, by weight: the top of Gumbel-perturbed log-weights
                others = jax.lax.top_k(masked + jax.random.gumbel(k_rest, (batch, nc)), p)[1]
            else:
                logits = masked if rest == "no_support" else jnp.broadcast_to(logw, (batch, nc))
                others = jax.random.categorical(k_rest, logits[:, None, :], axis=-1, shape=(batch, p))
            i = jnp.arange(p)[None]
            rest_items = jnp.take_along_axis(others, jnp.clip(i - b - d, 0, p - 1), axis=1)
            context = jnp.where(i < b, query[:, None], jnp.where(i < b + d, dis[:, None], rest_items))
            order = jnp.argsort(jax.random.uniform(k_b, (batch, p)), axis=1)  # a random order per sequence
            context = jnp.take_along_axis(context, order, axis=1)
            return jnp.concatenate([context, query[:, None]], axis=1).astype(jnp.int32)

        if isinstance(burstiness, int) and isinstance(distractors, bool) and isinstance(zipf, float):  # constants
            return before(None) if Generator(burstiness, distractors, rest).distinct(p) and zipf == 0 else general(None)
        distinct = (b == 1) & ((rest == "unique") | (n_rest == 0)) & (zipf == 0)
        if not isinstance(distinct, jax.core.Tracer):  # concrete values (an eager draw): no program to build
            return before(None) if bool(distinct) else general(None)
        return jax.lax.cond(distinct, before, general, None)

    def _labels(self, k_lab: jax.Array, k_perm: jax.Array, draw: Draw, classes: jax.Array) -> jax.Array:
        """(B, P+1) labels: each class's fixed label (its index mod L), or per sequence a label set in
        random order, the i-th distinct class of the context (by first appearance) taking its i-th
        label and the query its class's; a query whose class the context lacks takes a label the
        context does not show (it cannot be read from the context)."""
        cfg = self.config
        if draw.labels == "fixed":
            return classes % cfg.labels
        sets_of = self.heldout_label_sets if draw.labels == "heldout" else self.train_label_sets
        batch, p = classes.shape[0], cfg.pairs
        rows = jnp.arange(batch)
        sets = sets_of[jax.random.randint(k_lab, (batch,), 0, sets_of.shape[0])]
        order = jax.vmap(lambda k, s: jax.random.permutation(k, s))(jax.random.split(k_perm, batch), sets)
        context = classes[:, :p]
        first = jnp.argmax(context[:, :, None] == context[:, None, :], axis=-1)  # first position of each item's class
        labels = jnp.take_along_axis(order, first, axis=1)
        present = context == classes[:, -1:]
        query = labels[rows, jnp.argmax(present, axis=1)]
        if "absent" in self._stream(draw)[4]:
            shown = jax.nn.one_hot(labels, cfg.labels).max(axis=1) > 0  # (B, L)
            free = jax.random.categorical(jax.random.fold_in(k_lab, 1), jnp.where(shown & ~shown.all(-1, keepdims=True), -jnp.inf, 0.0))
            query = jnp.where(present.any(axis=1), query, free)
        return jnp.concatenate([labels, query[:, None]], axis=1).astype(jnp.int32)

    def sample(self, key: jax.Array, which: SetName, batch: int) -> dict[str, jax.Array]:
        """A batch of `which`: `exemplars` (B, P+1, F), `labels` (B, P+1), `classes` (B, P+1); with
        `data.noise`, Gaussian noise of that std on every exemplar (the paper's --noise_scale_train)."""
        out = self.gather(self.sample_indices(key, which, batch))
        if "noise" in self.paths:
            scale = self.values.noise[0]
            noise = jax.random.normal(jax.random.fold_in(key, 1), out["exemplars"].shape)
            out = {**out, "exemplars": jnp.where(scale > 0, out["exemplars"] + scale * noise, out["exemplars"])}
        return out

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
        orders), or None for another set, more than `ENUMERATE_LIMIT`, several training exemplars, or
        data settings under which the sequences are not equally likely (or not all distinct classes)."""
        cfg = self.config
        stream = set_draws(cfg)["train"]
        if (len(stream.generators) != 1 or not stream.generators[0].distinct(cfg.pairs) or stream.zipf
                or stream.labels != "relabel" or cfg.query_label_in_context):
            return None  # enumerated sequences are equally likely only in the stream drawn as before
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
        """The query's row only: +1 shared by the correct label tokens (one unless `data.burstiness` > 1),
        -1 shared by the other label tokens; defined where the context shows the query's class."""
        correct = correct_labels(batch["classes"])  # (B, P)
        n_correct, n_other = _counts(correct)
        weights = _query_row(correct / n_correct - (1 - correct) / n_other, t)[:, 0]
        rows = jnp.zeros(weights.shape[:2]).at[:, t - 1].set((correct.sum(-1) > 0).astype(weights.dtype))
        return weights, rows

    @staticmethod
    def induction_pattern(batch: dict[str, jax.Array], strength: jax.Array, t: int) -> jax.Array:
        """The query's row only: s shared by the correct label tokens, 1-s by the other label tokens (all
        on the correct ones when there are no others; evenly over every label token when the context
        lacks the query's class)."""
        correct = correct_labels(batch["classes"])  # (B, P)
        n_correct, n_other = _counts(correct)
        share = correct * strength / n_correct + (1 - correct) * (1 - strength) / n_other
        share = jnp.where(correct.sum(-1, keepdims=True) == correct.shape[1], correct / n_correct, share)
        return _query_row(jnp.where(correct.sum(-1, keepdims=True) == 0, 1 / correct.shape[1], share), t)


def _counts(correct: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per sequence (B, 1), the number of correct and of other label tokens, each at least 1."""
    n = correct.sum(-1, keepdims=True)
    return jnp.maximum(n, 1.0), jnp.maximum(correct.shape[1] - n, 1.0)


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


def label_sets(n_labels: int, pairs: int, heldout_fraction: float, seed: int,
               sample: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Split the unordered sets of `pairs` distinct labels into training and held-out ones (seeded);
    with `sample`, more than `MAX_LABEL_SETS` of them are `MAX_LABEL_SETS` random ones instead."""
    n_sets = math.comb(n_labels, pairs)
    if n_sets > MAX_LABEL_SETS and sample:
        rng = np.random.default_rng(seed)
        sets = np.sort(np.argsort(rng.random((SAMPLED_LABEL_SETS, n_labels)), axis=1)[:, :pairs], axis=1).astype(np.int32)
        sets = np.unique(sets, axis=0)
        n_sets = len(sets)
        order = rng.permutation(n_sets)
    elif n_sets > MAX_LABEL_SETS:
        raise ValueError(f"{n_sets} label sets (labels={n_labels}, pairs={pairs}) is too many to enumerate")
    else:
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
    # a stream of fixed labels reads label sets only in its relabelled evaluation sets: a sample will do
    train, held = label_sets(cfg.labels, cfg.pairs, cfg.heldout_label_fraction, cfg.seed, sample=not cfg.relabel)
    return FewShot(jnp.asarray(features, jnp.float32), jnp.asarray(train), jnp.asarray(held),
                   jax.tree.map(jnp.asarray, stream_values(cfg)), cfg, stream_paths(cfg))


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
