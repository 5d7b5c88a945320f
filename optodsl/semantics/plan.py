"""The resolved form of a spec: one `Action` per overridden site, grouped into `Member` runs.

This is the compiler's input and what `opto explain` prints. Everything here is plain frozen
data: canonical site text, positions, pass, schedule and parameters; no arrays.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..config import ExperimentConfig
from ..errors import Span

Stage = Literal["both", "record", "final", "post"]
"""Which pass an action acts in: `both` (every pass; the only pass of single-pass plans),
`record` (only the first pass, whose activations later ones read), `final` (only the last pass),
`post` (on the output logits after the last pass, from that pass's own activations)."""

MAX_SEQUENCES = 2**31 - 1


class Action(BaseModel):
    """One intervention on one site (one head of a head site): what to write, where and when."""

    model_config = ConfigDict(frozen=True)

    verb: str
    builder: str
    site: str  # activation key, e.g. "L1.pattern"
    layer: int | None = None  # counted from 1
    head: int | None = None  # counted from 0
    rows: tuple[int, ...] | None = None  # sequence positions overridden; None = every position
    params: tuple[tuple[str, float | int | str | bool | tuple[int, ...]], ...] = ()
    stage: Stage = "both"
    record: str | None = None  # site key of the first pass that the value is read from
    start: int = 0
    stop: int = MAX_SEQUENCES
    phase: Literal["both", "train", "eval"] = "both"
    span: Span

    @property
    def text(self) -> str:
        """Canonical site text: `L2.H3.v`, `L1.resid_out`, `embed`."""
        if self.layer is None:
            return self.site
        name = self.site.split(".", 1)[1]
        return f"L{self.layer}.H{self.head}.{name}" if self.head is not None else f"L{self.layer}.{name}"

    def param(self, name: str, default=None):
        return dict(self.params).get(name, default)

    def schedule_text(self) -> str:
        if self.phase == "eval":
            return "eval"
        if self.phase == "train":
            return "train"
        if self.start == 0 and self.stop == MAX_SEQUENCES:
            return "always"
        stop = "" if self.stop == MAX_SEQUENCES else str(self.stop)
        return f"{self.start}..{stop}"

    def explain(self, seq_len: int) -> dict:
        """The `opto explain --json` record of this action."""
        positions = "all" if self.rows is None or len(self.rows) == seq_len else list(self.rows)
        passes = {"both": "every", "record": "first", "final": "last", "post": "after last"}[self.stage]
        # a path cut's params are its sources as text and as writes with head masks; the text says it all
        params = {"from": self.param("from")} if self.builder == "pathcut" else dict(self.params)
        return {
            "verb": self.verb, "site": self.text, "positions": positions, "pass": passes,
            "schedule": self.schedule_text(), "value": self.builder, "params": params,
            "reads": self.record, "at": str(self.span),
        }


class WeightAction(BaseModel):
    """One statement on the network's parameters: `freeze`, `train only`, `lr_scale` (a learning-rate
    scale, 0 for a freeze) while `start <= sequences < stop`, or `reinit` at `at` sequences from `seed`.

    `paths` are the parameters as `optodsl.model.parameters` names them; `invert` selects every other
    one (`train only`); `part` is the selection as written, canonical (`L2.H3`, `L1.mlp`, `embed`)."""

    model_config = ConfigDict(frozen=True)

    verb: str
    part: str
    paths: tuple[tuple[str, int | None], ...]
    invert: bool = False
    scale: float = 0.0
    at: int | None = None
    seed: int | None = None
    start: int = 0
    stop: int = MAX_SEQUENCES
    span: Span

    @property
    def reinit(self) -> bool:
        return self.at is not None

    def schedule_text(self) -> str:
        if self.reinit:
            return f"at {self.at}"
        if self.start == 0 and self.stop == MAX_SEQUENCES:
            return "always"
        return f"{self.start}..{'' if self.stop == MAX_SEQUENCES else self.stop}"

    def explain(self) -> dict:
        """The `opto explain --json` record: which parameters, from when to when, at what rate."""
        return {"verb": "train only" if self.invert else self.verb, "parameters": self.part, "all_others": self.invert,
                "schedule": self.schedule_text(), "rate": None if self.reinit else self.scale, "seed": self.seed,
                "at": str(self.span)}


PASS_NAMES = ("first", "last")
"""The passes `opto trace --pass` can print: a two-pass plan's reference pass and its final pass
(a one-pass plan's only pass is both)."""


def passes_needed(stages, first_pass: str = "intervened") -> int:
    """How many passes actions of these stages need (`semantics.first_pass` decides for `copy`).

    Two when an action acts in only the first or only the last pass. With a clean first pass
    (the paper's base pass) a `copy` reads that pass, so it needs a second pass as soon as any
    other action changes the network; alone, the clean pass is the only one."""
    stages = set(stages)
    if stages & {"record", "final"}:
        return 2
    return 2 if first_pass == "clean" and "post" in stages and "both" in stages else 1


PASS_STAGES = {
    "first": {"intervened": ("both", "record"), "clean": ("record",)},
    "last": {"intervened": ("both", "final"), "clean": ("both", "final")},
    "post": {"intervened": ("post",), "clean": ("post",)},
    "every": {"intervened": ("both",), "clean": ("both",)},
}
"""Which stages act in which pass: a two-pass plan's `first` (reference) pass, its `last` pass,
`post` (on the output logits after the last pass), and `every` (the single-pass actions alone);
a clean first pass (the paper's base pass) runs only the actions that define it."""


def in_pass(items, which: str, first_pass: str = "intervened") -> list:
    """The actions (or terms: anything with a `stage`) of `items` that act in pass `which`."""
    stages = PASS_STAGES[which][first_pass]
    return [item for item in items if item.stage in stages]


def reads_pass(action: Action, actions: tuple[Action, ...], first_pass: str = "intervened") -> str | None:
    """Which pass the activation an action reads comes from ("first" or "last"), None if it reads none.

    Last-pass actions read the first (reference) pass. The perfect copy, after the last pass,
    reads the last pass's logits, except for a head whose pattern the last pass holds at its
    first-pass value: then it reads the first pass's logits, which made that pattern (the rule of
    `compile.lower._held_logits`). With `first_pass="clean"` (the paper's semantics) the copy
    reads the first pass whenever the plan has two."""
    if action.record is None:
        return None
    if action.stage != "post":
        return "first"
    if first_pass == "clean":
        return "first" if passes_needed((a.stage for a in actions), first_pass) == 2 else "last"
    pattern = action.record.replace(".attn_logits", ".pattern")
    held = any(a.builder == "record" and a.site == pattern and a.head == action.param("head") and a.stage == "final"
               for a in actions)
    return "first" if held else "last"


class Member(BaseModel):
    """One run of an experiment: its settings, its actions, and the sweep values that made it."""

    model_config = ConfigDict(frozen=True)

    name: str
    variant: str | None = None  # the `variant NAME { ... }` block this run adds, if the spec has variants
    bindings: tuple[tuple[str, float | int | str | bool], ...] = ()
    config: ExperimentConfig
    actions: tuple[Action, ...] = ()
    grafts: tuple[str, ...] = ()  # run directories whose checkpoints the actions read
    probes: tuple[tuple[str, tuple[Action, ...]], ...] = ()  # eval.perfected lines and their extra actions
    weights: tuple[WeightAction, ...] = ()  # freeze, train only, lr_scale and reinit statements, in order

    @property
    def passes(self) -> int:
        return passes_needed((a.stage for a in self.actions), self.config.semantics.first_pass)
