#!/usr/bin/env bash
# A one-node Kubernetes 1.20.2 cluster on this machine, for the end-to-end tests and
# `make demo-cluster`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy built from Debian's `kubernetes` source package (scripts/lib/kube-build.sh, cached
# like scripts/kube-testenv.sh's API server), containerd 1.6 + runc from Debian, Debian's CNI
# plugins on a bridge this script makes, and a pause image built here from the same source.
#
#   scripts/kube-node.sh install              # once per machine: packages (root or sudo), builds, pause image
#   scripts/kube-node.sh start DIR [ARCHIVE...]   # the whole node, state under DIR; imports the
#                                             # OCI/docker archives into containerd; waits until
#                                             # the node is Ready and `default` has its token
#   scripts/kube-node.sh import DIR ARCHIVE...    # more images into the running node
#   scripts/kube-node.sh stop DIR             # stops every process start began, undoes every
#                                             # change to the host; DIR keeps only the *.log files
#
# After start, `. DIR/env` gives KUBECONFIG (admin), KUBECTL, CTR (ctr on the node's containerd),
# NODE_NAME, NODE_IP, NODE_STATE (DIR).
#
# Needs root: containerd, runc, the bridge and kube-proxy's iptables rules. Nothing leaves the
# machine: every component listens on 127.0.0.1 or on the bridge's address NODE_IP (10.244.0.1),
# pods get routes to the pod and service ranges only (no default route, no masquerading), their
# resolv.conf names no server, and no image is ever pulled (every image is imported; pods need
# imagePullPolicy IfNotPresent or Never). The kubelet runs with AWS_EC2_METADATA_DISABLED=true:
# its built-in AWS credential provider would otherwise ask the cloud metadata address.
#
# What the host lends the node, and how stop gives it back:
#   - the bridge cni0 (10.244.0.1/24): deleted;
#   - iptables/ip6tables chains KUBE-* (kubelet, kube-proxy): rules and chains removed (start
#     refuses to run when such chains exist already: another node is running); the CNI bridge
#     makes none (no ipMasq, no portmap or firewall plugin);
#   - sysctls the kubelet (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
#     kernel.keys.root_maxkeys, kernel.keys.root_maxbytes), kube-proxy
#     (net.ipv4.conf.all.route_localnet) and the CNI bridge (net.ipv4.ip_forward) set: restored to
#     the values saved at start;
#   - paths outside DIR that the kubelet, containerd or CNI write to whatever they are told
#     (/var/log/pods, /var/log/containers, /var/lib/cni, /run/containerd, /run/netns): whatever
#     start did not find there is removed (the directories too, if they were absent); network
#     namespaces and mounts made under DIR: removed.
#
# Quirks of this VM (a Firecracker guest, cgroup v1) and what works around them, as kind and k3s do:
#   - root lacks CAP_SYS_RESOURCE: containerd's restrict_oom_score_adj = true, else runc fails with
#     "can't get final child's PID from pipe: EOF";
#   - no systemd: cgroupfs cgroup driver, kubelet --cgroups-per-qos=false --enforce-node-allocatable=;
#   - swap may be on: --fail-swap-on=false.
set -euo pipefail

log() { echo "kube-node: $*" >&2; }
die() { log "error: $*"; exit 1; }

# CACHE, as_root, apt_install, kube_install: scripts/lib/kube-build.sh.
# shellcheck source=lib/kube-build.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/kube-build.sh"
# stop_process: scripts/common.sh.
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

NODE_NAME=hsmbridge-node
BRIDGE=cni0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
API_PORT=6443
KUBELET_PORT=10250
PAUSE_REF=localhost/hsmbridge/pause:3.4
PAUSE_ARCHIVE="$CACHE/node/pause-3.4.tar"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 etcd-server openssl curl gcc libc6-dev)
# Host paths the components create outside DIR whatever their flags say.
HOST_PATHS=(/var/log/pods /var/log/containers /var/lib/cni /run/containerd /run/netns)
# Sysctls the components change.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
    kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet net.ipv4.ip_forward)
# The content of DIR/run/node, written by start: stop touches only a DIR that has it.
MARK="hsmbridge kube-node state directory"

# ---------------------------------------------------------------------------------------------
# install

