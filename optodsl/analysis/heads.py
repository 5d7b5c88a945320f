"""Checkpoint analyses of the paper (Figures 4a, 11, 13, 14 and 16, Tables 1, 2 and 3), each written as `.opto` text.

Every ablation here is a small spec ("ablate L2.* except H3") compiled against the run's own
settings, so an analysis means exactly what the same line means in a training spec. By default
each one is added to the run's own interventions (the forward its evaluations used), so the full
model scores what the run's final evaluation scored; `bare` scores the network without them. An
analysis line that conflicts with one of the run's (another value at the same site) is refused.
The result is one JSON-ready dict, an `Analysis` (`optodsl.analysis.schema`, the layout `opto report` reads).
Each analysis here is declared with `registry.declare` beside the function that builds its section.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .. import rundir
from ..compile.lower import CompiledPlan, compile_member
from ..config import ExperimentConfig
from ..errors import DataError, SpecError
from ..pipeline import check_spec, load_graft
from ..measures import MEASURES, previous_token_attention, unmet_need
from ..model.parameters import arrays
from ..model.protocol import declared as declared_model
from ..semantics.plan import Member
from ..semantics.spec import check_conflicts
from ..sites import layer_pairs, pair_key
from ..tasks import layout, reading
from ..tasks.records import TRAIN
from .evaluate import Outcome, Sequences, activations, evaluate_plans, evaluation_set
from .registry import REGISTRY, Declared, Inputs, analysis_layout, applicable, declare
from .runs import TrainedRun
from .schema import Added, CompositionSection, GroupsSection, HeadsSection, Perfected, PathsSection, Subset
from .tables import added_lines, composition_lines, groups_lines, heads_lines, paths_lines, perfected_lines, subset_lines

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


def _text_member(text: str, config: ExperimentConfig, sites=None) -> Member:
    """The single run of spec `text` resolved against `config` (and `sites`, a model of one's own's
    declaration), without its evaluation-only probes."""
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"perfected": ()})})
    return check_spec(text + "\n", config, sites=sites).members[0]


def compile_text(text: str, config: ExperimentConfig) -> CompiledPlan:
    """The single run of spec `text` resolved against `config` (without its evaluation-only probes), compiled."""
    return compile_member(_text_member(text, config))


def intervention_lines(member: Member | None) -> list[str]:
    """The spec lines of a member's interventions, in order (canonical text, as in its spec.opto)."""
    seen: dict[tuple, str] = {}
    for a in member.actions if member else ():
        seen.setdefault((a.span.path, a.span.line), a.span.line_text.strip())
    return list(seen.values())


class Planner:
    """Analysis texts compiled on top of a run's own interventions (none when `bare`)."""

    def __init__(self, run: TrainedRun, bare: bool):
        if run.member is None and not bare:
            raise DataError(run.run_dir, "the run's training interventions are unknown, so its analysis would be a guess",
                            expected="a spec.opto beside config.json (as `opto run` writes), or --bare to analyse the network "
                                     "without interventions", found="no spec.opto (a run trained from Python?)")
        self.run = run
        self.base = () if bare else run.member.actions
        sources = () if bare else run.member.grafts
        self.grafts = {src: load_graft(src, run.config) for src in sources}
        self.sites = run.declaration()
        self.params = arrays(declared_model(run.source)) if run.source is not None else None

    def plan(self, text: str) -> CompiledPlan:
        """`text`'s interventions added to the run's; a site both would set differently is refused."""
        cfg = self.run.config
        extra = _text_member(text, cfg, self.sites)
        actions = self.base + extra.actions
        try:
            check_conflicts(list(actions), layout(cfg).length)
        except SpecError as err:
            shown = "; ".join(text.splitlines())
            raise DataError(self.run.run_dir / rundir.SPEC_TEXT, f"the analysis '{shown}' conflicts with "
                            "the run's own interventions", expected="analyses of sites the run leaves alone: analyse the bare "
                            "network with --bare, or leave this analysis out with --only", found=err.message) from None
        grafts = tuple(sorted(set(self.grafts) | set(extra.grafts)))
        for src in extra.grafts:
            self.grafts.setdefault(src, load_graft(src, cfg))
        return compile_member(extra.model_copy(update={"actions": actions, "grafts": grafts}), self.grafts, self.sites,
                              params=self.params)


