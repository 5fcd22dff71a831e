//! Integration tests on real SQLCipher files in temporary folders.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use base64::Engine;
use revtree::{Rev, Revisions};
use serde_json::{Value, json};
use store::{
    AttachmentInput, ChangesQuery, DataDir, DocId, DocWrite, Error, GetOptions, InitOptions,
    OpenRev, OpenRevs, RevStatus, Role, Store, Style, Unlocked,
};
use vault::{KdfParams, Pin, PinPolicy};

const DB: &str = "records";

fn fast_opts() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        },
        policy: PinPolicy::default(),
    }
}

fn node(dir: &Path) -> Unlocked {
    DataDir::init(dir, "admin", &Pin::from("135790"), &fast_opts()).unwrap();
    let n = DataDir::open(dir)
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    n.replica().create_db(DB).unwrap();
    n
}

fn id(s: &str) -> DocId {
    DocId::parse(s).unwrap()
}

fn body(v: Value) -> store::Body {
    v.as_object().cloned().unwrap()
}

fn put(s: &Store, doc: Value) -> Result<Rev, Error> {
    s.put(DB, DocWrite::from_json(doc, None)?)
}

#[test]
fn put_get_update_requires_current_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let r1 = put(s, json!({"_id": "Patient/p1", "name": "Ada"})).unwrap();
    assert_eq!(r1.generation(), 1);
    // A second create without _rev is a conflict.
    assert!(matches!(
        put(s, json!({"_id": "Patient/p1", "name": "Eve"})),
        Err(Error::Conflict)
    ));
    let r2 = put(
        s,
        json!({"_id": "Patient/p1", "_rev": r1.to_string(), "name": "Ada L."}),
    )
    .unwrap();
    assert_eq!(r2.generation(), 2);
    // The old rev is no longer a leaf.
    assert!(matches!(
        put(
            s,
            json!({"_id": "Patient/p1", "_rev": r1.to_string(), "name": "stale"})
        ),
        Err(Error::Conflict)
    ));
    // A rev that never existed, or a rev on a missing doc, is a conflict too.
    assert!(matches!(
        put(s, json!({"_id": "Patient/p1", "_rev": "2-00", "x": 1})),
        Err(Error::Conflict)
    ));
    assert!(matches!(
        put(s, json!({"_id": "Patient/none", "_rev": "1-00"})),
        Err(Error::Conflict)
    ));
    let d = s
        .get(DB, &id("Patient/p1"), &GetOptions::default())
        .unwrap();
    assert_eq!(d.rev, r2);
    assert_eq!(d.body["name"], "Ada L.");
    let old = s
        .get(
            DB,
            &id("Patient/p1"),
            &GetOptions {
                rev: Some(r1.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(old.body["name"], "Ada");
    assert!(matches!(
        s.get(DB, &id("Patient/zz"), &GetOptions::default()),
        Err(Error::NotFound("missing"))
    ));
    assert!(matches!(
        s.get("nodb", &id("Patient/p1"), &GetOptions::default()),
        Err(Error::DbNotFound)
    ));
}

#[test]
fn identical_edits_on_two_replicas_give_identical_revisions() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (na, nb) = (node(a.path()), node(b.path()));
    let doc = json!({"_id": "Observation/o1", "valueQuantity": {"value": 72, "unit": "/min"}, "status": "final"});
    let ra = put(na.replica(), doc.clone()).unwrap();
    // Key order must not matter.
    let rb = put(nb.replica(), json!({"status": "final", "valueQuantity": {"unit": "/min", "value": 72}, "_id": "Observation/o1"})).unwrap();
    assert_eq!(ra, rb);
}

#[test]
fn deletion_tombstones_and_recreation() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let r1 = put(s, json!({"_id": "Task/t1", "status": "requested"})).unwrap();
    let r2 = s
        .put(DB, DocWrite::deletion(id("Task/t1"), r1.clone()))
        .unwrap();
    assert!(matches!(
        s.get(DB, &id("Task/t1"), &GetOptions::default()),
        Err(Error::NotFound("deleted"))
    ));
    let tomb = s
        .get(
            DB,
            &id("Task/t1"),
            &GetOptions {
                rev: Some(r2.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(tomb.deleted);
    let info = s.db_info(DB).unwrap();
    assert_eq!((info.doc_count, info.doc_del_count), (0, 1));
    // Re-creating without _rev continues the tombstone branch.
    let r3 = put(s, json!({"_id": "Task/t1", "status": "ready"})).unwrap();
    assert_eq!(r3.generation(), 3);
    assert_eq!(
        s.rev_tree(DB, &id("Task/t1"))
            .unwrap()
            .path_to(&r3)
            .unwrap(),
        vec![r3.clone(), r2, r1]
    );
}

#[test]
fn replicated_revisions_make_conflicts_with_a_deterministic_winner() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let r1 = put(s, json!({"_id": "Patient/p2", "name": "A"})).unwrap();
    let local = put(
        s,
        json!({"_id": "Patient/p2", "_rev": r1.to_string(), "name": "B"}),
    )
    .unwrap();
    // A foreign edit of r1, inserted as replication does.
    let foreign = Rev::new(2, "ffffffffffffffffffffffffffffffff").unwrap();
    let mut w = DocWrite::from_json(json!({"_id": "Patient/p2", "name": "C"}), None).unwrap();
    w.rev = Some(foreign.clone());
    w.revisions = Revisions::from_path(&[foreign.clone(), r1.clone()]);
    assert!(s.conflicted(DB, 0).unwrap().is_empty());
    let res = s.bulk_docs(DB, vec![w.clone()], false).unwrap();
    assert_eq!(res[0].as_ref().unwrap(), &foreign);
    // The conflicts table knows at once, and `since` limits it to later changes.
    assert_eq!(s.conflicted(DB, 0).unwrap(), vec![id("Patient/p2")]);
    let after = s.update_seq(DB).unwrap();
    assert!(s.conflicted(DB, after).unwrap().is_empty());
    // Replaying the same revision changes nothing.
    let seq = s.update_seq(DB).unwrap();
    s.bulk_docs(DB, vec![w], false).unwrap();
    assert_eq!(s.update_seq(DB).unwrap(), seq);

    let d = s
        .get(
            DB,
            &id("Patient/p2"),
            &GetOptions {
                conflicts: true,
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    // Both are generation 2; the higher hash string wins.
    let (win, lose) = if foreign > local {
        (foreign.clone(), local.clone())
    } else {
        (local.clone(), foreign.clone())
    };
    assert_eq!(d.rev, win);
    assert_eq!(d.conflicts, Some(vec![lose.clone()]));
    assert_eq!(d.revisions.as_ref().unwrap().start, 2);
    let json = d.to_json();
    assert_eq!(json["_conflicts"][0], lose.to_string());

    // Resolve by deleting the loser: it becomes a deleted conflict.
    s.put(DB, DocWrite::deletion(id("Patient/p2"), lose.clone()))
        .unwrap();
    let d = s
        .get(
            DB,
            &id("Patient/p2"),
            &GetOptions {
                conflicts: true,
                deleted_conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(d.conflicts, Some(vec![]));
    assert_eq!(d.deleted_conflicts.unwrap().len(), 1);
    assert!(
        s.conflicted(DB, 0).unwrap().is_empty(),
        "resolved: out of the table"
    );

    // open_revs=all lists every leaf; missing revs are reported as missing.
    let all = s
        .open_revs(DB, &id("Patient/p2"), &OpenRevs::All, true, false)
        .unwrap();
    assert_eq!(all.len(), 2);
    let some = s
        .open_revs(
            DB,
            &id("Patient/p2"),
            &OpenRevs::Revs(vec![win.clone(), "9-abc".parse().unwrap()]),
            false,
            false,
        )
        .unwrap();
    assert!(matches!(&some[0], OpenRev::Ok(d) if d.rev == win));
    assert!(matches!(&some[1], OpenRev::Missing(r) if r.to_string() == "9-abc"));
    // latest=true replaces an ancestor with its leaves.
    let latest = s
        .open_revs(
            DB,
            &id("Patient/p2"),
            &OpenRevs::Revs(vec![r1.clone()]),
            false,
            true,
        )
        .unwrap();
    assert_eq!(latest.len(), 2);
    // revs_info shows availability along the path.
    let info = s.revs_info(DB, &id("Patient/p2"), &win).unwrap();
    assert_eq!(info[0], (win, RevStatus::Available));
    assert_eq!(info[1], (r1, RevStatus::Available));
}

#[test]
fn replicated_write_requires_rev_and_consistent_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let w = DocWrite::from_json(json!({"_id": "x", "a": 1}), None).unwrap();
    let res = n.replica().bulk_docs(DB, vec![w], false).unwrap();
    assert!(matches!(res[0], Err(Error::BadRequest(_))));
}

#[test]
fn stemming_at_revs_limit_drops_old_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    s.set_revs_limit(DB, 5).unwrap();
    let mut rev = put(s, json!({"_id": "c", "n": 0})).unwrap();
    let first = rev.clone();
    for i in 1..20 {
        rev = put(s, json!({"_id": "c", "_rev": rev.to_string(), "n": i})).unwrap();
    }
    let tree = s.rev_tree(DB, &id("c")).unwrap();
    assert_eq!(tree.len(), 5);
    assert_eq!(tree.path_to(&rev).unwrap().len(), 5);
    assert!(matches!(
        s.get(
            DB,
            &id("c"),
            &GetOptions {
                rev: Some(first),
                ..Default::default()
            }
        ),
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        s.get(DB, &id("c"), &GetOptions::default()).unwrap().body["n"],
        19
    );
}

#[test]
fn changes_feed_lists_each_document_once_at_its_latest_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let ra = put(s, json!({"_id": "a"})).unwrap();
    put(s, json!({"_id": "b"})).unwrap();
    put(s, json!({"_id": "a", "_rev": ra.to_string(), "v": 2})).unwrap();
    put(s, json!({"_id": "c"})).unwrap();
    let all = s.changes(DB, &ChangesQuery::default()).unwrap();
    let ids: Vec<(&str, u64)> = all.results.iter().map(|c| (c.id.as_str(), c.seq)).collect();
    assert_eq!(ids, vec![("b", 2), ("a", 3), ("c", 4)]);
    assert_eq!(all.last_seq, 4);
    let since = s
        .changes(
            DB,
            &ChangesQuery {
                since: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(since.results.len(), 2);
    let limited = s
        .changes(
            DB,
            &ChangesQuery {
                limit: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        (limited.results.len(), limited.last_seq, limited.pending),
        (1, 2, 2)
    );
    let desc = s
        .changes(
            DB,
            &ChangesQuery {
                descending: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(desc.results[0].id.as_str(), "c");
    let docs = s
        .changes(
            DB,
            &ChangesQuery {
                include_docs: true,
                since: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(docs.results[0].doc.as_ref().unwrap().id.as_str(), "c");

    // style=all_docs lists every leaf, winner first.
    let foreign = Rev::new(1, "0000000000000000000000000000000a").unwrap();
    let mut w = DocWrite::from_json(json!({"_id": "c", "other": true}), None).unwrap();
    w.rev = Some(foreign.clone());
    s.bulk_docs(DB, vec![w], false).unwrap();
    let main = s
        .changes(
            DB,
            &ChangesQuery {
                since: 4,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(main.results[0].changes.len(), 1);
    let every = s
        .changes(
            DB,
            &ChangesQuery {
                since: 4,
                style: Style::AllDocs,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(every.results[0].changes.len(), 2);
    assert_eq!(every.results[0].changes[1], foreign);
}

#[test]
fn wait_for_change_wakes_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::Arc::new(node(dir.path()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let seq = n.replica().update_seq(DB).unwrap();
        let waiter = {
            let n = n.clone();
            tokio::spawn(async move { n.replica().wait_for_change(DB, seq).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        put(n.replica(), json!({"_id": "w"})).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, seq + 1);
        // Already past: returns at once.
        assert_eq!(n.replica().wait_for_change(DB, 0).await.unwrap(), seq + 1);
    });
}

#[test]
fn local_documents_stay_out_of_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let lid = id("_local/checkpoint");
    let r = s
        .put_local(DB, &lid, None, false, &body(json!({"seq": 5})))
        .unwrap();
    assert_eq!(r, "0-1");
    assert!(matches!(
        s.put_local(DB, &lid, None, false, &body(json!({}))),
        Err(Error::Conflict)
    ));
    let r2 = s
        .put_local(DB, &lid, Some("0-1"), false, &body(json!({"seq": 9})))
        .unwrap();
    assert_eq!(r2, "0-2");
    assert_eq!(s.get_local(DB, &lid).unwrap().1["seq"], 9);
    assert_eq!(s.update_seq(DB).unwrap(), 0);
    assert!(
        s.changes(DB, &ChangesQuery::default())
            .unwrap()
            .results
            .is_empty()
    );
    s.put_local(DB, &lid, Some("0-2"), true, &body(json!({})))
        .unwrap();
    assert!(matches!(s.get_local(DB, &lid), Err(Error::NotFound(_))));
    assert!(matches!(
        s.put_local(DB, &id("normal"), None, false, &body(json!({}))),
        Err(Error::BadDocId(_))
    ));
}

#[test]
fn attachments_digests_stubs_revpos_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let note = "Progress note. ".repeat(200);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let r1 = put(
        s,
        json!({"_id": "DocumentReference/n1", "_attachments": {
            "note.txt": {"content_type": "text/plain", "data": b64(note.as_bytes())},
            "sig.png": {"content_type": "image/png", "data": b64(&[0x89, b'P', b'N', b'G', 1, 2, 3])}
        }}),
    )
    .unwrap();
    let d = s
        .get(DB, &id("DocumentReference/n1"), &GetOptions::default())
        .unwrap();
    assert_eq!(
        d.attachments["note.txt"].digest,
        store::attachment_digest(note.as_bytes())
    );
    assert_eq!(d.attachments["note.txt"].revpos, 1);
    assert_eq!(d.attachments["note.txt"].length, note.len() as u64);
    let (_, data) = s
        .get_attachment(DB, &id("DocumentReference/n1"), "note.txt", None)
        .unwrap();
    assert_eq!(data, note.as_bytes());
    // Update keeping note.txt as a stub, dropping sig.png.
    let r2 = put(
        s,
        json!({"_id": "DocumentReference/n1", "_rev": r1.to_string(), "status": "current",
               "_attachments": {"note.txt": {"stub": true}}}),
    )
    .unwrap();
    let d = s
        .get(DB, &id("DocumentReference/n1"), &GetOptions::default())
        .unwrap();
    assert_eq!(d.rev, r2);
    assert_eq!(d.attachments.len(), 1);
    assert_eq!(d.attachments["note.txt"].revpos, 1);
    assert_eq!(d.to_json()["_attachments"]["note.txt"]["stub"], true);
    // The old revision still has its signature.
    let (_, sig) = s
        .get_attachment(DB, &id("DocumentReference/n1"), "sig.png", Some(&r1))
        .unwrap();
    assert_eq!(sig, vec![0x89, b'P', b'N', b'G', 1, 2, 3]);
    // A stub for an attachment the parent does not have is refused.
    let bad = put(
        s,
        json!({"_id": "DocumentReference/n1", "_rev": r2.to_string(), "_attachments": {"nope.txt": {"stub": true}}}),
    );
    assert!(matches!(bad, Err(Error::MissingStub(_))));
    // Attachment bytes change the revision.
    let mut w = DocWrite::from_json(json!({"_id": "z"}), None).unwrap();
    let plain = s.put(DB, w.clone()).unwrap();
    let other = tempfile::tempdir().unwrap();
    let n2 = node(other.path());
    w.attachments.insert(
        "a".into(),
        AttachmentInput::Data {
            content_type: "text/plain".into(),
            data: b"x".to_vec(),
            revpos: None,
        },
    );
    assert_ne!(n2.replica().put(DB, w).unwrap(), plain);
}

#[test]
fn batches_commit_together_with_per_document_results() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    put(s, json!({"_id": "exists"})).unwrap();
    let docs = vec![
        DocWrite::from_json(json!({"_id": "n1"}), None).unwrap(),
        DocWrite::from_json(json!({"_id": "exists"}), None).unwrap(),
        DocWrite::from_json(json!({"_id": "n2"}), None).unwrap(),
    ];
    let res = s.bulk_docs(DB, docs, true).unwrap();
    assert!(res[0].is_ok() && res[2].is_ok());
    assert!(matches!(res[1], Err(Error::Conflict)));
    assert_eq!(s.db_info(DB).unwrap().doc_count, 3);
    assert_eq!(s.update_seq(DB).unwrap(), 3);
}

#[test]
fn several_named_databases_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    s.create_db("audit").unwrap();
    assert!(matches!(s.create_db("audit"), Err(Error::DbExists)));
    assert!(matches!(s.create_db("Bad"), Err(Error::BadDbName)));
    put(s, json!({"_id": "same"})).unwrap();
    assert!(matches!(
        s.get("audit", &id("same"), &GetOptions::default()),
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        s.list_dbs().unwrap(),
        vec!["audit".to_string(), DB.to_string()]
    );
    s.delete_db("audit").unwrap();
    assert!(matches!(s.db_info("audit"), Err(Error::DbNotFound)));
}

#[test]
fn no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "ZEBRA-PATIENT-7731-SECRETNAME";
    let n = node(dir.path());
    for i in 0..200 {
        put(n.replica(), json!({"_id": format!("Patient/{marker}-{i}"), "name": format!("{marker} {i}"), "pad": "x".repeat(500)}))
            .unwrap();
    }
    n.replica()
        .put_local(
            DB,
            &id("_local/x"),
            None,
            false,
            &body(json!({"note": marker})),
        )
        .unwrap();
    // Scan while the WAL still holds the writes, then after a checkpoint.
    assert_no_plaintext(dir.path(), marker);
    n.replica().checkpoint().unwrap();
    assert_no_plaintext(dir.path(), marker);
    drop(n);
    assert_no_plaintext(dir.path(), marker);
}

fn assert_no_plaintext(dir: &Path, marker: &str) {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        seen += 1;
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "plaintext found in {}",
            p.display()
        );
        assert!(
            !bytes.starts_with(b"SQLite format 3"),
            "unencrypted SQLite header in {}",
            p.display()
        );
    }
    assert!(seen >= 3);
}

#[test]
fn plain_sqlite_would_show_the_marker() {
    // The control for the test above: the same writes without a key are visible on disk.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_unencrypted_for_benchmark(&dir.path().join("plain.db"), 8).unwrap();
    s.create_db(DB).unwrap();
    put(&s, json!({"_id": "p", "name": "ZEBRA-CONTROL"})).unwrap();
    s.checkpoint().unwrap();
    let bytes = std::fs::read(dir.path().join("plain.db")).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3"));
    assert!(bytes.windows(13).any(|w| w == b"ZEBRA-CONTROL"));
}

#[test]
fn wrong_pin_fails_and_lockout_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_opts();
    opts.policy = PinPolicy {
        free_attempts: 2,
        max_failures: 3,
        base_delay_secs: 0,
        ..PinPolicy::default()
    };
    DataDir::init(dir.path(), "admin", &Pin::from("135790"), &opts).unwrap();
    let mut n = DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    n.add_user("nurse", Role::Nurse, &Pin::from("nurse-pin"), &opts.kdf)
        .unwrap();
    drop(n);
    for _ in 0..3 {
        let e = DataDir::open(dir.path())
            .unwrap()
            .unlock("nurse", &Pin::from("wrong-pin"))
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Vault(vault::Error::WrongCredentials)),
            "{e}"
        );
    }
    // Locked out, even with the right PIN, across a fresh open of the folder.
    let e = DataDir::open(dir.path())
        .unwrap()
        .unlock("nurse", &Pin::from("nurse-pin"))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Vault(vault::Error::LockedOut)), "{e}");
    // An unknown user gets the same answer as a wrong PIN.
    let e = DataDir::open(dir.path())
        .unwrap()
        .unlock("ghost", &Pin::from("whatever"))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Vault(vault::Error::WrongCredentials)));
    // The admin resets the PIN; the nurse is back.
    let mut admin = DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    admin.set_pin("nurse", &Pin::from("new-nurse-pin")).unwrap();
    drop(admin);
    let nurse = DataDir::open(dir.path())
        .unwrap()
        .unlock("nurse", &Pin::from("new-nurse-pin"))
        .unwrap();
    assert_eq!(nurse.role, Role::Nurse);
}

#[test]
fn delays_are_enforced_between_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_opts();
    opts.policy = PinPolicy {
        free_attempts: 1,
        max_failures: 5,
        base_delay_secs: 60,
        ..PinPolicy::default()
    };
    DataDir::init(dir.path(), "admin", &Pin::from("135790"), &opts).unwrap();
    assert!(
        DataDir::open(dir.path())
            .unwrap()
            .unlock("admin", &Pin::from("000000"))
            .is_err()
    );
    let e = DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Throttled(s) if s > 0 && s <= 60), "{e}");
}

