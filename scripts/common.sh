# Shared helpers for scripts/*.sh (sourced, not run).

# Repository root (the directory above scripts/).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# matches, first_lines: readers for pipelines under pipefail.
# shellcheck source=lib/pipes.sh
. "$REPO_ROOT/scripts/lib/pipes.sh"

# The real PKCS#11 module behind the bridge on this machine (the fake HSM).
SOFTHSM_MODULE="${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

# cargo lives in ~/.cargo/bin after rustup, which a non-login shell (CI, sudo) may not have on PATH.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust (https://rustup.rs) and retry" >&2
        exit 1
    fi
}

build_release() {
    ensure_cargo
    (cd "$REPO_ROOT" && cargo build --release --workspace)
}

# write_softhsm_conf DIR: a SoftHSM config whose tokens live in DIR/tokens; prints its path.
write_softhsm_conf() {
    local dir="$1"
    mkdir -p "$dir/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
        "$dir" >"$dir/softhsm2.conf"
    echo "$dir/softhsm2.conf"
}

# random_secret N: N random alphanumeric characters.
random_secret() {
    local n="$1" out=""
    while [ "${#out}" -lt "$n" ]; do
        out+="$(head -c 256 /dev/urandom | tr -dc 'A-Za-z0-9')"
    done
    printf '%s' "${out:0:$n}"
}

# wait_for_socket PATH PID SECONDS: waits until PATH is a socket; fails early if PID exits.
wait_for_socket() {
    local sock="$1" pid="$2" secs="$3" i
    for ((i = 0; i < secs * 10; i++)); do
        [ -S "$sock" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited before creating $sock" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "timed out after ${secs}s waiting for $sock" >&2
    return 1
}

# stop_process PID: SIGTERM, wait up to 5 s, then SIGKILL. Only for processes this script started.
stop_process() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# run_ignored_operator_test NAME: an #[ignore]d benchmark driver of operator/tests/ on a real
# kube-apiserver, in release mode (installs what it needs first).
run_ignored_operator_test() {
    "$REPO_ROOT/scripts/install-deps.sh"
    "$REPO_ROOT/scripts/kube-testenv.sh" install
    ensure_cargo
    # hsm-sidecar: the drivers play the kubelet for enrollment Jobs, which run it.
    cargo build --release -p hsm-operator -p hsm-sidecar
    cargo test --release -p hsm-operator --test "$1" -- --ignored --nocapture --test-threads=1
}