def prev_token_scores(run: TrainedRun, task, seqs: Sequences, layer: int = 1, plan: CompiledPlan | None = None) -> np.ndarray:
    """Mean attention from each position to the one before it, per head of `layer` (under `plan`, if given)."""
    pattern = activations(run.model, task, seqs, plan=plan, sequences_seen=run.sequences)[0][f"L{layer}.pattern"]
    return np.asarray(previous_token_attention(pattern))


def _spread(seqs: Sequences, limit: int = 2048) -> Sequences:
    """Up to `limit` sequences spread evenly over `seqs` (an enumerated set is ordered by class)."""
    return seqs.take(np.linspace(0, len(seqs) - 1, min(limit, len(seqs))).astype(int))


def head_measures(run: TrainedRun, task, seqs: Sequences, plan: CompiledPlan) -> dict[str, dict[str, dict[str, float]]]:
    """Each per-head measure the task declares (`eval.measures`' names: induction, prev_token, copying,
    ...), under `plan`, on up to 2,048 sequences spread over `seqs`: {measure: {"L1": {"H0": value}}}."""
    spread = _spread(seqs)
    acts, batch, _ = activations(run.model, task, spread, plan=plan, sequences_seen=run.sequences)
    roles, layers = layout(run.config).roles, run.layers
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in type(task).measures:
        if unmet_need(name, run.sites, layers, run.built_in):  # e.g. copying on a model of one's own
            continue
        values = MEASURES[name](acts, batch, layers, run.model, type(task), roles)
        table: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            where = key.split("/")[1]  # L1.H0
            lay, head = where.split(".")
            table.setdefault(lay, {})[head] = round(float(value), 6)
        out[name] = table
    return out


def reference_levels(run: TrainedRun, task, seqs: Sequences, plan: CompiledPlan) -> dict[str, float]:
    """The task's reference levels beside the scores: its fixed loss levels, and the reference losses
    it logs (the Markov unigram and Bayes bigram predictors' losses, ...) on up to 2,048 of `seqs`."""
    rd = reading(run.config)
    out = {level.label: round(level.value, 6) for level in rd.loss_levels if level.value is not None}
    if rd.reference_losses:
        _, batch, logits = activations(run.model, task, _spread(seqs), plan=plan, sequences_seen=run.sequences)
        metrics = task.metrics(logits, batch)
        for level in rd.loss_levels:
            if level.metric in metrics:
                out[level.label] = round(float(metrics[level.metric]), 6)
        for name in rd.reference_losses:
            if name in metrics and not any(level.metric == name for level in rd.loss_levels):
                out[name] = round(float(metrics[name]), 6)
    return out


def induction_scores(run: TrainedRun, task, seqs: Sequences, plan: CompiledPlan) -> np.ndarray:
    """Each last-layer head's induction strength (the `induction` measure) under `plan`, on up to 2,048
    sequences spread evenly over `seqs`."""
    spread = _spread(seqs)
    acts, batch, _ = activations(run.model, task, spread, plan=plan, sequences_seen=run.sequences)
    layer = run.layers
    scores = MEASURES["induction"](acts, batch, layer, run.model, type(task))
    return np.array([float(scores[f"induction/L{layer}.H{h}"]) for h in range(run.heads)])


def default_groups(scores: dict[int, np.ndarray]) -> list[Group]:
    """Table 1's groups in every layer but the last (`scores` maps each such layer to its heads'
    previous-token attention): the previous-token heads (attention >= 0.5, else the top three),
    the other heads, and all of them."""
    groups = []
    for layer, per_head in sorted(scores.items()):
        heads = list(range(len(per_head)))
        pt = [h for h in heads if per_head[h] >= 0.5] or sorted(np.argsort(-per_head)[:3].tolist())
        rest = [h for h in heads if h not in pt]
        groups.append(Group(layer, tuple(pt)))
        if rest:
            groups.append(Group(layer, tuple(rest)))
        groups.append(Group(layer, tuple(heads)))
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


def _one_at_a_time(inputs: Inputs) -> dict[str, str]:
    """Each head of every layer ablated alone and kept on alone in its layer."""
    texts = {}
    for layer in range(1, inputs.layers + 1):
        for h in inputs.heads:
            texts[f"L{layer}.H{h}/ablate_one"] = f"ablate L{layer}.H{h}"
            texts[f"L{layer}.H{h}/only_one"] = f"ablate L{layer}.* except H{h}"
    return texts


