# What anchor.sh and anchor_seeds.sh share, sourced by both: the output folder (their first
# argument, default anchor-runs, made absolute), the tools (OPTO, PYTHON, BENCH, ANCHOR_SRC,
# ANCHOR_VENV; see either script's usage), the paper code's work folder, and the one feature file
# both programs train on, exported from the built-in synthetic features once.
OUT="$1"
OPTO="${OPTO:-opto}"
PYTHON="${PYTHON:-python}"
BENCH="${BENCH:-../shared/anchor/bench_anchor.sh}"
: "${ANCHOR_SRC:?set ANCHOR_SRC to the icl-dynamics checkout (../shared/anchor/README.md)}"
: "${ANCHOR_VENV:?set ANCHOR_VENV to the venv that runs it}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export ANCHOR_WORK="$OUT/paper" ANCHOR_DATA="$OUT/synthetic.h5"

[[ -f "$ANCHOR_DATA" ]] || $OPTO features export --out "$ANCHOR_DATA"