# build_pause: Kubernetes' pause (build/pause/linux/pause.c, static) as a one-layer OCI image
# archive, made by hand (no image builder needed) and cached.
build_pause() {
    [ -s "$PAUSE_ARCHIVE" ] && { log "cached: $PAUSE_ARCHIVE ($PAUSE_REF)"; return 0; }
    local tree work layer config manifest lsha csha msha
    tree=$(source_tree)
    work=$(mktemp -d)
    mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
    gcc -Os -Wall -Werror -static -DVERSION=v3.4-hsmbridge -o "$work/rootfs/pause" "$tree/build/pause/linux/pause.c"
    strip "$work/rootfs/pause"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
    lsha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
    mv "$work/layer.tar" "$work/oci/blobs/sha256/$lsha"
    config=$(printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$lsha")
    csha=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    printf '%s' "$config" >"$work/oci/blobs/sha256/$csha"
    manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
        "$csha" "${#config}" "$lsha" "$(stat -c %s "$work/oci/blobs/sha256/$lsha")")
    msha=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
    printf '%s' "$manifest" >"$work/oci/blobs/sha256/$msha"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"3.4"}}]}' \
        "$msha" "${#manifest}" "$PAUSE_REF" >"$work/oci/index.json"
    mkdir -p "$(dirname "$PAUSE_ARCHIVE")"
    tar --numeric-owner --owner=0 --group=0 -C "$work/oci" -cf "$PAUSE_ARCHIVE.tmp" oci-layout index.json blobs
    mv "$PAUSE_ARCHIVE.tmp" "$PAUSE_ARCHIVE"
    rm -rf "$work"
    log "built $PAUSE_ARCHIVE ($PAUSE_REF)"
}

cmd_install() {
    apt_install golang-go rsync dpkg-dev make "${PACKAGES[@]}"
    "$SCRIPTS/kube-testenv.sh" install
    kube_install "${BINARIES[@]}"
    build_pause
    log "ready: ${BINARIES[*]} in $CACHE/bin, $(containerd --version | cut -d' ' -f3), runc $(runc --version | sed -n '1s/.* //p')"
}

# ---------------------------------------------------------------------------------------------
# start

# spawn NAME CMD...: CMD detached (own session), log DIR/NAME.log, pid DIR/run/NAME.pid.
spawn() {
    local name="$1"; shift
    setsid "$@" </dev/null >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/run/$name.pid"
}

# wait_for SECONDS NAME CMD...: polls CMD every 0.5 s until it succeeds; fails on timeout or when
# the process NAME (DIR/run/NAME.pid) exits.
wait_for() {
    local secs="$1" name="$2" i pid; shift 2
    pid=$(cat "$DIR/run/$name.pid")
    for ((i = 0; i < secs * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$DIR/$name.log" >&2
            die "$name exited (log: $DIR/$name.log)"
        fi
        sleep 0.5
    done
    tail -n 30 "$DIR/$name.log" >&2
    die "timed out after ${secs}s waiting for $name (log: $DIR/$name.log)"
}


random_token() { random_secret 32; }

# cert NAME CN [O] [SAN]: NAME.key + NAME.crt signed by the node's CA (ca.key), in DIR/pki.
cert() {
    local name="$1" cn="$2" o="${3:-}" san="${4:-}" subj="/CN=$2" ext
    [ -n "$o" ] && subj="/O=$o/CN=$cn"
    ext="$DIR/pki/$name.ext"
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"; else echo "extendedKeyUsage=clientAuth"; fi
    } >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$DIR/pki/$name.key" \
        -subj "$subj" -out "$DIR/pki/$name.csr" 2>/dev/null
    openssl x509 -req -in "$DIR/pki/$name.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" -CAcreateserial \
        -days 2 -extfile "$ext" -out "$DIR/pki/$name.crt" 2>/dev/null
    rm -f "$DIR/pki/$name.csr" "$ext"
}

# kubeconfig NAME USER TOKEN: DIR/NAME.kubeconfig (0600) for the API server on the bridge.
kubeconfig() {
    ( umask 077; cat >"$DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$DIR/pki/ca.crt"}
users:
- name: "$2"
  user: {token: "$3"}
contexts:
- name: node
  context: {cluster: node, user: "$2", namespace: default}
current-context: node
EOF
    )
}

