//! The RTR access-log line gorouter sends to an app's log stream (`reference/log-formats.md`
//! §2): [`AccessRecord`] formats it byte for byte like gorouter's `AccessLogRecord.makeRecord`
//! (Go `strconv.Quote` quoting, `"-"` for empty values, the UDP truncation rules, no trailing
//! newline), [`LogIdentity`] is the app identity an endpoint's registration carries,
//! [`PendingLog`] queues the finished record once the response has been sent or the client
//! went away, and [`emit_loop`] turns queued records into envelopes and sends them in batches.
//!
//! Invariant: the request path never formats, serialises or sends — it only moves the record
//! into a bounded queue (`try_send`; a full queue drops the line and counts it). The emitter
//! task does the rest, off the request path, packing what has queued up into few datagrams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use protocol::logs::{AppIdentity, Envelope, LogEmitter, ProcessIdentity};
use protocol::router::RegistryMessage;
use tokio::sync::mpsc;

use crate::metrics::{increment, Metrics};

/// A record longer than this is rebuilt with truncated fields, so that the datagram stays
/// below UDP's 64 KiB (gorouter's `getRecord`).
pub(crate) const MAXIMUM_RECORD_BYTES: usize = 65_400;
/// Limit for Referer, User-Agent, X-Forwarded-For and X-Forwarded-Proto when truncating.
const SMALL_BYTES_LIMIT: usize = 1_000;
/// Limit for the request URI when truncating.
const LARGE_BYTES_LIMIT: usize = 20_000;
/// Finished records waiting for the emitter task; beyond this, lines are dropped (and counted)
/// rather than slowing requests down or growing memory.
const QUEUE_CAPACITY: usize = 16_384;
/// Most records the emitter task turns into envelopes at once (one `emit_batch`, which packs
/// them into as few datagrams as fit).
const MAX_BATCH: usize = 128;
/// After the first record of a quiet spell wakes the emitter task, it lets records collect
/// this long before sending: under load, requests then never wake it (a wake-up per request
/// costs more than building the line) and lines leave in full datagrams.
const COLLECT_FOR: Duration = Duration::from_millis(20);

/// Route-emitter tag names that fill the envelope's app and process identity.
const IDENTITY_TAGS: [&str; 9] = [
    "app_id",
    "app_name",
    "space_id",
    "space_name",
    "organization_id",
    "organization_name",
    "process_id",
    "process_type",
    "process_instance_id",
];

/// What a registered endpoint says about the app behind it, prepared once per registration:
/// the envelope's app/space/org and process tags (from the registration's `tags`, CF's
/// route-emitter names, empty strings when absent), the app index, and any other tags
/// (custom labels), which are copied onto the envelope where it does not set them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogIdentity {
    pub(crate) app: AppIdentity,
    /// `Some` when the registration names the process (`process_id`, `process_type` or
    /// `process_instance_id` tag).
    pub(crate) process: Option<ProcessIdentity>,
    /// `private_instance_index` as a number, for the `instance_id` tag.
    pub(crate) app_index: Option<u32>,
    pub(crate) other_tags: BTreeMap<String, String>,
}

