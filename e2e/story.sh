#!/usr/bin/env bash
# The user story on a real node (scripts/kube-node.sh: kubelet + containerd), end to end:
#  1. the node starts with the project's images imported (scripts/images.sh);
#  2. `helm install` the chart: the operator runs as its 2-replica Deployment, elects a leader,
#     writes the webhook's caBundle, and the API server reaches the webhook through its Service;
#  3. an HsmPartition for a SoftHSM token whose store reaches the sidecar and the enrollment Job
#     through the volumes the partition declares (a PVC on a hostPath PV, a ConfigMap with
#     softhsm2.conf); the enrollment Job runs as a real pod and spends the setup password;
#  4. a labelled Deployment's app container (pkcs11-tool, no PIN, no vendor file) signs through the
#     shim; the signature is read from `kubectl logs` and verified here with openssl;
#  5. the sidecar container is killed: the kubelet restarts it, the app container does not restart,
#     and its next signature verifies;
#  6. readiness follows the backend: the token's directory is moved away (SoftHSM then answers
#     C_GetTokenInfo with CKR_GENERAL_ERROR) and the pod goes NotReady; moved back, Ready again;
#  7. observability and rotation (observe.sh): the sidecar's /metrics scraped from another pod and
#     checked against the chart's dashboard and rules; the audit line of the app's signature; a
#     credential rotation (new PIN on the token, then in the Secret) and a provider configuration
#     change, each picked up without a pod restart;
#  8. a pod for a partition that is not Ready and one whose ServiceAccount is not allowed are denied
#     with the webhook's message; an unlabelled pod is left alone;
#  9. `helm uninstall` leaves the CRD and nothing else of the release; a second release in another
#     namespace installs and serves.
# Prints each step and the verified signature; the node is stopped at the end, pass or fail.
#
#   bash e2e/story.sh            # `make demo-cluster` (builds what is missing first) and `make test`
# Needs root (the node). HSMBRIDGE_E2E_KEEP=1 keeps the work directory (logs, the stored pod YAML).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../scripts/common.sh
. "$REPO/scripts/common.sh"
# shellcheck source=../contract/contract.env
. "$REPO/contract/contract.env"
# shellcheck source=lib.sh
. "$REPO/e2e/lib.sh"
# shellcheck source=../scripts/lib/chart.sh
. "$REPO/scripts/lib/chart.sh"

VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$REPO/charts/hsmbridge/Chart.yaml")
SIDECAR_IMAGE="$IMAGE_REGISTRY/$IMAGE_SIDECAR_SOFTHSM:$VERSION"
APP_IMAGE="localhost/hsmbridge/e2e-app:$VERSION"
SYSTEM_NS=hsmbridge-system
NS=shop
TOKEN_LABEL=shop

WORK=$(mktemp -d -t hsmbridge-e2e.XXXXXX)
chmod 755 "$WORK"
NODE="$WORK/node"

finish() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "$NODE/env" ]; then
        dump_diagnostics "$NS" "$SYSTEM_NS" || true
    fi
    "$REPO/scripts/kube-node.sh" stop "$NODE" >/dev/null 2>&1 || true
    if [ "$rc" -ne 0 ]; then
        echo "node logs: $NODE/*.log" >&2
    elif [ -z "${HSMBRIDGE_E2E_KEEP:-}" ]; then
        rm -rf "$WORK" || true
    fi
    [ "$rc" -eq 0 ] && printf '\n\033[1;32mend-to-end story OK\033[0m (%ds)\n' "$(($(date +%s) - E2E_T0))"
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
step "Build what is missing: packages, the node's binaries, the workspace, the images"
"$REPO/scripts/install-deps.sh"
"$REPO/scripts/kube-node.sh" install 2>&1 | tail -n 1
build_release >/dev/null 2>&1 || build_release   # a no-op when up to date (make test built it)
# No registry is tried: the bases are built here (scripts/images.sh), so nothing leaves the machine.
HSMBRIDGE_LOCAL_BASE=1 "$REPO/scripts/images.sh" save "$WORK/images" 2>&1 | grep -E "^images: (==|FAIL)|ok:" >&2
sed 's/^/   /' "$WORK/images/sizes.txt"

