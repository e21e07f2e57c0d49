#!/usr/bin/env bash
# Building Kubernetes 1.20.2 from Debian's `kubernetes` source package, shared by
# scripts/kube-testenv.sh (kube-apiserver, kubectl) and scripts/kube-node.sh (the node's
# kubelet, kube-scheduler, kube-controller-manager, kube-proxy). Sourced, not run.
#
# The caller defines log() and die() first. Provides:
#   CACHE                       ${HSMBRIDGE_CACHE:-~/.cache/hsmbridge}: source tree, logs, bin/
#   KUBE_RECIPE                 bumped when the build changes, so cached binaries are rebuilt
#   as_root CMD...              runs CMD as root (directly or through sudo)
#   free_port VAR               sets VAR to a TCP port nobody listens on at 127.0.0.1, not one
#                               handed out before in this shell
#   apt_install PKG...          installs the missing ones (apt-get update once)
#   source_tree                 prints the unpacked source tree, fetched with `apt-get source`
#   build_in TREE "cmd/a cmd/b" `make WHAT=...` with progress every 30 s, log in the cache
#   kube_cached NAME...         true when every $CACHE/bin/NAME runs and carries KUBE_RECIPE
#   kube_install NAME...        builds what is not cached (one `make` for all) into $CACHE/bin

CACHE="${HSMBRIDGE_CACHE:-$HOME/.cache/hsmbridge}"
KUBE_RECIPE="debian-kubernetes-1.20.2+reflect2-1.0.2"
# matches, first_lines: readers for pipelines under pipefail.
# shellcheck source=pipes.sh
. "$(dirname "${BASH_SOURCE[0]}")/pipes.sh"

# free_port VAR: sets VAR to a TCP port nobody listens on at 127.0.0.1 and not handed out before
# in this shell. A variable, not printed: `p=$(free_port)` would pick in a subshell, forget what it
# handed out, and two picks of one start could collide.
PORTS_TAKEN=" "
free_port() {
    local p i
    for ((i = 0; i < 1000; i++)); do
        p=$((20000 + RANDOM % 40000))
        case "$PORTS_TAKEN" in *" $p "*) continue ;; esac
        if command -v ss >/dev/null 2>&1; then
            [ -n "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && continue
        elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            continue
        fi
        PORTS_TAKEN+="$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    die "no free TCP port found on 127.0.0.1"
}

# as_root CMD...: runs CMD as root (directly, or through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | matches 'install ok installed'; }

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" -eq 1 ] && return 0
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
}

apt_install() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update
    log "installing ${missing[*]}"
    mkdir -p "$CACHE"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$CACHE/apt-install.log" 2>&1 || { tail -n 20 "$CACHE/apt-install.log" >&2; die "apt-get install failed"; }
}

# All apt source files, one-line and deb822 style.
apt_source_files() { ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; }

# The Debian archive mirror the machine already uses (first non-security Debian URI).
debian_mirror() {
    local f uri
    for f in $(apt_source_files); do
        uri=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' "$f" | grep -v security | first_lines 1 | tr -d ' ' || true)
        [ -n "$uri" ] && { echo "${uri%/}"; return; }
    done
    echo "http://deb.debian.org/debian"
}

has_kubernetes_source() { [ -n "$(apt-cache showsrc kubernetes 2>/dev/null | grep '^Package: kubernetes$' || true)" ]; }

# ensure_deb_src: makes `apt-get source kubernetes` possible. Adds a deb-src entry for the
# machine's suite if there is none, then one for bullseye if the suite lacks the package.
ensure_deb_src() {
    has_kubernetes_source && return 0
    local suite mirror f="/etc/apt/sources.list.d/hsmbridge-deb-src.sources"
    # shellcheck disable=SC1091
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    mirror=$(debian_mirror)
    # shellcheck disable=SC2046
    if ! grep -qsE '^(deb-src|Types:.*deb-src)' $(apt_source_files); then
        log "adding deb-src $mirror $suite to $f"
        printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" "$suite" | as_root tee "$f" >/dev/null
    fi
    APT_UPDATED=0; apt_update
    has_kubernetes_source && return 0
    log "no kubernetes source in $suite; adding deb-src $mirror bullseye"
    printf '\nTypes: deb-src\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" | as_root tee -a "$f" >/dev/null
    APT_UPDATED=0; apt_update
    has_kubernetes_source || die "apt-cache showsrc kubernetes finds nothing even with bullseye deb-src"
}

# first_dir GLOB...: the first existing directory among the expanded globs.
first_dir() { local d; for d in "$@"; do [ -d "$d" ] && { echo "$d"; return; }; done; }

