#!/usr/bin/env bash
# A real Kubernetes API server for the integration tests: etcd (Debian `etcd-server`) and
# kube-apiserver 1.20.2 built from Debian's `kubernetes` source package, both on loopback, with
# a static token file and RBAC on. There is no controller-manager, scheduler or kubelet: pods
# stay Pending, Jobs create no pods, ServiceAccounts get no token Secrets, namespaces never finish
# terminating and ownerReferences are not garbage-collected. Tests play those parts themselves.
#
#   scripts/kube-testenv.sh install            # once per machine (root or sudo); builds and caches
#                                               # kube-apiserver (~5 min), then a no-op
#   scripts/kube-testenv.sh start DIR          # etcd + kube-apiserver, state under DIR, waits until ready
#   scripts/kube-testenv.sh token DIR NS SA    # prints a bearer token for ServiceAccount NS/SA
#   scripts/kube-testenv.sh kubeconfig DIR NS SA FILE  # writes a kubeconfig for NS/SA (0600)
#   scripts/kube-testenv.sh stop DIR           # stops both and waits for them
#
# How a test uses it:
#   dir=$(mktemp -d); scripts/kube-testenv.sh start "$dir"
#   . "$dir/env"      # KUBECONFIG (admin, group system:masters), KUBECTL (same-version kubectl),
#                     # KUBE_APISERVER_URL, KUBE_CA_FILE, KUBE_ADMIN_TOKEN_FILE, ETCD_PID, KUBE_APISERVER_PID
#   "$KUBECTL" apply -f crds/hsmpartition.yaml
#   "$KUBECTL" create namespace t1 && "$KUBECTL" -n t1 create serviceaccount op   # + Role/RoleBinding
#   scripts/kube-testenv.sh kubeconfig "$dir" t1 op "$dir/op.kubeconfig"   # RBAC applies to it
#   KUBECONFIG="$dir/op.kubeconfig" target/release/hsm-operator run & ... assert on the API ...
#   tok=$(scripts/kube-testenv.sh token "$dir" t1 enroll-sa)   # e.g. playing the kubelet for a Job
#   scripts/kube-testenv.sh stop "$dir"
# Use a fresh namespace per test: deleted namespaces stay Terminating (no namespace controller).
# DIR/kubeconfig carries the server's self-signed CA (DIR/certs/apiserver.crt), so clients verify TLS.
# A Rust test can also read `KUBE_APISERVER_URL` + `KUBE_CA_FILE` from DIR/env and build its own
# kube::Config. Logs: DIR/etcd.log, DIR/kube-apiserver.log.
#
# Admission: the ServiceAccount admission plugin is disabled. Without the controller-manager nothing
# creates the `default` ServiceAccount or its token Secret, and that plugin rejects every pod for lack
# of them. Everything else (NamespaceLifecycle, LimitRanger, ...) is the 1.20 default.
#
# Environment: HSMBRIDGE_CACHE (default ~/.cache/hsmbridge) holds the source tree, the build log and
# bin/kube-apiserver, bin/kubectl. TOKEN_EXPIRATION_SECONDS (default 3600) for `token`.
set -euo pipefail

log() { echo "kube-testenv: $*" >&2; }
die() { log "error: $*"; exit 1; }

# CACHE, as_root, apt_install, source_tree, build_in, kube_install: scripts/lib/kube-build.sh.
# shellcheck source=lib/kube-build.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/kube-build.sh"

APISERVER="$CACHE/bin/kube-apiserver"
KUBECTL_LINK="$CACHE/bin/kubectl"
ISSUER="https://kubernetes.default.svc"

# ---------------------------------------------------------------------------------------------
# install

# install_apiserver: builds and caches kube-apiserver unless a working one of this recipe is cached.
install_apiserver() {
    kube_install kube-apiserver
}

