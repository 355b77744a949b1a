//! RFC 5424 rendering of log envelopes exactly as loggregator-agent's syslog egress writes
//! them (`reference/log-formats.md` §9.1), and RFC 6587 octet-counting framing.

use std::fmt::Write as _;

use protocol::logs::{Envelope, LogType};

/// CF's IANA private enterprise number, used in the structured-data id.
const ENTERPRISE_NUMBER: &str = "47450";

/// Renders a log envelope as one RFC 5424 message (ending in `\n`). `binding_hostname` is the
/// hostname the Cloud Controller gave the binding, used when the envelope has no
/// org/space/app name tags. `None` for non-log envelopes and for hostnames that are not
/// printable US-ASCII (the agent drops those).
pub(crate) fn format_log(envelope: &Envelope, binding_hostname: &str) -> Option<Vec<u8>> {
    let log = envelope.as_log()?;
    let priority = match log.log_type {
        LogType::Out => 14,
        LogType::Err => 11,
    };
    let hostname = hostname(envelope, binding_hostname)?;
    let app_name = truncate_bytes(&envelope.source_id, 48);
    let process_id = process_id(envelope);
    let mut out = String::with_capacity(256 + log.payload.len());
    let _ = write!(
        out,
        "<{priority}>1 {} {} {} {} - ",
        timestamp(envelope.timestamp),
        if hostname.is_empty() { "-" } else { &hostname },
        if app_name.is_empty() { "-" } else { app_name },
        process_id,
    );
    out.push_str("[tags@");
    out.push_str(ENTERPRISE_NUMBER);
    for (key, value) in &envelope.tags {
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        for character in value.chars() {
            if matches!(character, '\\' | '"' | ']') {
                out.push('\\');
            }
            out.push(character);
        }
        out.push('"');
    }
    out.push_str("] ");
    let mut bytes = out.into_bytes();
    bytes.extend(log.payload.iter().copied().filter(|&byte| byte != 0));
    if bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    Some(bytes)
}

/// RFC 6587 octet counting: `<length> <message>`.
pub(crate) fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 8);
    framed.extend_from_slice(message.len().to_string().as_bytes());
    framed.push(b' ');
    framed.extend_from_slice(message);
    framed
}

