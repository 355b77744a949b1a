//! Log envelopes: the loggregator v2 `Envelope` model with its protojson form (the JSON the
//! log-cache API serves to `cf logs`), constructors for each emitter's conventions
//! (`reference/log-formats.md` §1.3), and [`LogEmitter`], the fire-and-forget UDP sender every
//! component uses to ship envelopes to the loggregator.
//!
//! # JSON form
//!
//! [`Envelope`]'s `Serialize` writes what log-cache's gateway writes (protojson with proto field
//! names and unpopulated fields emitted): `timestamp` and other 64-bit integers as strings,
//! `payload` as standard base64, `type` as `"OUT"`/`"ERR"`, `deprecated_tags` and `tags` always
//! present, map keys sorted, and only the one message field the envelope carries. Nothing else:
//! the cf CLI parses it with protojson, which rejects unknown fields. `Deserialize` accepts the
//! same forms protojson accepts (64-bit integers as strings or numbers, camelCase aliases, `type`
//! as a name or a number) and rejects unknown fields.
//!
//! # Ingress transport (the one I/O exception in `protocol`)
//!
//! `protocol` otherwise performs no I/O. [`LogEmitter`] is a deliberate exception: a
//! non-blocking UDP socket that sends each envelope (or batch) as one JSON datagram,
//! [`IngressDatagram`] `{"emitter":"<id>","seq":N,"batch":[envelope, …]}` (plus
//! `"dropped":N` on a drop notice's datagram), to the loggregator's
//! ingress address. It lives here so that the Cloud Controller, the router and the DEA can emit
//! without depending on the loggregator crate. `emit` never blocks and never awaits: when the
//! socket would block, or on any error, the envelope is dropped and counted, per source id
//! ([`LogEmitter::dropped_by_source`]); once a send succeeds again, each source that lost lines
//! gets an `LGR` line saying how many ([`emitter_drop_notice`]). Each emitter has a random id
//! and numbers its datagrams, so the receiver can count datagrams lost in transit.
//!
//! The receiver's fast path, [`IngressDatagram::scan`], takes datagrams in exactly the form the
//! emitter writes apart without decoding them, and keeps each envelope's JSON as is.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Largest datagram an emitter sends. UDP over IPv4 carries at most 65,507 bytes; stay a little
/// below so that a datagram never needs an IPv6 jumbogram or a second look.
pub const MAX_DATAGRAM_BYTES: usize = 65_000;

/// Current time in nanoseconds since the Unix epoch (the envelope timestamp unit).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A loggregator v2 envelope (`loggregator.v2.Envelope`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// Nanoseconds since the Unix epoch, set by the emitting process when it emits.
    pub timestamp: i64,
    /// The app GUID for app-related data.
    pub source_id: String,
    /// App instance index, router index, CC index… depending on the source (§1.3).
    pub instance_id: String,
    /// Legacy typed tags; Kiln's emitters never set them, but they round-trip.
    pub deprecated_tags: BTreeMap<String, TagValue>,
    /// String tags: `source_type`, `origin`, app/space/org names and ids, …
    pub tags: BTreeMap<String, String>,
    /// The one message the envelope carries (proto3 `oneof message`), if any.
    pub message: Option<Message>,
}

/// A `loggregator.v2.Value` (the value of a deprecated tag).
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// `text`
    Text(String),
    /// `integer`
    Integer(i64),
    /// `decimal`
    Decimal(f64),
}

/// The `oneof message` of an envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A log line.
    Log(Log),
    /// A counter.
    Counter(Counter),
    /// A set of gauge values.
    Gauge(Gauge),
    /// A timer (start/stop in ns).
    Timer(Timer),
    /// An event.
    Event(Event),
}

/// `loggregator.v2.Log`.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// The raw line, without its terminator.
    pub payload: Vec<u8>,
    /// Which stream it came from.
    pub log_type: LogType,
}

/// `loggregator.v2.Log.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    /// Standard output (proto value 0).
    Out,
    /// Standard error (proto value 1).
    Err,
}

impl LogType {
    /// `"OUT"` or `"ERR"`, as protojson and `cf logs` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Out => "OUT",
            LogType::Err => "ERR",
        }
    }
}

/// `loggregator.v2.Counter`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Counter {
    /// Counter name.
    pub name: String,
    /// Increment since the last emission.
    pub delta: u64,
    /// Running total.
    pub total: u64,
}

/// `loggregator.v2.Gauge`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gauge {
    /// Metric name → value with unit.
    pub metrics: BTreeMap<String, GaugeValue>,
}

/// `loggregator.v2.GaugeValue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GaugeValue {
    /// Unit, e.g. `bytes`, `percentage`.
    pub unit: String,
    /// The value.
    pub value: f64,
}

/// `loggregator.v2.Timer`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timer {
    /// Timer name (`http` for router request timers).
    pub name: String,
    /// Start, ns since the epoch.
    pub start: i64,
    /// Stop, ns since the epoch.
    pub stop: i64,
}

/// `loggregator.v2.Event`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
}

/// The kinds of envelope, as log-cache's `envelope_types` query parameter names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeKind {
    /// `LOG`
    Log,
    /// `COUNTER`
    Counter,
    /// `GAUGE`
    Gauge,
    /// `TIMER`
    Timer,
    /// `EVENT`
    Event,
}

impl EnvelopeKind {
    /// Parses a log-cache `EnvelopeType` name (`LOG`, `COUNTER`, `GAUGE`, `TIMER`, `EVENT`).
    /// `ANY` and unknown names give `None`.
    pub fn from_name(name: &str) -> Option<EnvelopeKind> {
        match name {
            "LOG" => Some(EnvelopeKind::Log),
            "COUNTER" => Some(EnvelopeKind::Counter),
            "GAUGE" => Some(EnvelopeKind::Gauge),
            "TIMER" => Some(EnvelopeKind::Timer),
            "EVENT" => Some(EnvelopeKind::Event),
            _ => None,
        }
    }
}

/// Names and GUIDs of an app, its space and its org: the tags every app-related line carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppIdentity {
    /// App GUID (also the envelope's `source_id`).
    pub app_id: String,
    /// App name.
    pub app_name: String,
    /// Space GUID.
    pub space_id: String,
    /// Space name.
    pub space_name: String,
    /// Organization GUID.
    pub organization_id: String,
    /// Organization name.
    pub organization_name: String,
}

/// The process an instance belongs to (CC's desired-LRP metric tags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessIdentity {
    /// Process GUID (`process_id` tag).
    pub process_id: String,
    /// Process type, e.g. `web`.
    pub process_type: String,
    /// Instance GUID of the running instance (`process_instance_id` tag).
    pub process_instance_id: String,
}

impl AppIdentity {
    /// The identity a `vcap_application`-shaped object names (`application_name`, `space_id`,
    /// `space_name`, `organization_id`, `organization_name`); `fallback_name` when it names no app.
    pub fn from_vcap_application(
        app_guid: &str,
        fallback_name: &str,
        vcap: &serde_json::Value,
    ) -> AppIdentity {
        let text = |key: &str| {
            vcap.get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let name = text("application_name");
        AppIdentity {
            app_id: app_guid.to_owned(),
            app_name: if name.is_empty() {
                fallback_name.to_owned()
            } else {
                name
            },
            space_id: text("space_id"),
            space_name: text("space_name"),
            organization_id: text("organization_id"),
            organization_name: text("organization_name"),
        }
    }

    fn insert_tags(&self, tags: &mut BTreeMap<String, String>) {
        for (key, value) in [
            ("app_id", &self.app_id),
            ("app_name", &self.app_name),
            ("space_id", &self.space_id),
            ("space_name", &self.space_name),
            ("organization_id", &self.organization_id),
            ("organization_name", &self.organization_name),
        ] {
            tags.insert(key.to_owned(), value.clone());
        }
    }
}

impl ProcessIdentity {
    fn insert_tags(&self, tags: &mut BTreeMap<String, String>) {
        tags.insert("process_id".to_owned(), self.process_id.clone());
        tags.insert("process_type".to_owned(), self.process_type.clone());
        tags.insert(
            "process_instance_id".to_owned(),
            self.process_instance_id.clone(),
        );
    }
}

impl Envelope {
    /// A log envelope stamped now, with `tags.source_type` set and nothing else.
    pub fn log(
        source_id: impl Into<String>,
        instance_id: impl Into<String>,
        source_type: impl Into<String>,
        log_type: LogType,
        payload: impl Into<Vec<u8>>,
    ) -> Envelope {
        let mut tags = BTreeMap::new();
        tags.insert("source_type".to_owned(), source_type.into());
        Envelope {
            timestamp: now_nanos(),
            source_id: source_id.into(),
            instance_id: instance_id.into(),
            deprecated_tags: BTreeMap::new(),
            tags,
            message: Some(Message::Log(Log {
                payload: payload.into(),
                log_type,
            })),
        }
    }

