//! The classic DEA protocol between the Cloud Controller, health management and DEAs
//! (dea_ng's `protocol.rb` and CC's `lib/cloud_controller/dea/*`). Field names are CF's.
//! Blobs travel by URI: the Cloud Controller hands out download and upload URIs (with their
//! credentials) and the DEA never sees the blob store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Resource limits of a container: memory and disk in MB, open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Limits {
    pub mem: u64,
    pub disk: u64,
    pub fds: u64,
}

/// `dea.shutdown`: a DEA's goodbye; it takes no more work and its instances are going away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeaShutdown {
    pub id: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub app_id_to_count: BTreeMap<String, u64>,
}

/// `dea.advertise`: a DEA's identity and spare capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeaAdvertise {
    pub id: String,
    pub stacks: Vec<String>,
    /// Where the DEA's own HTTP endpoints (if any) are served.
    #[serde(default)]
    pub url: Option<String>,
    /// MB.
    pub available_memory: i64,
    /// MB.
    pub available_disk: i64,
    #[serde(default)]
    pub app_id_to_count: BTreeMap<String, u64>,
    #[serde(default)]
    pub placement_properties: PlacementProperties,
}

/// Where a DEA sits, for spreading an app across zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PlacementProperties {
    #[serde(default)]
    pub zone: Option<String>,
}

/// `dea.<id>.start`: run one instance of a droplet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartMessage {
    /// The app guid.
    pub droplet: String,
    pub name: String,
    pub stack: String,
    pub uris: Vec<String>,
    /// Droplet SHA-1: DEAs cache droplets by it.
    pub sha1: String,
    /// Where to download the droplet (`.tgz`).
    #[serde(rename = "executableUri")]
    pub executable_uri: String,
    /// The process version: changes on restart/update; instances of older versions are stale.
    pub version: String,
    pub index: u32,
    pub limits: Limits,
    /// User environment, `K=V` strings, in order.
    #[serde(default)]
    pub env: Vec<String>,
    /// Overrides the droplet's detected start command.
    #[serde(default)]
    pub start_command: Option<String>,
    /// Seconds the instance has to pass its health check.
    #[serde(default)]
    pub health_check_timeout: Option<u64>,
    /// `port` (default), `process` or `http`.
    #[serde(default)]
    pub health_check_type: Option<String>,
    #[serde(default)]
    pub health_check_http_endpoint: Option<String>,
    /// `VCAP_APPLICATION` as CC builds it; the DEA adds the instance fields.
    #[serde(default)]
    pub vcap_application: serde_json::Value,
    /// `VCAP_SERVICES` entries, label → bindings.
    #[serde(default)]
    pub services: serde_json::Value,
    /// Credentials the DEA sends with `X-CF-*` headers are not needed; kept for CF parity.
    #[serde(default)]
    pub cc_partition: Option<String>,
}

/// `staging.<id>.start` (request/reply): stage a package into a droplet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagingRequest {
    pub app_id: String,
    /// The build guid; replies and logs carry it.
    pub task_id: String,
    pub stack: String,
    pub properties: StagingProperties,
    /// Package (`.zip`) download URI.
    pub download_uri: String,
    /// Where to POST the droplet (`.tgz`).
    pub upload_uri: String,
    #[serde(default)]
    pub buildpack_cache_download_uri: Option<String>,
    #[serde(default)]
    pub buildpack_cache_upload_uri: Option<String>,
    /// Admin buildpacks in position order, for detection.
    #[serde(default)]
    pub admin_buildpacks: Vec<AdminBuildpack>,
    /// When present, the DEA starts this instance once staging succeeds.
    #[serde(default)]
    pub start_message: Option<StartMessage>,
}

/// What the app asks of staging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagingProperties {
    /// Buildpack names (admin buildpacks) or git URLs, in order; empty means auto-detect.
    #[serde(default)]
    pub buildpacks: Vec<String>,
    #[serde(default)]
    pub resources: Option<Limits>,
    /// `K=V` strings.
    #[serde(default)]
    pub environment: Vec<String>,
    #[serde(default)]
    pub services: serde_json::Value,
    #[serde(default)]
    pub meta: serde_json::Value,
}

/// An admin buildpack the DEA may download (by `key`, cached) and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminBuildpack {
    pub key: String,
    pub name: String,
    pub url: String,
}

