#!/usr/bin/env bash
# Regenerates reports/leaderboard.{md,csv,html} from real runs of the bundled models on every suite.
# No number is typed by hand: the leaderboard is computed from the results files these runs write, and it
# records the run commands and package versions that produced it.
#
#   scripts/make_leaderboard.sh                      # the full sweep (hours on a CPU; use DEVICE=cuda)
#   LIMIT=2 SUITES=quick scripts/make_leaderboard.sh # a small slice, to check the pipeline end to end
#   SUITES="molecules r2scan molecular-crystals organometallics crystals surfaces mofs" scripts/make_leaderboard.sh
#                                                    # every suite on a CPU: heavy tasks as their CPU subsets
#                                                    # (elastic-moduli-small, heat-capacity-small, mofsimbench-eos-small,
#                                                    # torsionnet500-small, csp-landscapes-small: task files with
#                                                    # counts.subset_of); the suite "full" holds the full sets
#
# Settings (environment): SUITES (default: every suite but "all", "quick" and the timing suite "speed"),
# MODELS (default: every bundled uMLIP and channel), XTB_SUITES (suites where gfn2-xtb applies; default:
# molecules organometallics physicality; empty: none), XTB_TASKS (single tasks to add for gfn2-xtb; default: none), TASKS
# (single tasks to add to the suites, e.g. one task of a suite that is too slow to run whole; default: none),
# LIMIT (first N items of each task), DEVICE (default: auto),
# OMNI_BENCH_DATA (reference data root), STORE (result store, the cache that makes a rerun cheap; default:
# omni-bench's own), RESULTS (results folder, rewritten each time; default: omni-bench-results/leaderboard),
# OUT (default: reports/leaderboard).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITES=${SUITES:-$(python -c "from omni_bench.task_registry import suites
print(' '.join(s for s in suites() if s not in ('all', 'quick', 'speed')))")}
MODELS=${MODELS:-"7net-0 7net-mf-0@PBE 7net-mf-0@R2SCAN 7net-l3i5 chgnet chgnet-r2scan omni@PBE omni@R2SCAN omni@PBE0 omni@GFN2"}
XTB_SUITES=${XTB_SUITES-"molecules organometallics physicality"}
DEVICE=${DEVICE:-auto}
RESULTS=${RESULTS:-omni-bench-results/leaderboard}
OUT=${OUT:-reports/leaderboard}

common=(--out "$RESULTS" --device "$DEVICE" --no-progress)
if [[ -n "${STORE:-}" ]]; then common+=(--store "$STORE"); fi
if [[ -n "${LIMIT:-}" ]]; then common+=(--limit "$LIMIT"); fi
if [[ -n "${OMNI_BENCH_DATA:-}" ]]; then common+=(--data-dir "$OMNI_BENCH_DATA"); fi

run() { echo "+ $*" >&2; "$@"; }

# The results folder holds exactly this sweep; the store keeps every computed item, so nothing is redone.
rm -rf "$RESULTS"
suite_args=()
for suite in $SUITES; do suite_args+=(--suite "$suite"); done
for task in ${TASKS:-}; do suite_args+=(--task "$task"); done
for model in $MODELS; do
    run omni-bench run --model "$model" "${suite_args[@]}" "${common[@]}"
done
# gfn2-xtb is a semi-empirical baseline for molecules, not a uMLIP: it runs where it applies.
xtb_args=()
for suite in $XTB_SUITES; do xtb_args+=(--suite "$suite"); done
for task in ${XTB_TASKS:-}; do xtb_args+=(--task "$task"); done
if [[ ${#xtb_args[@]} -gt 0 ]]; then
    run omni-bench run --model gfn2-xtb "${xtb_args[@]}" "${common[@]}"
fi

run omni-bench leaderboard --results "$RESULTS" --out "$OUT"
echo "leaderboard: $OUT.md, $OUT.csv, $OUT.html (from $RESULTS; omni-bench $(omni-bench --version | cut -d' ' -f2))"
