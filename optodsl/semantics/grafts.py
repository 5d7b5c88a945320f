"""Whether each `graft`'s source run exists, or will: the check `opto check` and `opto run` make
over every spec named on their command line, and the order in which `opto run` trains those specs.

A spec alone cannot tell a mistyped source path from a run not trained yet, but a command line
can: a source directory that holds no run is an error naming its path, unless another spec of
the same command trains into it. Then it is a warning, and `opto run` trains that spec first
(specs in waves: each wave's sources are made by earlier waves). Specs whose sources make a
cycle can train in no order: each such graft is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import Span, SpecError, SpecWarning
from .plan import Member

RUN_FILE = "config.json"
"""The file every run directory `opto run` writes holds from its start: a directory without it holds no run."""


@dataclass(frozen=True)
class SpecRuns:
    """One spec of a command line: its name as given, its runs, and the directory each run trains in."""

    path: str
    members: Sequence[Member]
    dirs: Sequence[Path]


@dataclass
class GraftCheck:
    """The outcome for the specs of one command line, each list indexed like the specs:
    their errors and warnings, and `order`, the waves in which `opto run` trains them."""

    errors: list[list[SpecError]] = field(default_factory=list)
    warnings: list[list[SpecWarning]] = field(default_factory=list)
    order: list[list[int]] = field(default_factory=list)


def has_run(run: str) -> bool:
    """Whether the directory `run` holds a run (its settings file): the default existence test."""
    return (Path(run) / RUN_FILE).is_file()


def graft_clauses(members: Sequence[Member]) -> list[tuple[str, Span]]:
    """Each distinct (source run, clause) of the members' grafts, `eval.perfected` lines included, in order."""
    out: list[tuple[str, Span]] = []
    for member in members:
        for action in [*member.actions, *(a for _, probe in member.probes for a in probe)]:
            if action.builder == "graft" and (str(action.param("run")), action.span) not in out:
                out.append((str(action.param("run")), action.span))
    return out


def _place(path: str | Path) -> str:
    """A directory as one comparable string: absolute (from the working directory) and normalised."""
    return os.path.normpath(os.path.abspath(path))


def _missing(run: str) -> str:
    return f"graft source run '{run}' does not exist (no {Path(run) / RUN_FILE})"


MISSING_HINT = ("train it first with opto run, or name the spec that trains it on the same opto run command; "
                "the path is relative to the folder opto run is started in")


def training_waves(needs: list[set[int]]) -> tuple[list[list[int]], set[int]]:
    """Spec indices in waves, each spec after every spec it `needs` (Kahn's order, keeping the
    command line's order within a wave), and the specs left over because their needs form a cycle."""
    done: set[int] = set()
    waves: list[list[int]] = []
    left = list(range(len(needs)))
    while left:
        wave = [i for i in left if needs[i] <= done]
        if not wave:
            return waves, set(left)
        waves.append(wave)
        done.update(wave)
        left = [i for i in left if i not in done]
    return waves, set()


def check_graft_sources(specs: Sequence[SpecRuns], exists: Callable[[str], bool] = has_run) -> GraftCheck:
    """Check every graft source of `specs` (one command line) and order the specs for training.

    A source that another spec trains into (whether it exists yet or not) makes that spec train
    first. A missing source is an error, unless another spec trains into it (a warning naming
    that spec) or the two specs wait on each other (an error naming the cycle)."""
    maker: dict[str, int] = {}
    for i, spec in enumerate(specs):
        for run_dir in spec.dirs:
            maker.setdefault(_place(run_dir), i)
    check = GraftCheck(errors=[[] for _ in specs], warnings=[[] for _ in specs])
    needs: list[set[int]] = [set() for _ in specs]
    pending: list[tuple[int, str, Span, int]] = []
    for i, spec in enumerate(specs):
        for run, span in graft_clauses(spec.members):
            source = maker.get(_place(run))
            if source is not None and source != i:
                needs[i].add(source)
            if exists(run):
                continue
            if source is None or source == i:
                check.errors[i].append(SpecError(span, _missing(run), hint=MISSING_HINT))
            else:
                pending.append((i, run, span, source))
    waves, stuck = training_waves(needs)
    check.order = waves + ([sorted(stuck)] if stuck else [])  # a cycle of existing sources reads them as they are
    for i, run, span, source in pending:
        made_by = specs[source].path
        if i in stuck:
            check.errors[i].append(SpecError(span, f"{_missing(run)}, and {made_by}, which trains it, waits on this "
                                                   "spec's runs too", hint="no order trains both: train one of them first"))
        else:
            check.warnings[i].append(SpecWarning(span=span, message=f"graft source run '{run}' does not exist yet: "
                                                                    f"{made_by}, on the same command line, trains it",
                                                 hint=f"opto run trains {made_by} first, then this spec"))
    return check
