//! What one pod may ask of the webhook and what one client may hold of it. Every review is
//! bounded before any work that grows with the request: the annotation lists are counted
//! first, the body is read against a byte budget shared by all requests, and the whole answer
//! (read, decide, respond) has a deadline below the API server's webhook timeout.

use std::time::Duration;

/// Most HsmPartitions one pod may name (`hsmbridge.io/partition`); each is a sidecar.
pub const MAX_PARTITIONS: usize = 16;
/// Most containers one pod asking for injection may have (`containers` + `initContainers`), and
/// most names `hsmbridge.io/containers` may list.
pub const MAX_CONTAINERS: usize = 64;

/// Largest AdmissionReview body accepted. The API server takes request bodies of at most 3 MiB
/// and stores objects of at most 1.5 MiB, so a review of a real pod is far smaller.
pub const MAX_BODY: usize = 4 << 20;
/// Request body bytes all requests together may hold while they are read. A request that
/// would go past it waits (and stops reading from its connection) until others finish or its
/// body deadline passes.
pub const MAX_BUFFERED: usize = 32 << 20;
/// Open connections at a time; further connections wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// HTTP/2 streams (requests) at a time on one connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_CONCURRENT_STREAMS: u32 = 32;
/// HTTP/1 read buffer (request line + headers must fit).
pub const MAX_HTTP1_BUFFER: usize = 64 << 10;
/// HTTP/2 header list size.
pub const MAX_HEADER_LIST: u32 = 64 << 10;

/// TLS handshake, and HTTP/1 request headers (which also bounds an idle keep-alive connection).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight for this long is closed (HTTP/2 has no header
/// timeout that would do it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time to receive a request body, whatever the API server's timeout: it sends the
/// body at once, so only a slow (or hostile) client takes longer.
pub const MAX_BODY_READ: Duration = Duration::from_secs(5);
/// The webhook timeout assumed when the request does not say (`?timeout=` is added by every
/// API server since 1.14; 10 s is both the API server's and the chart's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The API server allows webhook timeouts of 1 to 30 s.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Time kept back from the API server's timeout for the answer to reach it.
const MIN_MARGIN: Duration = Duration::from_millis(250);

/// How long one review may take, from the API server's `timeout` query parameter (Go duration
/// syntax as it sends it: `10s`, `500ms`, `1m0s`): its timeout less a tenth (at least 250 ms),
/// clamped to the 1–30 s the API server allows.
pub fn review_deadline(query: Option<&str>) -> Duration {
    let timeout = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_TIMEOUT)
        .clamp(MIN_TIMEOUT, MAX_TIMEOUT);
    timeout.saturating_sub((timeout / 10).max(MIN_MARGIN))
}

/// How long reading the body may take within a review's deadline.
pub fn body_deadline(review: Duration) -> Duration {
    review.min(MAX_BODY_READ)
}

/// `1m30s`, `10s`, `1.5s`, `500ms`: the units Go's `time.Duration` prints for webhook
/// timeouts. Anything else is `None`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(value * seconds).ok()?)?;
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_follows_the_api_servers_timeout() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(review_deadline(Some("timeout=10s")), ms(9000));
        assert_eq!(review_deadline(Some("timeout=30s")), ms(27000));
        assert_eq!(review_deadline(Some("a=b&timeout=2s")), ms(1750));
        assert_eq!(review_deadline(Some("timeout=1s")), ms(750));
        assert_eq!(review_deadline(Some("timeout=1m0s")), ms(27000));
        assert_eq!(review_deadline(Some("timeout=1500ms")), ms(1250));
        // Out of the API server's range: clamped; unreadable or absent: the default.
        assert_eq!(review_deadline(Some("timeout=5m")), ms(27000));
        assert_eq!(review_deadline(Some("timeout=1ms")), ms(750));
        assert_eq!(review_deadline(Some("timeout=soon")), ms(9000));
        assert_eq!(review_deadline(Some("timeout=")), ms(9000));
        assert_eq!(review_deadline(None), ms(9000));
    }

    #[test]
    fn body_deadline_is_capped() {
        assert_eq!(body_deadline(Duration::from_secs(27)), MAX_BODY_READ);
        assert_eq!(body_deadline(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("1e9s"), None);
    }
}
