//! `instance-server`: the app the acceptance tests push with the binary buildpack
//! (`cf push api -p DIR -b binary_buildpack -c ./server`). A std-only HTTP/1.1 server on `$PORT`:
//! - `GET /` — `instance-server index <i>`
//! - `GET /index` — the instance index (`CF_INSTANCE_INDEX`)
//! - `GET /env/<NAME>` — the value of an environment variable (404 when unset)
//! - `GET /log/out/<text>` and `/log/err/<text>` — writes `<text>` to stdout or stderr
//! - `GET /file/<name>` — the contents of a file of the app directory
//! - `GET /crash` — exits with status 17
//! - `GET /db/<text>` — connects to the first bound database of `VCAP_SERVICES` (the first `uri`
//!   that starts with `postgres://` or `postgresql://`) with the host's `psql` (containers see
//!   the host's `/usr`), creates the table `app_rows` if needed, inserts `<text>` and answers
//!   every row, one per line, sorted
//!
//! At start it prints `instance-server: VCAP_SERVICES <value>` (when set) to stdout, as an app
//! that shows what it was bound to would.
//!
//! Build it with `cargo build -p cats --bin instance-server` and copy it as `server` into an empty
//! directory to push it.

// An app writes its logs to stdout: that is what it is for here.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("instance-server: cannot listen on port {port}: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "instance-server: listening on port {port} as index {}",
        index()
    );
    eprintln!("instance-server: stderr is connected");
    if let Ok(vcap_services) = std::env::var("VCAP_SERVICES") {
        println!("instance-server: VCAP_SERVICES {vcap_services}");
    }
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}

fn index() -> String {
    std::env::var("CF_INSTANCE_INDEX").unwrap_or_else(|_| "unknown".to_owned())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' && at + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[at + 1..at + 3], 16) {
                out.push(byte);
                at += 3;
                continue;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream) {
    let Ok(reader_stream) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers.
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = route(path);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn route(path: &str) -> (&'static str, String) {
    if path == "/" {
        return ("200 OK", format!("instance-server index {}\n", index()));
    }
    if path == "/index" {
        return ("200 OK", index());
    }
    if path == "/crash" {
        eprintln!("instance-server: crashing on request");
        std::process::exit(17);
    }
    if let Some(name) = path.strip_prefix("/env/") {
        return match std::env::var(percent_decode(name)) {
            Ok(value) => ("200 OK", value),
            Err(_) => ("404 Not Found", format!("{name} is not set\n")),
        };
    }
    if let Some(name) = path.strip_prefix("/file/") {
        let name = percent_decode(name);
        if name.contains("..") {
            return ("400 Bad Request", "no\n".to_owned());
        }
        return match std::fs::read_to_string(&name) {
            Ok(contents) => ("200 OK", contents),
            Err(error) => ("404 Not Found", format!("{name}: {error}\n")),
        };
    }
    if let Some(text) = path.strip_prefix("/db/") {
        return database_round_trip(&percent_decode(text));
    }
    if let Some(text) = path.strip_prefix("/log/out/") {
        println!("{}", percent_decode(text));
        return ("200 OK", "logged\n".to_owned());
    }
    if let Some(text) = path.strip_prefix("/log/err/") {
        eprintln!("{}", percent_decode(text));
        return ("200 OK", "logged\n".to_owned());
    }
    ("404 Not Found", format!("no route {path}\n"))
}

/// Inserts `text` into the bound database through `psql` and reads every row back.
fn database_round_trip(text: &str) -> (&'static str, String) {
    let Ok(vcap_services) = std::env::var("VCAP_SERVICES") else {
        return ("404 Not Found", "VCAP_SERVICES is not set\n".to_owned());
    };
    let Some(uri) = json_string_values(&vcap_services, "uri")
        .into_iter()
        .find(|uri| uri.starts_with("postgres://") || uri.starts_with("postgresql://"))
    else {
        return (
            "404 Not Found",
            "no postgres:// uri in VCAP_SERVICES\n".to_owned(),
        );
    };
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS app_rows (body text); \
         INSERT INTO app_rows VALUES ('{}'); \
         SELECT body FROM app_rows ORDER BY body;",
        text.replace('\'', "''")
    );
    let output = std::process::Command::new(psql_binary())
        .args([
            uri.as_str(),
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", &sql])
        .output();
    match output {
        Ok(output) if output.status.success() => (
            "200 OK",
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ),
        Ok(output) => (
            "500 Internal Server Error",
            format!(
                "psql failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
        Err(error) => (
            "500 Internal Server Error",
            format!("cannot run psql: {error}\n"),
        ),
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin/psql`, else `psql` from `PATH` (Debian's
/// `/usr/bin/psql` is a wrapper that wants the host's `/etc/postgresql-common`).
fn psql_binary() -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/psql"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| "psql".into())
}

/// Every string value of a member named `key`, anywhere in the JSON document `json`, in order.
/// A small scanner (the app is std-only): it walks strings with their escapes, and takes a string
/// that is followed by `:` as a member name.
fn json_string_values(json: &str, key: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    let mut values = Vec::new();
    let mut at = 0;
    let mut pending_key: Option<String> = None;
    while at < chars.len() {
        match chars[at] {
            '"' => {
                let (string, next) = read_json_string(&chars, at + 1);
                at = next;
                let mut look = at;
                while look < chars.len() && chars[look].is_whitespace() {
                    look += 1;
                }
                if look < chars.len() && chars[look] == ':' {
                    pending_key = Some(string);
                    at = look + 1;
                } else {
                    if pending_key.as_deref() == Some(key) {
                        values.push(string);
                    }
                    pending_key = None;
                }
            }
            character if character.is_whitespace() => at += 1,
            _ => {
                pending_key = None;
                at += 1;
            }
        }
    }
    values
}

/// Reads a JSON string whose opening quote precedes `at`; returns it and the index after its
/// closing quote.
fn read_json_string(chars: &[char], mut at: usize) -> (String, usize) {
    let mut out = String::new();
    while at < chars.len() {
        match chars[at] {
            '"' => return (out, at + 1),
            '\\' if at + 1 < chars.len() => {
                at += 1;
                match chars[at] {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = chars[at + 1..(at + 5).min(chars.len())].iter().collect();
                        if let Some(character) =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            out.push(character);
                        }
                        at += 4;
                    }
                    other => out.push(other),
                }
                at += 1;
            }
            character => {
                out.push(character);
                at += 1;
            }
        }
    }
    (out, at)
}
