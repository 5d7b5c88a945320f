"""Overrides (values + boolean masks keyed by site), the forward protocol, and `Plan`, the type the trainer runs.

An override replaces a computed activation `a` at a site by `where(mask, value, a)`: entries
under a true mask are set, every other entry keeps its computed value and its gradient.
Values and masks broadcast against the batched site shape `(B, *site_shape)`, so a mask of
shape `(H, 1, 1)` selects whole heads for every sequence.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, Callable, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp


class PathCut(eqx.Module):
    """A gradient cut on one path: the head slices that `mask` selects at `read` (a head's `L<i>.q`, `.k`
    or `.v`) read the residual stream as it is, but pass no gradient back to the writes into it that
    `stop` names (`embed`, `L<j>.attn_out` with a (H,) mask of the writing heads, `L<j>.mlp_out`).

    A model that honours it rebuilds the residual stream its reading layer sees with those writes
    under `stop_gradient` (the same sums of the same values, so bitwise the same array) and takes the
    masked entries of `read` from it; only the direct path is cut: a write still reaches the reader
    through the layers in between."""

    read: str = eqx.field(static=True)
    mask: jax.Array  # bool, broadcasting against the batched site (B, H, T, Dh)
    stop: dict[str, jax.Array]

    @property
    def layer(self) -> int:
        """The reading layer (from 1)."""
        return int(self.read.split(".", 1)[0][1:])


class Overrides(eqx.Module):
    """Values and masks with the same keys; any subset of the model's sites. `cuts` are gradient
    stops: where a site's cut mask is true its computed value passes on unchanged but passes no
    gradient back (`where(cut, stop_gradient(a), a)`, bitwise `a` in the forward pass). `paths` are
    gradient cuts on one path each (`PathCut`), which the built-in transformer honours."""

    values: dict[str, jax.Array]
    masks: dict[str, jax.Array]
    cuts: dict[str, jax.Array] = eqx.field(default_factory=dict)
    paths: tuple[PathCut, ...] = ()

    def __check_init__(self):
        if set(self.values) != set(self.masks):
            raise ValueError(f"overrides values and masks need the same keys: {sorted(self.values)} vs {sorted(self.masks)}")

    @staticmethod
    def empty() -> "Overrides":
        return Overrides({}, {})

    def apply(self, key: str, computed: jax.Array) -> jax.Array:
        """The activation at `key` after this override (the computed one if `key` is absent)."""
        if key in self.cuts:
            computed = jnp.where(self.cuts[key], jax.lax.stop_gradient(computed), computed)
        if key not in self.masks:
            return computed
        return jnp.where(self.masks[key], self.values[key], computed)

    def then(self, later: "Overrides") -> "Overrides":
        """Chain two overrides: where `later` masks a site it wins, elsewhere this one stays."""
        values, masks = dict(self.values), dict(self.masks)
        for key in later.masks:
            if key in masks:
                values[key] = jnp.where(later.masks[key], later.values[key], values[key])
                masks[key] = masks[key] | later.masks[key]
            else:
                values[key], masks[key] = later.values[key], later.masks[key]
        cuts = dict(self.cuts)
        for key, cut in later.cuts.items():
            cuts[key] = cuts[key] | cut if key in cuts else cut
        return Overrides(values, masks, cuts, self.paths + later.paths)


class Context(eqx.Module):
    """What an intervention may depend on besides the batch: training progress and phase."""

    sequences: jax.Array
    training: bool = eqx.field(static=True, default=True)


class Forward(Protocol):
    """A forward pass under interventions: `(model, batch, ctx) -> (query logits, activations)`."""

    def __call__(self, model: Any, batch: dict[str, jax.Array], ctx: Context) -> tuple[jax.Array, dict[str, jax.Array]]: ...


class Plan(eqx.Module):
    """A Forward that is an Equinox module and says what it carries: its arrays stack across the
    runs of one program, and `probes` are evaluation-only variants (`eval.perfected`) that the
    trainer also scores. The trainer runs every forward as a Plan (`as_forward`)."""

    @abc.abstractmethod
    def __call__(self, model: Any, batch: dict[str, jax.Array], ctx: Context) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    @property
    def probes(self) -> dict[str, "Plan"]:
        """Evaluation-only variants by name; none unless a subclass carries some."""
        return {}


class _Plain(Plan):
    """The forward with no interventions."""

    def __call__(self, model, batch, ctx):
        return model(batch)


class _Function(Plan):
    """A user's overrides function `(model, batch) -> Overrides`, or `(model, batch, ctx)` when
    `with_ctx`, applied in one pass."""

    fn: Callable[..., Overrides]  # a leaf, so an Equinox-module builder's arrays stay arrays
    with_ctx: bool = eqx.field(static=True)

    def __call__(self, model, batch, ctx):
        return model(batch, self.fn(model, batch, ctx) if self.with_ctx else self.fn(model, batch))


def as_forward(builder: Callable[..., Overrides] | Plan | None) -> Plan:
    """The Plan the trainer runs: `None` is the plain forward, a Plan (e.g. a compiled spec) is
    itself, and an overrides function `(model, batch) -> Overrides` (or `(model, batch, ctx)`,
    told apart by how many parameters it declares) is applied in one pass."""
    if builder is None:
        return _Plain()
    if isinstance(builder, Plan):
        return builder
    try:
        with_ctx = len(inspect.signature(builder).parameters) >= 3
    except (TypeError, ValueError):
        with_ctx = False
    return _Function(builder, with_ctx)
