//! The contract between the images (`images/*/Dockerfile`), the webhook (`operator/`), the
//! sidecar, the shim, the chart and the scripts: every path, file name and environment variable
//! name more than one of them relies on, defined once in `contract/contract.env` and turned into
//! constants here at compile time.
//!
//! `contract.env` is shell (`KEY=value` lines, `#` comments, blank lines); scripts `source` it.
//! Each constant below looks its key up with a `const fn`, so a key this crate asks for that is
//! missing from the file, a key defined twice, a malformed line anywhere in the file, or a value
//! the shell would not take literally (spaces, quotes, `$`, ...) is a build error, not a runtime
//! surprise. [`ALL`] lists every key with its value; a unit test checks that it covers the file.
//!
//! These values are user-facing (app images, vendor images and GitOps repositories depend on
//! them): changing one is a breaking change.

#![forbid(unsafe_code)]

/// The text of `contract/contract.env`.
pub const CONTRACT_ENV: &str = include_str!("../contract.env");

/// File name of the shim, the PKCS#11 module apps load (`libhsmbridge_pkcs11.so`).
pub const SHIM_FILE: &str = value("SHIM_FILE");
/// Where the sidecar image carries the shim; `hsm-sidecar install-shim` copies it from there
/// into the pod (the webhook's init container, `operator/src/webhook/`).
pub const IMAGE_SHIM_PATH: &str = value("IMAGE_SHIM_PATH");
/// Where the images carry `hsm-sidecar` (on PATH).
pub const IMAGE_SIDECAR_BIN: &str = value("IMAGE_SIDECAR_BIN");
/// Where the operator image carries `hsm-operator` (on PATH).
pub const IMAGE_OPERATOR_BIN: &str = value("IMAGE_OPERATOR_BIN");
/// Where app containers find the shim: the emptyDir the init container fills.
pub const APP_LIB_DIR: &str = value("APP_LIB_DIR");
/// The shim's path in app containers ([`APP_LIB_DIR`]/[`SHIM_FILE`]): the value of
/// [`ENV_MODULE_PATH`].
pub const APP_MODULE_PATH: &str = value("APP_MODULE_PATH");
/// The sidecars' socket directory, an emptyDir shared with the app containers.
pub const SOCKET_DIR: &str = value("SOCKET_DIR");
/// The first partition's socket: what [`ENV_SOCKET`] is set to in app containers, and the shim's
/// default when it is unset.
pub const SOCKET_PATH: &str = value("SOCKET_PATH");
/// The environment variable that tells the shim which sidecar socket to use.
pub const ENV_SOCKET: &str = value("ENV_SOCKET");
/// The environment variable that tells apps where the PKCS#11 module (the shim) is.
pub const ENV_MODULE_PATH: &str = value("ENV_MODULE_PATH");
/// UID and GID of every container hsmbridge runs or injects (distroless `nonroot`), and the
/// fsGroup of injected pods that set none.
pub const RUN_AS_USER: i64 = parse_i64(value("RUN_AS_USER"));
/// SoftHSM v2's module inside the `hsm-sidecar-softhsm` image (Debian's path).
pub const SOFTHSM_MODULE_PATH: &str = value("SOFTHSM_MODULE_PATH");
/// The registry of the chart's default images (`REGISTRY/NAME`).
pub const IMAGE_REGISTRY: &str = value("IMAGE_REGISTRY");
/// Image name of the operator.
pub const IMAGE_OPERATOR: &str = value("IMAGE_OPERATOR");
/// Image name of `hsm-sidecar` with the shim (no vendor module).
pub const IMAGE_SIDECAR: &str = value("IMAGE_SIDECAR");
/// Image name of `hsm-sidecar` with SoftHSM v2.
pub const IMAGE_SIDECAR_SOFTHSM: &str = value("IMAGE_SIDECAR_SOFTHSM");
/// Image name of `hsm-sidecar` with the Securosys Primus module.
pub const IMAGE_SIDECAR_PRIMUS: &str = value("IMAGE_SIDECAR_PRIMUS");

