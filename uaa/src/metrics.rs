//! Prometheus counters served at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters of this server.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) http_requests: AtomicU64,
    tokens_password: AtomicU64,
    tokens_refresh_token: AtomicU64,
    tokens_client_credentials: AtomicU64,
    pub(crate) token_errors: AtomicU64,
}

impl Metrics {
    pub(crate) fn token_issued(&self, grant_type: &str) {
        let counter = match grant_type {
            "password" => &self.tokens_password,
            "refresh_token" => &self.tokens_refresh_token,
            _ => &self.tokens_client_credentials,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of all counters.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP uaa_tokens_issued_total Access tokens issued, by grant type.\n");
        out.push_str("# TYPE uaa_tokens_issued_total counter\n");
        for (grant_type, counter) in [
            ("password", &self.tokens_password),
            ("refresh_token", &self.tokens_refresh_token),
            ("client_credentials", &self.tokens_client_credentials),
        ] {
            let _ = writeln!(
                out,
                "uaa_tokens_issued_total{{grant_type=\"{grant_type}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP uaa_token_errors_total Token requests answered with an error.\n");
        out.push_str("# TYPE uaa_token_errors_total counter\n");
        let _ = writeln!(
            out,
            "uaa_token_errors_total {}",
            self.token_errors.load(Ordering::Relaxed)
        );
        out.push_str("# HELP uaa_http_requests_total HTTP requests received.\n");
        out.push_str("# TYPE uaa_http_requests_total counter\n");
        let _ = writeln!(
            out,
            "uaa_http_requests_total {}",
            self.http_requests.load(Ordering::Relaxed)
        );
        out
    }
}
