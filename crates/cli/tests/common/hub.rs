//! The hub's end-to-end tests share these: starting and stopping hubs and devices through the
//! binary, answers on standard input, small HTTP helpers for loopback ports.

#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Running, ok};

pub const PASS: &str = "hub-passphrase-1";
pub const ADMIN_PW: &str = "admin-password-1";
pub const NURSE_PW: &str = "nurse-password-1";
pub const RELAY_PW: &str = "relay-password-1";
pub const PIN: &str = "864209";

pub fn hearth(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["--pin-stdin"];
    a.extend_from_slice(args);
    super::run(dir, &a, stdin)
}

pub fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "hearth should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates a hub with an administrator; returns its TLS certificate fingerprint.
pub fn init_hub(dir: &Path) -> String {
    let out = ok(&hearth(
        dir,
        &["hub", "init", "--account", "admin@clinic"],
        &format!("{PASS}\n{ADMIN_PW}\n"),
    ));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("TLS cert      sha256 "))
        .unwrap()
        .trim()
        .to_owned()
}

/// Starts a hub; returns the process and its addresses by label.
pub fn start_hub(dir: &Path, extra: &[&str]) -> (Running, HashMap<String, String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--pin-stdin", "hub", "start"])
        .args([
            "--rpc-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "{PASS}").unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = HashMap::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("Press Ctrl-C") {
            break;
        }
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"));
        if let Some(url) = url {
            let label = line
                .split("  ")
                .map(str::trim)
                .find(|s| !s.is_empty())
                .unwrap();
            urls.insert(label.to_owned(), url.trim_end_matches('/').to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Running(child), urls)
}

pub fn status(admin: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["hub", "status", "--json", "--admin-url", admin])
        .output()
        .unwrap();
    serde_json::from_slice(&ok(&out).into_bytes()).unwrap()
}

pub fn doc_count(admin: &str) -> u64 {
    status(admin)["databases"][0]["doc_count"].as_u64().unwrap()
}

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn offer(dir: &Path, admin: &str) -> String {
    ok(&hearth(
        dir,
        &[
            "hub",
            "pair",
            "--text",
            "--admin-url",
            admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ))
    .trim()
    .to_owned()
}

/// `hearth hub devices ARGS… --admin-url ADMIN --account admin@clinic` on a running hub.
pub fn devices_cmd(hub_dir: &Path, admin: &str, args: &[&str]) -> String {
    let mut a = vec!["hub", "devices"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--admin-url", admin, "--account", "admin@clinic"]);
    ok(&hearth(hub_dir, &a, &format!("{ADMIN_PW}\n")))
}

/// The id of the paired device named `name`, from `hearth hub devices list`.
pub fn device_id(hub_dir: &Path, admin: &str, name: &str) -> String {
    devices_cmd(hub_dir, admin, &["list"])
        .lines()
        .find(|l| l.contains(name))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned()
}

/// Adds (or resets) a hub account with a role and a password, on a stopped hub.
pub fn add_account(hub_dir: &Path, name: &str, role: &str, password: &str) {
    ok(&hearth(
        hub_dir,
        &["hub", "account", "add", name, "--role", role],
        &format!("{PASS}\n{password}\n"),
    ));
}

/// Adds the `nurse@clinic` hub account (role nurse, password `NURSE_PW`).
pub fn add_nurse(hub_dir: &Path) {
    add_account(hub_dir, "nurse@clinic", "nurse", NURSE_PW);
}

/// The administration port's base URL, from a started hub's addresses.
pub fn admin_url(urls: &HashMap<String, String>) -> String {
    urls["status and metrics"]
        .trim_end_matches("/status")
        .to_owned()
}

/// A device node with user `nurse1` (PIN `PIN`), fast key derivation for tests.
pub fn init_device(dir: &Path) {
    ok(&hearth(
        dir,
        &[
            "--user",
            "nurse1",
            "init",
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ],
        &format!("{PIN}\n"),
    ));
}

/// A device initialised and paired with the hub.
pub fn device(dir: &Path, admin: &str, hub_dir: &Path, name: &str) {
    init_device(dir);
    let o = offer(hub_dir, admin);
    let out = ok(&hearth(
        dir,
        &["--user", "nurse1", "pair", &o, "--name", name],
        &format!("{PIN}\n"),
    ));
    assert!(out.contains("Paired with hub"), "{out}");
}

pub fn sync(dir: &Path) -> Output {
    hearth(
        dir,
        &[
            "--user",
            "nurse1",
            "sync",
            "--hub",
            "--remote-user",
            "nurse@clinic",
        ],
        &format!("{PIN}\n{NURSE_PW}\n"),
    )
}

pub fn local_count(dir: &Path) -> u64 {
    let out = ok(&hearth(
        dir,
        &["--user", "nurse1", "db", "info", "records"],
        &format!("{PIN}\n"),
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["doc_count"].as_u64().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
/// A minimal HTTP/1.0 request to the loopback administration port: status, headers
/// (lowercased names), body.
pub fn http(method: &str, url: &str, form: &str, cookie: Option<&str>) -> (u16, String, String) {
    let u = url.strip_prefix("http://").unwrap();
    let (host, path) = u.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} /{path} HTTP/1.0\r\nHost: {host}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}: {}", k.to_ascii_lowercase(), v.trim()),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (status, headers, body.to_owned())
}

/// A minimal HTTP/1.0 GET (the administration port is plain loopback HTTP).
pub fn http_get(url: &str) -> String {
    let u = url.strip_prefix("http://").unwrap();
    let (host, path) = u.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut s, &mut body).unwrap();
    body
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
/// `PUT /records/{id}` on the hub's plain loopback CouchDB API; the status code.
pub fn couch_put(base: &str, auth: &str, id: &str) -> u16 {
    let body = format!(r#"{{"resourceType":"Basic","id":"{id}","note":"drill"}}"#);
    let u = base.strip_prefix("http://").unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(u) else {
        return 0;
    };
    let _ = write!(
        s,
        "PUT /records/{id} HTTP/1.0\r\nHost: {u}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut raw);
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
