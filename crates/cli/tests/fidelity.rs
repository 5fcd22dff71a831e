//! Records are kept exactly as written (issue 17, ADR 25): 10,000 random documents, half written
//! by real PouchDB and half with numbers JavaScript cannot hold (decimals with trailing zeros,
//! big integers, 17-digit and subnormal doubles in exponent form), pass through a hub, a device
//! syncing over the RPC channel, a device syncing over the CouchDB API, back through the hub to
//! PouchDB, and a backup and restore, and compare byte for byte at every stop.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

use crate::common::hub::{
    ADMIN_PW, NURSE_PW, PIN, add_nurse, admin_url, device, hearth, init_hub, start_hub,
};
use crate::common::{interop_dir, ok};

/// Documents PouchDB writes, and documents written over HTTP with numbers it cannot hold.
const POUCH_DOCS: usize = 5_000;
const RICH_DOCS: usize = 5_000;
/// Written on a device afterwards and pushed over the RPC channel.
const DEVICE_DOCS: usize = 1_000;
/// FHIR Observations with such numbers, for the FHIR export.
const FHIR_DOCS: usize = 300;
/// The random documents are not FHIR records, so they live in a database of their own: the
/// hub validates what enters its clinical database, `records` (ADR 28).
const DB: &str = "fidelity";

/// xorshift64: the same documents for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `e5` → `e+5`: the exponent form serde_json writes (ADR 25), which JavaScript writes too.
fn signed_exponent(s: String) -> String {
    match s.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => s,
    }
}

fn number(r: &mut Rng) -> String {
    match r.below(9) {
        // Decimals with trailing zeros, as FHIR writes precision.
        0 => format!(
            "{}.{:0w$}",
            r.below(1000),
            r.below(10),
            w = 1 + r.below(5) as usize
        ),
        1 => format!("0.{:03}0", r.below(1000)),
        // Integers beyond 64 bits.
        2 => {
            let digits: String = (0..20 + r.below(20))
                .map(|i| char::from(b'0' + (r.below(9) + u64::from(i == 0)) as u8))
                .collect();
            if r.below(2) == 0 {
                format!("-{digits}")
            } else {
                digits
            }
        }
        // Subnormal doubles, shortest form.
        3 => signed_exponent(format!("{:e}", f64::from_bits(1 + r.below(1 << 52)))),
        // 17 significant digits.
        4 => signed_exponent(format!("{:.16e}", f64::from_bits(r.next() >> 2))),
        // A written mantissa with trailing zeros and an exponent.
        5 => format!("1.000000000000000000e-{}", 200 + r.below(100)),
        6 => "-0".to_owned(),
        7 => format!("{}", f64::from_bits(r.next() >> 2)).replace("inf", "1"),
        _ => r.below(1000).to_string(),
    }
}

const WORDS: &[&str] = &[
    "blood pressure",
    "Ünïcödé",
    "日本語",
    "🩺 and 💊",
    "tab\there",
    "quote \" and \\",
    "control \u{1}",
    "e\u{301}",
    "\u{2028}",
    "",
];
const KEYS: &[&str] = &[
    "zeta", "alpha", "Mid", "ключ", "9", "10", "value", "é", "_x", "a b",
];

fn value(r: &mut Rng, depth: u32, out: &mut String) {
    match r.below(if depth > 6 { 4 } else { 7 }) {
        0 | 1 => out.push_str(&number(r)),
        2 => out
            .push_str(&serde_json::to_string(WORDS[r.below(WORDS.len() as u64) as usize]).unwrap()),
        3 => out.push_str(["true", "false", "null"][r.below(3) as usize]),
        4 => {
            out.push('[');
            for i in 0..r.below(4) {
                if i > 0 {
                    out.push(',');
                }
                value(r, depth + 1, out);
            }
            out.push(']');
        }
        _ => object(r, depth + 1, out),
    }
}

fn object(r: &mut Rng, depth: u32, out: &mut String) {
    out.push('{');
    let mut used = Vec::new();
    for _ in 0..1 + r.below(5) {
        let k = KEYS[r.below(KEYS.len() as u64) as usize];
        if used.contains(&k) {
            continue;
        }
        if !used.is_empty() {
            out.push(',');
        }
        used.push(k);
        out.push_str(&serde_json::to_string(k).unwrap());
        out.push(':');
        value(r, depth, out);
    }
    out.push('}');
}

