//! `hearth-bench`: the store's performance on this machine, SQLCipher and plain SQLite side by
//! side on the same code path (the full document path: revision tree, changes feed).
//!
//! Run: `cargo run --release -p hearth-bench -- [--docs N] [--reads N]`. Results go to stdout
//! as a Markdown table; `docs/benchmarks.md` records a run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use store::{ChangesQuery, DataDir, DocId, DocWrite, GetOptions, InitOptions, Store};
use vault::{Dek, Pin};

const DB: &str = "bench";

struct Config {
    docs: usize,
    reads: usize,
    batch: usize,
}

fn parse_args() -> Result<Config> {
    let mut c = Config {
        docs: 100_000,
        reads: 200_000,
        batch: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--docs" => c.docs = num("--docs")?,
            "--reads" => c.reads = num("--reads")?,
            "--batch" => c.batch = num("--batch")?.max(1),
            "--help" | "-h" => {
                println!(
                    "hearth-bench: the store's write and read speed, SQLCipher beside plain SQLite\n\n\
                     Usage: hearth-bench [--docs N] [--reads N] [--batch N]\n\n\
                     \x20 --docs N    documents written (default 100000)\n\
                     \x20 --reads N   point reads timed (default 200000)\n\
                     \x20 --batch N   documents per transaction (default 1000)\n\n\
                     Prints a Markdown table; docs/benchmarks.md records a run."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; use --docs N, --reads N, --batch N"),
        }
    }
    Ok(c)
}

/// A ~1 KB FHIR-like Observation.
fn doc(i: usize) -> Map<String, Value> {
    let v = json!({
        "resourceType": "Observation",
        "id": format!("obs-{i:08}"),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/p-{:06}", i % 5000)},
        "effectiveDateTime": "2026-11-20T09:30:00Z",
        "valueQuantity": {"value": 60 + (i % 40), "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
        "note": [{"text": "x".repeat(560)}]
    });
    v.as_object().cloned().unwrap_or_default()
}

fn id(i: usize) -> Result<DocId> {
    Ok(DocId::parse(&format!("Observation/obs-{i:08}"))?)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One store under test: encrypted or plain, with its own file.
struct Subject {
    key: Option<Dek>,
    path: std::path::PathBuf,
}

impl Subject {
    fn open(&self, cache_mib: u32) -> Result<Store> {
        Ok(match &self.key {
            Some(k) => Store::open_with_cache(&self.path, k, cache_mib)?,
            None => Store::open_unencrypted_for_benchmark(&self.path, cache_mib)?,
        })
    }
}

/// Writes every document in batches into a fresh file; returns docs/s.
fn write_all(sub: &Subject, cfg: &Config) -> Result<f64> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = sub.path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let s = sub.open(store::DEFAULT_CACHE_MIB)?;
    s.create_db(DB)?;
    // Build the writes outside the timed section; the timed part is the store's whole path.
    let mut batches = Vec::new();
    for start in (0..cfg.docs).step_by(cfg.batch) {
        let mut b = Vec::with_capacity(cfg.batch);
        for i in start..(start + cfg.batch).min(cfg.docs) {
            b.push(DocWrite::new(id(i)?, None, doc(i)));
        }
        batches.push(b);
    }
    let t = Instant::now();
    for b in batches {
        for r in s.bulk_docs(DB, b, true)? {
            r?;
        }
    }
    let took = t.elapsed();
    s.checkpoint()?;
    Ok(rate(cfg.docs, took))
}

/// Random point reads by id; returns reads/s.
fn read_all(s: &Store, ids: &[DocId]) -> Result<f64> {
    let opts = GetOptions::default();
    let t = Instant::now();
    for i in ids {
        s.get(DB, i, &opts)?;
    }
    Ok(rate(ids.len(), t.elapsed()))
}

/// Random point reads returning the stored JSON (the HTTP path); returns reads/s.
fn read_raw_all(s: &Store, ids: &[DocId]) -> Result<f64> {
    let t = Instant::now();
    for i in ids {
        let d = s.get_raw(DB, i)?;
        std::hint::black_box(d.to_json_bytes());
    }
    Ok(rate(ids.len(), t.elapsed()))
}

/// Reads the whole changes feed in pages of 1000; returns rows/s.
fn scan_all(s: &Store, expect: usize) -> Result<f64> {
    let t = Instant::now();
    let mut since = 0;
    let mut rows = 0;
    loop {
        let page = s.changes(
            DB,
            &ChangesQuery {
                since,
                limit: Some(1000),
                ..Default::default()
            },
        )?;
        if page.results.is_empty() {
            break;
        }
        rows += page.results.len();
        since = page.last_seq;
    }
    if rows != expect {
        bail!("changes feed returned {rows} rows for {expect} documents");
    }
    Ok(rate(rows, t.elapsed()))
}

fn lcg(n: usize, modulo: usize) -> impl Iterator<Item = usize> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n).map(move |_| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % modulo
    })
}

