//! The replicator between real endpoints: encrypted stores on disk and a hub serving HTTP on
//! 127.0.0.1. Conflicts, deletions and attachments arrive intact; an interrupted replication
//! resumes from its checkpoint without re-sending; a re-sync with nothing new moves nothing.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use replicate::{Endpoint, HttpDb, LocalDb, Replication};
use serde_json::{Value, json};
use store::{DocId, DocWrite, GetOptions, OpenRev, OpenRevs, Store};

fn actor() -> store::Session {
    store::Session::relay()
}

fn node(dir: &tempfile::TempDir, name: &str) -> Arc<Store> {
    let s = Arc::new(
        Store::open(
            &dir.path().join(format!("{name}.db")),
            &vault::Dek::generate().unwrap(),
        )
        .unwrap(),
    );
    // Replication mechanics with bodies that are not all valid FHIR: a database of its own,
    // since the hub validates its clinical database, `records` (ADR 28).
    s.ensure_db("clinic").unwrap();
    s
}

fn local(store: &Arc<Store>) -> Endpoint {
    Endpoint::Local(LocalDb {
        store: store.clone(),
        db: "clinic".into(),
        actor: actor(),
    })
}

async fn hub(dir: &tempfile::TempDir) -> (String, Arc<Store>) {
    let store = node(dir, "hub");
    let hub = Arc::new(hub::Hub::new(store.clone()).unwrap());
    hub.set_account("sync", "sync-password", true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hub::serve(
        listener,
        hub::router(hub, 64 << 20),
        std::future::pending(),
    ));
    (format!("http://{addr}/clinic"), store)
}

fn remote(url: &str) -> Endpoint {
    Endpoint::Http(HttpDb::new(url, Some("sync"), Some("sync-password")).unwrap())
}

fn put(store: &Store, id: &str, rev: Option<&str>, body: Value) -> String {
    let w = DocWrite::from_json(body, Some(id)).unwrap();
    let w = DocWrite {
        rev: rev.map(|r| r.parse().unwrap()),
        ..w
    };
    store.put("clinic", w).unwrap().to_string()
}

