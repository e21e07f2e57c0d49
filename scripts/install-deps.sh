#!/usr/bin/env bash
# Installs the system packages the demo, the tests and the benchmark need:
#   softhsm2         SoftHSM v2, the stand-in for a network HSM (libsofthsm2.so, softhsm2-util)
#   opensc           pkcs11-tool, the PKCS#11 client the demo and tests drive
#   p11-kit          `p11-kit server`, the RPC baseline the benchmark compares against
#   p11-kit-modules  p11-kit-client.so, the client side of that baseline
#   opensc-pkcs11    pkcs11-spy.so, which the hostile suite puts between the sidecar and SoftHSM
#                    to count the logins that reach the token
#   openssl          verifies the demo's signature outside the HSM
#   python3-yaml     PyYAML, for scripts/check-monitoring.py and the chart test's monitoring checks
#   gcc, libc6-dev   only when no C compiler is present: rustc links through `cc`
# Idempotent and fast: it asks dpkg first and only runs apt-get (update + install) when
# something is missing. Needs root (or sudo) only in that case.
set -euo pipefail
# shellcheck source=lib/pipes.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/pipes.sh"

packages=(softhsm2 opensc opensc-pkcs11 p11-kit p11-kit-modules openssl python3-yaml)
if ! command -v cc >/dev/null 2>&1; then
    packages+=(gcc libc6-dev)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | matches 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-deps: missing packages (${missing[*]}) and not root; install them and retry" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