    /// The tags the executor puts on an instance's lines: the desired-LRP metric tags
    /// (`source_id`, `process_id`, `process_type`, org/space/app ids and names,
    /// `process_instance_id`, `instance_id` = index) plus `origin=rep`.
    fn instance_log(
        source_type: String,
        app: &AppIdentity,
        process: &ProcessIdentity,
        index: u32,
        log_type: LogType,
        payload: Vec<u8>,
    ) -> Envelope {
        let index = index.to_string();
        let mut envelope = Envelope::log(&app.app_id, &index, source_type, log_type, payload);
        app.insert_tags(&mut envelope.tags);
        process.insert_tags(&mut envelope.tags);
        envelope
            .tags
            .insert("source_id".to_owned(), app.app_id.clone());
        envelope.tags.insert("instance_id".to_owned(), index);
        envelope.tags.insert("origin".to_owned(), "rep".to_owned());
        envelope
    }

    /// An app process's output line: `[APP/PROC/<TYPE>/<index>]`, OUT for stdout and ERR for
    /// stderr, `origin=rep` and the instance's metric tags.
    pub fn app_log(
        app: &AppIdentity,
        process: &ProcessIdentity,
        index: u32,
        log_type: LogType,
        payload: impl Into<Vec<u8>>,
    ) -> Envelope {
        let source_type = format!("APP/PROC/{}", process.process_type.to_uppercase());
        Envelope::instance_log(source_type, app, process, index, log_type, payload.into())
    }

    /// A cell lifecycle line about an instance (`[CELL/<index>]`, e.g. `Cell … creating
    /// container for instance …`), with the same tags as the instance's own lines.
    pub fn cell_log(
        app: &AppIdentity,
        process: &ProcessIdentity,
        index: u32,
        log_type: LogType,
        payload: impl Into<Vec<u8>>,
    ) -> Envelope {
        Envelope::instance_log(
            "CELL".to_owned(),
            app,
            process,
            index,
            log_type,
            payload.into(),
        )
    }

    /// A staging line (`[STG/0]`): `origin=rep`, the staging metric tags (`source_id`, app,
    /// space and org ids and names, no `process_*`) and `instance_id=0`.
    pub fn staging_log(
        app: &AppIdentity,
        log_type: LogType,
        payload: impl Into<Vec<u8>>,
    ) -> Envelope {
        let mut envelope = Envelope::log(&app.app_id, "0", "STG", log_type, payload);
        app.insert_tags(&mut envelope.tags);
        envelope
            .tags
            .insert("source_id".to_owned(), app.app_id.clone());
        envelope
            .tags
            .insert("instance_id".to_owned(), "0".to_owned());
        envelope.tags.insert("origin".to_owned(), "rep".to_owned());
        envelope
    }

    /// A router access-log line (`[RTR/<router index>]`, always OUT): `origin=gorouter`,
    /// `__v1_type=LogMessage`, and the route-emitter tags of the endpoint
    /// (`component=route-emitter`, app/space/org, `process_*` when known, and the tag
    /// `instance_id` = the *app* index). No `source_id` tag, as after CF's v1→v2 conversion.
    pub fn router_log(
        app: &AppIdentity,
        process: Option<&ProcessIdentity>,
        app_index: Option<u32>,
        router_index: u32,
        payload: impl Into<Vec<u8>>,
    ) -> Envelope {
        let mut envelope = Envelope::log(
            &app.app_id,
            router_index.to_string(),
            "RTR",
            LogType::Out,
            payload,
        );
        app.insert_tags(&mut envelope.tags);
        if let Some(process) = process {
            process.insert_tags(&mut envelope.tags);
        }
        if let Some(app_index) = app_index {
            envelope
                .tags
                .insert("instance_id".to_owned(), app_index.to_string());
        }
        let tags = &mut envelope.tags;
        tags.insert("origin".to_owned(), "gorouter".to_owned());
        tags.insert("__v1_type".to_owned(), "LogMessage".to_owned());
        tags.insert("component".to_owned(), "route-emitter".to_owned());
        envelope
    }

    /// A Cloud Controller line (`[API/<cc index>]`): `origin=cloud_controller` and the six
    /// app/space/org tags (empty strings when the app is gone), no `source_id`/`instance_id`/
    /// `process_*` tags. OUT for `emit`, ERR for `emit_error`.
    pub fn api_log(
        app: &AppIdentity,
        cc_index: u32,
        log_type: LogType,
        message: impl Into<Vec<u8>>,
    ) -> Envelope {
        let mut envelope =
            Envelope::log(&app.app_id, cc_index.to_string(), "API", log_type, message);
        app.insert_tags(&mut envelope.tags);
        envelope
            .tags
            .insert("origin".to_owned(), "cloud_controller".to_owned());
        envelope
    }

    /// A loggregator notice in an app's stream (`[LGR/0]`): always ERR, `source_type=LGR`, no
    /// `origin` — e.g. `N messages lost for application … in user provided syslog drain …`.
    pub fn loggregator_log(source_id: impl Into<String>, message: impl Into<Vec<u8>>) -> Envelope {
        Envelope::log(source_id, "0", "LGR", LogType::Err, message)
    }

    /// A gauge envelope stamped now: `(name, unit, value)` triples, `origin` tag as given.
    pub fn gauge<'a>(
        source_id: impl Into<String>,
        instance_id: impl Into<String>,
        origin: &str,
        metrics: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
    ) -> Envelope {
        let metrics = metrics
            .into_iter()
            .map(|(name, unit, value)| {
                (
                    name.to_owned(),
                    GaugeValue {
                        unit: unit.to_owned(),
                        value,
                    },
                )
            })
            .collect();
        let mut tags = BTreeMap::new();
        tags.insert("origin".to_owned(), origin.to_owned());
        Envelope {
            timestamp: now_nanos(),
            source_id: source_id.into(),
            instance_id: instance_id.into(),
            deprecated_tags: BTreeMap::new(),
            tags,
            message: Some(Message::Gauge(Gauge { metrics })),
        }
    }

    /// A counter envelope stamped now.
    pub fn counter(
        source_id: impl Into<String>,
        instance_id: impl Into<String>,
        origin: &str,
        name: impl Into<String>,
        delta: u64,
        total: u64,
    ) -> Envelope {
        let mut tags = BTreeMap::new();
        tags.insert("origin".to_owned(), origin.to_owned());
        Envelope {
            timestamp: now_nanos(),
            source_id: source_id.into(),
            instance_id: instance_id.into(),
            deprecated_tags: BTreeMap::new(),
            tags,
            message: Some(Message::Counter(Counter {
                name: name.into(),
                delta,
                total,
            })),
        }
    }

    /// The envelope's kind, or `None` when it carries no message.
    pub fn kind(&self) -> Option<EnvelopeKind> {
        self.message.as_ref().map(|message| match message {
            Message::Log(_) => EnvelopeKind::Log,
            Message::Counter(_) => EnvelopeKind::Counter,
            Message::Gauge(_) => EnvelopeKind::Gauge,
            Message::Timer(_) => EnvelopeKind::Timer,
            Message::Event(_) => EnvelopeKind::Event,
        })
    }

    /// The log message, if this is a log envelope.
    pub fn as_log(&self) -> Option<&Log> {
        match &self.message {
            Some(Message::Log(log)) => Some(log),
            _ => None,
        }
    }

    /// `tags.source_type`, if set.
    pub fn source_type(&self) -> Option<&str> {
        self.tags.get("source_type").map(String::as_str)
    }

    /// Appends the envelope's JSON to `out`: exactly what its `Serialize` writes through
    /// `serde_json`, but for log envelopes (the hot case) written directly, copying runs of
    /// characters that need no escaping at once.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let log = match &self.message {
            Some(Message::Log(log)) if self.deprecated_tags.is_empty() => log,
            _ => {
                // Envelope's Serialize cannot fail, nor can writing to a Vec.
                let _ = serde_json::to_writer(&mut *out, self);
                return;
            }
        };
        out.extend_from_slice(b"{\"timestamp\":\"");
        let _ = std::io::Write::write_fmt(out, format_args!("{}", self.timestamp));
        out.extend_from_slice(b"\",\"source_id\":");
        write_json_string(out, &self.source_id);
        out.extend_from_slice(b",\"instance_id\":");
        write_json_string(out, &self.instance_id);
        out.extend_from_slice(b",\"deprecated_tags\":{},\"tags\":{");
        for (index, (key, value)) in self.tags.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_json_string(out, key);
            out.push(b':');
            write_json_string(out, value);
        }
        out.extend_from_slice(b"},\"log\":{\"payload\":\"");
        let start = out.len();
        out.resize(
            start + base64::encoded_len(log.payload.len(), true).unwrap_or(0),
            0,
        );
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(&log.payload, &mut out[start..])
            .unwrap_or(0);
        out.truncate(start + written);
        out.extend_from_slice(match log.log_type {
            LogType::Out => b"\",\"type\":\"OUT\"}}",
            LogType::Err => b"\",\"type\":\"ERR\"}}",
        });
    }

    /// A rough count of the bytes this envelope occupies (for memory bounds).
    pub fn approximate_size(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
        let message = match &self.message {
            Some(Message::Log(log)) => log.payload.len(),
            Some(Message::Gauge(gauge)) => gauge
                .metrics
                .iter()
                .map(|(name, value)| name.len() + value.unit.len() + 24)
                .sum(),
            Some(Message::Counter(counter)) => counter.name.len() + 16,
            Some(Message::Timer(timer)) => timer.name.len() + 16,
            Some(Message::Event(event)) => event.title.len() + event.body.len(),
            None => 0,
        };
        64 + self.source_id.len() + self.instance_id.len() + tags + message
    }
}