#[test]
fn non_admins_cannot_manage_users() {
    let dir = tempfile::tempdir().unwrap();
    let mut admin = node(dir.path());
    admin
        .add_user(
            "kim",
            Role::Clinician,
            &Pin::from("kim-pin-1"),
            &fast_opts().kdf,
        )
        .unwrap();
    drop(admin);
    let mut kim = DataDir::open(dir.path())
        .unwrap()
        .unlock("kim", &Pin::from("kim-pin-1"))
        .unwrap();
    assert!(matches!(
        kim.add_user("x", Role::Nurse, &Pin::from("123456"), &fast_opts().kdf),
        Err(Error::NotAdmin)
    ));
    assert!(matches!(
        kim.set_pin("admin", &Pin::from("123456")),
        Err(Error::NotAdmin)
    ));
    // Changing one's own PIN is allowed, and is a re-wrap only.
    kim.set_pin("kim", &Pin::from("kim-pin-2")).unwrap();
    drop(kim);
    assert!(
        DataDir::open(dir.path())
            .unwrap()
            .unlock("kim", &Pin::from("kim-pin-1"))
            .is_err()
    );
    DataDir::open(dir.path())
        .unwrap()
        .unlock("kim", &Pin::from("kim-pin-2"))
        .unwrap();
}

