#!/usr/bin/env bash
# Part of e2e/story.sh (sourced): what the webhook refuses, and what it leaves alone.

# pod_yaml NAME SERVICEACCOUNT PARTITION|"" : a pod, labelled for injection when PARTITION is set.
pod_yaml() {
    local labels="{}" annotations="{}"
    if [ -n "$3" ]; then
        labels='{hsmbridge.io/inject: "true"}'
        annotations="{hsmbridge.io/partition: $3}"
    fi
    cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS, labels: $labels, annotations: $annotations}
spec:
  serviceAccountName: $2
  containers:
    - {name: app, image: "$APP_IMAGE", imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
EOF
}

# denied NAME SA PARTITION EXPECTED: creating the pod fails and the message contains EXPECTED.
denied() {
    local out
    if out=$(pod_yaml "$1" "$2" "$3" | k create -f - 2>&1); then
        fail "pod $1 was admitted; expected a denial containing: $4"
    fi
    printf '%s' "$out" | matches -F "$4" || fail "pod $1: denied, but not with '$4': $out"
    say "denied: ${out#Error from server: }"
}

step "Admission: a partition that is not Ready, a ServiceAccount not allowed, an unlabelled pod"
partition_yaml unready no-such-secret | k apply -f - >/dev/null
eventually 60 "HsmPartition unready reports Ready=False" is_false "$NS" hsmpartition/unready Ready
denied not-ready signer unready "HsmPartition $NS/unready is not Ready"
denied intruder intruder "$NS" "ServiceAccount \"intruder\" may not use HsmPartition $NS/$NS"
pod_yaml plain signer "" | k create -f - >/dev/null
eventually 60 "the unlabelled pod runs" 'test "$(jp "$NS" pod/plain "{.status.phase}")" = Running'
containers=$(jp "$NS" pod/plain '{.spec.initContainers[*].name} {.spec.containers[*].name}')
[ "$(echo $containers)" = app ] || fail "the unlabelled pod was changed: containers '$containers'"
[ -z "$(jp "$NS" pod/plain '{.metadata.annotations.hsmbridge\.io/inject-status}')" ] || fail "the unlabelled pod carries inject-status"
say "unlabelled pod 'plain': containers [$(echo $containers)], no inject-status annotation: untouched"
k -n "$NS" delete pod plain --wait=false >/dev/null
