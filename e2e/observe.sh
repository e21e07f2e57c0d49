#!/usr/bin/env bash
# Part of e2e/story.sh (sourced), issue #10 on the node: the sidecar's /metrics scraped from
# another pod (and checked against the chart's dashboard and alert rules), the audit trail in the
# sidecar's log, then a credential rotation and a provider configuration change, each without a
# pod restart. Sets ROTATION_SECONDS, CONFIG_RELOAD_SECONDS.

sidecar_log() { k -n "$NS" logs "$SIGNER_POD" -c hsm-sidecar 2>/dev/null; }
# The audit trail is the sidecar's stdout: JSON lines (its log, on stderr, starts with a time).
audit_lines() { sidecar_log | grep '^{"time"' || true; }

# scrape NAME HOST:PORT...: a pod (not labelled for injection) fetches each /metrics over plain
# HTTP with bash's /dev/tcp; the bodies go to $ARTIFACTS/NAME-<i>.txt.
scrape() {
    local name="$1" i=0 target
    shift
    k -n "$NS" delete pod "$name" --ignore-not-found --wait=true >/dev/null
    k -n "$NS" apply -f - >/dev/null <<POD
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $NS, labels: {app: scraper}}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true}
  containers:
    - name: scrape
      image: $APP_IMAGE
      imagePullPolicy: IfNotPresent
      command: ["/bin/bash", "-c"]
      args:
        - |
          set -u
          for target in $*; do
            echo "=== \$target"
            exec 3<>"/dev/tcp/\${target%:*}/\${target#*:}" || exit 1
            printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "\${target%:*}" >&3
            cat <&3
            exec 3>&-
          done
POD
    eventually 90 "pod $name scraped $*" 'test "$(jp "$NS" "pod/$name" "{.status.phase}")" = Succeeded'
    k -n "$NS" logs "$name" >"$WORK/$name.log"
    for target in "$@"; do
        awk -v t="=== $target" '$0 == t {on = 1; body = 0; next} /^=== / {on = 0} on && body {print} on && /^\r?$/ {body = 1}' \
            "$WORK/$name.log" | tr -d '\r' >"$ARTIFACTS/$name-$i.txt"
        grep -q '^# EOF' "$ARTIFACTS/$name-$i.txt" || fail "no exposition from $target: $(head -c 300 "$WORK/$name.log")"
        i=$((i + 1))
    done
}

series() { awk -v s="$2" '$1 == s {print $2; exit}' "$1"; }

step "Prometheus: the sidecar's /metrics, scraped from another pod"
say "the pod's scrape annotations: scrape=$(jp "$NS" "pod/$SIGNER_POD" '{.metadata.annotations.prometheus\.io/scrape}')" \
    "port=$(jp "$NS" "pod/$SIGNER_POD" '{.metadata.annotations.prometheus\.io/port}')" \
    "path=$(jp "$NS" "pod/$SIGNER_POD" '{.metadata.annotations.prometheus\.io/path}')"
[ "$(jp "$NS" "pod/$SIGNER_POD" '{.metadata.annotations.prometheus\.io/port}')" = "$METRICS_PORT" ] \
    || fail "the injected pod has no prometheus.io/port $METRICS_PORT"
POD_IP=$(jp "$NS" "pod/$SIGNER_POD" '{.status.podIP}')
# Both operator replicas (only the leader samples the sidecars for hsm_operator_partition_pods,
# every 60 s: scraped until one has it).
read -r -a OPERATOR_IPS <<<"$(k -n "$SYSTEM_NS" get pods -l app.kubernetes.io/instance=hsmbridge \
    --field-selector status.phase=Running -o 'jsonpath={.items[*].status.podIP}')"
[ "${#OPERATOR_IPS[@]}" -ge 1 ] || fail "no running operator pod"
for ((try = 0; ; try++)); do
    scrape scraper "$POD_IP:$METRICS_PORT" "${OPERATOR_IPS[@]/%/:8080}"
    OPERATOR_METRICS=$(grep -l '^hsm_operator_partition_pods{' "$ARTIFACTS"/scraper-[1-9].txt 2>/dev/null | first_lines 1) || true
    [ -n "$OPERATOR_METRICS" ] && break
    [ "$try" -lt 12 ] || fail "no operator replica exposes hsm_operator_partition_pods after $((try * 10))s"
    sleep 10
