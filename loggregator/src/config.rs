//! Typed loggregator configuration (`LoggregatorConfig`), deserialised from YAML with unknown
//! fields rejected and validated before anything is bound or spawned.

use std::time::Duration;

use serde::Deserialize;

use crate::error::LoggregatorError;

/// Configuration of one loggregator. Every field but the UAA and CC addresses has a default.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggregatorConfig {
    /// Envelopes kept per source id (app GUID); the oldest are dropped first (log-cache's
    /// `max_per_source`). Default 100000.
    #[serde(default = "default_max_envelopes_per_source")]
    pub max_envelopes_per_source: usize,
    /// Bound on the memory all buffers use together, in bytes of stored envelope JSON plus
    /// bookkeeping. Above it the oldest envelopes of the largest source are dropped.
    /// Default 268435456 (256 MiB).
    #[serde(default = "default_max_memory_bytes")]
    pub max_memory_bytes: usize,
    /// An envelope evicted before it is this old counts as *dropped* (the source produces more
    /// than its buffer holds for this long) and is reported in the source's own stream with an
    /// `LGR` line; older evictions are ordinary expiry. Default 60.
    #[serde(default = "default_min_retention_secs")]
    pub min_retention_secs: u64,
    /// Shortest interval between two `LGR` drop notices in one source. Default 10.
    #[serde(default = "default_drop_notice_interval_secs")]
    pub drop_notice_interval_secs: u64,
    /// Kernel receive buffer requested for the UDP ingress socket (the kernel caps it at
    /// `net.core.rmem_max`). Default 8388608 (8 MiB).
    #[serde(default = "default_ingress_receive_buffer_bytes")]
    pub ingress_receive_buffer_bytes: usize,
    /// Threads receiving and parsing ingress datagrams on the one socket. Default 2.
    #[serde(default = "default_ingress_threads")]
    pub ingress_threads: usize,
    /// UAA base URL; token keys are read from `{uaa_url}/token_keys` and tokens must carry
    /// `iss = {uaa_url}/oauth/token`. Required unless `skip_authorization`.
    #[serde(default)]
    pub uaa_url: Option<String>,
    /// Cloud Controller base URL: asked whether a caller may see an app
    /// (`GET /v3/apps/:guid` with the caller's token) and polled for syslog drains.
    /// Required unless `skip_authorization` (and then needed only for drains).
    #[serde(default)]
    pub cc_url: Option<String>,
    /// How long a positive "this token may read this source" answer from the Cloud Controller
    /// is reused. Default 60 (log-cache's CAPI cache expiry).
    #[serde(default = "default_authorization_cache_secs")]
    pub authorization_cache_secs: u64,
    /// Serve the read API without any token check. For benchmarks and private test setups
    /// only. Default false.
    #[serde(default)]
    pub skip_authorization: bool,
    /// Basic-auth credentials of the Cloud Controller's internal API
    /// (`/internal/v4/syslog_drain_urls`). Without them syslog drains are off.
    #[serde(default)]
    pub internal_api: Option<InternalApiCredentials>,
    /// How often the drain list is polled. Default 5.
    #[serde(default = "default_syslog_drain_poll_interval_secs")]
    pub syslog_drain_poll_interval_secs: u64,
    /// `batch_size` of each drain-list page. Default 1000.
    #[serde(default = "default_syslog_drain_batch_size")]
    pub syslog_drain_batch_size: u32,
    /// PEM file of CA certificates trusted for `syslog-tls://` and `https://` drains in
    /// addition to the system's roots. Default none.
    #[serde(default)]
    pub syslog_drain_ca_file: Option<String>,
    /// Envelopes queued per drain while it is slow or down; the oldest are dropped first
    /// (loggregator-agent's 10,000-envelope diode). Default 10000.
    #[serde(default = "default_syslog_drain_queue_size")]
    pub syslog_drain_queue_size: usize,
}

/// Basic-auth credentials for the Cloud Controller's internal endpoints.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalApiCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for InternalApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalApiCredentials")
            .field("username", &self.username)
            .field("password", &"[hidden]")
            .finish()
    }
}

