"""Lower resolved actions to `Term`s (masks and parameters as arrays) and run them as a Forward.

Actions that differ only in head or position but share a site, value and schedule merge into
one term with a wider mask, so a spec compiles to few terms. Terms are data: two members of a
sweep whose terms differ only in masks, parameters or schedules have the same structure and
stack into one vmapped program.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import DataConfig, ModelConfig
from ..errors import DataError
from ..model.overrides import Context, Overrides, PathCut, Plan
from ..model.parameters import RateTerm, arrays, ReinitTerm, WeightPlan, parameter_mask, selects_any
from ..model.transformer import for_experiment as build_model
from ..model.protocol import SiteTable
from ..semantics.plan import Action, Member, in_pass, passes_needed
from ..sites import sequence_dims, site_table
from ..tasks import Layout, layout
from .grafts import graft_sources
from .reference import reference_batch
from .values import ENTRIES, value


class Term(eqx.Module):
    """One value builder on one site: where (mask), with what parameters, and when."""

    site: str = eqx.field(static=True)
    builder: str = eqx.field(static=True)
    stage: str = eqx.field(static=True)
    record: str | None = eqx.field(static=True)
    phase: str = eqx.field(static=True)
    mask: jax.Array  # bool, the site's per-sequence shape
    params: dict[str, jax.Array]
    start: jax.Array
    stop: jax.Array
    graft: eqx.Module | None = None
    pattern: Callable | None = eqx.field(static=True, default=None)
    """The task's value of a task-defined pattern (`Layout.patterns`: `induction`, `match`), if this is one."""

    def active(self, ctx: Context) -> jax.Array:
        if (self.phase == "train" and not ctx.training) or (self.phase == "eval" and ctx.training):
            return jnp.asarray(False)
        return (self.start <= ctx.sequences) & (ctx.sequences < self.stop)


def _entries(action: Action, shape: tuple[int, ...], t: int) -> np.ndarray:
    """The per-sequence boolean mask of one action on its site."""
    mask = np.zeros(shape, bool)
    view = mask[action.head] if action.head is not None else mask
    rows = list(action.rows) if action.rows is not None else list(range(view.shape[0]))
    if action.builder in ENTRIES:
        ENTRIES[action.builder](view, rows, t)
    else:
        view[rows] = True
    return mask


def _merge_key(a: Action) -> tuple:
    return (a.site, a.builder, a.params, a.stage, a.record, a.start, a.stop, a.phase)


def lower_actions(actions: tuple[Action, ...], model_cfg: ModelConfig, data_cfg: DataConfig | Layout,
                  grafts: dict | None = None, sites: SiteTable | None = None) -> tuple[Term, ...]:
    """Merge actions into terms in first-appearance order; `data_cfg` is the task's layout (or few-shot
    data settings); `sites` is a model's own site table (default: the built-in transformer's)."""
    table = sites if sites is not None else site_table(model_cfg, data_cfg)
    t = sequence_dims(data_cfg)[0]
    groups: dict[tuple, list[Action]] = {}
    for a in actions:
        groups.setdefault(_merge_key(a), []).append(a)
    terms = []
    for key, group in groups.items():
        a = group[0]
        mask = np.zeros(table[a.site].shape, bool)
        for member in group:
            mask |= _entries(member, table[a.site].shape, t)
        params = {k: jnp.asarray(v, jnp.int32 if k in ("head", "layer", "labels") else jnp.float32)
                  for k, v in a.params if not isinstance(v, str)}
        task_pattern = getattr(data_cfg, "patterns", {}).get(a.builder)
        graft = (grafts or {}).get(a.param("run")) if a.builder == "graft" else None
        terms.append(Term(site=a.site, builder=a.builder, stage=a.stage, record=a.record, phase=a.phase,
                          mask=jnp.asarray(mask), params=params, start=jnp.asarray(a.start, jnp.int32),
                          stop=jnp.asarray(a.stop, jnp.int32), graft=graft,
                          pattern=task_pattern.value if task_pattern is not None else None))
    return tuple(terms)