# install_kubectl: $CACHE/bin/kubectl points at a working kubectl, preferably the server's version.
#  1. Debian's kubernetes-client (1.20.2), installed when no other package owns /usr/bin/kubectl;
#  2. else (e.g. Google Cloud SDK's `kubectl` package owns it: dpkg would refuse the file conflict)
#     the same .deb unpacked into the cache, leaving the system's kubectl alone;
#  3. else cmd/kubectl built from the kubernetes source tree.
install_kubectl() {
    mkdir -p "$CACHE/bin"
    if [ -x "$KUBECTL_LINK" ] && "$KUBECTL_LINK" version --client >/dev/null 2>&1; then
        log "kubectl: $KUBECTL_LINK -> $(readlink -f "$KUBECTL_LINK")"
        return 0
    fi
    local k="" owner
    owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
    if [ -n "$owner" ] && [ "$owner" != kubernetes-client ]; then
        log "/usr/bin/kubectl belongs to package '$owner'; unpacking kubernetes-client into the cache"
        if { apt-cache show kubernetes-client >/dev/null 2>&1 || { apt_update; apt-cache show kubernetes-client >/dev/null 2>&1; }; } \
            && (cd "$CACHE" && rm -f kubernetes-client_*.deb && apt-get download -qq kubernetes-client >/dev/null 2>&1); then
            rm -rf "$CACHE/kubernetes-client"
            dpkg-deb -x "$CACHE"/kubernetes-client_*.deb "$CACHE/kubernetes-client"
            rm -f "$CACHE"/kubernetes-client_*.deb
            k="$CACHE/kubernetes-client/usr/bin/kubectl"
        fi
    elif apt-cache show kubernetes-client >/dev/null 2>&1 || { apt_update; apt-cache show kubernetes-client >/dev/null 2>&1; }; then
        apt_install kubernetes-client
        k=/usr/bin/kubectl
    fi
    if [ -z "$k" ] || ! "$k" version --client >/dev/null 2>&1; then
        local tree; tree=$(source_tree)
        build_in "$tree" cmd/kubectl
        cp -L "$tree/_output/bin/kubectl" "$CACHE/bin/kubectl.built"
        k="$CACHE/bin/kubectl.built"
    fi
    ln -sfn "$k" "$KUBECTL_LINK"
    log "kubectl: $KUBECTL_LINK -> $k ($("$k" version --client --short 2>/dev/null || "$k" version --client 2>/dev/null | first_lines 1))"
}

cmd_install() {
    apt_install golang-go rsync etcd-server dpkg-dev openssl curl ca-certificates make
    install_kubectl
    install_apiserver
    log "ready: $APISERVER, $KUBECTL_LINK, $(command -v etcd)"
}

# ---------------------------------------------------------------------------------------------
# start / stop

# random_token: 40 random alphanumerics.
random_token() {
    local out=""
    while [ "${#out}" -lt 40 ]; do out+="$(head -c 256 /dev/urandom | tr -dc 'A-Za-z0-9')"; done
    printf '%s' "${out:0:40}"
}

# spawn LOG PIDFILE CMD...: starts CMD detached (own session, no inherited stdio) and records its PID.
spawn() {
    local logf="$1" pidf="$2"; shift 2
    setsid "$@" </dev/null >"$logf" 2>&1 &
    echo $! >"$pidf"
}

# api_curl DIR CURL-ARGS...: curl as admin; the token goes through a header file, not argv.
api_curl() {
    local dir="$1"; shift
    curl -sS --max-time 5 --cacert "$dir/certs/apiserver.crt" -H @"$dir/admin.header" "$@"
}

