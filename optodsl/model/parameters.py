"""The built-in transformer's parameters by part, and the weight plan the trainer applies to them.

A part of the network (`embed`, `unembed`, `final_norm`, a layer, its attention, MLP or norms, a
head's q/k/v/o slices) is a set of `(path, head)` pairs: a parameter's path as
`jax.tree_util.keystr` writes it (`.blocks[1].wk`) and the head index along its first axis, or None
for the whole array. `parameter_mask` turns such pairs into a pytree of boolean arrays shaped like
the parameters, and `WeightPlan` holds those masks as data (learning-rate scales with schedules and
re-initialisations), so runs that differ only in which parts they freeze share one program.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Paths = tuple[tuple[str, "int | None"], ...]

EMBED = (".w_exemplar", ".b_exemplar", ".w_label", ".pos", ".w_token")
UNEMBED = (".w_out", ".b_out")
HEAD_MATRICES = {"q": "wq", "k": "wk", "v": "wv", "o": "wo"}
"""A head's slices: its query, key, value and output maps (each with the head axis first)."""
LAYER_PARTS = ("attn", "mlp", "norm")
GLOBAL_PARTS = ("embed", "unembed", "final_norm", "norms")


def arrays(model):
    """A model's parameters (its arrays, or their shapes in a shape-only model), the rest None: the
    tree the trainer updates and the masks mirror."""
    return eqx.filter(model, lambda x: isinstance(x, (jax.Array, jax.ShapeDtypeStruct, np.ndarray)))


def block(layer: int) -> str:
    """The path of layer `layer`'s block (layers count from 1)."""
    return f".blocks[{layer - 1}]"


def part_paths(part: str, layers: int, layer: int | None = None, head: int | None = None) -> Paths:
    """The `(path, head)` pairs of one part: a global part (`embed`, `unembed`, `final_norm`,
    `norms`), a layer's `layer`, `attn`, `mlp` or `norm`, or a head's `head` (every slice) or one of
    `q`, `k`, `v`, `o`."""
    if part == "embed":
        return tuple((p, None) for p in EMBED)
    if part == "unembed":
        return tuple((p, None) for p in UNEMBED)
    if part == "final_norm":
        return ((".ln_final", None),)
    if part == "norms":
        return ((".ln_final", None), *((block(i) + name, None) for i in range(1, layers + 1) for name in (".ln", ".ln_mlp")))
    b = block(layer)
    if part == "layer":
        return ((b, None),)
    if part == "attn":
        return tuple((b + "." + w, None) for w in HEAD_MATRICES.values())
    if part == "mlp":
        return tuple((b + name, None) for name in (".w1", ".b1", ".w2", ".b2"))
    if part == "norm":
        return ((b + ".ln", None), (b + ".ln_mlp", None))
    if part == "head":
        return tuple((b + "." + w, head) for w in HEAD_MATRICES.values())
    return ((b + "." + HEAD_MATRICES[part], head),)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def head_selected(paths: Paths, layer: int, head: int) -> bool:
    """Whether `paths` name every slice (q, k, v, o) of head `head` of layer `layer`."""
    return all(any(_under(block(layer) + "." + w, prefix) and h in (None, head) for prefix, h in paths)
               for w in HEAD_MATRICES.values())


def parameter_mask(params, paths: Paths, invert: bool = False):
    """A pytree like `params` (arrays or shapes) of boolean numpy arrays, true on the entries `paths`
    name (everything else with `invert`)."""

    def one(path, leaf):
        key = jax.tree_util.keystr(path)
        mask = np.zeros(leaf.shape, bool)
        for prefix, head in paths:
            if _under(key, prefix):
                if head is None:
                    mask[...] = True
                else:
                    mask[head] = True
        return ~mask if invert else mask

    return jax.tree_util.tree_map_with_path(one, params)


def selects_any(params, paths: Paths) -> bool:
    """Whether `paths` name at least one parameter of `params` (a model of one's own may lack them)."""
    return any(m.any() for m in jax.tree.leaves(parameter_mask(params, paths)))


class RateTerm(eqx.Module):
    """A learning-rate scale on the masked parameters while `start <= sequences < stop`; 0 freezes."""

    mask: object  # pytree of bool arrays shaped like the parameters
    scale: jax.Array
    start: jax.Array
    stop: jax.Array


class ReinitTerm(eqx.Module):
    """Re-initialise the masked parameters (and zero their optimiser moments) at the first step
    whose sequence count reaches `at`, drawing them from the initialiser with `seed`."""

    mask: object
    at: jax.Array
    seed: jax.Array


class WeightPlan(eqx.Module):
    """What trains when and how fast: rate terms multiply per entry, re-initialisations fire once."""

    rates: tuple[RateTerm, ...] = ()
    reinits: tuple[ReinitTerm, ...] = ()

    def rate(self, params, sequences: jax.Array):
        """Each parameter entry's learning-rate multiplier at `sequences`: the product of the active terms'."""
        out = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), jnp.float32), params)
        for term in self.rates:
            active = (term.start <= sequences) & (sequences < term.stop)
            out = jax.tree.map(lambda r, m: jnp.where(m & active, r * term.scale, r), out, term.mask)
        return out

    def update(self, params, updates, old_opt, new_opt, sequences: jax.Array):
        """Parameters after one step, and the optimiser state: an entry at rate 0 keeps its value and
        its optimiser moments exactly (they neither decay nor grow); others move by rate x update."""
        rate = self.rate(params, sequences)
        frozen = jax.tree.map(lambda r: r == 0, rate)
        moved = jax.tree.map(lambda p, u, r, f: jnp.where(f, p, (p + r * u).astype(p.dtype)), params, updates, rate, frozen)
        return moved, _per_parameter(params, lambda new, old: jax.tree.map(
            lambda n, o, f: jnp.where(f, o, n), new, old, frozen), new_opt, old_opt)

    def reinit(self, params, opt_state, fresh: list, sequences: jax.Array, batch: int):
        """Apply the re-initialisations due at the step that starts at `sequences`; `fresh[i]` is the
        initialiser's parameters for `reinits[i].seed`."""
        for term, new in zip(self.reinits, fresh):
            fire = (sequences >= term.at) & (sequences - batch < term.at)
            hit = jax.tree.map(lambda m: m & fire, term.mask)
            params = jax.tree.map(lambda p, n, m: jnp.where(m, n, p), params, new, hit)
            opt_state = _per_parameter(params, lambda s, _: jax.tree.map(
                lambda x, m: jnp.where(m, jnp.zeros_like(x), x), s, hit), opt_state, opt_state)
        return params, opt_state


def _per_parameter(params, fn, new, old):
    """`new` optimiser state with `fn(new_sub, old_sub)` applied to each sub-tree shaped like
    `params` (Adam's moments), the rest (step counts, learning rates) as in `new`."""
    structure = jax.tree.structure(params)

    def like(x) -> bool:
        return isinstance(x, eqx.Module) and jax.tree.structure(x) == structure

    return jax.tree.map(lambda n, o: fn(n, o) if like(n) else n, new, old, is_leaf=like)
