//! FHIR operations on a real encrypted store.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use records::Records;
use serde_json::{Value, json};
use store::Role;

const BASE: &str = "http://127.0.0.1/fhir";

const PIN: &str = "pin-135790";

/// A node unlocked by its admin (`root`) with a user for each role, all with [`PIN`].
struct Node {
    _dir: tempfile::TempDir,
    unlocked: std::cell::RefCell<store::Unlocked>,
    store: Arc<store::Store>,
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
    store::DataDir::init(dir.path(), "root", &vault::Pin::from(PIN), &opts).unwrap();
    let mut n = store::DataDir::open(dir.path())
        .unwrap()
        .unlock("root", &vault::Pin::from(PIN))
        .unwrap();
    for (user, role) in [
        ("dr.kim", "clinician"),
        ("fd.ana", "front_desk"),
        ("fd", "front_desk"),
        ("rn.lee", "nurse"),
        ("au.kay", "auditor"),
    ] {
        n.add_user(user, role.parse().unwrap(), &vault::Pin::from(PIN), &kdf)
            .unwrap();
    }
    let store = n.replica().clone();
    Node {
        _dir: dir,
        unlocked: std::cell::RefCell::new(n),
        store,
    }
}

impl Node {
    /// `user` logs in; their records.
    fn records(&self, user: &str) -> Records {
        let session = self
            .unlocked
            .borrow_mut()
            .login(user, &vault::Pin::from(PIN), None)
            .unwrap();
        Records::new(self.store.clone(), "records", &session).unwrap()
    }
}

fn records() -> (Node, Records) {
    let n = node();
    let r = n.records("dr.kim");
    (n, r)
}

fn load_demo(r: &Records, patients: u64) {
    for p in fhir::demo::practitioners() {
        r.create(p).unwrap();
    }
    for n in 0..patients {
        for res in fhir::demo::patient_bundle(n, 7, 2) {
            r.create(res).unwrap();
        }
    }
}

/// The resources of a Bundle as `Type/id`, without its outcome entries.
fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] != "outcome")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn create_read_update_delete_history() {
    let (_d, r) = records();
    let created = r.create(json!({"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Adaeze"]}], "gender": "female"})).unwrap();
    assert!(created.created);
    assert_eq!(created.id.len(), 32);
    let read = r.read("Patient", &created.id).unwrap();
    assert_eq!(read.resource["meta"]["versionId"], created.version.as_str());
    assert!(
        read.resource["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // Update with the version read; a stale version is 412 and changes nothing.
    let mut changed = read.resource.clone();
    changed["gender"] = json!("other");
    let v2 = r
        .update(
            "Patient",
            &created.id,
            changed.clone(),
            Some(&format!("W/\"{}\"", read.version)),
        )
        .unwrap();
    assert!(!v2.created);
    let stale = r
        .update("Patient", &created.id, changed, Some(&read.version))
        .unwrap_err();
    assert_eq!(stale.status, 412);
    assert_eq!(r.read("Patient", &created.id).unwrap().version, v2.version);
    // Update-as-create with a client id (offline devices choose their ids).
    let own = r
        .update("Patient", "dev-1", json!({"resourceType": "Patient"}), None)
        .unwrap();
    assert!(own.created);
    assert_eq!(
        r.create(json!({"resourceType": "Patient", "id": "dev-1"}))
            .unwrap_err()
            .status,
        409
    );
    let mismatch = r
        .update(
            "Patient",
            "dev-1",
            json!({"resourceType": "Patient", "id": "other"}),
            None,
        )
        .unwrap_err();
    assert_eq!(mismatch.status, 400);
    // History, newest first.
    let h = r.history("Patient", &created.id, BASE).unwrap();
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["resource"]["gender"], "other");
    assert_eq!(h["entry"][1]["request"]["method"], "POST");
    // Delete: gone (410), and deleting again is fine.
    r.delete("Patient", &created.id).unwrap();
    assert_eq!(r.read("Patient", &created.id).unwrap_err().status, 410);
    r.delete("Patient", &created.id).unwrap();
    assert_eq!(r.read("Patient", "never").unwrap_err().status, 404);
    assert_eq!(r.read("Medication", "x").unwrap_err().status, 404);
    assert_eq!(r.read("Patient", "bad/id").unwrap_err().status, 400);
}

