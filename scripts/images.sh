#!/usr/bin/env bash
# Builds hsmbridge's container images from the release binaries in target/release/ (it never
# runs cargo), smoke-tests each, and optionally saves them as archives for containerd.
#
#   bash scripts/images.sh              # build + smoke-test; prints each image's ref and size
#   bash scripts/images.sh save DIR     # the same, then DIR/<name>.tar per image (OCI archives,
#                                       # for `ctr -n k8s.io images import`) and DIR/sizes.txt
#   bash scripts/images.sh refs         # prints the refs it builds, builds nothing
#
# Images (names and paths: contract/contract.env; VERSION: appVersion of charts/hsmbridge/Chart.yaml,
# so the chart's default image refs resolve to these, with imagePullPolicy IfNotPresent):
#   $IMAGE_REGISTRY/hsm-operator:VERSION         images/operator         (distroless-like base)
#   $IMAGE_REGISTRY/hsm-sidecar:VERSION          images/sidecar          (sidecar + shim, Debian slim)
#   $IMAGE_REGISTRY/hsm-sidecar-softhsm:VERSION  images/sidecar-softhsm  (+ Debian's softhsm2)
#   localhost/hsmbridge/e2e-app:VERSION          e2e/app                 (pkcs11-tool + openssl: the
#                                                the end-to-end story's app; not a product image)
# The node's pause image is scripts/kube-node.sh's own.
# images/sidecar-primus needs the vendor's files and is not built here.
#
# Builder: docker when `docker info` works, else podman (installed from Debian when missing).
# Bases: each Dockerfile's default BASE is used when the builder has it or can pull it. Otherwise
# (no registry reachable) or with HSMBRIDGE_LOCAL_BASE=1, local bases are built from Debian
# bookworm with mmdebstrap and imported:
#   localhost/hsmbridge/base-distroless:KEY   for the operator: libc6, libgcc-s1, base-files, netbase,
#       tzdata and the CA bundle, extracted without their dependencies or maintainer scripts (like
#       gcr.io/distroless/cc-debian12:nonroot: no shell, no package manager, user nonroot 65532)
#   localhost/hsmbridge/base-slim:KEY         for the sidecar: `mmdebstrap --variant=apt` (essential
#       packages + apt, merged /usr), docs/man/locales excluded by dpkg path-exclude, apt lists
#       removed; apt works, so the softhsm2 layer installs as on debian:bookworm-slim.
# KEY is a hash of the recipe (the mmdebstrap command line and the code that finishes the tree);
# the root filesystem tarballs are cached in $HSMBRIDGE_CACHE/images/ (default ~/.cache/hsmbridge),
# so a rerun only imports them (or finds them imported). Delete them to pick up Debian updates.
# HSMBRIDGE_LOCAL_BASE=0 never builds local bases (a failed pull is an error).
#
# Needs root for podman and mmdebstrap (like `make test` in CI). RUN steps of the builds reach
# deb.debian.org with --network host. Idempotent: the builder's layer cache makes a rerun cheap.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=contract/contract.env
. "$REPO/contract/contract.env"

T0=$(date +%s)
step() { echo "images: == $* [$(($(date +%s) - T0))s]" >&2; }
log() { echo "images:    $*" >&2; }
die() { echo "images: FAIL: $*" >&2; exit 1; }
# CACHE, as_root, apt_install.
# shellcheck source=scripts/lib/kube-build.sh
. "$REPO/scripts/lib/kube-build.sh"

BASE_CACHE="$CACHE/images"
RELEASE="$REPO/target/release"
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$REPO/charts/hsmbridge/Chart.yaml")

OPERATOR_REF="$IMAGE_REGISTRY/$IMAGE_OPERATOR:$VERSION"
SIDECAR_REF="$IMAGE_REGISTRY/$IMAGE_SIDECAR:$VERSION"
SOFTHSM_REF="$IMAGE_REGISTRY/$IMAGE_SIDECAR_SOFTHSM:$VERSION"
APP_REF="localhost/hsmbridge/e2e-app:$VERSION"

# Debian for the local bases: the release, with its updates and security suites.
SUITE=bookworm
MIRRORS=("deb http://deb.debian.org/debian $SUITE main"
    "deb http://deb.debian.org/debian $SUITE-updates main"
    "deb http://deb.debian.org/debian-security $SUITE-security main")
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

