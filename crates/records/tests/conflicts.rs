//! Conflict policies on real encrypted stores: two devices edit offline, replicate (revisions
//! copied as CouchDB replication does, `new_edits=false`), and each resolves on its own. The
//! resolutions are identical revisions, so after the next sync there is no conflict left and
//! nobody's change is lost.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use records::{Policy, Records};
use serde_json::{Value, json};
use store::{DocId, DocWrite, OpenRev, OpenRevs, Store};

const PIN: &str = "pin-135790";

struct Device {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    records: Records,
}

fn device() -> Device {
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
    let records = Records::new(store.clone(), "records", &session).unwrap();
    Device {
        _dir: dir,
        store,
        records,
    }
}

/// Copies every revision `from` has and `to` lacks, with its history (what replication does).
fn sync(from: &Device, to: &Device) {
    let changes = from
        .store
        .changes("records", &store::ChangesQuery::default())
        .unwrap();
    let mut writes = Vec::new();
    for c in changes.results {
        for o in from
            .store
            .open_revs("records", &c.id, &OpenRevs::All, true, false)
            .unwrap()
        {
            if let OpenRev::Ok(d) = o {
                writes.push(DocWrite::from_json(d.to_json(), None).unwrap());
            }
        }
    }
    to.store.bulk_docs("records", writes, false).unwrap();
}

fn both_ways(a: &Device, b: &Device) {
    sync(a, b);
    sync(b, a);
}

fn leaves(d: &Device, id: &str) -> Vec<String> {
    let tree = d
        .store
        .rev_tree("records", &DocId::parse(id).unwrap())
        .unwrap();
    let mut live: Vec<String> = tree
        .leaves()
        .into_iter()
        .filter(|l| !l.deleted)
        .map(|l| l.rev.to_string())
        .collect();
    live.sort();
    live
}

fn edit(d: &Device, rt: &str, id: &str, f: impl FnOnce(&mut Value)) {
    let mut r = d.records.read(rt, id).unwrap().resource;
    f(&mut r);
    d.records.update(rt, id, r, None).unwrap();
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Okafor", "given": ["Ada"]}],
           "telecom": [{"system": "phone", "value": "555-0100"}], "gender": "female", "birthDate": "1950-01-02"})
}

#[test]
fn edits_to_different_fields_merge_identically_on_both_devices() {
    let (a, b) = (device(), device());
    a.records.create(patient()).unwrap();
    sync(&a, &b);
    edit(&a, "Patient", "p1", |p| {
        p["telecom"] = json!([{"system": "phone", "value": "555-0199"}])
    });
    edit(&b, "Patient", "p1", |p| {
        p["address"] = json!([{"city": "Duluth"}])
    });
    both_ways(&a, &b);
    assert_eq!(
        leaves(&a, "Patient/p1").len(),
        2,
        "a conflict before resolution"
    );
    let id = [DocId::parse("Patient/p1").unwrap()];
    let ra = a.records.auto_resolve(&id).unwrap();
    let rb = b.records.auto_resolve(&id).unwrap();
    assert_eq!(ra[0].policy, Policy::FieldMerge);
    assert!(ra[0].rev.is_some(), "{ra:?}");
    assert_eq!(ra[0].rev, rb[0].rev, "both devices wrote the same revision");
    both_ways(&a, &b);
    assert_eq!(
        leaves(&a, "Patient/p1").len(),
        1,
        "no new conflict after syncing the resolutions"
    );
    assert_eq!(leaves(&a, "Patient/p1"), leaves(&b, "Patient/p1"));
    let merged = a.records.read("Patient", "p1").unwrap().resource;
    assert_eq!(merged["telecom"][0]["value"], "555-0199");
    assert_eq!(merged["address"][0]["city"], "Duluth");
    assert_eq!(merged["birthDate"], "1950-01-02");
    let audit = a.store.audit_list(&store::AuditFilter::default()).unwrap();
    assert!(audit.iter().any(|e| {
        e.event.action == "conflict_resolve"
            && e.event
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("policy=field-merge"))
    }));
}

#[test]
fn the_same_field_edited_on_both_sides_waits_for_a_person() {
    let (a, b) = (device(), device());
    a.records.create(patient()).unwrap();
    sync(&a, &b);
    edit(&a, "Patient", "p1", |p| {
        p["birthDate"] = json!("1950-01-03")
    });
    edit(&b, "Patient", "p1", |p| {
        p["birthDate"] = json!("1951-01-02")
    });
    both_ways(&a, &b);
    let r = a
        .records
        .auto_resolve(&[DocId::parse("Patient/p1").unwrap()])
        .unwrap();
    assert!(r[0].rev.is_none());
    assert!(r[0].unresolved.as_deref().unwrap().contains("birthDate"));
    // The inbox shows both versions, the ancestor and the differing field.
    let inbox = a.records.conflicts(Some("p1"), None).unwrap();
    assert_eq!(inbox.len(), 1);
    let c = &inbox[0];
    assert_eq!(c.versions.len(), 2);
    assert_eq!(c.ancestor.as_ref().unwrap()["birthDate"], "1950-01-02");
    let field = c.diff.iter().find(|d| d.field == "birthDate").unwrap();
    assert_eq!(field.ancestor, "1950-01-02");
    // A person keeps one version; the other is closed, everywhere it syncs to.
    let keep = c
        .versions
        .iter()
        .find(|v| v.resource["birthDate"] == "1951-01-02")
        .unwrap()
        .rev
        .clone();
    a.records
        .resolve_conflict("Patient/p1", Some(&keep), None)
        .unwrap();
    both_ways(&a, &b);
    assert_eq!(leaves(&b, "Patient/p1").len(), 1);
    assert_eq!(
        b.records.read("Patient", "p1").unwrap().resource["birthDate"],
        "1951-01-02"
    );
    assert!(a.records.conflicts(None, None).unwrap().is_empty());
}

