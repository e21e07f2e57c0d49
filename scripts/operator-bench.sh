#!/usr/bin/env bash
# `make bench-operator`: hsm-operator's reconcile benchmark on a real kube-apiserver (issue 3).
# N HsmPartitions (default 500, provider pkcs11) and their setup Secrets are created first; then
# the operator starts cold under its least-privilege ServiceAccount, and the run reports the time
# until all are Ready=True and the operator's peak RSS (VmHWM). Enrollment is played: the driver
# writes `pin` into each <name>-credentials Secret as soon as the operator creates it (running N
# real enrollments is not what is measured). Not a test: it prints figures against the targets
# (< 60 s, < 64 MiB) and exits 0 whatever they are.
#
#   bash scripts/operator-bench.sh [--partitions N] [--timeout SECS]
# The driver is operator/tests/bench_reconcile.rs (an #[ignore]d test, run here in release mode).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

while [ $# -gt 0 ]; do
    case "$1" in
        --partitions) export HSMBRIDGE_BENCH_PARTITIONS="$2"; shift 2 ;;
        --timeout) export HSMBRIDGE_BENCH_TIMEOUT_SECS="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "operator-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

run_ignored_operator_test bench_reconcile
