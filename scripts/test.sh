#!/usr/bin/env bash
# `make test`: installs the system packages, builds everything in release mode (the tests drive
# target/release/hsm-sidecar and target/release/libhsmbridge_pkcs11.so) and runs the workspace tests.
# The operator's integration tests (operator/tests/) start real kube-apiservers: `kube-testenv.sh
# install` builds and caches one (~5 min on a fresh machine, then a no-op). The end-to-end story
# (e2e/story.sh) runs last, on a one-node cluster: `kube-node.sh install` builds and caches the
# kubelet, scheduler, controller-manager and kube-proxy (~14 min on a fresh machine, then a no-op);
# the images are built from the release binaries each time (scripts/images.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/install-deps.sh"
"$REPO_ROOT/scripts/kube-testenv.sh" install
"$REPO_ROOT/scripts/kube-node.sh" install
ensure_cargo
# Style and lints first: they are fast and say most.
python3 scripts/check-pipes.py
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
build_release
bash scripts/chart-test.sh
# --no-fail-fast: report every failing test binary, not only the first.
cargo test --release --workspace --no-fail-fast "$@"
# The suites that drive the frame path, again in the other spin modes (README "Limits"): the run
# above is the default (adaptive); 0 never polls; 200 polls wherever it runs, up to 200 µs. The
# harness passes the shim's HSMBRIDGE_SPIN_US to the sidecars it starts as --spin-us.
for spin in 0 200; do
  HSMBRIDGE_SPIN_US=$spin cargo test --release -p hsmbridge-conformance --no-fail-fast \
    --test differential --test pkcs11_tool --test faults --test hostile --test idle_cpu "$@"
done
bash e2e/story.sh
