//! Typed router configuration (`RouterConfig`), deserialised from YAML and validated before the
//! router subscribes to anything. Defaults are gorouter's (`reference/dea-router-nats.md` §2.1).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::RouterError;

/// Configuration of one router. Every field has gorouter's default, so an empty document is a
/// valid configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// An endpoint not re-registered for this long is pruned (gorouter's
    /// `droplet_stale_threshold`). A registration's own `stale_threshold_in_seconds` may shorten
    /// it, never lengthen it. Advertised as `pruneThresholdInSeconds`. Default 120.
    #[serde(default = "default_prune_threshold_secs")]
    pub prune_threshold_secs: u64,
    /// How often stale endpoints are swept (`prune_stale_droplets_interval`). Default 30.
    #[serde(default = "default_prune_interval_secs")]
    pub prune_interval_secs: u64,
    /// How often registrars should re-register, advertised in `router.start` and the
    /// `router.greet` reply as `minimumRegisterIntervalInSeconds`. Default 20.
    #[serde(default = "default_register_interval_secs")]
    pub register_interval_secs: u64,
    /// Time allowed for a TCP connect to a backend before it counts as failed (gorouter's
    /// `EndpointDialTimeout`). Default 5000.
    #[serde(default = "default_backend_connect_timeout_ms")]
    pub backend_connect_timeout_ms: u64,
    /// After a failed connect, how many *other* endpoints of the pool are tried before the
    /// client gets a 502. Only connect failures are retried: once a request has been sent to a
    /// backend it is never sent again. Default 3.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// How long an endpoint that refused or timed out a connect is passed over by the load
    /// balancer (while other endpoints remain). Default 30.
    #[serde(default = "default_backend_ineligible_secs")]
    pub backend_ineligible_secs: u64,
    /// Idle keep-alive connections kept per backend `host:port`. Default 100 (gorouter's fixed
    /// per-host cap). 0 disables connection reuse.
    #[serde(default = "default_max_idle_connections_per_backend")]
    pub max_idle_connections_per_backend: usize,
    /// When the last endpoint of a route is unregistered or pruned, the route is kept this long
    /// with an empty pool, answering 503 `no_endpoints` instead of 404 `unknown_route`
    /// (gorouter's `empty_pool_timeout` with `empty_pool_response_code_503`). Default 0: the
    /// route disappears at once.
    #[serde(default)]
    pub empty_pool_timeout_secs: u64,
    /// This router's id in `router.start`. Default: `0-<random uuid>`, gorouter's
    /// `<index>-<uuid>` shape.
    #[serde(default)]
    pub id: Option<String>,
    /// Addresses of this router advertised in `router.start`. Default `["127.0.0.1"]`.
    #[serde(default = "default_hosts")]
    pub hosts: Vec<String>,
    /// UDP address of the loggregator's ingress. When set, every request routed to an app's
    /// endpoint sends one `[RTR/<index>]` access-log envelope to it. Default: none, no app log
    /// emission.
    #[serde(default)]
    pub loggregator_ingress: Option<SocketAddr>,
    /// This router's index: the instance id of its envelopes (`[RTR/<index>]`) and the prefix
    /// of its default id. Default 0.
    #[serde(default)]
    pub index: u32,
}

fn default_prune_threshold_secs() -> u64 {
    120
}
fn default_prune_interval_secs() -> u64 {
    30
}
fn default_register_interval_secs() -> u64 {
    20
}
fn default_backend_connect_timeout_ms() -> u64 {
    5000
}
fn default_max_retries() -> u32 {
    3
}
fn default_backend_ineligible_secs() -> u64 {
    30
}
fn default_max_idle_connections_per_backend() -> usize {
    100
}
fn default_hosts() -> Vec<String> {
    vec!["127.0.0.1".to_owned()]
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            prune_threshold_secs: default_prune_threshold_secs(),
            prune_interval_secs: default_prune_interval_secs(),
            register_interval_secs: default_register_interval_secs(),
            backend_connect_timeout_ms: default_backend_connect_timeout_ms(),
            max_retries: default_max_retries(),
            backend_ineligible_secs: default_backend_ineligible_secs(),
            max_idle_connections_per_backend: default_max_idle_connections_per_backend(),
            empty_pool_timeout_secs: 0,
            id: None,
            hosts: default_hosts(),
            loggregator_ingress: None,
            index: 0,
        }
    }
}

impl RouterConfig {
    /// Checks the values that YAML types cannot: non-zero intervals, a register interval
    /// shorter than the prune threshold (or every route would flap), at least one host.
    pub fn validate(&self) -> Result<(), RouterError> {
        let invalid = |message: String| Err(RouterError::Config(message));
        for (name, value) in [
            ("prune_threshold_secs", self.prune_threshold_secs),
            ("prune_interval_secs", self.prune_interval_secs),
            ("register_interval_secs", self.register_interval_secs),
            (
                "backend_connect_timeout_ms",
                self.backend_connect_timeout_ms,
            ),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be greater than 0"));
            }
        }
        if self.register_interval_secs >= self.prune_threshold_secs {
            return invalid(format!(
                "register_interval_secs ({}) must be less than prune_threshold_secs ({}), or \
                 routes expire between registrations",
                self.register_interval_secs, self.prune_threshold_secs
            ));
        }
        if self.hosts.is_empty() || self.hosts.iter().any(|host| host.trim().is_empty()) {
            return invalid("hosts must list at least one non-empty address".to_owned());
        }
        if matches!(&self.id, Some(id) if id.trim().is_empty()) {
            return invalid("id must not be empty when given".to_owned());
        }
        Ok(())
    }

    pub(crate) fn prune_threshold(&self) -> Duration {
        Duration::from_secs(self.prune_threshold_secs)
    }

    pub(crate) fn prune_interval(&self) -> Duration {
        Duration::from_secs(self.prune_interval_secs)
    }

    pub(crate) fn backend_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_connect_timeout_ms)
    }

    pub(crate) fn backend_ineligible(&self) -> Duration {
        Duration::from_secs(self.backend_ineligible_secs)
    }

    pub(crate) fn empty_pool_timeout(&self) -> Duration {
        Duration::from_secs(self.empty_pool_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_gives_gorouter_defaults() {
        let config: RouterConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.prune_threshold_secs, 120);
        assert_eq!(config.prune_interval_secs, 30);
        assert_eq!(config.register_interval_secs, 20);
        assert_eq!(config.max_retries, 3);
        assert_eq!(config.hosts, vec!["127.0.0.1".to_owned()]);
        assert_eq!(config.loggregator_ingress, None);
        assert_eq!(config.index, 0);
        config.validate().unwrap();
    }

    #[test]
    fn app_log_emission_is_configured_by_address_and_index() {
        let config: RouterConfig =
            serde_json::from_str(r#"{"loggregator_ingress":"127.0.0.1:3457","index":2}"#).unwrap();
        assert_eq!(
            config.loggregator_ingress,
            Some("127.0.0.1:3457".parse().unwrap())
        );
        assert_eq!(config.index, 2);
        assert!(
            serde_json::from_str::<RouterConfig>(r#"{"loggregator_ingress":"nowhere"}"#).is_err()
        );
    }

    #[test]
    fn unknown_fields_and_inconsistent_intervals_are_rejected() {
        assert!(serde_json::from_str::<RouterConfig>(r#"{"prune_treshold_secs":1}"#).is_err());
        let config = RouterConfig {
            register_interval_secs: 120,
            ..RouterConfig::default()
        };
        assert!(config.validate().is_err());
        let config = RouterConfig {
            hosts: vec![],
            ..RouterConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
