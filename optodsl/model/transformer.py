"""The paper's causal transformer as an Equinox module whose every activation is a site.

`Transformer.__call__(batch, overrides)` returns the query's label logits (a token model: the
logits at every position) and a flat dict of every activation keyed as in `optodsl.sites`. Each site is computed, passed through
`overrides.apply` (a `where(mask, value, computed)`), recorded, and only then used by later
sites, so an override propagates forward and gradients flow through whatever it leaves alone.
The model knows no intervention beyond that.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import DataConfig, ModelConfig
from ..tasks import layout
from ..tasks.base import Layout
from .overrides import Overrides
from .protocol import Site

NEG = -1e9
"""The masked-out attention logit: effectively -inf (softmax gives exactly 0) but finite, so
an overridden row of all-masked entries cannot turn into NaN."""


class LayerNorm(eqx.Module):
    """LayerNorm over the last axis with learned scale and shift."""

    weight: jax.Array
    bias: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * self.weight + self.bias


def _layer_norm(d: int) -> LayerNorm:
    return LayerNorm(jnp.ones((d,)), jnp.zeros((d,)))


class Block(eqx.Module):
    """One attention block (optionally with an MLP); head weights have the head axis first."""

    ln: LayerNorm | None
    wq: jax.Array  # (H, D, Dh)
    wk: jax.Array
    wv: jax.Array
    wo: jax.Array  # (H, Dh, D)
    ln_mlp: LayerNorm | None
    w1: jax.Array | None
    b1: jax.Array | None
    w2: jax.Array | None
    b2: jax.Array | None


class Transformer(eqx.Module):
    """Exemplar/label embeddings (or a token embedding), attention blocks, final norm and unembedding;
    it implements the site protocol (`optodsl.model.protocol.Intervenable`)."""

    w_exemplar: jax.Array | None  # (F, D); None in a token model
    b_exemplar: jax.Array | None  # (D,)
    w_label: jax.Array | None  # (L, D)
    pos: jax.Array | None  # (T, D): learned or sinusoidal positions, None for RoPE/none
    blocks: tuple[Block, ...]
    ln_final: LayerNorm | None
    w_out: jax.Array  # (D, L), or (D, V) in a token model
    b_out: jax.Array  # (L,) or (V,)
    config: ModelConfig = eqx.field(static=True)
    w_token: jax.Array | None = None  # (V, D): token tasks embed `batch["tokens"]` (B, T)

    def sites(self, layout: Layout) -> dict[str, Site]:
        """Every site `__call__` records, in forward order, for sequences of `layout`; the same
        table as `optodsl.sites.site_table(self.config, layout)`, which adds what each site means."""
        cfg, t = self.config, layout.length
        dh, d = cfg.head_dim, cfg.d_model
        heads = {"q": dh, "k": dh, "v": dh, "q_rot": dh, "k_rot": dh, "attn_logits": t, "pattern": t, "z": dh, "out": d}
        stream = Site((t, d))
        table = {"embed": stream}
        for layer in range(1, cfg.layers + 1):
            p = f"L{layer}."
            table.update({p + "resid_in": stream, p + "normed": stream})
            table.update({p + name: Site((cfg.heads, t, width), per_head=True) for name, width in heads.items()})
            table.update({p + name: stream for name in (("attn_out", "mlp_out", "resid_out") if cfg.mlp else ("attn_out", "resid_out"))})
        table.update({"final_norm": stream, "logits": Site((t, layout.outputs))})
        return table

    def embed(self, batch: dict[str, jax.Array]) -> jax.Array:
        """The `embed` site's computed value (B, T, D): tokens plus positions; a fixed (sinusoidal)
        table passes no gradient. Interventions that rebuild embeddings call this, so they agree."""
        x = tokens(self, batch)
        if self.pos is None:
            return x
        pos = self.pos if self.config.positions == "learned" else jax.lax.stop_gradient(self.pos)
        return x + pos[: x.shape[1]]

    def __call__(self, batch: dict[str, jax.Array], overrides: Overrides | None = None):
        """Forward a batch; returns `(logits at the query (B, L), or at every position (B, T, V) in a
        token model, activations by site)`."""
        ov = overrides if overrides is not None else Overrides.empty()
        cfg = self.config
        acts: dict[str, jax.Array] = {}

        def site(key: str, computed: jax.Array) -> jax.Array:
            value = ov.apply(key, computed)
            acts[key] = value
            return value

        x = site("embed", self.embed(batch))
        # each path cut's view of the residual stream: the same sums, its stopped writes under stop_gradient
        streams = [(cut, _stopped(cut, "embed", x)) for cut in ov.paths]
        t = x.shape[1]
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))
        scale = 1.0 / math.sqrt(cfg.head_dim)
        for i, blk in enumerate(self.blocks, start=1):
            p = f"L{i}."
            streams = [(cut, ov.apply(p + "resid_in", s)) for cut, s in streams if cut.layer >= i]
            x = site(p + "resid_in", x)
            h = site(p + "normed", blk.ln(x) if blk.ln is not None else x)
            q, k, v = _qkv(h, blk)
            for cut, s in streams:
                if cut.layer == i:
                    read = dict(zip("qkv", _qkv(ov.apply(p + "normed", blk.ln(s) if blk.ln is not None else s), blk)))
                    name = cut.read.split(".", 1)[1]
                    q, k, v = (jnp.where(cut.mask, read[n], a) if n == name else a for n, a in zip("qkv", (q, k, v)))
            q, k, v = site(p + "q", q), site(p + "k", k), site(p + "v", v)
            if cfg.positions == "rope":
                q_rot, k_rot = rope(q, cfg.rope_base), rope(k, cfg.rope_base)
            else:
                q_rot, k_rot = q, k
            q_rot = site(p + "q_rot", q_rot)
            k_rot = site(p + "k_rot", k_rot)
            scores = _attn_matmul(q_rot, k_rot.swapaxes(-1, -2)) * scale
            scores = site(p + "attn_logits", jnp.where(causal, scores, NEG))
            pattern = site(p + "pattern", _attn_softmax(scores))
            z = site(p + "z", _attn_matmul(pattern, v))
            out = site(p + "out", (z[..., None] * blk.wo[None, :, None, :, :]).sum(-2))
            summed = p + "out" in ov.masks
            attn = site(p + "attn_out", _heads_sum(z, out, blk.wo, summed, cut=ov.cuts.get(p + "out")))
            x = x + attn
            streams = [(cut, s + (ov.apply(p + "attn_out", _heads_sum(z, out, blk.wo, summed, cut.stop[p + "attn_out"],
                                                                       ov.cuts.get(p + "out")))
                                  if p + "attn_out" in cut.stop else attn)) for cut, s in streams if cut.layer > i]
            if blk.w1 is not None:
                m = blk.ln_mlp(x) if blk.ln_mlp is not None else x
                m = site(p + "mlp_out", jax.nn.gelu(m @ blk.w1 + blk.b1) @ blk.w2 + blk.b2)
                x = x + m
                streams = [(cut, s + _stopped(cut, p + "mlp_out", m)) for cut, s in streams]
            x = site(p + "resid_out", x)
            streams = [(cut, ov.apply(p + "resid_out", s)) for cut, s in streams]
        x = site("final_norm", self.ln_final(x) if self.ln_final is not None else x)
        logits = site("logits", x @ self.w_out + self.b_out)
        return (logits if self.w_token is not None else logits[:, -1]), acts


def _stopped(cut, key: str, write: jax.Array) -> jax.Array:
    """A write into the residual stream as a path cut's view adds it: under stop_gradient if the cut stops it."""
    return jnp.where(cut.stop[key], jax.lax.stop_gradient(write), write) if key in cut.stop else write