#[test]
fn conflicting_observations_are_both_kept() {
    let (a, b) = (device(), device());
    a.records.create(patient()).unwrap();
    let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 72, "unit": "/min"}});
    a.records.create(obs).unwrap();
    sync(&a, &b);
    edit(&a, "Observation", "o1", |o| {
        o["valueQuantity"]["value"] = json!(74)
    });
    edit(&b, "Observation", "o1", |o| {
        o["valueQuantity"]["value"] = json!(91)
    });
    both_ways(&a, &b);
    let id = [DocId::parse("Observation/o1").unwrap()];
    let ra = a.records.auto_resolve(&id).unwrap();
    let rb = b.records.auto_resolve(&id).unwrap();
    assert_eq!(ra[0].created.len(), 1);
    assert_eq!(
        ra[0].created, rb[0].created,
        "the copy has the same id on both devices"
    );
    both_ways(&a, &b);
    let copy_id = ra[0].created[0].clone();
    assert_eq!(leaves(&a, "Observation/o1").len(), 1);
    assert_eq!(
        leaves(&a, &copy_id),
        leaves(&b, &copy_id),
        "the same copy revision everywhere"
    );
    let original =
        a.records.read("Observation", "o1").unwrap().resource["valueQuantity"]["value"].clone();
    let (_, cid) = copy_id.split_once('/').unwrap();
    let copy = a.records.read("Observation", cid).unwrap().resource;
    let mut values = vec![original, copy["valueQuantity"]["value"].clone()];
    values.sort_by_key(|v| v.as_i64());
    assert_eq!(
        values,
        [json!(74), json!(91)],
        "no measurement was discarded"
    );
    assert_eq!(
        copy["extension"][0]["valueReference"]["reference"],
        "Observation/o1"
    );
}

#[test]
fn tasks_take_the_latest_clock_even_from_a_device_that_saw_the_other_edit() {
    let (a, b) = (device(), device());
    a.records.create(patient()).unwrap();
    let task = json!({"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
        "for": {"reference": "Patient/p1"}, "description": "call daughter"});
    a.records.create(task).unwrap();
    sync(&a, &b);
    edit(&a, "Task", "t1", |t| t["status"] = json!("in-progress"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    edit(&b, "Task", "t1", |t| t["status"] = json!("completed"));
    both_ways(&a, &b);
    let id = [DocId::parse("Task/t1").unwrap()];
    let ra = a.records.auto_resolve(&id).unwrap();
    let rb = b.records.auto_resolve(&id).unwrap();
    assert_eq!(ra[0].rev, rb[0].rev);
    both_ways(&a, &b);
    assert_eq!(leaves(&a, "Task/t1").len(), 1);
    assert_eq!(
        a.records.read("Task", "t1").unwrap().resource["status"],
        "completed"
    );
}

#[test]
fn notes_and_consents_are_never_resolved_automatically() {
    let (a, b) = (device(), device());
    a.records.create(patient()).unwrap();
    let note = json!({"resourceType": "DocumentReference", "id": "n1", "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]});
    a.records.create(note).unwrap();
    sync(&a, &b);
    edit(&a, "DocumentReference", "n1", |n| {
        n["description"] = json!("visit A")
    });
    edit(&b, "DocumentReference", "n1", |n| {
        n["docStatus"] = json!("final")
    });
    both_ways(&a, &b);
    let r = a
        .records
        .auto_resolve(&[DocId::parse("DocumentReference/n1").unwrap()])
        .unwrap();
    assert_eq!(r[0].policy, Policy::Manual);
    assert!(r[0].rev.is_none());
    assert_eq!(
        leaves(&a, "DocumentReference/n1").len(),
        2,
        "both versions kept for a person"
    );
    assert!(
        a.records
            .set_merge_policy("DocumentReference", Policy::FieldMerge)
            .is_err()
    );
    // Policies are configurable for other types.
    a.records
        .set_merge_policy("Encounter", Policy::LastWriterWins)
        .unwrap();
    assert_eq!(
        a.records.merge_policies().unwrap().for_type("Encounter"),
        Policy::LastWriterWins
    );
}
