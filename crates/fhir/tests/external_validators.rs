//! What Hearth emits must be valid FHIR R4 for independent validators: `@medplum/core`
//! (structure, cardinality, invariants) and the `fhir` npm package (required bindings, reference
//! types), installed from the npm registry into `tests/fhir-validators` on first run.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn validators_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fhir-validators")
}

/// Installs the validators once per test process (tests run in parallel threads).
fn installed_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = validators_dir();
            if !dir.join("node_modules/@medplum/core").exists() {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(&dir)
                    .status()
                    .expect("npm is needed for the external FHIR validators (Node.js 20+)");
                assert!(status.success(), "npm ci failed in {}", dir.display());
            }
            dir
        })
        .clone()
}

/// Runs the validators over resources; returns (id, medplum errors, fhir errors) per resource.
fn external(resources: &[Value]) -> Vec<(String, Vec<String>, Vec<String>)> {
    let dir = installed_dir();
    let mut child = Command::new("node")
        .arg("validate.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed for the external FHIR validators");
    let mut stdin = child.stdin.take().unwrap();
    for r in resources {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "validator script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<(String, Vec<String>, Vec<String>)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let list = |k: &str| {
                v[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            };
            (
                v["id"].as_str().unwrap().to_owned(),
                list("medplum"),
                list("fhir"),
            )
        })
        .collect();
    assert_eq!(lines.len(), resources.len());
    lines
}

#[test]
fn demo_clinic_resources_pass_both_external_validators() {
    let mut resources = fhir::demo::practitioners();
    for n in 0..4 {
        resources.extend(fhir::demo::patient_bundle(n, 2026, 2));
    }
    // Every type Hearth stores appears.
    for (rt, _) in fhir::schema::RESOURCES {
        assert!(
            resources.iter().any(|r| r["resourceType"] == *rt),
            "demo data lacks {rt}"
        );
    }
    for r in &resources {
        let ours = fhir::validate(r);
        assert!(ours.issues.is_empty(), "{}: {:?}", r["id"], ours.issues);
    }
    for (id, medplum, fhir_pkg) in external(&resources) {
        assert!(medplum.is_empty(), "{id}: @medplum/core: {medplum:?}");
        assert!(fhir_pkg.is_empty(), "{id}: fhir: {fhir_pkg:?}");
    }
}

#[test]
fn what_the_external_validators_reject_hearth_rejects_too() {
    let bad = [
        json!({"resourceType": "Patient", "id": "a", "gender": "F"}),
        json!({"resourceType": "Patient", "id": "b", "bogus": 1}),
        json!({"resourceType": "Observation", "id": "c", "status": "final"}),
        json!({"resourceType": "Observation", "id": "d", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "7"}}),
        json!({"resourceType": "Patient", "id": "e", "name": {"family": "X"}}),
        json!({"resourceType": "Task", "id": "f", "status": "requested"}),
    ];
    let results = external(&bad);
    for (r, (id, medplum, fhir_pkg)) in bad.iter().zip(results) {
        assert!(
            !medplum.is_empty() || !fhir_pkg.is_empty(),
            "{id}: the external validators accept it, so this case proves nothing"
        );
        assert!(
            !fhir::validate(r).issues.is_empty(),
            "{id}: Hearth accepts what {medplum:?} {fhir_pkg:?} reject"
        );
    }
}

#[test]
fn deidentified_resources_stay_valid_for_both_external_validators() {
    let mut resources = fhir::demo::practitioners();
    for n in 0..3 {
        resources.extend(fhir::demo::patient_bundle(n, 77, 1));
    }
    let mut redactions = fhir::deid::Redactions::default();
    for r in &resources {
        redactions.learn(r);
    }
    let d = fhir::deid::Deidentifier::new(b"k", redactions, 2026);
    let out: Vec<Value> = resources.iter().filter_map(|r| d.apply(r)).collect();
    assert_eq!(out.len(), resources.len());
    for r in &out {
        assert!(
            fhir::validate(r).issues.is_empty(),
            "{}: {:?}",
            r["id"],
            fhir::validate(r).issues
        );
    }
    for (id, medplum, fhir_pkg) in external(&out) {
        assert!(medplum.is_empty(), "{id}: @medplum/core: {medplum:?}");
        assert!(fhir_pkg.is_empty(), "{id}: fhir: {fhir_pkg:?}");
    }
}
