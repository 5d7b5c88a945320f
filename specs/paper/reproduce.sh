#!/usr/bin/env bash
# Regenerate the paper's Sections 3-5 and Appendix E (plus Appendix D.2's Figure 10) from the specs
# in this folder: train the runs, analyse the baseline's checkpoint, draw one report per figure.
#
#   bash specs/paper/reproduce.sh OUT [--set key=value]...
#
# OUT/runs/<spec> holds the run directories, OUT/<figure>/report.md and its PNGs the results.
# Extra --set values apply to every run (on a 2-core CPU the published evaluation every 1,000
# sequences of the clamp runs costs more than their training; docs/reproduction.md used
# --set eval.every=4k for them). Rerunning resumes unfinished runs and redoes the reports.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: bash specs/paper/reproduce.sh OUT [--set key=value]...}"
shift
opto="${OPTO:-opto}"
main=(fig3_baseline fig5b fig10_progress_measures fig4b_single_heads fig6_clamped fig6_unclamped)
specs=()
for name in "${main[@]}"; do specs+=("$here/$name.opto"); done
"$opto" run "${specs[@]}" --out "$out/runs" --no-progress "$@"
# Figure 4a, Table 1 / Appendix E, Figure 11 and Table 2: analyses of the baseline's checkpoint
"$opto" analyze "$out/runs/fig3_baseline" --sequences all
r="$out/runs"
"$opto" report "$r/fig3_baseline" --out "$out/fig3_fig4a_table1_fig11"
"$opto" report "$r/fig4b_single_heads" --out "$out/fig4b"
"$opto" report "$r/fig5b" --out "$out/fig5b"
"$opto" report "$r/fig10_progress_measures" "$r/fig5b/fig5b-clamp_prev_token" "$r/fig5b/fig5b-clamp_match" --out "$out/fig10"
# Figure 6's rows: 50, 100 and 200 classes at 5 labels; 10 and 15 labels at 50 classes
"$opto" report "$r"/fig6_*/*-labels5 --out "$out/fig6_classes"
"$opto" report "$r"/fig6_*/*-labels1[05] --out "$out/fig6_labels"
"$opto" toy --out "$out/fig5a_toy"
echo "reports: $out/*/report.md"