#[test]
fn invalid_resources_are_refused_with_every_bad_path_and_nothing_is_stored() {
    let (_d, r) = records();
    let e = r
        .create(json!({"resourceType": "Observation", "id": "o1", "status": "done", "code": {"text": "HR"},
            "subject": {"reference": "Patient/nobody"}, "effectiveDateTime": "2026-13-01"}))
        .unwrap_err();
    assert_eq!(e.status, 422);
    let outcome = e.outcome();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let paths: Vec<&str> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"Observation.status"), "{paths:?}");
    assert!(
        paths.contains(&"Observation.effectiveDateTime"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"Observation.subject.reference"),
        "{paths:?}"
    );
    assert_eq!(r.read("Observation", "o1").unwrap_err().status, 404);
    assert_eq!(_d.store.db_info("records").unwrap().doc_count, 0);
}

#[test]
fn searches_by_name_birthdate_identifier_phone_and_sorts_and_pages() {
    let (_d, r) = records();
    load_demo(&r, 12);
    let patients = r.search("Patient", &q(&[("_count", "100")]), BASE).unwrap();
    assert_eq!(ids(&patients).len(), 12);
    // Pick a patient and find them every way.
    let p = r.read("Patient", "p-000003").unwrap().resource;
    let family = p["name"][0]["family"].as_str().unwrap().to_owned();
    let given = p["name"][0]["given"][0].as_str().unwrap().to_owned();
    let by_prefix = r
        .search(
            "Patient",
            &q(&[("name", &family[..3].to_lowercase())]),
            BASE,
        )
        .unwrap();
    assert!(ids(&by_prefix).contains(&"Patient/p-000003".to_owned()));
    // Accents and case do not matter: strip them from the query.
    let plain: String = given
        .chars()
        .map(|c| match c {
            'é' | 'è' => 'e',
            'ë' => 'e',
            'ü' => 'u',
            'í' => 'i',
            'á' => 'a',
            'ö' => 'o',
            'ø' => 'o',
            'ł' | 'Ł' => 'l',
            'ó' => 'o',
            c => c,
        })
        .collect::<String>()
        .to_uppercase();
    let by_full = r
        .search(
            "Patient",
            &q(&[("name", &format!("{plain} {family}"))]),
            BASE,
        )
        .unwrap();
    assert!(
        ids(&by_full).contains(&"Patient/p-000003".to_owned()),
        "{plain} {family}: {:?}",
        ids(&by_full)
    );
    let bd = p["birthDate"].as_str().unwrap();
    assert!(
        ids(&r.search("Patient", &q(&[("birthdate", bd)]), BASE).unwrap())
            .contains(&"Patient/p-000003".to_owned())
    );
    assert!(
        ids(&r
            .search("Patient", &q(&[("birthdate", &bd[..4])]), BASE)
            .unwrap())
        .contains(&"Patient/p-000003".to_owned())
    );
    let mrn = p["identifier"][0]["value"].as_str().unwrap();
    assert_eq!(
        ids(&r
            .search("Patient", &q(&[("identifier", mrn)]), BASE)
            .unwrap()),
        vec!["Patient/p-000003"]
    );
    let phone = p["telecom"][0]["value"].as_str().unwrap();
    assert!(
        ids(&r.search("Patient", &q(&[("phone", phone)]), BASE).unwrap())
            .contains(&"Patient/p-000003".to_owned())
    );
    // Sorted by birthdate, descending, in pages of 5 with a next link.
    let page1 = r
        .search(
            "Patient",
            &q(&[("_sort", "-birthdate"), ("_count", "5")]),
            BASE,
        )
        .unwrap();
    let next = page1["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("_offset=5"), "{next}");
    let page2 = r
        .search(
            "Patient",
            &q(&[("_sort", "-birthdate"), ("_count", "5"), ("_offset", "5")]),
            BASE,
        )
        .unwrap();
    let births = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["birthDate"].as_str().unwrap().to_owned())
            .collect()
    };
    let all: Vec<String> = births(&page1).into_iter().chain(births(&page2)).collect();
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(all, sorted);
    assert!(r.search("Patient", &q(&[("hair", "red")]), BASE).is_err());
}

