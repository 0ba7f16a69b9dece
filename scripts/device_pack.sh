#!/usr/bin/env bash
# The GPU pack: one command for a GPU window, ending by a wall-clock deadline whatever happens.
#
#   device call 1 (carry .whl-a .device-data):  scripts/device_pack.sh
#       md-speed on cuda for 7net-0, chgnet, 7net-mf-0, 7net-l3i5, omni; batched single points against the ASE
#       loop (molecules suite and GoldDAC slices); a GPU training run of omni (configs/dbs.yaml, the shipped recipe; time-capped)
#   device call 2 (carry .whl-b), right after, on the still-warm machine:
#       PARTS=env,md-speed-cueq PACK_SECONDS=170 scripts/device_pack.sh
#       md-speed again for the SevenNet models with cuEquivariance (enable_cueq)
#   here, on the CPU:  DRY_RUN=1 OUT=/tmp/pack scripts/device_pack.sh   (tiny sizes, end to end)
#
# Everything lands in $OUT (at most 8 files): pack.json (GPU, versions, command, what each part did), pack.log,
# batched.json, md-speed.tar.gz, md-speed-cueq.tar.gz, train.tar.gz. scripts/device_report.py turns them into
# reports/speed.md rows and, where the new checkpoint validates better than the shipped omni, a candidate.
# Settings: OUT (required), DRY_RUN=1, PACK_SECONDS (the whole command; default 540, dry run 900), PARTS
# (comma-separated, default env,batched,md-speed,md-speed-cueq,train), PYTHON (default python3), WORK (scratch
# folder; default: a new temporary one).
set -uo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the results go to}"
mkdir -p "$OUT"
LOG="$OUT/pack.log"
DRY_RUN=${DRY_RUN:-0}
PACK_SECONDS=${PACK_SECONDS:-$([[ "$DRY_RUN" == 1 ]] && echo 900 || echo 540)}  # the dry run: a guard only
PYTHON=${PYTHON:-python3}
SITE="$PWD/.device-site"  # ignored folder of the tree: kept on the warm machine between calls 1 and 2
# The project is not installed there: reference_model/ installs as omni_bench_reference, so a link under
# that name stands in for it on PYTHONPATH.
ALIASES="$PWD/.device-aliases"
mkdir -p "$ALIASES" && ln -sfn "$PWD/reference_model" "$ALIASES/omni_bench_reference"

say() { echo "[pack $(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

if [[ "$DRY_RUN" != 1 ]]; then
    for pack in .whl-*/; do  # each pack installs once per machine; call 2 finds call 1's in $SITE
        pack=${pack%/}
        [[ -d "$pack" ]] || continue
        if [[ -f "$SITE/.installed-$pack" ]] && cmp -s "$pack/manifest.json" "$SITE/.installed-$pack"; then
            say "$pack already installed in $SITE"
            continue
        fi
        say "installing $pack ($(ls "$pack"/*.whl | wc -l) wheels) into $SITE"
        if ! timeout -k 5 180 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target "$SITE" "$pack"/*.whl >>"$LOG" 2>&1; then
            say "ERROR: pip could not install $pack (see above)"; exit 2
        fi
        cp "$pack/manifest.json" "$SITE/.installed-$pack"
    done
    export PYTHONPATH="$PWD:$ALIASES:$SITE"
else
    export PYTHONPATH="$PWD:$ALIASES${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
left=$((PACK_SECONDS - ($(date +%s) - START)))
if ((left < 30)); then say "ERROR: only $left s of PACK_SECONDS=$PACK_SECONDS left after the installs"; exit 2; fi
say "driver starts with $left s left (DRY_RUN=$DRY_RUN, PARTS=${PARTS:-all})"
timeout -k 5 "$left" "$PYTHON" scripts/device_pack.py --out "$OUT" --deadline $((START + PACK_SECONDS)) \
    ${PARTS:+--parts "$PARTS"} ${WORK:+--work "$WORK"} $([[ "$DRY_RUN" == 1 ]] && echo --dry-run) 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
say "driver exit status $status"
exit "$status"
