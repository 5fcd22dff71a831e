//! Online backups and verified restores on real SQLCipher files.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use store::backup::{self, Manifest};
use store::{DataDir, DocId, DocWrite, Error, InitOptions, Role, Unlocked};
use vault::backup::BackupKey;
use vault::{KdfParams, Pin, PinPolicy};

const DB: &str = "records";

fn kdf() -> KdfParams {
    KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    }
}

fn node(dir: &Path) -> Unlocked {
    let opts = InitOptions {
        kdf: kdf(),
        policy: PinPolicy::default(),
    };
    DataDir::init(dir, "admin", &Pin::from("135790"), &opts).unwrap();
    let n = DataDir::open(dir)
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    n.replica().create_db(DB).unwrap();
    n
}

fn doc(i: u64) -> DocWrite {
    DocWrite::from_json(
        json!({"_id": format!("Observation/o{i}"), "value": i, "pad": "x".repeat(300)}),
        None,
    )
    .unwrap()
}

#[test]
fn a_backup_taken_during_writes_restores_everything_acknowledged_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let n = node(&tmp.path().join("node"));
    n.replica()
        .bulk_docs(DB, (0..2_000).map(doc).collect(), true)
        .unwrap();
    // A writer keeps writing (and recording what was acknowledged) through the backup.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acked, stop) = (n.replica().clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 10_000;
            while !stop.load(Ordering::Relaxed) {
                store.bulk_docs(DB, vec![doc(i)], true).unwrap()[0]
                    .as_ref()
                    .unwrap();
                acked.lock().unwrap().push(i);
                i += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 50 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let key = BackupKey::generate().unwrap();
    let before: Vec<u64> = acked.lock().unwrap().clone();
    let report = n
        .backup(&tmp.path().join("backups"), &key.public())
        .unwrap();
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        report
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("hearth-backup-")
    );
    let m = Manifest::read(&report.path).unwrap();
    let docs = m.facts.databases[0].doc_count;
    assert!(docs >= 2_050, "{docs}");
    assert!(m.facts.audit_seq > 0);
    eprintln!("writes acknowledged while the backup ran: {during}");

    // Nothing in the backup folder is readable: no PHI-like value in clear.
    for f in std::fs::read_dir(&report.path).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"xxxxxxxx"));
    }

    let target = tmp.path().join("restored");
    let r = backup::restore(&report.path, &key, &target, "admin", &Pin::from("135790")).unwrap();
    assert_eq!(r.counted, vec![(DB.to_owned(), docs)]);
    let restored = DataDir::open(&target)
        .unwrap()
        .unlock("admin", &Pin::from("135790"))
        .unwrap();
    for i in (0..2_000).chain(before) {
        let id = DocId::parse(&format!("Observation/o{i}")).unwrap();
        restored
            .replica()
            .get(DB, &id, &Default::default())
            .unwrap_or_else(|e| panic!("acknowledged before the backup, missing: {i}: {e}"));
    }
    let trail = restored
        .replica()
        .audit_list(&store::AuditFilter::default())
        .unwrap();
    assert!(trail.iter().any(|e| e.event.action == "backup"));
    assert!(trail.iter().any(|e| e.event.action == "restore"));
}

#[test]
fn restores_refuse_damage_other_keys_wrong_pins_and_live_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let n = node(&tmp.path().join("node"));
    n.replica()
        .bulk_docs(DB, (0..100).map(doc).collect(), true)
        .unwrap();
    let key = BackupKey::generate().unwrap();
    let report = n.backup(&tmp.path().join("b"), &key.public()).unwrap();
    let pin = Pin::from("135790");

    // Over a node (here, the live one): refused, untouched.
    let e =
        backup::restore(&report.path, &key, &tmp.path().join("node"), "admin", &pin).unwrap_err();
    assert!(
        matches!(e, Error::BadBackup(ref m) if m.contains("holds a Hearth node")),
        "{e}"
    );
    // Another backup key.
    let other = BackupKey::generate().unwrap();
    let e =
        backup::restore(&report.path, &other, &tmp.path().join("r1"), "admin", &pin).unwrap_err();
    assert!(e.to_string().contains("different backup key"), "{e}");
    // A wrong PIN: nothing left behind.
    let e = backup::restore(
        &report.path,
        &key,
        &tmp.path().join("r2"),
        "admin",
        &Pin::from("000000"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("PIN"), "{e}");
    assert!(!tmp.path().join("r2").exists());
    // An altered manifest (a count changed) no longer opens its sealed part.
    let mut m = Manifest::read(&report.path).unwrap();
    let copy = tmp.path().join("altered");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(report.path.join("snapshot.db"), copy.join("snapshot.db")).unwrap();
    m.facts.databases[0].doc_count += 1;
    std::fs::write(copy.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let e = backup::restore(&copy, &key, &tmp.path().join("r3"), "admin", &pin).unwrap_err();
    assert!(e.to_string().contains("does not authenticate"), "{e}");
    // A damaged snapshot: one byte flipped.
    let snap = report.path.join("snapshot.db");
    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&snap, &bytes).unwrap();
    let e = backup::restore(&report.path, &key, &tmp.path().join("r4"), "admin", &pin).unwrap_err();
    assert!(e.to_string().contains("does not match its manifest"), "{e}");
    assert!(!tmp.path().join("r4").exists());
    // Only administrators take backups.
    let mut admin = n;
    admin
        .add_user("nurse", Role::Clinician, &Pin::from("246802"), &kdf())
        .unwrap();
    drop(admin);
    let nurse = DataDir::open(&tmp.path().join("node"))
        .unwrap()
        .unlock("nurse", &Pin::from("246802"))
        .unwrap();
    assert!(matches!(
        nurse.backup(&tmp.path().join("b"), &key.public()),
        Err(Error::NotAdmin)
    ));
}