impl LogIdentity {
    /// `None` when the registration has no app id: gorouter sends no app log for such an
    /// endpoint (§2.1).
    pub(crate) fn from_registration(message: &RegistryMessage) -> Option<LogIdentity> {
        let app_id = message.app.as_deref().filter(|id| !id.is_empty())?;
        let tag = |name: &str| message.tags.get(name).cloned().unwrap_or_default();
        let has_process = ["process_id", "process_type", "process_instance_id"]
            .iter()
            .any(|name| message.tags.contains_key(*name));
        Some(LogIdentity {
            app: AppIdentity {
                app_id: app_id.to_owned(),
                app_name: tag("app_name"),
                space_id: tag("space_id"),
                space_name: tag("space_name"),
                organization_id: tag("organization_id"),
                organization_name: tag("organization_name"),
            },
            process: has_process.then(|| ProcessIdentity {
                process_id: tag("process_id"),
                process_type: tag("process_type"),
                process_instance_id: tag("process_instance_id"),
            }),
            app_index: message
                .private_instance_index
                .as_deref()
                .and_then(|index| index.trim().parse().ok()),
            other_tags: message
                .tags
                .iter()
                .filter(|(name, _)| !IDENTITY_TAGS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        })
    }

    /// The `[RTR/<router_index>]` envelope carrying `payload`.
    pub(crate) fn envelope(&self, router_index: u32, payload: Vec<u8>) -> Envelope {
        let mut envelope = Envelope::router_log(
            &self.app,
            self.process.as_ref(),
            self.app_index,
            router_index,
            payload,
        );
        for (name, value) in &self.other_tags {
            envelope
                .tags
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        envelope
    }
}

/// The fields of one access-log line, as gorouter's `AccessLogRecord` holds them. Header
/// values are the ones sent to the backend, kept as raw bytes (they need not be UTF-8).
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessRecord {
    /// Raw request host, with any port.
    pub(crate) host: String,
    pub(crate) received_at: Option<SystemTime>,
    pub(crate) method: String,
    /// Path and query as received.
    pub(crate) uri: String,
    pub(crate) proto: &'static str,
    /// 0 when no response was written (printed `"-"`).
    pub(crate) status: u16,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) backend_addr: String,
    pub(crate) x_forwarded_for: Option<HeaderValue>,
    pub(crate) x_forwarded_proto: Option<HeaderValue>,
    pub(crate) request_id: String,
    /// Seconds; negative prints `"-"`.
    pub(crate) response_time: f64,
    /// Seconds; negative prints `"-"`.
    pub(crate) gorouter_time: f64,
    pub(crate) app_id: String,
    pub(crate) app_index: String,
    pub(crate) instance_id: String,
    pub(crate) router_error: Option<HeaderValue>,
}

impl AccessRecord {
    /// The line for the app's log stream: built in full, and rebuilt with truncated fields
    /// when longer than [`MAXIMUM_RECORD_BYTES`].
    pub(crate) fn payload(&self) -> Vec<u8> {
        let line = self.line(false);
        if line.len() > MAXIMUM_RECORD_BYTES {
            self.line(true)
        } else {
            line
        }
    }

    /// gorouter's `makeRecord(performTruncate)`.
    pub(crate) fn line(&self, truncate: bool) -> Vec<u8> {
        let header = |value: &Option<HeaderValue>, name: &str| -> Vec<u8> {
            let bytes = value.as_ref().map_or(&[][..], HeaderValue::as_bytes);
            if truncate {
                truncate_to_size(bytes, name, SMALL_BYTES_LIMIT)
            } else {
                bytes.to_vec()
            }
        };
        let uri = if truncate {
            truncate_to_size(self.uri.as_bytes(), "request-uri", LARGE_BYTES_LIMIT)
        } else {
            self.uri.as_bytes().to_vec()
        };

        let mut out = Vec::with_capacity(512 + uri.len());
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b" - [");
        if let Some(received_at) = self.received_at {
            out.extend_from_slice(format_received_at(received_at).as_bytes());
        }
        out.extend_from_slice(b"] ");

