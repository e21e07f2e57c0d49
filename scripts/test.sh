#!/usr/bin/env bash
# `make test`: installs the system packages, builds everything in release mode (the tests drive
# target/release/hsm-sidecar and target/release/libhsmbridge_pkcs11.so) and runs the workspace tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/install-deps.sh"
build_release
# --no-fail-fast: report every failing test binary, not only the first.
cargo test --release --workspace --no-fail-fast "$@"