#[test]
fn rekey_reencrypts_and_old_key_no_longer_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = node(dir.path());
    n.add_user(
        "bob",
        Role::Clinician,
        &Pin::from("bob-pin-1"),
        &fast_opts().kdf,
    )
    .unwrap();
    put(n.replica(), json!({"_id": "keep", "v": 1})).unwrap();
    let old_db = std::fs::read(dir.path().join(store::DB_FILE)).unwrap();
    n.rekey(&Pin::from("135790")).unwrap();
    put(n.replica(), json!({"_id": "after", "v": 2})).unwrap();
    // The read-only connections were reopened under the new key and serve both documents.
    assert!(n.replica().readers() > 0);
    for _ in 0..2 * n.replica().readers() {
        assert_eq!(
            n.replica()
                .get_raw(DB, &id("keep"))
                .unwrap()
                .parse()
                .unwrap()
                .body["v"],
            1
        );
        assert_eq!(
            n.replica()
                .get_raw(DB, &id("after"))
                .unwrap()
                .parse()
                .unwrap()
                .body["v"],
            2
        );
    }
    drop(n);
    n = DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    assert_eq!(
        n.replica()
            .get(DB, &id("keep"), &GetOptions::default())
            .unwrap()
            .body["v"],
        1
    );
    assert_eq!(
        n.replica()
            .get(DB, &id("after"), &GetOptions::default())
            .unwrap()
            .body["v"],
        2
    );
    assert!(n.replica().integrity_check().unwrap().is_empty());
    assert_ne!(
        std::fs::read(dir.path().join(store::DB_FILE)).unwrap()[..4096],
        old_db[..4096]
    );
    drop(n);
    let e = DataDir::open(dir.path())
        .unwrap()
        .unlock("bob", &Pin::from("bob-pin-1"))
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::Vault(vault::Error::ResetRequired)),
        "{e}"
    );
}