#[test]
fn clinical_searches_everything_and_reminders() {
    let (_d, r) = records();
    load_demo(&r, 3);
    // Observations of one patient by code and date range.
    let hr = r
        .search(
            "Observation",
            &q(&[
                ("patient", "p-000001"),
                ("code", "http://loinc.org|8867-4"),
                ("_sort", "-date"),
            ]),
            BASE,
        )
        .unwrap();
    assert_eq!(ids(&hr).len(), 2);
    let newest = hr["entry"][0]["resource"]["effectiveDateTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = r
        .search(
            "Observation",
            &q(&[
                ("patient", "p-000001"),
                ("code", "8867-4"),
                ("date", &format!("ge{}", &newest[..10])),
            ]),
            BASE,
        )
        .unwrap();
    assert_eq!(ids(&since).len(), 1);
    // Tasks by status and due date.
    let open = r
        .search(
            "Task",
            &q(&[("status", "requested"), ("due", "ge2026-11-20")]),
            BASE,
        )
        .unwrap();
    assert_eq!(ids(&open).len(), 3);
    assert!(
        ids(&r
            .search("Task", &q(&[("status", "completed")]), BASE)
            .unwrap())
        .is_empty()
    );
    // $everything: the patient first, then their compartment, nobody else's.
    let all = r.everything("p-000002", BASE).unwrap();
    let got = ids(&all);
    assert_eq!(got[0], "Patient/p-000002");
    assert_eq!(got.len(), 26, "{got:?}");
    assert!(got.iter().all(|id| id.contains("p-000002")), "{got:?}");
    // Reminders: the twice-daily and the 8-hourly requests, soonest first.
    let now = fhir::time::parse("2026-11-25T12:00:00Z").unwrap();
    let due = r.reminders("p-000002", now, 2, 0).unwrap();
    assert_eq!(due.len(), 4);
    assert!(due.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(due.iter().all(|(_, t)| *t > now));
}

#[test]
fn batches_report_each_bad_resource_and_keep_the_good_ones() {
    let (_d, r) = records();
    let results = r
        .create_batch(vec![
            json!({"resourceType": "Patient", "id": "b1"}),
            json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "HR"}, "subject": {"reference": "Patient/b1"}}),
            json!({"resourceType": "Observation", "id": "o2", "status": "bogus", "code": {"text": "HR"}}),
            json!({"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "HR"}, "subject": {"reference": "Patient/nope"}}),
            json!("not an object"),
            json!({"resourceType": "Patient", "id": "b1"}),
        ])
        .unwrap();
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, vec![true, true, false, false, false, false]);
    assert_eq!(results[5].as_ref().unwrap_err().status, 409);
    assert_eq!(
        r.read("Observation", "o1").unwrap().resource["subject"]["reference"],
        "Patient/b1"
    );
    let mut exported = Vec::new();
    let n = r
        .export_each("export", |rt, res| {
            exported.push(format!("{rt}/{}", res["id"].as_str().unwrap()));
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(exported, vec!["Patient/b1", "Observation/o1"]);
}

#[test]
fn transaction_bundles_resolve_conditional_references() {
    let (_d, r) = records();
    r.create(json!({"resourceType": "Patient", "id": "known", "identifier": [{"system": "urn:mrn", "value": "M1"}]})).unwrap();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M2"}]}},
        {"resource": {"resourceType": "Observation", "id": "in-batch", "status": "final", "code": {"text": "HR"},
                      "subject": {"reference": "Patient?identifier=urn:mrn|M2"}}},
        {"resource": {"resourceType": "Observation", "id": "in-store", "status": "final", "code": {"text": "HR"},
                      "subject": {"reference": "Patient?identifier=urn%3Amrn%7CM1"}}},
        {"resource": {"resourceType": "Observation", "id": "nowhere", "status": "final", "code": {"text": "HR"},
                      "subject": {"reference": "Patient?identifier=urn:mrn|M9"}}}
    ]});
    let resources: Vec<Value> = records::resources_of_bundle(&bundle)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let results = r.import_batch(resources).unwrap();
    assert!(
        results[0].is_ok() && results[1].is_ok() && results[2].is_ok(),
        "{results:?}"
    );
    let e = results[3].as_ref().unwrap_err();
    assert!(
        e.to_string()
            .contains("conditional reference must match exactly one resource"),
        "{e}"
    );
    assert_eq!(
        r.read("Observation", "in-batch").unwrap().resource["subject"]["reference"],
        "Patient/aaaaaaaa-0000-4000-8000-000000000001"
    );
    assert_eq!(
        r.read("Observation", "in-store").unwrap().resource["subject"]["reference"],
        "Patient/known"
    );
}

