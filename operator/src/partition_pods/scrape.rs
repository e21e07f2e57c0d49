//! `GET http://<pod IP>:<port>/metrics` of one sidecar, with hyper-util's legacy client (the
//! hyper stack the operator serves with): at most [`TIMEOUT`] for the whole exchange and
//! [`MAX_BODY`] bytes of body; anything else (refused, slow, too large, not 200, no gauges) is
//! no report.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::sample::{self, Reported};

/// The whole request, connect to last body byte.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// A sidecar's page is a few KiB; more is not a sidecar's.
pub const MAX_BODY: usize = 256 * 1024;

#[derive(Clone)]
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Default for Scraper {
    fn default() -> Self {
        Scraper::with_timeout(TIMEOUT)
    }
}

impl Scraper {
    pub fn with_timeout(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        // Each pod is asked once a minute: keeping its connection open would only hold sockets.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Scraper { client, timeout }
    }

    /// What the sidecar at `addr` reports, or why not (for the debug log).
    pub async fn reported(&self, addr: SocketAddr) -> Result<Reported, String> {
        let text = tokio::time::timeout(self.timeout, self.page(addr))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        sample::reported(&text).ok_or_else(|| "no generation gauges on the page".to_owned())
    }

    async fn page(&self, addr: SocketAddr) -> Result<String, String> {
        let request = Request::get(format!("http://{addr}/metrics"))
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the page is not UTF-8".to_owned())
    }
}

#[cfg(test)]
#[path = "scrape_tests.rs"]
mod tests;
