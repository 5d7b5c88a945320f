"""Checkpoint analyses of the paper (Figures 4a and 11, Tables 1 and 2), each written as `.opto` text.

Every ablation here is a small spec ("ablate L2.* except H3") compiled against the run's own
settings, so an analysis means exactly what the same line means in a training spec. The result
is one JSON-ready dict (the layout `opto report` reads).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ..compile.lower import CompiledPlan, compile_member
from ..config import ExperimentConfig
from ..errors import DataError
from ..experiment import load_experiment
from .evaluate import Outcome, Sequences, activations, evaluate_plans, evaluation_set
from .runs import TrainedRun

ANALYSES = ("heads", "groups", "paths", "composition", "subset")


@dataclass(frozen=True)
class Group:
    """Heads of one layer ablated together (Table 1)."""

    layer: int
    heads: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"L{self.layer}." + ",".join(f"H{h}" for h in self.heads)

    @property
    def selector(self) -> str:
        return f"L{self.layer}.H[{','.join(map(str, self.heads))}]"


def compile_text(text: str, config: ExperimentConfig) -> CompiledPlan:
    """The single run of spec `text` resolved against `config` (without its evaluation-only probes), compiled."""
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"perfected": ()})})
    exp = load_experiment(text + "\n", base=config)
    return compile_member(exp.members[0])


def prev_token_scores(run: TrainedRun, task, seqs: Sequences, layer: int = 1) -> np.ndarray:
    """Mean attention from each position to the one before it, per head of `layer`."""
    pattern = activations(run.model, task, seqs)[f"L{layer}.pattern"]
    t = pattern.shape[-1]
    return np.asarray(pattern[:, :, jnp.arange(1, t), jnp.arange(t - 1)].mean((0, 2)))


def default_groups(scores: np.ndarray) -> list[Group]:
    """Table 1's layer-1 groups: the previous-token heads (prev-token attention >= 0.5, else the
    top three), the other heads, and all of them."""
    heads = list(range(len(scores)))
    pt = [h for h in heads if scores[h] >= 0.5] or sorted(np.argsort(-scores)[:3].tolist())
    rest = [h for h in heads if h not in pt]
    groups = [Group(1, tuple(pt))]
    if rest:
        groups.append(Group(1, tuple(rest)))
    groups.append(Group(1, tuple(heads)))
    return groups


def composition_scores(run: TrainedRun, writer: int = 1, reader: int = 2) -> dict[str, list[list[float]]]:
    """Composition scores ||A B||_F / (||A||_F ||B||_F) between each writer head's output map
    A = W_V W_O and each reader head's input map B = diag(ln gain) W_Q, W_K or W_V (rows: writer
    heads, columns: reader heads). RoPE is left out, as in Elhage et al. (2021)."""
    w, r = run.model.blocks[writer - 1], run.model.blocks[reader - 1]
    ov = jnp.einsum("hde,hef->hdf", w.wv, w.wo)  # (H, D, D)
    gain = r.ln.weight if r.ln is not None else jnp.ones(ov.shape[-1])
    out = {}
    for name, m in (("Q", r.wq), ("K", r.wk), ("V", r.wv)):
        b = gain[None, :, None] * m  # (H, D, Dh)
        prod = jnp.einsum("ade,bef->abdf", ov, b)
        num = jnp.sqrt((prod ** 2).sum((-1, -2)))
        den = jnp.sqrt((ov ** 2).sum((-1, -2)))[:, None] * jnp.sqrt((b ** 2).sum((-1, -2)))[None, :]
        out[name] = np.round(np.asarray(num / den), 6).tolist()
    return out


def analyze(run: TrainedRun, what: tuple[str, ...] = ANALYSES, groups: list[Group] | None = None,
            which: str = "train", n: int | None = None, seed: int = 0) -> dict:
    """Run the chosen analyses on a trained run; returns the `analysis.json` dict."""
    cfg = run.config
    unknown = set(what) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; choose from {', '.join(ANALYSES)}")
    if cfg.model.layers < 2 and ({"paths", "composition", "subset"} & set(what)):
        raise DataError(run.run_dir, "paths, composition and subset need a model with two layers or more",
                        found=f"model.layers = {cfg.model.layers}")
    task, seqs = evaluation_set(cfg, which, n, seed)
    heads, last = range(cfg.model.heads), cfg.model.layers
    texts: dict[str, str] = {"full": ""}
    if "heads" in what or "subset" in what:
        for layer in range(1, last + 1):
            for h in heads:
                texts[f"L{layer}.H{h}/ablate_one"] = f"ablate L{layer}.H{h}"
                texts[f"L{layer}.H{h}/only_one"] = f"ablate L{layer}.* except H{h}"
    if "groups" in what:
        groups = groups or default_groups(prev_token_scores(run, task, seqs))
        for g in groups:
            later = f"L{g.layer + 1}" if g.layer < last else None
            texts[f"{g.name}/ablated"] = f"ablate {g.selector}"
            if later:
                texts[f"{g.name}/pattern_preserving"] = f"ablate {g.selector} preserving {later}.pattern"
                texts[f"{g.name}/value_preserving"] = f"ablate {g.selector} preserving {later}.v"
    if "paths" in what:
        for a in heads:
            for b in heads:
                texts[f"path/{a}/{b}"] = f"ablate L1.* except H{a}\nablate L2.* except H{b}"
    names = list(texts)
    outcomes = dict(zip(names, evaluate_plans(run.model, [compile_text(texts[k], cfg) for k in names], task, seqs, run.sequences)))
    result: dict = {
        "run_dir": str(run.run_dir), "spec": run.spec, "sequences": run.sequences,
        "eval": {"set": seqs.name, "sequences": len(seqs), "enumerated": seqs.enumerated},
        "chance": 1.0 / cfg.data.pairs,
        "full": outcomes["full"].summary(),
    }
    if "heads" in what:
        result["heads"] = {f"L{layer}": {kind: {f"H{h}": outcomes[f"L{layer}.H{h}/{kind}"].summary() for h in heads}
                                         for kind in ("ablate_one", "only_one")} for layer in range(1, last + 1)}
    if "groups" in what:
        result["groups"] = [{"name": g.name, "layer": g.layer, "heads": list(g.heads),
                             **{kind: outcomes[f"{g.name}/{kind}"].summary()
                                for kind in ("ablated", "pattern_preserving", "value_preserving") if f"{g.name}/{kind}" in outcomes}}
                            for g in groups]
    if "paths" in what:
        result["paths"] = {"accuracy": [[round(outcomes[f"path/{a}/{b}"].accuracy, 6) for b in heads] for a in heads]}
    if "composition" in what:
        result["composition"] = composition_scores(run)
    if "subset" in what:
        result["subset"] = _subset(outcomes, last, heads)
    return result


def _subset(outcomes: dict[str, Outcome], layer: int, heads) -> dict:
    """Table 2: each head's accuracy (alone in its layer) on the sequences the best head alone gets wrong."""
    alone = {h: outcomes[f"L{layer}.H{h}/only_one"].correct for h in heads}
    ref = max(heads, key=lambda h: alone[h].mean())
    wrong = ~alone[ref]
    return {
        "reference": f"L{layer}.H{ref}",
        "sequences": int(len(wrong)),
        "wrong": int(wrong.sum()),
        "accuracy_all": {f"H{h}": round(float(alone[h].mean()), 6) for h in heads},
        "accuracy_on_wrong": {f"H{h}": (round(float(alone[h][wrong].mean()), 6) if wrong.any() else None) for h in heads},
    }
