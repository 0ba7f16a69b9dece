#!/usr/bin/env bash
# The recipe ablation: trains the same data four ways (plain multi-task; + selective regularisation;
# + domain-bridging set; + both), runs the molecules and r2scan suites on each, and writes
# reference_model/ABLATION.md from the results. No number in it is typed by hand.
#
#   reference_model/ablation.sh              # train what is missing, evaluate, write ABLATION.md
#
# Settings (environment): RUNS (training outputs, results and store; default runs/ablation), DEVICE
# (default: auto), OMNI_BENCH_DATA (reference data root). Training resumes from RUNS/<variant>/resume.pt.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-runs/ablation}
DEVICE=${DEVICE:-auto}
VARIANTS="plain selreg dbs both"
common=(--out "$RUNS/results" --store "$RUNS/store.sqlite" --device "$DEVICE" --no-progress)
if [[ -n "${OMNI_BENCH_DATA:-}" ]]; then common+=(--data-dir "$OMNI_BENCH_DATA"); fi

run() { echo "+ $*" >&2; "$@"; }

for variant in $VARIANTS; do
    out="$RUNS/$variant"
    if [[ ! -f "$out/metrics.json" ]]; then
        resume=(); if [[ -f "$out/resume.pt" ]]; then resume=(--resume); fi
        run python -m reference_model.train --config "reference_model/configs/$variant.yaml" --out "$out" "${resume[@]}"
    fi
    run python -m reference_model.card "$out" --name "omni-$variant" --checkpoint "$PWD/$out/checkpoint.pth" \
        --out "$out/card.yaml"
done
rm -rf "$RUNS/results"
for variant in $VARIANTS; do
    # the new molecular channels on the molecule tasks; the replayed channels on the r2SCAN-level tasks
    run omni-bench run --model "$RUNS/$variant/card.yaml" --channel PBE0 --channel GFN2 --suite molecules "${common[@]}"
    run omni-bench run --model "$RUNS/$variant/card.yaml" --channel PBE --channel R2SCAN --suite r2scan "${common[@]}"
done
# the starting model, for how much of it the replay keeps
run omni-bench run --model 7net-mf-0 --channel PBE --channel R2SCAN --suite r2scan --suite molecules "${common[@]}"
run omni-bench leaderboard --results "$RUNS/results" --out "$RUNS/leaderboard"
run python -m reference_model.ablation_report "$RUNS" > reference_model/ABLATION.md
echo "wrote reference_model/ABLATION.md"
