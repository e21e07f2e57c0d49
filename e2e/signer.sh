#!/usr/bin/env bash
# Part of e2e/story.sh (sourced): a labelled Deployment signs through the shim, and the signature
# from its log verifies here. Sets SIGNER_POD, FIRST_SIGNATURE_SECONDS, SIDECAR_RSS, OPERATOR_RSS,
# POD_YAML, and the functions later parts use: latest_signature, verify_signature, wait_new_signature.

ARTIFACTS="$REPO/target/e2e"
mkdir -p "$ARTIFACTS"

# The app: Debian's pkcs11-tool and openssl, nothing of the vendor, no PIN. It makes its key once,
# prints the public key, then signs the SHA-256 of a fixed message every 2 s (a new pkcs11-tool
# process each time: each is a new connection through the shim).
signer_yaml() {
    cat <<'APP' | sed "s|@APP_IMAGE@|$APP_IMAGE|; s|@NS@|$NS|; s|@TOKEN@|$TOKEN_LABEL|"
apiVersion: apps/v1
kind: Deployment
metadata: {name: signer, namespace: @NS@}
spec:
  replicas: 1
  selector: {matchLabels: {app: signer}}
  template:
    metadata:
      labels: {app: signer, hsmbridge.io/inject: "true"}
      annotations: {hsmbridge.io/partition: @NS@}
    spec:
      serviceAccountName: signer
      containers:
        - name: app
          image: @APP_IMAGE@
          imagePullPolicy: IfNotPresent
          securityContext: {runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, allowPrivilegeEscalation: false}
          env: [{name: TOKEN, value: "@TOKEN@"}]
          command: ["/bin/sh", "-c"]
          args:
            - |
              set -u
              p11() { pkcs11-tool --module "$PKCS11_MODULE_PATH" --token-label "$TOKEN" "$@"; }
              # Before 1.29 the sidecar is a regular container: it may not serve yet.
              i=0
              until pkcs11-tool --module "$PKCS11_MODULE_PATH" --list-token-slots 2>/dev/null | grep -q "label.*: $TOKEN"; do
                i=$((i + 1)); [ "$i" -lt 120 ] || { echo "the token never showed up"; exit 1; }
                sleep 0.5
              done
              if ! p11 --list-objects --type privkey 2>/dev/null | grep -q 'e2e-key'; then
                p11 --login --keypairgen --key-type EC:prime256v1 --label e2e-key --id 01 >/dev/null || exit 1
              fi
              p11 --read-object --type pubkey --id 01 --output-file /tmp/pub.der >/dev/null || exit 1
              echo "PUBKEY $(base64 -w0 /tmp/pub.der)"
              printf 'hsmbridge e2e: signed in the HSM\n' >/tmp/msg
              openssl dgst -sha256 -binary -out /tmp/msg.sha256 /tmp/msg
              n=0
              while :; do
                n=$((n + 1))
                if p11 --login --sign --mechanism ECDSA --id 01 --input-file /tmp/msg.sha256 \
                    --output-file /tmp/sig --signature-format openssl >/tmp/out 2>&1; then
                  echo "SIGNATURE $n $(date +%s) $(base64 -w0 /tmp/sig)"
                else
                  echo "SIGN-FAILED $n $(date +%s) $(tr '\n' ' ' </tmp/out)"
                fi
                sleep 2
              done
APP
}

# signer_log: the app container's log (kubectl logs goes API server -> kubelet: tried 5 times).
signer_log() {
    local out i
    for ((i = 0; i < 5; i++)); do
        if out=$(k -n "$NS" logs "$SIGNER_POD" -c app 2>/dev/null); then
            printf '%s\n' "$out"
            return 0
        fi
        sleep 1
    done
    fail "kubectl logs $NS/$SIGNER_POD -c app failed 5 times"
}

# latest_signature: "N TIME BASE64" of the last SIGNATURE line.
latest_signature() { signer_log | awk '$1 == "SIGNATURE" {line = $2 " " $3 " " $4} END {print line}'; }

