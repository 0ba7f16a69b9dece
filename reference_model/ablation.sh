#!/usr/bin/env bash
# The recipe ablation: trains the same data four ways (plain multi-task; + selective regularisation;
# + domain-bridging set; + both), three seeds each, scores every run on the held-out domain-B dimers (inside
# training) and on S22, and writes reference_model/ABLATION.md from the results. No number in it is typed by hand.
#
#   reference_model/ablation.sh              # train what is missing, evaluate, write ABLATION.md
#
# Settings (environment): RUNS (training outputs, results and store; default runs/ablation), VARIANTS
# (default: plain selreg dbs both), SEEDS (default: 20261121 20261122 20261123), EPOCHS (a cap below the
# configs' own, for a CPU budget; default: the configs'), PROBES (config:lambda runs beyond the ablation, one
# seed PROBE_SEED, uncapped; default: dbs:0 both:1e-5 both:1e-4; empty: none), TRAIN_ONLY (1: train, score
# nothing), DEVICE (default: auto), OMNI_BENCH_DATA (reference data root). Training resumes from
# RUNS/<name>/resume.pt. Runs of the same name can go in parallel from different shells.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-runs/ablation}
DEVICE=${DEVICE:-auto}
VARIANTS=${VARIANTS:-"plain selreg dbs both"}
SEEDS=${SEEDS:-"20261121 20261122 20261123"}
PROBES=${PROBES-"dbs:0 both:1e-5 both:1e-4"}
PROBE_SEED=${PROBE_SEED:-20261121}
TRAIN_ONLY=${TRAIN_ONLY:-}
common=(--out "$RUNS/results" --store "$RUNS/store.sqlite" --device "$DEVICE" --no-progress)
if [[ -n "${OMNI_BENCH_DATA:-}" ]]; then common+=(--data-dir "$OMNI_BENCH_DATA"); fi

run() { echo "+ $*" >&2; "$@"; }

# one line per run: folder name, config, seed, epoch cap (- for the config's own), lambda (- for the config's)
specs=()
for variant in $VARIANTS; do
    for seed in $SEEDS; do specs+=("$variant-$seed $variant $seed ${EPOCHS:--} -"); done
done
# beyond the ablation: the penalty's strength, each trained to the config's own cap and early stopping
for probe in $PROBES; do
    specs+=("uncapped-${probe%%:*}-lambda${probe#*:}-$PROBE_SEED ${probe%%:*} $PROBE_SEED - ${probe#*:}")
done

for spec in "${specs[@]}"; do
    read -r name variant seed cap lambda <<<"$spec"
    out="$RUNS/$name"
    if [[ ! -f "$out/metrics.json" ]]; then
        extra=(); if [[ -f "$out/resume.pt" ]]; then extra+=(--resume); fi
        if [[ "$cap" != - ]]; then extra+=(--epochs "$cap"); fi
        if [[ "$lambda" != - ]]; then extra+=(--regularisation "$lambda"); fi
        run python -m omni_bench_reference.train --config "reference_model/configs/$variant.yaml" --seed "$seed" \
            --out "$out" "${extra[@]}"
    fi
done
if [[ -n "$TRAIN_ONLY" ]]; then exit 0; fi
for spec in "${specs[@]}"; do
    read -r name _ <<<"$spec"
    out="$RUNS/$name"
    run python -m omni_bench_reference.card "$out" --name "omni-$name" \
        --checkpoint "$(cd "$out" && pwd)/checkpoint.pth" --out "$out/card.yaml" --in-domain-from omni_bench_reference/model_card.yaml
    # the new hybrid channel on S22 (domain B's kind of structure, at CCSD(T)), without and with D3(BJ)
    run omni-bench run --model "$out/card.yaml@PBE0" --model "$out/card.yaml@PBE0+d3" --task s22 "${common[@]}"
done
# the reference rows: PBE0/def2-SVP itself (PySCF; its S22 took 27 minutes on
# one core of a busy 2-core machine, once: then the store has it)
# and the starting model
run omni-bench run --model pbe0-def2svp --model pbe0-def2svp+d3 --model 7net-mf-0@PBE --model 7net-mf-0@PBE+d3 \
    --task s22 "${common[@]}"
run python -m omni_bench_reference.ablation_report "$RUNS" > reference_model/ABLATION.md
echo "wrote reference_model/ABLATION.md"
