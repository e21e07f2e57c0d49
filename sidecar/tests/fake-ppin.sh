#!/usr/bin/env bash
# A stand-in for the Securosys `ppin` tool, for tests/enroll_ppin.rs. It lives in a test's temp
# dir next to its control files:
#   expected-setup   the setup password the "HSM" accepts
#   behaviour        ok | unreachable | no-secrets-file | echo-secrets | hang   (default ok)
# and records what it got (argv, env, the two stdin lines, the mode of the -s directory) there.
#
# Like `ppin -a -e USER [-c CFG] -s FILE`, it prompts for the setup password and the PKCS#11
# password (reading them from stdin), and on success writes the secrets file to the -s path.
set -u
here="$(dirname "$0")"
argv=("$@")
printf '%s\n' "$@" >"$here/argv"

add=0 user="" secrets=""
while [ $# -gt 0 ]; do
    case "$1" in
        -a) add=1 ;;
        -e) shift; user="${1-}" ;;
        -c) shift; printf '%s' "${1-}" >"$here/config-arg" ;;
        -s) shift; secrets="${1-}" ;;
        *) echo "fake ppin: unexpected argument" >&2; exit 64 ;;
    esac
    shift
done
if [ "$add" != 1 ] || [ -z "$user" ] || [ -z "$secrets" ]; then
    echo "fake ppin: usage: ppin -a -e USER [-c CFG] -s FILE" >&2
    exit 64
fi
stat -c %a "$(dirname "$secrets")" >"$here/secrets-dir-mode"
printf '%s' "${SECUROSYS_SECRETS_CONF-}" >"$here/secrets-env"

echo "********************"
echo "Primus Permanent PIN"
echo "********************"
printf "Provide setup password for '%s': " "$user"
IFS= read -r setup || { echo "fake ppin: no setup password on stdin" >&2; exit 65; }
printf "Provide PKCS11 password for '%s': " "$user"
IFS= read -r pkcs11 || { echo "fake ppin: no PKCS11 password on stdin" >&2; exit 65; }
echo
printf '%s\n%s\n' "$setup" "$pkcs11" >"$here/stdin"

# The secrets must never be on the command line or in the environment.
for a in "${argv[@]}"; do
    if [ "$a" = "$setup" ] || [ "$a" = "$pkcs11" ]; then
        echo "fake ppin: a secret was passed in argv" >&2
        exit 66
    fi
done
if env | grep -qF -- "$setup" || env | grep -qF -- "$pkcs11"; then
    echo "fake ppin: a secret was passed in the environment" >&2
    exit 67
fi

behaviour="$(cat "$here/behaviour" 2>/dev/null || echo ok)"
case "$behaviour" in
    unreachable)
        echo "ERROR: cannot connect to HSM: 0x80005015" >&2
        exit 1 ;;
    hang)
        sleep 60
        exit 0 ;;
    echo-secrets)
        # A badly behaved tool that repeats its input: the caller must redact it.
        echo "ERROR: internal failure with setup=$setup pkcs11=$pkcs11" >&2
        exit 2 ;;
esac

if [ "$setup" != "$(cat "$here/expected-setup")" ]; then
    echo "Primus Permanent PIN"
    echo "ERROR: setup password rejected by HSM (0x80005017)" >&2
    exit 1
fi

if [ "$behaviour" = no-secrets-file ]; then
    echo "[01] slot-id 0: user '$user' permanent secret: Configured"
    exit 0
fi

umask 077
printf 'secrets {\n  user = "%s";\n  blob = "fake-ciphered-permanent-secret";\n};\n' "$user" >"$secrets"
echo "********************"
echo "Primus Permanent PIN"
echo "********************"
echo "[01] slot-id 0: user '$user' permanent secret: Configured"
exit 0
