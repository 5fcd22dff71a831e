//! `hearth backup` and `hearth restore` on a device, through the binary: a backup taken while
//! `hearth app` serves the same data folder, listed, verified, restored and checked.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Running, ok};

const PIN: &str = "97531864";
const PASSPHRASE: &str = "a long backup passphrase";

fn hearth(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["--pin-stdin", "--user", "admin"];
    a.extend_from_slice(args);
    common::run(dir, &a, stdin)
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "hearth should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_device_backs_up_while_its_app_runs_and_restores_into_a_new_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("device");
    ok(&hearth(
        &dev,
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
        &format!("{PIN}\n"),
    ));
    ok(&hearth(
        &dev,
        &["demo-data", "--patients", "4"],
        &format!("{PIN}\n"),
    ));
    // The app, unlocked, owns the data folder while it runs.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dev)
        .args([
            "--user",
            "admin",
            "--pin-stdin",
            "app",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{PIN}\n").as_bytes())
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the app printed its address").unwrap();
        if let Some(i) = line.find("http://") {
            break line[i..].split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let _app = Running(child);
    let err = fails(&hearth(
        &dev,
        &["db", "info", "records"],
        &format!("{PIN}\n"),
    ));
    assert!(err.contains("in use by another Hearth process"), "{err}");

    let key = tmp.path().join("key.json");
    let out = ok(&hearth(
        tmp.path(),
        &[
            "backup",
            "keygen",
            "--out",
            key.to_str().unwrap(),
            "--kdf-memory-mib",
            "8",
        ],
        &format!("{PASSPHRASE}\n"),
    ));
    let public = out.lines().last().unwrap().to_owned();
    assert!(public.starts_with("hearth-backup-key:"), "{out}");
    let short = fails(&hearth(
        tmp.path(),
        &[
            "backup",
            "keygen",
            "--out",
            tmp.path().join("k2").to_str().unwrap(),
        ],
        "short\n",
    ));
    assert!(short.contains("at least 12"), "{short}");

    let to = tmp.path().join("external-drive");
    let out = ok(&hearth(
        &dev,
        &[
            "backup",
            "create",
            "--to",
            to.to_str().unwrap(),
            "--key",
            &public,
        ],
        &format!("{PIN}\n"),
    ));
    assert!(out.contains("records: 109 documents"), "{out}");
    // The app kept serving.
    let u = url.strip_prefix("http://").unwrap().trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(u).unwrap();
    std::io::Write::write_all(
        &mut s,
        format!("GET /login HTTP/1.0\r\nHost: {u}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut s, &mut page).unwrap();
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );

    let list = ok(&hearth(&dev, &["backup", "list", to.to_str().unwrap()], ""));
    assert!(list.contains("109 documents"), "{list}");
    let bk = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hearth-backup-")
        })
        .unwrap();
    let bk = bk.to_str().unwrap();
    let keyf = key.to_str().unwrap();
    let out = ok(&hearth(
        tmp.path(),
        &["backup", "verify", bk, "--key-file", keyf],
        &format!("{PASSPHRASE}\n"),
    ));
    assert!(out.contains("verifies with this key"), "{out}");
    // Nothing of the records in clear in any backup file (every record's JSON has this key).
    for f in std::fs::read_dir(bk).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"resourceType"));
        assert!(!bytes.windows(6).any(|w| w == b"Patien"));
    }
    let restored = tmp.path().join("restored");
    let out = ok(&hearth(
        &restored,
        &["restore", bk, "--key-file", keyf],
        &format!("{PIN}\n{PASSPHRASE}\n"),
    ));
    assert!(
        out.contains("records: 109 documents, as the manifest says"),
        "{out}"
    );
    let info = ok(&hearth(
        &restored,
        &["db", "info", "records"],
        &format!("{PIN}\n"),
    ));
    assert!(info.contains("\"doc_count\": 109,"), "{info}");
    // Never over a node, even a stopped one, and never with a wrong PIN.
    let err = fails(&hearth(
        &restored,
        &["restore", bk, "--key-file", keyf],
        &format!("{PIN}\n{PASSPHRASE}\n"),
    ));
    assert!(err.contains("holds a Hearth node"), "{err}");
    let err = fails(&hearth(
        &tmp.path().join("r2"),
        &["restore", bk, "--key-file", keyf],
        &format!("00000000\n{PASSPHRASE}\n"),
    ));
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!tmp.path().join("r2").exists());
}
