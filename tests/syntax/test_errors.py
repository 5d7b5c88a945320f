"""Golden error texts, the hint table's own consistency, and file loading with imports."""

import os
from pathlib import Path

import pytest

from optodsl.errors import SpecError, render
from optodsl.syntax import load_spec, load_text, parse
from optodsl.syntax.ast import strip_spans
from optodsl.syntax.hints import EXAMPLES
from optodsl.syntax.parser import _labels

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "syntax"
CASES = sorted(path.stem for path in GOLDEN.glob("*.opto"))


def test_every_golden_spec_has_an_expected_error():
    assert len(CASES) >= 12
    assert CASES == sorted(path.stem for path in GOLDEN.glob("*.err"))


@pytest.mark.parametrize("name", CASES)
def test_golden_error(name, monkeypatch):
    monkeypatch.chdir(GOLDEN)
    with pytest.raises(SpecError) as caught:
        load_spec(f"{name}.opto")
    assert render(caught.value) + "\n" == (GOLDEN / f"{name}.err").read_text()


@pytest.mark.parametrize(("message", "example"), [(m, e) for m, _, examples in EXAMPLES for e in examples])
def test_each_hint_example_fails_where_its_label_applies(message, example):
    with pytest.raises(SpecError) as caught:
        parse(example)
    assert caught.value.message.startswith(message + ", found ")
    assert _labels().state_of(example) is not None


def test_missing_top_level_file_points_at_its_path(tmp_path):
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "none.opto")
    assert str(caught.value.span) == f"{tmp_path / 'none.opto'}:1:1"
    assert "no such file" in caught.value.message


def test_imports_are_inlined_once_with_their_own_spans(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.opto").write_text("set train.lr = 1e-4\n")
    (tmp_path / "lib" / "ablations.opto").write_text('import "base.opto"\nablate L1.H0\n')
    main = tmp_path / "main.opto"
    main.write_text('import "lib/base.opto"\nimport "lib/ablations.opto"\nablate L2.H3\n')
    spec = load_spec(main)
    assert [type(s).__name__ for s in spec.statements] == ["Set", "Intervention", "Intervention"]
    assert spec.path == str(main)
    assert spec.statements[0].span.path == os.path.normpath(tmp_path / "lib" / "base.opto")
    assert spec.statements[1].span.path == os.path.normpath(tmp_path / "lib" / "ablations.opto")
    assert (spec.statements[2].span.path, spec.statements[2].span.line) == (str(main), 3)


def test_load_text_resolves_imports_beside_its_path(tmp_path):
    (tmp_path / "base.opto").write_text("ablate embed\n")
    spec = load_text('import "base.opto"\n', str(tmp_path / "main.opto"))
    assert strip_spans(spec.statements) == strip_spans(parse("ablate embed").statements)


def test_self_import_is_a_cycle(tmp_path):
    (tmp_path / "me.opto").write_text('\nimport "me.opto"\n')
    with pytest.raises(SpecError, match="import cycle") as caught:
        load_spec(tmp_path / "me.opto")
    assert caught.value.span.line == 2