/// Every path that shows or changes PHI leaves audit entries naming the user, the record and
/// the patient; failures are recorded too; the chain verifies afterwards.
#[test]
fn every_phi_path_writes_audit_entries() {
    let (_d, r) = records();
    load_demo(&r, 2);
    let store = _d.store.clone();
    let count = |action: &str, resource: &str| {
        store
            .audit_list(&store::AuditFilter::default())
            .unwrap()
            .into_iter()
            .filter(|e| e.event.action == action && e.event.resource.as_deref() == Some(resource))
            .count()
    };
    let last = || {
        store
            .audit_list(&store::AuditFilter::default())
            .unwrap()
            .pop()
            .unwrap()
    };
    // Writes (single and batch) were audited as creates, with the patient.
    assert_eq!(count("create", "Observation/p-000001-obs-0-hr"), 1);
    let e = last();
    assert_eq!(
        (e.event.user.as_str(), e.event.role.as_str()),
        ("dr.kim", "clinician")
    );
    // Reads, failed reads, searches (each shown record), history, $everything, reminders, export.
    r.read("Patient", "p-000001").unwrap();
    assert_eq!(count("read", "Patient/p-000001"), 1);
    assert_eq!(last().event.patient.as_deref(), Some("Patient/p-000001"));
    r.read("Patient", "nobody").unwrap_err();
    assert_eq!(last().event.outcome, "failure");
    let page = r
        .search(
            "Observation",
            &q(&[("patient", "p-000000"), ("code", "8867-4")]),
            BASE,
        )
        .unwrap();
    assert_eq!(ids(&page).len(), 2);
    assert_eq!(count("search", "Observation/p-000000-obs-0-hr"), 1);
    assert_eq!(count("search", "Observation/p-000000-obs-1-hr"), 1);
    r.history("Patient", "p-000000", BASE).unwrap();
    assert_eq!(count("read", "Patient/p-000000"), 1);
    r.everything("p-000001", BASE).unwrap();
    assert_eq!(count("read", "Task/p-000001-task-1"), 1);
    assert_eq!(count("read", "Patient/p-000001"), 2);
    r.reminders("p-000000", 0, 1, 0).unwrap();
    assert_eq!(count("read", "MedicationRequest/p-000000-med-0"), 1);
    r.export_each("export", |_, _| Ok(())).unwrap();
    assert_eq!(count("export", "Consent/p-000001-consent-1"), 1);
    // Update, a refused (stale) update, and delete.
    let cur = r.read("Task", "p-000000-task-1").unwrap();
    let mut t = cur.resource.clone();
    t["status"] = json!("completed");
    r.update("Task", "p-000000-task-1", t, None).unwrap();
    assert_eq!(count("update", "Task/p-000000-task-1"), 1);
    r.delete("Task", "p-000000-task-1").unwrap();
    assert_eq!(count("delete", "Task/p-000000-task-1"), 1);
    assert_eq!(last().event.patient.as_deref(), Some("Patient/p-000000"));
    assert!(matches!(store.audit_verify().unwrap(), Ok(n) if n > 100));
}

