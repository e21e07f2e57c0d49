#!/usr/bin/env bash
# `make demo`: hsmbridge end to end on a local SoftHSM token.
#
#   1. install the system packages, build the workspace (release)
#   2. create a SoftHSM token in a temporary directory; its SO PIN plays the HSM's one-time
#      setup password
#   3. enroll the ppin way: `hsm-sidecar enroll` spends the setup password for a random permanent
#      secret (the user PIN), written to a 0600 file
#   4. start `hsm-sidecar serve` in managed mode (it holds the PIN)
#   5. as the app, `pkcs11-tool --module libhsmbridge_pkcs11.so` lists slots, generates an EC P-256
#      key pair, signs and verifies (openssl verifies too); the app is never given the PIN
#
# Everything lives in a temporary directory that is removed on exit, also on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

TOKEN_LABEL="hsmbridge-demo"
SIDECAR="$REPO_ROOT/target/release/hsm-sidecar"
SHIM="$REPO_ROOT/target/release/libhsmbridge_pkcs11.so"

step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n\033[1m== %d. %s\033[0m\n' "$step_no" "$*"
}
# show CMD...: prints the command, then runs it.
show() {
    printf '$ %s\n' "$*"
    "$@"
}

WORK=""
SIDECAR_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SIDECAR_PID" ]; then
        stop_process "$SIDECAR_PID"
    fi
    if [ "$rc" -ne 0 ] && [ -n "$WORK" ] && [ -s "$WORK/sidecar.log" ]; then
        echo "--- last lines of the sidecar log ---" >&2
        tail -n 30 "$WORK/sidecar.log" >&2 || true
    fi
    if [ -n "$WORK" ]; then
        rm -rf "$WORK"
    fi
    if [ "$rc" -ne 0 ]; then
        printf '\n\033[1;31mdemo FAILED (exit %d) at step %d\033[0m\n' "$rc" "$step_no" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Install system packages (softhsm2, opensc, p11-kit, openssl) if missing"
"$REPO_ROOT/scripts/install-deps.sh"

step "Build the workspace (cargo build --release --workspace)"
build_release

WORK="$(mktemp -d -t hsmbridge-demo.XXXXXX)"
chmod 700 "$WORK"
mkdir -m 700 "$WORK/credentials" "$WORK/run"
export SOFTHSM2_CONF
SOFTHSM2_CONF="$(write_softhsm_conf "$WORK")"

step "Create a SoftHSM token '$TOKEN_LABEL' in $WORK (the stand-in for an HSM partition)"
# The one-time setup password, as an HSM vendor hands it out (Primus style XXXXX-XXXXX-...).
# It only ever lives in a 0600 file that `hsm-sidecar enroll` reads.
SETUP_PASSWORD_FILE="$WORK/credentials/setup-password"
(
    umask 077
    p="$(random_secret 25)"
    printf '%s-%s-%s-%s-%s' "${p:0:5}" "${p:5:5}" "${p:10:5}" "${p:15:5}" "${p:20:5}" >"$SETUP_PASSWORD_FILE"
)
# Fake-HSM setup only: softhsm2-util reads PINs from its command line or a terminal, never from a
# file, so the setup password (SoftHSM's SO PIN) appears on the command line of this short-lived
# process. A real HSM is initialized by its vendor; nothing long-lived ever gets a secret in argv.
# The user PIN given here is a throwaway that enrollment replaces; it is not kept anywhere.
echo "$ softhsm2-util --init-token --free --label $TOKEN_LABEL --so-pin <setup password> --pin <throwaway>"
softhsm2-util --init-token --free --label "$TOKEN_LABEL" \
    --so-pin "$(cat "$SETUP_PASSWORD_FILE")" --pin "$(random_secret 32)"

step "Enroll: spend the setup password for a permanent secret (user PIN) drawn from the token"
PIN_FILE="$WORK/credentials/pin"
show "$SIDECAR" enroll --module "$SOFTHSM_MODULE" --token "$TOKEN_LABEL" \
    --setup-password-file "$SETUP_PASSWORD_FILE" --pin-out "$PIN_FILE"
echo "permanent secret written to $PIN_FILE, mode $(stat -c %a "$PIN_FILE") ($(stat -c %s "$PIN_FILE") bytes, not shown)"
if [ "$(stat -c %a "$PIN_FILE")" != "600" ]; then
    echo "expected mode 600 on $PIN_FILE" >&2
    exit 1
fi

step "Check: the setup password is spent (an SO login with it is now refused)"
# Direct to SoftHSM, as an operator would try it; the password is worthless now, so it may appear here.
if out="$(pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$TOKEN_LABEL" \
    --session-rw --login --login-type so --so-pin "$(cat "$SETUP_PASSWORD_FILE")" --list-objects 2>&1)"; then
    echo "$out"
    echo "the setup password still opens the token" >&2
    exit 1
