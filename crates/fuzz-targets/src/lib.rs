//! The fuzz targets: each takes arbitrary bytes and drives one parser that takes outside input,
//! the way the server or CLI does. A target must return (any `Err` is fine) and never panic,
//! hang or allocate without bound. `fuzz/` runs them under libFuzzer (`cargo fuzz run NAME`);
//! `tests/regressions.rs` replays the corpus and every crasher found so far on stable Rust.

use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Value, json};

/// A fuzz target: any bytes in, nothing out; it must not panic.
pub type Target = fn(&[u8]);

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: &[(&str, Target)] = &[
    ("couch_document", couch_document),
    ("revisions", revisions),
    ("changes_params", changes_params),
    ("mango_selector", mango_selector),
    ("fhir_resource", fhir_resource),
    ("fhir_search", fhir_search),
    ("rpc_envelope", rpc_envelope),
    ("rpc_handshake", rpc_handshake),
    ("pairing_offer", pairing_offer),
    ("ndjson_import", ndjson_import),
    ("backup_manifest", backup_manifest),
];

fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

/// A CouchDB document as `PUT /{db}/{id}` and `_bulk_docs` take it: id rules, `_rev`,
/// `_revisions`, `_deleted`, `_attachments` stubs and inline data.
pub fn couch_document(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let path_id = v.get("_id").and_then(Value::as_str).map(str::to_owned);
    if let Ok(w) = store::DocWrite::from_json(v.clone(), None) {
        let _ = w.revisions.as_ref().map(|r| r.to_path());
    }
    let _ = store::DocWrite::from_json(v, path_id.as_deref().or(Some("x")));
}

/// Revision ids, `_revisions` objects and `open_revs` lists, merged into a revision tree.
pub fn revisions(data: &[u8]) {
    let s = text(data);
    let mut tree = revtree::RevTree::new();
    let revs: Vec<revtree::Rev> = s
        .split_whitespace()
        .filter_map(|r| r.parse().ok())
        .collect();
    if !revs.is_empty() {
        let _ = tree.merge_path(&revs, false);
    }
    if let Some(v) = json(data) {
        if let Ok(r) = serde_json::from_value::<revtree::Revisions>(v.clone())
            && let Ok(path) = r.to_path()
        {
            let _ = tree.merge_path(&path, true);
        }
        let p = hub::params::Params(vec![("open_revs".into(), v.to_string())]);
        if let Ok(Some(list)) = p.json::<Vec<String>>("open_revs") {
            for r in list {
                let _ = r.parse::<revtree::Rev>();
            }
        }
    }
    let _ = tree.winner();
    let _ = tree.conflicts();
    let _ = revtree::RevTree::decode(data);
}

/// A `_changes` / `_all_docs` query string.
pub fn changes_params(data: &[u8]) {
    let pairs: Vec<(String, String)> = text(data)
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    let p = hub::params::Params(pairs);
    let _ = hub::params::since_param(p.get("since"), 1_000);
    let _ = p.u64("limit");
    let _ = p.u64("heartbeat");
    let _ = p.bool("include_docs", false);
    let _ = p.bool("descending", false);
    let _ = p.json::<Value>("doc_ids");
    let _ = p.key(&["key", "startkey", "start_key"]);
    let _ = p.key(&["endkey", "end_key"]);
    if let Some(v) = json(data) {
        let _ = hub::params::parse_since(&v, 1_000);
    }
}

/// A Mango selector (`_find`, `_changes?filter=_selector`), matched against documents.
pub fn mango_selector(data: &[u8]) {
    let Some(v) = json(data) else { return };
    if let Ok(sel) = hub::selector::Selector::parse(&v) {
        let doc = json!({"_id": "a", "n": 3, "name": "Ada", "tags": ["x", "y"], "o": {"p": null}});
        let _ = sel.matches(&doc);
        let _ = sel.matches(&v);
    }
    let _ = hub::selector::collate(&v, &json!({"a": [1, "b", null]}));
}