/// The first sidecar's metrics port (`hsm-sidecar serve --metrics-addr`); the i-th sidecar of a
/// pod uses `METRICS_PORT + i`.
pub const METRICS_PORT: u16 = parse_i64(value("METRICS_PORT")) as u16;
/// The name of the first sidecar's metrics container port (`-i` appended for the i-th).
pub const METRICS_PORT_NAME: &str = value("METRICS_PORT_NAME");
/// The HTTP path of the sidecar's (and the operator's) Prometheus metrics.
pub const METRICS_PATH: &str = value("METRICS_PATH");
/// The sidecar's pod namespace (downward API), for the audit trail.
pub const ENV_POD_NAMESPACE: &str = value("ENV_POD_NAMESPACE");
/// The sidecar's pod name (downward API), for the audit trail.
pub const ENV_POD_NAME: &str = value("ENV_POD_NAME");
/// The HsmPartition a sidecar serves, for its info metric and audit lines.
pub const ENV_PARTITION: &str = value("ENV_PARTITION");
/// Set in each app container to the container's name; the shim sends it in its Hello.
pub const ENV_CONTAINER: &str = value("ENV_CONTAINER");
/// The data key (credential Secret, provider ConfigMap) holding their generation counter.
pub const GENERATION_KEY: &str = value("GENERATION_KEY");
/// How long the shim polls for an answer before it blocks, microseconds (0: never; unset: adaptive).
pub const ENV_SPIN_US: &str = value("ENV_SPIN_US");

/// Every key of `contract.env` with its value, as written in the file.
pub const ALL: &[(&str, &str)] = &[
    ("SHIM_FILE", SHIM_FILE),
    ("IMAGE_SHIM_PATH", IMAGE_SHIM_PATH),
    ("IMAGE_SIDECAR_BIN", IMAGE_SIDECAR_BIN),
    ("IMAGE_OPERATOR_BIN", IMAGE_OPERATOR_BIN),
    ("APP_LIB_DIR", APP_LIB_DIR),
    ("APP_MODULE_PATH", APP_MODULE_PATH),
    ("SOCKET_DIR", SOCKET_DIR),
    ("SOCKET_PATH", SOCKET_PATH),
    ("ENV_SOCKET", ENV_SOCKET),
    ("ENV_MODULE_PATH", ENV_MODULE_PATH),
    ("RUN_AS_USER", value("RUN_AS_USER")),
    ("SOFTHSM_MODULE_PATH", SOFTHSM_MODULE_PATH),
    ("IMAGE_REGISTRY", IMAGE_REGISTRY),
    ("IMAGE_OPERATOR", IMAGE_OPERATOR),
    ("IMAGE_SIDECAR", IMAGE_SIDECAR),
    ("IMAGE_SIDECAR_SOFTHSM", IMAGE_SIDECAR_SOFTHSM),
    ("IMAGE_SIDECAR_PRIMUS", IMAGE_SIDECAR_PRIMUS),
    ("METRICS_PORT", value("METRICS_PORT")),
    ("METRICS_PORT_NAME", METRICS_PORT_NAME),
    ("METRICS_PATH", METRICS_PATH),
    ("ENV_POD_NAMESPACE", ENV_POD_NAMESPACE),
    ("ENV_POD_NAME", ENV_POD_NAME),
    ("ENV_PARTITION", ENV_PARTITION),
    ("ENV_CONTAINER", ENV_CONTAINER),
    ("GENERATION_KEY", GENERATION_KEY),
    ("ENV_SPIN_US", ENV_SPIN_US),
];

/// The value of `key` in [`CONTRACT_ENV`]; anything wrong is a compile error where a constant
/// uses it.
const fn value(key: &str) -> &'static str {
    match lookup(CONTRACT_ENV, key) {
        Ok(Some(v)) => v,
        Ok(None) => panic!("a key hsmbridge-contract defines is missing from contract/contract.env"),
        Err(e) => panic!("{}", e.message()),
    }
}

/// What is wrong with an env text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Malformed {
    /// A line that is neither blank, a comment nor `KEY=value`.
    NotAnAssignment,
    /// A key outside `[A-Za-z_][A-Za-z0-9_]*`.
    BadKey,
    /// A value with a character the shell would interpret (whitespace, quotes, `$`, ...).
    BadValue,
    /// The key looked up is defined more than once.
    Duplicate,
}

