//! The `shim+obs` backend's proof that it observed the run: one scrape of
//! its sidecar's `/metrics` after the run (nothing scrapes while it is
//! measured) and the line count of its audit file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::servers::Observe;

/// What the sidecar recorded over the whole run (warm-ups and setup included).
pub struct Observed {
    /// `hsmbridge_sidecar_calls_total{function="C_Sign"}`, all results.
    pub sign_calls: u64,
    /// The same for `C_GenerateRandom`.
    pub random_calls: u64,
    pub audit_lines_counted: u64,
    pub audit_dropped: u64,
    /// Lines in the audit file.
    pub audit_file_lines: u64,
}

/// A loopback address no one listens on now (the sidecar binds it next).
pub fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))
}

/// `GET /metrics` (plain HTTP/1.1): the body.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET /metrics: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("GET /metrics: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("GET /metrics: {}", text.lines().next().unwrap_or("no answer"))),
    }
}

/// The sum of every series of metric `name` whose labels contain `label` (all
/// of them when `label` is empty).
fn sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            if !labels.contains(label) {
                return None;
            }
            value.split(' ').next()?.parse::<f64>().ok()
        })
        .sum::<f64>() as u64
}

fn lines_in(path: &std::path::Path) -> Result<u64, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// Scrapes once the audit file holds every line the sidecar counted as
/// written (its writer flushes when its queue runs empty), or after 2 s.
pub fn collect(o: &Observe) -> Result<Observed, String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = scrape(o.metrics_addr)?;
        let observed = Observed {
            sign_calls: sum(&text, "hsmbridge_sidecar_calls_total", "function=\"C_Sign\""),
            random_calls: sum(&text, "hsmbridge_sidecar_calls_total", "function=\"C_GenerateRandom\""),
            audit_lines_counted: sum(&text, "hsmbridge_sidecar_audit_lines_total", ""),
            audit_dropped: sum(&text, "hsmbridge_sidecar_audit_dropped_total", ""),
            audit_file_lines: lines_in(&o.audit_file)?,
        };
        if observed.audit_file_lines >= observed.audit_lines_counted || Instant::now() > deadline {
            return Ok(observed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