WORK=""
cleanup() { [ -z "$WORK" ] || rm -rf "$WORK" || true; }
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Tools

B=""                # docker or podman
BUILD_FLAGS=()      # for `B build`
RUN_FLAGS=()        # for `B run`
choose_builder() {
    case "${HSMBRIDGE_BUILDER:-}" in
        docker | podman) B=$HSMBRIDGE_BUILDER ;;
        "")
            if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then B=docker; else B=podman; fi ;;
        *) die "HSMBRIDGE_BUILDER must be docker or podman, not '$HSMBRIDGE_BUILDER'" ;;
    esac
    if [ "$B" = podman ]; then
        [ "$(id -u)" -eq 0 ] || die "building with podman needs root (rootless storage is not what the node imports)"
        command -v podman >/dev/null 2>&1 || apt_install podman
    fi
    BUILD_FLAGS=(--network host)
    log "builder: $($B --version | first_lines 1)"
}

image_exists() { "$B" image inspect "$1" >/dev/null 2>&1; }
image_size() { "$B" image inspect --format '{{.Size}}' "$1"; }
image_id() { "$B" image inspect --format '{{.Id}}' "$1" | sed 's/^sha256://' | cut -c1-12; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }

# ---------------------------------------------------------------------------------------------
# Local bases (no registry)

