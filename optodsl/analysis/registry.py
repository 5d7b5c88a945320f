"""The analyses `opto analyze` runs, each declared once, where its function is: `@declare(...)`.

A declaration names the analysis (`--only NAME`), says when it applies (a pair of layers; only when
named; the tasks it applies to, asked of the task class), gives the ablations it needs as spec text
(evaluated with every other analysis's in one batched program), the function that turns their
outcomes into its `analysis.json` section, that section's type, its console table and, optionally,
its report figure as heat maps. The command line's `--only`, `applicable`, the file's layout
(`analysis_layout`), the tables and the report all read `REGISTRY`; nothing else lists analyses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .schema import AnalysisBase, layout


@dataclass
class Inputs:
    """What every analysis reads: the run, its task and evaluation sequences, a compiler of spec text
    on top of the run's interventions (`plan`), the full model's plan, the `--group` groups, and a
    memo for what several analyses derive once (`once`)."""

    run: Any
    task: Any
    seqs: Any
    plan: Callable[[str], Any]
    full: Any
    groups: list | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return self.run.layers

    @property
    def heads(self) -> range:
        return range(self.run.heads)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()`, computed the first time `key` is asked for."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


@dataclass(frozen=True)
class HeatMap:
    """One heat map of a section, as the report draws it: `values[i][j]` at row `rows[i]`, column `columns[j]`."""

    title: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    values: list[list[float]]
    unit: str
    xlabel: str
    ylabel: str


def _no_plans(inputs: Inputs) -> dict[str, str]:
    return {}


def _every_task(task: type) -> bool:
    return True


@dataclass(frozen=True)
class Declared:
    """One analysis: see the module docstring. `build(inputs, outcomes)` returns its section as JSON-ready
    data from the outcomes of the plans `plans(inputs)` named (keys shared between analyses evaluate
    once); `table(section, analysis)` its console lines; `figure(section)` its heat maps from the
    report's dict (null numbers as NaN); `positions`: its plans' outcomes need the loss at each
    position (`Outcome.positions`); `applies(task class)`, with `needs` saying what a task lacks."""

    name: str
    title: str
    words: str
    section: Any
    build: Callable[[Inputs, dict], Any]
    table: Callable[[Any, AnalysisBase], list[str]]
    plans: Callable[[Inputs], dict[str, str]] = _no_plans
    figure: Callable[[Any], list[HeatMap]] | None = None
    paired: bool = False
    on_request: bool = False
    applies: Callable[[type], bool] = _every_task
    needs: str = ""
    positions: bool = False
    weights: bool = False
    """It reads the built-in transformer's weight matrices (composition), so a model of one's own lacks it."""
    over_training: bool = False
    """Its section is built from its plans' outcomes alone, so `--over-training` builds it at every point
    (from that point's outcomes; what it derives from the network, such as Table 1's default groups, is
    taken once, from the latest checkpoint)."""


REGISTRY: dict[str, Declared] = {}
"""Every analysis, in the order `opto analyze` runs them and analysis.json lists their sections."""


def declare(name: str, *, title: str, words: str, section: Any, table: Callable[[Any, AnalysisBase], list[str]],
            plans: Callable[[Inputs], dict[str, str]] = _no_plans, figure: Callable[[Any], list[HeatMap]] | None = None,
            paired: bool = False, on_request: bool = False, applies: Callable[[type], bool] = _every_task,
            needs: str = "", positions: bool = False, weights: bool = False, over_training: bool = False):
    """Register the decorated `build(inputs, outcomes)` as analysis `name` (see `Declared`)."""
    def register(build):
        REGISTRY[name] = Declared(name, title, words, section, build, table, plans, figure, paired, on_request,
                                  applies, needs, positions, weights, over_training)
        return build
    return register


def names() -> tuple[str, ...]:
    """Every registered analysis's name, in order."""
    return tuple(REGISTRY)


def applicable(layers: int, task: type | None = None, built_in: bool = True) -> tuple[str, ...]:
    """The analyses run by default on a model of `layers` layers trained on `task` (a task class; any
    when None): those that apply to it, but not those run only when named, nor, with one layer, the
    paired ones, nor on a model of one's own (`built_in` False) those that read the built-in weights."""
    return tuple(d.name for d in REGISTRY.values()
                 if not d.on_request and (layers >= 2 or not d.paired) and (task is None or d.applies(task))
                 and (built_in or not d.weights))


def over_training(layers: int, task: type | None = None) -> tuple[str, ...]:
    """The analyses `--over-training` builds at every point by default: those declared `over_training`
    that `applicable` runs on this model and task."""
    return tuple(name for name in applicable(layers, task) if REGISTRY[name].over_training)


def analysis_layout() -> type[AnalysisBase]:
    """The `analysis.json` layout of the analyses registered now: `AnalysisBase` plus one optional
    section per analysis, in the registry's order."""
    return layout(tuple((d.name, d.section) for d in REGISTRY.values()))
