//! Text from outside (a vendor tool's output, an API server's error) may
//! echo what it was given. Before such text goes into a log line, an error or
//! a Secret annotation, every known secret in it is replaced.

/// What a secret is replaced with.
pub const MARK: &str = "<redacted>";

/// `text` with every occurrence of each (non-empty, UTF-8) secret replaced by [`MARK`].
pub fn redact(text: &str, secrets: &[&[u8]]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let Ok(secret) = std::str::from_utf8(secret) else {
            continue;
        };
        if !secret.is_empty() && out.contains(secret) {
            out = out.replace(secret, MARK);
        }
    }
    out
}

/// At most `max` characters of `text` (its end, where tools put their
/// verdict), on one line, for a human-sized message.
pub fn tail(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let joined = lines.join(" | ");
    let count = joined.chars().count();
    if count <= max {
        joined
    } else {
        let skip = count - max;
        format!("…{}", joined.chars().skip(skip).collect::<String>())
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
