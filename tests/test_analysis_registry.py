"""Every analysis is declared once (`optodsl.analysis.registry`): `--only`'s help, which analyses apply
to a model and task, the layout of analysis.json and the console tables all read the declarations, so
an analysis registered alone (here a toy one) is a section and a table with no edit elsewhere."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import optodsl.cli
from optodsl.analysis.heads import chosen
from optodsl.analysis.registry import REGISTRY, analysis_layout, applicable, declare
from optodsl.analysis.runs import TrainedRun
from optodsl.analysis.schema import Analysis
from optodsl.analysis.tables import render_tables
from optodsl.config import ExperimentConfig, ModelConfig
from optodsl.errors import DataError
from optodsl.tasks.fewshot import FewShot
from optodsl.tasks.markov import Markov
from optodsl.tasks.repeat import Repeat

BASE = {"run_dir": "runs/a", "spec": "a.opto", "sequences": 640, "bare": True, "interventions": "none", "bindings": {},
        "eval": {"set": "train", "sequences": 64, "enumerated": False, "seed": 0}, "chance": 0.5,
        "full": {"accuracy": 0.75, "loss": 0.5}}


def test_the_registry_names_the_analyses_their_help_and_where_they_apply():
    assert list(REGISTRY) == ["heads", "groups", "paths", "composition", "subset", "perfected", "added", "positions"]
    assert applicable(2, FewShot) == ("heads", "groups", "paths", "composition", "subset")
    assert applicable(1, Repeat) == ("heads", "groups", "subset", "positions") == applicable(1, Markov)
    assert set(Analysis.sections()) == set(REGISTRY)
    text = CliRunner().invoke(optodsl.cli.app, ["analyze", "--help"], terminal_width=400).output
    for d in REGISTRY.values():
        assert f"{d.name}: {d.words}" in " ".join(text.split())


def test_an_analysis_a_task_lacks_is_refused_with_its_reason():
    import jax

    from optodsl.model.transformer import init_model

    config = ExperimentConfig(model=ModelConfig(layers=2))
    network = init_model(config.model, config.data, jax.random.PRNGKey(0))  # its sites say how many layers and heads
    run = TrainedRun(run_dir="runs/fewshot", config=config, model=network, sequences=0, spec=None)
    with pytest.raises(DataError) as info:
        chosen(("heads", "positions"), run, FewShot)
    err = str(info.value)
    assert "the positions analysis does not apply to the fewshot task" in err and "a target at every position" in err
    assert "heads, groups, paths, composition, subset" in err
    assert [d.name for d in chosen(None, run, Repeat)] == list(applicable(2, Repeat))


def test_a_registered_section_is_read_written_and_tabled_with_no_edit_elsewhere(monkeypatch):
    class Toy(BaseModel):
        cost: float

    monkeypatch.setitem(REGISTRY, "toy", None)  # replaced by the declaration; undone after the test
    declare("toy", title="Toy", words="a toy", section=Toy, table=lambda s, result: [f"toy cost {s.cost:.2f}"])(lambda i, o: {})
    layout = analysis_layout()
    assert layout.sections()[-1] == "toy"
    data = {**BASE, "toy": {"cost": 0.25}}
    assert layout.model_validate(data).to_json() == data
    assert render_tables(data).splitlines()[-1] == "toy cost 0.25"
    with pytest.raises(DataError) as info:
        layout.checked({**BASE, "toy": {"cost": "high"}}, "runs/a/analysis.json")
    assert info.value.problem == "malformed analysis: toy.cost"
    older = layout.model_validate({**BASE, "toy": {"cost": 0.25}})
    merged, kept = layout.model_validate(BASE).merged(older)  # an --only analysis keeps the toy section
    assert kept == ("toy",) and merged.to_json()["toy"] == {"cost": 0.25}
    monkeypatch.delitem(REGISTRY, "toy")
    assert "toy" not in analysis_layout().model_validate(data).to_json()  # a file with an unknown section still reads
