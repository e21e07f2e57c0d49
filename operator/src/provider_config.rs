//! Renders the provider configuration the sidecar and the enrollment Job mount from the
//! `<name>-provider` ConfigMap. For Securosys Primus this is `primus.cfg` (libconfig syntax):
//!
//! ```text
//! hsms = { hsm0 = { host = "..."; port = "2310"; priority = 0;
//!                   slots = { slot0 = { id = 0; user_name = "..."; }; }; }; ... };
//! wait_delay = ...; wait_max_tries = ...;
//! log = { file = "/dev/stderr"; write_log_file = true; write_syslog = false; trace_level = 4; };
//! ```
//!
//! One `slots.slot0` per HSM with the same id and user name makes the members one redundant
//! partition. The provider reads the file only at `C_Initialize`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::crd::{ClusterSpec, Provider};
use crate::names::KEY_PRIMUS_CFG;

/// Primus log level for production (0..7).
const PRIMUS_TRACE_LEVEL: u8 = 4;

/// The ConfigMap data for `provider`: `primus.cfg` for Primus, nothing for a generic module
/// (configured out of band in its image).
pub fn render(provider: Provider, cluster: Option<&ClusterSpec>, partition: &str) -> BTreeMap<String, String> {
    match (provider, cluster) {
        (Provider::Primus, Some(cluster)) => {
            BTreeMap::from([(KEY_PRIMUS_CFG.to_owned(), primus_cfg(cluster, partition))])
        }
        _ => BTreeMap::new(),
    }
}

/// `primus.cfg` for `cluster`. `partition` (`namespace/name`) only goes into the header comment.
pub fn primus_cfg(cluster: &ClusterSpec, partition: &str) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored for that reason only.
    let _ = writeln!(
        out,
        "# Rendered by hsm-operator from HsmPartition {}. Do not edit.",
        comment(partition)
    );
    out.push_str("hsms = {\n");
    for (i, member) in cluster.members.iter().enumerate() {
        let _ = writeln!(out, "  hsm{i} = {{");
        let _ = writeln!(out, "    host = {};", quote(&member.host));
        let _ = writeln!(out, "    port = {};", quote(&member.port.to_string()));
        let _ = writeln!(out, "    priority = {};", member.priority);
        out.push_str("    slots = {\n");
        out.push_str("      slot0 = {\n");
        let _ = writeln!(out, "        id = {};", cluster.slot_id);
        let _ = writeln!(out, "        user_name = {};", quote(&cluster.user));
        out.push_str("      };\n");
        out.push_str("    };\n");
        out.push_str("  };\n");
    }
    out.push_str("};\n");
    if let Some(timeouts) = &cluster.timeouts {
        if let Some(delay) = timeouts.wait_delay_seconds {
            let _ = writeln!(out, "wait_delay = {delay};");
        }
        if let Some(tries) = timeouts.wait_max_tries {
            let _ = writeln!(out, "wait_max_tries = {tries};");
        }
    }
    out.push_str("log = {\n");
    out.push_str("  file = \"/dev/stderr\";\n");
    out.push_str("  write_log_file = true;\n");
    out.push_str("  write_syslog = false;\n");
    let _ = writeln!(out, "  trace_level = {PRIMUS_TRACE_LEVEL};");
    out.push_str("};\n");
    out
}

/// A libconfig string literal: backslash and double quote escaped, control characters as `\xNN`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe inside a `#` comment line.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
#[path = "provider_config_tests.rs"]
mod tests;