# The unpacked source tree (kubernetes-<version>) in the cache, fetched if absent.
source_tree() {
    local src="$CACHE/src" d
    d=$(first_dir "$src"/kubernetes-*/)
    if [ -z "$d" ] || [ ! -f "$d/Makefile" ]; then
        ensure_deb_src
        mkdir -p "$src"
        log "apt-get source kubernetes (into $src)"
        (cd "$src" && apt-get source -qq kubernetes >"$src/apt-get-source.log" 2>&1) \
            || { tail -n 20 "$src/apt-get-source.log" >&2; die "apt-get source kubernetes failed"; }
        d=$(first_dir "$src"/kubernetes-*/)
    fi
    echo "${d%/}"
}

# patch_tree TREE: the vendored github.com/modern-go/reflect2 v1.0.1 breaks under Go >= 1.18
# (bookworm has 1.19): the built server answers e.g. POST .../roles or selfsubjectaccessreviews
# with "apiserver panic'd ... invalid memory address or nil pointer dereference" in
# reflect2.(*frozenConfig).Type2. v1.0.2 fixes it; Debian ships it as golang-github-modern-go-reflect2-dev.
patch_tree() {
    local tree="$1" dst="$1/vendor/github.com/modern-go/reflect2"
    local src=/usr/share/gocode/src/github.com/modern-go/reflect2
    [ -f "$dst/go_above_118.go" ] && return 0
    apt_install golang-github-modern-go-reflect2-dev
    [ -f "$src/go_above_118.go" ] || die "$src is not reflect2 >= 1.0.2"
    log "patching vendor/github.com/modern-go/reflect2 v1.0.1 -> $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev) (Go >= 1.18 fix)"
    rm -rf "$dst" && cp -a "$src" "$dst"
}

# build_in TREE WHAT: `make WHAT=...` in the background, progress every 30 s, log in the cache.
build_in() {
    local tree="$1" what="$2" blog pid start rc=0
    blog="$CACHE/build-$(printf '%s' "$what" | sed 's#cmd/##g; s# #+#g').log"
    patch_tree "$tree"
    # Version stamped into the binary (/version): the source tree has no .git to derive it from.
    local ver; ver=$(basename "$tree"); ver="${ver#kubernetes-}"; ver="${ver##*really}"
    local minor="${ver#*.}"; minor="${minor%%.*}"
    log "building $what from $tree (v$ver; log: $blog)"
    start=$(date +%s)
    (
        cd "$tree"
        # The Debian source carries its Go deps in vendor/ (the build needs no network).
        export KUBE_GIT_VERSION="v$ver" KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR="$minor" KUBE_GIT_TREE_STATE=clean
        exec make WHAT="$what"
    ) </dev/null >"$blog" 2>&1 &
    pid=$!
    local n=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        n=$((n + 1))
        if [ $((n % 30)) -eq 0 ] && kill -0 "$pid" 2>/dev/null; then log "  still building $what ($(($(date +%s) - start)) s)"; fi
    done
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$blog" >&2
        die "make WHAT=$what failed (exit $rc); full log: $blog"
    fi
    log "built $what in $(($(date +%s) - start)) s"
}

# kube_cached NAME...: every $CACHE/bin/NAME is executable, answers --version and was built by
# this recipe.
kube_cached() {
    local name bin
    for name in "$@"; do
        bin="$CACHE/bin/$name"
        [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1 \
            && [ "$(cat "$bin.recipe" 2>/dev/null)" = "$KUBE_RECIPE" ] || return 1
    done
}

# kube_install NAME...: builds cmd/NAME for every NAME not cached (in one `make`), installs it
# as $CACHE/bin/NAME with a .recipe stamp.
kube_install() {
    local name missing=() what="" tree
    for name in "$@"; do
        if kube_cached "$name"; then log "cached: $CACHE/bin/$name"; else missing+=("$name"); fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    tree=$(source_tree)
    for name in "${missing[@]}"; do what+="cmd/$name "; done
    build_in "$tree" "${what% }"
    mkdir -p "$CACHE/bin"
    for name in "${missing[@]}"; do
        cp -L "$tree/_output/bin/$name" "$CACHE/bin/$name.tmp" && mv "$CACHE/bin/$name.tmp" "$CACHE/bin/$name"
        echo "$KUBE_RECIPE" >"$CACHE/bin/$name.recipe"
        log "installed $CACHE/bin/$name ($("$CACHE/bin/$name" --version 2>&1 | first_lines 1))"
    done
}