@declare("heads", title="One head ablated, or only one on (Figure 4a)", section=HeadsSection, table=heads_lines,
         plans=_one_at_a_time, words="each head of every layer ablated alone and kept on alone (Figure 4a)")
def _heads(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    return {f"L{layer}": {kind: {f"H{h}": outcomes[f"L{layer}.H{h}/{kind}"].summary() for h in inputs.heads}
                          for kind in ("ablate_one", "only_one")} for layer in range(1, inputs.layers + 1)}


def _groups_of(inputs: Inputs) -> list[Group]:
    """The `--group` groups, or Table 1's default ones from the previous-token attention of each layer but the last."""
    def default() -> list[Group]:
        full, last = inputs.full, inputs.layers
        return default_groups({layer: prev_token_scores(inputs.run, inputs.task, inputs.seqs, layer, plan=full)
                               for layer in range(1, max(last, 2))})
    return inputs.groups or inputs.once("groups", default)


def _group_plans(inputs: Inputs) -> dict[str, str]:
    texts = {}
    for g in _groups_of(inputs):
        later = f"L{g.layer + 1}" if g.layer < inputs.layers else None
        texts[f"{g.name}/ablated"] = f"ablate {g.selector}"
        if later:
            texts[f"{g.name}/pattern_preserving"] = f"ablate {g.selector} preserving {later}.pattern"
            texts[f"{g.name}/value_preserving"] = f"ablate {g.selector} preserving {later}.v"
    return texts


@declare("groups", title="Head groups (Table 1)", section=GroupsSection, table=groups_lines, plans=_group_plans,
         over_training=True, words="groups of heads ablated, and ablated keeping the next layer's pattern or values (Table 1)")
def _groups(inputs: Inputs, outcomes: dict[str, Outcome]) -> list:
    return [{"name": g.name, "layer": g.layer, "heads": list(g.heads),
             **{kind: outcomes[f"{g.name}/{kind}"].summary()
                for kind in ("ablated", "pattern_preserving", "value_preserving") if f"{g.name}/{kind}" in outcomes}}
            for g in _groups_of(inputs)]


def _path_plans(inputs: Inputs) -> dict[str, str]:
    return {f"path/{la}/{lb}/{a}/{b}": f"ablate L{la}.* except H{a}\nablate L{lb}.* except H{b}"
            for la, lb in layer_pairs(inputs.layers) for a in inputs.heads for b in inputs.heads}


@declare("paths", title="One path (Figure 11b)", section=PathsSection, table=paths_lines, plans=_path_plans, paired=True,
         over_training=True, words="one head of an earlier layer and one of a later layer kept on, every pair of layers (Figure 11b)")
def _paths(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    heads = inputs.heads
    return {pair_key(la, lb): {"accuracy": [[round(outcomes[f"path/{la}/{lb}/{a}/{b}"].accuracy, 6) for b in heads]
                                            for a in heads]}
            for la, lb in layer_pairs(inputs.layers)}


@declare("composition", title="Composition (Figure 11c)", section=CompositionSection, table=composition_lines,
         paired=True, weights=True, words="Q-, K- and V-composition scores of every pair of layers (Figure 11c)")
def _composition(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    return {pair_key(la, lb): composition_scores(inputs.run, la, lb) for la, lb in layer_pairs(inputs.layers)}


@declare("subset", title="The sequences the reference head gets wrong (Table 2)", section=Subset, table=subset_lines,
         plans=_one_at_a_time, words="each last-layer head alone on the sequences the best one gets wrong (Table 2)")
def _subset_section(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    return _subset(outcomes, inputs.layers, inputs.heads)


def _perfected_plans(inputs: Inputs) -> dict[str, str]:
    last = inputs.layers
    return {**_one_at_a_time(inputs),
            **{f"L{last}.H{h}/perfected": f"ablate L{last}.* except H{h}\nclamp L{last}.H{h}.pattern = induction"
               for h in inputs.heads}}


@declare("perfected", title="Each last-layer head with a perfect match (Figure 16, Table 3)", section=Perfected,
         table=perfected_lines, plans=_perfected_plans, on_request=True,
         words="each last-layer head alone with its pattern clamped to a perfect match (Figure 16, Table 3)")
def _perfected_section(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    cfg = inputs.run.config
    return _perfected(outcomes, inputs.layers, inputs.heads, inputs.task.answers(inputs.seqs.index), layout(cfg).outputs)


def _strength_order(inputs: Inputs) -> tuple[np.ndarray, list[int]]:
    """The last layer's induction strengths and its heads from the strongest."""
    def compute():
        strengths = induction_scores(inputs.run, inputs.task, inputs.seqs, inputs.full)
        return strengths, sorted(inputs.heads, key=lambda h: -strengths[h])
    return inputs.once("strength_order", compute)


def _added_plans(inputs: Inputs) -> dict[str, str]:
    _, order = _strength_order(inputs)
    return {f"added/{start}/{k}": f"ablate L{inputs.layers}.* except H[{','.join(str(h) for h in order[start:k])}]"
            for start in (0, 1) for k in range(start + 1, len(order) + start)}


@declare("added", title="Heads added by induction strength (Figure 14)", section=Added, table=added_lines,
         plans=_added_plans, on_request=True,
         words="the last layer's heads kept on one more at a time by induction strength (Figure 14)")
def _added(inputs: Inputs, outcomes: dict[str, Outcome]) -> dict:
    strengths, order = _strength_order(inputs)
    return {"layer": f"L{inputs.layers}", "order": [f"H{h}" for h in order],
            "strength": {f"H{h}": round(float(strengths[h]), 6) for h in inputs.heads},
            "from_strongest": [outcomes[f"added/0/{k}"].summary() for k in range(1, len(order))] + [outcomes["full"].summary()],
            "from_second": [outcomes[f"added/1/{k}"].summary() for k in range(2, len(order) + 1)]}


def chosen(what: tuple[str, ...] | None, run: TrainedRun, task: type) -> tuple[Declared, ...]:
    """The declarations of the analyses `what` (default: those that apply), refusing with a DataError
    an analysis this model or task lacks."""
    what = applicable(run.layers, task, run.built_in) if what is None else tuple(what)
    unknown = set(what) - set(REGISTRY)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; choose from {', '.join(REGISTRY)}")
    weights = [a for a in what if REGISTRY[a].weights]
    if weights and not run.built_in:
        raise DataError(run.run_dir / rundir.MODEL, f"{' and '.join(weights)} read{'s' if len(weights) == 1 else ''} the "
                        "built-in transformer's weight matrices, which a model of one's own does not have",
                        expected=f"leave {'it' if len(weights) == 1 else 'them'} out (the analyses of this run: "
                                 f"{', '.join(applicable(run.layers, task, False))})")
    paired = [a for a in what if REGISTRY[a].paired]
    if run.layers < 2 and paired:
        raise DataError(run.run_dir, f"{' and '.join(paired)} compare{'s' if len(paired) == 1 else ''} a pair of layers, "
                        "and this model has one", expected="a model with two layers or more, or leave them out "
                        f"(the analyses of a one-layer model: {', '.join(applicable(1, task))})",
                        found=f"model.layers = {run.layers}" if run.built_in else f"{run.layers} layer")
    for name in what:
        if not REGISTRY[name].applies(task):
            raise DataError(run.run_dir, f"the {name} analysis does not apply to the {task.name} task",
                            expected=f"{REGISTRY[name].needs}, or leave it out (the analyses of this run: "
                                     f"{', '.join(applicable(run.layers, task, run.built_in))})", found=f"task.name = {task.name}")
    return tuple(REGISTRY[name] for name in REGISTRY if name in what)


def analyze(run: TrainedRun, what: tuple[str, ...] | None = None, groups: list[Group] | None = None,
            which: str = TRAIN, n: int | None = None, seed: int = 0, bare: bool = False) -> dict:
    """Run the chosen registered analyses (by default every one that applies to the model's depth and
    task, `registry.applicable`) on a trained run, under its own training interventions (or none, with
    `bare`); returns the `analysis.json` dict.

    The plans of every chosen analysis are evaluated together (`evaluate_plans`: one program per
    structure); head ablations cover every layer; paths and composition cover every pair of layers
    (keyed `L1-L2`, `L1-L3`, `L2-L3`, ...); Tables 2 and 3 and Figure 14 are taken on the last layer."""
    cfg = run.config
    task, seqs = evaluation_set(cfg, which, n, seed)
    declared = chosen(what, run, type(task))
    planner = Planner(run, bare)
    full = planner.plan("")
    inputs = Inputs(run, task, seqs, planner.plan, full, groups)
    texts: dict[str, str] = {"full": ""}
    at_positions = set()  # the plans whose loss at each position an analysis reads
    for d in declared:
        asked = d.plans(inputs)
        texts.update(asked)
        if d.positions:
            at_positions |= {"full", *asked}
    names = list(texts)
    plans = [full if k == "full" else planner.plan(texts[k]) for k in names]
    outcomes = dict(zip(names, evaluate_plans(run.model, plans, task, seqs, run.sequences,
                                              positions={i for i, k in enumerate(names) if k in at_positions})))
    member = None if bare else run.member
    result: dict = {
        "run_dir": str(run.run_dir), "spec": run.spec, "sequences": run.sequences,
        "bare": bare, "interventions": intervention_lines(member) or "none", "bindings": dict(member.bindings) if member else {},
        "eval": {"set": seqs.name, "sequences": len(seqs), "enumerated": seqs.enumerated,
                 **({} if seqs.enumerated else {"seed": seed})},
        "chance": next((level.value for level in reading(cfg).accuracy_levels if level.value is not None), None),
        "scored": reading(cfg).analysis_words,
        "references": reference_levels(run, task, seqs, full),
        "measures": head_measures(run, task, seqs, full),
        "full": outcomes["full"].summary(),
    }
    for d in declared:
        result[d.name] = d.build(inputs, outcomes)
    return analysis_layout().model_validate(result).to_json()


def _subset(outcomes: dict[str, Outcome], layer: int, heads, kind: str = "only_one") -> dict:
    """Table 2 (Table 3 with `kind="perfected"`): each head's accuracy alone in its layer, on all
    sequences and on the sequences the best head alone gets wrong."""
    alone = {h: outcomes[f"L{layer}.H{h}/{kind}"].correct for h in heads}
    ref = max(heads, key=lambda h: alone[h].mean())
    wrong = ~alone[ref]
    return {
        "reference": f"L{layer}.H{ref}",
        "sequences": int(len(wrong)),
        "wrong": int(wrong.sum()),
        "accuracy_all": {f"H{h}": round(float(alone[h].mean()), 6) for h in heads},
        "accuracy_on_wrong": {f"H{h}": (round(float(alone[h][wrong].mean()), 6) if wrong.any() else None) for h in heads},
    }


def _perfected(outcomes: dict[str, Outcome], layer: int, heads, answers: np.ndarray | None, n_labels: int) -> dict:
    """Figure 16 and Table 3: each head alone in its layer with its own match (computed) and with its
    pattern clamped to the perfect induction pattern (perfected, so only its copy can err); accuracy per
    correct label, and each label's share of the head's mistakes under the perfected match."""
    if answers is None:  # a task whose sequences have no single answer: no tables by answer
        return {"layer": f"L{layer}",
                "heads": {f"H{h}": {"computed": outcomes[f"L{layer}.H{h}/only_one"].summary(),
                                    "perfected": outcomes[f"L{layer}.H{h}/perfected"].summary()} for h in heads},
                "subset": _subset(outcomes, layer, heads, kind="perfected")}
    count = np.bincount(answers, minlength=n_labels)

    def by_label(correct: np.ndarray) -> list[float | None]:
        right = np.bincount(answers[correct], minlength=n_labels)
        return [round(float(r / c), 6) if c else None for r, c in zip(right, count)]

    def mistake_share(correct: np.ndarray) -> list[float | None]:
        wrong = np.bincount(answers[~correct], minlength=n_labels)
        return [round(float(w / wrong.sum()), 6) if wrong.sum() else None for w in wrong]

    return {
        "layer": f"L{layer}",
        "label_counts": count.tolist(),
        "heads": {f"H{h}": {"computed": outcomes[f"L{layer}.H{h}/only_one"].summary(),
                            "perfected": outcomes[f"L{layer}.H{h}/perfected"].summary(),
                            "accuracy_by_label": by_label(outcomes[f"L{layer}.H{h}/perfected"].correct),
                            "computed_accuracy_by_label": by_label(outcomes[f"L{layer}.H{h}/only_one"].correct),
                            "mistake_share_by_label": mistake_share(outcomes[f"L{layer}.H{h}/perfected"].correct)}
                  for h in heads},
        "subset": _subset(outcomes, layer, heads, kind="perfected"),
    }
