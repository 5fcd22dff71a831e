//! Convergence with merge policies: replicas (encrypted nodes with sessions) edit different
//! fields of the same patients, delete, and replicate between random pairs; some run the
//! automatic resolution in between. After rounds of full sync and resolution everywhere, all
//! replicas hold identical documents, every acknowledged revision is still in every tree (a
//! winner, a kept conflict, or an ancestor of a resolution), and concurrent edits of different
//! fields have been merged: no conflict is left that a field merge could resolve.
//!
//! `HEARTH_CONVERGENCE_CASES` sets the number of cases (CI: 24 / 3 here).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use replicate::{Endpoint, LocalDb, Replication};
use serde_json::{Value, json};
use store::{DocId, OpenRev, OpenRevs, Store};

const DB: &str = "records";
const PIN: &str = "pin-135790";

#[derive(Clone, Debug)]
enum Op {
    /// Replica sets its own field on a patient (creating it if needed).
    Edit {
        replica: usize,
        doc: u8,
    },
    Delete {
        replica: usize,
        doc: u8,
    },
    Sync {
        from: usize,
        to: usize,
    },
    Resolve {
        replica: usize,
    },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..n, 0..3u8).prop_map(|(replica, doc)| Op::Edit { replica, doc }),
        1 => (0..n, 0..3u8).prop_map(|(replica, doc)| Op::Delete { replica, doc }),
        3 => (0..n, 0..n).prop_map(|(from, to)| Op::Sync { from, to }),
        1 => (0..n).prop_map(|replica| Op::Resolve { replica }),
    ]
}

struct Node {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    records: records::Records,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let kdf = vault::KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    let opts = store::InitOptions {
        kdf,
        policy: vault::PinPolicy::default(),
    };
    store::DataDir::init(dir.path(), "admin", &vault::Pin::from(PIN), &opts).unwrap();
    let mut n = store::DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &vault::Pin::from(PIN))
        .unwrap();
    let session = n.login("admin", &vault::Pin::from(PIN), None).unwrap();
    let store = n.replica().clone();
    let records = records::Records::new(store.clone(), DB, &session).unwrap();
    Node {
        _dir: dir,
        store,
        records,
    }
}

fn endpoint(s: &Arc<Store>) -> Endpoint {
    Endpoint::Local(LocalDb {
        store: s.clone(),
        db: DB.into(),
        actor: store::Session::relay(),
    })
}

/// A document: id, winner, leaves (revision, deleted, body).
type Doc = (String, String, Vec<(String, bool, Value)>);