// ---------------------------------------------------------------------------------------------
// JSON (protojson) form.

/// The position of the first byte at or after `at` that a JSON string cannot hold as is (`"`,
/// `\\`, a control character), or `bytes.len()`. Eight bytes at a time: in each word, a
/// byte's high bit is set in the mask if the byte is zero after the XOR (or below 0x20); the
/// lowest set bit is always a true match, since borrows only run towards higher bytes.
fn find_json_special(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGHS;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

/// Writes `text` as a JSON string exactly as serde_json does: `"` and `\\` escaped with a
/// backslash, `\b \t \n \f \r` in short form, other control characters as `\u00xx`
/// (lowercase), everything else as is.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    let mut at = 0;
    loop {
        let special = find_json_special(bytes, at);
        out.extend_from_slice(&bytes[at..special]);
        let Some(&byte) = bytes.get(special) else {
            break;
        };
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        at = special + 1;
    }
    out.push(b'"');
}

fn serialize_i64_as_string<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn serialize_u64_as_string<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// protojson writes non-finite doubles as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn serialize_double<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if value.is_infinite() && *value > 0.0 {
        serializer.serialize_str("Infinity")
    } else if value.is_infinite() {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
    }
}

struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Straight into the output, without an intermediate String.
        serializer.collect_str(&base64::display::Base64Display::new(
            self.0,
            &base64::engine::general_purpose::STANDARD,
        ))
    }
}

#[derive(Serialize)]
struct LogJson<'a> {
    payload: Base64<'a>,
    #[serde(rename = "type")]
    log_type: &'static str,
}

#[derive(Serialize)]
struct CounterJson<'a> {
    name: &'a str,
    #[serde(serialize_with = "serialize_u64_as_string")]
    delta: u64,
    #[serde(serialize_with = "serialize_u64_as_string")]
    total: u64,
}

#[derive(Serialize)]
struct GaugeValueJson<'a> {
    unit: &'a str,
    #[serde(serialize_with = "serialize_double")]
    value: f64,
}

struct GaugeMetricsJson<'a>(&'a BTreeMap<String, GaugeValue>);

impl Serialize for GaugeMetricsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(
                name,
                &GaugeValueJson {
                    unit: &value.unit,
                    value: value.value,
                },
            )?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct GaugeJson<'a> {
    metrics: GaugeMetricsJson<'a>,
}

#[derive(Serialize)]
struct TimerJson<'a> {
    name: &'a str,
    #[serde(serialize_with = "serialize_i64_as_string")]
    start: i64,
    #[serde(serialize_with = "serialize_i64_as_string")]
    stop: i64,
}

#[derive(Serialize)]
struct EventJson<'a> {
    title: &'a str,
    body: &'a str,
}

impl Serialize for TagValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            TagValue::Text(text) => map.serialize_entry("text", text)?,
            TagValue::Integer(integer) => map.serialize_entry("integer", &integer.to_string())?,
            TagValue::Decimal(decimal) => {
                struct Double(f64);
                impl Serialize for Double {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        serialize_double(&self.0, s)
                    }
                }
                map.serialize_entry("decimal", &Double(*decimal))?
            }
        }
        map.end()
    }
}

/// Field order is the proto's declaration order, as protojson writes it.
#[derive(Serialize)]
struct EnvelopeJson<'a> {
    #[serde(serialize_with = "serialize_i64_as_string")]
    timestamp: i64,
    source_id: &'a str,
    instance_id: &'a str,
    deprecated_tags: &'a BTreeMap<String, TagValue>,
    tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<LogJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counter: Option<CounterJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gauge: Option<GaugeJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timer: Option<TimerJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<EventJson<'a>>,
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut json = EnvelopeJson {
            timestamp: self.timestamp,
            source_id: &self.source_id,
            instance_id: &self.instance_id,
            deprecated_tags: &self.deprecated_tags,
            tags: &self.tags,
            log: None,
            counter: None,
            gauge: None,
            timer: None,
            event: None,
        };
        match &self.message {
            Some(Message::Log(log)) => {
                json.log = Some(LogJson {
                    payload: Base64(&log.payload),
                    log_type: log.log_type.as_str(),
                })
            }
            Some(Message::Counter(counter)) => {
                json.counter = Some(CounterJson {
                    name: &counter.name,
                    delta: counter.delta,
                    total: counter.total,
                })
            }
            Some(Message::Gauge(gauge)) => {
                json.gauge = Some(GaugeJson {
                    metrics: GaugeMetricsJson(&gauge.metrics),
                })
            }
            Some(Message::Timer(timer)) => {
                json.timer = Some(TimerJson {
                    name: &timer.name,
                    start: timer.start,
                    stop: timer.stop,
                })
            }
            Some(Message::Event(event)) => {
                json.event = Some(EventJson {
                    title: &event.title,
                    body: &event.body,
                })
            }
            None => {}
        }
        json.serialize(serializer)
    }
}

/// A protojson number: a JSON number or a decimal string (`"NaN"`, `"Infinity"` too for
/// doubles). A visitor rather than an untagged enum, so nothing is buffered on the hot path.
struct NumberVisitor<T>(std::marker::PhantomData<T>);

trait ProtoNumber: Sized + std::str::FromStr {
    const EXPECTING: &'static str;
    fn from_i64(value: i64) -> Option<Self>;
    fn from_u64(value: u64) -> Option<Self>;
    fn from_f64(value: f64) -> Option<Self>;
    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
}

impl ProtoNumber for i64 {
    const EXPECTING: &'static str = "a 64-bit integer as a number or a string";
    fn from_i64(value: i64) -> Option<Self> {
        Some(value)
    }
    fn from_u64(value: u64) -> Option<Self> {
        i64::try_from(value).ok()
    }
    fn from_f64(value: f64) -> Option<Self> {
        (value.fract() == 0.0 && value.abs() < 9.2e18).then_some(value as i64)
    }
}

impl ProtoNumber for u64 {
    const EXPECTING: &'static str = "an unsigned 64-bit integer as a number or a string";
    fn from_i64(value: i64) -> Option<Self> {
        u64::try_from(value).ok()
    }
    fn from_u64(value: u64) -> Option<Self> {
        Some(value)
    }
    fn from_f64(value: f64) -> Option<Self> {
        (value.fract() == 0.0 && (0.0..1.8e19).contains(&value)).then_some(value as u64)
    }
}

impl ProtoNumber for f64 {
    const EXPECTING: &'static str = "a double as a number or a string";
    fn from_i64(value: i64) -> Option<Self> {
        Some(value as f64)
    }
    fn from_u64(value: u64) -> Option<Self> {
        Some(value as f64)
    }
    fn from_f64(value: f64) -> Option<Self> {
        Some(value)
    }
    fn from_text(text: &str) -> Option<Self> {
        match text {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        }
    }
}

impl<'de, T: ProtoNumber> de::Visitor<'de> for NumberVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(T::EXPECTING)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        T::from_i64(value).ok_or_else(|| E::custom(T::EXPECTING))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        T::from_u64(value).ok_or_else(|| E::custom(T::EXPECTING))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        T::from_f64(value).ok_or_else(|| E::custom(T::EXPECTING))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        T::from_text(value).ok_or_else(|| E::custom(T::EXPECTING))
    }
}

fn deserialize_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(NumberVisitor(std::marker::PhantomData))
}

fn deserialize_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(NumberVisitor(std::marker::PhantomData))
}

fn deserialize_double<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    deserializer.deserialize_any(NumberVisitor(std::marker::PhantomData))
}

fn deserialize_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = String::deserialize(deserializer)?;
    // protojson accepts standard and URL-safe alphabets, padded or not.
    for engine in [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(text.as_bytes()) {
            return Ok(bytes);
        }
    }
    Err(de::Error::custom("payload is not valid base64"))
}

fn deserialize_log_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<LogType, D::Error> {
    struct LogTypeVisitor;
    impl de::Visitor<'_> for LogTypeVisitor {
        type Value = LogType;
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("log type OUT or ERR (or 0, 1)")
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<LogType, E> {
            match value {
                0 => Ok(LogType::Out),
                1 => Ok(LogType::Err),
                _ => Err(E::custom("log type must be OUT or ERR")),
            }
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<LogType, E> {
            self.visit_u64(u64::try_from(value).unwrap_or(u64::MAX))
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<LogType, E> {
            match value {
                "OUT" => Ok(LogType::Out),
                "ERR" => Ok(LogType::Err),
                _ => Err(E::custom("log type must be OUT or ERR")),
            }
        }
    }
    deserializer.deserialize_any(LogTypeVisitor)
}

fn default_log_type() -> LogType {
    LogType::Out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogIn {
    #[serde(default, deserialize_with = "deserialize_base64")]
    payload: Vec<u8>,
    #[serde(
        rename = "type",
        default = "default_log_type",
        deserialize_with = "deserialize_log_type"
    )]
    log_type: LogType,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterIn {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "deserialize_u64")]
    delta: u64,
    #[serde(default, deserialize_with = "deserialize_u64")]
    total: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GaugeValueIn {
    #[serde(default)]
    unit: String,
    #[serde(default, deserialize_with = "deserialize_double")]
    value: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GaugeIn {
    #[serde(default)]
    metrics: BTreeMap<String, GaugeValueIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerIn {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "deserialize_i64")]
    start: i64,
    #[serde(default, deserialize_with = "deserialize_i64")]
    stop: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagValueIn {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_i64")]
    integer: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_optional_double")]
    decimal: Option<f64>,
}

fn deserialize_optional_i64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserialize_i64(deserializer).map(Some)
}

