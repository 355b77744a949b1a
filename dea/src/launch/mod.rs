//! Running a droplet: extracting it into an instance's home, CF's instance environment, the
//! launcher that sources the profile scripts and execs the start command, and health checks.

pub mod health;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Map, Value};

use crate::container::{chown_to_vcap, BindMount, ContainerSpec, Limits, CONTAINER_HOME};

/// Where the droplet's `app/` directory is inside an instance container.
pub const APP_DIR: &str = "/home/vcap/app";

/// CF's launcher, written for Kiln, run as `bash -c LAUNCHER_SCRIPT launcher APP_DIR COMMAND
/// [ENTRYPOINT_PREFIX]` from `/home/vcap`: it sources the buildpacks' and the app's profile
/// scripts in the shell that then execs the start command, so their exports reach the app, and
/// so the command's exit status is the instance's.
pub const LAUNCHER_SCRIPT: &str = r#"cd "$1" || exit 1
echo 'Invoking pre-start scripts.'
for script in ../profile.d/*; do
  if [ -f "$script" ]; then source "$script"; fi
done
for script in .profile.d/*; do
  if [ -f "$script" ]; then source "$script"; fi
done
if [ -f .profile ]; then source .profile; fi
shift
echo 'Invoking start command.'
if [ -n "$2" ]; then exec $2 "$1"; fi
exec bash -c "$1"
"#;

/// Errors while preparing or launching an instance.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("extracting droplet {droplet} failed: {message}")]
    Extract { droplet: PathBuf, message: String },
    #[error("Invalid staging info - {0}")]
    InvalidStagingInfo(String),
    /// The launcher's message when neither the user nor the droplet gives a command.
    #[error("launcher: no start command specified or detected in droplet")]
    NoStartCommand,
}

/// What the launcher reads from the droplet's `staging_info.yml` (JSON written by us, or a
/// DEA-era YAML file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagingInfo {
    pub detected_buildpack: String,
    pub start_command: String,
    pub entrypoint_prefix: Option<String>,
}

#[derive(serde::Deserialize)]
struct StagingInfoFile {
    #[serde(default)]
    detected_buildpack: Option<String>,
    #[serde(default)]
    start_command: Option<String>,
    #[serde(default)]
    config: Option<StagingInfoConfig>,
}

#[derive(serde::Deserialize)]
struct StagingInfoConfig {
    #[serde(default)]
    entrypoint_prefix: Option<String>,
}

impl StagingInfo {
    /// Parses `staging_info.yml` as YAML (JSON is YAML).
    pub fn parse(text: &str) -> Result<StagingInfo, LaunchError> {
        if text.trim().is_empty() {
            return Ok(StagingInfo::default());
        }
        let file: StagingInfoFile = serde_yaml::from_str(text)
            .map_err(|error| LaunchError::InvalidStagingInfo(error.to_string()))?;
        Ok(StagingInfo {
            detected_buildpack: file.detected_buildpack.unwrap_or_default(),
            start_command: file.start_command.unwrap_or_default(),
            entrypoint_prefix: file
                .config
                .and_then(|config| config.entrypoint_prefix)
                .filter(|prefix| !prefix.is_empty()),
        })
    }

    /// Reads `<home>/staging_info.yml`; a droplet without one is fine.
    pub fn read(home_dir: &Path) -> Result<StagingInfo, LaunchError> {
        match std::fs::read_to_string(home_dir.join("staging_info.yml")) {
            Ok(text) => StagingInfo::parse(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(StagingInfo::default())
            }
            Err(source) => Err(LaunchError::Io {
                context: "reading staging_info.yml".into(),
                source,
            }),
        }
    }

    /// The launcher's choice: the user's command when given, else the droplet's.
    pub fn start_command(&self, user_command: Option<&str>) -> Result<String, LaunchError> {
        let command = user_command
            .filter(|c| !c.is_empty())
            .unwrap_or(&self.start_command);
        if command.is_empty() {
            Err(LaunchError::NoStartCommand)
        } else {
            Ok(command.to_string())
        }
    }
}

/// Extracts a droplet into an instance's (empty) home directory, gives it to vcap and returns its
/// staging info. The droplet holds `./app`, `./deps`, `./profile.d`, `./tmp`, `./logs`,
/// `./staging_info.yml`.
pub async fn extract_droplet(droplet: &Path, home_dir: &Path) -> Result<StagingInfo, LaunchError> {
    let output = tokio::process::Command::new("tar")
        .arg("-xzf")
        .arg(droplet)
        .arg("-C")
        .arg(home_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| LaunchError::Io {
            context: "running tar".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(LaunchError::Extract {
            droplet: droplet.to_path_buf(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let home = home_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        for dir in ["app", "deps", "profile.d", "tmp", "logs"] {
            std::fs::create_dir_all(home.join(dir))?;
        }
        chown_to_vcap(&home)
    })
    .await
    .map_err(|error| LaunchError::Io {
        context: "chown task".into(),
        source: std::io::Error::other(error),
    })?
    .map_err(|source| LaunchError::Io {
        context: "giving the droplet to vcap".into(),
        source,
    })?;
    StagingInfo::read(home_dir)
}

/// The argv that runs `command` through the launcher.
pub fn launcher_args(command: &str, entrypoint_prefix: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        LAUNCHER_SCRIPT.to_string(),
        "launcher".to_string(),
        APP_DIR.to_string(),
        command.to_string(),
    ];
    if let Some(prefix) = entrypoint_prefix {
        args.push(prefix.to_string());
    }
    args
}

/// The container for one app instance: the droplet's home at `/home/vcap`, started in
/// `/home/vcap` through the launcher.
pub fn instance_container_spec(
    id: &str,
    home_dir: &Path,
    command: &str,
    staging_info: &StagingInfo,
    env: Vec<(String, String)>,
    limits: Limits,
    bind_mounts: Vec<BindMount>,
) -> ContainerSpec {
    ContainerSpec {
        id: id.to_string(),
        args: launcher_args(command, staging_info.entrypoint_prefix.as_deref()),
        env,
        cwd: CONTAINER_HOME.to_string(),
        hostname: None,
        home_dir: home_dir.to_path_buf(),
        bind_mounts,
        limits,
        network: None,
    }
}

/// What CC tells the DEA about the app (the static part of `VCAP_APPLICATION`).
#[derive(Debug, Clone, Default)]
pub struct AppMetadata {
    pub app_guid: String,
    pub app_name: String,
    /// The process (or app) version guid; changes on restart and update.
    pub version: String,
    pub uris: Vec<String>,
    pub space_guid: String,
    pub space_name: String,
    pub organization_guid: String,
    pub organization_name: String,
    /// `<protocol>://<api domain>`.
    pub cf_api: String,
    pub process_guid: String,
    pub process_type: String,
}

/// Where an instance in its own network namespace is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceNetwork {
    /// The host port the DEA proxies to the app (`CF_INSTANCE_PORT`, the route's port).
    pub host_port: u16,
    /// The container's address (`CF_INSTANCE_INTERNAL_IP`).
    pub container_ip: String,
    /// The host side of its veth, where allow-listed host ports are served
    /// (`KILN_HOST_GATEWAY`, `kiln-host` in `/etc/hosts`).
    pub gateway: String,
}

/// One instance's environment, assembled as Diego and CF's launcher do (`reference/buildpacks.md`
/// §3.3): later sources win, and user env cannot shadow the system variables that follow it.
#[derive(Debug, Clone)]
pub struct InstanceEnvironment {
    pub app: AppMetadata,
    pub instance_guid: String,
    pub instance_index: u32,
    /// The app port inside the container (`PORT`); with the host network also the host port.
    pub port: u16,
    /// The cell's IP address (`CF_INSTANCE_IP`).
    pub host_ip: String,
    /// The instance's own network namespace (isolated mode), `None` on the host network.
    pub network: Option<InstanceNetwork>,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub fds: u64,
    /// Running environment-variable group (lowest precedence).
    pub running_group_env: Vec<(String, String)>,
    /// The app's own variables.
    pub user_env: Vec<(String, String)>,
    /// `VCAP_SERVICES`: label → bindings.
    pub vcap_services: Value,
}

impl InstanceEnvironment {
    /// `VCAP_APPLICATION` after the launcher's additions (`host`, `instance_id`,
    /// `instance_index`, `port`); keys sorted, no `users`.
    pub fn vcap_application(&self) -> Value {
        let app = &self.app;
        json!({
            "application_id": app.app_guid,
            "application_name": app.app_name,
            "application_uris": app.uris,
            "application_version": app.version,
            "cf_api": app.cf_api,
            "host": "0.0.0.0",
            "instance_id": self.instance_guid,
            "instance_index": self.instance_index,
            "limits": {"mem": self.memory_mb, "disk": self.disk_mb, "fds": self.fds},
            "name": app.app_name,
            "organization_id": app.organization_guid,
            "organization_name": app.organization_name,
            "port": self.port,
            "process_id": app.process_guid,
            "process_type": app.process_type,
            "space_id": app.space_guid,
            "space_name": app.space_name,
            "uris": app.uris,
            "version": app.version,
        })
    }

    /// The complete environment of the launcher process.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env = EnvBuilder::default();
        env.set("LANG", "en_US.UTF-8");
        // The container's default; the app's env may replace it.
        env.set("PATH", "/usr/local/bin:/usr/bin:/bin");
        env.set("INSTANCE_GUID", &self.instance_guid);
        env.set("INSTANCE_INDEX", &self.instance_index.to_string());
        env.set("CF_INSTANCE_GUID", &self.instance_guid);
        env.set("CF_INSTANCE_INDEX", &self.instance_index.to_string());
        env.set("PORT", &self.port.to_string());
        env.set("VCAP_APP_PORT", &self.port.to_string());
        env.set("VCAP_APP_HOST", "0.0.0.0");
        env.extend(&self.running_group_env);
        env.extend(&self.user_env);
        env.set("VCAP_APPLICATION", &self.vcap_application().to_string());
        env.set("MEMORY_LIMIT", &format!("{}m", self.memory_mb));
        env.set("VCAP_SERVICES", &services_json(&self.vcap_services));
        if let Some(url) = database_url(&self.vcap_services) {
            env.set("DATABASE_URL", &url);
        }
        // As Diego sets them: the external (host) port and address, the container's own IP.
        let (external_port, internal_ip) = match &self.network {
            Some(network) => (network.host_port, network.container_ip.as_str()),
            None => (self.port, self.host_ip.as_str()),
        };
        let address = format!("{}:{}", self.host_ip, external_port);
        env.set("CF_INSTANCE_IP", &self.host_ip);
        env.set("CF_INSTANCE_INTERNAL_IP", internal_ip);
        env.set("CF_INSTANCE_PORT", &external_port.to_string());
        env.set("CF_INSTANCE_ADDR", &address);
        env.set(
            "CF_INSTANCE_PORTS",
            &json!([{"external": external_port, "internal": self.port}]).to_string(),
        );
        if let Some(network) = &self.network {
            env.set("KILN_HOST_GATEWAY", &network.gateway);
        }
        env.set("USER", "vcap");
        // The launcher's own fix-ups.
        env.set("HOME", APP_DIR);
        env.set("TMPDIR", "/home/vcap/tmp");
        env.set("DEPS_DIR", "/home/vcap/deps");
        env.vars
    }
}

fn services_json(services: &Value) -> String {
    if services.is_null() {
        "{}".to_string()
    } else {
        services.to_string()
    }
}

/// CF's `DATABASE_URL` rule: the first bound credential `uri` with a MySQL or PostgreSQL
/// scheme, `mysql` rewritten to `mysql2` and `postgresql` to `postgres`.
pub fn database_url(vcap_services: &Value) -> Option<String> {
    let labels = vcap_services.as_object()?;
    for bindings in labels.values() {
        for binding in bindings.as_array().into_iter().flatten() {
            let Some(uri) = binding["credentials"]["uri"].as_str() else {
                continue;
            };
            let Some((scheme, rest)) = uri.split_once("://") else {
                continue;
            };
            let scheme = match scheme {
                "mysql" | "mysql2" => "mysql2",
                "postgres" | "postgresql" => "postgres",
                _ => continue,
            };
            return Some(format!("{scheme}://{rest}"));
        }
    }
    None
}

/// An ordered environment in which setting a name again replaces its value in place.
#[derive(Debug, Default)]
pub(crate) struct EnvBuilder {
    pub(crate) vars: Vec<(String, String)>,
}

impl EnvBuilder {
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(existing, _)| existing == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    pub(crate) fn extend(&mut self, vars: &[(String, String)]) {
        for (name, value) in vars {
            self.set(name, value);
        }
    }
}

/// Converts a JSON object of variables (CC's env shapes) to pairs: strings stay as they are,
/// everything else is JSON-encoded.
pub fn env_from_json(object: &Map<String, Value>) -> Vec<(String, String)> {
    object
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment() -> InstanceEnvironment {
        InstanceEnvironment {
            app: AppMetadata {
                app_guid: "app-guid".into(),
                app_name: "dora".into(),
                version: "v1".into(),
                uris: vec!["dora.example.com".into()],
                process_type: "web".into(),
                ..AppMetadata::default()
            },
            instance_guid: "inst".into(),
            instance_index: 2,
            port: 61001,
            host_ip: "10.0.0.5".into(),
            network: None,
            memory_mb: 256,
            disk_mb: 1024,
            fds: 16384,
            running_group_env: vec![
                ("GROUP".into(), "g".into()),
                ("SHARED".into(), "group".into()),
            ],
            user_env: vec![("SHARED".into(), "user".into())],
            vcap_services: json!({"p-mysql": [{"credentials": {"uri": "mysql://u:p@db/x"}}]}),
        }
    }

    #[test]
    fn instance_environment_follows_cf() {
        let env = environment().to_env();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT"), Some("61001"));
        assert_eq!(get("VCAP_APP_PORT"), Some("61001"));
        assert_eq!(get("VCAP_APP_HOST"), Some("0.0.0.0"));
        assert_eq!(get("MEMORY_LIMIT"), Some("256m"));
        assert_eq!(get("CF_INSTANCE_INDEX"), Some("2"));
        assert_eq!(get("CF_INSTANCE_ADDR"), Some("10.0.0.5:61001"));
        assert_eq!(
            get("CF_INSTANCE_PORTS"),
            Some(r#"[{"external":61001,"internal":61001}]"#)
        );
        assert_eq!(
            get("SHARED"),
            Some("user"),
            "user env beats the running group"
        );
        assert_eq!(get("HOME"), Some("/home/vcap/app"));
        assert_eq!(get("DATABASE_URL"), Some("mysql2://u:p@db/x"));
        let vcap: Value = serde_json::from_str(get("VCAP_APPLICATION").unwrap()).unwrap();
        assert_eq!(vcap["instance_index"], 2);
        assert_eq!(vcap["port"], 61001);
        assert_eq!(vcap["application_uris"], json!(["dora.example.com"]));
        assert!(vcap.get("users").is_none());
        assert_eq!(env.iter().filter(|(n, _)| n == "SHARED").count(), 1);
        assert_eq!(get("KILN_HOST_GATEWAY"), None);
    }

    #[test]
    fn an_isolated_instance_listens_on_8080_and_is_reached_through_its_host_port() {
        let mut environment = environment();
        environment.port = 8080;
        environment.network = Some(InstanceNetwork {
            host_port: 61001,
            container_ip: "10.254.0.2".into(),
            gateway: "10.254.0.1".into(),
        });
        let env = environment.to_env();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT"), Some("8080"));
        assert_eq!(get("VCAP_APP_PORT"), Some("8080"));
        assert_eq!(get("CF_INSTANCE_IP"), Some("10.0.0.5"));
        assert_eq!(get("CF_INSTANCE_INTERNAL_IP"), Some("10.254.0.2"));
        assert_eq!(get("CF_INSTANCE_PORT"), Some("61001"));
        assert_eq!(get("CF_INSTANCE_ADDR"), Some("10.0.0.5:61001"));
        assert_eq!(
            get("CF_INSTANCE_PORTS"),
            Some(r#"[{"external":61001,"internal":8080}]"#)
        );
        assert_eq!(get("KILN_HOST_GATEWAY"), Some("10.254.0.1"));
    }

    #[test]
    fn staging_info_in_both_formats() {
        let json = r#"{"detected_buildpack":"staticfile","start_command":"$HOME/boot.sh"}"#;
        let info = StagingInfo::parse(json).unwrap();
        assert_eq!(info.start_command, "$HOME/boot.sh");
        let dea = "---\ndetected_buildpack: Ruby\nstart_command: bundle exec rackup\nbuildpack_path: /x\n";
        assert_eq!(StagingInfo::parse(dea).unwrap().detected_buildpack, "Ruby");
        let prefix = r#"{"start_command":"x","config":{"entrypoint_prefix":"tini --"}}"#;
        assert_eq!(
            StagingInfo::parse(prefix)
                .unwrap()
                .entrypoint_prefix
                .as_deref(),
            Some("tini --")
        );
        assert!(matches!(
            StagingInfo::parse("[unclosed"),
            Err(LaunchError::InvalidStagingInfo(_))
        ));
    }

    #[test]
    fn start_command_choice() {
        let info = StagingInfo {
            start_command: "droplet".into(),
            ..StagingInfo::default()
        };
        assert_eq!(info.start_command(Some("user")).unwrap(), "user");
        assert_eq!(info.start_command(Some("")).unwrap(), "droplet");
        assert_eq!(info.start_command(None).unwrap(), "droplet");
        let error = StagingInfo::default().start_command(None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "launcher: no start command specified or detected in droplet"
        );
    }
}