def _heads_sum(z: jax.Array, out: jax.Array, wo: jax.Array, summed: bool, stop: jax.Array | None = None,
               cut: jax.Array | None = None) -> jax.Array:
    """The attention block's write (B, T, D): the sum of its heads' outputs, `out` summed when that site
    is overridden, else the same sum as one matmul of `z` (`out` is then dropped by jit unless read).
    With `stop` (a (H,) mask) those heads' terms pass no gradient back, and with `cut` (the `out`
    site's stopgrad mask) the entries it cuts pass none; either way the value is bitwise the same."""
    if stop is not None:
        head = stop[:, None, None]
        z, out, wo = (jnp.where(head, jax.lax.stop_gradient(a), a) for a in (z, out, wo))
    if summed:
        return out.sum(axis=1)
    b_, h_, t_, e_ = z.shape
    flat = z.transpose(0, 2, 1, 3).reshape(b_, t_, h_ * e_)
    if cut is None:
        return flat @ wo.reshape(h_ * e_, -1)
    rows = jnp.broadcast_to(jnp.all(cut, axis=-1), (b_, h_, t_))  # (B, H, T): a head's output cut at a position
    rows = jnp.repeat(rows.transpose(0, 2, 1), e_, axis=-1)  # (B, T, H * Dh), as `flat`
    return _cut_matmul(flat, wo.reshape(h_ * e_, -1), rows)