step "Start the node (kubelet, containerd, kube-proxy, scheduler, controller-manager, API server)"
"$REPO/scripts/kube-node.sh" start "$NODE" "$WORK"/images/*.tar
# shellcheck disable=SC1091
. "$NODE/env"
show k get nodes -o wide

# ---------------------------------------------------------------------------------------------
step "helm install the chart (operator: 2 replicas, leader election, webhook behind its Service)"
chart_install hsmbridge "$SYSTEM_NS" --wait --timeout 180s >/dev/null
eventually 120 "the operator Deployment has 2 ready replicas" 'test "$(jp "$SYSTEM_NS" deployment/hsm-operator "{.status.readyReplicas}")" = 2'
# The chart's Lease (templates/lease.yaml), found by the release's label.
LEASE=$(k -n "$SYSTEM_NS" get lease -l app.kubernetes.io/instance=hsmbridge -o name)
[ -n "$LEASE" ] || fail "the chart made no Lease"
eventually 60 "a replica holds the leader Lease" 'test -n "$(jp "$SYSTEM_NS" "$LEASE" "{.spec.holderIdentity}")"'
eventually 60 "the operator wrote the webhook's caBundle" 'test -n "$(jp "" mutatingwebhookconfiguration/hsmbridge-injector "{.webhooks[0].clientConfig.caBundle}")"'
show k -n "$SYSTEM_NS" get pods -o wide
say "leader ($LEASE): $(jp "$SYSTEM_NS" "$LEASE" '{.spec.holderIdentity}')"

# ---------------------------------------------------------------------------------------------
step "A SoftHSM token (the stand-in for an HSM partition) and its setup password"
TOKENS="$WORK/softhsm-tokens"
mkdir -p "$TOKENS"
(
    umask 077
    p="$(random_secret 25)"
    printf '%s-%s-%s-%s-%s' "${p:0:5}" "${p:5:5}" "${p:10:5}" "${p:15:5}" "${p:20:5}" >"$WORK/setup-password"
)
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
    "$TOKENS" >"$WORK/softhsm2-host.conf"
SOFTHSM2_CONF="$WORK/softhsm2-host.conf" softhsm2-util --init-token --free --label "$TOKEN_LABEL" \
    --so-pin "$(cat "$WORK/setup-password")" --pin "$(random_secret 32)" >/dev/null
# The sidecar and the Job run as RUN_AS_USER; a hostPath volume gets no fsGroup.
chown -R "$RUN_AS_USER:$RUN_AS_USER" "$TOKENS"
say "token '$TOKEN_LABEL' in $TOKENS, SO PIN = the setup password"

k create namespace "$NS" >/dev/null
k -n "$NS" create serviceaccount signer >/dev/null
k -n "$NS" create serviceaccount intruder >/dev/null
k -n "$NS" create secret generic shop-setup --from-file=password="$WORK/setup-password" >/dev/null
k -n "$NS" create configmap softhsm-config \
    --from-literal=softhsm2.conf="$(printf 'directories.tokendir = /var/lib/softhsm/tokens\nobjectstore.backend = file\nlog.level = INFO\nslots.removable = false\n')" >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: shop-softhsm-tokens}
spec:
  capacity: {storage: 64Mi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: "$TOKENS", type: Directory}
  claimRef: {namespace: $NS, name: softhsm-tokens}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: softhsm-tokens, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: shop-softhsm-tokens
  resources: {requests: {storage: 64Mi}}
EOF

step "kubectl apply the HsmPartition; the enrollment Job spends the setup password"
partition_yaml() { # NAME SETUP-SECRET
    cat <<EOF
apiVersion: hsmbridge.io/v1alpha1
kind: HsmPartition
metadata: {name: $1, namespace: $NS}
spec:
  provider: pkcs11
  sidecar:
    image: $SIDECAR_IMAGE
    modulePath: $SOFTHSM_MODULE_PATH
    env:
      - {name: SOFTHSM2_CONF, value: /etc/softhsm/softhsm2.conf}
    volumes:
      - {name: softhsm-config, mountPath: /etc/softhsm, configMap: {name: softhsm-config}}
      - {name: tokens, mountPath: /var/lib/softhsm/tokens, readOnly: false, persistentVolumeClaim: {claimName: softhsm-tokens}}
  token: {label: $TOKEN_LABEL}
  enrollment:
    method: pkcs11-init-pin
    setupPasswordSecretRef: {name: $2, key: password}
  serviceAccounts: [signer]
EOF
}
partition_yaml "$NS" shop-setup | tee "$WORK/partition.yaml" | sed 's/^/   /'
k apply -f "$WORK/partition.yaml" >/dev/null
eventually 240 "HsmPartition $NS is Ready" is_true "$NS" "hsmpartition/$NS" Ready
show k -n "$NS" get hsmpartitions
JOB=$(jp "$NS" "hsmpartition/$NS" '{.status.enrollment.job}')
eventually 60 "enrollment Job $JOB reports success" 'test "$(jp "$NS" "job/$JOB" "{.status.succeeded}")" = 1'
say "enrollment Job $JOB: succeeded=$(jp "$NS" "job/$JOB" '{.status.succeeded}'), pod ran as uid" \
    "$(k -n "$NS" get pods -l "job-name=$JOB" -o 'jsonpath={.items[0].spec.securityContext.runAsUser}')"
if out=$(SOFTHSM2_CONF="$WORK/softhsm2-host.conf" pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$TOKEN_LABEL" \
    --session-rw --login --login-type so --so-pin "$(cat "$WORK/setup-password")" --list-objects 2>&1); then
    fail "the setup password still opens the token after enrollment"
fi
echo "$out" | matches -E 'CKR_PIN_INCORRECT|CKR_PIN_LOCKED' || fail "unexpected answer to the spent setup password: $out"
say "the setup password is spent: an SO login with it gets $(echo "$out" | grep -oE 'CKR_PIN_[A-Z]+' | first_lines 1)"

# ---------------------------------------------------------------------------------------------
# shellcheck source=signer.sh
. "$REPO/e2e/signer.sh"
# shellcheck source=recovery.sh
. "$REPO/e2e/recovery.sh"
# shellcheck source=observe.sh
. "$REPO/e2e/observe.sh"
# shellcheck source=admission.sh
. "$REPO/e2e/admission.sh"
# shellcheck source=reinstall.sh
. "$REPO/e2e/reinstall.sh"

step "Summary"
say "image sizes: $(tr '\n' ';' <"$WORK/images/sizes.txt")"
say "kubectl apply of the labelled Deployment -> verified signature: ${FIRST_SIGNATURE_SECONDS}s"
say "RSS on the node: hsm-sidecar ${SIDECAR_RSS} MiB, hsm-operator ${OPERATOR_RSS} MiB (each replica)"
say "sidecar kill: hsm-sidecar restarts ${SIDECAR_RESTARTS}, app restarts ${APP_RESTARTS}"
say "credential rotation: Secret update -> first login with the new PIN ${ROTATION_SECONDS}s; provider config change -> module re-initialized ${CONFIG_RELOAD_SECONDS}s (no restarts)"
say "the stored pod as the kubelet ran it: ${POD_YAML}"