        let mut request_line = Vec::with_capacity(self.method.len() + uri.len() + 10);
        request_line.extend_from_slice(self.method.as_bytes());
        request_line.push(b' ');
        request_line.extend_from_slice(&uri);
        request_line.push(b' ');
        request_line.extend_from_slice(self.proto.as_bytes());
        go_quote(&mut out, &request_line);
        out.push(b' ');
        if self.status == 0 {
            out.extend_from_slice(b"\"-\"");
        } else {
            out.extend_from_slice(self.status.to_string().as_bytes());
        }
        out.push(b' ');
        out.extend_from_slice(self.bytes_received.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.bytes_sent.to_string().as_bytes());
        out.push(b' ');
        write_dash_or_quoted(&mut out, &header(&self.referer, "Referer"));
        out.push(b' ');
        write_dash_or_quoted(&mut out, &header(&self.user_agent, "User-Agent"));
        out.push(b' ');
        let remote_addr = self
            .remote_addr
            .map(|addr| addr.to_string())
            .unwrap_or_default();
        write_dash_or_quoted(&mut out, remote_addr.as_bytes());
        out.push(b' ');
        write_dash_or_quoted(&mut out, self.backend_addr.as_bytes());
        out.extend_from_slice(b" x_forwarded_for:");
        write_dash_or_quoted(&mut out, &header(&self.x_forwarded_for, "X-Forwarded-For"));
        out.extend_from_slice(b" x_forwarded_proto:");
        write_dash_or_quoted(
            &mut out,
            &header(&self.x_forwarded_proto, "X-Forwarded-Proto"),
        );
        out.extend_from_slice(b" vcap_request_id:");
        write_dash_or_quoted(&mut out, self.request_id.as_bytes());
        out.extend_from_slice(b" response_time:");
        write_dash_or_seconds(&mut out, self.response_time);
        out.extend_from_slice(b" gorouter_time:");
        write_dash_or_seconds(&mut out, self.gorouter_time);
        out.extend_from_slice(b" app_id:");
        write_dash_or_quoted(&mut out, self.app_id.as_bytes());
        out.extend_from_slice(b" app_index:");
        write_dash_or_quoted(&mut out, self.app_index.as_bytes());
        out.extend_from_slice(b" instance_id:");
        write_dash_or_quoted(&mut out, self.instance_id.as_bytes());
        out.extend_from_slice(b" x_cf_routererror:");
        let router_error = self
            .router_error
            .as_ref()
            .map_or(&[][..], HeaderValue::as_bytes);
        write_dash_or_quoted(&mut out, router_error);
        out
    }
}

/// The request side of app log emission: queues finished records for [`emit_loop`].
#[derive(Debug, Clone)]
pub(crate) struct AppLogQueue {
    records: mpsc::Sender<FinishedLog>,
    metrics: Arc<Metrics>,
}

/// A record whose response has ended, with the identity of its endpoint.
#[derive(Debug)]
pub(crate) struct FinishedLog {
    record: AccessRecord,
    identity: Arc<LogIdentity>,
}

/// The queue for the proxy, and the emitter task to own, which ends once every queue handle
/// (the proxy's and those of responses still being sent) is gone — so the lines of requests
/// drained at shutdown are still sent.
pub(crate) fn app_log_queue(
    emitter: LogEmitter,
    router_index: u32,
    metrics: Arc<Metrics>,
) -> (AppLogQueue, impl std::future::Future<Output = ()>) {
    let (records, receiver) = mpsc::channel(QUEUE_CAPACITY);
    let queue = AppLogQueue { records, metrics };
    (queue, emit_loop(receiver, emitter, router_index))
}

impl AppLogQueue {
    fn push(&self, finished: FinishedLog) {
        match self.records.try_send(finished) {
            Ok(()) => increment(&self.metrics.app_log_lines_queued),
            Err(_) => increment(&self.metrics.app_log_lines_dropped),
        }
    }
}

