"""Overrides (values + boolean masks keyed by site) and the forward protocol the trainer calls.

An override replaces a computed activation `a` at a site by `where(mask, value, a)`: entries
under a true mask are set, every other entry keeps its computed value and its gradient.
Values and masks broadcast against the batched site shape `(B, *site_shape)`, so a mask of
shape `(H, 1, 1)` selects whole heads for every sequence.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp


class Overrides(eqx.Module):
    """Values and masks with the same keys; any subset of the model's sites."""

    values: dict[str, jax.Array]
    masks: dict[str, jax.Array]

    def __check_init__(self):
        if set(self.values) != set(self.masks):
            raise ValueError(f"overrides values and masks need the same keys: {sorted(self.values)} vs {sorted(self.masks)}")

    @staticmethod
    def empty() -> "Overrides":
        return Overrides({}, {})

    def apply(self, key: str, computed: jax.Array) -> jax.Array:
        """The activation at `key` after this override (the computed one if `key` is absent)."""
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
        return Overrides(values, masks)


class Context(eqx.Module):
    """What an intervention may depend on besides the batch: training progress and phase."""

    sequences: jax.Array
    training: bool = eqx.field(static=True, default=True)


class Forward(Protocol):
    """A forward pass under interventions: `(model, batch, ctx) -> (query logits, activations)`."""

    def __call__(self, model: Any, batch: dict[str, jax.Array], ctx: Context) -> tuple[jax.Array, dict[str, jax.Array]]: ...


def as_forward(builder: Callable[..., Overrides] | Forward | None) -> Forward:
    """Wrap an overrides builder `(model, batch) -> Overrides` (or `(model, batch, ctx)`) as a Forward.

    `None` gives the plain forward; an object already marked as a Forward (`is_forward = True`)
    is returned unchanged.
    """
    if builder is None:
        return lambda model, batch, ctx: model(batch)
    if getattr(builder, "is_forward", False):
        return builder
    import inspect

    try:
        n_params = len(inspect.signature(builder).parameters)
    except (TypeError, ValueError):
        n_params = 2
    if n_params >= 3:
        return lambda model, batch, ctx: model(batch, builder(model, batch, ctx))
    return lambda model, batch, ctx: model(batch, builder(model, batch))
