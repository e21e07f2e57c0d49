#!/usr/bin/env bash
# Part of e2e/story.sh (sourced): `helm uninstall` leaves the CRD and nothing else of the release,
# and the chart installs again under another release name in another namespace.

# What a namespace holds besides what Kubernetes puts in every namespace.
leftovers() {
    chart_namespace_contents "$1" | grep -vE '^(ServiceAccount/default|Secret/default-token-.*|ConfigMap/kube-root-ca\.crt)$' || true
}

step "helm uninstall: the CRD stays (and the partitions with it), nothing else of the release"
chart_uninstall hsmbridge "$SYSTEM_NS" >/dev/null
eventually 90 "the operator's pods are gone" 'test -z "$(k -n "$SYSTEM_NS" get pods -o name 2>/dev/null)"'
# The controller-manager deletes Endpoints (which copy the Service's labels) in its own time.
eventually 30 "only the CRD is labelled with the release" \
    'test "$(chart_labelled hsmbridge)" = "CustomResourceDefinition//hsmpartitions.hsmbridge.io"'
left=$(chart_labelled hsmbridge)
eventually 30 "$SYSTEM_NS holds nothing of the release" 'test -z "$(leftovers "$SYSTEM_NS")"'
for o in mutatingwebhookconfiguration/hsmbridge-injector clusterrole/hsm-operator clusterrolebinding/hsm-operator; do
    [ -z "$(k get "$o" -o name 2>/dev/null)" ] || fail "$o is left after helm uninstall"
done
say "left: $left; $SYSTEM_NS is empty; HsmPartition $NS is still there: $(condition "$NS" "hsmpartition/$NS" Ready)"

step "helm install again, as release 'bridge-b' in namespace 'hsmbridge-b', over the kept CRD"
chart_install bridge-b hsmbridge-b --wait --timeout 180s >/dev/null
eventually 120 "bridge-b's operator has 2 ready replicas" 'test "$(jp hsmbridge-b deployment/hsm-operator "{.status.readyReplicas}")" = 2'
eventually 60 "bridge-b wrote the caBundle" 'test -n "$(jp "" mutatingwebhookconfiguration/hsmbridge-injector "{.webhooks[0].clientConfig.caBundle}")"'
# The new release's webhook serves: a labelled pod gets its sidecar. The API server reaches it
# through its Service once kube-proxy has the endpoints (helm --wait does not wait for that), and
# failurePolicy Fail refuses the pod until then: try again.
eventually 60 "bridge-b's webhook admits pod 'again'" \
    'k -n "$NS" get pod again || { pod_yaml again signer "$NS" | k create -f -; }'
[ "$(jp "$NS" pod/again '{.metadata.annotations.hsmbridge\.io/inject-status}')" = injected ] \
    || fail "bridge-b's webhook did not inject pod 'again'"
say "bridge-b serves: pod 'again' was injected ($(jp "$NS" pod/again '{.spec.containers[*].name}'))"
k -n "$NS" delete pod again --wait=false >/dev/null
chart_uninstall bridge-b hsmbridge-b >/dev/null
