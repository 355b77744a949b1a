//! Prometheus counters served at `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Request counters by method and status.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, method: &str, status: u16) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method.to_owned(), status)).or_default() += 1;
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# HELP cloud_controller_http_requests_total HTTP requests answered, by method and status.\n\
             # TYPE cloud_controller_http_requests_total counter\n",
        );
        if let Ok(requests) = self.requests.lock() {
            for ((method, status), count) in requests.iter() {
                text.push_str(&format!(
                    "cloud_controller_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}\n"
                ));
            }
        }
        text
    }
}
