#!/usr/bin/env bash
# `make hostile-report`: runs the hostile-peer suite (conformance/tests/hostile/) one test at a
# time and prints the figures it reports: sidecar RSS under attack, refused variants, random
# messages (and their seed), the wait of a real client while 1,100 hostile connections are open.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/scripts/install-deps.sh"
build_release
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
cargo test --release -p hsmbridge-conformance --test hostile -- --nocapture --test-threads=1 >"$out" 2>&1 || status=$?
grep -E '^hostile |^test result' "$out"
if [ "$status" -ne 0 ]; then
    grep -E '^test .*FAILED|panicked' "$out" >&2 || true
    echo "hostile-report: the suite failed (exit $status); full output above was cut, rerun cargo test for details" >&2
fi
exit "$status"
