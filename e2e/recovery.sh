#!/usr/bin/env bash
# Part of e2e/story.sh (sourced): the sidecar container is killed and restarted by the kubelet;
# readiness follows the backend. Sets SIDECAR_RESTARTS, APP_RESTARTS.

step "Kill the sidecar container (ctr kill -s SIGKILL): the kubelet restarts it, the app keeps running"
id=$(container_field "$NS" "$SIGNER_POD" hsm-sidecar containerID)
[ -n "$id" ] || fail "no container id for hsm-sidecar"
# Counted from here: a container restarted while the pod started is not this step's.
sidecar_before=$(container_field "$NS" "$SIGNER_POD" hsm-sidecar restartCount)
app_before=$(container_field "$NS" "$SIGNER_POD" app restartCount)
show $CTR tasks kill -s SIGKILL "${id#containerd://}"
# A signature stamped after this second was made after the kill.
killed=$(date +%s)
eventually 90 "the kubelet restarted hsm-sidecar" \
    'test "$(container_field "$NS" "$SIGNER_POD" hsm-sidecar restartCount)" -gt "${sidecar_before:-0}"'
eventually 60 "the restarted hsm-sidecar is ready" 'test "$(container_field "$NS" "$SIGNER_POD" hsm-sidecar ready)" = true'
next=$(wait_new_signature "$((killed + 1))" 90)
verify_signature "$next"
SIDECAR_RESTARTS=$(container_field "$NS" "$SIGNER_POD" hsm-sidecar restartCount)
APP_RESTARTS=$(container_field "$NS" "$SIGNER_POD" app restartCount)
say "restartCount: hsm-sidecar $SIDECAR_RESTARTS, app $APP_RESTARTS (before the kill: $sidecar_before, $app_before)"
[ "$APP_RESTARTS" = "$app_before" ] || fail "the app container restarted ($app_before -> $APP_RESTARTS) when only the sidecar was killed"

step "Readiness follows the backend: the token goes away (its directory moved), then comes back"
token_dir=$(find "$TOKENS" -mindepth 1 -maxdepth 1 -type d | first_lines 1)
[ -n "$token_dir" ] || fail "no token directory in $TOKENS"
show mv "$token_dir" "$WORK/token-away"
say "SoftHSM now answers C_GetTokenInfo for the token's slot with CKR_GENERAL_ERROR"
eventually 60 "the pod is NotReady" is_false "$NS" "pod/$SIGNER_POD" Ready
say "pod Ready=$(condition "$NS" "pod/$SIGNER_POD" Ready), hsm-sidecar ready=$(container_field "$NS" "$SIGNER_POD" hsm-sidecar ready)," \
    "the probe says: $(k -n "$NS" get events --field-selector "involvedObject.name=$SIGNER_POD,reason=Unhealthy" \
        -o 'jsonpath={.items[-1:].message}' 2>/dev/null | tr '\n' ' ')"
back=$(date +%s)
show mv "$WORK/token-away" "$token_dir"
eventually 90 "the pod is Ready again" is_true "$NS" "pod/$SIGNER_POD" Ready
say "pod Ready=True after $(($(date +%s) - back))s"
next=$(wait_new_signature "$back" 60)
verify_signature "$next"
[ "$(container_field "$NS" "$SIGNER_POD" app restartCount)" = "$app_before" ] || fail "the app container restarted"
