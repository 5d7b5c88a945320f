"""analysis.json has one layout (`optodsl.analysis.schema.Analysis`): what opto analyze writes is
what the report reads, files of older layouts still read, and a malformed section is named."""

from __future__ import annotations

import json
import math

import pytest

from optodsl.analysis.schema import Analysis
from optodsl.errors import DataError

WRITTEN = {
    "run_dir": "runs/a", "spec": "a.opto", "sequences": 6400, "bare": False, "interventions": ["ablate L1.H0"],
    "bindings": {"h": 3}, "eval": {"set": "train", "sequences": 64, "enumerated": False}, "chance": 0.5,
    "full": {"accuracy": 0.75, "loss": 0.5},
    "heads": {f"L{layer}": {kind: {f"H{h}": {"accuracy": 0.5, "loss": 0.6} for h in range(11)}
                            for kind in ("ablate_one", "only_one")} for layer in (1, 2, 3)},
    "groups": [{"name": "L1.H0,H1", "layer": 1, "heads": [0, 1], "ablated": {"accuracy": 0.5, "loss": 0.7}},
               {"name": "L1.H2", "layer": 1, "heads": [2], "ablated": {"accuracy": 0.5, "loss": 0.7},
                "pattern_preserving": {"accuracy": 0.9, "loss": 0.1}, "value_preserving": {"accuracy": 0.6, "loss": 0.6}}],
    "paths": {"L1-L2": {"accuracy": [[0.5, 0.6]]}, "L1-L3": {"accuracy": [[0.5, 0.6]]}, "L2-L3": {"accuracy": [[0.1, 0.2]]}},
    "composition": {"L1-L2": {"Q": [[0.1]], "K": [[0.2]], "V": [[0.3]]}},
    "subset": {"reference": "L3.H1", "sequences": 64, "wrong": 0, "accuracy_all": {"H0": 0.5, "H1": 1.0},
               "accuracy_on_wrong": {"H0": None, "H1": None}},
}


def test_what_analyze_writes_round_trips_to_the_same_json():
    assert json.dumps(Analysis.model_validate(WRITTEN).to_json(), indent=2) == json.dumps(WRITTEN, indent=2)
    some = {k: v for k, v in WRITTEN.items() if k not in ("groups", "paths", "composition", "subset")}
    assert Analysis.model_validate(some).to_json() == some  # --only heads: the other sections stay absent


def test_the_report_reads_nulls_as_nan_and_older_layouts():
    read = Analysis.checked(WRITTEN, "analysis.json").for_report()
    assert math.isnan(read["subset"]["accuracy_on_wrong"]["H0"]) and "perfected" not in read
    assert list(read["heads"]["L1"]["only_one"])[-2:] == ["H9", "H10"]
    assert "pattern_preserving" not in read["groups"][0]
    old = Analysis.checked({"paths": {"accuracy": [[0.5]]}, "composition": {"Q": [[0.1]]}, "groups": [{"layer": 1}]},
                           "analysis.json").for_report()
    assert old["paths"] == {"L1-L2": {"accuracy": [[0.5]]}} and old["composition"] == {"L1-L2": {"Q": [[0.1]]}}
    assert old["groups"][0]["name"] == "group 0" and old["interventions"] is None and old["chance"] == 0.5
    assert "full" not in old and "heads" not in old


@pytest.mark.parametrize("data, where", [
    ({"paths": {"L1-L2": {"accuracy": [[0.5, 0.6], [0.7]]}}}, "paths.L1-L2.accuracy"),
    ({"groups": [{"name": "g", "ablated": {"accuracy": "high"}}]}, "groups[0].ablated.accuracy"),
    ({"heads": {"L1": {"only_one": {"H0": 0.5}}}}, "heads.L1.only_one.H0"),
    ({"composition": {"L1-L2": {"X": [[1]]}}}, "composition.L1-L2"),
    ({"paths": {"L2": {"accuracy": [[1]]}}}, "paths.L2"),
    ({"interventions": 3}, "interventions"),
    ({"chance": True}, "chance"),
])
def test_a_malformed_section_is_a_data_error_naming_the_file_and_the_section(data, where):
    with pytest.raises(DataError) as info:
        Analysis.checked(data, "runs/a/analysis.json")
    assert info.value.path == "runs/a/analysis.json" and info.value.problem == f"malformed analysis: {where}"


def test_an_analysis_that_is_not_an_object_is_refused():
    with pytest.raises(DataError, match="malformed analysis"):
        Analysis.checked([], "analysis.json")