#[test]
fn store_refuses_wrong_key_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    put(n.replica(), json!({"_id": "x"})).unwrap();
    drop(n);
    let path = dir.path().join(store::DB_FILE);
    let before = std::fs::read(&path).unwrap();
    let e = Store::open(&path, &vault::Dek::generate().unwrap())
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotADatabase));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn init_refuses_existing_node_and_open_refuses_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        DataDir::open(dir.path()),
        Err(Error::NotInitialized)
    ));
    node(dir.path());
    assert!(matches!(
        DataDir::init(dir.path(), "admin", &Pin::from("135790"), &fast_opts()),
        Err(Error::AlreadyInitialized)
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let secret = dir.path().join(store::DEVICE_SECRET_FILE);
        assert_eq!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            DataDir::open(dir.path()),
            Err(Error::InsecureSecretFile(0o644))
        ));
    }
}

#[test]
fn raw_reads_splice_the_same_json_as_parsed_reads() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    put(s, json!({"_id": "empty"})).unwrap();
    put(
        s,
        json!({"_id": "Patient/\"q\"", "name": [{"given": ["Zoë"]}], "n": 1.5}),
    )
    .unwrap();
    put(s, json!({"_id": "att", "k": true, "_attachments": {"a.txt": {"content_type": "text/plain", "data": "aGk="}}})).unwrap();
    for doc_id in ["empty", "Patient/\"q\"", "att"] {
        let raw = s.get_raw(DB, &id(doc_id)).unwrap();
        let spliced: Value = serde_json::from_slice(&raw.to_json_bytes()).unwrap();
        let parsed = s
            .get(DB, &id(doc_id), &GetOptions::default())
            .unwrap()
            .to_json();
        assert_eq!(spliced, parsed, "{doc_id}");
    }
    assert!(matches!(
        s.get_raw(DB, &id("nope")),
        Err(Error::NotFound("missing"))
    ));
}

