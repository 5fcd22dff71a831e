//! `hearth demo`: creates a demo node in a local folder, loads a deterministic clinic through
//! the FHIR layer, and shows revisions and a replication conflict, offline search, medication
//! reminders, the changes feed, and that nothing readable is on disk.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use records::Records;
use revtree::{Rev, Revisions};
use serde_json::{Value, json};
use store::{DataDir, DocId, DocWrite, GetOptions, InitOptions};
use vault::Pin;

use super::Context;

/// The demo's PIN. Printed on purpose: demo data is fictional.
const DEMO_PIN: &str = "246810";
const DEMO_USER: &str = "demo.admin";
const DB: &str = super::DEFAULT_DB;
const SEED: u64 = 2026;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to create the demo node.
    #[arg(long, default_value = "demo-data")]
    pub folder: PathBuf,
    /// How many demo patients.
    #[arg(long, default_value_t = 200)]
    pub patients: u64,
    /// Do not open the Patient Explorer at the end (for scripts).
    #[arg(long)]
    pub no_app: bool,
    /// Where the Patient Explorer listens (loopback only).
    #[arg(long, default_value = "127.0.0.1:8780")]
    pub listen: std::net::SocketAddr,
}

fn entries(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|a| a.iter().map(|e| &e["resource"]).collect())
        .unwrap_or_default()
}

pub fn run(_ctx: &mut Context, args: Args) -> Result<()> {
    let folder = args.folder;
    let pin = Pin::from(DEMO_PIN);
    if !folder.join(store::VAULT_FILE).exists() {
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
    let r = Records::new(node.replica().clone(), DB, &node.session()?)?;
    let s = node.admin_store("hearth demo")?;

    let before = s.db_info(DB)?.doc_count;
    if before == 0 {
        let t = Instant::now();
        let mut batch = fhir::demo::practitioners();
        let mut written = 0;
        for n in 0..args.patients {
            batch.extend(fhir::demo::patient_bundle(n, SEED, 2));
            if batch.len() >= 1000 || n + 1 == args.patients {
                for res in r.create_batch(std::mem::take(&mut batch))? {
                    res.map_err(|e| anyhow::anyhow!("a demo resource was rejected: {e}"))?;
                    written += 1;
                }
            }
        }
        outln!(
            "3. Loaded a clinic of {} patients: {written} FHIR R4 resources (proxies, vitals, medications, notes, tasks, calls, signed consents), validated and indexed, in {:.1} s.",
            args.patients,
            t.elapsed().as_secs_f64()
        );
    } else {
        outln!("3. The clinic is loaded already ({before} resources).");
    }

    // An offline edit here, and a different edit of the same revision arriving by replication.
    let pid = DocId::parse("Patient/p-000001")?;
    let current = s.get(DB, &pid, &GetOptions::default())?;
    if current.rev.generation() == 1 {
        let mut here = current.body.clone();
        here.insert("maritalStatus".into(), json!({"text": "Widowed"}));
        let local = s.put(
            DB,
            DocWrite::new(pid.clone(), Some(current.rev.clone()), here),
        )?;
        let mut there = current.body.clone();
        there.insert(
            "communication".into(),
            json!([{"language": {"text": "Norwegian"}}]),
        );
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
    let losers: Vec<String> = doc
        .conflicts
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    outln!(
        "   Winner {} (the same on every replica); kept for review, not lost: {losers:?}.",
        doc.rev
    );

    let patient = r.read("Patient", "p-000003")?.resource;
    let family = patient["name"][0]["family"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let prefix: String = family.chars().take(3).collect::<String>().to_lowercase();
    let t = Instant::now();
    let found = r.search(
        "Patient",
        &[
            ("name".into(), prefix.clone()),
            ("_count".into(), "5".into()),
        ],
        "urn:hearth:demo",
    )?;
    let took = t.elapsed().as_secs_f64() * 1000.0;
    let names: Vec<String> = entries(&found)
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"][0]["given"][0].as_str().unwrap_or(""),
                p["name"][0]["family"].as_str().unwrap_or("")
            )
        })
        .collect();
    outln!("5. Offline search: name=\"{prefix}\" found {names:?} in {took:.1} ms.");
    let hr = r.search(
        "Observation",
        &[
            ("patient".into(), "p-000003".into()),
            ("code".into(), "http://loinc.org|8867-4".into()),
            ("_sort".into(), "-date".into()),
        ],
        "urn:hearth:demo",
    )?;
    let rates: Vec<String> = entries(&hr)
        .iter()
        .map(|o| {
            format!(
                "{} on {}",
                o["valueQuantity"]["value"],
                o["effectiveDateTime"]
                    .as_str()
                    .unwrap_or("")
                    .get(..10)
                    .unwrap_or("")
            )
        })
        .collect();
    outln!("   Heart rate of Patient/p-000003, newest first: {rates:?}.");
    let due = r.reminders("p-000003", fhir::time::now(), 2, 0)?;
    let due: Vec<String> = due
        .iter()
        .map(|(m, t)| format!("{m} at {}", fhir::time::instant(*t)))
        .collect();
    outln!("   Next medication reminders (computed offline): {due:?}.");

    let info = s.db_info(DB)?;
    outln!(
        "6. Changes feed: {} documents at sequence {} (each once, at its latest change), ready to replicate.",
        info.doc_count,
        info.update_seq
    );

    s.checkpoint()?;
    let mut leaked = Vec::new();
    for entry in std::fs::read_dir(&folder)? {
        let p = entry?.path();
        if p.is_file() {
            let bytes = std::fs::read(&p)?;
            if !family.is_empty() && bytes.windows(family.len()).any(|w| w == family.as_bytes()) {
                leaked.push(p.display().to_string());
            }
        }
    }
    if !leaked.is_empty() {
        bail!("plaintext found on disk in {leaked:?}");
    }
    outln!(
        "7. Searched every file in {} for the patient name \"{family}\": not found. The data is encrypted at rest.",
        folder.display()
    );
    outln!("");
    outln!(
        "Try: hearth --data-dir {} --user {DEMO_USER} fhir search Patient name={prefix}",
        folder.display()
    );
    outln!(
        "     hearth --data-dir {} app    # Patient Explorer and the FHIR API on http://127.0.0.1:8780/",
        folder.display()
    );
    if args.no_app {
        return Ok(());
    }
    app::check_loopback(&args.listen).map_err(|e| anyhow::anyhow!(e))?;
    drop(r);
    drop(node);
    outln!("");
    outln!("8. Opening the Patient Explorer (the web app clinicians use) on this device:");
    let state = super::app::locked_state(&folder, 15 * 60)?;
    super::app::serve(
        state,
        &folder,
        args.listen,
        "the demo clinic",
        15 * 60,
        Some(&format!("as '{DEMO_USER}' with PIN {DEMO_PIN}")),
    )
}