done
SIDECAR_METRICS="$ARTIFACTS/scraper-0.txt"
signs=$(series "$SIDECAR_METRICS" 'hsmbridge_sidecar_calls_total{function="C_Sign",result="CKR_OK"}')
[ "${signs:-0}" -ge 1 ] || fail "the sidecar counted no C_Sign: $(grep C_Sign "$SIDECAR_METRICS" | first_lines 3)"
[ "$(series "$SIDECAR_METRICS" hsmbridge_sidecar_token_present)" = 1 ] || fail "token_present is not 1"
grep -E '^hsmbridge_sidecar_(calls_total\{function="C_Sign"|call_duration_seconds_(count|sum)\{function="C_Sign"|token_present|logged_in|sessions|applications|info)' \
    "$SIDECAR_METRICS" | first_lines 9 | sed 's/^/   scrape: /'
grep '^hsm_operator_partition_pods{' "$OPERATOR_METRICS" | sed 's/^/   operator: /'
python3 "$REPO/scripts/check-monitoring.py" --exposition "$SIDECAR_METRICS" --exposition "$OPERATOR_METRICS" \
    | sed 's/^/   /' || fail "the dashboard or the alert rules name a metric the scrapes do not have"
say "every metric the chart's dashboard and alert rules use is in the sidecar's or the operator's scrape"

step "The audit trail: one JSON line per key use, on the sidecar's stdout"
eventually 30 "an audit line for the app's C_SignInit" 'audit_lines | matches "\"function\":\"C_SignInit\""'
line=$(audit_lines | grep '"function":"C_SignInit"' | tail -n 1)
for want in '"label":"e2e-key"' '"id":"01"' "\"namespace\":\"$NS\"" "\"name\":\"$SIGNER_POD\"" '"container":"app"' \
    '"mechanism":"CKM_ECDSA"' '"result":"CKR_OK"' '"uid":1000'; do
    printf '%s' "$line" | matches -F "$want" || fail "the audit line lacks $want: $line"
done
audit_lines | grep -E '"event":"(backend_login|key_use|logout)"' | tail -n 3 >"$ARTIFACTS/audit-sample.jsonl"
sed 's/^/   audit: /' "$ARTIFACTS/audit-sample.jsonl"

# The PIN the sidecar holds, read here as the administrator, must be in none of the logs.
(umask 077 && k -n "$NS" get secret shop-credentials -o 'jsonpath={.data.pin}' | base64 -d >"$WORK/old-pin")
[ -s "$WORK/old-pin" ] || fail "no PIN in Secret shop-credentials"
for c in hsm-sidecar app; do
    k -n "$NS" logs "$SIGNER_POD" -c "$c" 2>/dev/null | matches -F -f "$WORK/old-pin" && fail "the $c container's log holds the PIN"
done
for p in $(k -n "$SYSTEM_NS" get pods -o name); do
    k -n "$SYSTEM_NS" logs "$p" 2>/dev/null | matches -F -f "$WORK/old-pin" && fail "$p's log holds the PIN"
done
say "the PIN is in neither container's log nor the operator's"

step "Rotate the credential: a new PIN on the token, then in the Secret; no pod restarts"
restarts_before="$(container_field "$NS" "$SIGNER_POD" app restartCount)/$(container_field "$NS" "$SIGNER_POD" hsm-sidecar restartCount)"
(umask 077 && random_secret 32 >"$WORK/new-pin")
generation=$(k -n "$NS" get secret shop-credentials -o "jsonpath={.data.$GENERATION_KEY}" | base64 -d)
new_generation=$((${generation:-0} + 1))
# The administrator changes the token's user PIN (as the token files' owner; the PINs go through
# the environment, pkcs11-tool's env:, never a command line).
OLD_PIN="$(cat "$WORK/old-pin")" NEW_PIN="$(cat "$WORK/new-pin")" SOFTHSM2_CONF="$WORK/softhsm2-host.conf" \
    setpriv --reuid="$RUN_AS_USER" --regid="$RUN_AS_USER" --clear-groups \
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$TOKEN_LABEL" \
    --login --pin env:OLD_PIN --change-pin --new-pin env:NEW_PIN >/dev/null 2>&1 \
    || fail "pkcs11-tool --change-pin on the token failed"