/// Runs both independent validators (`tests/fhir-validators`, installed with `npm ci` on first
/// use) over resources and fails on any error they report.
fn assert_externally_valid(resources: &[Value]) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fhir-validators");
    if !dir.join("node_modules/@medplum/core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut child = Command::new("node")
        .arg("validate.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for r in resources {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), resources.len());
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            v["medplum"].as_array().unwrap().is_empty() && v["fhir"].as_array().unwrap().is_empty(),
            "{line}"
        );
    }
}

/// What the API and the CLI emit as Bundles (searchset, history, $everything) passes both
/// independent validators.
#[test]
fn emitted_bundles_pass_the_external_validators() {
    let (_d, r) = records();
    load_demo(&r, 2);
    assert_externally_valid(&[
        r.search("Patient", &q(&[("_count", "1")]), BASE).unwrap(),
        r.history("Patient", "p-000001", BASE).unwrap(),
        r.everything("p-000001", BASE).unwrap(),
        r.search(
            "Observation",
            &q(&[("patient", "p-000000"), ("_sort", "-date")]),
            BASE,
        )
        .unwrap(),
    ]);
}

/// The audit trail exported as FHIR AuditEvents: every kind of entry is valid R4.
#[test]
fn audit_events_export_as_valid_fhir() {
    let (_d, r) = records();
    load_demo(&r, 1);
    r.read("Patient", "p-000000").unwrap();
    r.read("Patient", "missing").unwrap_err();
    r.search("Task", &q(&[("status", "requested")]), BASE)
        .unwrap();
    r.delete("Task", "p-000000-task-1").unwrap();
    r.export_each("export", |_, _| Ok(())).unwrap();
    let desk = _d.records("fd");
    desk.read("Observation", "p-000000-obs-0-hr").unwrap_err();
    let mut admin = _d.records("root");
    admin
        .set_permission(Role::Nurse, "Patient", records::Action::Export, true)
        .unwrap();
    let mut gl = _d.records("fd");
    gl.break_glass("p-000000", "collapsed in the lobby")
        .unwrap();
    _d.store
        .audit_append(&[store::AuditEvent {
            user: "x".into(),
            role: "nurse".into(),
            action: "login_failed".into(),
            outcome: "failure".into(),
            detail: Some("1 failed".into()),
            ..Default::default()
        }])
        .unwrap();
    let events: Vec<Value> = _d
        .store
        .audit_list(&store::AuditFilter::default())
        .unwrap()
        .iter()
        .map(records::audit_event)
        .collect();
    for action in [
        "create",
        "read",
        "search",
        "delete",
        "export",
        "denied",
        "permission_change",
        "break_glass",
        "login_failed",
    ] {
        assert!(
            events.iter().any(|e| e["subtype"][0]["code"] == action),
            "no {action} event"
        );
    }
    // One of each kind is enough for the validators.
    let mut seen = std::collections::BTreeSet::new();
    let sample: Vec<Value> = events
        .into_iter()
        .filter(|e| {
            seen.insert((
                e["subtype"][0]["code"].to_string(),
                e["outcome"].to_string(),
            ))
        })
        .collect();
    assert_externally_valid(&sample);
}

