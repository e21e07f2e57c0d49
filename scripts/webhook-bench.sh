#!/usr/bin/env bash
# `make bench-webhook`: the injection webhook's latency on a real kube-apiserver (issue 4).
# The end-to-end test's setup (chart installed with helm 3.10, `hsm-operator run` serving the
# webhook under the chart's ServiceAccount, an enrolled partition); then N labelled pods (default
# 200) are created as fast as the API server accepts them. Reports the webhook's p50/p99 from the
# operator's own histogram hsm_operator_webhook_duration_seconds (bucket upper bounds), the API
# server's view of the same calls, and the client-side create latencies. Target: p99 < 10 ms.
# Not a test: it prints figures and exits 0 whatever they are.
#
#   bash scripts/webhook-bench.sh [--pods N] [--concurrency C]
# The driver is operator/tests/bench_webhook.rs (an #[ignore]d test, run here in release mode).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

while [ $# -gt 0 ]; do
    case "$1" in
        --pods) export HSMBRIDGE_BENCH_PODS="$2"; shift 2 ;;
        --concurrency) export HSMBRIDGE_BENCH_CONCURRENCY="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "webhook-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

run_ignored_operator_test bench_webhook