# verify_signature "N TIME BASE64": verifies it with openssl over the message, with the public
# key the pod printed; prints what it checked.
verify_signature() {
    local n t sig
    read -r n t sig <<<"$1"
    [ -n "$sig" ] || fail "no signature to verify"
    signer_log | awk '$1 == "PUBKEY" && key == "" {key = $2} END {print key}' | base64 -d >"$WORK/pub.der"
    openssl pkey -pubin -inform DER -in "$WORK/pub.der" -out "$WORK/pub.pem" 2>/dev/null \
        || fail "the pod's public key does not parse"
    printf '%s' "$sig" | base64 -d >"$WORK/sig.der"
    printf 'hsmbridge e2e: signed in the HSM\n' >"$WORK/msg"
    openssl dgst -sha256 -verify "$WORK/pub.pem" -signature "$WORK/sig.der" "$WORK/msg" >/dev/null \
        || fail "signature #$n from the pod's log does not verify"
    say "signature #$n ($(stat -c %s "$WORK/sig.der") bytes, ECDSA P-256): $sig"
    say "verified with openssl against the public key the pod read through the shim"
}

# wait_new_signature AFTER SECONDS: waits for a SIGNATURE made at or after unix time AFTER;
# prints it.
wait_new_signature() {
    local after="$1" secs="$2" i line
    for ((i = 0; i < secs; i++)); do
        line=$(signer_log | awk -v after="$after" '$1 == "SIGNATURE" && $3 >= after {line = $2 " " $3 " " $4} END {print line}')
        [ -n "$line" ] && { echo "$line"; return 0; }
        sleep 1
    done
    signer_log | tail -n 5 >&2
    fail "no new signature within ${secs}s"
}

step "A labelled Deployment: its app container signs through the shim, without a PIN"
signer_yaml >"$WORK/signer.yaml"
applied=$(date +%s)
show k apply -f "$WORK/signer.yaml"
eventually 120 "the signer pod runs" 'test -n "$(the_pod "$NS" app=signer)"'
SIGNER_POD=$(the_pod "$NS" app=signer)
first=$(wait_new_signature 0 120)
FIRST_SIGNATURE_SECONDS=$(($(date +%s) - applied))
verify_signature "$first"
say "from kubectl apply to a verified signature: ${FIRST_SIGNATURE_SECONDS}s"

POD_YAML="$ARTIFACTS/signer-pod.yaml"
k -n "$NS" get pod "$SIGNER_POD" -o yaml >"$POD_YAML"
say "containers as the kubelet runs them: init $(jp "$NS" "pod/$SIGNER_POD" '{.spec.initContainers[*].name}')," \
    "then $(jp "$NS" "pod/$SIGNER_POD" '{.spec.containers[*].name}'); stored in ${POD_YAML#"$REPO"/}"
say "app env: $(jp "$NS" "pod/$SIGNER_POD" '{.spec.containers[?(@.name=="app")].env[*].name}')"
k -n "$NS" exec "$SIGNER_POD" -c app -- sh -c 'id; ls -l /var/run/hsmbridge /opt/hsmbridge/lib' | sed 's/^/   app$ /'
seen=$(k -n "$NS" exec "$SIGNER_POD" -c app -- sh -c 'env; ls /etc/hsmbridge 2>&1; true') || fail "kubectl exec into the app failed"
printf '%s' "$seen" | matches '^PKCS11_MODULE_PATH=' || fail "kubectl exec did not show the app's environment: $seen"
if printf '%s' "$seen" | matches -iE 'pin=|credentials'; then
    fail "the app container sees the credential"
fi
say "the app container has no PIN in its environment and no credential mount"

id=$(container_field "$NS" "$SIGNER_POD" hsm-sidecar containerID)
SIDECAR_RSS=$(rss_mib "$(container_pid "${id#containerd://}")")
OPERATOR_RSS=""
for p in $(k -n "$SYSTEM_NS" get pods -l app.kubernetes.io/name=hsmbridge -o 'jsonpath={.items[*].metadata.name}'); do
    oid=$(container_field "$SYSTEM_NS" "$p" operator containerID)
    OPERATOR_RSS+="$(rss_mib "$(container_pid "${oid#containerd://}")") "
done
OPERATOR_RSS=${OPERATOR_RSS% }
say "RSS: hsm-sidecar ${SIDECAR_RSS} MiB; hsm-operator replicas ${OPERATOR_RSS} MiB"
