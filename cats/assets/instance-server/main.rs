//! `instance-server`: the app the acceptance tests push with the binary buildpack
//! (`cf push api -p DIR -b binary_buildpack -c ./server`). A std-only HTTP/1.1 server on `$PORT`:
//! - `GET /` — `instance-server index <i>`
//! - `GET /index` — the instance index (`CF_INSTANCE_INDEX`)
//! - `GET /env/<NAME>` — the value of an environment variable (404 when unset)
//! - `GET /log/out/<text>` and `/log/err/<text>` — writes `<text>` to stdout or stderr
//! - `GET /file/<name>` — the contents of a file of the app directory
//! - `GET /crash` — exits with status 17
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
