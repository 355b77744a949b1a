//! What the DEA tells an app's log stream: the instance's stdout/stderr (`APP/PROC/<TYPE>/<i>`),
//! lifecycle lines (`CELL/<i>`: creating, created, downloading, healthy, stopping, destroying),
//! `Exit status N` on the process's own stream, and staging output (`STG/0`) — in the exact
//! texts of `reference/log-formats.md` §3 and §5, sent with the fire-and-forget
//! [`protocol::logs::LogEmitter`] (a full or absent loggregator costs lines, never a stall).

use protocol::dea::{StagingRequest, StartMessage};
use protocol::logs::{AppIdentity, Envelope, LogEmitter, LogType, ProcessIdentity};
use serde_json::Value;

use crate::container::Stream;

/// The longest line sent as one envelope; longer output is split (CF's executor splits at
/// 61,440 bytes).
pub(crate) const MAX_LINE_BYTES: usize = 61_440;

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Splits `line` into pieces of at most [`MAX_LINE_BYTES`] on character boundaries.
pub(crate) fn split_line(line: &str) -> Vec<&str> {
    if line.len() <= MAX_LINE_BYTES {
        return vec![line];
    }
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// The log stream of one app instance.
#[derive(Clone)]
pub(crate) struct InstanceLog {
    emitter: LogEmitter,
    app: AppIdentity,
    process: ProcessIdentity,
    index: u32,
    cell_id: String,
    instance_id: String,
}

impl InstanceLog {
    /// The stream of the instance `instance_id` started from `message` on DEA `cell_id`.
    pub(crate) fn new(
        emitter: LogEmitter,
        message: &StartMessage,
        instance_id: &str,
        cell_id: &str,
    ) -> InstanceLog {
        let vcap = &message.vcap_application;
        let process_type = Some(text(vcap, "process_type"))
            .filter(|kind| !kind.is_empty())
            .unwrap_or_else(|| "web".to_owned());
        let process_id = Some(text(vcap, "process_id"))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| message.droplet.clone());
        InstanceLog {
            emitter,
            app: AppIdentity::from_vcap_application(&message.droplet, &message.name, vcap),
            process: ProcessIdentity {
                process_id,
                process_type,
                process_instance_id: instance_id.to_owned(),
            },
            index: message.index,
            cell_id: cell_id.to_owned(),
            instance_id: instance_id.to_owned(),
        }
    }

    /// One line the app wrote (split when longer than [`MAX_LINE_BYTES`]).
    pub(crate) fn app_line(&self, stream: Stream, line: &str) {
        let log_type = match stream {
            Stream::Stdout => LogType::Out,
            Stream::Stderr => LogType::Err,
        };
        for piece in split_line(line) {
            self.emitter.emit(&Envelope::app_log(
                &self.app,
                &self.process,
                self.index,
                log_type,
                piece,
            ));
        }
    }

    /// `Exit status N` on the process's own stream (OUT), with CF's suffixes.
    pub(crate) fn exit_status(&self, code: i32, out_of_memory: bool, exceeded_grace: Option<u64>) {
        let mut line = format!("Exit status {code}");
        if let Some(grace) = exceeded_grace {
            line.push_str(&format!(" (exceeded {grace}s graceful shutdown interval)"));
        } else if out_of_memory && code != 0 {
            line.push_str(" (out of memory)");
        }
        self.emitter.emit(&Envelope::app_log(
            &self.app,
            &self.process,
            self.index,
            LogType::Out,
            line,
        ));
    }

    fn cell(&self, log_type: LogType, line: String) {
        self.emitter.emit(&Envelope::cell_log(
            &self.app,
            &self.process,
            self.index,
            log_type,
            line,
        ));
    }

    /// `Cell … creating container for instance …`.
    pub(crate) fn creating(&self) {
        self.cell(
            LogType::Out,
            format!(
                "Cell {} creating container for instance {}",
                self.cell_id, self.instance_id
            ),
        );
    }

    /// `Cell … successfully created container for instance …`.
    pub(crate) fn created(&self) {
        self.cell(
            LogType::Out,
            format!(
                "Cell {} successfully created container for instance {}",
                self.cell_id, self.instance_id
            ),
        );
    }

    /// `Cell … failed to create container for instance …: error` (ERR).
    pub(crate) fn failed_to_create(&self, error: &str) {
        self.cell(
            LogType::Err,
            format!(
                "Cell {} failed to create container for instance {}: {error}",
                self.cell_id, self.instance_id
            ),
        );
    }

    /// `Downloading droplet...`.
    pub(crate) fn downloading_droplet(&self) {
        self.cell(LogType::Out, "Downloading droplet...".to_owned());
    }

    /// `Downloaded droplet (size)` — or without the size when it came from the DEA's cache.
    pub(crate) fn downloaded_droplet(&self, bytes: Option<u64>) {
        let line = match bytes {
            Some(bytes) if bytes > 0 => format!("Downloaded droplet ({})", byte_size(bytes)),
            _ => "Downloaded droplet".to_owned(),
        };
        self.cell(LogType::Out, line);
    }

    /// `Starting health monitoring of container`.
    pub(crate) fn health_monitoring(&self) {
        self.cell(
            LogType::Out,
            "Starting health monitoring of container".to_owned(),
        );
    }

    /// `Container became healthy`.
    pub(crate) fn healthy(&self) {
        self.cell(LogType::Out, "Container became healthy".to_owned());
    }

    /// `Container became unhealthy` (ERR).
    pub(crate) fn unhealthy(&self) {
        self.cell(LogType::Err, "Container became unhealthy".to_owned());
    }

    /// `Failed after …: startup health check never passed.` (ERR).
    pub(crate) fn never_healthy(&self, after: std::time::Duration) {
        self.cell(
            LogType::Err,
            format!(
                "Failed after {}: startup health check never passed.",
                go_duration(after)
            ),
        );
    }

    /// `Cell … stopping instance …`.
    pub(crate) fn stopping(&self) {
        self.cell(
            LogType::Out,
            format!(
                "Cell {} stopping instance {}",
                self.cell_id, self.instance_id
            ),
        );
    }

    /// `Cell … destroying container for instance …` then `… successfully destroyed …`.
    pub(crate) fn destroyed(&self) {
        self.cell(
            LogType::Out,
            format!(
                "Cell {} destroying container for instance {}",
                self.cell_id, self.instance_id
            ),
        );
        self.cell(
            LogType::Out,
            format!(
                "Cell {} successfully destroyed container for instance {}",
                self.cell_id, self.instance_id
            ),
        );
    }
}