#[test]
fn a_second_opener_is_told_the_file_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    put(n.replica(), json!({"_id": "held"})).unwrap();
    let e = DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .err()
        .unwrap();
    assert!(matches!(e, Error::InUse), "{e}");
    drop(n);
    let again = DataDir::open(dir.path())
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    assert!(
        again
            .replica()
            .get(DB, &id("held"), &GetOptions::default())
            .is_ok()
    );
}

/// Indexes `name` as text and `kind`/`n` as tokens, like the FHIR indexer does for real.
struct TestIndexer;

impl store::Indexer for TestIndexer {
    fn terms(&self, _db: &str, _id: &DocId, body: &[u8]) -> Vec<store::IndexTerm> {
        let v: Value = serde_json::from_slice(body).unwrap();
        let mut out = Vec::new();
        if let Some(n) = v["name"].as_str() {
            out.push(store::IndexTerm::Text(n.to_owned()));
        }
        for k in ["kind", "n"] {
            // A string, or several values (a document sorts by its smallest).
            let values = match &v[k] {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                x => x.as_str().into_iter().collect::<Vec<_>>(),
            };
            for x in values {
                out.push(store::IndexTerm::Token {
                    param: k.into(),
                    value: x.into(),
                });
            }
        }
        out
    }
}

#[test]
fn search_index_follows_the_winning_revision() {
    use store::{Filter, SearchQuery};
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    // Written before the indexer is set: picked up by reindex.
    put(
        s,
        json!({"_id": "P/0", "name": "Zoë Müller", "kind": "a", "n": "05"}),
    )
    .unwrap();
    s.set_indexer(std::sync::Arc::new(TestIndexer));
    assert_eq!(s.reindex(DB).unwrap(), 1);
    let r1 = put(
        s,
        json!({"_id": "P/1", "name": "Zoe Mueller", "kind": "b", "n": "01"}),
    )
    .unwrap();
    put(
        s,
        json!({"_id": "P/2", "name": "Ada Okafor", "kind": "a", "n": "09"}),
    )
    .unwrap();
    put(
        s,
        json!({"_id": "Q/1", "name": "Zoltan", "kind": "a", "n": "03"}),
    )
    .unwrap();
    let ids = |q: SearchQuery| -> Vec<String> {
        s.search(DB, &q)
            .unwrap()
            .ids
            .iter()
            .map(|i| i.to_string())
            .collect()
    };
    let q = |filters: Vec<Filter>| SearchQuery {
        id_prefix: Some("P/".into()),
        filters,
        limit: 10,
        ..Default::default()
    };
    // Accent- and case-insensitive prefix search.
    assert_eq!(
        ids(q(vec![Filter::Text("zoe mu".into())])),
        vec!["P/0", "P/1"]
    );
    assert_eq!(ids(q(vec![Filter::Text("ZOË".into())])), vec!["P/0", "P/1"]);
    assert_eq!(
        ids(q(vec![Filter::Eq {
            param: "kind".into(),
            value: "a".into()
        }])),
        vec!["P/0", "P/2"]
    );
    assert_eq!(
        ids(q(vec![Filter::Range {
            param: "n".into(),
            from: Some("02".into()),
            to: Some("09".into())
        }])),
        vec!["P/0"]
    );
    assert_eq!(
        ids(q(vec![Filter::Prefix {
            param: "n".into(),
            value: "0".into()
        }]))
        .len(),
        3
    );
    // Sorting and paging.
    let sorted = SearchQuery {
        sort: vec![("n".into(), true)],
        limit: 2,
        ..Default::default()
    };
    let page = s.search(DB, &sorted).unwrap();
    assert_eq!(
        page.ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        vec!["P/2", "P/0"]
    );
    assert!(page.more);
    let rest = s
        .search(
            DB,
            &SearchQuery {
                offset: 2,
                ..sorted
            },
        )
        .unwrap();
    assert_eq!(
        rest.ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        vec!["Q/1", "P/1"]
    );
    assert!(!rest.more);
    // An update re-indexes; a deletion removes the terms.
    let r2 = put(
        s,
        json!({"_id": "P/1", "_rev": r1.to_string(), "name": "Yusuf", "kind": "a"}),
    )
    .unwrap();
    assert!(ids(q(vec![Filter::Text("zoe".into())])) == vec!["P/0"]);
    assert_eq!(ids(q(vec![Filter::Text("yus".into())])), vec!["P/1"]);
    s.put(DB, DocWrite::deletion(id("P/1"), r2.clone()))
        .unwrap();
    assert!(ids(q(vec![Filter::Text("yus".into())])).is_empty());
    // A replicated revision that wins is what the index shows; a losing one changes nothing.
    let loser = Rev::new(1, "00000000000000000000000000000001").unwrap();
    let mut w = DocWrite::from_json(json!({"_id": "P/2", "name": "Loser Name"}), None).unwrap();
    w.rev = Some(loser);
    s.bulk_docs(DB, vec![w], false).unwrap();
    assert!(ids(q(vec![Filter::Text("loser".into())])).is_empty());
    let winner = Rev::new(5, "ffffffffffffffffffffffffffffffff").unwrap();
    let mut w = DocWrite::from_json(json!({"_id": "P/2", "name": "Winner Name"}), None).unwrap();
    w.rev = Some(winner);
    s.bulk_docs(DB, vec![w], false).unwrap();
    assert_eq!(ids(q(vec![Filter::Text("winner".into())])), vec!["P/2"]);
    assert!(ids(q(vec![Filter::Text("okafor".into())])).is_empty());
    assert!(matches!(
        s.search(DB, &q(vec![Filter::Text("--".into())])),
        Err(Error::BadRequest(_))
    ));
    // Dropping the database drops its full-text rows too.
    s.delete_db(DB).unwrap();
    s.create_db(DB).unwrap();
    put(s, json!({"_id": "P/9", "name": "Fresh"})).unwrap();
    assert_eq!(
        ids(q(vec![Filter::Text("winner".into())])),
        Vec::<String>::new()
    );
    assert_eq!(ids(q(vec![Filter::Text("fresh".into())])), vec!["P/9"]);
}