def overrides(terms, model, batch, ctx: Context, records: dict[str, jax.Array] | None = None,
              means: dict[str, jax.Array] | None = None) -> Overrides:
    """The overrides these terms make for one batch, chained in order (later terms win); `means`
    are the reference set's activations that `= mean` terms average instead of `records`."""
    out = Overrides.empty()
    for term in terms:
        if term.builder == "stopgrad":
            out = out.then(Overrides({}, {}, {term.site: term.mask & term.active(ctx)}))
            continue
        if term.builder == "pathcut":
            cut = PathCut(term.site, term.mask & term.active(ctx), {k: v > 0 for k, v in term.params.items()})
            out = out.then(Overrides({}, {}, paths=(cut,)))
            continue
        source = means if means is not None and term.builder == "mean" else records
        record = source[term.record] if term.record is not None else None
        written = value(term, model, batch, record)
        out = out.then(Overrides({term.site: written}, {term.site: term.mask & term.active(ctx)}))
    return out


class CompiledPlan(Plan):
    """A member's interventions as a Forward: one pass, or a recording pass and a final pass.

    `clean` is `semantics.first_pass = "clean"`, the paper's base pass: the first pass runs only
    the terms that define it (`record` stage), the last pass applies held sites before the other
    terms (so those override what is held, as in the paper's `standard_call`), and `copy` reads
    the first pass. Otherwise the first pass also runs every single-pass term, so held sites agree
    with the spec's other interventions, and `copy` reads the last pass (`_held_logits`).
    `reference` is the fixed set `= mean` terms average over (`semantics.mean_reference`), or
    None for the current batch."""

    terms: tuple[Term, ...]
    clean: bool = eqx.field(static=True, default=False)
    reference: dict[str, jax.Array] | None = None
    weights: WeightPlan | None = None
    """What trains when and how fast (`freeze`, `train only`, `lr_scale`, `reinit`): the trainer applies it."""

    @property
    def passes(self) -> int:
        return passes_needed((t.stage for t in self.terms), "clean" if self.clean else "intervened")

    def __call__(self, model, batch, ctx: Context):
        """Forward `batch` under the plan: `(query logits, activations of the last pass)`."""
        logits, passes = self.each_pass(model, batch, ctx)
        return logits, passes["last"]

    def each_pass(self, model, batch, ctx: Context):
        """Forward `batch` under the plan: `(query logits, {"first": ..., "last": ...})`, each pass's
        activations (a one-pass plan's only pass is both)."""
        records = means = None
        first_pass = "clean" if self.clean else "intervened"
        first = in_pass(self.terms, "first", first_pass)
        if self.passes == 2:
            _, records = model(batch, overrides(first, model, batch, ctx))
        if self.reference is not None and any(t.builder == "mean" for t in self.terms):
            _, means = model(self.reference, overrides(first, model, self.reference, ctx))
        last = in_pass(self.terms, "last", first_pass)
        if self.clean:
            last = [t for t in last if t.builder == "record"] + [t for t in last if t.builder != "record"]
        logits, acts = model(batch, overrides(last, model, batch, ctx, records, means))
        post = in_pass(self.terms, "post", first_pass)
        if post:
            acts = dict(acts)
            reads = (acts if records is None else records) if self.clean else _held_logits(post, last, acts, records, ctx)
            acts["logits"] = overrides(post, model, batch, ctx, reads).apply("logits", acts["logits"])
            logits = acts["logits"][:, -1]
        return logits, {"first": acts if records is None else records, "last": acts}


def _held_logits(post, last, acts, records, ctx: Context) -> dict[str, jax.Array]:
    """What `post` terms read: the last pass's activations, except that a head whose pattern the
    last pass holds at its first-pass value is read at its first-pass attention logits (the logits
    that made the pattern it uses), so `copy` after `prev_token_input` or `preserving` copies the
    match that the held pattern came from."""
    if records is None:
        return acts
    reads = dict(acts)
    for term in post:
        key = term.record
        if key is None or not key.endswith(".attn_logits"):
            continue
        pattern = key.replace(".attn_logits", ".pattern")
        held = [t.mask & t.active(ctx) for t in last if t.builder == "record" and t.site == pattern]
        if not held:
            continue
        heads = jnp.any(jnp.stack(held), axis=(0, 2, 3))  # (H,): heads whose pattern is held
        reads[key] = jnp.where(heads[None, :, None, None], records[key], acts[key])
    return reads