/// A document as JSON text, `_id` first, members in an arbitrary order.
fn rich_doc(r: &mut Rng, id: &str) -> String {
    let mut body = String::new();
    object(r, 1, &mut body);
    let short = id.trim_start_matches("Observation/");
    let mut doc = format!(
        r#"{{"_id":"{id}","resourceType":"Observation","id":"{short}","valueQuantity":{{"value":{},"unit":"mmol/L"}}"#,
        number(r)
    );
    if r.below(10) == 0 {
        let mut deep = format!(r#"{{"leaf":{}}}"#, number(r));
        for _ in 0..40 {
            deep = format!(r#"{{"n":[{deep}]}}"#);
        }
        doc.push_str(&format!(r#","deep":{deep}"#));
    }
    // The random members, after the fixed ones (the top level takes no underscore names).
    let inner = body[1..body.len() - 1].replace("\"_x\":", "\"x_\":");
    if !inner.is_empty() {
        doc.push(',');
        doc.push_str(&inner);
    }
    doc.push('}');
    doc
}

/// One HTTP/1.0 request to a loopback address; status and body.
fn http(base: &str, method: &str, path: &str, auth: &str, body: &str) -> (u16, Vec<u8>) {
    let host = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

/// A document's JSON without `_rev`, re-serialized: byte-identical to its text whenever the
/// build keeps members in order and numbers as written.
fn without_rev(mut doc: Value) -> String {
    doc.as_object_mut().unwrap().shift_remove("_rev");
    serde_json::to_string(&doc).unwrap()
}

/// Every document a device holds, by id, from `hearth changes --include-docs`.
fn device_docs(dir: &Path) -> BTreeMap<String, String> {
    let out = ok(&hearth(
        dir,
        &["--user", "nurse1", "changes", "--db", DB, "--include-docs"],
        &format!("{PIN}\n"),
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["id"].as_str().unwrap().to_owned(),
                without_rev(row["doc"].clone()),
            )
        })
        .collect()
}

/// Every document the hub holds, by id, from `_all_docs?include_docs=true`.
fn hub_docs(couch: &str, auth: &str) -> BTreeMap<String, String> {
    let (status, body) = http(
        couch,
        "GET",
        &format!("/{DB}/_all_docs?include_docs=true"),
        auth,
        "",
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["id"].as_str().unwrap().to_owned(),
                without_rev(row["doc"].clone()),
            )
        })
        .collect()
}

/// `hearth sync` of the fidelity database with `remote`, over the CouchDB API.
fn sync_http(dir: &Path, remote: &str) -> std::process::Output {
    hearth(
        dir,
        &[
            "--user",
            "nurse1",
            "sync",
            "--db",
            DB,
            "--remote",
            remote,
            "--remote-user",
            "nurse@clinic",
        ],
        &format!("{PIN}\n{NURSE_PW}\n"),
    )
}

/// `hearth sync --hub` of the fidelity database, over the RPC channel.
fn sync_rpc(dir: &Path) -> std::process::Output {
    hearth(
        dir,
        &[
            "--user",
            "nurse1",
            "sync",
            "--db",
            DB,
            "--hub",
            "--remote-user",
            "nurse@clinic",
        ],
        &format!("{PIN}\n{NURSE_PW}\n"),
    )
}

fn node(args: &[&str]) -> String {
    let out = Command::new("node")
        .arg("fidelity.mjs")
        .args(args)
        .current_dir(interop_dir())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "fidelity.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn by_id(lines: &str) -> BTreeMap<String, String> {
    lines
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap().to_owned(), l.to_owned())
        })
        .collect()
}

/// Every expected document is there, byte for byte; names the first difference.
fn same(stop: &str, expected: &BTreeMap<String, String>, got: &BTreeMap<String, String>) {
    for (id, want) in expected {
        let have = got
            .get(id)
            .unwrap_or_else(|| panic!("{stop}: {id} is missing"));
        assert!(
            have == want,
            "{stop}: {id} changed\n  wrote {want}\n  found {have}"
        );
    }
}

