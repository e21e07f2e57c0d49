#!/usr/bin/env bash
# Helpers of the end-to-end story (e2e/story.sh). Sourced, not run.

E2E_STEP=0
E2E_T0=$(date +%s)

# step TEXT: a numbered heading, with the seconds since the story began.
step() {
    E2E_STEP=$((E2E_STEP + 1))
    printf '\n\033[1m== %d. %s\033[0m  (+%ds)\n' "$E2E_STEP" "$*" "$(($(date +%s) - E2E_T0))"
}
say() { printf '   %s\n' "$*"; }
fail() { printf '\n\033[1;31mFAIL\033[0m (step %d): %s\n' "$E2E_STEP" "$*" >&2; exit 1; }
# show CMD...: prints the command, then runs it.
show() { printf '$ %s\n' "$*"; "$@"; }

k() { "$KUBECTL" "$@"; }

# eventually SECONDS WHAT CMD...: polls CMD every second until it succeeds. A single CMD argument
# is shell code, evaluated anew each time (for conditions with "$(...)" in them: in CMD... form
# those would be expanded once, before the first try).
eventually() {
    local secs="$1" what="$2" i; shift 2
    for ((i = 0; i < secs; i++)); do
        if [ $# -eq 1 ]; then
            eval "$1" >/dev/null 2>&1 && return 0
        else
            "$@" >/dev/null 2>&1 && return 0
        fi
        sleep 1
    done
    fail "timed out after ${secs}s waiting until $what"
}

# jp NS KIND/NAME JSONPATH: one field (empty when the object or field is missing).
jp() { k -n "$1" get "$2" -o "jsonpath=$3" 2>/dev/null || true; }

# condition NS KIND/NAME TYPE: the status of that condition.
condition() { jp "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].status}"; }
is_true() { [ "$(condition "$1" "$2" "$3")" = True ]; }
is_false() { [ "$(condition "$1" "$2" "$3")" = False ]; }

# container_field NS POD CONTAINER FIELD: a field of that container's status (restartCount, ready,
# containerID, ...).
container_field() { jp "$1" "pod/$2" "{.status.containerStatuses[?(@.name==\"$3\")].$4}"; }

# the_pod NS SELECTOR: the name of a running pod the selector matches that is not being deleted.
the_pod() {
    k -n "$1" get pods -l "$2" --no-headers \
        -o custom-columns=NAME:.metadata.name,PHASE:.status.phase,DELETING:.metadata.deletionTimestamp 2>/dev/null \
        | awk '$2 == "Running" && $3 == "<none>" && pod == "" {pod = $1} END {if (pod != "") print pod}'
}

# container_pid CONTAINER-ID: the host PID of the container's main process (containerd's view).
container_pid() { $CTR tasks ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }

# rss_mib PID: resident set size in MiB.
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# dump_diagnostics NS...: what a failed run needs to be understood.
dump_diagnostics() {
    local ns
    for ns in "$@"; do
        echo "--- namespace $ns: pods, events" >&2
        k -n "$ns" get pods -o wide >&2 2>&1 || true
        k -n "$ns" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 25 >&2 || true
        k -n "$ns" get hsmpartitions -o wide >&2 2>&1 || true
        local p c
        for p in $(k -n "$ns" get pods -o 'jsonpath={.items[*].metadata.name}' 2>/dev/null); do
            for c in $(k -n "$ns" get pod "$p" -o 'jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}' 2>/dev/null); do
                echo "--- logs $ns/$p/$c (last 15)" >&2
                k -n "$ns" logs "$p" -c "$c" --tail 15 >&2 2>&1 || true
            done
        done
    done
}