# finish_distroless ROOT DEBS KEEP: turns an `mmdebstrap --variant=extract` tree into a
# distroless-like root filesystem. DEBS holds the .debs apt downloaded (the KEEP packages and
# their dependencies); the files of every package not in KEEP (comma-separated) are removed, so
# no shell, perl, openssl or awk comes along. Nothing ran in the tree (extract only), so this
# writes what the maintainer scripts would have: the CA bundle, users and groups, a dpkg
# status.d for image scanners.
finish_distroless() {
    local root="$1" debs="$2" keep=",$3," deb pkg
    local kept="$root.kept" dropped="$root.dropped"
    : >"$kept"; : >"$dropped"
    mkdir -p "$root/var/lib/dpkg/status.d"
    for deb in "$debs"/*.deb; do
        pkg=$(dpkg-deb -f "$deb" Package)
        if [[ "$keep" == *",$pkg,"* ]]; then
            dpkg-deb --fsys-tarfile "$deb" | tar -t >>"$kept"
            dpkg-deb -f "$deb" Package Version Architecture Source Maintainer Installed-Size Depends Description \
                >"$root/var/lib/dpkg/status.d/$pkg"
        else
            dpkg-deb --fsys-tarfile "$deb" | tar -t >>"$dropped"
        fi
    done
    # Files of dropped packages (not shared with a kept one), then their directories if empty.
    LC_ALL=C sort -u "$kept" -o "$kept"
    LC_ALL=C sort -u "$dropped" | LC_ALL=C comm -23 - "$kept" >"$dropped.only"
    grep -v '/$' "$dropped.only" | while IFS= read -r f; do rm -f "$root/$f"; done
    grep '/$' "$dropped.only" | LC_ALL=C sort -r | while IFS= read -r d; do rmdir "$root/$d" 2>/dev/null || true; done
    rm -f "$dropped.only"
    rm -f "$kept" "$dropped"

    # ca-certificates' postinst would build the bundle; the bundle is all a client reads.
    mkdir -p "$root/etc/ssl/certs"
    cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/usr/share/ca-certificates" "$root/usr/share/doc/ca-certificates/examples" \
        "$root/usr/sbin/update-ca-certificates" "$root/etc/ca-certificates"
    # Documentation (copyright files stay), gconv (iconv charsets: Rust does not use them),
    # apt and dpkg state (there is no package manager), the host's files mmdebstrap copied in.
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,locale,lintian,bash-completion,pixmaps} \
        "$root/usr/lib/x86_64-linux-gnu/gconv" \
        "$root/etc/apt" "$root/var/lib/apt" "$root/var/cache/apt" "$root/var/log"/* \
        "$root"/var/lib/dpkg/{alternatives,info,triggers,updates,arch,available,status,cmethopt,diversions,statoverride}
    find "$root/dev" -mindepth 1 -delete
    : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"; chmod 0644 "$root/etc/resolv.conf" "$root/etc/hostname"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        "nonroot:x:$RUN_AS_USER:$RUN_AS_USER:nonroot:/home/nonroot:/sbin/nologin" >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' "nonroot:x:$RUN_AS_USER:" >"$root/etc/group"
    printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' 'networks: files' \
        'protocols: files' 'services: files' >"$root/etc/nsswitch.conf"
    mkdir -p "$root/home/nonroot" "$root/root" "$root/tmp" "$root/var/tmp"
    chown "$RUN_AS_USER:$RUN_AS_USER" "$root/home/nonroot"
    chmod 0700 "$root/home/nonroot" "$root/root"
    chmod 1777 "$root/tmp" "$root/var/tmp"
}

# rootfs_distroless OUT.tar: the operator's base root filesystem.
DISTROLESS_PACKAGES=libc6,libgcc-s1,gcc-12-base,base-files,netbase,tzdata,ca-certificates
rootfs_distroless() {
    local out="$1" tmp="$WORK/distroless"
    mkdir -p "$tmp/debs"
    mmdebstrap --quiet --mode=root --variant=extract --include="$DISTROLESS_PACKAGES" \
        --extract-hook="cp \"\$1\"/var/cache/apt/archives/*.deb '$tmp/debs/'" \
        "$SUITE" "$tmp/root" "${MIRRORS[@]}"
    finish_distroless "$tmp/root" "$tmp/debs" "$DISTROLESS_PACKAGES"
    tar --numeric-owner --sort=name -C "$tmp/root" -cf "$out" .
    rm -rf "$tmp"
}

# rootfs_slim OUT.tar: the sidecar's base root filesystem (debian:bookworm-slim-like, smaller).
# shellcheck disable=SC2016 # "$1" is the hooks' argument (the tree), expanded by mmdebstrap's sh
SLIM_OPTS=(--variant=apt --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/cache/debconf/*-old'
    --customize-hook=': >"$1/etc/resolv.conf"; : >"$1/etc/hostname"; chmod 0644 "$1/etc/resolv.conf" "$1/etc/hostname"')
rootfs_slim() {
    mmdebstrap --quiet --mode=root "${SLIM_OPTS[@]}" "$SUITE" "$1" "${MIRRORS[@]}"
}

# local_base NAME BUILD-FUNCTION RECIPE: prints the ref of the imported local base, building the
# root filesystem tarball unless the cache has the one of this recipe.
local_base() {
    local name="$1" fn="$2" recipe="$3" key ref tar
    key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
    ref="localhost/hsmbridge/base-$name:$key"
    tar="$BASE_CACHE/base-$name-$key.tar"
    if image_exists "$ref"; then
        log "base $ref: already imported"
    else
        if [ -s "$tar" ]; then
            log "base $name: cached root filesystem $tar"
        else
            command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
            log "base $name: mmdebstrap $SUITE -> $tar"
            mkdir -p "$BASE_CACHE"
            # Tarballs of older recipes of this base are stale.
            find "$BASE_CACHE" -maxdepth 1 -name "base-$name-*.tar" ! -name "base-$name-$key.tar" -delete
            # (.tar: mmdebstrap picks its output format by the name)
            "$fn" "$tar.part.tar" >"$WORK/base-$name.log" 2>&1 \
                || { tail -n 30 "$WORK/base-$name.log" >&2; rm -f "$tar.part.tar"; die "building the $name base failed (log above)"; }
            mv "$tar.part.tar" "$tar"
        fi
        "$B" import --change "ENV PATH=$BASE_PATH" "$tar" "$ref" >"$WORK/import-$name.log" 2>&1 \
            || { cat "$WORK/import-$name.log" >&2; die "$B import $tar failed"; }
        log "base $ref: imported ($(mib "$(image_size "$ref")"))"
    fi
    echo "$ref"
}

# base_for DEFAULT NAME FN RECIPE: DEFAULT when the builder has it or can pull it (unless
# HSMBRIDGE_LOCAL_BASE=1), else the local base.
base_for() {
    local default="$1"; shift
    if [ "${HSMBRIDGE_LOCAL_BASE:-}" != 1 ]; then
        if image_exists "$default"; then log "base $default: present"; echo "$default"; return; fi
        if timeout 300 "$B" pull -q "$default" >"$WORK/pull.log" 2>&1; then log "base $default: pulled"; echo "$default"; return; fi
        [ "${HSMBRIDGE_LOCAL_BASE:-}" != 0 ] || { cat "$WORK/pull.log" >&2; die "cannot pull $default (HSMBRIDGE_LOCAL_BASE=0)"; }
        log "cannot pull $default ($(tail -n1 "$WORK/pull.log" | sed 's/.*: //' | cut -c1-80)): using a local base"
    fi
    local_base "$@"
}

# ---------------------------------------------------------------------------------------------
# Builds

# build REF DOCKERFILE CONTEXT [BUILD-ARG...]: builds with the contract's values for every ARG the
# Dockerfile declares, plus VERSION and the given NAME=VALUE arguments.
build() {
    local ref="$1" dockerfile="$2" context="$3"; shift 3
    local args=(--build-arg "VERSION=$VERSION") a key
    while IFS= read -r key; do
        if grep -q "^$key=" "$REPO/contract/contract.env"; then args+=(--build-arg "$key=${!key}"); fi
    done < <(sed -n 's/^ARG \([A-Z_][A-Z0-9_]*\).*/\1/p' "$dockerfile" | sort -u)
    for a in "$@"; do args+=(--build-arg "$a"); done
    local out="$WORK/build-${ref##*/}.log" old
    old=$("$B" image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
    "$B" build "${BUILD_FLAGS[@]}" -f "$dockerfile" -t "$ref" "${args[@]}" "$context" >"$out" 2>&1 \
        || { tail -n 40 "$out" >&2; die "$B build $ref failed (log above)"; }
    log "$ref: $(image_id "$ref"), $(mib "$(image_size "$ref")")"
    if [ -n "$old" ] && [ "$old" != "$("$B" image inspect --format '{{.Id}}' "$ref")" ]; then REPLACED=("$old" "${REPLACED[@]}"); fi
}

# remove_replaced: the previous builds of the refs, now untagged (newest first: children before
# parents). One still tagged or used elsewhere stays.
REPLACED=()
remove_replaced() {
    local id n=0
    for id in "${REPLACED[@]}"; do
        "$B" rmi "$id" >/dev/null 2>&1 && n=$((n + 1))
    done
    [ "$n" -eq 0 ] || log "removed $n replaced image(s)"
}

# stage NAME FILE...: a build context with stripped copies of target/release/FILE... (the release
# profile keeps line tables: unstripped, the binaries are ~100 MB). Symbols stay for backtraces.
stage() {
    local dir="$WORK/context/$1" f; shift
    mkdir -p "$dir"
    for f in "$@"; do
        strip --strip-debug -o "$dir/$f" "$RELEASE/$f"
        chmod 0755 "$dir/$f"
    done
    echo "$dir"
}

# ---------------------------------------------------------------------------------------------
# Smoke tests

# No network: the smoke tests need none, and podman's default network would leave a bridge and
# firewall chains (CNI-*) behind.
run() { "$B" run --rm --network none "${RUN_FLAGS[@]}" "$@"; }

# probe_run_flags: podman gives containers NOFILE and NPROC limits above this VM's hard limits, and
# without CAP_SYS_RESOURCE runc cannot set them ("error setting rlimit type 7"). The first of
# these that lets the operator image run becomes RUN_FLAGS: `--ulimit host`, or explicit limits.
probe_run_flags() {
    [ "$B" = podman ] || return 0
    local hn hu candidate
    hn=$(ulimit -Hn); hu=$(ulimit -Hu)
    [ "$hn" = unlimited ] && hn=1048576
    [ "$hu" = unlimited ] && hu=4194304
    for candidate in "--ulimit host" "--ulimit nofile=$hn:$hn --ulimit nproc=$hu:$hu" \
        "--ulimit nofile=$hn:$hn --ulimit nproc=32768:32768" "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"; do
        # shellcheck disable=SC2206 # split on purpose
        RUN_FLAGS=($candidate)
        if run "$OPERATOR_REF" --help >/dev/null 2>&1; then log "podman run flags: $candidate"; return 0; fi
    done
    die "podman run fails with every ulimit setting tried (see: podman run --rm $candidate $OPERATOR_REF --help)"
}

smoke() {
    local out user
    probe_run_flags
    out=$(run --read-only --user "$RUN_AS_USER" "$OPERATOR_REF" --help 2>&1) || die "$OPERATOR_REF --help failed: $out"
    grep -q 'Usage: hsm-operator' <<<"$out" || die "$OPERATOR_REF --help: $out"
    run --read-only "$OPERATOR_REF" crd >"$WORK/crd.yaml" 2>&1 || die "$OPERATOR_REF crd failed: $(cat "$WORK/crd.yaml")"
    grep -q 'name: hsmpartitions.hsmbridge.io' "$WORK/crd.yaml" || die "$OPERATOR_REF crd printed no CRD"
    if run --read-only --entrypoint /bin/sh "$OPERATOR_REF" -c true >/dev/null 2>&1; then
        log "note: $OPERATOR_REF has a shell (its base is not distroless)"
    fi
    user=$("$B" image inspect --format '{{.Config.User}}' "$OPERATOR_REF")
    [ "$user" = "$RUN_AS_USER:$RUN_AS_USER" ] || die "$OPERATOR_REF runs as '$user', not $RUN_AS_USER:$RUN_AS_USER"
    log "ok: $OPERATOR_REF --help and crd (read-only root, user $user)"

    out=$(run --read-only --user "$RUN_AS_USER" "$SIDECAR_REF" --help 2>&1) || die "$SIDECAR_REF --help failed: $out"
    grep -q 'Usage: hsm-sidecar' <<<"$out" || die "$SIDECAR_REF --help: $out"
    out=$(run --read-only --entrypoint /bin/sh "$SIDECAR_REF" -c \
        "id -u; stat -c '%a %U' '$IMAGE_SHIM_PATH' '$IMAGE_SIDECAR_BIN'; test ! -e /usr/lib/softhsm" 2>&1) \
        || die "$SIDECAR_REF: shim/binary check failed: $out"
    [ "$out" = "$RUN_AS_USER
755 root
755 root" ] || die "$SIDECAR_REF: expected user $RUN_AS_USER and mode 755 root for the shim and the sidecar, got: $out"
    if grep -q 'install-shim' <<<"$(run "$SIDECAR_REF" --help 2>&1)"; then
        local dest="$WORK/shim-out"
        mkdir -p "$dest" && chmod 0777 "$dest"
        run --read-only -v "$dest:/out" "$SIDECAR_REF" install-shim --to /out >/dev/null 2>&1 \
            || die "$SIDECAR_REF install-shim --to /out failed"
        cmp -s "$dest/$SHIM_FILE" "$WORK/context/sidecar/$SHIM_FILE" || die "install-shim did not write $SHIM_FILE"
        log "ok: $SIDECAR_REF --help, shim at $IMAGE_SHIM_PATH (0755), install-shim --to DIR, user $RUN_AS_USER"
    else
        log "ok: $SIDECAR_REF --help, shim at $IMAGE_SHIM_PATH (0755), user $RUN_AS_USER (no install-shim subcommand in this build yet)"
    fi

    out=$(run --read-only --user "$RUN_AS_USER" --entrypoint softhsm2-util "$SOFTHSM_REF" --version 2>&1) \
        || die "$SOFTHSM_REF softhsm2-util --version failed: $out"
    # A token in a tmpfs, then the sidecar loads the module and serves it (until its socket is there).
    local script="set -e; export SOFTHSM2_CONF=/tmp/softhsm2.conf; mkdir /tmp/tokens
printf 'directories.tokendir = /tmp/tokens\nobjectstore.backend = file\n' >\$SOFTHSM2_CONF
softhsm2-util --init-token --free --label smoke --so-pin 12345678 --pin 87654321 >/dev/null
hsm-sidecar serve --module '$SOFTHSM_MODULE_PATH' --socket /tmp/p11.sock & pid=\$!
for i in \$(seq 50); do [ -S /tmp/p11.sock ] && break; sleep 0.1; done
test -S /tmp/p11.sock; kill \$pid; wait \$pid || true; echo served"
    local served
    served=$(run --read-only --tmpfs /tmp --user "$RUN_AS_USER" --entrypoint /bin/sh "$SOFTHSM_REF" -c "$script" 2>&1) \
        || die "$SOFTHSM_REF: sidecar on SoftHSM failed: $served"
    grep -q '^served$' <<<"$served" || die "$SOFTHSM_REF: sidecar on SoftHSM: $served"
    log "ok: $SOFTHSM_REF softhsm2-util $out; hsm-sidecar serves $SOFTHSM_MODULE_PATH with a fresh token (read-only root, tmpfs /tmp)"

    out=$(run --read-only --entrypoint pkcs11-tool "$APP_REF" --version 2>&1 | first_lines 1) || true
    run --read-only --entrypoint openssl "$APP_REF" version >/dev/null 2>&1 || die "$APP_REF: no openssl"
    log "ok: $APP_REF has pkcs11-tool and openssl"
}

# ---------------------------------------------------------------------------------------------

cmd_build() {
    step "release binaries"
    local f
    for f in hsm-operator hsm-sidecar "$SHIM_FILE"; do
        [ -f "$RELEASE/$f" ] || die "missing target/release/$f: run \`cargo build --release --workspace\` first"
    done
    [ -n "$VERSION" ] || die "no appVersion in charts/hsmbridge/Chart.yaml"
    log "target/release/{hsm-operator,hsm-sidecar,$SHIM_FILE}; version $VERSION"

    step "builder"
    choose_builder
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/hsmbridge-images.XXXXXX")

    step "bases"
    local operator_base sidecar_base
    operator_base=$(base_for gcr.io/distroless/cc-debian12:nonroot distroless rootfs_distroless \
        "distroless/v1 $SUITE $DISTROLESS_PACKAGES ${MIRRORS[*]} $(declare -f rootfs_distroless finish_distroless) $RUN_AS_USER")
    sidecar_base=$(base_for docker.io/library/debian:bookworm-slim slim rootfs_slim \
        "slim/v1 $SUITE ${SLIM_OPTS[*]} ${MIRRORS[*]} $(declare -f rootfs_slim)")

    step "build contexts (stripped copies of the release binaries)"
    local ctx_operator ctx_sidecar
    ctx_operator=$(stage operator hsm-operator)
    ctx_sidecar=$(stage sidecar hsm-sidecar "$SHIM_FILE")
    mkdir -p "$WORK/context/empty"
    log "$(cd "$WORK/context" && find . -type f -printf '%P %s\n' | awk '{ printf "%s%s %.1f MB", sep, $1, $2 / 1e6; sep = ", " }')"

    step "images"
    build "$OPERATOR_REF" "$REPO/images/operator/Dockerfile" "$ctx_operator" "BASE=$operator_base"
    build "$SIDECAR_REF" "$REPO/images/sidecar/Dockerfile" "$ctx_sidecar" "BASE=$sidecar_base"
    build "$SOFTHSM_REF" "$REPO/images/sidecar-softhsm/Dockerfile" "$WORK/context/empty" "SIDECAR_IMAGE=$SIDECAR_REF"
    build "$APP_REF" "$REPO/e2e/app/Dockerfile" "$WORK/context/empty" "BASE=$sidecar_base"
    remove_replaced

    step "smoke tests"
    smoke
}

# cmd_save DIR: one archive per image and DIR/sizes.txt ("REF SIZE-BYTES SIZE-MB").
cmd_save() {
    local dir="$1" ref name size
    mkdir -p "$dir"
    step "save to $dir"
    : >"$dir/sizes.txt.tmp"
    for ref in "$OPERATOR_REF" "$SIDECAR_REF" "$SOFTHSM_REF" "$APP_REF"; do
        name=${ref##*/}; name=${name%%:*}
        rm -f "$dir/$name.tar"
        if [ "$B" = podman ]; then
            podman save -q --format oci-archive -o "$dir/$name.tar" "$ref"
        else
            docker save -o "$dir/$name.tar" "$ref"
        fi
        size=$(image_size "$ref")
        printf '%s %s %s\n' "$ref" "$size" "$(mib "$size")" >>"$dir/sizes.txt.tmp"
        log "$dir/$name.tar: $ref, $(mib "$size") (archive $(mib "$(stat -c %s "$dir/$name.tar")"))"
    done
    mv "$dir/sizes.txt.tmp" "$dir/sizes.txt"
}

refs() { printf '%s\n' "$OPERATOR_REF" "$SIDECAR_REF" "$SOFTHSM_REF" "$APP_REF"; }

summary() {
    step "done"
    local ref
    for ref in $(refs); do echo "$ref $(mib "$(image_size "$ref")")"; done
}

case "${1:-build}" in
    build) cmd_build; summary ;;
    save) [ $# -eq 2 ] || usage; cmd_build; cmd_save "$2"; summary ;;
    refs) refs ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