/// The staging log stream of one build (`STG/0`).
#[derive(Clone)]
pub(crate) struct StagingLog {
    emitter: LogEmitter,
    app: AppIdentity,
}

impl StagingLog {
    /// The stream of the staging task `request`.
    pub(crate) fn new(emitter: LogEmitter, request: &StagingRequest) -> StagingLog {
        // The Cloud Controller puts the app's names in `properties.meta.vcap_application`.
        let vcap = request
            .properties
            .meta
            .get("vcap_application")
            .cloned()
            .unwrap_or(Value::Null);
        StagingLog {
            emitter,
            app: AppIdentity::from_vcap_application(&request.app_id, "", &vcap),
        }
    }

    /// One staging line (stdout as OUT, stderr as ERR).
    pub(crate) fn line(&self, stream: Stream, line: &str) {
        let log_type = match stream {
            Stream::Stdout => LogType::Out,
            Stream::Stderr => LogType::Err,
        };
        for piece in split_line(line) {
            self.emitter
                .emit(&Envelope::staging_log(&self.app, log_type, piece));
        }
    }
}

/// CF's `bytefmt` size: one decimal, `.0` trimmed, units B K M G T in powers of 1024.
pub(crate) fn byte_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = format!("{:.1}", bytes as f64 / size as f64);
            let value = value.strip_suffix(".0").unwrap_or(&value).to_owned();
            return format!("{value}{unit}");
        }
    }
    format!("{bytes}B")
}

/// A Go-style duration rounded to milliseconds (`1m0.271s`, `1.5s`, `250ms`).
pub(crate) fn go_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let minutes = millis / 60_000;
    let rest = millis % 60_000;
    let seconds = format!("{}.{:03}", rest / 1000, rest % 1000);
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_print_like_cf() {
        assert_eq!(byte_size(132), "132B");
        assert_eq!(byte_size(1024), "1K");
        assert_eq!(byte_size(76_231_884), "72.7M");
        assert_eq!(byte_size(1_503_238_553), "1.4G");
        assert_eq!(
            go_duration(std::time::Duration::from_millis(60_271)),
            "1m0.271s"
        );
        assert_eq!(go_duration(std::time::Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(std::time::Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(std::time::Duration::from_secs(60)), "1m0s");
    }

    #[test]
    fn long_lines_split_on_character_boundaries() {
        let line = "é".repeat(MAX_LINE_BYTES);
        let pieces = split_line(&line);
        assert!(pieces.iter().all(|piece| piece.len() <= MAX_LINE_BYTES));
        assert_eq!(pieces.concat(), line);
        assert_eq!(split_line("short"), vec!["short"]);
    }
}