fn deserialize_optional_double<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    deserialize_double(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    #[serde(default, deserialize_with = "deserialize_i64")]
    timestamp: i64,
    #[serde(default, alias = "sourceId")]
    source_id: String,
    #[serde(default, alias = "instanceId")]
    instance_id: String,
    #[serde(default, alias = "deprecatedTags")]
    deprecated_tags: BTreeMap<String, TagValueIn>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    log: Option<LogIn>,
    #[serde(default)]
    counter: Option<CounterIn>,
    #[serde(default)]
    gauge: Option<GaugeIn>,
    #[serde(default)]
    timer: Option<TimerIn>,
    #[serde(default)]
    event: Option<EventIn>,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Envelope, D::Error> {
        let json = EnvelopeIn::deserialize(deserializer)?;
        let mut messages = Vec::with_capacity(1);
        if let Some(log) = json.log {
            messages.push(Message::Log(Log {
                payload: log.payload,
                log_type: log.log_type,
            }));
        }
        if let Some(counter) = json.counter {
            messages.push(Message::Counter(Counter {
                name: counter.name,
                delta: counter.delta,
                total: counter.total,
            }));
        }
        if let Some(gauge) = json.gauge {
            messages.push(Message::Gauge(Gauge {
                metrics: gauge
                    .metrics
                    .into_iter()
                    .map(|(name, value)| {
                        (
                            name,
                            GaugeValue {
                                unit: value.unit,
                                value: value.value,
                            },
                        )
                    })
                    .collect(),
            }));
        }
        if let Some(timer) = json.timer {
            messages.push(Message::Timer(Timer {
                name: timer.name,
                start: timer.start,
                stop: timer.stop,
            }));
        }
        if let Some(event) = json.event {
            messages.push(Message::Event(Event {
                title: event.title,
                body: event.body,
            }));
        }
        if messages.len() > 1 {
            return Err(de::Error::custom(
                "an envelope carries at most one of log, counter, gauge, timer, event",
            ));
        }
        let mut deprecated_tags = BTreeMap::new();
        for (key, value) in json.deprecated_tags {
            let value = match (value.text, value.integer, value.decimal) {
                (Some(text), None, None) => TagValue::Text(text),
                (None, Some(integer), None) => TagValue::Integer(integer),
                (None, None, Some(decimal)) => TagValue::Decimal(decimal),
                _ => {
                    return Err(de::Error::custom(
                        "a deprecated tag holds exactly one of text, integer, decimal",
                    ))
                }
            };
            deprecated_tags.insert(key, value);
        }
        Ok(Envelope {
            timestamp: json.timestamp,
            source_id: json.source_id,
            instance_id: json.instance_id,
            deprecated_tags,
            tags: json.tags,
            message: messages.pop(),
        })
    }
}

/// A log-cache read result: `{"envelopes":{"batch":[…]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReadResponse {
    /// The envelope batch.
    pub envelopes: EnvelopeBatch,
}

/// `loggregator.v2.EnvelopeBatch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeBatch {
    /// The envelopes.
    #[serde(default)]
    pub batch: Vec<Envelope>,
}

// ---------------------------------------------------------------------------------------------
// Ingress datagrams and the emitter.

/// One ingress datagram: a batch of envelopes from one emitter, numbered so that the receiver
/// can count datagrams lost in transit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressDatagram {
    /// The emitter's random id (16 hex digits), fixed for the emitter's life.
    pub emitter: String,
    /// Sequence number, from 0, one per datagram this emitter sent or tried to send.
    pub seq: u64,
    /// The envelopes.
    pub batch: Vec<Envelope>,
    /// Set on a datagram that carries one emitter drop notice: how many of the notice's
    /// source's envelopes the emitter dropped since its last notice (so the receiver can count
    /// them per source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

impl IngressDatagram {
    /// Parses a datagram.
    pub fn decode(bytes: &[u8]) -> Result<IngressDatagram, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The receiver's fast path: splits a datagram written in exactly the form [`LogEmitter`]
    /// writes (compact JSON, envelopes as [`Envelope`]'s `Serialize` writes them) into its
    /// envelopes' JSON without decoding or allocating per envelope. `None` when anything is not
    /// in that canonical form (another field order, whitespace, an escape serde_json would not
    /// write, unsorted tags, `deprecated_tags`, a non-log message, …); the caller then uses
    /// [`IngressDatagram::decode`].
    ///
    /// The promise: for every envelope returned, `json` is byte for byte what
    /// `serde_json::to_string(&serde_json::from_str::<Envelope>(json)?)` gives, so it can be
    /// stored and served as is.
    pub fn scan(bytes: &[u8]) -> Option<ScannedDatagram<'_>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut scanner = Scanner { text, at: 0 };
        scanner.literal("{\"emitter\":")?;
        let emitter = scanner.plain_string()?;
        scanner.literal(",\"seq\":")?;
        let seq = scanner.unsigned()?;
        scanner.literal(",\"batch\":[")?;
        let mut envelopes = Vec::with_capacity(1);
        if !scanner.eat(b']') {
            loop {
                envelopes.push(scanner.log_envelope()?);
                if scanner.eat(b']') {
                    break;
                }
                scanner.literal(",")?;
            }
        }
        scanner.literal("}")?;
        (scanner.at == text.len()).then_some(ScannedDatagram {
            emitter,
            seq,
            envelopes,
        })
    }
}

/// A datagram split by [`IngressDatagram::scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedDatagram<'a> {
    /// The emitter's id.
    pub emitter: &'a str,
    /// The datagram's sequence number.
    pub seq: u64,
    /// The envelopes, in order.
    pub envelopes: Vec<RawEnvelope<'a>>,
}

/// One log envelope of a [`ScannedDatagram`]: its canonical JSON and the fields the store needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEnvelope<'a> {
    /// The envelope's JSON, exactly as [`Envelope`]'s `Serialize` writes it.
    pub json: &'a str,
    /// `timestamp`.
    pub timestamp: i64,
    /// `source_id` (never holds an escape, so this is its value).
    pub source_id: &'a str,
    /// What the envelope carries (always a log in this version).
    pub kind: EnvelopeKind,
}

impl RawEnvelope<'_> {
    /// The envelope itself (for the rarer consumers that need more than its JSON).
    pub fn decode(&self) -> Result<Envelope, serde_json::Error> {
        serde_json::from_str(self.json)
    }
}

const INVALID: u8 = 0xff;

/// The value of each standard base64 character, `INVALID` for other bytes.
const BASE64_VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut index = 0;
    while index < alphabet.len() {
        table[alphabet[index] as usize] = index as u8;
        index += 1;
    }
    table
};

/// A cursor over datagram text that accepts only the canonical form.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn literal(&mut self, literal: &str) -> Option<()> {
        let end = self.at + literal.len();
        (self.bytes().get(self.at..end)? == literal.as_bytes()).then(|| self.at = end)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.bytes().get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// A string as serde_json writes it: only `"`, `\\` and control characters escaped, with
    /// the short forms where JSON has them and lowercase `\u00xx` otherwise. Returns the
    /// contents (still escaped) and whether they hold an escape.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        let bytes = self.bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            at = find_json_special(bytes, at);
            match *bytes.get(at)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *bytes.get(at + 1)? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                        b'u' => {
                            let hex = bytes.get(at + 2..at + 6)?;
                            let value = match hex {
                                [b'0', b'0', high @ (b'0' | b'1'), low] => {
                                    let low = match low {
                                        b'0'..=b'9' => low - b'0',
                                        b'a'..=b'f' => low - b'a' + 10,
                                        _ => return None,
                                    };
                                    (high - b'0') * 16 + low
                                }
                                _ => return None,
                            };
                            // These have short forms, which serde_json uses.
                            if matches!(value, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            at += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        self.at = at + 1;
        // `start` and `at` sit next to ASCII quotes, so they are character boundaries.
        Some((&self.text[start..at], escaped))
    }

    /// A string without escapes (ids, tag names): its value.
    fn plain_string(&mut self) -> Option<&'a str> {
        match self.string()? {
            (value, false) => Some(value),
            (_, true) => None,
        }
    }

    /// Decimal digits of a `u64`, no sign, no leading zero.
    fn unsigned(&mut self) -> Option<u64> {
        let bytes = self.bytes();
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = bytes.get(self.at).copied() {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        (digits == 1 || (digits > 1 && bytes[start] != b'0')).then_some(value)
    }

    /// An `i64` as `Display` writes it, in quotes.
    fn quoted_signed(&mut self) -> Option<i64> {
        self.literal("\"")?;
        let negative = self.eat(b'-');
        let magnitude = self.unsigned()?;
        self.literal("\"")?;
        if negative {
            if magnitude == 0 {
                return None;
            }
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        }
    }

    /// Standard padded base64 whose unused bits are zero (what `STANDARD.encode` writes).
    fn base64(&mut self) -> Option<()> {
        let (text, _) = self.string()?;
        let bytes = text.as_bytes();
        if bytes.len() % 4 != 0 {
            return None;
        }
        let padding = bytes.iter().rev().take_while(|&&byte| byte == b'=').count();
        if padding > 2 {
            return None;
        }
        let data = &bytes[..bytes.len() - padding];
        if data
            .iter()
            .any(|&byte| BASE64_VALUES[usize::from(byte)] == INVALID)
        {
            return None;
        }
        let last = data
            .last()
            .map_or(0, |&byte| BASE64_VALUES[usize::from(byte)]);
        let unused_bits_mask = match padding {
            0 => 0,
            1 => 0b11,
            _ => 0b1111,
        };
        (last & unused_bits_mask == 0).then_some(())
    }

    /// One log envelope in canonical form.
    fn log_envelope(&mut self) -> Option<RawEnvelope<'a>> {
        let start = self.at;
        self.literal("{\"timestamp\":")?;
        let timestamp = self.quoted_signed()?;
        self.literal(",\"source_id\":")?;
        let source_id = self.plain_string()?;
        self.literal(",\"instance_id\":")?;
        self.string()?;
        self.literal(",\"deprecated_tags\":{},\"tags\":{")?;
        if !self.eat(b'}') {
            let mut previous: Option<&str> = None;
            loop {
                // Keys without escapes compare as their values do, so the BTreeMap order
                // (byte order, no duplicates) can be checked on the text.
                let key = self.plain_string()?;
                if previous.is_some_and(|previous| previous >= key) {
                    return None;
                }
                previous = Some(key);
                self.literal(":")?;
                self.string()?;
                if self.eat(b'}') {
                    break;
                }
                self.literal(",")?;
            }
        }
        self.literal(",\"log\":{\"payload\":")?;
        self.base64()?;
        self.literal(",\"type\":")?;
        if self.literal("\"OUT\"").is_none() {
            self.literal("\"ERR\"")?;
        }
        self.literal("}}")?;
        Some(RawEnvelope {
            json: &self.text[start..self.at],
            timestamp,
            source_id,
            kind: EnvelopeKind::Log,
        })
    }
}

