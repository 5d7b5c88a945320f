"""Frozen, validated experiment settings: task, model, data, training, evaluation and seeds.

Every setting a spec's `set` statement or the command line's `--set key=value` can change is a
field here, addressed as `section.field` (for example `train.lr`); `setting_keys()` lists them.
The `task` section is one model per task, chosen by `task.name`; each task has its own keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, SerializationInfo, SerializerFunctionWrapHandler, field_validator,
                      model_serializer, model_validator)

from . import rundir


class SettingValueError(ValueError):
    """A rule between settings broken by one setting's value: `key` names it, so the error can point
    at the `set` that wrote it rather than at another one."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Frozen):
    """The causal transformer; defaults are the paper's (2 layers, 8 heads, d_model 64, RoPE, pre-norm)."""

    layers: int = Field(2, ge=1, le=64)
    heads: int = Field(8, ge=1, le=64)
    d_model: int = Field(64, ge=1, le=4096)
    mlp: bool = False
    mlp_ratio: int = Field(4, ge=1, le=16)
    positions: Literal["rope", "learned", "sinusoidal", "none"] = "rope"
    rope_base: float = Field(10000.0, gt=0)
    prenorm: bool = True
    final_norm: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelConfig":
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.positions == "rope" and (self.d_model // self.heads) % 2:
            raise ValueError(f"RoPE needs an even head dimension; got d_model/heads = {self.d_model // self.heads}")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


SCHEDULABLE = ("mixture", "burstiness", "distractors", "zipf", "noise")
"""The `data.*` settings that are values of the few-shot training stream rather than its shape: runs
that differ only in them share one program, and `set data.KEY = VALUE during START..STOP` changes them
during training (`DataConfig.schedule`)."""


class DataChange(_Frozen):
    """One scheduled data value, `set data.KEY = VALUE during START..STOP`: the training stream draws
    with VALUE while the sequences seen are in [start, stop) (stop None: to the end of the run)."""

    key: Literal["mixture", "burstiness", "distractors", "zipf", "noise"]
    value: Union[bool, int, float, tuple[Union[bool, int, float], ...]]
    start: int = Field(0, ge=0)
    stop: int | None = Field(None, ge=1)

    def text(self) -> str:
        """The change as the statement that writes it (sequence counts written out)."""
        value = self.value
        shown = ("[" + ", ".join(_value_text(v) for v in value) + "]") if isinstance(value, tuple) else _value_text(value)
        return f"set data.{self.key} = {shown} during {self.start or ''}..{'' if self.stop is None else self.stop}"


def _value_text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class DataConfig(_Frozen):
    """The few-shot task: where features come from, the class/exemplar/label splits, context size."""

    source: Literal["synthetic"] | str = "synthetic"
    feature_dim: int = Field(512, ge=1)
    total_classes: int = Field(1623, ge=2)
    exemplars: int = Field(5, ge=2)
    classes: int = Field(50, ge=2, description="training classes (the first ones of the table)")
    test_classes: int = Field(100, ge=2, description="held-out classes (the last ones of the table)")
    train_exemplars: int = Field(1, ge=1, description="exemplars per class used in training; the rest are held out")
    labels: int = Field(5, ge=2)
    heldout_label_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    pairs: int = Field(2, ge=2, description="exemplar-label pairs in the context")
    proto_noise: float = Field(0.4, ge=0.0, description="synthetic: exemplar noise relative to the prototype")
    shared: float = Field(2.0, ge=0.0, description="synthetic: weight of the direction shared by every class")
    seed: int = 0
    # The paper's codebase's data generators (aadityasingh/icl-dynamics, main_utils.py): docs/tasks.md,
    # "The few-shot task's data settings", gives each one's flag there. The defaults are the stream above.
    mixture: tuple[Annotated[float, Field(ge=0.0)], ...] | float = Field(
        (1.0,), description="weights of the generators (--mixing_coeffs): each sequence comes from one, drawn by weight")
    burstiness: tuple[Annotated[int, Field(ge=0)], ...] | int = Field(
        (1,), description="per generator: items of the query's class in the context (--pt_burstiness)")
    distractors: tuple[bool, ...] | bool = Field(
        (True,), description="per generator: a distractor class appears as often as the query's (--pt_distract)")
    rest: tuple[Literal["unique", "no_support", "any"], ...] | Literal["unique", "no_support", "any"] = Field(
        ("unique",), description="per generator: the other context items are distinct classes other than the query's "
                                 "and the distractor (--pt_unique_rest), any classes but those two (--pt_no_support), "
                                 "or any classes")
    zipf: float = Field(0.0, ge=0.0, description="training classes drawn with probability proportional to rank^-zipf (--zipf_alpha)")
    noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to every exemplar's features (--noise_scale_train)")
    relabel: bool = Field(True, description="labels re-drawn per sequence (--fs_relabel > 0), or each class's own "
                                            "fixed label, its index mod labels (--fs_relabel 0)")
    query_label_in_context: bool = Field(
        False, description="a random context item also takes the query's label (--assign_query_label_random)")
    schedule: tuple[DataChange, ...] = Field(
        (), description="data values that change during training, written `set data.zipf = 1.0 during 200k..` "
                        "(one of " + ", ".join(f"data.{k}" for k in SCHEDULABLE) + ")")

    @field_validator("mixture", "burstiness", "distractors", "rest", mode="after")
    @classmethod
    def _per_generator(cls, value):
        return value if isinstance(value, tuple) else (value,)

    @model_validator(mode="after")
    def _splits_fit(self) -> "DataConfig":
        if self.classes + self.test_classes > self.total_classes:
            raise ValueError(
                f"classes ({self.classes}) + test_classes ({self.test_classes}) exceed total_classes ({self.total_classes})"
            )
        if self.train_exemplars >= self.exemplars:
            raise ValueError(f"train_exemplars ({self.train_exemplars}) must leave held-out exemplars (exemplars={self.exemplars})")
        if self.pairs > self.classes:
            raise ValueError(f"pairs ({self.pairs}) needs at least as many training classes (classes={self.classes})")
        if self.pairs > self.labels:
            raise ValueError(f"pairs ({self.pairs}) needs at least as many labels (labels={self.labels})")
        self._generators_fit()
        self.segments()
        return self

    def segments(self) -> list[tuple[int, "DataConfig"]]:
        """The training stream's settings over a run: (first sequence, settings without a schedule) per
        segment, in order; where scheduled changes overlap, the one written last wins. Each segment is
        checked as settings of its own, and keeps the number of generators."""
        if not self.schedule:
            return [(0, self)]
        bounds = sorted({0} | {c.start for c in self.schedule} | {c.stop for c in self.schedule if c.stop is not None})
        base = self.model_dump()
        base["schedule"] = ()
        out: list[tuple[int, DataConfig]] = []
        for at in bounds:
            values = dict(base)
            for change in self.schedule:
                if change.start <= at and (change.stop is None or at < change.stop):
                    values[change.key] = change.value
            try:
                segment = DataConfig.model_validate(values)
            except ValueError as exc:
                key = next((c.key for c in reversed(self.schedule) if c.start <= at and (c.stop is None or at < c.stop)), "schedule")
                raise SettingValueError(f"data.{key}", f"from {at} sequences on: {_first_error(exc)}") from None
            if len(segment.mixture) != len(self.mixture):
                raise SettingValueError(f"data.{key_of_mixture(self.schedule)}",
                                        f"the schedule changes the number of generators from {len(self.mixture)} to "
                                        f"{len(segment.mixture)} (data.mixture); it may change their weights only")
            if not out or segment != out[-1][1]:
                out.append((at, segment))
        return out

    def _generators_fit(self) -> None:
        """One generator per `mixture` weight, each per-generator list of one value (for all) or one per
        generator, and every generator's context within `pairs` and its distinct classes within each
        class split; each rule names the setting that breaks it."""
        n = len(self.mixture)
        if not sum(self.mixture) > 0:
            raise SettingValueError("data.mixture", "the generators' weights must not all be 0")
        for key in ("burstiness", "distractors", "rest"):
            if len(getattr(self, key)) not in (1, n):
                raise SettingValueError(f"data.{key}", f"data.{key} lists {len(getattr(self, key))} values for "
                                                       f"{n} generator{'s' if n > 1 else ''} (data.mixture has {n} "
                                                       f"weight{'s' if n > 1 else ''}); give one value for all or one "
                                                       "per generator, and one weight per generator in data.mixture")
        for i in range(n):
            b, distract, rest = (getattr(self, key)[i if len(getattr(self, key)) > 1 else 0]
                                 for key in ("burstiness", "distractors", "rest"))
            copies = b * (2 if distract and b > 0 else 1)
            which = f"generator {i + 1}: " if n > 1 else ""
            if copies > self.pairs:
                raise SettingValueError("data.burstiness", f"{which}burstiness {b}{' with a distractor' if distract and b else ''} "
                                                           f"puts {copies} items in a context of {self.pairs} pairs (data.pairs)")
            others = self.pairs - copies
            distinct = 1 + (distract and b > 0) + (others if rest == "unique" else min(others, 1) if rest == "no_support" else 0)
            smallest = min(self.classes, self.test_classes)
            if distinct > smallest:
                raise SettingValueError("data.rest" if rest != "any" else "data.pairs",
                                        f"{which}a sequence needs {distinct} distinct classes, more than the "
                                        f"{smallest} of a class split (data.classes, data.test_classes)")

    @property
    def seq_len(self) -> int:
        return 2 * self.pairs + 1


def key_of_mixture(schedule: tuple[DataChange, ...]) -> str:
    """The key of the last scheduled change of the generators' weights (`mixture`)."""
    return next((c.key for c in reversed(schedule) if c.key == "mixture"), "mixture")


def _first_error(exc: ValueError) -> str:
    """The message of a validation error's first problem (pydantic's, or a plain ValueError's)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("ctx", {}).get("error") or first["msg"])
    return str(exc)


class FewShotTaskConfig(_Frozen):
    """The paper's few-shot task (`e1 l1 e2 l2 q`); its settings are the `data` section."""

    name: Literal["fewshot"] = "fewshot"


class MarkovTaskConfig(_Frozen):
    """In-context Markov chains (Edelman et al. 2024): each sequence from its own transition matrix."""

    name: Literal["markov"] = "markov"
    states: int = Field(3, ge=2, le=1024, description="number of states (the vocabulary)")
    length: int = Field(100, ge=2, le=4096, description="tokens per sequence")
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration of each transition row")


class RepeatTaskConfig(_Frozen):
    """Repeated random tokens (Olsson et al. 2022): a random segment of T/4..T/2 tokens repeated to fill the sequence."""

    name: Literal["repeat"] = "repeat"
    vocab: int = Field(64, ge=2, le=65536, description="token ids 0..vocab-1, drawn uniformly")
    length: int = Field(64, ge=4, le=4096, description="tokens per sequence; the first length // 2 repeat")


class TokensTaskConfig(_Frozen):
    """A user's corpus: a .npy array of token ids, sampled in windows of `length` tokens."""

    name: Literal["tokens"] = "tokens"
    source: str = Field("", description="path of a 1-D .npy array of integer token ids")
    vocab: int = Field(256, ge=2, le=1_000_000, description="every id must lie in 0..vocab-1")
    length: int = Field(64, ge=2, le=4096, description="tokens per window")


TaskConfig = Annotated[Union[FewShotTaskConfig, MarkovTaskConfig, RepeatTaskConfig, TokensTaskConfig],
                       Field(discriminator="name")]
TASK_CONFIGS: dict[str, type[_Frozen]] = {"fewshot": FewShotTaskConfig, "markov": MarkovTaskConfig,
                                           "repeat": RepeatTaskConfig, "tokens": TokensTaskConfig}
"""Each task's settings model by `task.name`; a new task adds its model here and to `TaskConfig`."""


TASK_SECTIONS = ("data",)
"""Settings sections that belong to a task rather than to every run (the few-shot task's `data`):
a task says which of them it reads (`Task.sections`); a run's config.json leaves out the others."""


class TrainConfig(_Frozen):
    """Optimisation: Adam by default, lengths counted in training sequences (the paper's axis)."""

    sequences: int = Field(1_000_000, ge=1)
    batch: int = Field(32, ge=1)
    lr: float = Field(1e-5, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "linear_warmup"] = "constant"
    warmup: int = Field(0, ge=0, description="warm-up length in sequences")
    checkpoint_every: int = Field(100_000, ge=1, description="sequences between checkpoints")
    keep: tuple[Annotated[int, Field(ge=1)], ...] | str = Field(
        (), description="a checkpoint series: the network's parameters kept at these lengths, a list "
                        "([1k, 10k, 100k]), \"every 50k\" or \"log 30 from 1k to 1M\" (docs/series.md)")

    @field_validator("keep")
    @classmethod
    def _keep_form(cls, keep):
        return _points_form(keep)

    @property
    def steps(self) -> int:
        return -(-self.sequences // self.batch)


_KEEP_NUMBER = r"([0-9][0-9_]*)(k|M)?"
_KEEP_FORMS = "[1k, 10k, 100k], \"every 50k\" or \"log 30 from 1k to 1M\""


def _keep_number(digits: str, scale: str | None) -> int:
    return int(digits.replace("_", "")) * {"k": 1_000, "M": 1_000_000, None: 1}[scale]


def length_word(word: str) -> int:
    """A training length as the command line writes it (`52k`, `1.5M`, `600000`): whole sequences; a
    ValueError otherwise. The one reading of `--points` for the CLI and for documents' blocks."""
    scale = {"k": 1_000, "M": 1_000_000}.get(word[-1:], 1)
    try:
        value = float(word[:-1] if scale > 1 else word) * scale
    except ValueError:
        value = -1.0
    if not (value >= 0 and value == int(value)):
        raise ValueError(f"cannot read {word!r} as a training length")
    return int(value)


def keep_rule(text: str) -> tuple[str, int, int, int]:
    """`train.keep` written as text, read: ("every", step, 0, 0) or ("log", count, first, last), all
    in sequences; a ValueError says which forms there are."""
    every = re.fullmatch(f"every {_KEEP_NUMBER}", text)
    if every:
        n = _keep_number(*every.groups())
        if n < 1:
            raise ValueError("`every N` needs N >= 1")
        return ("every", n, 0, 0)
    log = re.fullmatch(f"log {_KEEP_NUMBER} from {_KEEP_NUMBER} to {_KEEP_NUMBER}", text)
    if log:
        count, first, last = (_keep_number(*log.groups()[i:i + 2]) for i in (0, 2, 4))
        if count < 2 or first < 1 or last <= first:
            raise ValueError(f"`log N from A to B` needs N >= 2 and 1 <= A < B; found N={count}, A={first}, B={last}")
        return ("log", count, first, last)
    raise ValueError(f"cannot read {text!r}: write {_KEEP_FORMS}")


def _points_form(points):
    """A series of points as written (`train.keep`, `eval.every`): a rule's text with its spaces
    made single and checked by `keep_rule`; a number or list as it is."""
    if isinstance(points, str):
        points = " ".join(points.split())
        keep_rule(points)
    return points


def keep_points(keep: tuple[int, ...] | str, upto: int) -> list[int]:
    """The training lengths (sequences, at most `upto`) a checkpoint series keeps, in order: the
    listed ones, every N, or N log-spaced from A to B (rounded to whole sequences)."""
    if not isinstance(keep, str):
        points = set(keep)
    else:
        form, n, first, last = keep_rule(keep)
        if form == "every":
            points = set(range(n, upto + 1, n))
        else:
            points = {round(first * (last / first) ** (i / (n - 1))) for i in range(n)}
    return sorted(p for p in points if p <= upto)


class EvalConfig(_Frozen):
    """Evaluation every `every` training sequences (or at the points a list or rule gives, read as
    `train.keep` is: `keep_points`) on `sequences` fixed sequences per set."""

    @field_validator("every")
    @classmethod
    def _every_form(cls, every):
        every = _points_form(every)
        if isinstance(every, tuple) and not every:
            raise ValueError("an empty list evaluates nowhere; give the points, or one interval")
        return every

    every: Annotated[int, Field(ge=1)] | tuple[Annotated[int, Field(ge=1)], ...] | str = Field(
        5_000, description="sequences between evaluations, or the points to evaluate at, written as `train.keep`'s "
                           "series is: a list ([1k, 2k, 5k, 10k]), \"every 50k\" or \"log 30 from 1k to 1M\"")
    sequences: int = Field(1_000, ge=1)
    sets: tuple[str, ...] = Field((), description="evaluation sets; empty means every set of the task")
    measures: tuple[str, ...] = Field(
        (), description="progress measures per head at each evaluation: induction strength, previous-token attention")
    perfected: tuple[str, ...] = Field(
        (), description="interventions (lines of .opto) added at evaluation only: each evaluation set is also scored "
                        "with them, as `<set>/perfected[<line>]/loss` and `/accuracy` (the progress measure of a clamp)")


class SeedConfig(_Frozen):
    """Separate seeds for initialisation, the training stream and the evaluation sets."""

    init: int = 5
    data: int = 0
    eval: int = 1


class SemanticsConfig(_Frozen):
    """Where an intervention's meaning may follow the paper's code or optodsl's own choice
    (docs/semantics.md gives both for each, with the paper's code and the test that pins it)."""

    first_pass: Literal["intervened", "clean"] = Field(
        "intervened", description="the first (reference) pass of a two-pass plan: `intervened` applies the spec's "
                                  "single-pass interventions in it too, and `copy` reads the last pass; `clean` is the "
                                  "paper's base pass (no interventions but those that define the pass), which every "
                                  "reading verb, `copy` included, reads")
    graft_source: Literal["own", "bare"] = Field(
        "own", description="how a graft's source network runs: `own` under its own run's interventions (its spec.opto, "
                           "as the paper's code does), `bare` with none")
    mean_reference: int = Field(
        0, ge=0, le=100_000, description="`ablate ... = mean` averages over the current batch (0), or over a fixed "
                                         "set of this many training sequences, the same for every step and evaluation")


class ExperimentConfig(_Frozen):
    """Everything one run needs besides the interventions.

    Which evaluation sets and measures a task has is the task's to say: `optodsl.tasks.check_config`
    checks them where settings are applied (`semantics.settings`), since this module sits below the tasks.

    `semantics` is written to a run's config.json only where it differs from the defaults, so a
    run directory written before the section existed still resumes (its settings compare equal)."""

    task: TaskConfig = FewShotTaskConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    seed: SeedConfig = SeedConfig()
    semantics: SemanticsConfig = SemanticsConfig()

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        data = handler(self)
        if info.mode == "json" and self.semantics == SemanticsConfig():
            data.pop("semantics", None)
        return data


def section_models(section: str) -> tuple[type[BaseModel], ...]:
    """The settings models of one section: one, or one per task for `task`."""
    if section == "task":
        return tuple(TASK_CONFIGS.values())
    return (ExperimentConfig.model_fields[section].annotation,)


def setting_keys() -> dict[str, type]:
    """Every `section.field` key a spec or `--set` may change, mapped to its annotation (the
    `task` keys of every task; which of them a spec may set depends on its `task.name`)."""
    keys: dict[str, type] = {}
    for section in ExperimentConfig.model_fields:
        for model in section_models(section):
            for name, field in model.model_fields.items():
                keys.setdefault(f"{section}.{name}", field.annotation)
    return keys


def task_keys(name: str) -> list[str]:
    """The `task.*` keys task `name` has."""
    return [f"task.{field}" for field in TASK_CONFIGS[name].model_fields]


def flat_settings(config: ExperimentConfig) -> dict[str, object]:
    """Every setting as `section.field` -> value."""
    return {f"{s}.{k}": v for s, fields in config.model_dump().items() for k, v in fields.items()}


def with_settings(config: ExperimentConfig, settings: dict[str, object]) -> ExperimentConfig:
    """A copy of `config` with `section.field` settings applied and validated together; a new
    `task.name` starts that task from its defaults before its other keys apply."""
    data = config.model_dump()
    if "task.name" in settings and settings["task.name"] != data["task"]["name"]:
        data["task"] = {"name": settings["task.name"]}
    for key, value in settings.items():
        section, _, name = key.partition(".")
        known = data.get(section, {}) if section != "task" else TASK_CONFIGS.get(data["task"]["name"], BaseModel).model_fields
        if section not in data or name not in known:
            raise KeyError(key)
        data[section][name] = value
    return ExperimentConfig.model_validate(data)


def read_run_config(run_dir: str | Path, hint: str = rundir.RESTORE_HINT, what: str = "run settings") -> ExperimentConfig:
    """A run directory's config.json as settings: the one reader of that file, a DataError naming it
    when it is truncated, edited or not a valid configuration (`hint` says what to do then)."""
    return rundir.read_json(Path(run_dir) / rundir.CONFIG, what, ExperimentConfig.model_validate, hint=hint)


def settings_between(a: ExperimentConfig, b: ExperimentConfig) -> dict[str, object]:
    """The `section.field` settings whose values in `b` differ from those in `a` (as `--set` would
    give them)."""
    da, db = a.model_dump(), b.model_dump()
    return {f"{s}.{k}": v for s in db for k, v in db[s].items() if da[s].get(k) != v}
