//! Patient Explorer in a real browser: `hearth app` serves it on loopback, and
//! `tests/browser/explorer.mjs` drives Debian's Chromium (Playwright, headless) through sign-in,
//! a wrong PIN, search, vitals with the chart updating, a note written and signed, a consent
//! signed on the pad, a conflict resolved, a front-desk user refused a note, break-glass, and
//! the inactivity lock. `HEARTH_SCREENSHOTS=docs/screenshots` keeps the screenshots.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use crate::common;

use common::{Running, ok};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ADMIN_PIN: &str = "24681357";

fn hearth(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["--pin-stdin"];
    a.extend_from_slice(args);
    let out = common::run(dir, &a, stdin);
    ok(&out);
    out
}

fn admin(dir: &Path, args: &[&str]) -> String {
    let mut a = vec!["--user", "admin"];
    a.extend_from_slice(args);
    String::from_utf8(hearth(dir, &a, &format!("{ADMIN_PIN}\n")).stdout).unwrap()
}

fn browser_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the browser tests");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    dir
}

/// A clinic with three users and one progress note edited on two databases (a conflict that
/// waits for a person).
fn prepare(dir: &Path) {
    hearth(
        dir,
        &[
            "--user",
            "admin",
            "init",
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ],
        &format!("{ADMIN_PIN}\n"),
    );
    admin(dir, &["demo-data", "--patients", "5"]);
    hearth(
        dir,
        &[
            "--user",
            "admin",
            "user",
            "add",
            "desk",
            "--role",
            "front_desk",
        ],
        &format!("{ADMIN_PIN}\n13572468\n"),
    );
    hearth(
        dir,
        &["--user", "admin", "user", "add", "aud", "--role", "auditor"],
        &format!("{ADMIN_PIN}\n11223344\n"),
    );
    admin(dir, &["db", "create", "other"]);
    admin(dir, &["sync", "--remote", "local:other"]);
    let id = "DocumentReference/p-000002-note-1";
    for (db, text) in [
        ("records", "edited on the tablet"),
        ("other", "edited on the laptop"),
    ] {
        let doc = admin(dir, &["doc", "get", id, "--db", db]);
        let mut v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        v["description"] = text.into();
        admin(dir, &["doc", "put", &v.to_string(), "--db", db]);
    }
    admin(dir, &["sync", "--remote", "local:other"]);
    let list = admin(dir, &["conflicts", "list"]);
    assert!(list.contains(id), "the conflict is in the inbox: {list}");
}

/// A clinic hub for the sync panel: started on loopback, with a nurse account; returns the
/// process, a one-time pairing offer and the administration URL.
fn hub(dir: &Path) -> (Running, String, String) {
    hearth(
        dir,
        &["hub", "init", "--account", "admin@clinic"],
        "hub-passphrase-1\nadmin-password-1\n",
    );
    hearth(
        dir,
        &[
            "hub",
            "account",
            "add",
            "nurse@clinic",
            "--role",
            "clinician",
        ],
        "hub-passphrase-1\nnurse-password-1\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--pin-stdin",
            "hub",
            "start",
            "--rpc-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--couch-listen", "", "--couch-tls-listen", ""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "hub-passphrase-1").unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = lines
            .next()
            .expect("the hub printed its addresses")
            .unwrap();
        if line.contains("status and metrics") {
            let url = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap();
            break url.trim_end_matches("/status").to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let offer = String::from_utf8(
        hearth(
            dir,
            &[
                "hub",
                "pair",
                "--text",
                "--admin-url",
                &admin,
                "--account",
                "admin@clinic",
            ],
            "admin-password-1\n",
        )
        .stdout,
    )
    .unwrap();
    (Running(child), offer.trim().to_owned(), admin)
}

#[test]
fn patient_explorer_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("device");
    prepare(&data);
    let (_hub, offer, hub_admin) = hub(&tmp.path().join("hub"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&data)
        .args(["app", "--listen", "127.0.0.1:0", "--idle-seconds", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the app printed its address").unwrap();
        if let Some(i) = line.find("http://") {
            break line[i..]
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let _app = Running(child);
    let shots = std::env::var("HEARTH_SCREENSHOTS")
        .map(|p| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(p)
        })
        .unwrap_or_else(|_| tmp.path().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg("explorer.mjs")
        .arg(&url)
        .arg(&shots)
        .arg(&offer)
        .arg(&hub_admin)
        .current_dir(browser_dir())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shots.join("chart.png").exists());
}
