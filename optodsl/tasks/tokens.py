"""A user's own corpus: a 1-D `.npy` array of integer token ids (`task.source`), next-token loss.

The file is opened memory-mapped and checked (shape, integer dtype, every id in
0..`task.vocab`-1, at least one window) without reading it into memory more than a chunk at a
time; the checked ids then go to the device as int32, so windows of `task.length` tokens are
sampled inside jit from uniform start positions. Every problem names the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import ExperimentConfig, TokensTaskConfig
from ..errors import DataError
from .base import Layout, Task, next_token_loss_and_accuracy, token_patterns
from .reading import Level, Reading

CHECK_CHUNK = 1 << 24


def load_corpus(cfg: TokensTaskConfig) -> np.ndarray:
    """The corpus of `task.source`, memory-mapped and checked against the task settings."""
    if not cfg.source:
        raise DataError("task.source", "the tokens task needs a corpus: task.source is not set",
                        expected='set task.source = "path/to/tokens.npy"')
    path = Path(cfg.source)
    if not path.is_file():
        raise DataError(path, "no such corpus file", expected="a .npy array of token ids (task.source)",
                        hint="a relative task.source in a spec is read beside that spec file; on the command line, from the working directory")
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(path, "not a NumPy .npy file", expected="a 1-D .npy array of integer token ids", found=str(exc)) from exc
    if ids.ndim != 1:
        raise DataError(path, "the corpus must be one flat array of token ids", expected="shape (N,)", found=f"shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataError(path, "token ids must be integers", expected="an integer dtype (int32, uint16, ...)", found=f"dtype {ids.dtype}")
    if len(ids) < cfg.length:
        raise DataError(path, "the corpus is shorter than one window", expected=f"at least task.length={cfg.length} tokens",
                        found=f"{len(ids)} tokens")
    for at in range(0, len(ids), CHECK_CHUNK):
        chunk = np.asarray(ids[at:at + CHECK_CHUNK])
        low, high = int(chunk.min()), int(chunk.max())
        if low < 0 or high >= cfg.vocab:
            bad = int(np.flatnonzero((chunk < 0) | (chunk >= cfg.vocab))[0]) + at
            hint = ("token ids count from 0: write the corpus without negative ids" if low < 0
                    else "raise task.vocab to the corpus's largest id + 1")
            raise DataError(path, "token ids outside the vocabulary", expected=f"ids in 0..{cfg.vocab - 1} (task.vocab={cfg.vocab})",
                            found=f"id {int(ids[bad])} at index {bad}", hint=hint)
    return ids


class Tokens(Task):
    """The corpus on device; `sample` takes windows of `task.length` tokens at uniform starts."""

    name: ClassVar[str] = "tokens"
    sets: ClassVar[tuple[str, ...]] = ("train",)
    measures: ClassVar[tuple[str, ...]] = ("induction", "prev_token", "copying")
    per_position: ClassVar[bool] = True

    corpus: jax.Array  # (N,) int32
    config: TokensTaskConfig = eqx.field(static=True)

    @staticmethod
    def layout(config: ExperimentConfig) -> Layout:
        t = config.task.length
        return Layout(length=t, roles={"all": tuple(range(t))}, outputs=config.task.vocab, vocab=config.task.vocab,
                      patterns=token_patterns(), task="tokens")

    @classmethod
    def check_inputs(cls, config: ExperimentConfig) -> None:
        """The corpus as `build` reads it: header, dtype and id range from its memory map."""
        load_corpus(config.task)

    @classmethod
    def build(cls, config: ExperimentConfig, features=None) -> "Tokens":
        return cls(jnp.asarray(load_corpus(config.task), jnp.int32), config.task)

    @staticmethod
    def reading(config: ExperimentConfig) -> Reading:
        """A corpus has no known stages: its curves with the uniform predictor's level."""
        v = config.task.vocab
        return Reading(task="tokens", loss_words="next-token cross-entropy at every position (nats)",
                       accuracy_words="next-token accuracy at every position",
                       loss_levels=(Level(label=f"uniform (ln {v})", value=math.log(v)),),
                       induction_words="attention to the tokens after earlier occurrences of the current token",
                       analysis_words="the next token at every position")

    def sample(self, key: jax.Array, which: str, batch: int) -> dict[str, jax.Array]:
        """`tokens` (B, T) int32: windows of the corpus at uniform start positions."""
        t = self.config.length
        starts = jax.random.randint(key, (batch, 1), 0, self.corpus.shape[0] - t + 1)
        return {"tokens": self.corpus[starts + jnp.arange(t)]}

    def loss_and_accuracy(self, logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return next_token_loss_and_accuracy(logits, batch["tokens"])
