#!/usr/bin/env bash
# `make bench`: the same PKCS#11 workload against SoftHSM directly, through p11-kit's RPC and
# through shim+sidecar, in one run (see conformance/src/bin/bench.rs). Not a test: it prints a
# table and the ratios against the targets and exits 0 whatever the numbers are.
# Arguments are passed to the bench binary (e.g. --duration-ms 2000, --threads 1,4,8).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/install-deps.sh"
build_release
exec "$REPO_ROOT/target/release/bench" --softhsm "$SOFTHSM_MODULE" "$@"