make_pki() {
    ( umask 077; mkdir -p "$DIR/pki" )
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=hsmbridge-node-ca" \
        -keyout "$DIR/pki/ca.key" -out "$DIR/pki/ca.crt" 2>/dev/null
    cert apiserver kube-apiserver "" \
        "IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    cert kubelet "$NODE_NAME" "" "IP:$NODE_IP,DNS:$NODE_NAME"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$DIR/pki/sa.key" 2>/dev/null
    openssl pkey -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub" 2>/dev/null
    # One static token per component; RBAC's bootstrap bindings know these user names.
    local admin node cm sched proxy
    admin=$(random_token); node=$(random_token); cm=$(random_token); sched=$(random_token); proxy=$(random_token)
    ( umask 077; {
        printf '%s,admin,admin,"system:masters"\n' "$admin"
        printf '%s,system:node:%s,node,"system:nodes"\n' "$node" "$NODE_NAME"
        printf '%s,system:kube-controller-manager,kube-controller-manager\n' "$cm"
        printf '%s,system:kube-scheduler,kube-scheduler\n' "$sched"
        printf '%s,system:kube-proxy,kube-proxy\n' "$proxy"
    } >"$DIR/pki/tokens.csv" )
    kubeconfig admin admin "$admin"
    kubeconfig kubelet "system:node:$NODE_NAME" "$node"
    kubeconfig controller-manager system:kube-controller-manager "$cm"
    kubeconfig scheduler system:kube-scheduler "$sched"
    kubeconfig proxy system:kube-proxy "$proxy"
}

# Every path under HOST_PATHS (the paths too), one per line.
host_files() { find "${HOST_PATHS[@]}" 2>/dev/null || true; }

# Host state to give back at stop: sysctls, what HOST_PATHS held, which netns existed.
save_host_state() {
    local s p
    : >"$DIR/run/sysctl.saved"
    for s in "${SYSCTLS[@]}"; do
        sysctl -n "$s" >/dev/null 2>&1 && printf '%s=%s\n' "$s" "$(sysctl -n "$s")" >>"$DIR/run/sysctl.saved"
    done
    host_files | sort >"$DIR/run/host-files.before"
    ip netns list 2>/dev/null | cut -d' ' -f1 | sort >"$DIR/run/netns.before"
}

make_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 && die "$BRIDGE exists already: another node (or CNI) uses it; stop it first"
    [ -n "$(ip route show "$POD_CIDR")" ] && die "$POD_CIDR is already routed on this machine"
    ip link add "$BRIDGE" type bridge
    echo "$BRIDGE" >"$DIR/run/bridge"
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

write_configs() {
    mkdir -p "$DIR/containerd" "$DIR/cni/net.d" "$DIR/kubelet" "$DIR/ipam"
    cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$DIR/containerd/containerd.sock"
[ttrpc]
  address = "$DIR/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$DIR/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
    cat >"$DIR/cni/net.d/10-hsmbridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "hsmbridge",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {
      "type": "host-local", "dataDir": "$DIR/ipam",
      "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.250", "gateway": "$NODE_IP"}]],
      "routes": [{"dst": "$SERVICE_CIDR"}]
    }
  }]
}
EOF
    # No name server: pods use IP addresses only (no lookup can leave the machine).
    echo "options ndots:0" >"$DIR/kubelet/resolv.conf"
    local healthz_port; free_port healthz_port
    cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
tlsCertFile: $DIR/pki/kubelet.crt
tlsPrivateKeyFile: $DIR/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: $DIR/kubelet/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%"}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
EOF
}

start_apiserver() {
    local etcd_port peer_port
    free_port etcd_port; free_port peer_port
    log "etcd on 127.0.0.1:$etcd_port"
    ( umask 077; mkdir -p "$DIR/etcd" )
    spawn etcd etcd --name node --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "node=http://127.0.0.1:$peer_port" --initial-cluster-state new
    wait_for 30 etcd curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health"
    log "kube-apiserver on https://$NODE_IP:$API_PORT"
    spawn kube-apiserver "$CACHE/bin/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" --insecure-port 0 \
        --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
        --client-ca-file "$DIR/pki/ca.crt" --token-auth-file "$DIR/pki/tokens.csv" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --kubelet-client-certificate "$DIR/pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$DIR/pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types InternalIP \
        --service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
        --service-cluster-ip-range "$SERVICE_CIDR"
    wait_for 90 kube-apiserver kubectl_admin get --raw /readyz
}

kubectl_admin() { "$CACHE/bin/kubectl" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }
ctr_node() { ctr --address "$DIR/containerd/containerd.sock" -n k8s.io "$@"; }

start_containerd() {
    log "containerd $(containerd --version | cut -d' ' -f3) (socket $DIR/containerd/containerd.sock)"
    spawn containerd containerd --config "$DIR/containerd/config.toml"
    wait_for 30 containerd ctr_node version
    import_archives "$PAUSE_ARCHIVE"
}

import_archives() {
    local a
    for a in "$@"; do
        [ -f "$a" ] || die "no image archive $a"
        log "importing $(basename "$a") into containerd"
        ctr_node images import --all-platforms "$a" >"$DIR/run/import.out" 2>&1 \
            || { cat "$DIR/run/import.out" >&2; die "ctr images import $a failed"; }
    done
}