/// Reply to [`StagingRequest`]: first after setup (streaming log URL), then the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagingResponse {
    pub task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_streaming_log_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_buildpack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpack_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub droplet_sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_start_command: Option<String>,
    /// Process types from `bin/release` or the `Procfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procfile: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// A staging failure, e.g. `NoAppDetectedError`, with the user-facing message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<StagingErrorInfo>,
}

/// The machine-readable side of a staging failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingErrorInfo {
    /// e.g. `NoAppDetectedError`, `BuildpackCompileFailed`, `StagingError`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// `staging.stop`: cancel staging of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingStop {
    pub app_id: String,
}

/// `dea.stop`: stop the matching instances (only `droplet` given: all of the app's instances).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeaStop {
    pub droplet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<InstanceState>>,
}

/// `dea.update`: new routes (and version) for an app's running instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeaUpdate {
    pub droplet: String,
    pub uris: Vec<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// `dea.find.droplet` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FindDroplet {
    pub droplet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<InstanceState>>,
    #[serde(default)]
    pub include_stats: bool,
}

/// One instance, in reply to [`FindDroplet`] (one reply per matching instance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindDropletResponse {
    pub dea: String,
    pub droplet: String,
    pub version: String,
    pub instance: String,
    pub index: u32,
    pub state: InstanceState,
    /// Seconds since the epoch (float in CF).
    pub state_timestamp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<InstanceStats>,
}

/// Live figures of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStats {
    pub name: String,
    pub uris: Vec<String>,
    pub host: String,
    pub port: u16,
    /// Seconds.
    pub uptime: u64,
    /// Bytes.
    pub mem_quota: u64,
    /// Bytes.
    pub disk_quota: u64,
    pub fds_quota: u64,
    pub usage: Usage,
}

/// Resource usage sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// RFC 3339.
    pub time: String,
    /// Fraction of one core (0.25 = 25 %).
    pub cpu: f64,
    /// Bytes.
    pub mem: u64,
    /// Bytes.
    pub disk: u64,
}

/// Instance lifecycle states as the DEA names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    Born,
    Starting,
    Running,
    Stopping,
    Stopped,
    Crashed,
    Resuming,
    Evacuating,
    Deleted,
}

/// `dea.heartbeat`: every instance a DEA holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub dea: String,
    pub droplets: Vec<InstanceHeartbeat>,
}

/// One instance in a [`Heartbeat`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceHeartbeat {
    #[serde(default)]
    pub cc_partition: Option<String>,
    pub droplet: String,
    pub version: String,
    pub instance: String,
    pub index: u32,
    pub state: InstanceState,
    pub state_timestamp: f64,
}

/// Why an instance exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExitReason {
    Stopped,
    Crashed,
    DeaShutdown,
    DeaEvacuation,
}

/// `droplet.exited`: an instance is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropletExited {
    #[serde(default)]
    pub cc_partition: Option<String>,
    pub droplet: String,
    pub version: String,
    pub instance: String,
    pub index: u32,
    pub reason: ExitReason,
    #[serde(default)]
    pub exit_status: Option<i32>,
    /// e.g. `APP/PROC/WEB: Exited with status 1`, `out of memory`.
    #[serde(default)]
    pub exit_description: Option<String>,
    #[serde(default)]
    pub crash_timestamp: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_reasons_use_cf_spelling() {
        assert_eq!(
            serde_json::to_string(&InstanceState::Running).unwrap(),
            r#""RUNNING""#
        );
        assert_eq!(
            serde_json::to_string(&ExitReason::DeaShutdown).unwrap(),
            r#""DEA_SHUTDOWN""#
        );
    }

    #[test]
    fn start_message_keeps_cf_keys() {
        let message = StartMessage {
            droplet: "app".into(),
            name: "site".into(),
            stack: "kiln-host".into(),
            uris: vec!["site.apps.localhost".into()],
            sha1: "abc".into(),
            executable_uri: "http://cc/droplet".into(),
            version: "v1".into(),
            index: 2,
            limits: Limits {
                mem: 64,
                disk: 256,
                fds: 16384,
            },
            env: vec!["A=b".into()],
            start_command: None,
            health_check_timeout: Some(60),
            health_check_type: None,
            health_check_http_endpoint: None,
            vcap_application: serde_json::json!({}),
            services: serde_json::json!({}),
            cc_partition: None,
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["executableUri"], "http://cc/droplet");
        assert_eq!(json["limits"]["mem"], 64);
        let back: StartMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, message);
    }
}
