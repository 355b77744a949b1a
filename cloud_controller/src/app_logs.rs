//! The Cloud Controller's lines in an app's log stream (`[API/<index>]`): what CC's
//! `LoggregatorEmitter` says about app changes, in the exact texts of
//! `reference/log-formats.md` §6 (Ruby 3.3 `Hash#inspect` rendering for audit hashes), sent with
//! the fire-and-forget [`protocol::logs::LogEmitter`] — a slow or absent loggregator costs lines,
//! never a request.

use protocol::logs::{AppIdentity, Envelope, LogEmitter, LogType};

use crate::db::models::{AppRow, OrgRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::store;

/// The censor CC writes instead of secrets.
pub const PRIVATE_DATA_HIDDEN: &str = "[PRIVATE DATA HIDDEN]";

/// A value in an audit hash, rendered as Ruby 3.3 prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum RubyValue {
    /// A string, double-quoted with Ruby escapes.
    Str(String),
    /// An integer, bare.
    Int(i64),
    /// `true`/`false`.
    Bool(bool),
    /// `nil`.
    Nil,
}

/// A Ruby string literal as `String#inspect` prints it (printable UTF-8 kept).
pub fn ruby_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            other if other.is_control() => out.push_str(&format!("\\x{:02X}", other as u32)),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// `{"k"=>v, "k2"=>v2}` (string keys) as Ruby 3.3's `Hash#inspect`.
pub fn ruby_hash(entries: &[(&str, RubyValue)]) -> String {
    let rendered: Vec<String> = entries
        .iter()
        .map(|(key, value)| format!("{}=>{}", ruby_string(key), ruby_value(value)))
        .collect();
    format!("{{{}}}", rendered.join(", "))
}

fn ruby_value(value: &RubyValue) -> String {
    match value {
        RubyValue::Str(text) => ruby_string(text),
        RubyValue::Int(number) => number.to_string(),
        RubyValue::Bool(flag) => flag.to_string(),
        RubyValue::Nil => "nil".to_owned(),
    }
}

/// The API-line emitter of this Cloud Controller.
#[derive(Clone)]
pub struct ApiLogs {
    emitter: LogEmitter,
    index: u32,
}

impl std::fmt::Debug for ApiLogs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ApiLogs")
            .field("index", &self.index)
            .finish()
    }
}

impl ApiLogs {
    /// Emits to `ingress` (the loggregator's UDP address); `None` emits nothing.
    pub fn new(ingress: Option<std::net::SocketAddr>, index: u32) -> ApiLogs {
        let emitter = match LogEmitter::new(ingress) {
            Ok(emitter) => emitter,
            Err(error) => {
                tracing::warn!(%error, "cannot send API log lines; continuing without them");
                LogEmitter::disabled()
            }
        };
        ApiLogs { emitter, index }
    }

    /// An emitter that sends nothing.
    pub fn disabled() -> ApiLogs {
        ApiLogs {
            emitter: LogEmitter::disabled(),
            index: 0,
        }
    }

    fn emit(&self, app: &AppIdentity, log_type: LogType, text: String) {
        self.emitter
            .emit(&Envelope::api_log(app, self.index, log_type, text));
    }

