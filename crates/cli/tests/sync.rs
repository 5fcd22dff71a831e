//! Replication as users run it: `hearth hub serve` and `hearth sync` as processes, with real
//! PouchDB (npm `pouchdb`) and a CouchDB-compatible server written by others (npm
//! `express-pouchdb`) on the other end. Node packages come from `tests/pouchdb-interop`
//! (`npm ci` on first run).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use crate::common;

use common::{Running, interop_dir, ok, url_from};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PIN: &str = "864209";
const HUB_PASSWORD: &str = "hub-sync-password";

fn start_hub(dir: &Path) -> (Running, String) {
    common::serve_hub(dir, "127.0.0.1:0", PIN, HUB_PASSWORD)
}

fn hearth(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["--user", "nurse", "--pin-stdin"];
    a.extend_from_slice(args);
    common::run(dir, &a, stdin)
}

fn device(dir: &Path) {
    ok(&hearth(
        dir,
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
        &format!("{PIN}\n"),
    ));
}

fn node(script: &str, args: &[&str]) -> Output {
    Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(interop_dir())
        .output()
        .expect("node runs")
}

#[test]
fn pouchdb_replicates_with_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let (_hub, url) = start_hub(&tmp.path().join("hub"));
    let out = node("hub.mjs", &[&url, "sync", HUB_PASSWORD]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PouchDB interop failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "push",
        "pull",
        "conflicts",
        "deletions",
        "live",
        "resume",
        "noop",
        "revisions-mismatch",
        "find",
        "auth",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {step}")),
            "step {step} did not pass:\n{stdout}"
        );
    }
}