/// Every document's leaves with their bodies, and its winner: what must agree everywhere.
fn snapshot(store: &Store) -> BTreeMap<String, (String, Vec<Value>)> {
    let mut out = BTreeMap::new();
    let changes = store
        .changes("clinic", &store::ChangesQuery::default())
        .unwrap();
    for c in changes.results {
        let leaves = store
            .open_revs("clinic", &c.id, &OpenRevs::All, false, false)
            .unwrap();
        let mut bodies: Vec<Value> = leaves
            .into_iter()
            .map(|l| match l {
                OpenRev::Ok(d) => {
                    let mut v = replicate::doc_with_attachments(store, "clinic", &d).unwrap();
                    if let Some(atts) = v.get_mut("_attachments").and_then(Value::as_object_mut) {
                        for a in atts.values_mut() {
                            a.as_object_mut().unwrap().remove("revpos");
                        }
                    }
                    v
                }
                OpenRev::Missing(r) => json!({"missing": r.to_string()}),
            })
            .collect();
        bodies.sort_by_key(|b| b["_rev"].as_str().unwrap_or("").to_owned());
        out.insert(c.id.as_str().to_owned(), (c.changes[0].to_string(), bodies));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_through_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let (url, hub_store) = hub(&dir).await;
    let (a, b) = (node(&dir, "a"), node(&dir, "b"));
    // Device A: patients, a consent with a signature attachment, a deleted document.
    let p1 = put(
        &a,
        "Patient/p1",
        None,
        json!({"resourceType": "Patient", "name": "A"}),
    );
    put(&a, "Patient/p2", None, json!({"resourceType": "Patient"}));
    let gone = put(&a, "Task/t1", None, json!({"resourceType": "Task"}));
    a.put(
        "clinic",
        DocWrite::deletion(DocId::parse("Task/t1").unwrap(), gone.parse().unwrap()),
    )
    .unwrap();
    let sig = DocWrite::from_json(
        json!({"_id": "Consent/c1", "resourceType": "Consent",
               "_attachments": {"sig.png": {"content_type": "image/png", "data": "iVBORw0KGgo="}}}),
        None,
    )
    .unwrap();
    a.put("clinic", sig).unwrap();

    let push = Replication::new(local(&a), remote(&url))
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!(push.docs_written, 4);
    let pull = Replication::new(remote(&url), local(&b))
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!(pull.docs_written, 4);

    // Concurrent edits of the same patient on both devices: a conflict.
    put(
        &a,
        "Patient/p1",
        Some(&p1),
        json!({"resourceType": "Patient", "name": "A-edited-on-a"}),
    );
    put(
        &b,
        "Patient/p1",
        Some(&p1),
        json!({"resourceType": "Patient", "name": "A-edited-on-b"}),
    );
    put(
        &b,
        "Observation/o1",
        None,
        json!({"resourceType": "Observation"}),
    );
    for (x, y) in [(&a, &b), (&b, &a)] {
        Replication::new(local(x), remote(&url))
            .run_once(|_| {})
            .await
            .unwrap();
        Replication::new(remote(&url), local(y))
            .run_once(|_| {})
            .await
            .unwrap();
    }
    Replication::new(remote(&url), local(&a))
        .run_once(|_| {})
        .await
        .unwrap();
    let (sa, sb, sh) = (snapshot(&a), snapshot(&b), snapshot(&hub_store));
    assert_eq!(sa, sb);
    assert_eq!(sa, sh);
    assert_eq!(sa["Patient/p1"].1.len(), 2, "both edits kept as a conflict");
    let doc = a
        .get(
            "clinic",
            &DocId::parse("Patient/p1").unwrap(),
            &GetOptions {
                conflicts: true,
                ..GetOptions::default()
            },
        )
        .unwrap();
    assert_eq!(doc.conflicts.unwrap().len(), 1);
    assert!(matches!(
        a.get(
            "clinic",
            &DocId::parse("Task/t1").unwrap(),
            &GetOptions::default()
        ),
        Err(store::Error::NotFound("deleted"))
    ));
    let (_, data) = b
        .get_attachment(
            "clinic",
            &DocId::parse("Consent/c1").unwrap(),
            "sig.png",
            None,
        )
        .unwrap();
    assert_eq!(data, [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);

    // B's own edits come back from the hub as changes it already has: read, not written.
    let echo = Replication::new(remote(&url), local(&b))
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!(echo.docs_written, 0);
    // Nothing new: nothing moves.
    let again = Replication::new(remote(&url), local(&b))
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!((again.changes_read, again.docs_written), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_replication_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = hub(&dir).await;
    let a = node(&dir, "a");
    let docs: Vec<DocWrite> = (0..300)
        .map(|i| {
            DocWrite::from_json(json!({"_id": format!("Observation/o{i:03}"), "v": i}), None)
                .unwrap()
        })
        .collect();
    a.bulk_docs("clinic", docs, true).unwrap();

    let mut rep = Replication::new(local(&a), remote(&url));
    rep.batch_size = 20;
    rep.checkpoint_every = Duration::ZERO;
    // Stop it after a few batches by dropping the future mid-flight.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let first = rep.clone();
    tokio::select! {
        _ = first.run_once(move |p| {
            if p.stats.docs_written >= 100 && let Some(t) = tx.take() {
                let _ = t.send(());
            }
        }) => panic!("finished before it was interrupted"),
        _ = rx => {}
    }
    let second = rep.run_once(|_| {}).await.unwrap();
    let start = second.start_seq.as_u64().unwrap();
    assert!(
        start >= 100,
        "resumed from the checkpoint, not from 0 (started at {start})"
    );
    assert!(
        second.changes_read <= 300 - 100,
        "did not re-read what was checkpointed"
    );
    let target = remote(&url);
    assert_eq!(
        target.open(false).await.unwrap().as_u64(),
        Some(300),
        "every document arrived exactly once"
    );
    let third = rep.run_once(|_| {}).await.unwrap();
    assert_eq!((third.changes_read, third.docs_written), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_hub_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    // A port that nothing listens on yet.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let a = node(&dir, "a");
    put(&a, "Patient/p1", None, json!({"resourceType": "Patient"}));
    let url = format!("http://{addr}/clinic");
    let mut rep = Replication::new(local(&a), remote(&url));
    rep.retry.initial = Duration::from_millis(100);
    let task = tokio::spawn(async move { rep.run_once(|_| {}).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let store = node(&dir, "hub");
    let hub = Arc::new(hub::Hub::new(store.clone()).unwrap());
    hub.set_account("sync", "sync-password", true).unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(hub::serve(
        listener,
        hub::router(hub, 64 << 20),
        std::future::pending(),
    ));
    let stats = task.await.unwrap().unwrap();
    assert!(stats.retries > 0);
    assert_eq!(stats.docs_written, 1);
    assert!(
        store
            .get(
                "clinic",
                &DocId::parse("Patient/p1").unwrap(),
                &GetOptions::default()
            )
            .is_ok()
    );

    // A wrong password is not retried: it fails at once with the server's reason.
    let bad = Endpoint::Http(HttpDb::new(&url, Some("sync"), Some("nope-nope")).unwrap());
    let e = Replication::new(local(&a), bad)
        .run_once(|_| {})
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert!(e.to_string().contains("401"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_replication_follows_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (url, hub_store) = hub(&dir).await;
    let a = node(&dir, "a");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let rep = Replication::new(local(&a), remote(&url));
    let task = tokio::spawn(async move { rep.run_continuous(|_| {}, stop_rx).await });
    for i in 0..3 {
        put(
            &a,
            &format!("Communication/c{i}"),
            None,
            json!({"resourceType": "Communication"}),
        );
        let id = DocId::parse(&format!("Communication/c{i}")).unwrap();
        let mut arrived = false;
        for _ in 0..100 {
            if hub_store.get("clinic", &id, &GetOptions::default()).is_ok() {
                arrived = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            arrived,
            "write {i} reached the hub while replicating continuously"
        );
    }
    stop_tx.send(true).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stats.docs_written, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_resources_arrive_first_and_travel_once() {
    let dir = tempfile::tempdir().unwrap();
    let (url, hub_store) = hub(&dir).await;
    let a = node(&dir, "a");
    let p1 = put(
        &a,
        "Patient/p1",
        None,
        json!({"resourceType": "Patient", "name": "v1"}),
    );
    let e1 = put(
        &a,
        "Encounter/e1",
        None,
        json!({"resourceType": "Encounter", "subject": {"reference": "Patient/p1"}}),
    );
    put(
        &a,
        "Observation/o1",
        None,
        json!({"resourceType": "Observation",
        "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}}),
    );
    // Edited after the Observation was recorded: in the changes feed they now come after it.
    put(
        &a,
        "Patient/p1",
        Some(&p1),
        json!({"resourceType": "Patient", "name": "v2"}),
    );
    put(
        &a,
        "Encounter/e1",
        Some(&e1),
        json!({"resourceType": "Encounter", "status": "finished", "subject": {"reference": "Patient/p1"}}),
    );
    let mut rep = Replication::new(local(&a), remote(&url));
    rep.batch_size = 1;
    let stats = rep.run_once(|_| {}).await.unwrap();
    assert_eq!(
        stats.docs_written, 3,
        "each resource travelled once: {stats:?}"
    );
    let feed = hub_store
        .changes("clinic", &store::ChangesQuery::default())
        .unwrap();
    let order: Vec<&str> = feed.results.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, ["Patient/p1", "Encounter/e1", "Observation/o1"]);
    assert_eq!(
        hub_store.update_seq("clinic").unwrap(),
        3,
        "nothing was written twice"
    );
}
