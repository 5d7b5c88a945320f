"""The site protocol: what an Equinox model implements so that a compiled spec can drive it.

A conforming model declares its sites (`sites(layout)`: each site's key, per-sequence shape and
whether its first axis is heads) and is called as `model(batch, overrides)`, returning its logits
and a dict of every declared site's activation, each computed value passed through
`overrides.apply(key, value)` (a `where(mask, value, computed)`) before later sites use it. The
built-in `Transformer` conforms as it is; `docs/embedding.md` has a model of one's own.

The site table a spec resolves against comes from `sites`, so a model may name sites the built-in
one lacks. Keys follow one rule: `L<layer>.<name>` (layers from 1) for layer and head sites,
anything else for a global site; a head site's shape starts with the heads.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, NamedTuple, Protocol, Union, runtime_checkable

import equinox as eqx
import jax

from ..tasks.base import Layout
from .overrides import Overrides


class Site(NamedTuple):
    """One declared site: its shape per sequence (the batch axis comes first in activations and
    is not part of it) and whether its first axis is heads (so `L1.H2.<name>` selects head 2)."""

    shape: tuple[int, ...]
    per_head: bool = False


SiteTable = Mapping[str, Site]
"""Sites by key in forward order; the built-in table (`optodsl.sites.site_table`) has the same fields."""

LAYER_KEY = re.compile(r"^L(\d+)\.(.+)$")
"""A layer or head site's key: `L2.pattern` is site `pattern` of layer 2; any other key is a global site."""


def layer_count(table: SiteTable) -> int:
    """How many layers a site table declares: its highest `L<layer>`, 0 without layer sites."""
    return max((int(m.group(1)) for m in map(LAYER_KEY.match, table) if m), default=0)


@runtime_checkable
class Intervenable(Protocol):
    """An Equinox model a compiled spec can drive (see the module docstring)."""

    def sites(self, layout: Layout) -> SiteTable:
        """Every site the forward records, for sequences of `layout` (the task's); a declaration that
        may read static fields and array shapes only, so it also answers on `eqx.filter_eval_shape`'s
        shape-only model."""

    def __call__(self, batch: dict[str, jax.Array], overrides: Overrides | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Logits where the task reads them (the query's (B, L), or every position's (B, T, V)) and
        each declared site's activation (B, *shape), every one passed through `overrides.apply`."""


@runtime_checkable
class Embedding(Intervenable, Protocol):
    """A model that can also rebuild its `embed` site's computed value, which the
    `prev_token_input` clamp needs (it rebuilds the embeddings, gradients included)."""

    def embed(self, batch: dict[str, jax.Array]) -> jax.Array:
        """The `embed` site's computed value (B, T, D) for `batch`."""


ModelSource = Union[Intervenable, Callable[[jax.Array], Intervenable]]
"""A model of one's own as `train`, `load_trained`, `compile` and `trace` take it: an instance, or a
factory `key -> model` (each run then starts from its own `seed.init`)."""


def factory(model: ModelSource) -> Callable[[jax.Array], Intervenable]:
    """The `key -> model` a source stands for: a factory itself, or one that returns the instance."""
    if isinstance(model, Intervenable) and not isinstance(model, type):
        return lambda key: model
    return model


def declared(model: ModelSource) -> Intervenable:
    """A model of this source to ask for its sites: the instance, or the factory's model as shapes
    only (nothing is initialised)."""
    if isinstance(model, Intervenable) and not isinstance(model, type):
        return model
    return eqx.filter_eval_shape(model, jax.random.PRNGKey(0))


def check_sites(model: ModelSource, batch: dict[str, jax.Array], layout: Layout) -> None:
    """Raise ValueError unless the forward records exactly the declared sites with their declared
    shapes on `batch` (traced for shapes only: nothing is initialised or computed)."""
    make, model = factory(model), declared(model)
    table = model.sites(layout)
    _, acts = eqx.filter_eval_shape(lambda key, b: make(key)(b, Overrides.empty()), jax.random.PRNGKey(0), batch)
    missing = [key for key in table if key not in acts]
    if missing:
        raise ValueError(f"{type(model).__name__} declares sites its forward does not record: {', '.join(missing)}")
    extra = [key for key in acts if key not in table]
    if extra:
        raise ValueError(f"{type(model).__name__} records sites it does not declare in sites(): {', '.join(extra)}")
    for key, site in table.items():
        if tuple(acts[key].shape[1:]) != tuple(site.shape):
            raise ValueError(f"{type(model).__name__}'s site {key} has shape {tuple(acts[key].shape[1:])} per sequence, "
                             f"but sites() declares {tuple(site.shape)}")


def describe(model: ModelSource, layout: Layout) -> dict:
    """A model of one's own as its run directory records it (`model.json`): its class, its site
    table, its parameters' shapes and the hyperparameters it reports (its `hyperparameters()` if it
    has one, else its static fields of plain values), so a reader knows which network ran."""
    shaped = declared(model)
    cls = type(shaped)
    params = {jax.tree_util.keystr(path): list(leaf.shape)
              for path, leaf in jax.tree_util.tree_leaves_with_path(shaped)
              if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct))}
    if callable(getattr(shaped, "hyperparameters", None)):
        hyper = dict(shaped.hyperparameters())
    else:
        hyper = {f.name: getattr(shaped, f.name) for f in dataclasses.fields(shaped)
                 if f.metadata.get("static") and isinstance(getattr(shaped, f.name, None), (bool, int, float, str))}
    return {"class": f"{cls.__module__}.{cls.__qualname__}",
            "sites": {key: {"shape": list(site.shape), "per_head": site.per_head} for key, site in shaped.sites(layout).items()},
            "parameters": params, "hyperparameters": hyper}