/// Why an emitter could not be created.
#[derive(Debug)]
pub struct EmitterError(std::io::Error);

impl fmt::Display for EmitterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open the log emitter's UDP socket: {}", self.0)
    }
}

impl std::error::Error for EmitterError {}

struct EmitterInner {
    socket: UdpSocket,
    emitter_id: String,
    seq: AtomicU64,
    sent_envelopes: AtomicU64,
    dropped_envelopes: AtomicU64,
    truncated_envelopes: AtomicU64,
    /// Drops per source id; only touched when something was dropped or is to be reported.
    drops: std::sync::Mutex<HashMap<String, SourceDrops>>,
    /// Some source has drops not yet reported (checked after every successful send).
    drops_unreported: AtomicBool,
}

/// What one source lost at the emitter.
struct SourceDrops {
    total: u64,
    unreported: u64,
    /// `origin` (or `source_type`) of the first dropped envelope, named in the notice.
    origin: String,
    last_notice: Option<Instant>,
}

/// Shortest interval between two drop notices of one source from one emitter.
const EMITTER_DROP_NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// Sources whose drops are tracked one by one; beyond that drops are only counted in total.
const MAX_TRACKED_DROP_SOURCES: usize = 10_000;

/// The `LGR` line an app gets when an emitter dropped some of its lines: the wording of
/// loggregator's legacy truncating buffer (`reference/log-formats.md` §7), with the emitting
/// component (`origin`) as the source and the loggregator as the sink.
pub fn emitter_drop_notice(dropped: u64, total: u64, origin: &str) -> String {
    format!(
        "Log message output is too high. {dropped} messages dropped (Total {total} messages dropped) from {origin} to loggregator."
    )
}

/// Sends envelopes to the loggregator's ingress address as UDP datagrams, fire and forget.
///
/// Cheap to clone (clones share the socket, the emitter id and the sequence). `emit` never
/// blocks: a full socket buffer or any send error drops the envelope and counts it. Payloads
/// too large for one datagram are truncated to fit.
#[derive(Clone)]
pub struct LogEmitter {
    inner: Option<Arc<EmitterInner>>,
}

impl fmt::Debug for LogEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Some(inner) => f
                .debug_struct("LogEmitter")
                .field("emitter_id", &inner.emitter_id)
                .field("target", &inner.socket.peer_addr().ok())
                .finish(),
            None => f.write_str("LogEmitter(disabled)"),
        }
    }
}

impl LogEmitter {
    /// An emitter sending to `target`, or a disabled one (every `emit` is a no-op) for `None`.
    pub fn new(target: Option<SocketAddr>) -> Result<LogEmitter, EmitterError> {
        let Some(target) = target else {
            return Ok(LogEmitter::disabled());
        };
        let local: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).map_err(EmitterError)?;
        socket.connect(target).map_err(EmitterError)?;
        socket.set_nonblocking(true).map_err(EmitterError)?;
        Ok(LogEmitter {
            inner: Some(Arc::new(EmitterInner {
                socket,
                emitter_id: random_emitter_id(),
                seq: AtomicU64::new(0),
                sent_envelopes: AtomicU64::new(0),
                dropped_envelopes: AtomicU64::new(0),
                truncated_envelopes: AtomicU64::new(0),
                drops: std::sync::Mutex::new(HashMap::new()),
                drops_unreported: AtomicBool::new(false),
            })),
        })
    }

    /// An emitter that sends nothing.
    pub fn disabled() -> LogEmitter {
        LogEmitter { inner: None }
    }

    /// True when envelopes are actually sent somewhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// This emitter's id as it appears in its datagrams (`None` when disabled).
    pub fn emitter_id(&self) -> Option<&str> {
        self.inner.as_deref().map(|inner| inner.emitter_id.as_str())
    }

    /// Sends one envelope in its own datagram. Never blocks.
    pub fn emit(&self, envelope: &Envelope) {
        let Some(inner) = &self.inner else {
            return;
        };
        // Fast path without allocations: encode into this thread's scratch buffer.
        let sent = SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return false;
            };
            scratch.clear();
            envelope.write_json(&mut scratch);
            if scratch.len() > MAX_DATAGRAM_BYTES - 64 {
                return false;
            }
            if !inner.send(std::iter::once(scratch.as_slice()), 1) {
                inner.record_drops(std::iter::once(envelope));
            }
            true
        });
        if !sent {
            self.emit_batch(std::slice::from_ref(envelope));
        }
    }

    /// Sends envelopes packed into as few datagrams as fit under [`MAX_DATAGRAM_BYTES`].
    /// Never blocks.
    pub fn emit_batch(&self, envelopes: &[Envelope]) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut pending_envelopes: Vec<&Envelope> = Vec::new();
        let mut pending_bytes = 0;
        let flush = |pending: &mut Vec<Vec<u8>>, pending_envelopes: &mut Vec<&Envelope>| {
            if !inner.send(pending.iter().map(Vec::as_slice), pending.len()) {
                inner.record_drops(pending_envelopes.iter().copied());
            }
            pending.clear();
            pending_envelopes.clear();
        };
        for envelope in envelopes {
            let Some(encoded) = inner.encode_fitting(envelope) else {
                inner.dropped_envelopes.fetch_add(1, Ordering::Relaxed);
                inner.record_drops(std::iter::once(envelope));
                continue;
            };
            // Datagram overhead: `{"emitter":"<16>","seq":<20>,"batch":[` + `]}` + commas.
            if !pending.is_empty()
                && pending_bytes + encoded.len() + pending.len() + 64 > MAX_DATAGRAM_BYTES
            {
                flush(&mut pending, &mut pending_envelopes);
                pending_bytes = 0;
            }
            pending_bytes += encoded.len();
            pending.push(encoded);
            pending_envelopes.push(envelope);
        }
        if !pending.is_empty() {
            flush(&mut pending, &mut pending_envelopes);
        }
    }

    /// Envelopes dropped so far per source id (socket buffer full, send error, too large),
    /// sorted by source id. Each source also gets an `LGR` line
    /// ([`emitter_drop_notice`]) once sending works again.
    pub fn dropped_by_source(&self) -> Vec<(String, u64)> {
        let Some(inner) = &self.inner else {
            return Vec::new();
        };
        let drops = inner
            .drops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out: Vec<(String, u64)> = drops
            .iter()
            .map(|(source_id, drops)| (source_id.clone(), drops.total))
            .collect();
        out.sort();
        out
    }

    /// Envelopes handed to the kernel so far.
    pub fn sent_envelopes(&self) -> u64 {
        self.inner
            .as_deref()
            .map_or(0, |inner| inner.sent_envelopes.load(Ordering::Relaxed))
    }

    /// Envelopes dropped so far (socket buffer full, send error, or too large even without
    /// payload).
    pub fn dropped_envelopes(&self) -> u64 {
        self.inner
            .as_deref()
            .map_or(0, |inner| inner.dropped_envelopes.load(Ordering::Relaxed))
    }

    /// Envelopes whose payload was cut to fit a datagram.
    pub fn truncated_envelopes(&self) -> u64 {
        self.inner
            .as_deref()
            .map_or(0, |inner| inner.truncated_envelopes.load(Ordering::Relaxed))
    }
}