node_ready() {
    [ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

start_node() {
    log "kubelet ($NODE_NAME, $NODE_IP)"
    spawn kubelet env AWS_EC2_METADATA_DISABLED=true "$CACHE/bin/kubelet" \
        --config "$DIR/kubelet/config.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
        --container-runtime remote --container-runtime-endpoint "unix://$DIR/containerd/containerd.sock" \
        --image-service-endpoint "unix://$DIR/containerd/containerd.sock" \
        --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
        --root-dir "$DIR/kubelet/root" --cert-dir "$DIR/kubelet/pki" \
        --volume-plugin-dir "$DIR/kubelet/volume-plugins" --v 1
    log "kube-controller-manager, kube-scheduler, kube-proxy"
    spawn kube-controller-manager "$CACHE/bin/kube-controller-manager" \
        --kubeconfig "$DIR/controller-manager.kubeconfig" --leader-elect=false \
        --bind-address 127.0.0.1 --port 0 --secure-port 0 \
        --service-account-private-key-file "$DIR/pki/sa.key" --root-ca-file "$DIR/pki/ca.crt" \
        --use-service-account-credentials --service-cluster-ip-range "$SERVICE_CIDR" \
        --cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false --controllers '*,-nodeipam'
    spawn kube-scheduler "$CACHE/bin/kube-scheduler" \
        --kubeconfig "$DIR/scheduler.kubeconfig" --leader-elect=false \
        --bind-address 127.0.0.1 --port 0 --secure-port 0
    local proxy_healthz proxy_metrics; free_port proxy_healthz; free_port proxy_metrics
    spawn kube-proxy "$CACHE/bin/kube-proxy" \
        --kubeconfig "$DIR/proxy.kubeconfig" --hostname-override "$NODE_NAME" \
        --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
        --healthz-bind-address "127.0.0.1:$proxy_healthz" --metrics-bind-address "127.0.0.1:$proxy_metrics" \
        --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0
    wait_for 120 kubelet node_ready
    # The token controller has run once `default` has its token Secret: pods can be admitted.
    wait_for 60 kube-controller-manager default_has_token
}

default_has_token() {
    [ -n "$("$CACHE/bin/kubectl" --kubeconfig "$DIR/admin.kubeconfig" -n default get serviceaccount default \
        -o jsonpath='{.secrets[0].name}')" ]
}

kube_chains_present() {
    local cmd t
    for cmd in iptables ip6tables; do
        for t in filter nat mangle; do
            "$cmd" -t "$t" -S 2>/dev/null | matches -E '^-N KUBE-' && return 0
        done
    done
    return 1
}

cmd_start() {
    DIR="$1"; shift
    [ "$(id -u)" -eq 0 ] || die "start needs root (containerd, runc, the bridge, iptables)"
    local b
    for b in "${BINARIES[@]}"; do kube_cached "$b" || die "$CACHE/bin/$b missing: run '$0 install' first"; done
    [ -s "$PAUSE_ARCHIVE" ] || die "$PAUSE_ARCHIVE missing: run '$0 install' first"
    mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
    [ -d "$DIR/run" ] && die "$DIR/run exists: a node runs (or ran and was not stopped) there; '$0 stop $DIR' first"
    # stop empties DIR (but the logs): it must hold nothing else.
    [ -z "$(find "$DIR" -mindepth 1 -maxdepth 1 ! -name '*.log' -print -quit)" ] \
        || die "$DIR holds files: give an empty (or new) directory, which stop empties again"
    kube_chains_present && die "iptables has KUBE-* chains already: another node runs on this machine"
    mkdir -p "$DIR/run"
    # What stop looks for before it removes anything under DIR.
    echo "$MARK" >"$DIR/run/node"
    # From here on, a failure stops what was started.
    # A failure from here on (a failed command or a die, in any function) stops what was started.
    STARTED=0
    trap '[ "$STARTED" = 1 ] || { log "start failed; stopping what it started"; cmd_stop "$DIR"; }' EXIT
    save_host_state
    make_bridge
    make_pki
    write_configs
    start_apiserver
    start_containerd
    [ $# -gt 0 ] && import_archives "$@"
    start_node
    STARTED=1
    trap - EXIT
    cat >"$DIR/env" <<EOF
KUBECONFIG=$DIR/admin.kubeconfig
KUBECTL=$CACHE/bin/kubectl
CTR="ctr --address $DIR/containerd/containerd.sock -n k8s.io"
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NODE_STATE=$DIR
export KUBECONFIG KUBECTL CTR NODE_NAME NODE_IP NODE_STATE
EOF
    log "ready: node $NODE_NAME, API server https://$NODE_IP:$API_PORT (. $DIR/env)"
}

cmd_import() {
    DIR=$(cd "$1" && pwd); shift
    [ -f "$DIR/env" ] || die "no node runs in $DIR"
    import_archives "$@"
}

# ---------------------------------------------------------------------------------------------
# stop

# stop_one NAME: stops the process start recorded in DIR/run/NAME.pid (stop_process, common.sh).
stop_one() {
    local pidf="$DIR/run/$1.pid"
    [ -f "$pidf" ] || return 0
    stop_process "$(cat "$pidf")"
    rm -f "$pidf"
}

# Every container process, then the containerd shims of this node (their command line names the
# node's containerd socket).
stop_containers() {
    local pid
    if [ -S "$DIR/containerd/containerd.sock" ]; then
        ctr_node tasks ls -q 2>/dev/null | while read -r id; do
            ctr_node tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        done
        sleep 1
        ctr_node tasks ls -q 2>/dev/null | while read -r id; do ctr_node tasks delete -f "$id" >/dev/null 2>&1 || true; done
    fi
    stop_one containerd
    for pid in $(pgrep -f "containerd-shim.*-address $DIR/containerd/containerd.sock" || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

remove_mounts_and_netns() {
    local m ns
    # Deepest first: secret tmpfs, token tmpfs, overlay rootfs, netns bind mounts.
    findmnt -rn -o TARGET | awk -v d="$DIR/" 'index($0, d) == 1' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if [ -f "$DIR/run/netns.before" ]; then
        ip netns list 2>/dev/null | cut -d' ' -f1 | sort | comm -13 "$DIR/run/netns.before" - | while read -r ns; do
            [ -n "$ns" ] && ip netns delete "$ns" 2>/dev/null || true
        done
    fi
}

remove_chains() {
    local cmd t rule chain chains
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null || continue
        for t in filter nat mangle; do
            "$cmd" -t "$t" -S >/dev/null 2>&1 || continue
            # Jumps from the built-in chains into ours.
            "$cmd" -t "$t" -S | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A /-D /' \
                | while read -r rule; do eval "$cmd -t $t $rule" 2>/dev/null || true; done
            chains=$("$cmd" -t "$t" -S | awk '/^-N KUBE-/ {print $2}')
            for chain in $chains; do "$cmd" -t "$t" -F "$chain" 2>/dev/null || true; done
            for chain in $chains; do "$cmd" -t "$t" -X "$chain" 2>/dev/null || true; done
        done
    done
}

restore_host() {
    local line p
    if [ -f "$DIR/run/sysctl.saved" ]; then
        while read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || log "could not restore $line"; done <"$DIR/run/sysctl.saved"
    fi
    if [ -f "$DIR/run/bridge" ]; then
        ip link delete "$(cat "$DIR/run/bridge")" 2>/dev/null || true
    fi
    # What the node added under HOST_PATHS (the paths themselves when they were absent), deepest first.
    if [ -f "$DIR/run/host-files.before" ]; then
        host_files | sort | comm -13 "$DIR/run/host-files.before" - | sort -r | while read -r p; do
            [ -n "$p" ] || continue
            # /run/netns is a mount point once a namespace was made there (iproute2, CNI).
            mountpoint -q "$p" && umount -l "$p"
            rm -rf "$p"
        done
    fi
}

cmd_stop() {
    DIR=$(cd "$1" 2>/dev/null && pwd) || return 0
    # Only a directory start made: stop removes everything in it but the logs.
    [ "$(cat "$DIR/run/node" 2>/dev/null)" = "$MARK" ] || { log "no node was started in $DIR"; return 0; }
    trap - EXIT
    set +e
    log "stopping the node in $DIR"
    stop_one kubelet
    stop_one kube-proxy
    stop_one kube-scheduler
    stop_one kube-controller-manager
    stop_containers
    stop_one kube-apiserver
    stop_one etcd
    remove_mounts_and_netns
    remove_chains
    restore_host
    # Everything but the logs.
    find "$DIR" -mindepth 1 -maxdepth 1 ! -name '*.log' -exec rm -rf {} + 2>/dev/null
    set -e
    log "stopped; $DIR keeps only the logs"
}

# ---------------------------------------------------------------------------------------------

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
    install) [ $# -eq 1 ] || usage; cmd_install ;;
    start) [ $# -ge 2 ] || usage; shift; cmd_start "$@" ;;
    import) [ $# -ge 3 ] || usage; shift; cmd_import "$@" ;;
    stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
    *) usage ;;
esac
