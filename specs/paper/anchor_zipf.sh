#!/usr/bin/env bash
# A data setting calibrated against the paper's code (docs/reproduction.md, "Calibration against the
# paper's code: Zipf-distributed classes"; issue 23): the paper's few-shot stream with its training
# classes drawn uniformly and Zipf-distributed (the paper code's --zipf_alpha 0 and 1.0, optodsl's
# data.zipf), at lr 1e-4 and 200,000 sequences, evaluation every 5,000, init seeds 5, 6 and 7, on one
# feature file (the built-in synthetic features, exported as anchor.sh does). The paper's code runs
# once per seed and exponent, one run at a time; optodsl's 6 runs are one program
# (specs/icl/zipf_anchor_seeds.opto), each keeping a point every 5,000 sequences; those points are
# scored again with classes drawn uniformly, as the paper code's evaluators draw them
# (specs/icl/zipf_uniform_eval.opto). Then prints both programs' final accuracies and crossings per
# seed and as mean and range, for each exponent, with optodsl's own evaluations and with the uniform
# ones (specs/paper/anchor_compare.py --seeds).
#
# Usage: ANCHOR_SRC=<icl-dynamics checkout> ANCHOR_VENV=<its venv> bash specs/paper/anchor_zipf.sh [OUT_DIR]
#   (set-up and variables as anchor_seeds.sh). Runs already finished are skipped, so a rerun resumes;
#   each stage's wall time is appended to OUT_DIR/wall_times.tsv.
set -euo pipefail
source "$(dirname "$0")/anchor_common.sh" "${1:-anchor-runs}"
SWEEP="$OUT/opto_zipf"

took() {  # LABEL START: append "LABEL<TAB>seconds since START<TAB>date" to wall_times.tsv
  printf '%s\t%s\t%s\n' "$1" "$(( $(date +%s) - $2 ))" "$(date -u +%F)" >> "$OUT/wall_times.tsv"
}

# 1. The paper's code: zipf<z>_s<seed>, one run at a time.
for z in 0 1; do
  for seed in 5 6 7; do
    name="zipf${z}_s$seed"
    grep -qs "total training time" "$ANCHOR_WORK/logs/$name.log" && continue
    rm -rf "$ANCHOR_WORK/runs/$name"
    t0=$(date +%s)
    bash "$BENCH" dynamics 0.0001 200000 5000 "$name" --zipf_alpha "$z.0" --init_seed "$seed" > /dev/null
    took "paper zipf $z seed $seed" "$t0"
  done
done

# 2. optodsl, the six runs as one vmapped program; an unfinished run resumes.
if [[ ! -f "$SWEEP/zipf_anchor_seeds-z1.0-seed7/summary.json" ]]; then
  t0=$(date +%s)
  $OPTO run specs/icl/zipf_anchor_seeds.opto --set data.source="$ANCHOR_DATA" --out "$SWEEP" > /dev/null
  took "optodsl zipf 0 and 1, seeds 5-7" "$t0"
fi

# 3. Every kept point of the six runs scored on uniformly drawn classes, as one program.
if [[ ! -f "$SWEEP/zipf_anchor_seeds-z1.0-seed7/eval_series.json" ]]; then
  t0=$(date +%s)
  $OPTO eval specs/icl/zipf_uniform_eval.opto --checkpoint "$SWEEP" --over-training --sequences 1000 \
    --set data.source="$ANCHOR_DATA" > /dev/null
  took "optodsl's points scored on uniform classes" "$t0"
fi

# 4. The tables, one per exponent and evaluation: per seed, and mean and range over the seeds.
for z in 0 1; do
  for scored in own uniform; do
    echo "## Zipf exponent $z, optodsl's $scored evaluations"
    flag=(); [[ $scored == uniform ]] && flag=(--opto-eval-series)
    "$PYTHON" specs/paper/anchor_compare.py "$OUT" --seeds 5 6 7 --opto-sweep "$SWEEP" "${flag[@]}" \
      --paper-names "zipf${z}_s{seed}" --opto-names "zipf_anchor_seeds-z$z.0-seed{seed}" --points 50000 100000
  done
done
