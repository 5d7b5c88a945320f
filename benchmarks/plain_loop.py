"""A plain `lax.scan` training loop of the paper's model size on 100-token Markov chains: the yardstick
that `train_speed.py --spec specs/tasks/markov.opto` is measured beside.

2 layers, 8 heads, d_model 64, RoPE, attention only (no MLP), batch 32, 100 tokens over 3 states,
each sequence from its own Dirichlet(1) transition matrix, next-token loss, Adam. `--norms` adds
what optodsl's default model has besides (a pre-norm LayerNorm in each block, a final LayerNorm,
an output bias), making it the same model. No optodsl code: written from jax and optax alone, so it
measures what the model itself costs.

    python benchmarks/plain_loop.py --chunks 5 [--norms]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import optax

LAYERS, HEADS, D, T, B, K, STEPS = 2, 8, 64, 100, 32, 3, 100
DH = D // HEADS


def init(key, norms: bool = False):
    """Parameters; with `norms`, each block and the output also carry LayerNorm scales and shifts."""
    keys = iter(jax.random.split(key, 2 + 4 * LAYERS))
    normal = lambda shape, fan: jax.random.normal(next(keys), shape) / jnp.sqrt(fan)
    ln = lambda: {"g": jnp.ones(D), "b": jnp.zeros(D)}
    blocks = [{"wq": normal((D, D), D), "wk": normal((D, D), D), "wv": normal((D, D), D), "wo": normal((D, D), D),
               **({"ln": ln()} if norms else {})} for _ in range(LAYERS)]
    params = {"emb": normal((K, D), K), "out": normal((D, K), D), "blocks": blocks}
    return {**params, "ln": ln(), "out_b": jnp.zeros(K)} if norms else params


def layer_norm(x, p):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["g"] + p["b"]


def rope(x):
    half = DH // 2
    freq = 10000.0 ** (-jnp.arange(half) / half)
    angle = jnp.arange(T)[:, None] * freq[None, :]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    a, b = x[..., :half], x[..., half:]
    return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], -1)


def forward(params, tokens):
    x = params["emb"][tokens]
    causal = jnp.tril(jnp.ones((T, T), bool))
    for blk in params["blocks"]:
        h = layer_norm(x, blk["ln"]) if "ln" in blk else x
        heads = lambda w: (h @ w).reshape(B, T, HEADS, DH).transpose(0, 2, 1, 3)
        q, k, v = rope(heads(blk["wq"])), rope(heads(blk["wk"])), heads(blk["wv"])
        scores = jnp.where(causal, q @ k.swapaxes(-1, -2) / jnp.sqrt(DH), -1e9)
        z = jax.nn.softmax(scores, -1) @ v
        x = x + z.transpose(0, 2, 1, 3).reshape(B, T, D) @ blk["wo"]
    if "ln" in params:
        return layer_norm(x, params["ln"]) @ params["out"] + params["out_b"]
    return x @ params["out"]


def sample(key):
    k1, k2, k3 = jax.random.split(key, 3)
    trans = jax.random.dirichlet(k1, jnp.ones(K), (B, K))
    first = jax.random.randint(k2, (B,), 0, K)

    def step(tok, k):
        nxt = jax.random.categorical(k, jnp.log(trans[jnp.arange(B), tok]))
        return nxt, nxt

    _, rest = jax.lax.scan(step, first, jax.random.split(k3, T - 1))
    return jnp.concatenate([first[:, None], rest.T], 1)


def sample_uniform(key):
    """Uniform random tokens: almost free to sample, the yardstick for tasks that are not Markov chains."""
    return jax.random.randint(key, (B, T), 0, K)


def loss(params, tokens):
    logits = forward(params, tokens)[:, :-1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


OPT = optax.adam(1e-4)


@jax.jit
def chunk(state, key):
    def one(carry, k):
        params, opt = carry
        value, grads = jax.value_and_grad(loss)(params, sample(k))
        updates, opt = OPT.update(grads, opt)
        return (optax.apply_updates(params, updates), opt), value

    return jax.lax.scan(one, state, jax.random.split(key, STEPS))


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=5, help=f"timed chunks of {STEPS} steps")
    parser.add_argument("--norms", action="store_true", help="add optodsl's default LayerNorms and output bias")
    return parser


def main() -> None:
    args = parser().parse_args()
    params = init(jax.random.PRNGKey(0), args.norms)
    state = (params, OPT.init(params))
    state, losses = chunk(state, jax.random.PRNGKey(1))
    jax.block_until_ready(losses)
    t0 = time.perf_counter()
    for i in range(args.chunks):
        state, losses = chunk(state, jax.random.PRNGKey(2 + i))
    jax.block_until_ready(losses)
    elapsed = time.perf_counter() - t0
    print(json.dumps({"loop": "plain lax.scan" + (" with norms" if args.norms else ""), "steps_per_s": round(args.chunks * STEPS / elapsed, 1),
                      "final_loss": round(float(losses[-1]), 4), "machine": platform.machine()}))


if __name__ == "__main__":
    main()