impl std::fmt::Debug for LoggregatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggregatorConfig")
            .field("max_envelopes_per_source", &self.max_envelopes_per_source)
            .field("max_memory_bytes", &self.max_memory_bytes)
            .field("uaa_url", &self.uaa_url)
            .field("cc_url", &self.cc_url)
            .field("skip_authorization", &self.skip_authorization)
            .field("internal_api", &self.internal_api)
            .finish_non_exhaustive()
    }
}

fn default_max_envelopes_per_source() -> usize {
    100_000
}
fn default_max_memory_bytes() -> usize {
    256 * 1024 * 1024
}
fn default_min_retention_secs() -> u64 {
    60
}
fn default_drop_notice_interval_secs() -> u64 {
    10
}
fn default_ingress_receive_buffer_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_ingress_threads() -> usize {
    2
}
fn default_authorization_cache_secs() -> u64 {
    60
}
fn default_syslog_drain_poll_interval_secs() -> u64 {
    5
}
fn default_syslog_drain_batch_size() -> u32 {
    1000
}
fn default_syslog_drain_queue_size() -> usize {
    10_000
}

impl Default for LoggregatorConfig {
    fn default() -> Self {
        LoggregatorConfig {
            max_envelopes_per_source: default_max_envelopes_per_source(),
            max_memory_bytes: default_max_memory_bytes(),
            min_retention_secs: default_min_retention_secs(),
            drop_notice_interval_secs: default_drop_notice_interval_secs(),
            ingress_receive_buffer_bytes: default_ingress_receive_buffer_bytes(),
            ingress_threads: default_ingress_threads(),
            uaa_url: None,
            cc_url: None,
            authorization_cache_secs: default_authorization_cache_secs(),
            skip_authorization: false,
            internal_api: None,
            syslog_drain_poll_interval_secs: default_syslog_drain_poll_interval_secs(),
            syslog_drain_batch_size: default_syslog_drain_batch_size(),
            syslog_drain_queue_size: default_syslog_drain_queue_size(),
            syslog_drain_ca_file: None,
        }
    }
}

impl LoggregatorConfig {
    /// Checks what the YAML types cannot: non-zero sizes and intervals, parseable URLs, the
    /// UAA and CC addresses when authorization is on.
    pub fn validate(&self) -> Result<(), LoggregatorError> {
        let invalid = |message: String| Err(LoggregatorError::Config(message));
        for (name, value) in [
            ("max_envelopes_per_source", self.max_envelopes_per_source),
            ("max_memory_bytes", self.max_memory_bytes),
            ("ingress_threads", self.ingress_threads),
            (
                "syslog_drain_poll_interval_secs",
                self.syslog_drain_poll_interval_secs as usize,
            ),
            (
                "syslog_drain_batch_size",
                self.syslog_drain_batch_size as usize,
            ),
            ("syslog_drain_queue_size", self.syslog_drain_queue_size),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be greater than 0"));
            }
        }
        for (name, value) in [("uaa_url", &self.uaa_url), ("cc_url", &self.cc_url)] {
            if let Some(value) = value {
                match url::Url::parse(value) {
                    Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {}
                    _ => return invalid(format!("{name} must be an http(s) URL, got '{value}'")),
                }
            }
        }
        if !self.skip_authorization {
            if self.uaa_url.is_none() {
                return invalid("uaa_url is required unless skip_authorization is true".into());
            }
            if self.cc_url.is_none() {
                return invalid("cc_url is required unless skip_authorization is true".into());
            }
        }
        if self.internal_api.is_some() && self.cc_url.is_none() {
            return invalid("internal_api needs cc_url (syslog drains are read from it)".into());
        }
        Ok(())
    }

    pub(crate) fn uaa_base(&self) -> Option<String> {
        self.uaa_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned())
    }

    pub(crate) fn cc_base(&self) -> Option<String> {
        self.cc_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned())
    }

    pub(crate) fn min_retention(&self) -> Duration {
        Duration::from_secs(self.min_retention_secs)
    }

    pub(crate) fn drop_notice_interval(&self) -> Duration {
        Duration::from_secs(self.drop_notice_interval_secs)
    }
}