fn unlock_ms() -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let pin = Pin::from("246810");
    DataDir::init(dir.path(), "admin", &pin, &InitOptions::default())?;
    let mut unlock = Vec::new();
    let mut open_raw = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let node = DataDir::open(dir.path())?.unlock("admin", &pin)?;
        unlock.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(node);
    }
    let key = Dek::generate()?;
    let raw = dir.path().join("raw.db");
    Store::open(&raw, &key)?;
    for _ in 0..5 {
        let t = Instant::now();
        let s = Store::open(&raw, &key)?;
        open_raw.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(s);
    }
    unlock.sort_by(f64::total_cmp);
    open_raw.sort_by(f64::total_cmp);
    Ok((unlock[2], open_raw[2]))
}

const ROUNDS: usize = 5;

fn main() -> Result<()> {
    let cfg = parse_args()?;
    let dir = tempfile::tempdir()?;
    eprintln!(
        "{ROUNDS} rounds, alternating SQLCipher and plain SQLite: {} documents of ~1 KB in batches of {}, {} random reads, a full changes scan",
        cfg.docs, cfg.batch, cfg.reads
    );
    let subjects = [
        Subject {
            key: Some(Dek::generate()?),
            path: dir.path().join("sqlcipher.db"),
        },
        Subject {
            key: None,
            path: dir.path().join("plain.db"),
        },
    ];
    let ids: Vec<DocId> = lcg(cfg.reads, cfg.docs).map(id).collect::<Result<_>>()?;
    // [subject][measure] -> samples
    let mut samples = vec![vec![Vec::new(); 5]; 2];
    for round in 0..ROUNDS {
        // Alternate which store goes first, so neither always runs on a fresher machine.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let sub = &subjects[k];
            samples[k][0].push(write_all(sub, &cfg)?);
            let s = sub.open(store::DEFAULT_CACHE_MIB)?;
            read_all(&s, &ids)?; // warm the page cache to the working set
            samples[k][1].push(read_all(&s, &ids)?);
            samples[k][3].push(scan_all(&s, cfg.docs)?);
            samples[k][4].push(read_raw_all(&s, &ids)?);
            drop(s);
            // A 2 MiB cache: most reads miss, and under SQLCipher each miss decrypts a page.
            let small = sub.open(2)?;
            samples[k][2].push(read_all(&small, &ids[..ids.len() / 4])?);
        }
        eprintln!("round {} of {ROUNDS} done", round + 1);
    }
    let file_mib = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / (1024.0 * 1024.0))
            .unwrap_or(0.0)
    };
    let (unlock, open) = unlock_ms()?;
    let names = [
        "batched writes (1,000 per transaction), docs/s",
        &format!(
            "point reads by id, parsed JSON, {} MiB cache (warm), reads/s",
            store::DEFAULT_CACHE_MIB
        ),
        "point reads by id, 2 MiB cache (mostly misses), reads/s",
        "changes feed scan, rows/s",
        &format!(
            "point reads by id as stored JSON (HTTP path), {} MiB cache (warm), reads/s",
            store::DEFAULT_CACHE_MIB
        ),
    ];
    // Noise on a shared machine only ever slows a round down, so the best round is the most
    // repeatable figure; the median is shown beside it.
    let best = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    println!(
        "| measure ({ROUNDS} rounds) | SQLCipher best | plain best | overhead (best) | SQLCipher median | plain median | overhead (median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (m, name) in names.iter().enumerate() {
        let (eb, pb) = (best(&samples[0][m]), best(&samples[1][m]));
        let (em, pm) = (median(samples[0][m].clone()), median(samples[1][m].clone()));
        println!(
            "| {name} | {eb:.0} | {pb:.0} | {:.1}% | {em:.0} | {pm:.0} | {:.1}% |",
            (pb - eb) / pb * 100.0,
            (pm - em) / pm * 100.0
        );
    }
    println!(
        "| file size, MiB | {:.1} | {:.1} | | | | |",
        file_mib(&subjects[0].path),
        file_mib(&subjects[1].path)
    );
    println!();
    println!(
        "Unlock (Argon2id 64 MiB, 3 passes + HKDF + AES-GCM unwrap + open): {unlock:.0} ms, median of 5; opening the SQLCipher file with the raw key alone: {open:.2} ms."
    );
    Ok(())
}