impl Malformed {
    const fn message(self) -> &'static str {
        match self {
            Malformed::NotAnAssignment => {
                "contract/contract.env: a line is neither blank, a # comment nor KEY=value"
            }
            Malformed::BadKey => "contract/contract.env: a key is not [A-Za-z_][A-Za-z0-9_]*",
            Malformed::BadValue => {
                "contract/contract.env: a value holds whitespace, a quote or a shell metacharacter (no quoting, no expansion)"
            }
            Malformed::Duplicate => "contract/contract.env: a key is defined twice",
        }
    }
}

/// The value of `key` in `text` (shell `KEY=value` lines, `#` comment lines, blank lines), after
/// checking every line of `text`.
const fn lookup(text: &'static str, key: &str) -> Result<Option<&'static str>, Malformed> {
    let bytes = text.as_bytes();
    let mut found: Option<&'static str> = None;
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'\n' {
            end += 1;
        }
        let line = trim(sub(bytes, start, end));
        start = end + 1;
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let mut eq = 0;
        while eq < line.len() && line[eq] != b'=' {
            eq += 1;
        }
        if eq == line.len() {
            return Err(Malformed::NotAnAssignment);
        }
        let (name, rest) = line.split_at(eq);
        let (_, value) = rest.split_at(1);
        if !is_key(name) {
            return Err(Malformed::BadKey);
        }
        if !is_literal(value) {
            return Err(Malformed::BadValue);
        }
        if eq_bytes(name, key.as_bytes()) {
            if found.is_some() {
                return Err(Malformed::Duplicate);
            }
            // Split at ASCII bytes of valid UTF-8 (`text` is a str): still valid UTF-8.
            found = match core::str::from_utf8(value) {
                Ok(v) => Some(v),
                Err(_) => return Err(Malformed::BadValue),
            };
        }
    }
    Ok(found)
}

/// `bytes[start..end]` (range indexing is not const).
const fn sub(bytes: &'static [u8], start: usize, end: usize) -> &'static [u8] {
    let (_, from) = bytes.split_at(start);
    let (part, _) = from.split_at(end - start);
    part
}

const fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// Without leading and trailing blanks (and the `\r` of CRLF files).
const fn trim(mut line: &'static [u8]) -> &'static [u8] {
    while let [first, rest @ ..] = line {
        if !is_blank(*first) {
            break;
        }
        line = rest;
    }
    while let [rest @ .., last] = line {
        if !is_blank(*last) {
            break;
        }
        line = rest;
    }
    line
}

const fn is_key(name: &[u8]) -> bool {
    if name.is_empty() || name[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if !(name[i].is_ascii_alphanumeric() || name[i] == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// A value `sh` assigns as written: no whitespace, quote, expansion or operator character, no
/// leading `~` (tilde expansion).
const fn is_literal(value: &[u8]) -> bool {
    if !value.is_empty() && value[0] == b'~' {
        return false;
    }
    let mut i = 0;
    while i < value.len() {
        if matches!(
            value[i],
            b' ' | b'\t' | b'"' | b'\'' | b'$' | b'`' | b'\\' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')'
        ) {
            return false;
        }
        i += 1;
    }
    true
}

const fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A non-negative decimal number; anything else is a compile error where a constant uses it.
const fn parse_i64(text: &str) -> i64 {
    let digits = text.as_bytes();
    if digits.is_empty() {
        panic!("contract/contract.env: an empty number");
    }
    let mut n: i64 = 0;
    let mut i = 0;
    while i < digits.len() {
        let d = digits[i];
        if !d.is_ascii_digit() {
            panic!("contract/contract.env: a number with a character other than 0-9");
        }
        n = match n.checked_mul(10) {
            Some(m) => match m.checked_add((d - b'0') as i64) {
                Some(v) => v,
                None => panic!("contract/contract.env: a number larger than i64"),
            },
            None => panic!("contract/contract.env: a number larger than i64"),
        };
        i += 1;
    }
    n
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