#[test]
fn sorted_searches_page_the_same_by_index_walk_and_by_ranking() {
    use store::{Filter, SearchQuery};
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    s.set_indexer(std::sync::Arc::new(TestIndexer));
    // Several values per document, repeated values, many ties between documents, documents
    // without the key, deleted documents, and another id prefix that must stay out.
    struct Row {
        stored: u32,
        id: String,
        kind: &'static str,
        keys: Vec<String>,
    }
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for i in 0..300u32 {
        let id = format!("P/{:04}", (i * 37) % 300);
        let key = |j: u32| format!("{:03}", (i * 13 + j * 101) % 31);
        let kind = if i % 3 == 0 { "a" } else { "b" };
        let keys = match i % 5 {
            0 => vec![],
            1 => vec![key(1), key(2), key(1)],
            _ => vec![key(0)],
        };
        docs.push(DocWrite::from_json(json!({"_id": id, "kind": kind, "n": keys}), None).unwrap());
        if i % 11 != 3 {
            rows.push(Row {
                stored: i,
                id,
                kind,
                keys,
            });
        }
    }
    for i in 0..20 {
        docs.push(DocWrite::from_json(json!({"_id": format!("Q/{i}"), "n": "000"}), None).unwrap());
    }
    s.bulk_docs(DB, docs, true).unwrap();
    for i in (0..300u32).filter(|i| i % 11 == 3) {
        let id = id(&format!("P/{:04}", (i * 37) % 300));
        let rev = s.get(DB, &id, &Default::default()).unwrap().rev;
        s.put(DB, DocWrite::deletion(id, rev)).unwrap();
    }
    let kind_a = Filter::Eq {
        param: "kind".into(),
        value: "a".into(),
    };
    let before_020 = Filter::Range {
        param: "n".into(),
        from: None,
        to: Some("020".into()),
    };
    // No filter and a bounded worklist walk the index; a filter alone ranks every match.
    type Keep = dyn Fn(&Row) -> bool;
    let cases: [(Vec<Filter>, &Keep); 3] = [
        (vec![], &|_| true),
        (vec![before_020, kind_a.clone()], &|r| {
            r.kind == "a" && r.keys.iter().any(|k| k.as_str() < "020")
        }),
        (vec![kind_a], &|r| r.kind == "a"),
    ];
    for (filters, keep) in cases {
        for desc in [false, true] {
            // Each document at its smallest value; ties in storage order, reversed when
            // descending; documents without the key last.
            let mut want: Vec<(Option<&String>, u32, &str)> = rows
                .iter()
                .filter(|r| keep(r))
                .map(|r| (r.keys.iter().min(), r.stored, r.id.as_str()))
                .collect();
            want.sort_by(|a, b| {
                let by_key = match (a.0, b.0) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => return std::cmp::Ordering::Less,
                    (None, Some(_)) => return std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                };
                let ord = by_key.then(a.1.cmp(&b.1));
                if desc { ord.reverse() } else { ord }
            });
            let want: Vec<&str> = want.into_iter().map(|(_, _, id)| id).collect();
            assert!(want.len() > 20);
            // Pages of 7 cross the boundary between keyed and key-less documents mid-page.
            let mut got = Vec::new();
            for page in 0.. {
                let p = s
                    .search(
                        DB,
                        &SearchQuery {
                            id_prefix: Some("P/".into()),
                            filters: filters.clone(),
                            sort: vec![("n".into(), desc)],
                            limit: 7,
                            offset: page * 7,
                        },
                    )
                    .unwrap();
                got.extend(p.ids.iter().map(ToString::to_string));
                if !p.more {
                    break;
                }
            }
            assert_eq!(got, want, "descending: {desc}, filters: {filters:?}");
        }
    }
}

#[test]
fn dense_text_searches_sorted_by_a_parameter_page_in_order() {
    use store::{Filter, SearchQuery};
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    s.set_indexer(std::sync::Arc::new(TestIndexer));
    // More matches than the dense threshold, in scrambled key order, plus some non-matches.
    let docs: Vec<DocWrite> = (0..2600u32)
        .map(|i| {
            let key = format!("{:05}", (i * 7919) % 2600);
            let name = if i % 13 == 0 {
                "Other Person"
            } else {
                "Common Name"
            };
            DocWrite::from_json(
                json!({"_id": format!("P/{i:05}"), "name": name, "n": key}),
                None,
            )
            .unwrap()
        })
        .collect();
    s.bulk_docs(DB, docs, true).unwrap();
    let page = |offset: usize, desc: bool| {
        s.search(
            DB,
            &SearchQuery {
                id_prefix: Some("P/".into()),
                filters: vec![Filter::Text("comm".into())],
                sort: vec![("n".into(), desc)],
                limit: 50,
                offset,
            },
        )
        .unwrap()
    };
    let mut expected: Vec<(String, String)> = (0..2600u32)
        .filter(|i| i % 13 != 0)
        .map(|i| (format!("{:05}", (i * 7919) % 2600), format!("P/{i:05}")))
        .collect();
    expected.sort();
    let first = page(0, false);
    assert!(first.more);
    let got: Vec<String> = first.ids.iter().map(ToString::to_string).collect();
    let want: Vec<String> = expected.iter().take(50).map(|(_, id)| id.clone()).collect();
    assert_eq!(got, want);
    let later: Vec<String> = page(100, false)
        .ids
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        later,
        expected[100..150]
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    );
    let last: Vec<String> = page(0, true).ids.iter().map(ToString::to_string).collect();
    assert_eq!(last[0], expected.last().unwrap().1);
}

mod audit_trail {
    use super::*;
    use store::{AuditEvent, AuditFilter, AuditProblem};

    fn event(user: &str, action: &str, patient: Option<&str>) -> AuditEvent {
        AuditEvent {
            user: user.into(),
            role: "clinician".into(),
            action: action.into(),
            outcome: "success".into(),
            patient: patient.map(Into::into),
            resource: patient.map(Into::into),
            detail: None,
            break_glass: false,
        }
    }

    /// A node with five audit entries; returns its folder and the raw SQLCipher key.
    fn audited() -> (tempfile::TempDir, vault::Dek) {
        let dir = tempfile::tempdir().unwrap();
        let dek = vault::Dek::generate().unwrap();
        let s = Store::open(&dir.path().join("hearth.db"), &dek).unwrap();
        s.create_db(DB).unwrap();
        s.audit_append(&[
            event("kim", "login", None),
            event("kim", "read", Some("Patient/p1")),
        ])
        .unwrap();
        // An audited write: the entry is written in the same transaction as the document.
        let w = DocWrite::from_json(json!({"_id": "Patient/p2"}), None).unwrap();
        s.bulk_docs_audited(DB, vec![w], true, |results| {
            assert!(results[0].is_ok());
            vec![event("kim", "create", Some("Patient/p2"))]
        })
        .unwrap();
        s.audit_append(&[
            event("lee", "read", Some("Patient/p1")),
            event("lee", "search", None),
        ])
        .unwrap();
        assert_eq!(s.audit_verify().unwrap(), Ok(5));
        (dir, dek)
    }