#[test]
fn roles_get_minimum_necessary_and_denials_are_audited() {
    use records::Action;
    let n = node();
    let store = n.store.clone();
    let open = |user: &str, _role: &str| n.records(user);
    let admin = open("root", "admin");
    for p in fhir::demo::practitioners() {
        admin.create(p).unwrap();
    }
    admin
        .create_batch(fhir::demo::patient_bundle(0, 1, 1))
        .unwrap();
    // Front desk: demographics, contacts, tasks and calls; no notes, vitals or medications.
    let desk = open("fd.ana", "front_desk");
    desk.read("Patient", "p-000000").unwrap();
    desk.read("RelatedPerson", "p-000000-proxy").unwrap();
    desk.read("Task", "p-000000-task-1").unwrap();
    for (rt, id) in [
        ("DocumentReference", "p-000000-note-1"),
        ("Observation", "p-000000-obs-0-hr"),
        ("MedicationRequest", "p-000000-med-0"),
    ] {
        let e = desk.read(rt, id).unwrap_err();
        assert_eq!(e.status, 403, "{rt}");
        assert!(e.to_string().contains("front_desk"), "{e}");
    }
    assert_eq!(
        desk.search("Observation", &[], BASE).unwrap_err().status,
        403
    );
    assert_eq!(desk.reminders("p-000000", 0, 1, 0).unwrap_err().status, 403);
    let chart = ids(&desk.everything("p-000000", BASE).unwrap());
    assert!(
        chart.iter().all(
            |id| ["Patient/", "RelatedPerson/", "Task/", "Communication/"]
                .iter()
                .any(|p| id.starts_with(p))
        ),
        "{chart:?}"
    );
    assert_eq!(chart.len(), 5);
    let created = desk
        .create(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}))
        .unwrap_err();
    assert_eq!(created.status, 403);
    // Nurses chart but cannot delete or export; auditors see no charts.
    let nurse = open("rn.lee", "nurse");
    nurse.read("Observation", "p-000000-obs-0-hr").unwrap();
    assert_eq!(
        nurse
            .delete("Observation", "p-000000-obs-0-hr")
            .unwrap_err()
            .status,
        403
    );
    // A role that may export nothing is refused outright, not handed an empty export.
    let mut exported = 0;
    let refused = nurse
        .export_each("export", |_, _| {
            exported += 1;
            Ok(())
        })
        .unwrap_err();
    assert_eq!((refused.status, exported), (403, 0));
    let auditor = open("au.kay", "auditor");
    assert_eq!(auditor.read("Patient", "p-000000").unwrap_err().status, 403);
    // Every denial is in the trail, with who and what.
    let denied = store
        .audit_list(&store::AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == "denied")
        .collect::<Vec<_>>();
    assert!(
        denied.iter().any(|e| e.event.user == "fd.ana"
            && e.event.detail.as_deref() == Some("read DocumentReference"))
    );
    assert!(denied.iter().any(
        |e| e.event.user == "rn.lee" && e.event.detail.as_deref() == Some("delete Observation")
    ));
    assert!(
        denied.iter().any(
            |e| e.event.user == "rn.lee" && e.event.detail.as_deref() == Some("export Patient")
        )
    );
    assert!(
        denied
            .iter()
            .any(|e| e.event.user == "au.kay" && e.event.outcome == "denied")
    );
    // An admin edits the matrix (stored, audited); others cannot.
    let mut admin = open("root", "admin");
    admin
        .set_permission(Role::FrontDesk, "Observation", Action::Read, true)
        .unwrap();
    open("fd.ana", "front_desk")
        .read("Observation", "p-000000-obs-0-hr")
        .unwrap();
    let mut nurse = open("rn.lee", "nurse");
    assert_eq!(
        nurse
            .set_permission(Role::Nurse, "Observation", Action::Delete, true)
            .unwrap_err()
            .status,
        403
    );
    // The change names the cell and its value before and after, and the matrix is not a
    // document: no `_local` document holds it, so no document API or replication reaches it.
    let changes: Vec<_> = store
        .audit_list(&store::AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == "permission_change")
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0].event.detail.as_deref(),
        Some("granted front_desk read Observation (before: refused, after: allowed)")
    );
    assert_eq!(changes[0].event.user, "root");
    assert!(matches!(
        store.get_local(
            "records",
            &store::DocId::parse("_local/hearth-permissions").unwrap()
        ),
        Err(store::Error::NotFound(_))
    ));
    assert!(
        records::Permissions::load(&store, "records")
            .unwrap()
            .allows(Role::FrontDesk, "Observation", Action::Read)
    );
    assert!(store.audit_verify().unwrap().is_ok());
}