/// Builds the lines and envelopes of queued records and sends them in batches. Ends when the
/// queue is closed and empty.
pub(crate) async fn emit_loop(
    mut records: mpsc::Receiver<FinishedLog>,
    emitter: LogEmitter,
    router_index: u32,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut envelopes = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = records.recv().await {
        batch.push(first);
        tokio::time::sleep(COLLECT_FOR).await;
        loop {
            while batch.len() < MAX_BATCH {
                match records.try_recv() {
                    Ok(finished) => batch.push(finished),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            envelopes.extend(batch.drain(..).map(|finished: FinishedLog| {
                finished
                    .identity
                    .envelope(router_index, finished.record.payload())
            }));
            emitter.emit_batch(&envelopes);
            envelopes.clear();
            // A backlog is worked off in slices, leaving the worker to requests in between.
            tokio::task::yield_now().await;
        }
    }
}

/// A line still waiting for its response to finish: the response body owns it, counts the
/// bytes it sends into it, and drops it when the body ends or the client goes away — which
/// queues the record.
#[derive(Debug)]
pub(crate) struct PendingLog {
    pub(crate) record: AccessRecord,
    pub(crate) started: Instant,
    /// Time from sending the request to the backend to its response head, when an app round
    /// trip completed.
    pub(crate) app_time: Option<Duration>,
    /// Request body bytes read, shared with the request body wrapper.
    pub(crate) bytes_received: Arc<AtomicU64>,
    pub(crate) identity: Arc<LogIdentity>,
    pub(crate) queue: AppLogQueue,
}

impl PendingLog {
    /// Counts response body bytes handed to the client connection.
    pub(crate) fn count_sent(&mut self, n: usize) {
        self.record.bytes_sent += n as u64;
    }
}

impl Drop for PendingLog {
    fn drop(&mut self) {
        let response_time = self.started.elapsed();
        let record = &mut self.record;
        record.bytes_received = self.bytes_received.load(Ordering::Relaxed);
        record.response_time = response_time.as_secs_f64();
        record.gorouter_time = match self.app_time {
            Some(app_time) => response_time.as_secs_f64() - app_time.as_secs_f64(),
            // No app round trip completed: gorouter's reporter never computed it.
            None => 0.0,
        };
        self.queue.push(FinishedLog {
            record: std::mem::take(record),
            identity: self.identity.clone(),
        });
    }
}

/// Appends `value` as Go's `strconv.Quote` would, or `"-"` when it is empty.
pub(crate) fn write_dash_or_quoted(out: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        out.extend_from_slice(b"\"-\"");
    } else {
        go_quote(out, value);
    }
}

/// Seconds with 6 decimals (Go `FormatFloat(v, 'f', 6, 64)`), `"-"` when negative.
fn write_dash_or_seconds(out: &mut Vec<u8>, seconds: f64) {
    if seconds >= 0.0 {
        out.extend_from_slice(format!("{seconds:.6}").as_bytes());
    } else {
        out.extend_from_slice(b"\"-\"");
    }
}

/// gorouter's `truncateToSize`: while longer than `limit`, keep the first half and append
/// `...<NAME>-TOO-LONG-TO-LOG--TRUNCATED`. Cuts bytes, as Go does; a split UTF-8 sequence is
/// then escaped by the quoting.
pub(crate) fn truncate_to_size(value: &[u8], name: &str, limit: usize) -> Vec<u8> {
    let mut value = value.to_vec();
    if value.len() <= limit {
        return value;
    }
    let suffix = format!("...{}-TOO-LONG-TO-LOG--TRUNCATED", name.to_uppercase());
    while value.len() > limit {
        value.truncate(value.len() / 2);
        value.extend_from_slice(suffix.as_bytes());
    }
    value
}

/// Appends `value` quoted with Go's `strconv.Quote` semantics: `"` and `\` escaped, `\a \b \f
/// \n \r \t \v`, other ASCII controls and DEL as `\xNN`, invalid UTF-8 bytes as `\xNN`,
/// printable non-ASCII kept as UTF-8, non-printable runes as `\uNNNN` / `\UNNNNNNNN`.
pub(crate) fn go_quote(out: &mut Vec<u8>, value: &[u8]) {
    out.reserve(value.len() + 2);
    out.push(b'"');
    // Fast path: the printable-ASCII prefix (usually the whole value) is copied as is.
    let plain = value
        .iter()
        .position(|&b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')
        .unwrap_or(value.len());
    out.extend_from_slice(&value[..plain]);
    for chunk in value[plain..].utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped_char(out, c);
        }
        for byte in chunk.invalid() {
            push_hex(out, b"\\x", u32::from(*byte), 2);
        }
    }
    out.push(b'"');
}

