"""Micro-benchmark of one training step of the paper model, plus an equivalence check.

Run pinned to one core, e.g. `taskset -c 0 python benchmarks/step_micro.py`. Prints steps/s of
the fused chunk (with and without evaluation), of a scan over forward+backward alone and of the
forward alone, after checking every site and the logits against a plain reference forward.
"""

from __future__ import annotations

import argparse
import math
import time

import equinox as eqx
import optodsl

optodsl.configure_xla()  # the flags `opto` uses, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np

from optodsl.config import EvalConfig, ExperimentConfig
from optodsl.model.overrides import Overrides
from optodsl.model.transformer import tokens
from optodsl.train.trainer import build_program, loss_and_accuracy


def reference_forward(model, batch):
    """The model written plainly with einsums; the sites of the paper configuration."""
    cfg = model.config
    acts = {}

    def ln(m, x):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * m.weight + m.bias

    def rot(x):
        t, dh = x.shape[-2:]
        freq = cfg.rope_base ** (-jnp.arange(0, dh, 2) / dh)
        ang = jnp.arange(t)[:, None] * freq
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return jnp.stack([x0 * jnp.cos(ang) - x1 * jnp.sin(ang), x0 * jnp.sin(ang) + x1 * jnp.cos(ang)], -1).reshape(x.shape)

    x = acts["embed"] = tokens(model, batch)
    t = x.shape[1]
    for i, blk in enumerate(model.blocks, start=1):
        p = f"L{i}."
        acts[p + "resid_in"] = x
        h = acts[p + "normed"] = ln(blk.ln, x)
        q = acts[p + "q"] = jnp.einsum("btd,hde->bhte", h, blk.wq)
        k = acts[p + "k"] = jnp.einsum("btd,hde->bhte", h, blk.wk)
        acts[p + "v"] = v = jnp.einsum("btd,hde->bhte", h, blk.wv)
        qr = acts[p + "q_rot"] = rot(q)
        kr = acts[p + "k_rot"] = rot(k)
        s = jnp.einsum("bhte,bhse->bhts", qr, kr) / math.sqrt(cfg.head_dim)
        s = acts[p + "attn_logits"] = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -1e9)
        pat = acts[p + "pattern"] = jax.nn.softmax(s, -1)
        z = acts[p + "z"] = jnp.einsum("bhts,bhse->bhte", pat, v)
        out = acts[p + "out"] = jnp.einsum("bhte,hed->bhtd", z, blk.wo)
        x = x + (a := out.sum(1))
        acts[p + "attn_out"] = a
        acts[p + "resid_out"] = x
    x = acts["final_norm"] = ln(model.ln_final, x)
    logits = acts["logits"] = x @ model.w_out + model.b_out
    return logits[:, -1], acts


def check(program, state) -> None:
    model = state[0]
    # perturb every parameter so LayerNorm scales/biases and output biases are not trivial
    leaves, treedef = jax.tree.flatten(eqx.filter(model, eqx.is_array))
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    leaves = [l + 0.1 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
    model = eqx.combine(jax.tree.unflatten(treedef, leaves), model)
    batch = program.task.sample(jax.random.PRNGKey(3), "train", 64)
    logits, acts = jax.jit(lambda m, b: m(b))(model, batch)
    ref_logits, ref = jax.jit(reference_forward)(model, batch)
    assert list(acts) == list(ref), (list(acts), list(ref))
    worst = 0.0
    for key in ref:
        err = float(jnp.max(jnp.abs(acts[key] - ref[key])) / (1.0 + jnp.max(jnp.abs(ref[key]))))
        worst = max(worst, err)
        assert acts[key].shape == ref[key].shape and err < 1e-5, (key, err)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
    # an override still propagates, and gradients match the reference's
    ov = Overrides({"L1.pattern": jnp.eye(5)}, {"L1.pattern": jnp.zeros((8, 1, 1), bool).at[3].set(True)})
    _, oacts = model(batch, ov)
    np.testing.assert_array_equal(oacts["L1.pattern"][:, 3], np.broadcast_to(np.eye(5), (64, 5, 5)))
    assert not np.allclose(oacts["L2.resid_in"], acts["L2.resid_in"])
    params, static = eqx.partition(model, eqx.is_array)
    loss = lambda f: lambda p: loss_and_accuracy(f(eqx.combine(p, static), batch)[0], batch["labels"][:, -1])[0]
    g = jax.grad(loss(lambda m, b: m(b)))(params)
    g_ref = jax.grad(loss(reference_forward))(params)
    gerr = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)))
    assert gerr < 1e-5, gerr
    print(f"check ok: worst relative site error {worst:.2e}, worst gradient error {gerr:.2e}")


def rate(fn, n_steps: int, repeats: int) -> float:
    jax.block_until_ready(fn())
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return n_steps / best


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-check", action="store_true")
    return parser


def main() -> None:
    args = parser().parse_args()

    cfg = ExperimentConfig()
    program = build_program(cfg)
    state = program.init_state()
    if not args.skip_check:
        check(program, state)

    n = program.steps_per_eval
    chunk = program.chunk(n)
    print(f"chunk ({n} steps + eval of {cfg.eval.sequences} x {len(cfg.eval.sets)}): "
          f"{rate(lambda: chunk(state, program.task, program.eval_batches), n, args.repeats):.0f} steps/s")

    step_prog = build_program(cfg.model_copy(update={"eval": EvalConfig(every=10**9, sequences=32)}))
    step_chunk = step_prog.chunk(args.steps)
    print(f"chunk, step only ({args.steps} steps):  "
          f"{rate(lambda: step_chunk(state, step_prog.task, step_prog.eval_batches), args.steps, args.repeats):.0f} steps/s")

    model = state[0]
    params, static = eqx.partition(model, eqx.is_array)
    batch = program.task.sample(jax.random.PRNGKey(0), "train", cfg.train.batch)
    targets = batch["labels"][:, -1]

    def loss(p):
        return loss_and_accuracy(eqx.combine(p, static)(batch)[0], targets)[0]

    @jax.jit
    def grad_scan(p):
        def one(p, _):
            g = jax.grad(loss)(p)
            return jax.tree.map(lambda a, b: a - 1e-4 * b, p, g), None
        return jax.lax.scan(one, p, None, length=args.steps)[0]

    @jax.jit
    def fwd_scan(p):
        def one(p, _):
            logits = eqx.combine(p, static)(batch)[0]
            return jax.tree.map(lambda a: a + 1e-9 * logits.mean(), p), None
        return jax.lax.scan(one, p, None, length=args.steps)[0]

    print(f"grad scan, fixed batch:  {rate(lambda: grad_scan(params), args.steps, args.repeats):.0f} steps/s")
    print(f"forward scan, fixed batch: {rate(lambda: fwd_scan(params), args.steps, args.repeats):.0f} steps/s")


if __name__ == "__main__":
    main()
