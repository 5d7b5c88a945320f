"""The loss at each position, for the full model and with each head ablated alone (Olsson et al.
2022's per-token view): where in the sequence a head earns its keep, e.g. an induction head only
after the repeat begins. For tasks with a target at every position (`Task.per_position`: the token
tasks' next token); the few-shot task scores its query alone, where the `heads` analysis already
says it all. The whole analysis is this one declaration: its section, table, heat map and function.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import field_validator, model_validator

from .evaluate import Outcome
from .registry import HeatMap, Inputs, declare
from .schema import AnalysisBase, Number, _by_index, _Part

BANDS = 8
"""At most this many bands of positions in the console table."""


class Positions(_Part):
    """The mean loss (nats) at each position t (predicting position t + 1's token) over the analysis's
    sequences: the full model's (`full`), and with each head ablated alone (`ablate_one`, by layer and head)."""

    full: list[Number]
    ablate_one: dict[str, dict[str, list[Number]]]

    @field_validator("ablate_one")
    @classmethod
    def _in_order(cls, layers: dict) -> dict:
        return _by_index({layer: _by_index(heads) for layer, heads in layers.items()})

    @model_validator(mode="after")
    def _one_length(self) -> "Positions":
        if any(len(v) != len(self.full) for heads in self.ablate_one.values() for v in heads.values()):
            raise ValueError("a loss at every position of `full` for every head")
        return self


def _bands(length: int) -> list[range]:
    width = math.ceil(length / BANDS)
    return [range(start, min(start + width, length)) for start in range(0, length, width)]


def _mean(values: list, band: range) -> float:
    return float(np.nanmean(np.asarray([values[t] for t in band], dtype=float)))


def table(p: Positions, result: AnalysisBase) -> list[str]:
    """The full model's loss in bands of positions, and each head's cost (its ablation's loss minus the
    full model's) in each band; the band where each costs most is marked."""
    bands = _bands(len(p.full))
    names = [f"{b.start}-{b.stop - 1}" if len(b) > 1 else str(b.start) for b in bands]
    full = [_mean(p.full, b) for b in bands]
    lines = ["", "loss at each position, in bands of positions (position t predicts token t+1; head rows: the "
                 "loss its ablation adds, * where most)",
             "  positions      " + "  ".join(f"{n:>7}" for n in names),
             "  full model     " + "  ".join(f"{v:>7.3f}" for v in full)]
    for layer, heads in p.ablate_one.items():
        for h, losses in heads.items():
            costs = [_mean(losses, b) - f for b, f in zip(bands, full)]
            top = int(np.nanargmax(costs)) if np.isfinite(costs).any() else -1
            lines.append(f"  {layer}.{h:<11}" + "  ".join(f"{c:>+6.3f}{'*' if i == top else ' '}" for i, c in enumerate(costs)))
    return lines


def heat_map(section: dict) -> list[HeatMap]:
    """Heads (rows) by positions (columns): the loss each head's ablation adds at each position."""
    full = np.asarray(section["full"], dtype=float)
    rows = [(f"{layer}.{h}", np.asarray(losses, dtype=float) - full)
            for layer, heads in section["ablate_one"].items() for h, losses in heads.items()]
    return [HeatMap(title="loss added by ablating each head, at each position", rows=tuple(r for r, _ in rows),
                    columns=tuple(str(t) for t in range(len(full))), values=[v.tolist() for _, v in rows],
                    unit="loss added (nats)", xlabel="position t (predicting token t+1)", ylabel="head ablated")]


def _plans(inputs: Inputs) -> dict[str, str]:
    return {f"L{layer}.H{h}/ablate_one": f"ablate L{layer}.H{h}" for layer in range(1, inputs.layers + 1) for h in inputs.heads}


def _losses(outcome: Outcome) -> list[float]:
    return [round(float(v), 6) for v in outcome.positions]


@declare("positions", title="Loss at each position, each head ablated", section=Positions, table=table, figure=heat_map,
         plans=_plans, positions=True, applies=lambda task: task.per_position,
         needs="a task with a target at every position (the token tasks)",
         words="the loss at each position, full model and each head ablated alone (Olsson et al.'s per-token view)")
def positions(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    return {"full": _losses(outcomes["full"]),
            "ablate_one": {f"L{layer}": {f"H{h}": _losses(outcomes[f"L{layer}.H{h}/ablate_one"]) for h in inputs.heads}
                           for layer in range(1, inputs.layers + 1)}}