fn snapshot(s: &Store) -> Vec<Doc> {
    let mut out = Vec::new();
    for c in s
        .changes(DB, &store::ChangesQuery::default())
        .unwrap()
        .results
    {
        let mut leaves: Vec<(String, bool, Value)> = s
            .open_revs(DB, &c.id, &OpenRevs::All, false, false)
            .unwrap()
            .into_iter()
            .filter_map(|o| match o {
                OpenRev::Ok(d) => Some((d.rev.to_string(), d.deleted, Value::Object(d.body))),
                OpenRev::Missing(_) => None,
            })
            .collect();
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((c.id.as_str().to_owned(), c.changes[0].to_string(), leaves));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn run(n: usize, ops: &[Op]) -> Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes: Vec<Node> = (0..n).map(|_| node()).collect();
    let sync = |from: usize, to: usize| {
        if from != to {
            rt.block_on(
                Replication::new(endpoint(&nodes[from].store), endpoint(&nodes[to].store))
                    .run_once(|_| {}),
            )
            .unwrap();
        }
    };
    let resolve = |i: usize| {
        let r = &nodes[i].records;
        let ids = r.conflicted(0).unwrap();
        r.auto_resolve(&ids).unwrap();
    };
    let mut acked: BTreeSet<(String, String)> = BTreeSet::new();
    let mut counter = 0u64;
    for op in ops {
        match *op {
            Op::Edit { replica, doc } => {
                counter += 1;
                let r = &nodes[replica].records;
                let id = format!("p{doc}");
                let mut p = match r.read("Patient", &id) {
                    Ok(s) => s.resource,
                    Err(_) => json!({"resourceType": "Patient", "id": id}),
                };
                p["name"] = json!([{"family": "Fam"}]);
                // Each replica owns one element, so concurrent edits touch different fields.
                let field = ["birthDate", "gender", "active", "telecom", "address"][replica % 5];
                p[field] = match field {
                    "birthDate" => json!(format!("19{:02}-01-01", counter % 100)),
                    "gender" => {
                        json!(["male", "female", "other", "unknown"][(counter % 4) as usize])
                    }
                    "active" => json!(counter.is_multiple_of(2)),
                    "telecom" => json!([{"system": "phone", "value": format!("555-{counter:04}")}]),
                    _ => json!([{"city": format!("C{counter}")}]),
                };
                let stored = match r.update("Patient", &id, p, None) {
                    Ok(s) => s,
                    Err(e) => panic!("edit failed: {e:?}"),
                };
                acked.insert((format!("Patient/{id}"), stored.version));
            }
            Op::Delete { replica, doc } => {
                let r = &nodes[replica].records;
                let id = format!("p{doc}");
                if r.read("Patient", &id).is_ok() {
                    r.delete("Patient", &id).unwrap();
                }
            }
            Op::Sync { from, to } => sync(from, to),
            Op::Resolve { replica } => resolve(replica),
        }
    }
    // Rounds of full sync and resolution everywhere, then a last full sync.
    for _ in 0..3 {
        for i in 1..n {
            sync(i, 0);
        }
        for i in 1..n {
            sync(0, i);
        }
        for i in 0..n {
            resolve(i);
        }
    }
    for i in 1..n {
        sync(i, 0);
    }
    for i in 1..n {
        sync(0, i);
    }
    let first = snapshot(&nodes[0].store);
    for (i, node) in nodes.iter().enumerate().skip(1) {
        assert_eq!(snapshot(&node.store), first, "replica {i} differs");
    }
    for (doc, rev) in &acked {
        let tree = nodes[0]
            .store
            .rev_tree(DB, &DocId::parse(doc).unwrap())
            .unwrap();
        assert!(
            tree.contains(&rev.parse().unwrap()),
            "{doc} {rev} was acknowledged and is gone"
        );
    }
    // Nothing a field merge could resolve is left: remaining conflicts name a clash.
    for id in nodes[0].records.conflicted(0).unwrap() {
        let res = nodes[0]
            .records
            .auto_resolve(std::slice::from_ref(&id))
            .unwrap();
        assert!(
            res.iter()
                .all(|r| r.rev.is_none() && r.unresolved.is_some()),
            "{id:?} was resolvable: {res:?}"
        );
    }
    nodes[0]
        .records
        .read("Patient", "p0")
        .map(|s| s.resource)
        .unwrap_or(Value::Null)
}

fn cases() -> u32 {
    std::env::var("HEARTH_CONVERGENCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
        / 8
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases().max(3), ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_with_merge_policies((n, ops) in (2usize..=4).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..30)))) {
        let _ = run(n, &ops);
    }
}

/// Three replicas edit different fields of one patient offline; after syncs and resolution the
/// one remaining version carries all three edits.
#[test]
fn three_offline_edits_of_different_fields_all_survive() {
    use Op::*;
    let ops = [
        Edit { replica: 0, doc: 0 },
        Sync { from: 0, to: 1 },
        Sync { from: 0, to: 2 },
        Edit { replica: 0, doc: 0 },
        Edit { replica: 1, doc: 0 },
        Edit { replica: 2, doc: 0 },
        Sync { from: 1, to: 2 },
        Resolve { replica: 2 },
    ];
    let p = run(3, &ops);
    assert!(
        p.get("birthDate").is_some() && p.get("gender").is_some() && p.get("active").is_some(),
        "{p}"
    );
}
