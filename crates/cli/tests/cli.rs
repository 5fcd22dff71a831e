//! The `hearth` binary as a user runs it: real processes, real files, PINs on stdin.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use crate::common;

use common::ok;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PIN: &str = "864209";
const FAST_KDF: &[&str] = &["--kdf-memory-mib", "8", "--kdf-iterations", "1"];

fn hearth(dir: &Path, args: &[&str], stdin: &str) -> Output {
    hearth_as(dir, "admin", args, stdin)
}

/// Runs `hearth` as `user`, the PIN (and any further answers) on stdin.
fn hearth_as(dir: &Path, user: &str, args: &[&str], stdin: &str) -> Output {
    let mut a = vec!["--user", user, "--pin-stdin"];
    a.extend_from_slice(args);
    common::run(dir, &a, stdin)
}

fn fail(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "hearth should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert!(!err.contains("panicked"), "hearth panicked: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn init(dir: &Path) {
    let mut args = vec!["init"];
    args.extend_from_slice(FAST_KDF);
    let out = ok(&hearth(dir, &args, &format!("{PIN}\n")));
    assert!(out.contains("Created an encrypted node"));
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn document_lifecycle_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let put = json(&ok(&hearth(
        &dir,
        &["doc", "put", r#"{"_id":"Patient/p1","name":"Ada"}"#],
        &format!("{PIN}\n"),
    )));
    let rev1 = put["rev"].as_str().unwrap().to_owned();
    assert!(rev1.starts_with("1-"));
    // The body can come from stdin after the PIN line.
    let upd = format!(r#"{{"_id":"Patient/p1","_rev":"{rev1}","name":"Ada L."}}"#);
    let rev2 = json(&ok(&hearth(
        &dir,
        &["doc", "put", "-"],
        &format!("{PIN}\n{upd}"),
    )))["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    // Updating the stale revision is a conflict, with a clear message and non-zero exit.
    let err = fail(&hearth(
        &dir,
        &["doc", "put", "-"],
        &format!("{PIN}\n{upd}"),
    ));
    assert!(err.contains("Document update conflict"), "{err}");
    let got = json(&ok(&hearth(
        &dir,
        &["doc", "get", "Patient/p1", "--revs"],
        &format!("{PIN}\n"),
    )));
    assert_eq!(got["name"], "Ada L.");
    assert_eq!(got["_revisions"]["start"], 2);
    let changes = json(&ok(&hearth(&dir, &["changes"], &format!("{PIN}\n"))));
    assert_eq!(changes["results"].as_array().unwrap().len(), 1);
    assert_eq!(changes["last_seq"], 2);
    let del = ok(&hearth(
        &dir,
        &["doc", "delete", "Patient/p1", "--rev", &rev2],
        &format!("{PIN}\n"),
    ));
    assert!(json(&del)["rev"].as_str().unwrap().starts_with("3-"));
    let err = fail(&hearth(
        &dir,
        &["doc", "get", "Patient/p1"],
        &format!("{PIN}\n"),
    ));
    assert!(err.contains("not found: deleted"), "{err}");
    let all = json(&ok(&hearth(
        &dir,
        &["doc", "get", "Patient/p1", "--open-revs", "all"],
        &format!("{PIN}\n"),
    )));
    assert_eq!(all[0]["ok"]["_deleted"], true);
    ok(&hearth(&dir, &["check"], &format!("{PIN}\n")));
}

#[test]
fn bad_input_gets_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let cases: &[(&[&str], &str)] = &[
        (&["doc", "put", "{not json"], "not valid JSON"),
        (
            &["doc", "put", r#"{"_id":"_bad"}"#],
            "Only reserved document ids may start with underscore",
        ),
        (
            &["doc", "put", r#"{"_id":"x","_zap":1}"#],
            "Bad special document member: _zap",
        ),
        (&["doc", "put", "[1,2]"], "Document must be a JSON object"),
        (&["doc", "get", "x", "--rev", "banana"], "generation-hash"),
        (
            &["doc", "get", "x", "--db", "nope"],
            "Database does not exist",
        ),
        (
            &["db", "create", "Bad Name"],
            "Name must begin with a lowercase letter",
        ),
        (&["db", "delete", "records"], "add --yes"),
        (&["doc", "load", "/nonexistent/file.ndjson"], "cannot read"),
    ];
    for (args, expect) in cases {
        let err = fail(&hearth(&dir, args, &format!("{PIN}\n")));
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in {err:?}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    // Commands on a folder with no node, and a missing --user.
    let err = fail(&hearth(
        &tmp.path().join("empty"),
        &["changes"],
        &format!("{PIN}\n"),
    ));
    assert!(err.contains("run `hearth init` first"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--data-dir"])
        .arg(&dir)
        .args(["changes"])
        .env_remove("HEARTH_USER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
    // No terminal and no --pin-stdin: a clear refusal, not a hang.
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--user", "admin", "changes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pin-stdin"));
}

#[test]
fn users_pins_lockout_and_rekey_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = ok(&hearth(
        &dir,
        &[
            "init",
            "--max-failures",
            "3",
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ],
        &format!("{PIN}\n"),
    ));
    assert!(out.contains("admin"));
    let err = fail(&hearth(
        &dir,
        &["user", "add", "nurse.kim", "--role", "nurse"],
        &format!("{PIN}\n123\n"),
    ));
    assert!(err.contains("at least 6 characters"), "{err}");
    ok(&hearth(
        &dir,
        &["user", "add", "nurse.kim", "--role", "nurse"],
        &format!("{PIN}\nkim-pin-1\n"),
    ));
    let as_kim = |args: &[&str], stdin: &str| hearth_as(&dir, "nurse.kim", args, stdin);
    ok(&as_kim(&["audit", "verify"], "kim-pin-1\n"));
    let err = fail(&as_kim(
        &["user", "add", "x", "--role", "nurse"],
        "kim-pin-1\n123456\n",
    ));
    assert!(err.contains("only an administrator"), "{err}");
    // Two wrong PINs are free; the third must wait; after it, Kim is locked out.
    for _ in 0..2 {
        let err = fail(&as_kim(&["audit", "verify"], "wrong-pin\n"));
        assert!(err.contains("wrong user or PIN"), "{err}");
    }
    let err = fail(&as_kim(&["audit", "verify"], "kim-pin-1\n"));
    // Two seconds after the last failure (one, if a second boundary passed between commands).
    assert!(
        err.contains("wait 2 s and try again") || err.contains("wait 1 s and try again"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let err = fail(&as_kim(&["audit", "verify"], "wrong-pin\n"));
    assert!(err.contains("wrong user or PIN"), "{err}");
    let err = fail(&as_kim(&["audit", "verify"], "kim-pin-1\n"));
    assert!(err.contains("locked out"), "{err}");
    ok(&hearth(
        &dir,
        &["user", "passwd", "nurse.kim"],
        &format!("{PIN}\nkim-pin-2\n"),
    ));
    ok(&as_kim(&["audit", "verify"], "kim-pin-2\n"));
    let list = ok(&hearth(&dir, &["user", "list"], &format!("{PIN}\n")));
    assert!(
        list.contains("nurse.kim\tnurse\t0 failed attempts"),
        "{list}"
    );

    ok(&hearth(
        &dir,
        &["doc", "put", r#"{"_id":"k","v":1}"#],
        &format!("{PIN}\n"),
    ));
    let out = ok(&hearth(&dir, &["rekey"], &format!("{PIN}\n{PIN}\n")));
    assert!(out.contains("1 other user(s) need a new PIN"), "{out}");
    let err = fail(&as_kim(&["audit", "verify"], "kim-pin-2\n"));
    assert!(err.contains("must be reset by an administrator"), "{err}");
    let got = json(&ok(&hearth(
        &dir,
        &["doc", "get", "k"],
        &format!("{PIN}\n"),
    )));
    assert_eq!(got["v"], 1);
    ok(&hearth(&dir, &["check"], &format!("{PIN}\n")));
}

#[test]
fn demo_runs_and_leaves_no_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["demo", "--no-app", "--folder"])
        .arg(&folder)
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(
        text.contains("not found. The data is encrypted at rest."),
        "{text}"
    );
    assert!(text.contains("kept for review"), "{text}");
    // Running it again reuses the node.
    let again = ok(&Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["demo", "--no-app", "--folder"])
        .arg(&folder)
        .output()
        .unwrap());
    assert!(again.contains("Reusing the demo node"));
}

/// Kills a writer with SIGKILL in the middle of large single-transaction batches, many times,
/// then checks every batch is all there or not there at all and the file is intact.
#[test]
fn killed_writer_never_leaves_a_half_written_batch() {
    const BATCH: usize = 5000;
    const KILLS: usize = 10;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pad = "x".repeat(900);
    let load = |round: usize| {
        let file = tmp.path().join(format!("batch{round}.ndjson"));
        let mut text = String::with_capacity(BATCH * 1000);
        for i in 0..BATCH {
            text.push_str(&format!(
                "{{\"_id\":\"r{round}-{i:05}\",\"pad\":\"{pad}\"}}\n"
            ));
        }
        std::fs::write(&file, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "--user",
                "admin",
                "--pin-stdin",
                "doc",
                "load",
                "--batch-size",
                &BATCH.to_string(),
            ])
            .arg(&file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PIN}\n").as_bytes())
            .unwrap();
        child
    };
    // Round 0 runs to the end and tells how long a whole load takes here.
    let start = Instant::now();
    assert!(load(0).wait().unwrap().success());
    let full = start.elapsed();
    let mut mid_write_kills = 0;
    for round in 1..=KILLS {
        let mut child = load(round);
        // Spread the kills over the life of the process: unlock, parse, write, commit.
        let delay = full.mul_f64(round as f64 / (KILLS as f64 + 1.0));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            mid_write_kills += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
    }
    assert!(
        mid_write_kills >= KILLS / 2,
        "only {mid_write_kills} kills hit a running writer"
    );
    let node = store::DataDir::open(&dir)
        .unwrap()
        .unlock("admin", &vault::Pin::from(PIN))
        .unwrap();
    assert!(node.replica().integrity_check().unwrap().is_empty());
    let mut seen = [0usize; KILLS + 1];
    let mut since = 0;
    loop {
        let page = node
            .replica()
            .changes(
                "records",
                &store::ChangesQuery {
                    since,
                    limit: Some(5000),
                    ..Default::default()
                },
            )
            .unwrap();
        if page.results.is_empty() {
            break;
        }
        for c in &page.results {
            let round: usize = c.id.as_str()[1..]
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            seen[round] += 1;
        }
        since = page.last_seq;
    }
    assert_eq!(seen[0], BATCH, "the unkilled load must be complete");
    for (round, n) in seen.iter().enumerate() {
        assert!(
            *n == 0 || *n == BATCH,
            "round {round}: {n} of {BATCH} documents survived a kill"
        );
    }
}

#[test]
fn fhir_records_import_export_and_demo_data_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    let out = ok(&hearth(
        &dir,
        &["demo-data", "--patients", "6", "--seed", "9"],
        &pin,
    ));
    assert!(
        out.contains("Created 161 resources for 6 patients"),
        "{out}"
    );
    // Search, read, $everything and reminders on the demo clinic.
    let found = json(&ok(&hearth(
        &dir,
        &["fhir", "search", "Patient", "_count=3", "_sort=birthdate"],
        &pin,
    )));
    assert_eq!(found["entry"].as_array().unwrap().len(), 3);
    let everything = json(&ok(&hearth(
        &dir,
        &["fhir", "everything", "p-000004"],
        &pin,
    )));
    assert_eq!(everything["entry"].as_array().unwrap().len(), 26);
    let due = json(&ok(&hearth(
        &dir,
        &["fhir", "reminders", "p-000004", "--count", "1"],
        &pin,
    )));
    assert_eq!(due.as_array().unwrap().len(), 2);
    // An invalid resource: OperationOutcome on stdout, one-line error, non-zero exit.
    let bad = hearth(
        &dir,
        &[
            "fhir",
            "create",
            r#"{"resourceType":"Patient","gender":"F"}"#,
        ],
        &pin,
    );
    let err = fail(&bad);
    assert!(
        err.contains("FHIR error 422") && err.contains("Patient.gender"),
        "{err}"
    );
    let outcome = json(&String::from_utf8(bad.stdout).unwrap());
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.gender");
    let err = fail(&hearth(
        &dir,
        &["fhir", "search", "Patient", "colour=red"],
        &pin,
    ));
    assert!(err.contains("not a search parameter"), "{err}");
    // Export to NDJSON and import into a second node: the same records arrive.
    let exported = tmp.path().join("export");
    let out = ok(&hearth(
        &dir,
        &["export", "--out", exported.to_str().unwrap()],
        &pin,
    ));
    assert!(out.contains("Exported 161 resources"), "{out}");
    let mut files: Vec<String> = std::fs::read_dir(&exported)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    files.sort();
    std::fs::write(
        tmp.path().join("bad.ndjson"),
        "{\"resourceType\":\"Task\",\"status\":\"requested\"}\nnot json\n",
    )
    .unwrap();
    files.push(tmp.path().join("bad.ndjson").to_str().unwrap().to_owned());
    let second = tmp.path().join("second");
    init(&second);
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let imported = hearth(&second, &args, &pin);
    let out = ok(&imported);
    assert!(out.contains("Imported 161 resources; rejected 2."), "{out}");
    let err = String::from_utf8(imported.stderr).unwrap();
    assert!(
        err.contains("bad.ndjson:1: rejected: Task.intent: intent is required"),
        "{err}"
    );
    assert!(err.contains("bad.ndjson:2: rejected"), "{err}");
    let a = json(&ok(&hearth(
        &dir,
        &["fhir", "read", "Patient", "p-000002"],
        &pin,
    )));
    let b = json(&ok(&hearth(
        &second,
        &["fhir", "read", "Patient", "p-000002"],
        &pin,
    )));
    assert_eq!(a["name"], b["name"]);
    assert_eq!(a["birthDate"], b["birthDate"]);
}

#[test]
fn app_serves_the_fhir_api_on_loopback_only() {
    use std::io::{BufRead, BufReader, Read};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    ok(&hearth(
        &dir,
        &["demo-data", "--patients", "2"],
        &format!("{PIN}\n"),
    ));
    let err = fail(&hearth(
        &dir,
        &["app", "--listen", "0.0.0.0:0"],
        &format!("{PIN}\n"),
    ));
    assert!(err.contains("not a loopback address"), "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dir)
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PIN}\n").as_bytes())
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/ (FHIR API: ")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // The token is never printed: it is in a file only this account can read (issue 16).
    let said = lines.next().unwrap().unwrap();
    let token_file = dir.join("app-token");
    assert!(
        said.starts_with("API token of the signed-in user in ")
            && said.contains(&token_file.display().to_string()),
        "{said}"
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 32, "a 128-bit token in hex");
    assert!(!said.contains(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let get = |path: &str, auth: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let res = get(
        "/fhir/Patient/p-000001",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.to_lowercase().contains("etag: w/\"1-"), "{res}");
    assert!(get("/fhir/Patient/p-000001", "").starts_with("HTTP/1.1 401"));
    // While the app holds the node, the CLI is told it is in use.
    let err = fail(&hearth(&dir, &["changes"], &format!("{PIN}\n")));
    assert!(err.contains("in use by another Hearth process"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn deidentified_export_leaks_no_identifiers_and_keys_link_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    ok(&hearth(
        &dir,
        &["demo-data", "--patients", "4", "--seed", "5"],
        &pin,
    ));
    // What must not appear: every patient's and proxy's names, MRNs, phones, emails, full dates.
    let mut secrets = Vec::new();
    for n in 0..4 {
        for r in fhir::demo::patient_bundle(n, 5, 2) {
            if r["resourceType"] == "Patient" || r["resourceType"] == "RelatedPerson" {
                for name in r["name"].as_array().unwrap() {
                    secrets.push(name["family"].as_str().unwrap_or("").to_owned());
                    for g in name["given"].as_array().unwrap() {
                        secrets.push(g.as_str().unwrap().to_owned());
                    }
                }
                for t in r["telecom"].as_array().unwrap() {
                    secrets.push(t["value"].as_str().unwrap().to_owned());
                }
            }
            if r["resourceType"] == "Patient" {
                secrets.push(r["identifier"][0]["value"].as_str().unwrap().to_owned());
                secrets.push(r["birthDate"].as_str().unwrap().to_owned());
                secrets.push(r["address"][0]["line"][0].as_str().unwrap().to_owned());
                secrets.push(format!("\"{}\"", r["id"].as_str().unwrap()));
            }
        }
    }
    secrets.retain(|s| s.len() >= 3);
    let key = tmp.path().join("deid.key");
    let run = |out: &str| {
        let folder = tmp.path().join(out);
        let o = ok(&hearth(
            &dir,
            &[
                "export",
                "--deidentify",
                "--out",
                folder.to_str().unwrap(),
                "--deid-key-file",
                key.to_str().unwrap(),
            ],
            &pin,
        ));
        assert!(o.contains("de-identified resources"), "{o}");
        let mut all = String::new();
        let mut names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            all.push_str(&std::fs::read_to_string(p).unwrap());
        }
        all
    };
    let first = run("deid1");
    for s in &secrets {
        assert!(
            !first.contains(s.as_str()),
            "{s} leaked into the de-identified export"
        );
    }
    let line = first.lines().find(|l| l.contains("\"Patient\"")).unwrap();
    assert!(json(line)["id"].as_str().unwrap().len() == 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The same key gives the same pseudonyms.
    assert_eq!(first, run("deid2"));
}

/// Runs a command, failing the test with its output if it fails.
fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cargo's scratch folder for downloaded sample data, shared by the tests that fetch it.
fn sample_cache() -> std::path::PathBuf {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sample-data");
    std::fs::create_dir_all(&cache).unwrap();
    cache
}

/// A virtualenv under the cache with one PyPI package installed; returns its `bin` folder.
fn pip_tool(cache: &Path, venv: &str, package: &str) -> std::path::PathBuf {
    let venv = cache.join(venv);
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run_ok(
        Command::new(venv.join("bin/pip")).args(["install", "-q", package]),
        &format!("pip install {package}"),
    );
    venv.join("bin")
}

/// HL7's official R4 examples (npm `hl7.fhir.r4.examples`, CC0) and carebundle's US Core style
/// Bundles (PyPI `carebundle`): real third-party data. Both are fetched once into Cargo's
/// test scratch folder. Import must take what Hearth stores and report the rest, line by line.
#[test]
fn imports_third_party_sample_data_and_reports_its_defects() {
    let cache = sample_cache();
    let examples = cache.join("package");
    if !examples.join("Patient-example.json").exists() {
        run_ok(
            Command::new("npm")
                .args(["pack", "--silent", "hl7.fhir.r4.examples@4.0.1"])
                .current_dir(&cache),
            "npm pack",
        );
        run_ok(
            Command::new("tar")
                .args(["xzf", "hl7.fhir.r4.examples-4.0.1.tgz"])
                .current_dir(&cache),
            "tar",
        );
    }
    let bundles = cache.join("carebundle");
    if !bundles.join("mixed-7-0004.json").exists() {
        let bin = pip_tool(&cache, "venv", "carebundle==0.5.0");
        run_ok(
            Command::new(bin.join("carebundle"))
                .args([
                    "generate",
                    "--profile",
                    "mixed",
                    "--count",
                    "5",
                    "--seed",
                    "7",
                    "--out",
                ])
                .arg(&bundles),
            "carebundle generate",
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");

    // HL7 examples of the types Hearth stores.
    let stored = fhir::schema::RESOURCES
        .iter()
        .map(|(rt, _)| format!("{rt}-"))
        .collect::<Vec<_>>();
    let mut files: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.ends_with(".json") && stored.iter().any(|s| name.starts_with(s.as_str()))
        })
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    files.sort();
    assert!(files.len() > 150, "{}", files.len());
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let out = hearth(&dir, &args, &pin);
    let summary = ok(&out);
    let err = String::from_utf8(out.stderr).unwrap();
    let counts: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (imported, rejected) = (counts[0], counts[1]);
    assert_eq!(imported + rejected, files.len() as u64, "{summary}");
    assert!(imported >= 150, "{summary}\n{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains(": rejected: ")).count() as u64,
        rejected,
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let p = json(&ok(&hearth(
        &dir,
        &["fhir", "read", "Patient", "example"],
        &pin,
    )));
    assert_eq!(p["name"][0]["family"], "Chalmers");

    // carebundle: transaction Bundles with urn:uuid references, some types Hearth does not store.
    let mut bfiles: Vec<String> = std::fs::read_dir(&bundles)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    bfiles.sort();
    let mut args = vec!["import"];
    args.extend(bfiles.iter().map(String::as_str));
    let first = hearth(&dir, &args, &pin);
    let summary = ok(&first);
    let err = String::from_utf8(first.stderr).unwrap();
    assert!(
        summary.contains("Imported 192 resources; rejected 25."),
        "{summary}\n{err}"
    );
    assert!(
        err.lines()
            .all(|l| l.contains("entry") && l.contains("'DiagnosticReport' is not supported")),
        "{err}"
    );
    // Running it again changes nothing and says so.
    let again = ok(&hearth(&dir, &args, &pin));
    assert!(
        again.contains("Imported 192 resources; rejected 25."),
        "{again}"
    );
}

/// Synthea-style longitudinal patients (PyPI `tietai-synthea`): transaction Bundles of a whole
/// life each. Every resource of a type Hearth stores must arrive; the others are reported.
#[test]
fn imports_synthea_patients() {
    let cache = sample_cache();
    let out_dir = cache.join("synthea");
    if !out_dir.join("fhir").exists() {
        let bin = pip_tool(&cache, "synthea-venv", "tietai-synthea==1.5.0");
        run_ok(
            Command::new(bin.join("synthea"))
                .args(["-p", "3", "-s", "42", "-r", "20261101", "-o"])
                .arg(&out_dir),
            "synthea",
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(out_dir.join("fhir"))
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .filter(|p| p.ends_with(".json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let out = hearth(&dir, &args, &pin);
    let summary = ok(&out);
    let err = String::from_utf8(out.stderr).unwrap();
    let imported: u64 = summary.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(imported > 1000, "{summary}");
    let bad: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("is not supported by Hearth"))
        .collect();
    assert!(
        bad.is_empty(),
        "resources Hearth stores were rejected: {bad:?}"
    );
    let patients = json(&ok(&hearth(
        &dir,
        &["fhir", "search", "Patient", "_count=10"],
        &pin,
    )));
    assert_eq!(patients["entry"].as_array().unwrap().len(), 3);
}

#[test]
fn the_audit_trail_records_logins_reads_and_changes_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    fail(&hearth(&dir, &["changes"], "wrong-pin\n"));
    ok(&hearth(&dir, &["demo-data", "--patients", "2"], &pin));
    ok(&hearth(
        &dir,
        &["fhir", "read", "Patient", "p-000001"],
        &pin,
    ));
    ok(&hearth(
        &dir,
        &["user", "add", "nurse.lee", "--role", "nurse"],
        &format!("{PIN}\nlee-pin-1\n"),
    ));
    let out = ok(&hearth(&dir, &["audit", "verify"], &pin));
    assert!(
        out.starts_with("ok: ") && out.contains("chain intact"),
        "{out}"
    );
    let all = ok(&hearth(&dir, &["audit", "list", "--by", "admin"], &pin));
    for want in [
        "\tlogin\tsuccess",
        "\tlogin_failed\tfailure",
        "\tcreate\tsuccess",
        "\tread\tsuccess",
        "\tuser_change\tsuccess",
    ] {
        assert!(all.contains(want), "{want} missing from:\n{all}");
    }
    assert!(all.contains("1 failed unlock attempt(s) since the last unlock"));
    let p = ok(&hearth(
        &dir,
        &["audit", "report", "--patient", "p-000001"],
        &pin,
    ));
    assert!(
        p.lines().skip(1).all(|l| l.contains("Patient/p-000001")),
        "{p}"
    );
    assert!(
        p.contains("\tread\tsuccess\tPatient/p-000001\tPatient/p-000001"),
        "{p}"
    );
}

#[test]
fn roles_limit_what_each_user_sees_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    ok(&hearth(&dir, &["demo-data", "--patients", "1"], &pin));
    ok(&hearth(
        &dir,
        &["user", "add", "fd.ana", "--role", "front_desk"],
        &format!("{PIN}\nana-pin-1\n"),
    ));
    let as_ana = |args: &[&str]| hearth_as(&dir, "fd.ana", args, "ana-pin-1\n");
    ok(&as_ana(&["fhir", "read", "Patient", "p-000000"]));
    let err = fail(&as_ana(&[
        "fhir",
        "read",
        "Observation",
        "p-000000-obs-0-hr",
    ]));
    assert!(
        err.contains("FHIR error 403") && err.contains("front_desk"),
        "{err}"
    );
    let err = fail(&as_ana(&[
        "roles",
        "grant",
        "front_desk",
        "Observation",
        "read",
    ]));
    assert!(err.contains("403"), "{err}");
    let out = ok(&hearth(
        &dir,
        &["roles", "grant", "front_desk", "Observation", "read"],
        &pin,
    ));
    assert!(
        out.contains("Granted front_desk read on Observation"),
        "{out}"
    );
    ok(&as_ana(&[
        "fhir",
        "read",
        "Observation",
        "p-000000-obs-0-hr",
    ]));
    let shown = ok(&hearth(&dir, &["roles", "show"], &pin));
    assert!(shown.contains("front_desk\tObservation\tread"), "{shown}");
    let err = fail(&hearth(
        &dir,
        &["roles", "grant", "front_desk", "Observation", "fly"],
        &pin,
    ));
    assert!(err.contains("actions are read, search"), "{err}");
    let denied = ok(&hearth(&dir, &["audit", "list", "--by", "fd.ana"], &pin));
    assert!(denied.contains("\tdenied\tdenied"), "{denied}");
    // Break-glass for one chart, flagged in the trail.
    let err = fail(&as_ana(&[
        "fhir",
        "read",
        "MedicationRequest",
        "p-000000-med-0",
    ]));
    assert!(err.contains("403"), "{err}");
    let out = ok(&as_ana(&[
        "break-glass",
        "p-000000",
        "--reason",
        "patient collapsed in the lobby",
    ]));
    assert!(out.contains("may read Patient/p-000000 until"), "{out}");
    ok(&as_ana(&[
        "fhir",
        "read",
        "MedicationRequest",
        "p-000000-med-0",
    ]));
    let flagged = ok(&hearth(&dir, &["audit", "list", "--break-glass"], &pin));
    assert!(
        flagged
            .contains("success (break-glass)\tPatient/p-000000\tMedicationRequest/p-000000-med-0"),
        "{flagged}"
    );
}

fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {c}"),
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn roles_can_require_an_authenticator_code_checked_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    ok(&hearth(
        &dir,
        &["user", "add", "kim", "--role", "clinician"],
        &format!("{PIN}\nkim-pin-1\n"),
    ));
    ok(&hearth(
        &dir,
        &["user", "require-totp", "--role", "clinician"],
        &pin,
    ));
    let as_kim = |stdin: &str| hearth_as(&dir, "kim", &["audit", "verify"], stdin);
    let err = fail(&as_kim("kim-pin-1\n000000\n"));
    assert!(err.contains("enroll you first"), "{err}");
    let out = ok(&hearth(&dir, &["user", "totp", "kim"], &pin));
    let secret = base32_decode(out.lines().nth(1).unwrap());
    assert_eq!(secret.len(), 20);
    assert!(out.contains("otpauth://totp/Hearth:kim?secret="));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = vault::totp::code_at(&secret, now, 6);
    ok(&as_kim(&format!("kim-pin-1\n{code}\n")));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let err = fail(&as_kim(&format!("kim-pin-1\n{wrong}\n")));
    // A right PIN with a wrong code answers as a wrong PIN does (issue 16).
    let wrong_pin = fail(&as_kim(&format!("kim-pin-9\n{code}\n")));
    assert!(err.contains("wrong user or PIN"), "{err}");
    assert_eq!(
        err.lines().next(),
        wrong_pin.lines().next(),
        "a wrong code and a wrong PIN must answer alike"
    );
    // The admin's role does not require a code: unchanged.
    ok(&hearth(&dir, &["changes"], &pin));
}

/// Every file under `dir` (skipping build output, npm packages and hidden folders) whose name
/// ends with one of `exts`.
fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            files_under(&path, exts, out);
        } else if exts.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

/// A newcomer follows links: every relative link in the Markdown (README, CONTRIBUTING, docs/)
/// resolves to a file or folder of the repository, relative to the page; every repository path
/// a code comment names (`docs/…`, `crates/…`, `tests/…`, `fuzz/…`) exists; and nothing points
/// at the architecture page outside the repository.
#[test]
fn every_relative_link_in_docs_and_comments_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap();
    let mut broken = Vec::new();
    let mut pages = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    files_under(&root.join("docs"), &[".md"], &mut pages);
    let mut sources = Vec::new();
    files_under(&root.join("crates"), &[".rs", ".toml"], &mut sources);
    files_under(&root.join("tests"), &[".mjs"], &mut sources);
    sources.push(root.join(".ci/run"));
    let placeholder = |t: &str| {
        ["NNNN", "TARGET", "*", "{", "…", "<", "NN-"]
            .iter()
            .any(|p| t.contains(p))
    };
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        if text.contains("ARCHITECTURE.md") {
            broken.push(format!(
                "{}: names ARCHITECTURE.md (use docs/architecture.md)",
                page.display()
            ));
        }
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap().trim();
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || placeholder(target)
            {
                continue;
            }
            let at = page.parent().unwrap().join(target);
            if !at.exists() {
                broken.push(format!("{}: link to {target}", page.display()));
            }
        }
    }
    for src in &sources {
        let text = std::fs::read_to_string(src).unwrap();
        for line in text.lines() {
            let Some(c) = line.find("//").or_else(|| line.find("# ")) else {
                continue;
            };
            let comment = &line[c..];
            if comment.contains("ARCHITECTURE.md") {
                broken.push(format!("{}: names ARCHITECTURE.md", src.display()));
            }
            for word in comment.split(|ch: char| ch.is_whitespace() || "()`'\",;[]\\".contains(ch))
            {
                let word = word.trim_end_matches(['.', ':']);
                let repo_path = ["docs/", "crates/", "tests/", "fuzz/"]
                    .iter()
                    .any(|p| word.starts_with(p));
                // A path names a file or folder (`docs/s` in "docs/s" is a unit).
                let file_like =
                    word.contains('.') || word.ends_with('/') || word.matches('/').count() > 1;
                if !repo_path || !file_like || placeholder(word) || word.contains("://") {
                    continue;
                }
                // From the repository's root, or from the crate the comment is in.
                let krate = src
                    .ancestors()
                    .find(|a| a.join("Cargo.toml").exists())
                    .unwrap_or(&root);
                if !root.join(word).exists() && !krate.join(word).exists() {
                    broken.push(format!("{}: names {word}", src.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links and paths that lead nowhere:\n{}",
        broken.join("\n")
    );
}

/// Issue 15, item 3 (ADR 27): the raw document commands are administrator tools and the audit
/// trail is for auditors; each refusal, and each document an administrator reads, is audited.
#[test]
fn raw_document_commands_and_the_audit_trail_are_gated_by_role() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let pin = format!("{PIN}\n");
    ok(&hearth(&dir, &["demo-data", "--patients", "1"], &pin));
    for (user, role, upin) in [
        ("fd.ana", "front_desk", "ana-pin-1"),
        ("nurse.bo", "nurse", "bo-pin-22"),
        ("aud.cy", "auditor", "cy-pin-333"),
    ] {
        ok(&hearth(
            &dir,
            &["user", "add", user, "--role", role],
            &format!("{PIN}\n{upin}\n"),
        ));
    }
    let file = tmp.path().join("doc.json");
    std::fs::write(&file, r#"{"_id":"Basic/x","resourceType":"Basic"}"#).unwrap();
    let at_file = format!("@{}", file.display());
    let raw: Vec<Vec<&str>> = vec![
        vec!["doc", "get", "Patient/p-000000"],
        vec!["doc", "put", &at_file],
        vec![
            "doc",
            "delete",
            "Patient/p-000000",
            "--rev",
            "1-00000000000000000000000000000000",
        ],
        vec!["doc", "load", file.to_str().unwrap()],
        vec!["changes", "--include-docs"],
        vec!["db", "list"],
        vec!["db", "delete", "records", "--yes"],
        vec!["sync", "--remote", "local:copy"],
    ];
    for (user, upin) in [
        ("fd.ana", "ana-pin-1\n"),
        ("nurse.bo", "bo-pin-22\n"),
        ("aud.cy", "cy-pin-333\n"),
    ] {
        for args in &raw {
            let err = fail(&hearth_as(&dir, user, args, upin));
            assert!(
                err.contains("is an administrator tool") && err.contains("this needs admin"),
                "{user} {args:?}: {err}"
            );
        }
    }
    for (user, upin) in [("fd.ana", "ana-pin-1\n"), ("nurse.bo", "bo-pin-22\n")] {
        for args in [
            vec!["audit", "list"],
            vec!["audit", "report", "--patient", "p-000000"],
            vec!["audit", "export"],
        ] {
            let err = fail(&hearth_as(&dir, user, &args, upin));
            assert!(
                err.contains("this needs admin or auditor"),
                "{user} {args:?}: {err}"
            );
        }
    }
    // The records are all still there.
    let info = ok(&hearth(&dir, &["db", "info", "records"], &pin));
    assert!(!info.contains("\"doc_count\": 0"), "{info}");
    // The administrator reads a record with the raw tool: one audit entry naming the patient.
    ok(&hearth(&dir, &["doc", "get", "Patient/p-000000"], &pin));
    let trail = ok(&hearth_as(
        &dir,
        "aud.cy",
        &["audit", "list", "--by", "admin"],
        "cy-pin-333\n",
    ));
    assert!(
        trail
            .lines()
            .any(|l| l
                .contains("\tread\tsuccess\tPatient/p-000000\tPatient/p-000000\thearth doc get")),
        "{trail}"
    );
    // Every refusal is in the trail, under the user who tried.
    for user in ["fd.ana", "nurse.bo", "aud.cy"] {
        let theirs = ok(&hearth_as(
            &dir,
            "aud.cy",
            &["audit", "list", "--by", user],
            "cy-pin-333\n",
        ));
        let denied = theirs
            .lines()
            .filter(|l| l.contains("\tdenied\tdenied"))
            .count();
        assert!(denied >= raw.len(), "{user}: {theirs}");
    }
}

/// Issue 16: a plain-HTTP remote on another machine would carry records and the password in
/// clear; it is refused before anything is asked or sent, unless the user says otherwise.
#[test]
fn plain_http_to_another_machine_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let err = fail(&hearth(
        &dir,
        &[
            "sync",
            "--remote",
            "http://192.0.2.10:5984/records",
            "--remote-user",
            "sync",
        ],
        &format!("{PIN}\nsecret-password\n"),
    ));
    assert!(
        err.contains("plain HTTP to another machine") && err.contains("--insecure-plain-http"),
        "{err}"
    );
    assert!(!err.contains("secret-password"));
    // The way out is documented where users look.
    let help = ok(&hearth(&dir, &["sync", "--help"], ""));
    assert!(help.contains("--insecure-plain-http"), "{help}");
}

/// An unlocked process never writes its memory (data key, PIN, records) to a core file: the
/// running app has a core-file limit of 0 that it cannot raise (issue 16).
#[cfg(target_os = "linux")]
#[test]
fn a_running_process_cannot_dump_core() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    init(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["app", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _url = common::url_from(&mut child);
    let pid = child.id();
    let child = common::Running(child);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    drop(child);
}