impl EmitterInner {
    /// The envelope's JSON, with its log payload cut (at a UTF-8 boundary when the payload is
    /// text) so that a datagram holding it alone stays under the limit; `None` if even an empty
    /// payload does not fit.
    fn encode_fitting(&self, envelope: &Envelope) -> Option<Vec<u8>> {
        let budget = MAX_DATAGRAM_BYTES - 64;
        let mut encoded = Vec::with_capacity(1024);
        envelope.write_json(&mut encoded);
        if encoded.len() <= budget {
            return Some(encoded);
        }
        let log = envelope.as_log()?;
        let excess = encoded.len() - budget;
        // Base64 turns 3 bytes into 4: cut a little more than the excess needs.
        let cut = excess.div_ceil(4) * 3 + 3;
        let mut keep = log.payload.len().saturating_sub(cut);
        if std::str::from_utf8(&log.payload).is_ok() {
            while keep > 0 && (log.payload[keep] & 0b1100_0000) == 0b1000_0000 {
                keep -= 1;
            }
        }
        let mut truncated = envelope.clone();
        truncated.message = Some(Message::Log(Log {
            payload: log.payload[..keep].to_vec(),
            log_type: log.log_type,
        }));
        let mut encoded = Vec::with_capacity(budget);
        truncated.write_json(&mut encoded);
        if encoded.len() > budget {
            return None;
        }
        self.truncated_envelopes.fetch_add(1, Ordering::Relaxed);
        Some(encoded)
    }

    /// Counts dropped envelopes per source and marks them for a notice. Only runs when
    /// something was dropped.
    fn record_drops<'a>(&self, envelopes: impl Iterator<Item = &'a Envelope>) {
        let mut drops = self
            .drops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for envelope in envelopes {
            if envelope.source_id.is_empty() {
                continue;
            }
            if let Some(source) = drops.get_mut(&envelope.source_id) {
                source.total += 1;
                source.unreported += 1;
            } else if drops.len() < MAX_TRACKED_DROP_SOURCES {
                let origin = envelope
                    .tags
                    .get("origin")
                    .or_else(|| envelope.tags.get("source_type"))
                    .map_or("emitter", String::as_str);
                drops.insert(
                    envelope.source_id.clone(),
                    SourceDrops {
                        total: 1,
                        unreported: 1,
                        origin: origin.to_owned(),
                        last_notice: None,
                    },
                );
            }
        }
        self.drops_unreported.store(true, Ordering::Relaxed);
    }

    /// Sends the due drop notices (sending works again, or we would not be here). Never waits
    /// for the lock: if another thread holds it, that thread or a later send reports.
    fn report_drops(&self) {
        let notices: Vec<(String, u64, Envelope)> = {
            let Ok(mut drops) = self.drops.try_lock() else {
                return;
            };
            let now = Instant::now();
            let mut waiting = false;
            let mut notices = Vec::new();
            for (source_id, source) in drops.iter_mut() {
                if source.unreported == 0 {
                    continue;
                }
                if source
                    .last_notice
                    .is_some_and(|last| now.duration_since(last) < EMITTER_DROP_NOTICE_INTERVAL)
                {
                    waiting = true;
                    continue;
                }
                let text = emitter_drop_notice(source.unreported, source.total, &source.origin);
                notices.push((
                    source_id.clone(),
                    source.unreported,
                    Envelope::loggregator_log(source_id.clone(), text),
                ));
                source.unreported = 0;
                source.last_notice = Some(now);
            }
            self.drops_unreported.store(waiting, Ordering::Relaxed);
            notices
        };
        let mut encoded = Vec::with_capacity(512);
        for (source_id, dropped, notice) in notices {
            encoded.clear();
            notice.write_json(&mut encoded);
            if !self.send_datagram(std::iter::once(encoded.as_slice()), 1, Some(dropped)) {
                // Still failing: report these (and the notice's own loss is not a drop of
                // the app's lines) next time.
                let mut drops = self
                    .drops
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(source) = drops.get_mut(&source_id) {
                    source.unreported += dropped;
                    source.last_notice = None;
                }
                self.drops_unreported.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Sends `count` encoded envelopes as one datagram, built in this thread's reusable
    /// buffer. Returns whether the kernel took it; after a success, reports pending drops.
    fn send<'a>(&self, encoded_envelopes: impl Iterator<Item = &'a [u8]>, count: usize) -> bool {
        self.send_datagram(encoded_envelopes, count, None)
    }

    /// `send`, with the datagram's `dropped` field when it carries a drop notice.
    fn send_datagram<'a>(
        &self,
        encoded_envelopes: impl Iterator<Item = &'a [u8]>,
        count: usize,
        dropped: Option<u64>,
    ) -> bool {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let result = DATAGRAM.with(|datagram| {
            let mut owned;
            let mut borrowed = datagram.try_borrow_mut();
            let datagram: &mut Vec<u8> = match borrowed.as_deref_mut() {
                Ok(datagram) => datagram,
                Err(_) => {
                    owned = Vec::new();
                    &mut owned
                }
            };
            datagram.clear();
            datagram.extend_from_slice(b"{\"emitter\":\"");
            datagram.extend_from_slice(self.emitter_id.as_bytes());
            datagram.extend_from_slice(b"\",\"seq\":");
            let _ = std::io::Write::write_fmt(datagram, format_args!("{seq}"));
            datagram.extend_from_slice(b",\"batch\":[");
            for (i, encoded) in encoded_envelopes.enumerate() {
                if i > 0 {
                    datagram.push(b',');
                }
                datagram.extend_from_slice(encoded);
            }
            datagram.push(b']');
            if let Some(dropped) = dropped {
                let _ = std::io::Write::write_fmt(datagram, format_args!(",\"dropped\":{dropped}"));
            }
            datagram.push(b'}');
            self.socket.send(datagram)
        });
        let count = count as u64;
        match result {
            Ok(_) => {
                self.sent_envelopes.fetch_add(count, Ordering::Relaxed);
                if self.drops_unreported.load(Ordering::Relaxed) {
                    self.report_drops();
                }
                true
            }
            Err(_) => {
                self.dropped_envelopes.fetch_add(count, Ordering::Relaxed);
                false
            }
        }
    }
}

thread_local! {
    /// Encoded envelope of `LogEmitter::emit`, reused so that emitting does not allocate.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
    /// Datagram being assembled, reused likewise.
    static DATAGRAM: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
}

