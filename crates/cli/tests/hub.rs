//! The clinic hub end to end through the `hearth` binary, all on loopback: two devices, a hub
//! and an upstream hub. Device A writes offline and syncs through the encrypted RPC port;
//! device B pulls it; the hub relays to the upstream over TLS (pinned certificate) while the
//! upstream goes away and comes back; the hub reports status and metrics; a revoked device is
//! refused; a device restored from an old copy is caught by its audit chain. A restore drill:
//! backups taken while clients write are restored and hold every acknowledged write.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{Running, ok};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PASS: &str = "hub-passphrase-1";
const ADMIN_PW: &str = "admin-password-1";
const NURSE_PW: &str = "nurse-password-1";
const RELAY_PW: &str = "relay-password-1";
const PIN: &str = "864209";

fn hearth(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["--pin-stdin"];
    a.extend_from_slice(args);
    common::run(dir, &a, stdin)
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "hearth should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates a hub with an administrator; returns its TLS certificate fingerprint.
fn init_hub(dir: &Path) -> String {
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
fn start_hub(dir: &Path, extra: &[&str]) -> (Running, HashMap<String, String>) {
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

fn status(admin: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["hub", "status", "--json", "--admin-url", admin])
        .output()
        .unwrap();
    serde_json::from_slice(&ok(&out).into_bytes()).unwrap()
}

fn doc_count(admin: &str) -> u64 {
    status(admin)["databases"][0]["doc_count"].as_u64().unwrap()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn offer(dir: &Path, admin: &str) -> String {
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

fn device(dir: &Path, admin: &str, hub_dir: &Path, name: &str) {
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
    let o = offer(hub_dir, admin);
    let out = ok(&hearth(
        dir,
        &["--user", "nurse1", "pair", &o, "--name", name],
        &format!("{PIN}\n"),
    ));
    assert!(out.contains("Paired with hub"), "{out}");
}

fn sync(dir: &Path) -> Output {
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

fn local_count(dir: &Path) -> u64 {
    let out = ok(&hearth(
        dir,
        &["--user", "nurse1", "db", "info", "records"],
        &format!("{PIN}\n"),
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["doc_count"].as_u64().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn devices_sync_through_the_hub_which_relays_to_an_upstream_that_comes_and_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub_dir, up_dir) = (tmp.path().join("hub"), tmp.path().join("upstream"));

    // The upstream: another Hearth hub, its CouchDB API over TLS on a fixed loopback port.
    let up_fp = init_hub(&up_dir);
    ok(&hearth(
        &up_dir,
        &["hub", "account", "add", "relay@clinic", "--admin"],
        &format!("{PASS}\n{RELAY_PW}\n"),
    ));
    let up_port = free_port();
    let up_tls = format!("127.0.0.1:{up_port}");
    let up_args = ["--couch-listen", "", "--couch-tls-listen", up_tls.as_str()];
    let (up, up_urls) = start_hub(&up_dir, &up_args);
    let up_admin = up_urls["status and metrics"]
        .trim_end_matches("/status")
        .to_owned();

    // The clinic hub: accounts, and the upstream (pinned certificate) in its secrets vault.
    init_hub(&hub_dir);
    ok(&hearth(
        &hub_dir,
        &["hub", "account", "add", "nurse@clinic", "--role", "nurse"],
        &format!("{PASS}\n{NURSE_PW}\n"),
    ));
    let bad = hearth(
        &hub_dir,
        &[
            "hub",
            "upstream",
            "set",
            "https://127.0.0.1:1",
            "--upstream-user",
            "x",
            "--tls-fingerprint",
            "zz",
        ],
        &format!("{PASS}\n"),
    );
    assert!(fails(&bad).contains("64 digits"));
    ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "upstream",
            "set",
            &format!("https://{up_tls}"),
            "--upstream-user",
            "relay@clinic",
            "--tls-fingerprint",
            &up_fp,
        ],
        &format!("{PASS}\n{RELAY_PW}\n"),
    ));
    let wrong = hearth(
        &hub_dir,
        &["hub", "upstream", "show"],
        "not-the-passphrase\n",
    );
    assert!(fails(&wrong).contains("wrong hub passphrase"));
    let (_hub, urls) = start_hub(
        &hub_dir,
        &["--couch-tls-listen", "", "--set", "relay_interval_secs=1"],
    );
    let admin = urls["status and metrics"]
        .trim_end_matches("/status")
        .to_owned();
    assert!(urls["devices (RPC)"].starts_with("http://127.0.0.1:"));

    // The offer as a QR code, in the terminal and as PNG and SVG files.
    let (png, svg) = (tmp.path().join("offer.png"), tmp.path().join("offer.svg"));
    let shown = ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "pair",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
            "--png",
            png.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    assert!(
        shown.contains('█') && shown.contains("hearth-pair:"),
        "{shown}"
    );
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let wrong_pw = hearth(
        &hub_dir,
        &[
            "hub",
            "pair",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        "nope\n",
    );
    assert!(fails(&wrong_pw).contains("incorrect"));

    // Two devices pair with one-time offers.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    device(&a, &admin, &hub_dir, "tablet A");
    device(&b, &admin, &hub_dir, "tablet B");

    // A works offline, then syncs through the RPC port; B pulls.
    ok(&hearth(
        &a,
        &["--user", "nurse1", "demo-data", "--patients", "3"],
        &format!("{PIN}\n"),
    ));
    ok(&hearth(
        &a,
        &["--user", "nurse1", "fhir", "read", "Patient", "p-000001"],
        &format!("{PIN}\n"),
    ));
    let out = ok(&sync(&a));
    assert!(
        out.contains("entries pushed to the hub and witnessed"),
        "{out}"
    );
    let n = local_count(&a);
    assert!(n > 20, "{n}");
    ok(&sync(&b));
    assert_eq!(local_count(&b), n, "device B has what device A wrote");

    // The hub relays upstream.
    wait_for("the relay", Duration::from_secs(60), || {
        doc_count(&up_admin) == n
    });

    // The upstream goes away; A writes more and syncs; the hub buffers and says so.
    drop(up);
    ok(&hearth(
        &a,
        &[
            "--user",
            "nurse1",
            "demo-data",
            "--patients",
            "2",
            "--seed",
            "7",
            "--first",
            "50",
        ],
        &format!("{PIN}\n"),
    ));
    ok(&sync(&a));
    let n2 = local_count(&a);
    assert!(n2 > n);
    wait_for(
        "the relay to report the outage",
        Duration::from_secs(60),
        || {
            let r = &status(&admin)["relay"];
            r["errors"].as_u64().unwrap() > 0 && r["backlog"].as_u64().unwrap() > 0
        },
    );
    let metrics = http_get(&format!("{admin}/metrics"));
    assert!(metrics.contains("hearth_relay_errors_total"), "{metrics}");
    assert!(
        metrics.contains(&format!("hearth_documents{{db=\"records\"}} {n2}")),
        "{metrics}"
    );

    // It comes back on the same address: everything buffered arrives, the backlog drains.
    let (_up, up_urls) = start_hub(&up_dir, &up_args);
    let up_admin = up_urls["status and metrics"]
        .trim_end_matches("/status")
        .to_owned();
    wait_for("the relay to catch up", Duration::from_secs(60), || {
        doc_count(&up_admin) == n2
    });
    wait_for("the backlog to drain", Duration::from_secs(30), || {
        status(&admin)["relay"]["backlog"].as_u64() == Some(0)
    });
    let human = ok(&Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["hub", "status", "--admin-url", &admin])
        .output()
        .unwrap());
    assert!(
        human.contains("relay") && human.contains("backlog 0"),
        "{human}"
    );

    // The administration screens: sign in, status with the relay, a pairing QR code, devices,
    // accounts.
    let (status_code, _, page) = http("GET", &format!("{admin}/ui"), "", None);
    assert_eq!(status_code, 200);
    assert!(page.contains("Administrator account"));
    let (_, _, page) = http(
        "POST",
        &format!("{admin}/ui/login"),
        "name=admin%40clinic&password=wrong",
        None,
    );
    assert!(page.contains("incorrect"), "{page}");
    let (code, headers, _) = http(
        "POST",
        &format!("{admin}/ui/login"),
        &format!("name=admin%40clinic&password={ADMIN_PW}"),
        None,
    );
    assert_eq!(code, 303);
    let cookie = headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (_, _, page) = http("GET", &format!("{admin}/ui"), "", Some(&cookie));
    assert!(
        page.contains("Relaying to") && page.contains("devices paired"),
        "{page}"
    );
    let (_, _, page) = http("POST", &format!("{admin}/ui/pair"), "", Some(&cookie));
    assert!(
        page.contains("<svg") && page.contains("hearth-pair:"),
        "{page}"
    );
    let (_, _, page) = http("GET", &format!("{admin}/ui/devices"), "", Some(&cookie));
    assert!(
        page.contains("tablet A") && page.contains("Revoke"),
        "{page}"
    );
    let (_, _, page) = http(
        "POST",
        &format!("{admin}/ui/accounts"),
        "name=desk%40clinic&role=front_desk&password=desk-password-1",
        Some(&cookie),
    );
    assert!(
        page.contains("desk@clinic") && page.contains("front_desk"),
        "{page}"
    );

    // The hub's audit report answers across devices.
    let report = ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "audit",
            "report",
            "--patient",
            "p-000001",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    assert!(report.contains("\tread\t"), "{report}");

    // A device restored from an old copy is caught at its next sync.
    let a_old = tmp.path().join("a-old");
    copy_dir(&a, &a_old);
    ok(&hearth(
        &a,
        &["--user", "nurse1", "fhir", "read", "Patient", "p-000002"],
        &format!("{PIN}\n"),
    ));
    ok(&sync(&a));
    let err = fails(&sync(&a_old));
    assert!(err.contains("audit trail"), "{err}");

    // A revoked device is refused.
    let list = ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "devices",
            "list",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    let b_id = list
        .lines()
        .find(|l| l.contains("tablet B"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "devices",
            "revoke",
            &b_id,
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    let err = fails(&sync(&b));
    assert!(err.contains("revoked"), "{err}");
}

/// A minimal HTTP/1.0 request to the loopback administration port: status, headers
/// (lowercased names), body.
fn http(method: &str, url: &str, form: &str, cookie: Option<&str>) -> (u16, String, String) {
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
fn http_get(url: &str) -> String {
    let u = url.strip_prefix("http://").unwrap();
    let (host, path) = u.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut s, &mut body).unwrap();
    body
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_hub_can_wait_for_its_passphrase_in_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    init_hub(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "hub",
            "start",
            "--unlock-in-browser",
            "--rpc-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--couch-listen",
            "",
            "--couch-tls-listen",
            "",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _running = Running(child);
    let unlock = loop {
        let line = lines
            .next()
            .expect("the hub says where to unlock it")
            .unwrap();
        if let Some(i) = line.find("http://") {
            break line[i..].split_whitespace().next().unwrap().to_owned();
        }
    };
    let base = unlock.trim_end_matches("/ui").to_owned();
    let (code, _, page) = http("GET", &unlock, "", None);
    assert_eq!(code, 200);
    assert!(page.contains("Unlock the hub"), "{page}");
    // Nothing else is served while locked.
    let (code, _, _) = http("GET", &format!("{base}/status"), "", None);
    assert_eq!(code, 303);
    let (code, _, page) = http(
        "POST",
        &format!("{base}/ui/unlock"),
        "passphrase=not-it",
        None,
    );
    assert_eq!(code, 401);
    assert!(page.contains("wrong hub passphrase"), "{page}");
    let (code, _, page) = http(
        "POST",
        &format!("{base}/ui/unlock"),
        &format!("passphrase={PASS}"),
        None,
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Unlocked"));
    // The hub starts, its administration port on the same address.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("status and metrics") {
            assert!(line.contains(&base), "{line} vs {base}");
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (code, _, page) = http("GET", &format!("{base}/status"), "", None);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("\"sessions_open\""), "{page}");
}

/// `PUT /records/{id}` on the hub's plain loopback CouchDB API; the status code.
fn couch_put(base: &str, auth: &str, id: &str) -> u16 {
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

#[test]
fn restore_drill_backups_taken_while_clients_write_hold_every_acknowledged_write() {
    use base64::Engine;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    init_hub(&hub_dir);
    // The backup key: its file stays with the administrator; the hub gets the public half.
    let key_file = tmp.path().join("backup-key.json");
    let out = ok(&hearth(
        tmp.path(),
        &[
            "backup",
            "keygen",
            "--out",
            key_file.to_str().unwrap(),
            "--kdf-memory-mib",
            "8",
        ],
        "backup passphrase 1\n",
    ));
    let public = out
        .lines()
        .find(|l| l.starts_with("hearth-backup-key:"))
        .unwrap()
        .to_owned();
    let backups = tmp.path().join("backups");
    let (_hub, urls) = start_hub(
        &hub_dir,
        &[
            "--couch-listen",
            "127.0.0.1:0",
            "--couch-tls-listen",
            "",
            "--set",
            &format!("backup_key={public}"),
            "--set",
            &format!("backup_dir={}", backups.display()),
            "--set",
            "backup_keep=2",
        ],
    );
    let admin = urls["status and metrics"]
        .trim_end_matches("/status")
        .to_owned();
    let couch = urls["CouchDB API"].clone();
    // No backup on disk yet: the schedule takes the first one at start.
    wait_for(
        "the first scheduled backup",
        Duration::from_secs(60),
        || !status(&admin)["backup"]["last_success"].is_null(),
    );

    // A client keeps writing; every write the hub acknowledged (201) is recorded.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin@clinic:{ADMIN_PW}"));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, couch) = (acked.clone(), stop.clone(), couch.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let id = format!("drill-{i:05}");
                if couch_put(&couch, &auth, &id) == 201 {
                    acked.lock().unwrap().push(id);
                }
                i += 1;
            }
        })
    };
    wait_for("writes before the backup", Duration::from_secs(60), || {
        acked.lock().unwrap().len() >= 200
    });
    let before = acked.lock().unwrap().clone();
    let out = ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "backup",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    let name = out
        .split_whitespace()
        .find(|w| w.starts_with("hearth-backup-"))
        .unwrap()
        .to_owned();
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!(
        "{} writes before the backup, {during} acknowledged while it ran",
        before.len()
    );

    // A third backup: retention keeps the newest two.
    ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "backup",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    let kept: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hearth-backup-"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.contains(&name));
    let st = status(&admin);
    assert_eq!(st["backup"]["failures"], 0, "{st}");
    let metrics = http_get(&format!("{admin}/metrics"));
    let last: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hearth_backup_last_success_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(last > 0, "{metrics}");
    let shown = ok(&Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["hub", "status", "--admin-url", &admin])
        .output()
        .unwrap());
    assert!(shown.contains("backups         last good"), "{shown}");

    // Restore the mid-write backup while the hub keeps running, and check it.
    let restored = tmp.path().join("restored");
    let key = key_file.to_str().unwrap();
    let bk = backups.join(&name);
    let bk = bk.to_str().unwrap();
    let out = ok(&hearth(
        &restored,
        &["--user", "hub", "restore", bk, "--key-file", key],
        &format!("{PASS}\nbackup passphrase 1\n"),
    ));
    assert!(out.contains("integrity checks passed"), "{out}");
    let feed = ok(&hearth(
        &restored,
        &["--user", "hub", "changes", "--db", "records"],
        &format!("{PASS}\n"),
    ));
    let missing: Vec<&String> = before
        .iter()
        .filter(|id| !feed.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing: {missing:?}"
    );
    // The restored hub opens with its passphrase and its secrets (same device secret).
    let out = ok(&hearth(
        &restored,
        &["--user", "hub", "check"],
        &format!("{PASS}\n"),
    ));
    assert!(out.contains("passed"), "{out}");

    // Refusals: over a node, another key's file, a wrong key passphrase.
    let err = fails(&hearth(
        &hub_dir,
        &["--user", "hub", "restore", bk, "--key-file", key],
        &format!("{PASS}\nbackup passphrase 1\n"),
    ));
    assert!(err.contains("holds a Hearth node"), "{err}");
    let err = fails(&hearth(
        &tmp.path().join("r2"),
        &["--user", "hub", "restore", bk, "--key-file", key],
        &format!("{PASS}\nnot the passphrase\n"),
    ));
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!tmp.path().join("r2").exists());
}
