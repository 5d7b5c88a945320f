"""`analysis.json`, defined once: what `opto analyze` writes and `opto report` reads.

The file is `AnalysisBase` (the checkpoint, interventions, sequences and full model's scores) plus
one optional section per registered analysis (`optodsl.analysis.registry`: each declares its
section's type, here for the built-in ones); `layout` builds the model of a set of sections and
`Analysis` is the one of the analyses registered now. `optodsl.analysis.heads.analyze` builds one
and writes `to_json()`; the report checks a file with `Analysis.checked(data, path)` (a malformed
section is a `DataError` naming the file and the section) and draws from `for_report()`, where a
null number (no wrong sequences, say) is NaN.

Every section is optional, so an analysis of some sections only (`--only`) reads back; files
written before there were layer pairs (one unkeyed `paths` or `composition` entry, the pair
L1-L2) and before `interventions` was recorded still read.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainValidator, StrictBool, StrictInt, ValidationError,
                      WrapSerializer, create_model, field_validator, model_serializer, model_validator)

from ..errors import DataError
from ..sites import PAIR_KEY

_NAN = "null_as_nan"
"""Serialisation context key: dump null numbers as NaN (for drawing), not None."""


def index_order(name: str) -> tuple[int, str]:
    """Sort key of `H3` or `L2` by its number, so that H10 follows H9."""
    digits = name[1:]
    return (int(digits), name) if digits.isdigit() else (1 << 30, name)


def _number(value: Any) -> int | float | None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ValueError("a number")
    return value


def _null_as_nan(value, handler, info):
    if value is None and (info.context or {}).get(_NAN):
        return math.nan
    return handler(value)


Number = Annotated[int | float | None, PlainValidator(_number), WrapSerializer(_null_as_nan)]
"""A score: a number, or null where there is nothing to score."""


def _rectangular(rows: list[list]) -> list[list]:
    if not rows or not all(rows) or len({len(row) for row in rows}) != 1:
        raise ValueError("a non-empty rectangular list of rows of numbers")
    return rows


Matrix = Annotated[list[list[Number]], AfterValidator(_rectangular)]
"""Rows of an earlier layer's heads by columns of a later layer's."""


def _lines(value: Any) -> Any:
    if value is None or value == "none" or (isinstance(value, list) and all(isinstance(t, str) for t in value)):
        return value
    raise ValueError("'none' or a list of spec lines")


Lines = Annotated[Literal["none"] | list[str] | None, BeforeValidator(_lines)]
"""The run's own intervention lines every score is taken under, or "none"; absent from older files."""


def _pair(key: str) -> str:
    if not PAIR_KEY.match(key):
        raise ValueError("a layer pair such as L1-L2")
    return key


def _by_pair(section: dict) -> dict:
    if not section:
        raise ValueError("an object keyed by layer pair (L1-L2, L1-L3, ...)")
    return dict(sorted(section.items(), key=lambda kv: tuple(int(x) for x in PAIR_KEY.match(kv[0]).groups())))


def _by_index(section: dict) -> dict:
    return dict(sorted(section.items(), key=lambda kv: index_order(kv[0])))


PairKey = Annotated[str, AfterValidator(_pair)]


class _Part(BaseModel):
    """A part of the file: frozen, unknown keys ignored; the fields in `OMITTED_WHEN_ABSENT` are left
    out of the dump when absent (None), as the writer leaves out what it did not compute."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    OMITTED_WHEN_ABSENT: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _omitted(cls) -> tuple[str, ...]:
        return cls.OMITTED_WHEN_ABSENT

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler):
        data = handler(self)
        for name in self._omitted():
            if getattr(self, name) is None:
                data.pop(name, None)
        return data


class Scores(_Part):
    """Accuracy and mean loss (nats) of one forward on the evaluation sequences."""

    accuracy: Number = None
    loss: Number = None


class EvalSet(_Part):
    """The sequences every score is taken on: the set, how many, and whether they are its every one."""

    OMITTED_WHEN_ABSENT: ClassVar[tuple[str, ...]] = ("set", "sequences", "enumerated", "seed")

    set: str | None = None
    sequences: StrictInt | None = None
    enumerated: StrictBool | None = None
    seed: StrictInt | None = None
    """The sampling seed of a sampled set (absent for an enumerated one, and in older files)."""


class HeadModes(_Part):
    """One layer's heads (`H0`, ...), each ablated alone or kept on alone (Figure 4a)."""

    OMITTED_WHEN_ABSENT: ClassVar[tuple[str, ...]] = ("ablate_one", "only_one")

    ablate_one: dict[str, Scores] | None = None
    only_one: dict[str, Scores] | None = None

    @field_validator("ablate_one", "only_one")
    @classmethod
    def _in_order(cls, heads: dict | None) -> dict | None:
        return None if heads is None else _by_index(heads)


