"""`opto export RUN --to transformer-lens`: a token-task run's network as TransformerLens 4.x loads it.

Writes `config.json` (the fields `TransformerBridge.boot_native` takes), `model.safetensors` (the
state dict in HookedTransformer's names and per-head shapes, `blocks.0.attn.W_Q` (H, D, Dh) ...,
which TransformerLens's `convert_tl_checkpoint` maps onto the bridge) and `tokenizer.json` (token
ids as decimal words, for TransformerLens's tools that take strings). optodsl's layout is
TransformerLens's already, so every array is copied as it is; the attention biases it lacks are
zeros. What TransformerLens cannot represent is refused with the reason. Only the network is
exported: the run's clamps and ablations act on activations during training and are not part of it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import rundir
from ..analysis.runs import load_run
from ..config import ExperimentConfig, read_run_config
from ..errors import DataError
from ..files import atomic_write_bytes, atomic_write_text, make_dir
from ..model.transformer import Transformer, sinusoidal
from ..tasks import layout

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
DEFAULT_FOLDER = "transformer-lens"
"""The export's folder inside the run directory when no --out is given."""

ACT_FN = "gelu_new"
"""`jax.nn.gelu`'s default (approximate=True) is the tanh GELU, TransformerLens's `gelu_new`."""
EPS = 1e-5
"""optodsl's LayerNorm epsilon (`optodsl.model.transformer.LayerNorm`)."""


@dataclass(frozen=True)
class Export:
    """What `export` wrote and what it left out."""

    folder: Path
    config: dict
    sequences: int
    interventions: tuple[str, ...] | None
    """The run's intervention lines; None for a run written without a spec (from Python): unknown."""


def refusal(config: ExperimentConfig) -> str | None:
    """Why TransformerLens cannot represent this run's network, or None when it can."""
    model = config.model
    if layout(config).vocab is None:
        return (f"task '{config.task.name}' feeds exemplar features through a linear map and interleaves label "
                "embeddings; TransformerLens's models embed token ids only")
    if model.prenorm != model.final_norm:
        return (f"model.prenorm = {str(model.prenorm).lower()} but model.final_norm = {str(model.final_norm).lower()}; "
                "TransformerLens applies one normalization_type to every layer norm, the final one included")
    return None


def tl_config(config: ExperimentConfig) -> dict:
    """The TransformerBridgeConfig fields of this run's network. `n_ctx` is the sequence length + 1,
    so that TransformerLens's head detector (which asks for sequences shorter than n_ctx) runs on
    the task's sequences; rotary tables cover it for free, and a learned position table gets a row
    of zeros for the position the run never saw."""
    model, lay = config.model, layout(config)
    cfg = {
        "n_layers": model.layers, "d_model": model.d_model, "n_heads": model.heads, "d_head": model.head_dim,
        "d_vocab": lay.vocab, "d_vocab_out": lay.outputs, "n_ctx": lay.length + 1,
        "act_fn": ACT_FN, "attn_only": not model.mlp, "eps": EPS,
        "normalization_type": "LN" if model.prenorm else None,
        "default_prepend_bos": False, "tokenizer_prepends_bos": False,  # the task's sequences have no BOS token
    }
    if model.mlp:
        cfg["d_mlp"] = model.d_model * model.mlp_ratio
    if model.positions == "rope":
        # optodsl rotates interleaved pairs (x0, x1), (x2, x3), ... as TransformerLens's native model does
        cfg.update(positional_embedding_type="rotary", rotary_dim=model.head_dim, rotary_base=model.rope_base,
                   rotary_adjacent_pairs=True)
    else:
        cfg["positional_embedding_type"] = "standard"
    return cfg


def _positions(model: Transformer, n_ctx: int) -> np.ndarray:
    """The absolute position table of `n_ctx` rows: the learned one padded with zeros, the fixed
    sinusoidal one computed at n_ctx, zeros for a model without positions."""
    cfg = model.config
    if cfg.positions == "sinusoidal":
        return np.asarray(sinusoidal(n_ctx, cfg.d_model), np.float32)
    table = np.zeros((n_ctx, cfg.d_model), np.float32)
    if cfg.positions == "learned":
        table[: model.pos.shape[0]] = np.asarray(model.pos)
    return table


