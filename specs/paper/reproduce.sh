#!/usr/bin/env bash
# Regenerate every result of docs/reproduction.md from the specs in this folder: train the runs
# (the paper's figures, then the seed sweeps of Appendix I), analyse and score the baselines'
# checkpoints, draw one report per figure, and the release-time map of specs/beyond.
#
#   bash specs/paper/reproduce.sh OUT [--set key=value]...
#
# It works inside OUT (the graft specs of Figure 7 read their sources from runs/...):
# OUT/runs/<spec> holds the run directories, OUT/<figure>/ each figure's report.md and PNGs, and
# OUT/eval/*.json the checkpoint scores. Extra --set values apply to every training run (on a
# 2-core CPU the published evaluation every 1,000 sequences of the clamp runs costs more than
# their training; docs/reproduction.md used --set eval.every=4k for them). Rerunning resumes
# unfinished runs and redoes the analyses and reports.
#
# The specs that train an analysis across training (appE_*, table1_*, fig4a_*, fig11b_one_path) are
# scored here on the final checkpoint by `opto analyze` and `opto eval`, which give their numbers
# without 64 retrainings; run them with `opto run` for the curves.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
beyond="$here/../beyond"
out="${1:?usage: bash specs/paper/reproduce.sh OUT [--set key=value]...}"
shift
opto="${OPTO:-opto}"
case "$opto" in */*) opto="$(cd "$(dirname "$opto")" && pwd)/$(basename "$opto")" ;; esac  # it runs inside OUT
python="${PYTHON:-$(dirname "$(command -v "$opto")")/python}"  # the Python beside opto (its venv's)
mkdir -p "$out" && cd "$out"
run() {  # SPEC... [--set key=value]...: each spec's runs in runs/<spec name>/, also when it is the only one
  local specs=0 spec
  for spec in "$@"; do if [[ $spec == *.opto ]]; then specs=$((specs + 1)); fi; done
  if (( specs == 1 )); then
    spec="$(printf '%s\n' "$@" | grep '\.opto$')"
    "$opto" run "$@" --out "runs/$(basename "$spec" .opto)" --no-progress
  else
    "$opto" run "$@" --out runs --no-progress
  fi
}
p() { for name in "$@"; do printf '%s\n' "$here/$name.opto"; done; }

# 1. The paper's runs (init seed 5). Specs of the same shapes share one vmapped program.
mapfile -t main < <(p fig3_baseline fig5b fig10_progress_measures fig4b_single_heads fig6_clamped fig6_unclamped \
    sec3_layer1_direct_path fig17_paired_heads fig8 fig15_induction_strength)
run "${main[@]}" "$@"

# 2. Appendix I: seeds 5, 6 and 7 (Figure 3a, the Figure 5b ladder, Figures 6, 8 and 10 with
#    each seed's strongest head, Figures 4b and 17, Section 3), then Figure 7's grafts, whose sources are
#    the seed baselines.
mapfile -t seeds < <(p fig3_baseline_seeds fig5b_strongest_seeds fig6_clamped_seeds fig10_progress_measures_seeds \
    fig4b_single_heads_seeds fig8_seeds sec3_layer1_direct_path_seeds fig17_paired_heads_seeds)
run "${seeds[@]}" "$@"
mkdir -p runs/fig7_seeds
ln -sfn ../fig3_baseline_seeds/fig3_baseline_seeds-seed6 runs/fig7_seeds/fig7_seeds-s6
ln -sfn ../fig3_baseline_seeds/fig3_baseline_seeds-seed7 runs/fig7_seeds/fig7_seeds-s7
mapfile -t grafts < <(p fig7_graft_from_seed5 fig7_graft_from_seed6 fig7_graft_from_seed7)
run "${grafts[@]}" "$@"

# 3. Checkpoint analyses of each seed's baseline: Figures 4a, 11, 13, 14, 16 and Tables 1-3
#    (analysis.json in each run directory); Figure 11a and Table 1 as specs scored by `opto eval`;
#    Table 1 with mean ablation, Figure 4b's floor and Figure 11b's three ways of keeping one path
#    (issue 14's explanatory experiments; the eval JSON holds accuracy_in_context beside accuracy).
mkdir -p eval
for s in 5 6 7; do
  base=runs/fig3_baseline_seeds/fig3_baseline_seeds-seed$s
  "$opto" analyze "$base" --sequences all --only heads --only groups --only paths --only composition \
      --only subset --only perfected --only added > "eval/analysis-seed$s.txt"
  "$opto" eval "$here/fig11a_ablate_one_layer1_head.opto" --checkpoint "$base" --sequences 10000 --json > "eval/fig11a-seed$s.json"
  "$opto" eval "$here/table1.opto" --checkpoint "$base" --json > "eval/table1-seed$s.json"
  "$opto" eval "$here/fig11b_explain.opto" --checkpoint "$base" --sequences 10000 --json > "eval/fig11b_explain-seed$s.json"
done
"$opto" eval "$here/table1_mean.opto" --checkpoint runs/fig3_baseline_seeds/fig3_baseline_seeds-seed5 --json > eval/table1_mean-seed5.json
for pair in seed5-h1 seed6-h3 seed7-h2; do  # Figure 4b's floor: each seed's single-head network probed
  "$opto" eval "$here/fig4b_floor_probe.opto" --checkpoint "runs/fig5b_strongest_seeds/fig5b_strongest_seeds-only_strongest-$pair" \
      --json > "eval/floor-$pair.json"
done
"$opto" analyze runs/fig3_baseline --sequences all

# 3b. Across training, from one baseline per seed kept at 20 points (issue 22): every head ablated
#     alone at every point (Figure 4a over training), Table 1's groups and the path map (Figure 11b)
#     at every point, the per-token loss trajectory, and the local learning coefficient at every point.
#     The three seeds' series are analysed as one program (the sweep's folder).
run "$here/fig4a_over_training_seeds.opto" "$@"
"$opto" analyze runs/fig4a_over_training_seeds --over-training --sequences 2000 > eval/over_training.txt
for s in 5 6 7; do
  series=runs/fig4a_over_training_seeds/fig4a_over_training_seeds-seed$s
  "$opto" llc "$series" --over-training --chains 4 --steps 1000 --burn-in 600 > "eval/llc-seed$s.txt"
done
"$opto" report runs/fig4a_over_training_seeds --out fig4a_over_training  # ablation_over_training.png,
#     loss_trajectory.png, table1_over_training.png, paths_over_training.png (docs/reproduction/*over_training*.png)

# 3c. The repeat task across training (docs/series.md, "Measured: the repeat task's LLC across
#     training"): three seeds kept at 20 points, and the local learning coefficient of seed 5's.
run "$here/../tasks/repeat_llc_seeds.opto" "$@"
"$opto" llc runs/repeat_llc_seeds/repeat_llc_seeds-seed5 --over-training --chains 4 --steps 1000 --burn-in 600 \
    > eval/llc-repeat-seed5.txt

# 4. One report per figure.
r=runs
"$opto" report "$r/fig3_baseline" --out fig3_fig4a_table1_fig11
"$opto" report "$r/fig3_baseline_seeds" --out fig3_seeds
"$opto" report "$r/fig4b_single_heads" --out fig4b
"$opto" report "$r/fig4b_single_heads_seeds" --out fig4b_seeds
"$opto" report "$r/fig5b" --out fig5b
"$opto" report "$r/fig5b_strongest_seeds" --out fig5b_seeds
"$opto" report "$r/fig10_progress_measures" "$r/fig5b/fig5b-clamp_prev_token" "$r/fig5b/fig5b-clamp_match" --out fig10
"$opto" report "$r"/fig6_*/*-labels5 --out fig6_classes  # 50, 100 and 200 classes at 5 labels
"$opto" report "$r"/fig6_*/*-labels1[05] --out fig6_labels  # 10 and 15 labels at 50 classes
"$opto" report "$r/sec3_layer1_direct_path" "$r/fig3_baseline" --out sec3_fig12
"$opto" report "$r/fig17_paired_heads" --out fig17
"$opto" report "$r/fig17_paired_heads_seeds" --out fig17_seeds
"$opto" report "$r"/fig7_graft_from_seed* --out fig7
"$opto" report "$r"/fig8 "$r/fig5b/fig5b-clamp_prev_token" --out fig8
"$opto" report "$r/fig8_seeds" --out fig8_seeds
"$opto" report "$r/sec3_layer1_direct_path_seeds" "$r/fig3_baseline_seeds" --out sec3_seeds
"$opto" report "$r"/fig15_induction_strength --out fig15
"$opto" toy --out fig5a_toy

# 5. Beyond the paper: the release-time map (docs/reproduction.md, "Beyond the paper").
#    One seed with seed 5's L2.H3 (release_map.png), then each rung on seeds 5-7 with each seed's
#    strongest head, beside the gradient-stop twins of the first two rungs (release_map_seeds.png,
#    drawn from the committed records in step 6).
mapfile -t release < <(for rung in release_prev_token release_match release_copy; do printf '%s\n' "$beyond/$rung.opto"; done)
run "${release[@]}" "$@"
"$python" "$beyond/plot_release_map.py" runs --reference runs/fig5b/fig5b-only_h3 --out release_map.png
seeded=(release_prev_token_seeds release_prev_token_stopgrad_seeds release_match_seeds release_match_stopgrad_seeds release_copy_seeds)
mapfile -t release < <(for rung in "${seeded[@]}"; do printf '%s\n' "$beyond/$rung.opto"; done)
run "${release[@]}" "$@"

# 5b. Beyond the paper: the data as an intervention (docs/reproduction.md): burstiness, the Zipf
#     exponent and a previous-token clamp on the Zipf stream, on seeds 5-7 each, recorded in step 6.
#     They keep their own log-spaced evaluation points: the extra --set values are not applied.
#     (The calibration of data.zipf against the paper's own code is specs/paper/anchor_zipf.sh: it
#     needs that code.)
mapfile -t icl < <(for name in bursty zipf zipf_clamp; do printf '%s\n' "$here/../icl/$name.opto"; done)
run "${icl[@]}"

# 6. Committed records (docs/reproduction/records/) of the runs whose tables docs/reproduction.md
#    generates, then the page's generated tables and their figures (`opto docs`). Figure 3's seed-5
#    record is the seed-5 baseline above, analysed on every training sequence, without its series.
records="$here/../../docs/reproduction/records"
mkdir -p record-sources && rm -rf record-sources/fig3_baseline_seed5
cp -r runs/fig4a_over_training_seeds/fig4a_over_training_seeds-seed5 record-sources/fig3_baseline_seed5
rm -rf record-sources/fig3_baseline_seed5/series record-sources/fig3_baseline_seed5/llc.json
"$opto" analyze record-sources/fig3_baseline_seed5 --sequences all --only heads --only groups --only paths \
    --only composition > eval/analysis-fig3_baseline_seed5.txt
"$opto" record runs/fig4a_over_training_seeds runs/fig5b_strongest_seeds runs/fig5b record-sources/fig3_baseline_seed5 \
    runs/repeat_llc_seeds runs/fig10_progress_measures runs/fig10_progress_measures_seeds "${seeded[@]/#/runs/}" --out "$records"
"$opto" record runs/bursty runs/zipf runs/zipf_clamp --out "$records/icl"
(cd "$here/../.." && "$opto" docs docs/reproduction.md docs/series.md)
only="$records/fig5b_strongest_seeds/fig5b_strongest_seeds-only_strongest"
"$python" "$beyond/plot_release_map.py" "$records" --reference "$only-seed5-h1" "$only-seed6-h3" "$only-seed7-h2" \
    --out "$here/../../docs/figures/release_map_seeds.png"
echo "reports: $out/*/report.md"