#[test]
fn break_glass_opens_one_chart_for_an_hour_and_flags_everything() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let n = node();
    let store = n.store.clone();
    let now = Arc::new(AtomicI64::new(1_900_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst)) as Arc<dyn Fn() -> i64 + Send + Sync>
    };
    let open = |user: &str, _role: &str| n.records(user).with_clock(clock.clone());
    let admin = open("root", "admin");
    for p in fhir::demo::practitioners() {
        admin.create(p).unwrap();
    }
    for n in 0..2 {
        admin
            .create_batch(fhir::demo::patient_bundle(n, 1, 1))
            .unwrap();
    }
    let mut desk = open("fd.ana", "front_desk");
    assert_eq!(
        desk.read("Observation", "p-000000-obs-0-hr")
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        desk.break_glass("p-000000", "urgent").unwrap_err().status,
        400
    );
    assert_eq!(
        desk.break_glass("nobody", "patient collapsed at the desk")
            .unwrap_err()
            .status,
        404
    );
    // Hidden is not absent: before break-glass the chart names what the role does not see.
    let hidden = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "outcome")
            .flat_map(|e| e["resource"]["issue"].as_array().unwrap().clone())
            .map(|i| {
                assert_eq!(i["code"], "suppressed");
                assert!(
                    i["diagnostics"]
                        .as_str()
                        .unwrap()
                        .contains("hidden for your role (front_desk); break-glass to view")
                );
                i["expression"][0].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let before = desk.everything("p-000000", BASE).unwrap();
    let not_shown = hidden(&before);
    for rt in [
        "AllergyIntolerance",
        "MedicationRequest",
        "Observation",
        "DocumentReference",
    ] {
        assert!(not_shown.iter().any(|h| h == rt), "{rt}: {not_shown:?}");
    }
    assert!(
        !not_shown.iter().any(|h| h == "RelatedPerson"),
        "{not_shown:?}"
    );
    let g = desk
        .break_glass("p-000000", "patient collapsed at the desk")
        .unwrap();
    assert_eq!(g.until, 1_900_000_000 + 3600);
    // The chart opens (even from a fresh instance, as the next CLI command would be) ...
    let desk = open("fd.ana", "front_desk");
    desk.read("Observation", "p-000000-obs-0-hr").unwrap();
    assert_eq!(
        ids(&desk
            .search("Observation", &q(&[("patient", "p-000000")]), BASE)
            .unwrap())
        .len(),
        6
    );
    let opened = desk.everything("p-000000", BASE).unwrap();
    assert_eq!(ids(&opened).len(), 20);
    assert!(
        hidden(&opened).is_empty(),
        "nothing is hidden under break-glass"
    );
    // ... only that patient's ...
    assert_eq!(
        desk.read("Observation", "p-000001-obs-0-hr")
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        desk.search("Observation", &q(&[("patient", "p-000001")]), BASE)
            .unwrap_err()
            .status,
        403
    );
    // ... read-only, and every access is flagged.
    assert_eq!(
        desk.delete("Observation", "p-000000-obs-0-hr")
            .unwrap_err()
            .status,
        403
    );
    let flagged = store
        .audit_list(&store::AuditFilter {
            break_glass: true,
            ..Default::default()
        })
        .unwrap();
    assert!(flagged.iter().any(|e| e.event.action == "break_glass"
        && e.event.detail.as_deref() == Some("patient collapsed at the desk")));
    assert!(flagged.iter().any(|e| e.event.action == "read"
        && e.event.resource.as_deref() == Some("Observation/p-000000-obs-0-hr")));
    assert!(flagged.iter().all(
        |e| e.event.user == "fd.ana" && e.event.patient.as_deref() == Some("Patient/p-000000")
    ));
    // After an hour the grant is gone.
    now.fetch_add(3601, Ordering::SeqCst);
    assert_eq!(
        desk.read("Observation", "p-000000-obs-0-hr")
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        open("fd.ana", "front_desk")
            .everything("p-000000", BASE)
            .map(|b| ids(&b).len())
            .unwrap(),
        5
    );
}