say "the token's user PIN is changed; the sidecar's open module keeps its login"
(umask 077 && k -n "$NS" get secret shop-credentials -o json >"$WORK/credentials.json")
python3 - "$WORK/credentials.json" "$WORK/new-pin" "$new_generation" "$GENERATION_KEY" <<'PY'
import base64, json, sys
path, pin_file, generation, key = sys.argv[1:]
secret = json.load(open(path))
secret["data"]["pin"] = base64.b64encode(open(pin_file, "rb").read()).decode()
secret["data"][key] = base64.b64encode(generation.encode()).decode()
json.dump(secret, open(path, "w"))
PY
rotated=$(date +%s)
k -n "$NS" replace -f "$WORK/credentials.json" >/dev/null
say "Secret shop-credentials updated (pin, $GENERATION_KEY=$new_generation) at $(date -u -d "@$rotated" +%T)"
eventually 180 "the sidecar logs the backend in with credential generation $new_generation" \
    'audit_lines | grep "\"event\":\"backend_login\"" | grep "\"result\":\"CKR_OK\"" | matches "generation $new_generation)"'
relogin=$(audit_lines | grep '"event":"backend_login"' | grep "generation $new_generation)" | first_lines 1)
relogin_time=$(printf '%s' "$relogin" | sed 's/^{"time":"\([^"]*\)".*/\1/')
ROTATION_SECONDS=$(($(date -d "$relogin_time" +%s) - rotated))
say "audit: $(audit_lines | grep '"event":"credential_changed"' | tail -n 1)"
say "audit: $relogin"
next=$(wait_new_signature "$(date -d "$relogin_time" +%s)" 60)
verify_signature "$next"
restarts_after="$(container_field "$NS" "$SIGNER_POD" app restartCount)/$(container_field "$NS" "$SIGNER_POD" hsm-sidecar restartCount)"
[ "$restarts_after" = "$restarts_before" ] || fail "restartCount app/hsm-sidecar went from $restarts_before to $restarts_after"
say "from the Secret update to the first login with the new PIN: ${ROTATION_SECONDS}s (the kubelet's" \
    "Secret sync dominates: syncFrequency 10s on this node, 1 min by default); restartCount app/hsm-sidecar $restarts_after"
eventually 60 "kubectl get hsmp shows credential generation $new_generation" \
    'test "$(jp "$NS" "hsmpartition/$NS" "{.status.credentialGeneration}")" = "$new_generation"'
show k -n "$NS" get hsmpartitions
rm -f "$WORK/old-pin" "$WORK/new-pin" "$WORK/credentials.json"

step "Change the provider configuration (softhsm2.conf): the module is re-initialized, no pod restarts"
changed=$(date +%s)
show k -n "$NS" patch configmap softhsm-config --type merge \
    -p "{\"data\":{\"softhsm2.conf\":\"directories.tokendir = /var/lib/softhsm/tokens\\nobjectstore.backend = file\\nlog.level = ERROR\\nslots.removable = false\\n\"}}"
eventually 180 "the sidecar re-initialized the module for the new configuration" \
    'audit_lines | grep "\"event\":\"module_reinitialized\"" | matches "provider configuration changed"'
reload=$(audit_lines | grep '"event":"module_reinitialized"' | grep "provider configuration changed" | tail -n 1)
reload_time=$(printf '%s' "$reload" | sed 's/^{"time":"\([^"]*\)".*/\1/')
CONFIG_RELOAD_SECONDS=$(($(date -d "$reload_time" +%s) - changed))
say "audit: $reload"
next=$(wait_new_signature "$(($(date -d "$reload_time" +%s) + 1))" 60)
verify_signature "$next"
restarts_after="$(container_field "$NS" "$SIGNER_POD" app restartCount)/$(container_field "$NS" "$SIGNER_POD" hsm-sidecar restartCount)"
[ "$restarts_after" = "$restarts_before" ] || fail "restartCount app/hsm-sidecar went from $restarts_before to $restarts_after"
scrape scraper "$POD_IP:$METRICS_PORT"
say "scrape: $(grep '^hsmbridge_sidecar_module_reinitializations_total' "$ARTIFACTS/scraper-0.txt" | tr '\n' ' ')"
say "scrape: $(grep -E '^hsmbridge_sidecar_credential_(generation|reloads_total) ' "$ARTIFACTS/scraper-0.txt" | tr '\n' ' ')"
[ "$(series "$ARTIFACTS/scraper-0.txt" hsmbridge_sidecar_credential_generation)" = "$new_generation" ] \
    || fail "the sidecar does not report credential generation $new_generation"
say "from the ConfigMap change to the re-initialization: ${CONFIG_RELOAD_SECONDS}s; restartCount app/hsm-sidecar $restarts_after"
k -n "$NS" delete pod scraper --wait=false >/dev/null