#[test]
fn ten_thousand_documents_come_back_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    init_hub(&hub_dir);
    add_nurse(&hub_dir);
    let (_hub, urls) = start_hub(
        &hub_dir,
        &["--couch-listen", "127.0.0.1:0", "--couch-tls-listen", ""],
    );
    let admin = admin_url(&urls);
    let couch = urls["CouchDB API"].clone();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("nurse@clinic:{NURSE_PW}"));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    device(&a, &admin, &hub_dir, "device-a");
    device(&b, &admin, &hub_dir, "device-b");

    // 1. Real PouchDB writes half, over the CouchDB API.
    let admin_auth =
        base64::engine::general_purpose::STANDARD.encode(format!("admin@clinic:{ADMIN_PW}"));
    let (status, _) = http(&couch, "PUT", &format!("/{DB}"), &admin_auth, "");
    assert_eq!(status, 201);
    let remote = format!("{couch}/{DB}");
    let pouch = by_id(&node(&[
        "push",
        &remote,
        "nurse@clinic",
        NURSE_PW,
        &POUCH_DOCS.to_string(),
        "17",
    ]));
    assert_eq!(pouch.len(), POUCH_DOCS);

    // 2. The other half over HTTP with numbers JavaScript would round.
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rich = BTreeMap::new();
    for i in 0..RICH_DOCS {
        let id = format!("Observation/fid-r-{i:05}");
        let text = rich_doc(&mut r, &id);
        // The generator writes what the hub keeps: text that parses and prints back unchanged.
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), text, "generator");
        rich.insert(id, text);
    }
    let texts: Vec<&String> = rich.values().collect();
    for chunk in texts.chunks(1000) {
        let body = format!(
            r#"{{"docs":[{}]}}"#,
            chunk
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let (status, answer) = http(&couch, "POST", &format!("/{DB}/_bulk_docs"), &auth, &body);
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
        assert!(!String::from_utf8_lossy(&answer).contains("error"));
    }
    let mut all = pouch.clone();
    all.extend(rich.clone());
    same("hub", &all, &hub_docs(&couch, &auth));

    // 3. Device A pulls over the RPC channel, device B over the CouchDB API.
    let out = ok(&sync_rpc(&a));
    assert!(
        out.contains(" 0 failed") || !out.contains("failed"),
        "{out}"
    );
    same("device A (RPC)", &all, &device_docs(&a));
    ok(&sync_http(&b, &remote));
    same("device B (CouchDB API)", &all, &device_docs(&b));

    // 4. Device A writes more and pushes them over RPC; device B pulls them over HTTP.
    let mut written = BTreeMap::new();
    let mut ndjson = String::new();
    for i in 0..DEVICE_DOCS {
        let id = format!("Observation/fid-d-{i:05}");
        let text = rich_doc(&mut r, &id);
        ndjson.push_str(&text);
        ndjson.push('\n');
        written.insert(id, text);
    }
    let file = tmp.path().join("device-docs.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    ok(&hearth(
        &a,
        &[
            "--user",
            "nurse1",
            "doc",
            "load",
            "--db",
            DB,
            file.to_str().unwrap(),
        ],
        &format!("{PIN}\n"),
    ));
    same("device A (written)", &written, &device_docs(&a));
    ok(&sync_rpc(&a));
    ok(&sync_http(&b, &remote));
    all.extend(written.clone());
    same(
        "hub after the device's push",
        &all,
        &hub_docs(&couch, &auth),
    );
    same("device B after the device's push", &all, &device_docs(&b));

    // 5. PouchDB pulls everything back: its own documents are as it wrote them.
    let back = by_id(&node(&["pull", &remote, "nurse@clinic", NURSE_PW]));
    assert_eq!(back.len(), all.len());
    same("PouchDB pulling back", &pouch, &back);

    // FHIR Observations with the same kinds of numbers, in device B's records, for the export.
    let mut fhir_docs = BTreeMap::new();
    let mut ndjson = String::new();
    for i in 0..FHIR_DOCS {
        let id = format!("fx-{i:05}");
        let text = format!(
            r#"{{"_id":"Observation/{id}","resourceType":"Observation","id":"{id}","status":"final","code":{{"text":"lab"}},"valueQuantity":{{"value":{},"unit":"mg"}},"component":[{{"code":{{"text":"a"}},"valueQuantity":{{"value":{}}}}},{{"code":{{"text":"b"}},"valueQuantity":{{"value":{}}}}}]}}"#,
            number(&mut r),
            number(&mut r),
            number(&mut r)
        );
        ndjson.push_str(&text);
        ndjson.push('\n');
        fhir_docs.insert(format!("Observation/{id}"), text);
    }
    let file = tmp.path().join("fhir.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    ok(&hearth(
        &b,
        &["--user", "nurse1", "doc", "load", file.to_str().unwrap()],
        &format!("{PIN}\n"),
    ));

    // 6. A backup of device B, restored into a new folder.
    let key = tmp.path().join("backup-key.json");
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
        "a long backup passphrase\n",
    ));
    let public = out.lines().last().unwrap().to_owned();
    let drive = tmp.path().join("drive");
    ok(&hearth(
        &b,
        &[
            "--user",
            "nurse1",
            "backup",
            "create",
            "--to",
            drive.to_str().unwrap(),
            "--key",
            &public,
        ],
        &format!("{PIN}\n"),
    ));
    let bk = std::fs::read_dir(&drive)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let restored = tmp.path().join("restored");
    ok(&hearth(
        &restored,
        &[
            "--user",
            "nurse1",
            "restore",
            bk.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ],
        &format!("{PIN}\na long backup passphrase\n"),
    ));
    // 7. The FHIR export of the restored device: every resource as written (with the
    //    `meta.versionId` Hearth adds, and without the CouchDB `_id`).
    let export = tmp.path().join("export");
    ok(&hearth(
        &restored,
        &[
            "--user",
            "nurse1",
            "export",
            "--out",
            export.to_str().unwrap(),
        ],
        &format!("{PIN}\n"),
    ));
    let exported: BTreeMap<String, String> =
        std::fs::read_to_string(export.join("Observation.ndjson"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                assert!(o["meta"]["versionId"].is_string(), "{l}");
                o.shift_remove("meta");
                (
                    format!("Observation/{}", o["id"].as_str().unwrap()),
                    serde_json::to_string(&v).unwrap(),
                )
            })
            .collect();
    let as_resources: BTreeMap<String, String> = fhir_docs
        .iter()
        .map(|(id, text)| {
            let mut v: Value = serde_json::from_str(text).unwrap();
            v.as_object_mut().unwrap().shift_remove("_id");
            (id.clone(), serde_json::to_string(&v).unwrap())
        })
        .collect();
    assert_eq!(exported.len(), fhir_docs.len());
    same("FHIR export", &as_resources, &exported);
    same(
        "device B restored from its backup",
        &all,
        &device_docs(&restored),
    );
}
