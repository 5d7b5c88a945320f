"""Warnings for clauses that undo themselves."""

from optodsl.config import ExperimentConfig
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text


def _warnings(text):
    return [w.message for w in resolve_spec(load_text(text, "w.opto"), ExperimentConfig())[1]]


def test_preserving_the_ablated_site_itself_is_reported():
    assert _warnings("ablate L1.H0 preserving L1.v\n") == [
        "preserving L1.H0.v holds it at its first-pass value, undoing the ablate of line 1 there"]
    assert _warnings("ablate L1.* preserving L2.pattern\n") == []
