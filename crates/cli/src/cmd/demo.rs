//! `hearth demo`: creates a demo node in a local folder, loads a small clinic's records, shows
//! revisions, a replication conflict, the changes feed and that nothing readable is on disk.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use revtree::{Rev, Revisions};
use serde_json::{Value, json};
use store::{ChangesQuery, DataDir, DocId, DocWrite, GetOptions, InitOptions};
use vault::Pin;

use super::Context;

/// The demo's PIN. Printed on purpose: demo data is fictional.
const DEMO_PIN: &str = "246810";
const DEMO_USER: &str = "demo.admin";
const DB: &str = "records";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to create the demo node.
    #[arg(long, default_value = "demo-data")]
    pub folder: PathBuf,
}

fn records() -> Vec<Value> {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    vec![
        json!({"_id": "Patient/p-1001", "resourceType": "Patient", "id": "p-1001",
               "name": [{"family": "Okafor", "given": ["Adaeze"]}], "gender": "female", "birthDate": "1948-03-12",
               "telecom": [{"system": "phone", "value": "555-0101"}]}),
        json!({"_id": "Patient/p-1002", "resourceType": "Patient", "id": "p-1002",
               "name": [{"family": "Lindqvist", "given": ["Henrik"]}], "gender": "male", "birthDate": "1939-11-02"}),
        json!({"_id": "Patient/p-1003", "resourceType": "Patient", "id": "p-1003",
               "name": [{"family": "Moreno", "given": ["Lucía"]}], "gender": "female", "birthDate": "1962-07-30"}),
        json!({"_id": "RelatedPerson/rp-1", "resourceType": "RelatedPerson", "id": "rp-1",
               "patient": {"reference": "Patient/p-1001"}, "name": [{"family": "Okafor", "given": ["Chidi"]}],
               "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "HPOWATT"}]}]}),
        json!({"_id": "Observation/o-1", "resourceType": "Observation", "id": "o-1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
               "subject": {"reference": "Patient/p-1001"}, "effectiveDateTime": "2026-11-20T09:30:00Z",
               "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"_id": "Task/t-1", "resourceType": "Task", "id": "t-1", "status": "requested", "intent": "order",
               "description": "Follow-up call about blood pressure", "for": {"reference": "Patient/p-1002"}}),
        json!({"_id": "DocumentReference/n-1", "resourceType": "DocumentReference", "id": "n-1", "status": "current",
               "subject": {"reference": "Patient/p-1003"},
               "_attachments": {"signature.png": {"content_type": "image/png", "data": png}}}),
    ]
}

pub fn run(_ctx: &mut Context, args: Args) -> Result<()> {
    let folder = args.folder;
    let pin = Pin::from(DEMO_PIN);
    let created = !folder.join(store::VAULT_FILE).exists();
    if created {
        let t = Instant::now();
        DataDir::init(&folder, DEMO_USER, &pin, &InitOptions::default())
            .with_context(|| format!("cannot create the demo node in {}", folder.display()))?;
        outln!(
            "1. Created an encrypted demo node in {} ({:.0} ms: device secret, vault, SQLCipher file).",
            folder.display(),
            t.elapsed().as_secs_f64() * 1000.0
        );
    } else {
        outln!("1. Reusing the demo node in {}.", folder.display());
    }
    let t = Instant::now();
    let node = DataDir::open(&folder)?
        .unlock(DEMO_USER, &pin)
        .context("cannot unlock the demo node")?;
    outln!(
        "2. Unlocked as '{DEMO_USER}' with PIN {DEMO_PIN} in {:.0} ms (Argon2id 64 MiB, 3 passes; no key on disk).",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let s = &node.store;
    s.ensure_db(DB)?;

    let writes = records()
        .into_iter()
        .map(|v| DocWrite::from_json(v, None))
        .collect::<Result<Vec<_>, _>>()?;
    let results = s.bulk_docs(DB, writes, true)?;
    let new = results.iter().filter(|r| r.is_ok()).count();
    outln!(
        "3. Wrote {new} new FHIR records in one transaction ({} were already there): patients, a healthcare proxy, vitals, a task, a signed note.",
        results.len() - new
    );

    // An offline edit here, and a different edit of the same revision arriving by replication.
    let pid = DocId::parse("Patient/p-1002")?;
    let current = s.get(DB, &pid, &GetOptions::default())?;
    if current.rev.generation() == 1 {
        let mut here = current.body.clone();
        here.insert(
            "telecom".into(),
            json!([{"system": "phone", "value": "555-0199"}]),
        );
        let local = s.put(
            DB,
            DocWrite::new(pid.clone(), Some(current.rev.clone()), here),
        )?;
        let mut there = current.body.clone();
        there.insert("address".into(), json!([{"city": "Tromsø"}]));
        let foreign = Rev::derive(
            Some(&current.rev),
            false,
            &revtree::canonical_json(&there),
            &[],
        );
        let mut w = DocWrite::new(pid.clone(), Some(foreign.clone()), there);
        w.revisions = Revisions::from_path(&[foreign.clone(), current.rev.clone()]);
        s.bulk_docs(DB, vec![w], false)?;
        outln!("4. Edited {pid} here ({local}) while another device edited it too ({foreign}).");
    } else {
        outln!("4. {pid} already carries the demo conflict.");
    }
    let doc = s.get(
        DB,
        &pid,
        &GetOptions {
            conflicts: true,
            ..Default::default()
        },
    )?;
    outln!(
        "   Winner {} (deterministic on every replica); kept for review: {:?}.",
        doc.rev,
        doc.conflicts
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );

    let changes = s.changes(DB, &ChangesQuery::default())?;
    outln!(
        "5. Changes feed: {} documents, last sequence {}.",
        changes.results.len(),
        changes.last_seq
    );
    for c in &changes.results {
        outln!("   seq {:>3}  {}  {}", c.seq, c.changes[0], c.id);
    }

    s.checkpoint()?;
    let needle = "Lindqvist";
    let mut leaked = Vec::new();
    for entry in std::fs::read_dir(&folder)? {
        let p = entry?.path();
        if p.is_file() {
            let bytes = std::fs::read(&p)?;
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                leaked.push(p.display().to_string());
            }
        }
    }
    if leaked.is_empty() {
        outln!(
            "6. Searched every file in {} for the patient name \"{needle}\": not found. The data is encrypted at rest.",
            folder.display()
        );
    } else {
        anyhow::bail!("plaintext found on disk in {leaked:?}");
    }
    outln!("");
    outln!(
        "Try: hearth --data-dir {} --user {DEMO_USER} doc get Patient/p-1002 --conflicts",
        folder.display()
    );
    Ok(())
}
