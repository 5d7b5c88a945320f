"""`opto explain`: everything that decides each run of a spec, as plain data (printed or as JSON).

A run is decided by its settings (those the spec or `--set` names, and any that differ from the
defaults), its `eval.perfected` probes, and its interventions: one record per site with the pass
it acts in and, for reading verbs, the pass it reads. A two-pass plan also gets a sentence per
statement saying what each pass does and why later sites are held.
"""

from __future__ import annotations

from .config import flat_settings, with_settings
from .pipeline import DEFAULT, Experiment, plan_for
from .tasks import layout
from .semantics.plan import Action, Member, reads_pass
from .semantics.spec import variants
from .syntax import ast
from .train.program import program_groups, programs_text


def settings_of(member: Member, named: set[str]) -> list[dict]:
    """The member's settings that `named` lists (set by its spec or `--set`) or that differ from the
    defaults, in key order: key, value and the default (a `task.*` key's: its own task's default)."""
    mine, default = flat_settings(member.config), flat_settings(DEFAULT)
    own = flat_settings(with_settings(DEFAULT, {"task.name": member.config.task.name}))
    default.update({k: v for k, v in own.items() if k.startswith("task.") and k != "task.name"})
    keys = sorted(k for k in mine if (k in named or mine[k] != default.get(k)) and k != "data.schedule")
    return [{"key": k, "value": _plain(mine[k]), "default": _plain(default.get(k))} for k in keys]


def schedule_of(member: Member) -> list[dict]:
    """The member's scheduled data values (`set data.KEY = VALUE during S`), one per change, with the
    statement that writes it and the segments of the training stream they make."""
    data = getattr(member.config, "data", None)
    if data is None or not data.schedule:
        return []
    return [{"line": c.text(), **c.model_dump(mode="json")} for c in data.schedule]


ALL_DEFAULTS = "settings: all at their defaults (the spec and --set name none; docs/language.md#settings lists them)"
"""What `opto explain` prints for a run whose settings list is empty, so that an all-defaults run
says so rather than showing nothing between its header and its passes."""


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def named_settings(exp: Experiment, cli: dict[str, object]) -> dict[str | None, set[str]]:
    """For each variant (None without variants): the setting keys its `set` statements and `--set` name."""
    return {name: {".".join(st.key) for st in flat.statements if isinstance(st, ast.Set)} | set(cli)
            for name, flat in variants(exp.spec)}


def heads_text(actions: list[Action]) -> str:
    """Sites of these actions in selector syntax, one per layer site: `L2.H0..7.pattern`, `L1.H[1,2,5].v`, `L1.resid_out`."""
    groups: dict[tuple, list[int]] = {}
    for a in actions:
        groups.setdefault((a.layer, a.site), [])
        if a.head is not None and a.head not in groups[(a.layer, a.site)]:
            groups[(a.layer, a.site)].append(a.head)
    out = []
    for (layer, site), heads in groups.items():
        if layer is None:
            out.append(site)
            continue
        name = site.split(".", 1)[1]
        if not heads:
            out.append(f"L{layer}.{name}")
            continue
        heads = sorted(heads)
        if len(heads) == 1:
            index = str(heads[0])
        elif heads == list(range(heads[0], heads[-1] + 1)):
            index = f"{heads[0]}..{heads[-1]}"
        else:
            index = "[" + ",".join(map(str, heads)) + "]"
        out.append(f"L{layer}.H{index}.{name}")
    return ", ".join(out)


def _sets(actions: list[Action]) -> str:
    by_value: dict[str, list[Action]] = {}
    for a in actions:
        by_value.setdefault(a.builder, []).append(a)
    return "; ".join(f"{heads_text(group)} = {value}" for value, group in by_value.items())


def pass_structure(member: Member) -> list[str]:
    """What each pass of the member does, in words: one line for the plan, one per statement that
    acts in only some passes (why a two-pass plan holds sites nobody wrote)."""
    if member.passes == 1:
        lines = ["1 pass: every intervention acts in the one forward pass"]
    else:
        lines = ["2 passes: the first pass computes reference activations, the last computes the output and the loss; "
                 "clauses marked 'every' act in both"]
    by_line: dict[tuple, list[Action]] = {}
    for a in member.actions:
        by_line.setdefault((a.span.path, a.span.line), []).append(a)
    for (_, line), actions in by_line.items():
        if all(a.stage == "both" for a in actions):
            continue
        first = [a for a in actions if a.stage == "record"]
        held = [a for a in actions if a.stage == "final" and a.builder == "record"]
        last = [a for a in actions if a.stage == "final" and a.builder != "record"]
        post = [a for a in actions if a.stage == "post"]
        parts = []
        if first:
            parts.append(f"in the first pass it sets {_sets(first)}")
        if last:
            parts.append(f"in the last pass {_sets(last)}" + (f", reading {heads_text(last)} of the first pass"
                                                                if any(a.record for a in last) else ""))
        if held:
            seen = f"the first pass's {_sets(first)}" if first else "none of this line's changes"
            parts.append(f"it holds {heads_text(held)} at their first-pass values, so they see {seen}"
                         + (f" while the rest of the last pass sees {_sets(last)}" if last else
                            " while the rest of the last pass sees them"))
        first_pass = member.config.semantics.first_pass
        for a in post:
            reads = reads_pass(a, member.actions, first_pass)
            why = {"intervened": " (the pass whose logits made the held pattern)", "clean": " (the clean base pass)"}
            parts.append(f"after the last pass it writes {a.text} = {a.builder}, reading {a.record} of the "
                         f"{reads} pass" + (why[first_pass] if reads == "first" else ""))
        text = actions[0].span.line_text.strip()
        lines.append(f"line {line} `{text}`: " + "; ".join(parts))
    return lines


def intervention_records(member: Member, actions: tuple[Action, ...] | None = None) -> list[dict]:
    """One `Action.explain` record per action, with the pass each reading verb reads (`reads_pass`)."""
    actions = member.actions if actions is None else actions
    first_pass = member.config.semantics.first_pass
    return [{**a.explain(layout(member.config).length), "reads_pass": reads_pass(a, actions, first_pass)} for a in actions]


def explain_member(member: Member, named: set[str]) -> dict:
    """Everything that decides one run: settings, probes, passes in words and interventions."""
    return {
        "run": member.name, "variant": member.variant, "bindings": dict(member.bindings),
        "settings": settings_of(member, named),
        "schedule": schedule_of(member),
        "perfected": [{"line": text, "interventions": intervention_records(member, member.actions + extra)[len(member.actions):]}
                      for text, extra in member.probes],
        "passes": member.passes, "pass_structure": pass_structure(member),
        "interventions": intervention_records(member),
        "weights": [w.explain() for w in member.weights],
    }


def explain_experiment(exp: Experiment, cli: dict[str, object] | None = None) -> list[dict]:
    """`explain_member` of every run of the experiment, in order."""
    named = named_settings(exp, cli or {})
    return [explain_member(m, named.get(m.variant, set())) for m in exp.members]


def program_lines(exp: Experiment) -> list[str]:
    """When `opto run` would train the runs in several programs one after another, lines saying so
    and which runs each holds (none for one program, or when a run grafts: its source must be trained
    before its plan can be built)."""
    if len(exp.members) < 2 or any(m.grafts for m in exp.members):
        return []
    groups = program_groups([plan_for(m) for m in exp.members], [m.config for m in exp.members])
    return programs_text([[exp.members[i].name for i in idx] for idx in groups])