fn push_escaped_char(out: &mut Vec<u8>, c: char) {
    match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\u{07}' => out.extend_from_slice(b"\\a"),
        '\u{08}' => out.extend_from_slice(b"\\b"),
        '\u{0C}' => out.extend_from_slice(b"\\f"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\u{0B}' => out.extend_from_slice(b"\\v"),
        c if c < ' ' || c == '\u{7F}' => push_hex(out, b"\\x", u32::from(c), 2),
        c if c.is_ascii() || is_go_printable(c) => {
            let mut buffer = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
        }
        c if u32::from(c) < 0x10000 => push_hex(out, b"\\u", u32::from(c), 4),
        c => push_hex(out, b"\\U", u32::from(c), 8),
    }
}

fn push_hex(out: &mut Vec<u8>, prefix: &[u8], value: u32, digits: usize) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(format!("{value:0digits$x}").as_bytes());
}

/// Go's `unicode.IsPrint` for non-ASCII runes: letters, marks, numbers, punctuation and
/// symbols, but not spaces other than U+0020, controls, format characters, private use or
/// noncharacters. Without Unicode category tables, other unassigned code points count as
/// printable (Go would escape them); they do not occur in real headers.
fn is_go_printable(c: char) -> bool {
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let code = u32::from(c);
    let format_or_private = matches!(
        code,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xE000..=0xF8FF
            | 0xFDD0..=0xFDEF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            | 0xF0000..=0x10FFFF
    );
    let noncharacter = code & 0xFFFE == 0xFFFE;
    !format_or_private && !noncharacter
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` in UTC, always 9 fractional digits.
pub(crate) fn format_received_at(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let second_of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_nanos()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The `HTTP/x.y` text of a request version, as Go's `Request.Proto`.
pub(crate) fn proto_name(version: hyper::Version) -> &'static str {
    match version {
        hyper::Version::HTTP_09 => "HTTP/0.9",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(value: &[u8]) -> String {
        let mut out = Vec::new();
        write_dash_or_quoted(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quoting_follows_go_strconv_quote() {
        assert_eq!(
            quoted("a\"b\\c\td\u{01}é\u{200B}".as_bytes()),
            r#""a\"b\\c\td\x01é\u200b""#
        );
        assert_eq!(quoted(b"a\"b\\c\td\x01\xC3\xA9\xE2\x80\x8B\xFF"), {
            r#""a\"b\\c\td\x01é\u200b\xff""#
        });
        assert_eq!(quoted(b""), r#""-""#);
        assert_eq!(
            quoted(b"\x07\x08\x0C\n\r\x0B\x7F\x1B"),
            r#""\a\b\f\n\r\v\x7f\x1b""#
        );
        // C1 controls, non-ASCII spaces and private use are runes, so `\u`; beyond the BMP `\U`.
        assert_eq!(
            quoted("\u{85}\u{A0}\u{E000}\u{F0000}".as_bytes()),
            r#""\u0085\u00a0\ue000\U000f0000""#
        );
        // Printable non-ASCII stays raw, including beyond the BMP and U+FFFD itself.
        assert_eq!(
            quoted("日本 😀 \u{FFFD}".as_bytes()),
            "\"日本 😀 \u{FFFD}\""
        );
        // A truncated multi-byte sequence escapes each byte.
        assert_eq!(quoted(b"x\xE2\x82"), r#""x\xe2\x82""#);
        assert_eq!(quoted(b"-"), r#""-""#);
    }

    #[test]
    fn truncation_halves_and_appends_the_uppercased_name() {
        assert_eq!(truncate_to_size(b"short", "User-Agent", 10), b"short");
        let suffix = b"...USER-AGENT-TOO-LONG-TO-LOG--TRUNCATED";
        let long = vec![b'a'; 1_500];
        let cut = truncate_to_size(&long, "User-Agent", 1_000);
        assert_eq!(cut.len(), 750 + suffix.len());
        assert!(cut.ends_with(suffix));
        assert!(cut[..750].iter().all(|&b| b == b'a'));
        // Halving repeats (suffix included) until it fits, as in gorouter.
        let very_long = vec![b'u'; 100_000];
        let cut = truncate_to_size(&very_long, "request-uri", 20_000);
        assert!(cut.len() <= 20_000, "{}", cut.len());
        assert!(cut.ends_with(b"...REQUEST-URI-TOO-LONG-TO-LOG--TRUNCATED"));
        assert_eq!(
            cut.len(),
            ((100_000 / 2 + 41) / 2 + 41) / 2 + 41,
            "three rounds"
        );
    }

    #[test]
    fn received_at_has_nine_fractional_digits_in_utc() {
        let at = UNIX_EPOCH + Duration::new(1_767_268_800, 123_456_789);
        assert_eq!(format_received_at(at), "2026-01-01T12:00:00.123456789Z");
        let at = UNIX_EPOCH + Duration::new(951_782_400, 5);
        assert_eq!(format_received_at(at), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            format_received_at(UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    fn record() -> AccessRecord {
        AccessRecord {
            host: "shop.apps.example.com".into(),
            received_at: Some(UNIX_EPOCH + Duration::new(1_767_268_800, 123_456_789)),
            method: "GET".into(),
            uri: "/cart?id=42".into(),
            proto: "HTTP/1.1",
            status: 200,
            bytes_received: 0,
            bytes_sent: 1532,
            referer: Some(HeaderValue::from_static("https://shop.apps.example.com/")),
            user_agent: Some(HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64)")),
            remote_addr: Some("198.51.100.23:52114".parse().unwrap()),
            backend_addr: "10.0.32.7:61012".into(),
            x_forwarded_for: Some(HeaderValue::from_static("203.0.113.9, 198.51.100.23")),
            x_forwarded_proto: Some(HeaderValue::from_static("https")),
            request_id: "8a1f3c52-9d4e-4b7a-6c21-0e5f9a7b3d11".into(),
            response_time: 0.018733,
            gorouter_time: 0.000402,
            app_id: "6b0d2c3e-8f1a-4e59-9c7d-2a4b6e8f0c13".into(),
            app_index: "1".into(),
            instance_id: "3c9e5a71-2b4d-4f6e-58a0-1d7c".into(),
            router_error: None,
        }
    }

    #[test]
    fn the_line_matches_the_reference_example() {
        let line = String::from_utf8(record().payload()).unwrap();
        assert_eq!(
            line,
            r#"shop.apps.example.com - [2026-01-01T12:00:00.123456789Z] "GET /cart?id=42 HTTP/1.1" 200 0 1532 "https://shop.apps.example.com/" "Mozilla/5.0 (X11; Linux x86_64)" "198.51.100.23:52114" "10.0.32.7:61012" x_forwarded_for:"203.0.113.9, 198.51.100.23" x_forwarded_proto:"https" vcap_request_id:"8a1f3c52-9d4e-4b7a-6c21-0e5f9a7b3d11" response_time:0.018733 gorouter_time:0.000402 app_id:"6b0d2c3e-8f1a-4e59-9c7d-2a4b6e8f0c13" app_index:"1" instance_id:"3c9e5a71-2b4d-4f6e-58a0-1d7c" x_cf_routererror:"-""#
        );
    }

    #[test]
    fn empty_values_zero_status_and_negative_times_print_dashes() {
        let record = AccessRecord {
            status: 0,
            referer: None,
            user_agent: Some(HeaderValue::from_static("")),
            response_time: -1.0,
            gorouter_time: -1.0,
            app_index: String::new(),
            router_error: Some(HeaderValue::from_static("endpoint_failure")),
            ..record()
        };
        let line = String::from_utf8(record.payload()).unwrap();
        assert!(
            line.contains(r#""GET /cart?id=42 HTTP/1.1" "-" 0 1532 "-" "-" "198"#),
            "{line}"
        );
        assert!(
            line.contains(r#" response_time:"-" gorouter_time:"-" app_id:"#),
            "{line}"
        );
        assert!(line.contains(r#" app_index:"-" "#), "{line}");
        assert!(
            line.ends_with(r#" x_cf_routererror:"endpoint_failure""#),
            "{line}"
        );
    }

    #[test]
    fn an_oversized_record_is_rebuilt_truncated() {
        let small = record().payload();
        assert_eq!(small, record().line(false));
        let record = AccessRecord {
            uri: format!("/{}", "a".repeat(70_000)),
            user_agent: Some(HeaderValue::from_str(&"b".repeat(1_200)).unwrap()),
            ..record()
        };
        let payload = String::from_utf8(record.payload()).unwrap();
        assert!(payload.len() < MAXIMUM_RECORD_BYTES, "{}", payload.len());
        assert!(payload.contains("...REQUEST-URI-TOO-LONG-TO-LOG--TRUNCATED HTTP/1.1\" 200"));
        assert!(payload.contains(&format!(
            "\"{}...USER-AGENT-TOO-LONG-TO-LOG--TRUNCATED\"",
            "b".repeat(600)
        )));
        // Fields under their limit are untouched by truncation.
        assert!(payload.contains(r#""https://shop.apps.example.com/""#));
        // A record just under the limit is not truncated, even with a long User-Agent.
        let under = AccessRecord {
            user_agent: Some(HeaderValue::from_str(&"c".repeat(5_000)).unwrap()),
            ..record
        };
        let under = AccessRecord {
            uri: "/x".into(),
            ..under
        };
        assert!(String::from_utf8(under.payload())
            .unwrap()
            .contains(&"c".repeat(5_000)));
    }

    #[test]
    fn identity_comes_from_the_registration_tags() {
        let mut message = RegistryMessage {
            host: "10.0.0.1".into(),
            port: 61000,
            uris: vec!["shop.example.com".into()],
            app: Some("app-guid".into()),
            private_instance_index: Some("3".into()),
            ..RegistryMessage::default()
        };
        let bare = LogIdentity::from_registration(&message).unwrap();
        assert_eq!(bare.app.app_id, "app-guid");
        assert_eq!(bare.app.app_name, "");
        assert_eq!(bare.process, None);
        assert_eq!(bare.app_index, Some(3));

        for (name, value) in [
            ("app_name", "shop"),
            ("space_id", "space-guid"),
            ("space_name", "dev"),
            ("organization_id", "org-guid"),
            ("organization_name", "acme"),
            ("process_id", "process-guid"),
            ("process_type", "web"),
            ("process_instance_id", "instance-guid"),
            ("component", "dea-0"),
            ("team", "checkout"),
        ] {
            message.tags.insert(name.into(), value.into());
        }
        let identity = LogIdentity::from_registration(&message).unwrap();
        assert_eq!(identity.app.organization_name, "acme");
        assert_eq!(identity.process.as_ref().unwrap().process_type, "web");
        let envelope = identity.envelope(4, b"line".to_vec());
        assert_eq!(envelope.instance_id, "4");
        assert_eq!(envelope.source_id, "app-guid");
        let tag = |name: &str| envelope.tags.get(name).map(String::as_str);
        assert_eq!(tag("source_type"), Some("RTR"));
        assert_eq!(tag("instance_id"), Some("3"));
        assert_eq!(tag("process_instance_id"), Some("instance-guid"));
        // Custom tags pass through; the envelope's own tags win.
        assert_eq!(tag("team"), Some("checkout"));
        assert_eq!(tag("component"), Some("route-emitter"));

        message.app = None;
        assert_eq!(LogIdentity::from_registration(&message), None);
    }
}