def tl_state_dict(model: Transformer, n_ctx: int) -> dict[str, np.ndarray]:
    """The network's arrays under HookedTransformer's names, in its shapes (no transposes)."""
    cfg = model.config
    h, dh, d = cfg.heads, cfg.head_dim, cfg.d_model
    a = lambda x: np.asarray(x, np.float32)  # noqa: E731
    zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    out = {"embed.W_E": a(model.w_token)}
    if cfg.positions != "rope":
        out["pos_embed.W_pos"] = _positions(model, n_ctx)
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        if blk.ln is not None:
            out.update({p + "ln1.w": a(blk.ln.weight), p + "ln1.b": a(blk.ln.bias)})
        out.update({p + "attn.W_Q": a(blk.wq), p + "attn.W_K": a(blk.wk), p + "attn.W_V": a(blk.wv),
                    p + "attn.W_O": a(blk.wo), p + "attn.b_Q": zeros(h, dh), p + "attn.b_K": zeros(h, dh),
                    p + "attn.b_V": zeros(h, dh), p + "attn.b_O": zeros(d)})
        if blk.w1 is not None:
            if blk.ln_mlp is not None:
                out.update({p + "ln2.w": a(blk.ln_mlp.weight), p + "ln2.b": a(blk.ln_mlp.bias)})
            out.update({p + "mlp.W_in": a(blk.w1), p + "mlp.b_in": a(blk.b1),
                        p + "mlp.W_out": a(blk.w2), p + "mlp.b_out": a(blk.b2)})
    if model.ln_final is not None:
        out.update({"ln_final.w": a(model.ln_final.weight), "ln_final.b": a(model.ln_final.bias)})
    out.update({"unembed.W_U": a(model.w_out), "unembed.b_U": a(model.b_out)})
    return out


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """float32 arrays in the safetensors format (a little-endian u64 header length, a JSON header of
    dtype, shape and byte offsets, then the raw data), so the export needs neither torch nor pickle."""
    header: dict = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def tokenizer_json(vocab: int) -> str:
    """A Hugging Face `tokenizers` file whose words are the token ids in decimal ("3 17 5" is [3, 17, 5]),
    so TransformerLens's string-taking tools (`to_tokens`, `detect_head`) read the task's sequences;
    TransformerLens makes `<|endoftext|>` the end, padding and BOS token of a tokenizer without them,
    and encodes a word to see whether BOS is prepended; it is this tokenizer's unknown word too, at id
    `vocab`, outside the network's embedding, so that no other word can pass for a token."""
    end = {"id": vocab, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
           "normalized": False, "special": True}
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [end], "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {**{str(i): i for i in range(vocab)}, end["content"]: vocab},
                  "unk_token": end["content"]},
    })


def intervention_lines(run) -> tuple[str, ...] | None:
    """The run's interventions as its spec.opto writes them, one per line; None without a spec."""
    if run.member is None:
        return None
    spans = {(a.span.path, a.span.line): a.span.line_text.strip() for a in run.member.actions}
    return tuple(text for _, text in sorted(spans.items()))


def export(run_dir: str | Path, out: str | Path | None = None) -> Export:
    """Write the run's latest checkpointed network for TransformerLens into `out` (default
    RUN_DIR/transformer-lens); a DataError naming the run when TransformerLens cannot represent it."""
    settings = Path(run_dir) / rundir.CONFIG
    if settings.is_file():  # refused from the settings alone, before the checkpoint is read
        reason = refusal(read_run_config(run_dir))
        if reason is not None:
            raise DataError(settings, "TransformerLens cannot represent this run's network", found=reason,
                            hint="opto export --to transformer-lens takes runs of a token task (markov, repeat, "
                                 "tokens) with model.prenorm = model.final_norm")
    run = load_run(run_dir)
    cfg = tl_config(run.config)
    folder = make_dir(Path(out) if out is not None else Path(run_dir) / DEFAULT_FOLDER)
    metadata = {"format": "pt", "source": "optodsl", "run": str(run_dir), "sequences": str(run.sequences)}
    atomic_write_text(folder / CONFIG, json.dumps(cfg, indent=2) + "\n")
    atomic_write_bytes(folder / WEIGHTS, safetensors_bytes(tl_state_dict(run.model, cfg["n_ctx"]), metadata))
    atomic_write_text(folder / TOKENIZER, tokenizer_json(cfg["d_vocab"]) + "\n")
    return Export(folder, cfg, run.sequences, intervention_lines(run))
