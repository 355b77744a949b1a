//! Counters of the loggregator and their Prometheus text rendering (`/metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::drains::DrainSnapshot;
use crate::store::StoreStats;

/// Process-wide counters; every field is monotonic.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) ingress_datagrams: AtomicU64,
    pub(crate) ingress_envelopes: AtomicU64,
    pub(crate) ingress_invalid_datagrams: AtomicU64,
    pub(crate) ingress_lost_datagrams: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) read_errors: AtomicU64,
    pub(crate) unauthorized_reads: AtomicU64,
    pub(crate) drain_polls: AtomicU64,
    pub(crate) drain_poll_errors: AtomicU64,
    /// Envelopes emitters reported dropping, per source id (from their drop notices).
    pub(crate) emitter_drops: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Sources whose emitter drops are counted one by one; more are counted under `""`.
const MAX_EMITTER_DROP_SOURCES: usize = 10_000;

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts envelopes an emitter dropped for `source_id` (rare: only on drop notices).
    pub(crate) fn add_emitter_drops(&self, source_id: &str, dropped: u64) {
        let mut drops = self
            .emitter_drops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = if drops.contains_key(source_id) || drops.len() < MAX_EMITTER_DROP_SOURCES {
            source_id
        } else {
            ""
        };
        *drops.entry(key.to_owned()).or_default() += dropped;
    }

    pub(crate) fn render(&self, store: &StoreStats, drains: &[DrainSnapshot]) -> String {
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        };
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        counter(
            "loggregator_ingress_datagrams_total",
            "UDP datagrams received on the ingress socket.",
            load(&self.ingress_datagrams),
        );
        counter(
            "loggregator_ingress_envelopes_total",
            "Envelopes received and stored.",
            load(&self.ingress_envelopes),
        );
        counter(
            "loggregator_ingress_invalid_datagrams_total",
            "Datagrams that did not parse as an ingress batch.",
            load(&self.ingress_invalid_datagrams),
        );
        counter(
            "loggregator_ingress_lost_datagrams_total",
            "Datagrams lost in transit, from gaps in the emitters' sequence numbers.",
            load(&self.ingress_lost_datagrams),
        );
        counter(
            "loggregator_dropped_envelopes_total",
            "Envelopes evicted before min_retention_secs (the source outran its buffer).",
            store.dropped_total,
        );
        counter(
            "loggregator_expired_envelopes_total",
            "Envelopes evicted from the buffers for any reason.",
            store.expired_total,
        );
        counter(
            "loggregator_memory_evictions_total",
            "Envelopes evicted because of the global memory bound.",
            store.memory_evictions_total,
        );
        counter(
            "loggregator_reads_total",
            "log-cache read requests served.",
            load(&self.reads),
        );
        counter(
            "loggregator_read_errors_total",
            "log-cache read requests rejected for bad parameters.",
            load(&self.read_errors),
        );
        counter(
            "loggregator_unauthorized_reads_total",
            "log-cache requests refused by authorization.",
            load(&self.unauthorized_reads),
        );
        counter(
            "loggregator_drain_polls_total",
            "Polls of the Cloud Controller's syslog drain list.",
            load(&self.drain_polls),
        );
        counter(
            "loggregator_drain_poll_errors_total",
            "Failed polls of the Cloud Controller's syslog drain list.",
            load(&self.drain_poll_errors),
        );
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            "loggregator_stored_envelopes",
            "Envelopes currently buffered.",
            store.envelopes,
        );
        gauge(
            "loggregator_stored_bytes",
            "Bytes currently buffered (envelope JSON plus bookkeeping).",
            store.bytes,
        );
        gauge(
            "loggregator_sources",
            "Source ids with a buffer.",
            store.sources,
        );
        gauge(
            "loggregator_drains",
            "Syslog drains being served.",
            drains.len() as u64,
        );
        let _ = writeln!(
            out,
            "# HELP loggregator_source_dropped_envelopes_total Envelopes dropped per source id."
        );
        let _ = writeln!(
            out,
            "# TYPE loggregator_source_dropped_envelopes_total counter"
        );
        for (source_id, dropped) in &store.dropped_by_source {
            let _ = writeln!(
                out,
                "loggregator_source_dropped_envelopes_total{{source_id=\"{}\"}} {dropped}",
                escape_label(source_id)
            );
        }
        let _ = writeln!(
            out,
            "# HELP loggregator_emitter_dropped_envelopes_total Envelopes emitters dropped before sending (socket full, loggregator absent, too large), per source id, as their drop notices reported."
        );
        let _ = writeln!(
            out,
            "# TYPE loggregator_emitter_dropped_envelopes_total counter"
        );
        for (source_id, dropped) in self
            .emitter_drops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "loggregator_emitter_dropped_envelopes_total{{source_id=\"{}\"}} {dropped}",
                escape_label(source_id)
            );
        }
        for (name, help) in [
            (
                "loggregator_drain_sent_envelopes_total",
                "Envelopes written to a syslog drain.",
            ),
            (
                "loggregator_drain_dropped_envelopes_total",
                "Envelopes a syslog drain's queue dropped.",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for drain in drains {
                let value = if name.contains("sent") {
                    drain.sent
                } else {
                    drain.dropped
                };
                let _ = writeln!(
                    out,
                    "{name}{{app_id=\"{}\",drain_url=\"{}\"}} {value}",
                    escape_label(&drain.app_id),
                    escape_label(&drain.url)
                );
            }
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
