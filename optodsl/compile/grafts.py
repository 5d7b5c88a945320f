"""Graft sources: another run's trained network, and the interventions it runs under.

The paper's code runs a graft's source through the forward function of its own run's settings
(`opto.make_fn_from_opts(graft_in_opts)`, called in `standard_call`), so a source that trained
under clamps or ablations hands over the activations it computed under them. optodsl does the
same with `semantics.graft_source = "own"` (the default): the source's `spec.opto`, resolved
with its `config.json` (and the sweep values its `spec.json` records), is compiled and run with
its schedules read at the end of its training (`train.sequences`) in the evaluation phase, the
network as the source's own last evaluation scored it. `bare` runs the source's network with no
interventions. A source without a `spec.opto` (trained from Python) has no interventions to
apply and runs bare either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import equinox as eqx
import jax.numpy as jnp

from .. import rundir
from ..config import read_run_config, settings_between
from ..errors import DataError, SpecError
from ..model.overrides import Context, Plan
from ..semantics.plan import Member
from ..semantics.spec import resolve_spec
from ..syntax import load_spec

BARE_HINT = 'to graft the source network without its interventions, set semantics.graft_source = "bare"'


class GraftSource(eqx.Module):
    """A graft's source: a trained network and the plan it runs under (None: no interventions).

    Called on a batch it returns `(query logits, activations)` like a model, so the `graft`
    builder reads its sites either way; `sequences` is where the plan's schedules are read."""

    model: eqx.Module
    plan: Plan | None = None
    sequences: int = eqx.field(static=True, default=0)

    def __call__(self, batch):
        if self.plan is None:
            return self.model(batch)
        return self.plan(self.model, batch, Context(sequences=jnp.asarray(self.sequences, jnp.int32), training=False))


def graft_sources(member: Member, grafts: dict | None, compile_member: Callable) -> dict:
    """Each graft source of `member` as the module its `graft` terms call: under
    `semantics.graft_source = "own"` a `GraftSource` running the source run's own interventions
    (a given `GraftSource` is kept as it is), under `bare` the source's network alone."""
    out = dict(grafts or {})
    own = member.config.semantics.graft_source == "own"
    for run in member.grafts:
        given = out[run]
        model = given.model if isinstance(given, GraftSource) else given
        if not own:
            out[run] = model
        elif not isinstance(given, GraftSource):
            out[run] = source_with_plan(Path(run), model, compile_member)
    return out


def source_with_plan(run_dir: Path, model, compile_member: Callable) -> GraftSource:
    """The source network of `run_dir` with the plan of its own spec (none without a spec.opto)."""
    source = source_member(run_dir)
    if source is None or not source.actions:
        return GraftSource(model)
    if source.grafts:
        raise DataError(run_dir / rundir.SPEC_TEXT, "this graft source itself grafts from another run",
                        expected="a source whose own interventions take no graft (one level of grafting)",
                        found="graft from " + ", ".join(source.grafts),
                        hint=f"graft from {source.grafts[0]} directly, or {BARE_HINT}")
    plan = compile_member(source.model_copy(update={"probes": ()}))
    return GraftSource(model, plan, source.config.train.sequences)


def source_member(run_dir: Path) -> Member | None:
    """The run of its own spec.opto that trained in `run_dir`, resolved with its config.json; None
    without a spec.opto."""
    spec_path = run_dir / rundir.SPEC_TEXT
    if not spec_path.is_file():
        return None
    config = read_run_config(run_dir, hint=BARE_HINT, what="run settings of a graft source")
    bindings = (rundir.spec_record(run_dir, hint=BARE_HINT) or {}).get("bindings") or {}
    try:
        member = _member(resolve_spec(load_spec(spec_path), config)[0], bindings)
        if member is not None and member.config != config:  # a --set that overrode one of the spec's own settings
            cli = settings_between(member.config, config)
            member = _member(resolve_spec(load_spec(spec_path), config, cli)[0], bindings)
    except SpecError as err:
        raise DataError(spec_path, "the graft source's spec does not resolve", expected="the spec its run trained with",
                        found=err.message, hint=BARE_HINT) from None
    if member is None or member.config != config:
        raise DataError(spec_path, "cannot tell which of its runs trained in this graft source",
                        expected="a spec.json whose sweep values name one run, and settings equal to its config.json",
                        found=f"sweep values {bindings or 'none'}", hint=BARE_HINT)
    return member


def _member(members: list[Member], bindings: dict) -> Member | None:
    if len(members) == 1:
        return members[0]
    return next((m for m in members if dict(m.bindings) == bindings), None)