    /// Tampers with the raw file through the key, as an attacker holding it could.
    fn tamper(dir: &Path, key: &vault::Dek, sql: &str) -> Result<u64, AuditProblem> {
        {
            let c = rusqlite::Connection::open(dir.join("hearth.db")).unwrap();
            c.execute_batch(&format!(
                "PRAGMA key = \"{}\";",
                key.sqlcipher_pragma_value().as_str()
            ))
            .unwrap();
            c.execute_batch(sql).unwrap();
        }
        Store::open(&dir.join("hearth.db"), key)
            .unwrap()
            .audit_verify()
            .unwrap()
    }

    #[test]
    fn lists_by_patient_and_user() {
        let (dir, key) = audited();
        let s = Store::open(&dir.path().join("hearth.db"), &key).unwrap();
        let p1 = s
            .audit_list(&AuditFilter {
                patient: Some("Patient/p1".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            p1.iter().map(|e| e.event.user.as_str()).collect::<Vec<_>>(),
            vec!["kim", "lee"]
        );
        let kim = s
            .audit_list(&AuditFilter {
                user: Some("kim".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(kim.len(), 3);
        assert_eq!(kim[0].id, format!("{}:1", kim[0].device));
        assert!(kim.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn the_table_refuses_updates_and_deletes() {
        let (dir, key) = audited();
        let c = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
        c.execute_batch(&format!(
            "PRAGMA key = \"{}\";",
            key.sqlcipher_pragma_value().as_str()
        ))
        .unwrap();
        assert!(
            c.execute("UPDATE audit SET user = 'x' WHERE seq = 2", [])
                .is_err()
        );
        assert!(c.execute("DELETE FROM audit WHERE seq = 2", []).is_err());
    }

    #[test]
    fn purging_keeps_six_years_and_a_signed_anchor() {
        let (dir, key) = audited();
        let s = Store::open(&dir.path().join("hearth.db"), &key).unwrap();
        let now = s.audit_list(&AuditFilter::default()).unwrap()[4].time;
        // Too young: refused, nothing removed.
        assert!(matches!(
            s.audit_purge(now + 1, now),
            Err(Error::BadRequest(_))
        ));
        assert_eq!(s.audit_list(&AuditFilter::default()).unwrap().len(), 5);
        // Seven years later everything before `now + 1` may go; the chain still verifies.
        let later = now + 7 * 365 * 86_400;
        assert_eq!(s.audit_purge(now + 1, later).unwrap(), 5);
        assert!(s.audit_list(&AuditFilter::default()).unwrap().is_empty());
        assert_eq!(s.audit_verify().unwrap(), Ok(0));
        s.audit_append(&[event("kim", "read", Some("Patient/p1"))])
            .unwrap();
        let after = s.audit_list(&AuditFilter::default()).unwrap();
        assert_eq!(after[0].seq, 6);
        assert_eq!(s.audit_verify().unwrap(), Ok(1));
        drop(s);
        // A forged anchor is caught.
        let r = tamper(dir.path(), &key, "UPDATE audit_anchor SET seq = 3;");
        assert_eq!(r, Err(AuditProblem::BadSignature));
    }

    #[test]
    fn detects_a_modified_entry() {
        let (dir, key) = audited();
        let r = tamper(
            dir.path(),
            &key,
            "DROP TRIGGER audit_no_update; UPDATE audit SET user = 'someone' WHERE seq = 3;",
        );
        assert_eq!(r, Err(AuditProblem::Modified { seq: 3 }));
    }

    #[test]
    fn detects_a_deleted_entry() {
        let (dir, key) = audited();
        let r = tamper(
            dir.path(),
            &key,
            "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 2;",
        );
        assert_eq!(r, Err(AuditProblem::Missing { seq: 2 }));
    }

    #[test]
    fn detects_reordered_entries() {
        let (dir, key) = audited();
        let r = tamper(
            dir.path(),
            &key,
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 100;",
        );
        assert_eq!(r, Err(AuditProblem::BrokenLink { seq: 2 }));
    }

    #[test]
    fn detects_an_inserted_entry() {
        let (dir, key) = audited();
        // A forged entry slipped in after entry 2, the rest renumbered.
        let r = tamper(
            dir.path(),
            &key,
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET seq = seq + 10 WHERE seq > 2; UPDATE audit SET seq = seq - 9 WHERE seq > 12;
             INSERT INTO audit SELECT 3, 'x:3', device, time, 'ghost', role, 'read', outcome, patient, resource, detail, 0, hash, hash FROM audit WHERE seq = 2;",
        );
        assert_eq!(r, Err(AuditProblem::Modified { seq: 3 }));
    }

    #[test]
    fn detects_entries_cut_from_the_end_and_a_forged_head() {
        let (dir, key) = audited();
        let r = tamper(
            dir.path(),
            &key,
            "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 5;",
        );
        assert_eq!(r, Err(AuditProblem::HeadMismatch));
        let (dir, key) = audited();
        let r = tamper(
            dir.path(),
            &key,
            "UPDATE audit_head SET signature = zeroblob(64);",
        );
        assert_eq!(r, Err(AuditProblem::BadSignature));
    }

    #[test]
    fn security_events_stream_from_a_cursor_and_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            &dir.path().join("hearth.db"),
            &vault::Dek::generate().unwrap(),
        )
        .unwrap();
        s.audit_append(&[event("kim", "read", Some("Patient/p1"))])
            .unwrap();
        let mut failed = event("mallory", "login_failed", None);
        failed.outcome = "failure".into();
        s.audit_append(&[failed]).unwrap();
        // Events before the cursor are history; the stream starts after it.
        let start = s.security_cursor().unwrap();
        assert_eq!(s.security_events_after(start).unwrap().0, vec![]);
        let mut denied = event("ana", "denied", Some("Patient/p1"));
        denied.outcome = "denied".into();
        s.audit_append(&[event("kim", "read", Some("Patient/p2")), denied])
            .unwrap();
        let (new, next) = s.security_events_after(start).unwrap();
        assert_eq!(
            new.iter()
                .map(|e| e.event.user.as_str())
                .collect::<Vec<_>>(),
            ["ana"],
            "only the refusal, not the read"
        );
        assert_eq!(s.security_events_after(next).unwrap().0, vec![]);
        // The listing, newest first, has both security events and no read.
        let all = s.security_events(10).unwrap();
        assert_eq!(
            all.iter()
                .map(|e| e.event.action.as_str())
                .collect::<Vec<_>>(),
            ["denied", "login_failed"]
        );
    }
}

#[test]
fn other_users_log_in_on_an_unlocked_node_with_counted_audited_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = node(dir.path());
    n.add_user(
        "kim",
        Role::Nurse,
        &Pin::from("kim-pin-1"),
        &fast_opts().kdf,
    )
    .unwrap();
    let s = n.session().unwrap();
    assert_eq!((s.user(), s.role()), ("admin", Some(Role::Admin)));
    assert!(matches!(
        n.login("kim", &Pin::from("nope-nope"), None),
        Err(Error::Vault(vault::Error::WrongCredentials))
    ));
    assert_eq!(n.vault().users["kim"].failed_attempts, 1);
    let kim = n.login("kim", &Pin::from("kim-pin-1"), None).unwrap();
    assert_eq!(
        (kim.user(), kim.role(), kim.device()),
        ("kim", Some(Role::Nurse), s.device())
    );
    assert_eq!(n.vault().users["kim"].failed_attempts, 0);
    let trail = n
        .replica()
        .audit_list(&store::AuditFilter {
            user: Some("kim".into()),
            ..Default::default()
        })
        .unwrap();
    let actions: Vec<&str> = trail.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, vec!["login_failed", "login"]);
}

#[test]
fn revs_diff_reports_missing_revisions_and_possible_ancestors() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let r1 = put(s, json!({"_id": "a", "v": 1})).unwrap();
    let r2 = put(s, json!({"_id": "a", "_rev": r1.to_string(), "v": 2})).unwrap();
    let peer3: Rev = "3-0000000000000000000000000000000f".parse().unwrap();
    let peer_other: Rev = "1-00000000000000000000000000000001".parse().unwrap();
    let mut asked = BTreeMap::new();
    asked.insert("a".to_string(), vec![r1.clone(), r2.clone(), peer3.clone()]);
    asked.insert("b".to_string(), vec![peer_other.clone()]);
    asked.insert("c".to_string(), vec![]);
    let diff = s.revs_diff(DB, &asked).unwrap();
    assert_eq!(diff.len(), 2, "a document lacking nothing is left out");
    assert_eq!(diff["a"].missing, vec![peer3]);
    assert_eq!(diff["a"].possible_ancestors, vec![r2.clone()]);
    assert_eq!(diff["b"].missing, vec![peer_other]);
    assert!(diff["b"].possible_ancestors.is_empty());
    // Nothing missing: empty answer.
    let mut have = BTreeMap::new();
    have.insert("a".to_string(), vec![r2]);
    assert!(s.revs_diff(DB, &have).unwrap().is_empty());
}

#[test]
fn all_docs_pages_live_documents_in_id_order() {
    use store::AllDocsQuery;
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    for id in ["d", "b", "a", "e", "c", "_design/app"] {
        put(s, json!({"_id": id})).unwrap();
    }
    let gone = put(s, json!({"_id": "x"})).unwrap();
    s.put(DB, DocWrite::deletion(id("x"), gone)).unwrap();
    s.put_local(DB, &id("_local/l"), None, false, &body(json!({})))
        .unwrap();
    let ids = |q: AllDocsQuery| -> Vec<String> {
        s.all_docs(DB, &q)
            .unwrap()
            .0
            .iter()
            .map(|r| r.id.to_string())
            .collect()
    };
    assert_eq!(
        ids(AllDocsQuery::default()),
        vec!["_design/app", "a", "b", "c", "d", "e"]
    );
    assert_eq!(s.all_docs(DB, &AllDocsQuery::default()).unwrap().1, 6);
    assert_eq!(
        ids(AllDocsQuery {
            start_key: Some("b".into()),
            end_key: Some("d".into()),
            ..Default::default()
        }),
        vec!["b", "c", "d"]
    );
    assert_eq!(
        ids(AllDocsQuery {
            start_key: Some("b".into()),
            end_key: Some("d".into()),
            exclusive_end: true,
            ..Default::default()
        }),
        vec!["b", "c"]
    );
    assert_eq!(
        ids(AllDocsQuery {
            limit: Some(2),
            skip: 1,
            ..Default::default()
        }),
        vec!["a", "b"]
    );
    assert_eq!(
        ids(AllDocsQuery {
            descending: true,
            start_key: Some("d".into()),
            end_key: Some("b".into()),
            ..Default::default()
        }),
        vec!["d", "c", "b"]
    );
    assert_eq!(
        ids(AllDocsQuery {
            descending: true,
            start_key: Some("d".into()),
            end_key: Some("b".into()),
            exclusive_end: true,
            ..Default::default()
        }),
        vec!["d", "c"]
    );
}

/// `doc_count` and `doc_del_count` are kept with each write; they must always equal a count of
/// the winners, through creations, deletions, re-creations and replicated conflicts whose
/// winner is a deletion or not.
#[test]
fn document_counts_follow_every_kind_of_write() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let s = &n.replica();
    let check = |s: &Store| {
        let info = s.db_info(DB).unwrap();
        let all = s.changes(DB, &ChangesQuery::default()).unwrap().results;
        let dead = all.iter().filter(|c| c.deleted).count() as u64;
        assert_eq!(
            (info.doc_count, info.doc_del_count),
            (all.len() as u64 - dead, dead)
        );
        info
    };
    let a = put(s, json!({"_id": "a", "v": 1})).unwrap();
    put(s, json!({"_id": "b", "v": 1})).unwrap();
    assert_eq!(check(s).doc_count, 2);
    let gone = s.put(DB, DocWrite::deletion(id("a"), a)).unwrap();
    assert_eq!(check(s).doc_del_count, 1);
    // Re-created on top of its tombstone.
    put(s, json!({"_id": "a", "v": 2})).unwrap();
    assert_eq!(check(s).doc_del_count, 0);
    let _ = gone;
    // A replicated deletion of a new document, and a conflict on an existing one.
    let writes = vec![
        DocWrite::from_json(json!({"_id": "c", "_rev": "1-aa", "_deleted": true}), None).unwrap(),
        DocWrite::from_json(json!({"_id": "b", "_rev": "1-ff", "v": 9}), None).unwrap(),
    ];
    s.bulk_docs(DB, writes, false).unwrap();
    let info = check(s);
    assert_eq!((info.doc_count, info.doc_del_count), (2, 1));
}