# wait_until SECONDS PID NAME CMD...: polls CMD every 0.5 s; fails when PID exits or on timeout.
wait_until() {
    local secs="$1" pid="$2" name="$3" i; shift 3
    for ((i = 0; i < secs * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { log "$name (pid $pid) exited"; return 1; }
        sleep 0.5
    done
    log "timed out after ${secs}s waiting for $name"
    return 1
}

# apiserver_ready DIR PORT: the serving cert exists and /readyz says ok (bootstrap RBAC roles done).
apiserver_ready() {
    [ -s "$1/certs/apiserver.crt" ] && [ "$(api_curl "$1" "https://127.0.0.1:$2/readyz" 2>/dev/null)" = ok ]
}

# write_kubeconfig FILE SERVER CA TOKEN USER NAMESPACE: a 0600 kubeconfig with a bearer token.
write_kubeconfig() {
    ( umask 077; cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $2
    certificate-authority: $3
users:
- name: $5
  user:
    token: $4
contexts:
- name: testenv
  context: {cluster: testenv, user: $5, namespace: $6}
current-context: testenv
EOF
    )
}

cmd_start() {
    local dir="$1"
    [ -x "$APISERVER" ] || die "$APISERVER missing: run '$0 install' first"
    command -v etcd >/dev/null || die "etcd missing: run '$0 install' first"
    local kubectl="$KUBECTL_LINK"; [ -x "$kubectl" ] || kubectl=$(command -v kubectl || echo kubectl)
    mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    if [ -f "$dir/kube-apiserver.pid" ] && kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null; then
        die "already running in $dir (stop it first)"
    fi
    ( umask 077; mkdir -p "$dir/etcd" "$dir/certs" )

    local etcd_port peer_port api_port
    free_port etcd_port; free_port peer_port; free_port api_port

    # etcd on loopback, plain HTTP (only this user's processes can reach 127.0.0.1 anyway).
    log "starting etcd on 127.0.0.1:$etcd_port"
    spawn "$dir/etcd.log" "$dir/etcd.pid" etcd --name testenv --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "testenv=http://127.0.0.1:$peer_port" --initial-cluster-state new
    if ! wait_until 120 "$(cat "$dir/etcd.pid")" etcd curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health"; then
        tail -n 30 "$dir/etcd.log" >&2; cmd_stop "$dir"; die "etcd did not come up"
    fi

    # Secrets: admin token (static token file), service-account signing key pair.
    (
        umask 077
        local tok; tok=$(random_token)
        printf '%s,admin,admin,"system:masters"\n' "$tok" >"$dir/tokens.csv"
        printf 'Authorization: Bearer %s\n' "$tok" >"$dir/admin.header"
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null
        openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
    )

    log "starting kube-apiserver on https://127.0.0.1:$api_port"
    spawn "$dir/kube-apiserver.log" "$dir/kube-apiserver.pid" "$APISERVER" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
        --cert-dir "$dir/certs" \
        --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
        --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
        --service-account-issuer "$ISSUER" --api-audiences "$ISSUER" \
        --service-cluster-ip-range 10.96.0.0/24 --endpoint-reconciler-type none \
        --disable-admission-plugins ServiceAccount
    local apid; apid=$(cat "$dir/kube-apiserver.pid")
    if ! wait_until 180 "$apid" "kube-apiserver /readyz" apiserver_ready "$dir" "$api_port"; then
        log "kube-apiserver log tail:"; tail -n 40 "$dir/kube-apiserver.log" >&2
        cmd_stop "$dir"; die "kube-apiserver did not become ready"
    fi

    # Admin kubeconfig, verifying the self-signed serving cert against the CA it was generated with.
    ( umask 077; cut -d, -f1 "$dir/tokens.csv" | tr -d '\n' >"$dir/admin.token" )
    write_kubeconfig "$dir/kubeconfig" "https://127.0.0.1:$api_port" "$dir/certs/apiserver.crt" \
        "$(cat "$dir/admin.token")" admin default
    cat >"$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
KUBECTL=$kubectl
KUBE_APISERVER_URL=https://127.0.0.1:$api_port
KUBE_CA_FILE=$dir/certs/apiserver.crt
KUBE_ADMIN_TOKEN_FILE=$dir/admin.token
ETCD_URL=http://127.0.0.1:$etcd_port
ETCD_PID=$(cat "$dir/etcd.pid")
KUBE_APISERVER_PID=$apid
export KUBECONFIG KUBECTL KUBE_APISERVER_URL KUBE_CA_FILE KUBE_ADMIN_TOKEN_FILE
EOF
    log "ready: https://127.0.0.1:$api_port (. $dir/env)"
}

# stop_pid PIDFILE NAME: SIGTERM, up to 15 s, then SIGKILL; waits until the process is gone.
stop_pid() {
    local pidf="$1" name="$2" pid i
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    rm -f "$pidf"
}

cmd_stop() {
    local dir="$1"
    stop_pid "$dir/kube-apiserver.pid" kube-apiserver
    stop_pid "$dir/etcd.pid" etcd
}

# ---------------------------------------------------------------------------------------------
# token

# service_account_token DIR NS SA: a token from the TokenRequest API (1.20 has the API, its kubectl
# no `create token`), audience the API server's. The ServiceAccount must exist.
service_account_token() {
    local dir="$1" ns="$2" sa="$3" url resp tok msg
    [ -f "$dir/env" ] || die "$dir/env missing: run '$0 start $dir' first"
    url=$(sed -n 's/^KUBE_APISERVER_URL=//p' "$dir/env")
    resp=$(api_curl "$dir" -X POST -H 'Content-Type: application/json' \
        "$url/api/v1/namespaces/$ns/serviceaccounts/$sa/token" \
        -d "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\",\"spec\":{\"audiences\":[\"$ISSUER\"],\"expirationSeconds\":${TOKEN_EXPIRATION_SECONDS:-3600}}}")
    tok=$(printf '%s' "$resp" | tr -d '\n' | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
    if [ -z "$tok" ]; then
        msg=$(printf '%s' "$resp" | tr -d '\n' | sed -n 's/.*"message": *"\(\([^"\\]\|\\.\)*\)".*/\1/p' | sed 's/\\"/"/g')
        die "TokenRequest for $ns/$sa failed: ${msg:-$resp}"
    fi
    printf '%s\n' "$tok"
}

cmd_token() { service_account_token "$@"; }

# kubeconfig DIR NS SA FILE: a kubeconfig (0600) for ServiceAccount NS/SA, e.g. to run the operator
# under its least-privilege account without putting the token on a command line.
cmd_kubeconfig() {
    local dir="$1" ns="$2" sa="$3" file="$4" tok
    tok=$(service_account_token "$dir" "$ns" "$sa")
    write_kubeconfig "$file" "$(sed -n 's/^KUBE_APISERVER_URL=//p' "$dir/env")" "$(sed -n 's/^KUBE_CA_FILE=//p' "$dir/env")" \
        "$tok" "system:serviceaccount:$ns:$sa" "$ns"
}

# ---------------------------------------------------------------------------------------------

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
    install) [ $# -eq 1 ] || usage; cmd_install ;;
    start) [ $# -eq 2 ] || usage; cmd_start "$2" ;;
    stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
    token) [ $# -eq 4 ] || usage; cmd_token "$2" "$3" "$4" ;;
    kubeconfig) [ $# -eq 5 ] || usage; cmd_kubeconfig "$2" "$3" "$4" "$5" ;;
    *) usage ;;
esac
