"""The release-time map's specs (specs/beyond/): each checks and explains as eight runs, one clamp released at k."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

K = [5_000, 10_000, 20_000, 35_000, 60_000, 100_000, 175_000, 300_000]
RUNGS = {"release_prev_token": ("clamp", "L1.H2.pattern"), "release_match": ("clamp", "L2.H3.pattern"),
         "release_copy": ("copy", "logits"), "release_prev_token_stopgrad": ("stopgrad", "L1.H2.pattern")}


def opto(*args):
    return subprocess.run([sys.executable, "-m", "optodsl", *args], capture_output=True, text=True)


@pytest.mark.parametrize("rung", sorted(RUNGS))
def test_each_rung_checks_and_explains_as_eight_schedules_released_at_k(rung):
    path = f"specs/beyond/{rung}.opto"
    checked = opto("check", path)
    assert checked.returncode == 0 and "8 runs, 0 warnings" in checked.stdout, checked.stdout + checked.stderr
    explained = opto("explain", path, "--json")
    assert explained.returncode == 0, explained.stderr
    actions = [{"run": r["run"], **a} for r in json.loads(explained.stdout) for a in r["interventions"]]
    verb, site = RUNGS[rung]
    released = {a["run"]: a["schedule"] for a in actions if a["verb"] == verb and a["site"] == site}
    assert len(released) == 8
    assert sorted(released.values(), key=lambda s: int(s.split("..")[1])) == [f"0..{k}" for k in K]
    kept = {a["schedule"] for a in actions if a["verb"] == "ablate"}
    assert kept <= {"always"}
