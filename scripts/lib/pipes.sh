# shellcheck shell=bash
# Readers for pipelines under `set -o pipefail` (sourced, not run).
#
# Under pipefail a pipeline fails when any part of it fails. A reader that stops at the first line
# it wants (head, grep -q, an awk program that exits) closes the pipe while the writer may still be
# writing; the writer then dies of SIGPIPE and the pipeline fails with 141, although the reader found
# what it wanted. Whether it happens depends on how the writer's output reaches the pipe: a `make
# test` once ended with 141 when e2e/signer.sh read the public key with `kubectl logs | awk
# '{...; exit}'` from a log the API server sent in more than one piece. The readers below read all
# of their input, so the writer always finishes; scripts/check-pipes.py refuses the early readers.

# matches GREP-ARGS...: like `grep -q GREP-ARGS...` on stdin, but reads all of it first.
matches() {
    local input
    input=$(cat)
    grep -q "$@" <<<"$input"
}

# first_lines N: the first N lines of stdin, read to its end.
first_lines() { awk -v n="$1" 'NR <= n'; }