class Probed(Plan):
    """A plan that trains and evaluates as `plan`, plus evaluation-only variants (`eval.perfected`):
    the trainer also scores each evaluation set under every probe."""

    plan: CompiledPlan
    variants: dict[str, CompiledPlan]

    @property
    def probes(self) -> dict[str, CompiledPlan]:
        return self.variants

    @property
    def weights(self) -> WeightPlan | None:
        return self.plan.weights

    def __call__(self, model, batch, ctx: Context):
        return self.plan(model, batch, ctx)


def with_semantics(plan: CompiledPlan | Probed, config) -> CompiledPlan | Probed:
    """`plan` (and each variant of a Probed one) run as the settings' `semantics` say: the first
    pass clean or intervened, and the reference set of its `= mean` terms, if it has any."""
    if isinstance(plan, Probed):
        return Probed(with_semantics(plan.plan, config), {k: with_semantics(v, config) for k, v in plan.variants.items()})
    reference = reference_batch(config) if any(t.builder == "mean" for t in plan.terms) else None
    return CompiledPlan(plan.terms, clean=config.semantics.first_pass == "clean",
                        reference=None if reference is None else {k: jnp.asarray(v) for k, v in reference.items()},
                        weights=plan.weights)


def lower_weights(member: Member, params=None) -> WeightPlan | None:
    """A member's statements on parameters as masks shaped like `params` (the model's arrays or their
    shapes; default: the built-in transformer's), or None without any: data, so members that differ
    only in which parts they freeze, their schedules or rates share one program."""
    if not member.weights:
        return None
    if params is None:
        params = arrays(jax.eval_shape(lambda key: build_model(member.config, key), jax.random.PRNGKey(0)))
    for w in member.weights:
        if not selects_any(params, w.paths):
            raise DataError(w.part, "these parameters are not in the model", expected="a part the built-in transformer names")

    def mask(w):
        return jax.tree.map(jnp.asarray, parameter_mask(params, w.paths, w.invert))

    rates = tuple(RateTerm(mask(w), jnp.asarray(w.scale, jnp.float32), jnp.asarray(w.start, jnp.int32),
                           jnp.asarray(w.stop, jnp.int32)) for w in member.weights if not w.reinit)
    reinits = tuple(ReinitTerm(mask(w), jnp.asarray(w.at, jnp.int32), jnp.asarray(w.seed, jnp.int32))
                    for w in member.weights if w.reinit)
    return WeightPlan(rates, reinits)


def compile_member(member: Member, grafts: dict | None = None,
                   sites: Callable[[Layout], SiteTable] | None = None, params=None) -> CompiledPlan | Probed:
    """A member's actions as a CompiledPlan (a Probed one with `eval.perfected` lines); `grafts`
    maps each graft source to its trained model (or a `GraftSource`); `sites` is the declaration of
    the model the member was resolved against (`model.sites`), if not the built-in transformer. The
    settings' `semantics` decide the first pass, what a graft's source runs under and what `= mean`
    averages over (docs/semantics.md)."""
    missing = set(member.grafts) - set(grafts or {})
    if missing:
        raise DataError(sorted(missing)[0], "graft source not loaded", expected="load it with optodsl.pipeline.load_graft")
    cfg = member.config
    grafts = graft_sources(member, grafts, compile_member)
    table = sites(layout(cfg)) if sites is not None else None
    plan = CompiledPlan(lower_actions(member.actions, cfg.model, layout(cfg), grafts, table),
                        weights=lower_weights(member, params))
    if not member.probes:
        return with_semantics(plan, cfg)
    variants = {f"perfected[{text}]": CompiledPlan(lower_actions(member.actions + extra, cfg.model, layout(cfg), grafts, table))
                for text, extra in member.probes}
    return with_semantics(Probed(plan, variants), cfg)
