"""Stage 5: analyses that read trained runs (Figures 4a and 11, Tables 1 and 2) or stand beside them (the toy model).

    from optodsl.analysis import analyze, load_run
    result = analyze(load_run("runs/fig3_baseline"), what=("heads", "subset"), n=10_000)

Each analysis is declared once (`registry.declare`) in the module that computes it; importing the
package imports those modules, so `registry.REGISTRY` holds them all.
"""

from .heads import Group as Group, analyze as analyze
from . import positions as positions
from .registry import REGISTRY as REGISTRY, applicable as applicable
from .runs import TrainedRun as TrainedRun, load_run as load_run