@jax.custom_vjp
def _cut_matmul(x: jax.Array, w: jax.Array, cut: jax.Array) -> jax.Array:
    """`x @ w` (B, T, K) x (K, D), whose gradient leaves out the entries of `x` that `cut` marks: they
    pass none back to `x`, and add none to `w`'s (a head's output cut at a position, `stopgrad L1.H2.out`,
    with the forward the same matmul as without the cut)."""
    return x @ w


def _cut_matmul_fwd(x, w, cut):
    return x @ w, (x, w, cut)


def _cut_matmul_bwd(res, g):
    x, w, cut = res
    kept = jnp.where(cut, jnp.zeros_like(x), x)
    return jnp.where(cut, 0.0, g @ w.T).astype(x.dtype), jnp.einsum("btk,btd->kd", kept, g), None


_cut_matmul.defvjp(_cut_matmul_fwd, _cut_matmul_bwd)


def _qkv(x: jax.Array, blk: Block) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Project (B, T, D) to queries, keys and values (B, H, T, Dh) with one matmul."""
    h, d, e = blk.wq.shape
    w = jnp.stack([blk.wq, blk.wk, blk.wv]).transpose(2, 0, 1, 3).reshape(d, 3 * h * e)
    y = (x @ w).reshape(*x.shape[:-1], 3, h, e)
    return tuple(jnp.moveaxis(y[..., j, :, :], -2, -3) for j in range(3))


UNROLL_LIMIT = 16
"""The longest inner axis the unrolled matmul and softmax handle; longer ones (a 100-token task's
attention) use XLA's own dot and softmax, which are faster there."""


def _attn_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Batched `a @ b`: unrolled for the few-shot task's tiny axes (its backward contracts over every
    axis, so all must be short), XLA's dot for long sequences."""
    return _small_matmul(a, b) if max(a.shape[-2], a.shape[-1], b.shape[-1]) <= UNROLL_LIMIT else a @ b


def _attn_softmax(x: jax.Array) -> jax.Array:
    """Softmax over the keys: unrolled for short sequences, XLA's own for long ones."""
    return _softmax(x) if x.shape[-1] <= UNROLL_LIMIT else jax.nn.softmax(x, axis=-1)


def _unrolled_sum(terms) -> jax.Array:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


