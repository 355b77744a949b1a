//! gorouter's NATS messages: route registration (`mbus.RegistryMessage`) and the router's
//! `router.start` / `router.greet` announcement (`common.RouterStart`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `router.register` / `router.unregister`: the URIs served by one backend `host:port`.
/// Unknown fields are ignored so that real route registrars' messages are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RegistryMessage {
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// "http1" (default) or "http2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub uris: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The app guid, sent to backends as `X-CF-ApplicationID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The instance guid, sent to backends as `X-CF-InstanceID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_instance_id: Option<String>,
    /// The instance index (a decimal string in CF), sent as `X-CF-InstanceIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_instance_index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_threshold_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_updated_at_ns: Option<i64>,
    /// Legacy DEA field: the registering DEA's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dea: Option<String>,
}

/// `router.start`, and the reply to `router.greet`: how often registrars must re-register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterStart {
    pub id: String,
    pub hosts: Vec<String>,
    pub minimum_register_interval_in_seconds: u64,
    pub prune_threshold_in_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_start_uses_gorouter_field_names() {
        let start = RouterStart {
            id: "0-abc".into(),
            hosts: vec!["127.0.0.1".into()],
            minimum_register_interval_in_seconds: 20,
            prune_threshold_in_seconds: 120,
        };
        assert_eq!(
            serde_json::to_string(&start).unwrap(),
            r#"{"id":"0-abc","hosts":["127.0.0.1"],"minimumRegisterIntervalInSeconds":20,"pruneThresholdInSeconds":120}"#
        );
    }

    #[test]
    fn registry_messages_from_a_legacy_dea_parse() {
        let message: RegistryMessage = serde_json::from_str(
            r#"{"dea":"d1","app":"a1","uris":["x.apps.localhost"],"host":"10.0.0.1","port":61001,
                "tags":{"component":"dea-0"},"private_instance_id":"i1","unknown":true}"#,
        )
        .unwrap();
        assert_eq!(message.port, 61001);
        assert_eq!(message.app.as_deref(), Some("a1"));
        assert_eq!(message.tags["component"], "dea-0");
    }
}