fi
echo "$out" | grep -E 'CKR_|error' | first_lines 2 || true
if ! echo "$out" | matches -E 'CKR_PIN_INCORRECT|CKR_PIN_LOCKED'; then
    echo "expected CKR_PIN_INCORRECT" >&2
    exit 1
fi
echo "refused, as expected"

step "Start the sidecar in managed mode (it holds the PIN; the app never sees it)"
SOCKET="$WORK/run/pkcs11.sock"
echo "$ $SIDECAR serve --module $SOFTHSM_MODULE --socket $SOCKET --pin-file $PIN_FILE &"
"$SIDECAR" serve --module "$SOFTHSM_MODULE" --socket "$SOCKET" --pin-file "$PIN_FILE" \
    >"$WORK/sidecar.log" 2>&1 &
SIDECAR_PID=$!
wait_for_socket "$SOCKET" "$SIDECAR_PID" 20
echo "sidecar pid $SIDECAR_PID listening on $SOCKET"

# The app: pkcs11-tool with only PATH and HSMBRIDGE_SOCKET in its environment. No PIN, no
# SOFTHSM2_CONF, no vendor library: it loads the shim like any PKCS#11 module.
app() {
    printf '$ HSMBRIDGE_SOCKET=%s pkcs11-tool --module %s %s\n' "$SOCKET" "$SHIM" "$*"
    env -i PATH="$PATH" HSMBRIDGE_SOCKET="$SOCKET" \
        pkcs11-tool --module "$SHIM" "$@" </dev/null
}

step "App: list slots through the shim (note the protected authentication path: no PIN needed)"
app --list-slots

step "App: log in (no PIN given) and generate an EC P-256 key pair on the token"
app --token-label "$TOKEN_LABEL" --login --keypairgen --key-type EC:prime256v1 \
    --label demo-key --id 01

DATA="$WORK/data.txt"
HASH="$WORK/data.sha256"
SIG="$WORK/data.sig"
printf 'hsmbridge demo: signed inside the HSM at %s\n' "$(date -u +%FT%TZ)" >"$DATA"

step "App: sign $(basename "$DATA") with ECDSA P-256 over its SHA-256 (the private key stays in the token)"
# SoftHSM 2.6 offers raw CKM_ECDSA only (no CKM_ECDSA_SHA256), so the app hashes and the token
# signs the hash: the same signature as ECDSA-SHA256 over the data, which openssl checks below.
show openssl dgst -sha256 -binary -out "$HASH" "$DATA"
app --token-label "$TOKEN_LABEL" --login --sign --mechanism ECDSA --id 01 \
    --input-file "$HASH" --output-file "$SIG" --signature-format openssl
echo "signature: $(stat -c %s "$SIG") bytes (DER)"

step "App: verify the signature through the shim"
app --token-label "$TOKEN_LABEL" --verify --mechanism ECDSA --id 01 \
    --input-file "$HASH" --signature-file "$SIG" --signature-format openssl

step "Verify independently with openssl (ECDSA-SHA256 over the data), public key read through the shim"
app --token-label "$TOKEN_LABEL" --read-object --type pubkey --id 01 --output-file "$WORK/pub.der"
show openssl pkey -pubin -inform DER -in "$WORK/pub.der" -out "$WORK/pub.pem"
show openssl dgst -sha256 -verify "$WORK/pub.pem" -signature "$SIG" "$DATA"
printf 'tampered\n' >>"$DATA"
if openssl dgst -sha256 -verify "$WORK/pub.pem" -signature "$SIG" "$DATA" >/dev/null 2>&1; then
    echo "openssl accepted the signature over tampered data" >&2
    exit 1
fi
echo "and rejects it over tampered data, as it should"

printf '\n\033[1;32mdemo OK\033[0m: enrolled, served in managed mode, key generated, signed and verified through the shim; the app never had the PIN.\n'