/// A FHIR resource: validation, typed models, search terms, de-identification.
pub fn fhir_resource(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let report = fhir::validate(&v);
    let _ = fhir::models::parse(&v);
    if report.issues.is_empty() {
        let mut red = fhir::deid::Redactions::default();
        red.learn(&v);
        let d = fhir::deid::Deidentifier::new(b"fuzz", red, 2026);
        let _ = d.apply(&v);
    }
}

/// FHIR search parameters of any type (`GET /fhir/{type}?…`).
pub fn fhir_search(data: &[u8]) {
    let s = text(data);
    let (rt, query) = s.split_once('?').unwrap_or(("Patient", s));
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    let _ = records::parse_search(rt, &pairs);
}

struct Session {
    keys: vault::channel::SessionKeys,
    hub: vault::channel::StaticKey,
    device_public: [u8; 32],
}

/// One real handshake between fixed keys, done once: envelopes are opened with its keys.
fn session() -> &'static Session {
    static S: OnceLock<Session> = OnceLock::new();
    S.get_or_init(|| {
        use vault::channel::{Initiator, StaticKey, accept};
        let hub = StaticKey::from_bytes(&[7u8; 32]).expect("a fixed key");
        let device = StaticKey::from_bytes(&[9u8; 32]).expect("a fixed key");
        let (init, hello) = Initiator::start(
            "fuzz-device",
            &device,
            hub.public(),
            1_000,
            "fuzz-challenge",
        )
        .expect("a handshake starts");
        let (_, welcome) =
            accept(&hub, device.public(), &hello, "s1", 5_000, 1_000).expect("the hub accepts");
        let keys = init.finish(&welcome, &device).expect("the device finishes");
        Session {
            keys,
            hub,
            device_public: device.public(),
        }
    })
}

/// An RPC envelope as the hub receives it on `/rpc/query` and `/rpc/command`.
pub fn rpc_envelope(data: &[u8]) {
    let s = session();
    let env = match serde_json::from_slice::<vault::channel::Envelope>(data) {
        Ok(e) => e,
        // Raw bytes as ciphertext of the live session, to reach the AEAD.
        Err(_) => vault::channel::Envelope {
            session: s.keys.session.clone(),
            counter: data.len() as u64,
            data: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data),
        },
    };
    for route in [vault::channel::Route::Query, vault::channel::Route::Command] {
        if s.keys.open_request(route, &env).is_ok() {
            panic!("a forged envelope opened");
        }
    }
    let _ = vault::channel::Route::for_call("GET", text(data));
}

/// A handshake hello as `/rpc/handshake` receives it.
pub fn rpc_handshake(data: &[u8]) {
    let Ok(hello) = serde_json::from_slice::<vault::channel::Hello>(data) else {
        return;
    };
    let s = session();
    let now = hello.time;
    if vault::channel::accept(&s.hub, s.device_public, &hello, "s2", now + 60, now).is_ok() {
        panic!("a forged hello was accepted");
    }
}

/// A pairing offer (`hearth pair OFFER`, the QR code).
pub fn pairing_offer(data: &[u8]) {
    if let Ok(o) = vault::pairing::Offer::parse(text(data)) {
        let _ = o.hub_key();
        let _ = vault::pairing::Offer::parse(&o.encode());
    }
}

/// An NDJSON import file: a resource or a Bundle per line.
pub fn ndjson_import(data: &[u8]) {
    for line in text(data).lines().take(64) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v.get("resourceType") == Some(&json!("Bundle")) {
            if let Ok(list) = records::resources_of_bundle(&v) {
                for (_, r) in list {
                    let _ = fhir::validate(&r);
                }
            }
        } else {
            let _ = fhir::validate(&v);
        }
    }
}

/// A backup's `manifest.json` and backup key text.
pub fn backup_manifest(data: &[u8]) {
    let _ = serde_json::from_slice::<store::backup::Manifest>(data);
    let _ = vault::backup::parse_public(text(data));
    let _ = serde_json::from_slice::<vault::backup::BackupKeyFile>(data);
}