@jax.custom_vjp
def _small_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Batched `a @ b` for tiny inner dimensions (Dh = 8, T = 5) as an unrolled sum of broadcast
    products: one elementwise fusion, where XLA's CPU runtime would run a batched dot or a reduce
    as separate slow kernels. The custom VJP keeps the backward in the same form."""
    return _unrolled_sum([a[..., :, i, None] * b[..., None, i, :] for i in range(a.shape[-1])])


def _small_matmul_fwd(a, b):
    return _small_matmul(a, b), (a, b)


def _small_matmul_bwd(res, g):
    a, b = res
    return _small_matmul(g, b.swapaxes(-1, -2)), _small_matmul(a.swapaxes(-1, -2), g)


_small_matmul.defvjp(_small_matmul_fwd, _small_matmul_bwd)


@jax.custom_vjp
def _softmax(x: jax.Array) -> jax.Array:
    """Softmax over a short last axis with an unrolled max and sum (see `_small_matmul`)."""
    m = x[..., 0]
    for i in range(1, x.shape[-1]):
        m = jnp.maximum(m, x[..., i])
    e = jnp.exp(x - m[..., None])
    return e / _unrolled_sum([e[..., i] for i in range(x.shape[-1])])[..., None]


def _softmax_fwd(x):
    p = _softmax(x)
    return p, p


def _softmax_bwd(p, g):
    gp = g * p
    return (gp - p * _unrolled_sum([gp[..., i] for i in range(p.shape[-1])])[..., None],)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def tokens(model: Transformer, batch: dict[str, jax.Array]) -> jax.Array:
    """Interleave exemplar and label embeddings as `e1 l1 e2 l2 ... q` (the query's label is hidden);
    a token model looks its tokens up instead."""
    if model.w_token is not None:
        return model.w_token[batch["tokens"]]
    ex = batch["exemplars"] @ model.w_exemplar + model.b_exemplar  # (B, P+1, D)
    n_labels = model.w_label.shape[0]
    lab = jax.nn.one_hot(batch["labels"][:, :-1], n_labels, dtype=ex.dtype) @ model.w_label  # (B, P, D)
    b, p1, d = ex.shape
    pairs = jnp.stack([ex[:, :-1], lab], axis=2).reshape(b, 2 * (p1 - 1), d)
    return jnp.concatenate([pairs, ex[:, -1:]], axis=1)


def rope(x: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding on the last axis, rotating interleaved pairs (x0, x1), (x2, x3)..."""
    t, dh = x.shape[-2], x.shape[-1]
    freq = base ** (-np.arange(0, dh, 2) / dh)
    angle = np.arange(t)[:, None] * freq[None, :]  # (T, Dh/2), a constant of the trace
    cos = np.repeat(np.cos(angle), 2, axis=-1).astype(np.float32)
    sin = np.stack([-np.sin(angle), np.sin(angle)], axis=-1).reshape(t, dh).astype(np.float32)
    swapped = x.reshape(*x.shape[:-1], dh // 2, 2)[..., ::-1].reshape(x.shape)  # (x1, x0, x3, x2, ...)
    return x * cos + swapped * sin


def sinusoidal(t: int, d: int) -> jax.Array:
    """Fixed sinusoidal position table (T, D)."""
    freq = 10000.0 ** (-jnp.arange(0, d, 2) / d)
    angle = jnp.arange(t)[:, None] * freq[None, :]
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(t, -1)[:, :d]


def for_experiment(config, key: jax.Array) -> Transformer:
    """The built-in model for an experiment's task: features and labels in, or tokens in for a token task."""
    lay = layout(config)
    return init_model(config.model, config.data, key, vocab=lay.vocab, length=lay.length)


def init_model(model_cfg: ModelConfig, data_cfg: DataConfig, key: jax.Array, vocab: int | None = None,
               length: int | None = None) -> Transformer:
    """Initialise as the paper did: LeCun-normal maps, zero biases, label embedding N(0, 0.02) truncated at 2 std.

    With `vocab` the model reads token ids of `length`-token sequences (a token task) and predicts
    the next token: a LeCun-normal token embedding (V, D) and unembedding (D, V) replace the
    exemplar and label maps; the few-shot model's initialisation is untouched.
    """
    d, h, dh, f, n_labels, t = (
        model_cfg.d_model, model_cfg.heads, model_cfg.head_dim, data_cfg.feature_dim, data_cfg.labels, data_cfg.seq_len,
    )
    if vocab is not None:
        n_labels, t = vocab, length
    lecun = jax.nn.initializers.lecun_normal(in_axis=-2, out_axis=-1)
    keys = iter(jax.random.split(key, 8 + 8 * model_cfg.layers))

    def head_map(shape_in: int, shape_out: int) -> jax.Array:
        # fan-in is the whole input width, as for one (in, H*Dh) matrix split into heads
        w = lecun(next(keys), (shape_in, h * shape_out))
        return w.reshape(shape_in, h, shape_out).transpose(1, 0, 2)

    blocks = []
    for _ in range(model_cfg.layers):
        mlp = model_cfg.mlp
        m = d * model_cfg.mlp_ratio
        blocks.append(Block(
            ln=_layer_norm(d) if model_cfg.prenorm else None,
            wq=head_map(d, dh), wk=head_map(d, dh), wv=head_map(d, dh),
            wo=lecun(next(keys), (h * dh, d)).reshape(h, dh, d),
            ln_mlp=_layer_norm(d) if (mlp and model_cfg.prenorm) else None,
            w1=lecun(next(keys), (d, m)) if mlp else None,
            b1=jnp.zeros((m,)) if mlp else None,
            w2=lecun(next(keys), (m, d)) if mlp else None,
            b2=jnp.zeros((d,)) if mlp else None,
        ))
    if model_cfg.positions == "learned":
        pos = 0.02 * jax.random.truncated_normal(next(keys), -2.0, 2.0, (t, d))
    elif model_cfg.positions == "sinusoidal":
        pos = sinusoidal(t, d)
    else:
        pos = None
    if vocab is not None:
        w_exemplar = b_exemplar = w_label = None
        w_token = lecun(next(keys), (vocab, d))
        next(keys)
    else:
        w_exemplar, b_exemplar, w_token = lecun(next(keys), (f, d)), jnp.zeros((d,)), None
        w_label = 0.02 * jax.random.truncated_normal(next(keys), -2.0, 2.0, (n_labels, d))
    return Transformer(
        w_exemplar=w_exemplar,
        b_exemplar=b_exemplar,
        w_label=w_label,
        pos=pos,
        blocks=tuple(blocks),
        ln_final=_layer_norm(d) if model_cfg.final_norm else None,
        w_out=lecun(next(keys), (d, n_labels)),
        b_out=jnp.zeros((n_labels,)),
        config=model_cfg,
        w_token=w_token,
    )
