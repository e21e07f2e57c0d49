#!/usr/bin/env bash
# The cost of handing a synchronous call to another process and back, against the same work
# done in-process, with more busy threads than CPUs (conformance/floor/handover.c has the
# details). Modes: inproc (the baseline), sock, sockpoll, futex (the floor). Not a test: it
# prints figures whatever they are, and fails only if a run fails.
#
#   bash scripts/handover-floor.sh
#   THREADS="1 4 8" WORK_US=60 DURATION_MS=1500 ROUNDS=3 bash scripts/handover-floor.sh
#
# work() is calibrated once and passed to every run as WORK_ITERS (set WORK_ITERS to skip
# calibration), so every run burns the same work per call. Each round runs all modes in turn,
# inproc first, so drifting machine load hits them alike; each line gets ratio_vs_inproc =
# ops_per_s / ops_per_s of inproc in the same round and thread count, and a summary per mode
# and thread count follows. Builds into $HANDOVER_BUILD (default
# ${TMPDIR:-/tmp}/hsmbridge-handover-floor).
set -euo pipefail

SRC="$(dirname "$0")/../conformance/floor/handover.c"
BUILD="${HANDOVER_BUILD:-${TMPDIR:-/tmp}/hsmbridge-handover-floor}"
BIN="$BUILD/handover"
THREADS="${THREADS:-1 4 8}"
WORK_US="${WORK_US:-60}"
DURATION_MS="${DURATION_MS:-1500}"
ROUNDS="${ROUNDS:-3}"
MODES="inproc sock sockpoll futex"

if [ ! -f "$SRC" ]; then
    echo "handover-floor: $SRC not found" >&2
    exit 1
fi
mkdir -p "$BUILD"
cc -O2 -Wall -Wextra -pthread -o "$BIN.tmp.$$" "$SRC"
mv -f "$BIN.tmp.$$" "$BIN"

# With WORK_ITERS set, calib only reports what that count costs.
calib=$("$BIN" calib "$WORK_US")
WORK_ITERS=$(sed -n 's/^work_iters=\([0-9]*\).*/\1/p' <<<"$calib")
measured=$(sed -n 's/.*work_us_measured=\([0-9.]*\).*/\1/p' <<<"$calib")
export WORK_ITERS
echo "# nproc=$(nproc) work_us=$WORK_US duration_ms=$DURATION_MS rounds=$ROUNDS" \
     "work_iters=$WORK_ITERS work_us_measured=$measured"

declare -A RATIOS
for T in $THREADS; do
    for ((r = 1; r <= ROUNDS; r++)); do
        base=0
        for m in $MODES; do
            line=$("$BIN" "$m" "$T" "$WORK_US" "$DURATION_MS")
            ops=$(sed -n 's/.*ops_per_s=\([0-9.]*\).*/\1/p' <<<"$line")
            if [ "$m" = inproc ]; then base=$ops; fi
            ratio=$(awk -v a="$ops" -v b="$base" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "nan" }')
            echo "round=$r $line ratio_vs_inproc=$ratio"
            RATIOS["$m,$T"]="${RATIOS["$m,$T"]:-} $ratio"
        done
    done
done

echo
echo "# summary: ops_per_s / inproc's ops_per_s of the same round and thread count"
for T in $THREADS; do
    for m in $MODES; do
        list="${RATIOS["$m,$T"]# }"
        mean=$(awk -v l="$list" 'BEGIN { n = split(l, v, " "); s = 0
                                         for (i = 1; i <= n; i++) s += v[i]
                                         printf "%.3f", n ? s / n : 0 }')
        echo "threads=$T mode=$m ratios=${list// /,} mean=$mean"
    done
done