#[test]
fn hearth_sync_with_pouchdb_server_matches_pouchdb() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new("node")
        .arg("pouchdb-server.mjs")
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let base = url_from(&mut child);
    let _server = Running(child);
    let dev = tmp.path().join("device");
    device(&dev);
    let pulled = ok(&hearth(
        &dev,
        &["sync", "--pull", "--remote", &format!("{base}/seeded")],
        &format!("{PIN}\n"),
    ));
    assert!(pulled.contains("64 written, 0 failed"), "{pulled}");
    let pushed = ok(&hearth(
        &dev,
        &["sync", "--push", "--remote", &format!("{base}/copy")],
        &format!("{PIN}\n"),
    ));
    assert!(pushed.contains("64 written, 0 failed"), "{pushed}");
    // seeded -> Hearth -> copy equals seeded, and equals what PouchDB's own replicator makes.
    let out = node("compare.mjs", &[&base, "seeded", "copy"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Again: nothing new, nothing moves.
    let again = ok(&hearth(
        &dev,
        &["sync", "--pull", "--remote", &format!("{base}/seeded")],
        &format!("{PIN}\n"),
    ));
    assert!(again.contains("pull: 0 changes read"), "{again}");
}

#[test]
fn devices_sync_records_through_a_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let (_hub, url) = start_hub(&tmp.path().join("hub"));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    device(&a);
    device(&b);
    ok(&hearth(
        &a,
        &["demo-data", "--patients", "3"],
        &format!("{PIN}\n"),
    ));
    let remote = format!("{url}/records");
    let creds = format!("{PIN}\n{HUB_PASSWORD}\n");
    let out = ok(&hearth(
        &a,
        &["sync", "--remote", &remote, "--remote-user", "sync"],
        &creds,
    ));
    assert!(out.contains("push: ") && out.contains(" 0 failed"), "{out}");
    let out = ok(&hearth(
        &b,
        &[
            "sync",
            "--pull",
            "--remote",
            &remote,
            "--remote-user",
            "sync",
        ],
        &creds,
    ));
    assert!(
        out.contains("pull: ") && !out.contains(" 0 written"),
        "{out}"
    );
    // Pulled records are searchable at once on the other device.
    let found = ok(&hearth(
        &b,
        &["fhir", "search", "Patient"],
        &format!("{PIN}\n"),
    ));
    let bundle: serde_json::Value = serde_json::from_str(&found).unwrap();
    let patients = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .count();
    assert_eq!(patients, 3, "{found}");
    // The sync session is in the device's audit trail.
    let audit = ok(&hearth(&b, &["audit", "list"], &format!("{PIN}\n")));
    assert!(audit.contains("sync"), "{audit}");

    // A wrong hub password: a clear error and a non-zero exit.
    let out = hearth(
        &b,
        &["sync", "--remote", &remote, "--remote-user", "sync"],
        &format!("{PIN}\nwrong-password\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("Name or password is incorrect"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn hub_serve_refuses_unsafe_setups() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--user",
            "admin",
            "--pin-stdin",
            "hub",
            "serve",
            "--init",
            "--listen",
            "0.0.0.0:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    // No accounts: nobody could use it, so it does not start.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--user",
            "admin",
            "--pin-stdin",
            "hub",
            "serve",
            "--init",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "{PIN}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no accounts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn conflicting_edits_on_two_devices_resolve_through_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let (_hub, url) = start_hub(&tmp.path().join("hub"));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    device(&a);
    device(&b);
    let remote = format!("{url}/records");
    let creds = format!("{PIN}\n{HUB_PASSWORD}\n");
    let sync = |dir: &Path| {
        ok(&hearth(
            dir,
            &["sync", "--remote", &remote, "--remote-user", "sync"],
            &creds,
        ))
    };
    let patient = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Okafor"}],"birthDate":"1950-01-02","telecom":[{"system":"phone","value":"555-0100"}]}"#;
    let note = r#"{"resourceType":"DocumentReference","id":"n1","status":"current","subject":{"reference":"Patient/p1"},"content":[{"attachment":{"contentType":"text/plain","data":"aGk="}}]}"#;
    ok(&hearth(
        &a,
        &["fhir", "create", patient],
        &format!("{PIN}\n"),
    ));
    ok(&hearth(&a, &["fhir", "create", note], &format!("{PIN}\n")));
    sync(&a);
    sync(&b);
    // Offline on both: different fields of the patient, and the same note.
    let a_patient = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Okafor"}],"birthDate":"1950-01-02","telecom":[{"system":"phone","value":"555-0199"}]}"#;
    let b_patient = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Okafor"}],"birthDate":"1950-01-02","telecom":[{"system":"phone","value":"555-0100"}],"address":[{"city":"Duluth"}]}"#;
    ok(&hearth(
        &a,
        &["fhir", "update", "Patient", "p1", a_patient],
        &format!("{PIN}\n"),
    ));
    ok(&hearth(
        &b,
        &["fhir", "update", "Patient", "p1", b_patient],
        &format!("{PIN}\n"),
    ));
    let a_note = note.replace(
        "\"status\":\"current\"",
        "\"status\":\"current\",\"description\":\"from A\"",
    );
    let b_note = note.replace(
        "\"status\":\"current\"",
        "\"status\":\"current\",\"description\":\"from B\"",
    );
    ok(&hearth(
        &a,
        &["fhir", "update", "DocumentReference", "n1", &a_note],
        &format!("{PIN}\n"),
    ));
    ok(&hearth(
        &b,
        &["fhir", "update", "DocumentReference", "n1", &b_note],
        &format!("{PIN}\n"),
    ));
    sync(&a);
    let out = sync(&b);
    assert!(out.contains("Patient/p1 resolved by field-merge"), "{out}");
    assert!(
        out.contains("DocumentReference/n1 waits for a person"),
        "{out}"
    );
    sync(&a);
    for dir in [&a, &b] {
        let p: serde_json::Value = serde_json::from_str(&ok(&hearth(
            dir,
            &["fhir", "read", "Patient", "p1"],
            &format!("{PIN}\n"),
        )))
        .unwrap();
        assert_eq!(p["telecom"][0]["value"], "555-0199", "A's change kept");
        assert_eq!(p["address"][0]["city"], "Duluth", "B's change kept");
    }
    // The note waits in the inbox on both devices; a person keeps one version.
    let list = ok(&hearth(&a, &["conflicts", "list"], &format!("{PIN}\n")));
    assert!(
        list.contains("DocumentReference/n1")
            && list.contains("manual")
            && !list.lines().any(|l| l.starts_with("Patient/p1")),
        "{list}"
    );
    let shown: serde_json::Value = serde_json::from_str(&ok(&hearth(
        &a,
        &["conflicts", "show", "DocumentReference/n1"],
        &format!("{PIN}\n"),
    )))
    .unwrap();
    assert!(
        shown["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["field"] == "description")
    );
    let keep = shown["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["resource"]["description"] == "from B")
        .unwrap()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&hearth(
        &a,
        &[
            "conflicts",
            "resolve",
            "DocumentReference/n1",
            "--keep",
            &keep,
        ],
        &format!("{PIN}\n"),
    ));
    sync(&a);
    sync(&b);
    let list = ok(&hearth(&b, &["conflicts", "list"], &format!("{PIN}\n")));
    assert!(list.contains("No unresolved conflicts"), "{list}");
    // A bad request is a clear error.
    let out = hearth(
        &b,
        &["conflicts", "resolve", "DocumentReference/n1"],
        &format!("{PIN}\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep"));
}