class Group(_Part):
    """A group of one layer's heads ablated, and ablated keeping the next layer's pattern or values (Table 1)."""

    OMITTED_WHEN_ABSENT: ClassVar[tuple[str, ...]] = ("ablated", "pattern_preserving", "value_preserving")

    name: str
    layer: Any = None
    heads: Any = None
    ablated: Scores | None = None
    pattern_preserving: Scores | None = None
    value_preserving: Scores | None = None


class PathMap(_Part):
    """Accuracy with one head of the earlier layer and one of the later layer kept on (Figure 11b)."""

    accuracy: Matrix


class Composition(_Part):
    """Q-, K- and V-composition scores from the earlier layer's heads to the later layer's (Figure 11c)."""

    OMITTED_WHEN_ABSENT: ClassVar[tuple[str, ...]] = ("Q", "K", "V")

    Q: Matrix | None = None
    K: Matrix | None = None
    V: Matrix | None = None

    @model_validator(mode="after")
    def _some(self) -> "Composition":
        if self.Q is None and self.K is None and self.V is None:
            raise ValueError("an object with Q, K and V matrices")
        return self


class Subset(_Part):
    """Table 2: each head's accuracy kept on alone, on all sequences and on those the reference head gets wrong."""

    reference: str | None = None
    sequences: StrictInt | None = None
    wrong: StrictInt | None = None
    accuracy_all: dict[str, Number] = {}
    accuracy_on_wrong: dict[str, Number] = {}

    @field_validator("accuracy_all", "accuracy_on_wrong")
    @classmethod
    def _in_order(cls, heads: dict) -> dict:
        return _by_index(heads)


class PerfectedHead(_Part):
    """One head alone in its layer, with its computed match and with a perfect one (Figure 16)."""

    computed: Scores
    perfected: Scores
    accuracy_by_label: list[Number] = []
    computed_accuracy_by_label: list[Number] = []
    mistake_share_by_label: list[Number] = []


class Perfected(_Part):
    """Figure 16 and Table 3: each last-layer head alone with its match perfected, so that only its copy
    errs; accuracy and share of mistakes per correct label, and Table 2 repeated under the perfect match."""

    layer: str
    label_counts: list[StrictInt] = []
    heads: dict[str, PerfectedHead] = {}
    subset: Subset | None = None

    @field_validator("heads")
    @classmethod
    def _in_order(cls, heads: dict) -> dict:
        return _by_index(heads)


class Added(_Part):
    """Figure 14: the last layer's heads kept on in order of decreasing induction strength, one more at a
    time, from the strongest (the last entry is every head) and from the second strongest."""

    layer: str
    order: list[str]
    strength: dict[str, Number] = {}
    from_strongest: list[Scores] = []
    from_second: list[Scores] = []


def _named_groups(groups: Any) -> Any:
    """Unnamed groups (files written before groups had names) are named by their place."""
    if not isinstance(groups, list):
        return groups
    return [{"name": f"group {i}", **g} if isinstance(g, dict) and "name" not in g else g for i, g in enumerate(groups)]


def _unkeyed_pair(*keys: str):
    """One unkeyed entry (a file written before there were layer pairs) is the pair L1-L2."""
    def read(section: Any) -> Any:
        return {"L1-L2": section} if isinstance(section, dict) and set(section) & set(keys) else section
    return read


HeadsSection = Annotated[dict[str, HeadModes], AfterValidator(_by_index)]
"""Each layer's heads ablated alone and kept on alone, by layer (`L1`, `L2`, ...)."""
GroupsSection = Annotated[list[Group], BeforeValidator(_named_groups)]
PathsSection = Annotated[dict[PairKey, PathMap], BeforeValidator(_unkeyed_pair("accuracy")), AfterValidator(_by_pair)]
CompositionSection = Annotated[dict[PairKey, Composition], BeforeValidator(_unkeyed_pair("Q", "K", "V")),
                               AfterValidator(_by_pair)]


