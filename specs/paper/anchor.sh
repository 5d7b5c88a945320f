#!/usr/bin/env bash
# The paper's code on our features (docs/reproduction.md, "The paper's code on our features").
#
# Exports the built-in synthetic features to one HDF5 file, trains the paper's published code
# (aadityasingh/icl-dynamics main.py, run through ../shared/anchor/bench_anchor.sh) and optodsl on
# it at the paper's settings (lr 1e-5, 1,000,000 sequences, evaluation every 10,000, init seed 5),
# computes Table 1 both ways on each program's trained network (the paper code's
# --opto_preserve_patterns / --opto_preserve_values path on its last checkpoint, and
# `opto analyze --only groups`), then draws Figure 3a side by side and prints the tables.
#
# Usage: ANCHOR_SRC=<icl-dynamics checkout> ANCHOR_VENV=<its venv> bash specs/paper/anchor.sh [OUT_DIR]
#   (set-up of ANCHOR_SRC / ANCHOR_VENV: ../shared/anchor/README.md; OPTO and PYTHON default to
#   `opto` and `python` on PATH; BENCH to ../shared/anchor/bench_anchor.sh)
# Stages already done (a finished log or run) are skipped, so a rerun resumes.
# Init seeds 6 and 7 and the held-out-pair check: specs/paper/anchor_seeds.sh with the same OUT_DIR
# (it reuses this script's seed-5 run of the paper's code).
set -euo pipefail
source "$(dirname "$0")/anchor_common.sh" "${1:-anchor-runs}"
LAST=999968  # a checkpoint inside main.py's loop: the state before the last of its 31,250 steps
RUN="$ANCHOR_WORK/runs/fig3a_paper"

# 1. Training, each program in its own process (about 6 and 5 minutes on the idle 2-core CPU).
[[ -f "$RUN/checkpoints/00000$LAST.eqx" ]] ||
  bash "$BENCH" dynamics 0.00001 1000000 10000 fig3a_paper --ckpt_sched "$LAST"
[[ -f "$OUT/opto/summary.json" ]] ||
  $OPTO run specs/paper/fig3_baseline.opto --set data.source="$ANCHOR_DATA" --set eval.every=10k --out "$OUT/opto"

# 2. Table 1 with the paper's code: load the checkpoint at 999,968 sequences, take the one step left
#    at lr 0 (main.py's loop must run once, and Adam at lr 0 leaves the weights as they are), then
#    its final evaluation, on 10,000 training sequences under the ablation. Layers count from 0
#    there: 0:1 is our L1.H1.
PT=(0:1 0:2 0:5); REST=(0:0 0:3 0:4 0:6 0:7); ALL=(0:0 0:1 0:2 0:3 0:4 0:5 0:6 0:7)
table1() {  # NAME FLAGS...
  local name="table1_$1"; shift
  grep -qs "total training time" "$ANCHOR_WORK/logs/$name.log" && return 0
  rm -rf "$ANCHOR_WORK/runs/$name"
  bash "$BENCH" dynamics 0 1000000 1000000 "$name" --load_from_ckpt "$RUN/checkpoints/00000$LAST.eqx" \
    --load_from_ckpt_cfg "$RUN/config.json" --eval_iters 10000 --pe_names fsl_train --pe_classes train \
    --pe_exemplars train --pe_fs_relabel_scheme train --pe_burstiness 1 "$@" > /dev/null
}
table1 pt_pattern --opto_ablate_heads "${PT[@]}" --opto_preserve_patterns
table1 pt_value --opto_ablate_heads "${PT[@]}" --opto_preserve_values
table1 rest_pattern --opto_ablate_heads "${REST[@]}" --opto_preserve_patterns
table1 rest_value --opto_ablate_heads "${REST[@]}" --opto_preserve_values
table1 all_pattern --opto_ablate_heads "${ALL[@]}" --opto_preserve_patterns
table1 all_value --opto_ablate_heads "${ALL[@]}" --opto_preserve_values
table1 all_plain --opto_ablate_heads "${ALL[@]}"

# 3. Table 1 with optodsl, the same groups, on 10,000 training sequences.
$OPTO analyze "$OUT/opto" --only groups --sequences 10000 \
  --group 'L1.H[1,2,5]' --group 'L1.H[0,3,4,6,7]' --group 'L1.*' > /dev/null

# 4. The figure and the tables.
"$PYTHON" specs/paper/anchor_compare.py "$OUT" --figure docs/figures/anchor_fig3a.png
