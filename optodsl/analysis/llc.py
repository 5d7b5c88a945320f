"""The local learning coefficient (LLC; Lau et al. 2023, as the devinterp library estimates it):
SGLD chains localised at a checkpoint w*,

    w <- w - (eps/2) (nbeta * grad L_batch(w) + gamma (w - w*)) + N(0, eps),

and LLC = nbeta * (E_chain[L(w)] - L(w*)), averaged over the draws after burn-in and over chains.
Each draw's L(w) - L(w*) is taken on the same batch (common random numbers: far less variance).
`nbeta` (n times beta, beta = 1/log n) defaults to batch / log(batch), devinterp's `default_nbeta`.
With a mask only the masked parameters move (Wang et al.'s refined LLC, e.g. one head's q/k/v/o).

One program: `jax.vmap` over chains and over checkpoints (a stacked pytree), `lax.scan` over steps.
Convergence is reported per point: the chains' traces, the spread of the per-chain estimates and a
split-R-hat over the draws; `converged` is False when R-hat exceeds 1.1 or a chain diverged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from pydantic import BaseModel, ConfigDict, Field

RHAT_LIMIT = 1.1


class LLCSettings(BaseModel):
    """SGLD hyperparameters (docs/series.md compares them with devinterp's defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    chains: int = Field(4, ge=1)
    steps: int = Field(200, ge=2, description="SGLD steps per chain, burn-in included")
    burn_in: int = Field(100, ge=0, description="steps discarded before the draws")
    eps: float = Field(1e-4, gt=0, description="SGLD step size")
    gamma: float = Field(100.0, ge=0, description="localisation strength")
    nbeta: float | None = Field(None, gt=0, description="n * beta; default batch / log(batch)")
    batch: int = Field(32, ge=2, description="sequences per SGLD batch")
    seed: int = 0

    def inverse_temperature(self) -> float:
        return self.nbeta if self.nbeta is not None else self.batch / math.log(self.batch)


class LLCPoint(BaseModel):
    """One checkpoint's estimate with its convergence check."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sequences: int
    llc: float
    llc_std: float = Field(description="standard deviation of the per-chain estimates")
    chains: list[float]
    rhat: float | None = Field(description="split-R-hat of the draws' loss differences (None with one chain)")
    converged: bool
    trace: list[list[float]] = Field(description="each chain's nbeta * (L(w) - L(w*)) per step, burn-in included")


class LLCResult(BaseModel):
    """`llc.json`: what `opto llc` writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    run: str
    settings: LLCSettings
    nbeta: float
    weights: str = Field(description="'all', or the head whose q/k/v/o slices alone moved (e.g. L2.H3)")
    interventions: str = Field(description="'own' (the run's training interventions applied) or 'bare'")
    points: list[LLCPoint]


def estimate(loss_fn: Callable, params: Any, sample: Callable[[jax.Array], Any], settings: LLCSettings,
             mask: Any = None, extra: Any = None) -> dict[str, np.ndarray]:
    """LLC estimates at each of P checkpoints `params` (a pytree of arrays stacked on a leading axis).

    `loss_fn(params, batch)` (or `(params, batch, extra)` with `extra` stacked per point) is the mean
    loss; `sample(key)` draws one batch; `mask` (the structure of one point's params, 1 where a
    parameter moves) restricts the chains. Returns numpy arrays: `llc` (P,), `chains` (P, C) and
    `trace` (P, C, steps) of nbeta * (L_batch(w) - L_batch(w*)), `rhat` (P,) and `finite` (P,).
    """
    nbeta = settings.inverse_temperature()
    eps, gamma = settings.eps, settings.gamma
    loss = loss_fn if extra is not None else (lambda p, b, _: loss_fn(p, b))
    key = jax.random.PRNGKey(settings.seed)
    chain_keys = jax.random.split(key, settings.chains)

    one = jax.tree.map(lambda x: x[0], params)
    flat_one, unravel = ravel_pytree(one)
    flat_mask = None if mask is None else ravel_pytree(jax.tree.map(lambda m, x: jnp.broadcast_to(m, x.shape).astype(x.dtype),
                                                                    mask, one))[0]

    def chain(w_star, aux, chain_key):
        # the chain moves a flat vector of the point's parameters: one noise draw per step
        noise_key, batch_key = jax.random.split(chain_key)
        flat_star, _ = ravel_pytree(w_star)

        def flat_loss(w, batch):
            return loss(unravel(w), batch, aux)

        def step(w, t):
            batch = sample(jax.random.fold_in(batch_key, t))
            value, grad = jax.value_and_grad(flat_loss)(w, batch)
            at_star = flat_loss(flat_star, batch)
            noise = jax.random.normal(jax.random.fold_in(noise_key, t), w.shape, w.dtype)
            move = -0.5 * eps * (nbeta * grad + gamma * (w - flat_star)) + math.sqrt(eps) * noise
            if flat_mask is not None:
                move = flat_mask * move
            return w + move, nbeta * (value - at_star)

        _, trace = jax.lax.scan(step, flat_star, jnp.arange(settings.steps))
        return trace

    per_point = jax.vmap(chain, in_axes=(None, None, 0))
    program = jax.jit(jax.vmap(per_point, in_axes=(0, 0 if extra is not None else None, None)))
    trace = np.asarray(program(params, extra, chain_keys), np.float64)
    draws = trace[:, :, settings.burn_in:]
    chains = draws.mean(axis=2)
    return {"llc": chains.mean(axis=1), "chains": chains, "trace": trace, "rhat": split_rhat(draws),
            "finite": np.isfinite(trace).all(axis=(1, 2))}


def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split-R-hat (Gelman et al.) of draws (P, C, N) per point: each chain's draws cut in two halves;
    NaN with a single chain or too few draws."""
    p, c, n = draws.shape
    half = n // 2
    if c < 2 or half < 2:
        return np.full(p, np.nan)
    parts = np.concatenate([draws[:, :, :half], draws[:, :, n - half:]], axis=1)  # (P, 2C, half)
    within = parts.var(axis=2, ddof=1).mean(axis=1)
    between = half * parts.mean(axis=2).var(axis=1, ddof=1)
    pooled = (half - 1) / half * within + between / half
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(pooled / within)


def head_mask(model: Any, layer: int, head: int) -> Any:
    """A mask (the structure of `model`'s arrays) that is 1 on head `head` of layer `layer` (counting
    from 1) of the built-in transformer: its slices of wq, wk, wv (H, D, Dh) and wo (H, Dh, D)."""
    params = eqx.filter(model, eqx.is_array)
    mask = jax.tree.map(jnp.zeros_like, params)
    block = mask.blocks[layer - 1]
    for name in ("wq", "wk", "wv", "wo"):
        mask = eqx.tree_at(lambda m, name=name: getattr(m.blocks[layer - 1], name), mask,
                           getattr(block, name).at[head].set(1.0))
    return mask


def points_of(result: dict[str, np.ndarray], sequences: list[int]) -> list[LLCPoint]:
    """The estimate's arrays as one LLCPoint per checkpoint."""
    out = []
    for i, seen in enumerate(sequences):
        rhat = float(result["rhat"][i])
        finite = bool(result["finite"][i])
        out.append(LLCPoint(
            sequences=seen, llc=float(result["llc"][i]) if finite else float("nan"),
            llc_std=float(result["chains"][i].std()) if finite else float("nan"),
            chains=[float(x) for x in result["chains"][i]], rhat=None if math.isnan(rhat) else rhat,
            converged=finite and (math.isnan(rhat) or rhat <= RHAT_LIMIT),
            trace=[[round(float(x), 6) for x in row] for row in result["trace"][i]]))
    return out


def run_llc(run_dir: Path, settings: LLCSettings, head: str | None = None, over_training: bool = False,
            bare: bool = False) -> tuple[LLCResult, list[str]]:
    """The LLC of a run's latest checkpoint (and, `over_training`, of every point of its series) on its
    task's training batches and loss, under its own training interventions unless `bare`; one program
    over points and chains. Returns the result and the series' problems (damaged points skipped)."""
    from ..model.overrides import Context, as_forward
    from ..tasks import build_task
    from ..tasks.records import TRAIN
    from .heads import Planner
    from .overtraining import load_points
    from .runs import load_run

    run = load_run(run_dir)
    task = build_task(run.config)
    forward = as_forward(Planner(run, bare).plan(""))
    points = load_points(run, over_training)
    stacked, static, sequences, problems = points.params, points.static, points.sequences, points.problems
    mask = None
    if head is not None:
        layer, index = parse_head(head, run.config)
        mask = head_mask(run.model, layer, index)

    def loss_fn(params, batch, seen):
        logits, _ = forward(eqx.combine(params, static), batch, Context(sequences=seen, training=True))
        return task.loss_and_accuracy(logits, batch)[0]

    result = estimate(loss_fn, stacked, lambda key: task.sample(key, TRAIN, settings.batch), settings, mask=mask,
                      extra=jnp.asarray(sequences, jnp.int32))
    return LLCResult(run=str(run.run_dir), settings=settings, nbeta=settings.inverse_temperature(),
                     weights=head or "all", interventions="bare" if bare or run.member is None else "own",
                     points=points_of(result, sequences)), problems


def parse_head(text: str, config) -> tuple[int, int]:
    """`L2.H3` as (layer 2, head 3), checked against the model; a SpecError at `--head` otherwise."""
    import re

    from ..errors import Span, SpecError

    span = Span(path="--head", line=1, column=1, end_line=1, end_column=len(text) + 1, line_text=text)
    found = re.fullmatch(r"L([0-9]+)\.H([0-9]+)", text.strip())
    if not found:
        raise SpecError(span, f"cannot read head '{text}'", hint="write e.g. L2.H3 (layers count from 1, heads from 0)")
    layer, head = int(found[1]), int(found[2])
    if not 1 <= layer <= config.model.layers or not 0 <= head < config.model.heads:
        raise SpecError(span, f"no head {text} in this model",
                        hint=f"layers are L1..L{config.model.layers} and heads H0..H{config.model.heads - 1}")
    return layer, head


def table(result: LLCResult) -> str:
    """The estimates as a text table: sequences, LLC, spread over chains, R-hat, converged."""
    lines = [f"LLC of {result.run} ({result.weights} weights, {result.interventions} interventions, nbeta {result.nbeta:.3g}, "
             f"{result.settings.chains} chains x {result.settings.steps} steps, burn-in {result.settings.burn_in})",
             f"{'sequences':>12}  {'llc':>10}  {'std':>8}  {'rhat':>6}  converged"]
    for p in result.points:
        rhat = "-" if p.rhat is None else f"{p.rhat:.3f}"
        lines.append(f"{p.sequences:>12,}  {p.llc:>10.4g}  {p.llc_std:>8.3g}  {rhat:>6}  {'yes' if p.converged else 'NO'}")
    return "\n".join(lines)