fn hostname(envelope: &Envelope, binding_hostname: &str) -> Option<String> {
    let names = ["organization_name", "space_name", "app_name"];
    let hostname = if names.iter().any(|name| envelope.tags.contains_key(*name)) {
        names
            .iter()
            .map(|name| sanitize_hostname_part(envelope.tags.get(*name).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(".")
    } else {
        binding_hostname.to_owned()
    };
    let hostname = truncate_bytes(&hostname, 255).to_owned();
    if hostname.bytes().all(|byte| (33..=126).contains(&byte)) {
        Some(hostname)
    } else {
        None
    }
}

/// Whitespace runs → `-`, then only `[-a-zA-Z0-9]` kept, trailing `-` removed, 63 bytes.
pub(crate) fn sanitize_hostname_part(part: &str) -> String {
    let dashed = collapse_whitespace(part);
    let kept: String = dashed
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || *character == '-')
        .collect();
    let trimmed = kept.trim_end_matches('-');
    truncate_bytes(trimmed, 63).to_owned()
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_whitespace = false;
    for character in text.chars() {
        if character.is_whitespace() {
            if !in_whitespace {
                out.push('-');
            }
            in_whitespace = true;
        } else {
            out.push(character);
            in_whitespace = false;
        }
    }
    out
}

/// `[SOURCE_TYPE/INSTANCE]`, at most 128 bytes (the instance part is cut).
fn process_id(envelope: &Envelope) -> String {
    let source_type = envelope.source_type().unwrap_or_default();
    let source_type: String = collapse_whitespace(source_type)
        .chars()
        .filter(|character| character.is_ascii_graphic())
        .collect::<String>()
        .trim_end_matches('-')
        .to_uppercase();
    if envelope.instance_id.is_empty() {
        return format!("[{}]", truncate_bytes(&source_type, 126));
    }
    let room = 128usize.saturating_sub(source_type.len() + 3);
    format!(
        "[{source_type}/{}]",
        truncate_bytes(&envelope.instance_id, room)
    )
}

fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Go layout `2006-01-02T15:04:05.999999-07:00` in UTC: microseconds truncated, trailing zeros
/// trimmed, no dot for a zero fraction, offset `+00:00`.
pub(crate) fn timestamp(nanos: i64) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let micros = nanos.rem_euclid(1_000_000_000) / 1000;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if micros > 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str("+00:00");
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::logs::{AppIdentity, ProcessIdentity};

    #[test]
    fn timestamps_use_go_layout_with_trimmed_microseconds() {
        // 2026-01-01T12:00:00Z
        let base: i64 = 1_767_268_800 * 1_000_000_000;
        assert_eq!(timestamp(base), "2026-01-01T12:00:00+00:00");
        assert_eq!(
            timestamp(base + 123_456_789),
            "2026-01-01T12:00:00.123456+00:00"
        );
        assert_eq!(
            timestamp(base + 120_000_000),
            "2026-01-01T12:00:00.12+00:00"
        );
        assert_eq!(timestamp(base + 999), "2026-01-01T12:00:00+00:00");
        assert_eq!(
            timestamp(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn hostname_parts_are_sanitised_like_cc_and_the_agent() {
        assert_eq!(sanitize_hostname_part("my_org"), "myorg");
        assert_eq!(sanitize_hostname_part("dev  space"), "dev-space");
        assert_eq!(sanitize_hostname_part("shop--"), "shop");
        assert_eq!(sanitize_hostname_part(&"a".repeat(70)).len(), 63);
    }

    #[test]
    fn an_app_line_renders_as_the_agent_writes_it() {
        let app = AppIdentity {
            app_id: "509e69f4".into(),
            app_name: "shop--".into(),
            space_id: "s".into(),
            space_name: "dev space".into(),
            organization_id: "o".into(),
            organization_name: "my_org".into(),
        };
        let process = ProcessIdentity {
            process_id: "p".into(),
            process_type: "web".into(),
            process_instance_id: "i".into(),
        };
        let mut envelope = Envelope::app_log(&app, &process, 0, LogType::Out, "hello \"x\"\0");
        envelope.timestamp = 1_767_268_800 * 1_000_000_000 + 363_164_000;
        envelope.tags.insert("weird".into(), r#"a"b\c]d"#.into());
        let message = String::from_utf8(format_log(&envelope, "ignored").unwrap()).unwrap();
        assert_eq!(
            message,
            "<14>1 2026-01-01T12:00:00.363164+00:00 myorg.dev-space.shop 509e69f4 [APP/PROC/WEB/0] - \
             [tags@47450 app_id=\"509e69f4\" app_name=\"shop--\" instance_id=\"0\" organization_id=\"o\" \
             organization_name=\"my_org\" origin=\"rep\" process_id=\"p\" process_instance_id=\"i\" \
             process_type=\"web\" source_id=\"509e69f4\" source_type=\"APP/PROC/WEB\" space_id=\"s\" \
             space_name=\"dev space\" weird=\"a\\\"b\\\\c\\]d\"] hello \"x\"\n"
        );
        assert_eq!(frame(b"abc\n"), b"4 abc\n");
    }

    #[test]
    fn without_name_tags_the_binding_hostname_is_used() {
        let mut envelope = Envelope::loggregator_log("app", "lost");
        envelope.timestamp = 0;
        let message = String::from_utf8(format_log(&envelope, "org.space.app").unwrap()).unwrap();
        assert_eq!(
            message,
            "<11>1 1970-01-01T00:00:00+00:00 org.space.app app [LGR/0] - [tags@47450 source_type=\"LGR\"] lost\n"
        );
        let mut no_instance = envelope.clone();
        no_instance.instance_id.clear();
        let message = String::from_utf8(format_log(&no_instance, "").unwrap()).unwrap();
        assert!(message.contains(" - app [LGR] - "), "{message}");
    }
}