/// 16 hex digits that differ between emitters: no `rand` in `protocol`, so mix the clock, the
/// process id and a process-wide counter through the std hasher's random keys.
fn random_emitter_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(now_nanos());
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppIdentity {
        AppIdentity {
            app_id: "app-guid".into(),
            app_name: "shop".into(),
            space_id: "space-guid".into(),
            space_name: "dev".into(),
            organization_id: "org-guid".into(),
            organization_name: "acme".into(),
        }
    }

    fn process() -> ProcessIdentity {
        ProcessIdentity {
            process_id: "process-guid".into(),
            process_type: "web".into(),
            process_instance_id: "instance-guid".into(),
        }
    }

    fn tags(envelope: &Envelope) -> Vec<(&str, &str)> {
        envelope
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_log_envelope_has_log_caches_json_shape() {
        let mut envelope =
            Envelope::log("app-guid", "0", "APP/PROC/WEB", LogType::Out, "Hello world");
        envelope.timestamp = 1_700_000_000_123_456_789;
        let json = serde_json::to_string(&envelope).unwrap();
        assert_eq!(
            json,
            r#"{"timestamp":"1700000000123456789","source_id":"app-guid","instance_id":"0","deprecated_tags":{},"tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"SGVsbG8gd29ybGQ=","type":"OUT"}}"#
        );
        let mut err = envelope.clone();
        err.message = Some(Message::Log(Log {
            payload: b"x".to_vec(),
            log_type: LogType::Err,
        }));
        assert!(serde_json::to_string(&err)
            .unwrap()
            .contains(r#""log":{"payload":"eA==","type":"ERR"}"#));
    }

    #[test]
    fn other_kinds_serialise_with_int64_strings() {
        let mut gauge = Envelope::gauge(
            "s",
            "1",
            "rep",
            [("memory", "bytes", 1024.0), ("cpu", "percentage", 0.5)],
        );
        gauge.timestamp = 5;
        assert_eq!(
            serde_json::to_string(&gauge).unwrap(),
            r#"{"timestamp":"5","source_id":"s","instance_id":"1","deprecated_tags":{},"tags":{"origin":"rep"},"gauge":{"metrics":{"cpu":{"unit":"percentage","value":0.5},"memory":{"unit":"bytes","value":1024.0}}}}"#
        );
        let mut counter = Envelope::counter("s", "", "x", "requests", 2, 10);
        counter.timestamp = 6;
        assert!(serde_json::to_string(&counter)
            .unwrap()
            .ends_with(r#""counter":{"name":"requests","delta":"2","total":"10"}}"#));
        let timer = Envelope {
            timestamp: 7,
            message: Some(Message::Timer(Timer {
                name: "http".into(),
                start: 1,
                stop: 2,
            })),
            ..Envelope::default()
        };
        assert!(serde_json::to_string(&timer)
            .unwrap()
            .ends_with(r#""timer":{"name":"http","start":"1","stop":"2"}}"#));
        let event = Envelope {
            message: Some(Message::Event(Event {
                title: "t".into(),
                body: "b".into(),
            })),
            ..Envelope::default()
        };
        assert!(serde_json::to_string(&event)
            .unwrap()
            .ends_with(r#""event":{"title":"t","body":"b"}}"#));
    }

    #[test]
    fn json_round_trips_and_accepts_protojson_variants() {
        let mut envelope =
            Envelope::app_log(&app(), &process(), 3, LogType::Err, vec![0, 159, 146, 150]);
        envelope
            .deprecated_tags
            .insert("n".into(), TagValue::Integer(-4));
        envelope
            .deprecated_tags
            .insert("d".into(), TagValue::Decimal(1.5));
        let json = serde_json::to_string(&envelope).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);

        let variant: Envelope = serde_json::from_str(
            r#"{"timestamp":12,"sourceId":"a","instanceId":"1","log":{"payload":"aGk","type":1}}"#,
        )
        .unwrap();
        assert_eq!(variant.timestamp, 12);
        assert_eq!(variant.source_id, "a");
        assert_eq!(variant.as_log().unwrap().payload, b"hi");
        assert_eq!(variant.as_log().unwrap().log_type, LogType::Err);
        let defaulted: Envelope = serde_json::from_str(r#"{"log":{}}"#).unwrap();
        assert_eq!(defaulted.as_log().unwrap().log_type, LogType::Out);

        assert!(serde_json::from_str::<Envelope>(r#"{"extra":1}"#).is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"log":{},"event":{}}"#).is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"log":{"type":"WARN"}}"#).is_err());
    }

    #[test]
    fn app_and_cell_lines_carry_the_instance_metric_tags() {
        let envelope = Envelope::app_log(&app(), &process(), 2, LogType::Out, "hi");
        assert_eq!(envelope.source_id, "app-guid");
        assert_eq!(envelope.instance_id, "2");
        assert_eq!(
            tags(&envelope),
            vec![
                ("app_id", "app-guid"),
                ("app_name", "shop"),
                ("instance_id", "2"),
                ("organization_id", "org-guid"),
                ("organization_name", "acme"),
                ("origin", "rep"),
                ("process_id", "process-guid"),
                ("process_instance_id", "instance-guid"),
                ("process_type", "web"),
                ("source_id", "app-guid"),
                ("source_type", "APP/PROC/WEB"),
                ("space_id", "space-guid"),
                ("space_name", "dev"),
            ]
        );
        let worker = ProcessIdentity {
            process_type: "worker".into(),
            ..process()
        };
        let envelope = Envelope::app_log(&app(), &worker, 0, LogType::Err, "x");
        assert_eq!(envelope.source_type(), Some("APP/PROC/WORKER"));
        assert_eq!(envelope.as_log().unwrap().log_type, LogType::Err);
        let cell = Envelope::cell_log(
            &app(),
            &process(),
            1,
            LogType::Out,
            "Cell c creating container for instance i",
        );
        assert_eq!(cell.source_type(), Some("CELL"));
        assert_eq!(cell.tags.get("origin").map(String::as_str), Some("rep"));
        assert_eq!(cell.instance_id, "1");
    }

    #[test]
    fn staging_router_api_and_lgr_lines_follow_their_emitters() {
        let staging = Envelope::staging_log(&app(), LogType::Out, "Downloading app package...");
        assert_eq!(staging.instance_id, "0");
        assert_eq!(
            tags(&staging),
            vec![
                ("app_id", "app-guid"),
                ("app_name", "shop"),
                ("instance_id", "0"),
                ("organization_id", "org-guid"),
                ("organization_name", "acme"),
                ("origin", "rep"),
                ("source_id", "app-guid"),
                ("source_type", "STG"),
                ("space_id", "space-guid"),
                ("space_name", "dev"),
            ]
        );

        let router = Envelope::router_log(
            &app(),
            Some(&process()),
            Some(1),
            2,
            "shop.example.com - [..]",
        );
        assert_eq!(router.instance_id, "2");
        assert_eq!(router.as_log().unwrap().log_type, LogType::Out);
        assert_eq!(
            router.tags.get("instance_id").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            router.tags.get("origin").map(String::as_str),
            Some("gorouter")
        );
        assert_eq!(
            router.tags.get("__v1_type").map(String::as_str),
            Some("LogMessage")
        );
        assert_eq!(
            router.tags.get("component").map(String::as_str),
            Some("route-emitter")
        );
        assert_eq!(router.source_type(), Some("RTR"));
        assert!(!router.tags.contains_key("source_id"));

        let api = Envelope::api_log(&app(), 0, LogType::Out, "Created app with guid app-guid");
        assert_eq!(
            tags(&api),
            vec![
                ("app_id", "app-guid"),
                ("app_name", "shop"),
                ("organization_id", "org-guid"),
                ("organization_name", "acme"),
                ("origin", "cloud_controller"),
                ("source_type", "API"),
                ("space_id", "space-guid"),
                ("space_name", "dev"),
            ]
        );

        let lgr = Envelope::loggregator_log("app-guid", "3 messages lost");
        assert_eq!(lgr.instance_id, "0");
        assert_eq!(lgr.as_log().unwrap().log_type, LogType::Err);
        assert_eq!(tags(&lgr), vec![("source_type", "LGR")]);
    }

    #[test]
    fn the_emitter_sends_numbered_datagrams_and_truncates_large_payloads() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let emitter = LogEmitter::new(Some(receiver.local_addr().unwrap())).unwrap();
        let clone = emitter.clone();
        emitter.emit(&Envelope::log("a", "0", "API", LogType::Out, "one"));
        clone.emit(&Envelope::log(
            "a",
            "0",
            "API",
            LogType::Out,
            vec![b'x'; 100_000],
        ));
        let mut buffer = vec![0; 70_000];
        let n = receiver.recv(&mut buffer).unwrap();
        let first = IngressDatagram::decode(&buffer[..n]).unwrap();
        assert_eq!(first.seq, 0);
        assert_eq!(Some(first.emitter.as_str()), emitter.emitter_id());
        assert_eq!(first.batch[0].as_log().unwrap().payload, b"one");
        let n = receiver.recv(&mut buffer).unwrap();
        assert!(n <= MAX_DATAGRAM_BYTES);
        let second = IngressDatagram::decode(&buffer[..n]).unwrap();
        assert_eq!(second.seq, 1);
        let payload_len = second.batch[0].as_log().unwrap().payload.len();
        assert!(
            payload_len > 40_000 && payload_len < 100_000,
            "{payload_len}"
        );
        assert_eq!(emitter.sent_envelopes(), 2);
        assert_eq!(emitter.truncated_envelopes(), 1);

        let disabled = LogEmitter::new(None).unwrap();
        disabled.emit(&Envelope::default());
        assert!(!disabled.is_enabled());
        assert_eq!(disabled.sent_envelopes(), 0);
    }

    #[test]
    fn a_batch_is_split_across_datagrams() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let emitter = LogEmitter::new(Some(receiver.local_addr().unwrap())).unwrap();
        let envelopes: Vec<Envelope> = (0..10)
            .map(|i| Envelope::log("a", "0", "API", LogType::Out, vec![b'0' + i as u8; 10_000]))
            .collect();
        emitter.emit_batch(&envelopes);
        let mut buffer = vec![0; 70_000];
        let mut received = 0;
        let mut datagrams = 0;
        while received < 10 {
            let n = receiver.recv(&mut buffer).unwrap();
            received += IngressDatagram::decode(&buffer[..n]).unwrap().batch.len();
            datagrams += 1;
        }
        assert_eq!(received, 10);
        assert!(datagrams >= 2, "{datagrams}");
    }

    /// A small deterministic generator, so the scan tests need no dependency and repeat.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Text mixing plain characters with everything JSON escaping treats specially.
        fn text(&mut self, max: usize, plain_only: bool) -> String {
            const PLAIN: &[&str] = &["a", "z", "0", "-", "_", "/", "A"];
            const SPECIAL: &[&str] = &[
                "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1f}", "\u{7f}", "é",
                "€", "😀", "]", "=",
            ];
            let length = self.below(max + 1);
            (0..length)
                .map(|_| {
                    if plain_only || self.below(4) > 0 {
                        PLAIN[self.below(PLAIN.len())]
                    } else {
                        SPECIAL[self.below(SPECIAL.len())]
                    }
                })
                .collect()
        }

        fn envelope(&mut self) -> Envelope {
            let mut tags = BTreeMap::new();
            for _ in 0..self.below(5) {
                let plain_key = self.below(8) > 0;
                tags.insert(self.text(6, plain_key), self.text(40, false));
            }
            let payload: Vec<u8> = (0..self.below(12)).map(|_| self.next() as u8).collect();
            let plain_source = self.below(8) > 0;
            Envelope {
                timestamp: match self.below(4) {
                    0 => 0,
                    1 => -(self.next() as i64 >> 3),
                    2 => i64::MIN + self.below(2) as i64,
                    _ => self.next() as i64 >> 1,
                },
                source_id: self.text(5, plain_source),
                instance_id: self.text(20, false),
                deprecated_tags: BTreeMap::new(),
                tags,
                message: Some(Message::Log(Log {
                    payload,
                    log_type: if self.below(2) == 0 {
                        LogType::Out
                    } else {
                        LogType::Err
                    },
                })),
            }
        }
    }

    fn datagram_of(envelopes: &[Envelope], seq: u64) -> Vec<u8> {
        let batch: Vec<String> = envelopes
            .iter()
            .map(|envelope| serde_json::to_string(envelope).unwrap())
            .collect();
        format!(
            r#"{{"emitter":"0123456789abcdef","seq":{seq},"batch":[{}]}}"#,
            batch.join(",")
        )
        .into_bytes()
    }

    fn needs_escape(text: &str) -> bool {
        text.chars().any(|c| c == '"' || c == '\\' || c < ' ')
    }

    #[test]
    fn scan_accepts_the_emitters_form_and_returns_each_envelopes_exact_json() {
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for round in 0..3000 {
            let envelopes: Vec<Envelope> =
                (0..random.below(4)).map(|_| random.envelope()).collect();
            for envelope in &envelopes {
                let mut fast = Vec::new();
                envelope.write_json(&mut fast);
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    serde_json::to_string(envelope).unwrap()
                );
            }
            let bytes = datagram_of(&envelopes, round);
            let scannable = envelopes.iter().all(|envelope| {
                !needs_escape(&envelope.source_id)
                    && envelope.tags.keys().all(|key| !needs_escape(key))
            });
            let Some(scanned) = IngressDatagram::scan(&bytes) else {
                assert!(!scannable, "{}", String::from_utf8_lossy(&bytes));
                continue;
            };
            assert!(scannable, "{}", String::from_utf8_lossy(&bytes));
            accepted += 1;
            assert_eq!(scanned.emitter, "0123456789abcdef");
            assert_eq!(scanned.seq, round);
            assert_eq!(scanned.envelopes.len(), envelopes.len());
            for (raw, envelope) in scanned.envelopes.iter().zip(&envelopes) {
                assert_eq!(raw.json, serde_json::to_string(envelope).unwrap());
                assert_eq!(raw.timestamp, envelope.timestamp);
                assert_eq!(raw.source_id, envelope.source_id);
                assert_eq!(raw.kind, EnvelopeKind::Log);
                assert_eq!(&raw.decode().unwrap(), envelope);
            }
        }
        assert!(accepted > 1000, "{accepted}");
        // What LogEmitter itself writes goes through the fast path.
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let emitter = LogEmitter::new(Some(receiver.local_addr().unwrap())).unwrap();
        let line = Envelope::app_log(&app(), &process(), 1, LogType::Err, "a \"quoted\" line\n");
        emitter.emit(&line);
        emitter.emit_batch(&[line.clone(), line.clone()]);
        let mut buffer = vec![0; 70_000];
        for expected in [1, 2] {
            let n = receiver.recv(&mut buffer).unwrap();
            let scanned = IngressDatagram::scan(&buffer[..n]).expect("canonical");
            assert_eq!(scanned.envelopes.len(), expected);
            assert_eq!(
                scanned.envelopes[0].json,
                serde_json::to_string(&line).unwrap()
            );
        }
    }

    #[test]
    fn whatever_scan_accepts_is_exactly_what_decoding_and_encoding_gives() {
        let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
        const INTERESTING: &[u8] = b"\"\\{}[],:0129-+/=aAzu\n \x7f\xc3\xa9";
        let mut accepted_mutants = 0;
        for round in 0..20_000 {
            let envelopes: Vec<Envelope> = (0..1 + random.below(2))
                .map(|_| random.envelope())
                .collect();
            let mut bytes = datagram_of(&envelopes, round);
            for _ in 0..1 + random.below(2) {
                let at = random.below(bytes.len());
                match random.below(3) {
                    0 => bytes[at] = INTERESTING[random.below(INTERESTING.len())],
                    1 => bytes.insert(at, INTERESTING[random.below(INTERESTING.len())]),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let Some(scanned) = IngressDatagram::scan(&bytes) else {
                continue;
            };
            accepted_mutants += 1;
            let decoded = IngressDatagram::decode(&bytes).expect("serde accepts what scan accepts");
            assert_eq!(decoded.seq, scanned.seq);
            assert_eq!(decoded.emitter, scanned.emitter);
            assert_eq!(decoded.batch.len(), scanned.envelopes.len());
            for (raw, envelope) in scanned.envelopes.iter().zip(&decoded.batch) {
                assert_eq!(
                    raw.json,
                    serde_json::to_string(envelope).unwrap(),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
                assert_eq!(raw.timestamp, envelope.timestamp);
                assert_eq!(raw.source_id, envelope.source_id);
            }
        }
        // Mutations inside strings, payloads and numbers often stay canonical.
        assert!(accepted_mutants > 500, "{accepted_mutants}");
    }

    #[test]
    fn scan_refuses_other_forms() {
        let canonical = datagram_of(&[Envelope::log("a", "0", "API", LogType::Out, "x")], 3);
        assert!(IngressDatagram::scan(&canonical).is_some());
        let text = String::from_utf8(canonical).unwrap();
        for variant in [
            text.replace(r#""seq":3"#, r#""seq":03"#),
            text.replace(r#""seq":3"#, r#""seq": 3"#),
            text.replace(r#""timestamp":""#, r#""timestamp":"0"#),
            text.replace(r#""type":"OUT""#, r#""type":0"#),
            text.replace(r#""payload":"eA==""#, r#""payload":"eB==""#),
            text.replace(r#""payload":"eA==""#, r#""payload":"eA""#),
            text.replace(
                r#""deprecated_tags":{}"#,
                r#""deprecated_tags":{"k":{"text":"v"}}"#,
            ),
            text.replace(r#""source_id":"a""#, r#""source_id":"\u0061""#),
            text.replace(r#""instance_id":"0""#, r#""instance_id":"\/""#),
            text.replace(r#""instance_id":"0""#, r#""instance_id":"\u000a""#),
            text.replace(r#""instance_id":"0""#, r#""instance_id":"\u001F""#),
            text.replace(
                r#"{"source_type":"API"}"#,
                r#"{"source_type":"API","origin":"x"}"#,
            ),
            text.replace(r#"{"source_type":"API"}"#, r#"{"a":"1","a":"2"}"#),
            text.clone() + " ",
        ] {
            assert_ne!(variant, text);
            assert!(
                IngressDatagram::scan(variant.as_bytes()).is_none(),
                "{variant}"
            );
        }
        let escaped_ok = text.replace(r#""instance_id":"0""#, r#""instance_id":"\u001f\n""#);
        assert!(IngressDatagram::scan(escaped_ok.as_bytes()).is_some());
        let gauge = Envelope::gauge("a", "0", "rep", [("cpu", "percentage", 1.0)]);
        assert!(IngressDatagram::scan(&datagram_of(&[gauge], 0)).is_none());
        assert!(IngressDatagram::scan(&datagram_of(&[], 0))
            .unwrap()
            .envelopes
            .is_empty());
    }

    #[test]
    fn dropped_lines_are_counted_per_source_and_reported_to_the_app() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let emitter = LogEmitter::new(Some(receiver.local_addr().unwrap())).unwrap();
        // Tags too large for any datagram: these lines cannot be sent and are dropped.
        let mut oversized = Envelope::app_log(&app(), &process(), 0, LogType::Out, "lost");
        oversized
            .tags
            .insert("huge".into(), "x".repeat(MAX_DATAGRAM_BYTES));
        emitter.emit(&oversized);
        emitter.emit_batch(&[oversized.clone(), oversized.clone()]);
        assert_eq!(emitter.dropped_envelopes(), 3);
        assert_eq!(
            emitter.dropped_by_source(),
            vec![("app-guid".to_owned(), 3)]
        );
        assert_eq!(emitter.sent_envelopes(), 0);

        // The next successful send carries the line, then the notice for the app.
        emitter.emit(&Envelope::app_log(
            &app(),
            &process(),
            0,
            LogType::Out,
            "kept",
        ));
        let mut buffer = vec![0; 70_000];
        let n = receiver.recv(&mut buffer).unwrap();
        let kept = IngressDatagram::decode(&buffer[..n]).unwrap();
        assert_eq!(kept.batch[0].as_log().unwrap().payload, b"kept");
        let n = receiver.recv(&mut buffer).unwrap();
        let notice = IngressDatagram::decode(&buffer[..n]).unwrap();
        assert_eq!(notice.seq, kept.seq + 1);
        assert_eq!(notice.dropped, Some(3));
        assert_eq!(kept.dropped, None);
        let notice = &notice.batch[0];
        assert_eq!(notice.source_id, "app-guid");
        assert_eq!(notice.instance_id, "0");
        assert_eq!(notice.source_type(), Some("LGR"));
        assert_eq!(notice.as_log().unwrap().log_type, LogType::Err);
        assert_eq!(
            std::str::from_utf8(&notice.as_log().unwrap().payload).unwrap(),
            "Log message output is too high. 3 messages dropped (Total 3 messages dropped) from rep to loggregator."
        );
        // Reported once: the next line comes alone.
        emitter.emit(&Envelope::app_log(
            &app(),
            &process(),
            0,
            LogType::Out,
            "again",
        ));
        let n = receiver.recv(&mut buffer).unwrap();
        let again = IngressDatagram::decode(&buffer[..n]).unwrap();
        assert_eq!(again.batch[0].as_log().unwrap().payload, b"again");
        assert_eq!(emitter.sent_envelopes(), 3);
        assert_eq!(
            emitter.dropped_by_source(),
            vec![("app-guid".to_owned(), 3)]
        );
    }
}