    /// `Created app with guid G`.
    pub fn app_created(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Created app with guid {}", app.app_id),
        );
    }

    /// `Updated app with guid G (<audit hash>)`.
    pub fn app_updated(&self, app: &AppIdentity, audit_hash: &str) {
        self.emit(
            app,
            LogType::Out,
            format!("Updated app with guid {} ({audit_hash})", app.app_id),
        );
    }

    /// `Updated app with guid G ({:droplet_guid=>"D"})` — the current-droplet assignment.
    pub fn droplet_assigned(&self, app: &AppIdentity, droplet_guid: &str) {
        self.app_updated(
            app,
            &format!("{{:droplet_guid=>{}}}", ruby_string(droplet_guid)),
        );
    }

    /// `Starting app with guid G`.
    pub fn app_starting(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Starting app with guid {}", app.app_id),
        );
    }

    /// `Stopping app with guid G`.
    pub fn app_stopping(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Stopping app with guid {}", app.app_id),
        );
    }

    /// `Restarted app with guid G`.
    pub fn app_restarted(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Restarted app with guid {}", app.app_id),
        );
    }

    /// `Deleted app with guid G`.
    pub fn app_deleted(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Deleted app with guid {}", app.app_id),
        );
    }

    /// `Scaling process: "web"`.
    pub fn process_scaling(&self, app: &AppIdentity, process_type: &str) {
        self.emit(
            app,
            LogType::Out,
            format!("Scaling process: {}", ruby_string(process_type)),
        );
    }

    /// `Updating process: "web"`.
    pub fn process_updating(&self, app: &AppIdentity, process_type: &str) {
        self.emit(
            app,
            LogType::Out,
            format!("Updating process: {}", ruby_string(process_type)),
        );
    }

    /// `Terminating process: "web", index: "0"`.
    pub fn process_terminating(&self, app: &AppIdentity, process_type: &str, index: u32) {
        self.emit(
            app,
            LogType::Out,
            format!(
                "Terminating process: {}, index: {}",
                ruby_string(process_type),
                ruby_string(&index.to_string())
            ),
        );
    }

    /// `Process has crashed with type: "web"` then `App instance exited with guid G payload: …`.
    pub fn instance_crashed(
        &self,
        app: &AppIdentity,
        process_type: &str,
        exited: &protocol::dea::DropletExited,
        cell_id: &str,
        crash_count: u32,
    ) {
        self.emit(
            app,
            LogType::Out,
            format!(
                "Process has crashed with type: {}",
                ruby_string(process_type)
            ),
        );
        let crash_timestamp = exited
            .crash_timestamp
            .map(|seconds| seconds.saturating_mul(1_000_000_000))
            .unwrap_or_else(protocol::logs::now_nanos);
        let payload = ruby_hash(&[
            ("instance", RubyValue::Str(exited.instance.clone())),
            ("index", RubyValue::Int(i64::from(exited.index))),
            ("cell_id", RubyValue::Str(cell_id.to_owned())),
            ("reason", RubyValue::Str("CRASHED".to_owned())),
            (
                "exit_description",
                RubyValue::Str(exited.exit_description.clone().unwrap_or_default()),
            ),
            ("crash_count", RubyValue::Int(i64::from(crash_count))),
            ("crash_timestamp", RubyValue::Int(crash_timestamp)),
            ("version", RubyValue::Str(exited.version.clone())),
        ]);
        self.emit(
            app,
            LogType::Out,
            format!(
                "App instance exited with guid {} payload: {payload}",
                app.app_id
            ),
        );
    }

    /// `Adding app package for app with guid G`.
    pub fn package_added(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Adding app package for app with guid {}", app.app_id),
        );
    }

    /// `Uploading app package for app with guid G`.
    pub fn package_uploading(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Uploading app package for app with guid {}", app.app_id),
        );
    }

    /// `Creating build for app with guid G`.
    pub fn build_creating(&self, app: &AppIdentity) {
        self.emit(
            app,
            LogType::Out,
            format!("Creating build for app with guid {}", app.app_id),
        );
    }

    /// `Creating droplet for app with guid G` and `Staging complete for build B`.
    pub fn staging_complete(&self, app: &AppIdentity, build_guid: &str) {
        self.emit(
            app,
            LogType::Out,
            format!("Creating droplet for app with guid {}", app.app_id),
        );
        self.emit(
            app,
            LogType::Out,
            format!("Staging complete for build {build_guid}"),
        );
    }

    /// ERR `Failed to stage build: staging failed` and `Staging failed for build B`.
    pub fn staging_failed(&self, app: &AppIdentity, build_guid: &str) {
        self.emit(
            app,
            LogType::Err,
            "Failed to stage build: staging failed".to_owned(),
        );
        self.emit(
            app,
            LogType::Out,
            format!("Staging failed for build {build_guid}"),
        );
    }
}

/// The tags of an app whose space and org are at hand.
pub fn identity_of(app: &AppRow, space: &SpaceRow, org: &OrgRow) -> AppIdentity {
    AppIdentity {
        app_id: app.guid.clone(),
        app_name: app.name.clone(),
        space_id: space.guid.clone(),
        space_name: space.name.clone(),
        organization_id: org.guid.clone(),
        organization_name: org.name.clone(),
    }
}

/// The tags a `vcap_application`-shaped object names (staging jobs carry one).
pub fn identity_from_vcap(app_guid: &str, vcap: &serde_json::Value) -> AppIdentity {
    AppIdentity::from_vcap_application(app_guid, "", vcap)
}

/// The tags of an app: its names and those of its space and org (empty when they are gone).
pub fn identity(conn: &mut DbConn, app: &AppRow) -> Result<AppIdentity, ApiError> {
    let space = store::spaces::find_by_id(conn, app.space_id)?;
    let org = match &space {
        Some(space) => store::orgs::find_by_id(conn, space.organization_id)?,
        None => None,
    };
    Ok(AppIdentity {
        app_id: app.guid.clone(),
        app_name: app.name.clone(),
        space_id: space.as_ref().map(|s| s.guid.clone()).unwrap_or_default(),
        space_name: space.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        organization_id: org.as_ref().map(|o| o.guid.clone()).unwrap_or_default(),
        organization_name: org.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_hashes_print_like_ruby_3_3() {
        assert_eq!(
            ruby_hash(&[("name", RubyValue::Str("new-name".into()))]),
            r#"{"name"=>"new-name"}"#
        );
        assert_eq!(
            ruby_hash(&[
                ("instances", RubyValue::Int(3)),
                ("state", RubyValue::Str("STARTED".into())),
                ("enabled", RubyValue::Bool(true)),
                ("x", RubyValue::Nil),
            ]),
            r#"{"instances"=>3, "state"=>"STARTED", "enabled"=>true, "x"=>nil}"#
        );
        assert_eq!(ruby_string("a\"b\\c\nd\u{1b}é"), r#""a\"b\\c\nd\eé""#);
    }
}
