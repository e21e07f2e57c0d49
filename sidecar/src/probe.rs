//! `hsm-sidecar probe`: asks a sidecar's own health server (`serve --health-addr`, `health.rs`)
//! over `grpc.health.v1.Health/Check` whether it serves, and says so in its exit code.
//!
//! This is the kubelet's exec readiness probe where the API server has no gRPC probes
//! (Kubernetes < 1.24; the webhook, `operator/src/webhook/`, picks one or the other), so
//! readiness follows the backend (token present, held PIN not rejected) there too. It runs
//! inside the sidecar container every few seconds: one current-thread runtime, one connection,
//! one call, bounded by `--timeout-secs`.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The health server to ask (`serve --health-addr`), e.g. 127.0.0.1:17310.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    addr: String,
    /// Give up (and fail) after this many seconds: connecting and the answer together.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout_secs: u64,
}

/// What the health server said, or why there is no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Serving,
    /// An answer other than SERVING (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN or a number).
    NotServing(String),
    /// No answer: not listening, not gRPC, an error status, or the timeout.
    Unreachable(String),
}

impl Outcome {
    /// The one line the probe prints (the kubelet shows it in the pod's events on failure).
    pub fn line(&self, addr: &str) -> String {
        match self {
            Outcome::Serving => format!("hsm-sidecar at {addr} is SERVING"),
            Outcome::NotServing(status) => format!("hsm-sidecar at {addr} is {status}: its backend cannot serve (token unreachable or the held PIN rejected; see the sidecar's log)"),
            Outcome::Unreachable(why) => format!("hsm-sidecar at {addr} is unreachable: {why}"),
        }
    }
}

/// Exit code 0 when SERVING, 1 otherwise, after printing one line.
pub fn run(args: ProbeArgs) -> ExitCode {
    let outcome = check(&args.addr, Duration::from_secs(args.timeout_secs));
    println!("{}", outcome.line(&args.addr));
    if outcome == Outcome::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Asks `addr` for the overall status (service `""`) within `timeout`.
pub fn check(addr: &str, timeout: Duration) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return Outcome::Unreachable(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        match tokio::time::timeout(timeout, ask(addr)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Unreachable(format!("no answer within {} s", timeout.as_secs())),
        }
    })
}

/// One connection, one call; [`check`] bounds both together.
async fn ask(addr: &str) -> Outcome {
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e,
        Err(e) => return Outcome::Unreachable(format!("not a HOST:PORT: {e}")),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return Outcome::Unreachable(format!("cannot connect: {}", chain(&e))),
    };
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await;
    match answer {
        Ok(response) => match ServingStatus::try_from(response.into_inner().status) {
            Ok(ServingStatus::Serving) => Outcome::Serving,
            Ok(other) => Outcome::NotServing(other.as_str_name().to_owned()),
            Err(_) => Outcome::NotServing("an unknown status".to_owned()),
        },
        Err(status) => Outcome::Unreachable(format!(
            "grpc.health.v1.Health/Check failed: {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// An error with its causes (tonic's own text is only "transport error").
fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        // hyper's and tonic's layers often repeat their cause's text.
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// `HOST:PORT` with a non-empty host and a port number.
fn parse_addr(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err("expected HOST:PORT, e.g. 127.0.0.1:17310".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(parse_addr("127.0.0.1:17310").is_ok());
        assert!(parse_addr("[::1]:17310").is_ok());
        assert!(parse_addr("localhost:1").is_ok());
        for bad in ["127.0.0.1", ":17310", "127.0.0.1:x", "127.0.0.1:70000", ""] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_say_which() {
        assert_eq!(Outcome::Serving.line("a:1"), "hsm-sidecar at a:1 is SERVING");
        assert!(Outcome::NotServing("NOT_SERVING".into())
            .line("a:1")
            .starts_with("hsm-sidecar at a:1 is NOT_SERVING: "));
        assert_eq!(
            Outcome::Unreachable("no answer within 3 s".into()).line("a:1"),
            "hsm-sidecar at a:1 is unreachable: no answer within 3 s"
        );
    }
}