class AnalysisBase(_Part):
    """One run's `analysis.json`: which checkpoint, under which interventions, on which sequences, and
    the sections `opto analyze` computed. The sections are the registered analyses'
    (`optodsl.analysis.registry`), added as fields by `layout`; this class holds what every file has."""

    OMITTED_WHEN_ABSENT: ClassVar[tuple[str, ...]] = ("full", "scored", "references", "measures")

    run_dir: str | None = None
    spec: str | None = None
    sequences: StrictInt | None = None
    bare: StrictBool | None = None
    interventions: Lines = None
    bindings: dict[str, Any] | None = None
    eval: EvalSet | None = None
    chance: Number = 0.5
    """The task's chance accuracy: null where the task has none (a user's corpus); 0.5 in layouts
    written before it was recorded, which were all the few-shot task's."""
    scored: str | None = None
    """What the task scores in every loss and accuracy here (the query's label, the repeated half, ...)."""
    references: dict[str, Number] | None = None
    """The task's reference loss levels beside the scores (nats): ln 2; uniform, unigram and Bayes bigram; ..."""
    measures: dict[str, dict[str, dict[str, Number]]] | None = None
    """Each per-head measure the task declares, under the run's interventions: {measure: {"L1": {"H0": v}}}."""
    full: Scores | None = None

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        """The analyses' sections this layout reads, in the registry's order."""
        return tuple(name for name in cls.model_fields if name not in AnalysisBase.model_fields)

    @classmethod
    def _omitted(cls) -> tuple[str, ...]:
        return cls.OMITTED_WHEN_ABSENT + cls.sections()

    SAME_SCORES: ClassVar[tuple[str, ...]] = ("run_dir", "sequences", "bare", "interventions", "bindings", "eval")
    """What two analyses must share for their sections to sit in one file: the checkpoint (run and its
    length), the interventions every score is taken under, and the sequences (set, number, seed)."""

    def section(self, name: str) -> Any:
        """The section `name`, or None when this file lacks it (or the layout has no such analysis)."""
        return getattr(self, name, None) if name in self.sections() else None

    def merged(self, older: "AnalysisBase") -> tuple["AnalysisBase", tuple[str, ...]]:
        """This analysis plus the sections of `older` it did not compute, when both score the same
        checkpoint under the same interventions on the same sequences (`SAME_SCORES`); else this one
        alone. Also returns the names of the sections taken from `older`."""
        if any(getattr(self, k) != getattr(older, k) for k in self.SAME_SCORES):
            return self, ()
        kept = tuple(k for k in self._omitted() if getattr(self, k) is None and getattr(older, k, None) is not None)
        return self.model_copy(update={k: getattr(older, k) for k in kept}), kept

    def to_json(self) -> dict:
        """The JSON-ready dict `opto analyze` prints and writes: absent sections left out, nulls kept."""
        return self.model_dump(mode="json")

    def for_report(self) -> dict:
        """The dict the report draws from: absent sections left out, null numbers as NaN."""
        return self.model_dump(context={_NAN: True})

    @classmethod
    def checked(cls, data: Any, path) -> "AnalysisBase":
        """`data` (a parsed analysis.json) checked against the layout; a DataError names `path` and the
        first malformed section."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where, value = _located(data, error["loc"])
            expected = error["msg"].removeprefix("Value error, ")
            raise DataError(path, "malformed analysis" + (f": {where}" if where else ""), expected=expected,
                            found=repr(value)[:60]) from None


_LAYOUTS: dict[tuple, type[AnalysisBase]] = {}


def layout(sections: tuple[tuple[str, Any], ...]) -> type[AnalysisBase]:
    """The `analysis.json` layout with these (name, section type) sections, in this order, each
    optional (an `--only` analysis has some); built once per set of sections."""
    key = tuple((name, id(section)) for name, section in sections)
    if key not in _LAYOUTS:
        fields = {name: (Optional[section], None) for name, section in sections}
        _LAYOUTS[key] = create_model("Analysis", __base__=AnalysisBase, __doc__=AnalysisBase.__doc__, **fields)
    return _LAYOUTS[key]


def __getattr__(name: str):
    """`Analysis`: the layout of the analyses registered now (`optodsl.analysis.registry.analysis_layout`)."""
    if name == "Analysis":
        from .registry import analysis_layout

        return analysis_layout()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _located(data: Any, loc: tuple) -> tuple[str, Any]:
    """The deepest part of `data` along a validation error's location, as `groups[0].ablated`, and its value."""
    where, value = "", data
    for key in loc:
        if isinstance(value, dict) and key in value:
            where += f".{key}" if where else str(key)
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            where += f"[{key}]"
        else:
            break
        value = value[key]
    return where, value
