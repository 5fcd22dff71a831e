//! `hearth-search-bench`: offline search on a clinic-sized store. Loads the deterministic demo
//! clinic (`--patients` patients, each with proxies, vitals, medications, notes, tasks,
//! communications, consents: 24 other resources per patient) through the full FHIR write path
//! (validation, reference checks, search index), then times first-page searches.
//!
//! Run: `cargo run --release -p hearth-bench --bin hearth-search-bench -- --patients 100000`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use records::Records;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let mut patients: u64 = 100_000;
    let mut queries: usize = 500;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--patients" => patients = num("--patients")?,
            "--queries" => queries = num("--queries")? as usize,
            "--help" | "-h" => {
                println!(
                    "hearth-search-bench: offline search on a clinic-sized store\n\n\
                     Usage: hearth-search-bench [--patients N] [--queries N]\n\n\
                     \x20 --patients N  demo patients loaded through the FHIR layer (default 100000)\n\
                     \x20 --queries N   searches timed per query kind (default 500)\n\n\
                     Prints a Markdown table; docs/benchmarks.md records a run."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; use --patients N, --queries N"),
        }
    }
    let dir = tempfile::tempdir()?;
    let pin = vault::Pin::from("bench-pin-1");
    store::DataDir::init(dir.path(), "bench", &pin, &store::InitOptions::default())?;
    let node = store::DataDir::open(dir.path())?.unlock("bench", &pin)?;
    let r = Records::new(node.replica().clone(), "records", &node.session()?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = Instant::now();
    let mut written = 0u64;
    let mut batch = fhir::demo::practitioners();
    for n in 0..patients {
        batch.extend(fhir::demo::patient_bundle(n, 2026, 2));
        if batch.len() >= 2000 || n + 1 == patients {
            for res in r
                .create_batch(std::mem::take(&mut batch))
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                res.map_err(|e| anyhow::anyhow!("{e}"))?;
                written += 1;
            }
            if n % 10_000 < 80 {
                eprintln!(
                    "{} patients, {written} resources, {:.0} s",
                    n + 1,
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
    let load = t.elapsed();
    r.checkpoint().map_err(|e| anyhow::anyhow!("{e}"))?;
    let size = std::fs::metadata(dir.path().join("hearth.db"))?.len() as f64 / (1024.0 * 1024.0);

    // Queries: prefixes of 2-5 letters of family and given names, with and without accents,
    // plus family+given pairs; a fixed pseudo-random sequence.
    let names = [
        "okafor", "lindq", "mor", "ngu", "kow", "hadd", "o'b", "mul", "sønd", "garc", "tan", "abe",
        "dub", "ros", "iva", "sin", "men", "björ", "luk", "fern", "zoe", "lucia", "jose", "ingrid",
        "seán", "ad", "he", "ma", "so", "ki",
    ];
    let mut rng = fhir::demo::Rng::new(99);
    let run = |params: Vec<(String, String)>| -> Result<(Duration, usize)> {
        let t = Instant::now();
        let b = r
            .search("Patient", &params, "http://127.0.0.1/fhir")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((t.elapsed(), b["entry"].as_array().map_or(0, Vec::len)))
    };
    let mut kinds: Vec<(&str, Vec<Duration>, usize)> = Vec::new();
    for (label, sort) in [
        ("name, first page of 20", None),
        ("name, first page of 20, sorted by name", Some("name")),
    ] {
        let mut times = Vec::with_capacity(queries);
        let mut hits = 0;
        for _ in 0..queries {
            let mut q = (*rng.pick(&names)).to_owned();
            if rng.below(4) == 0 {
                q = format!("{q} {}", rng.pick(&names));
            }
            let mut params = vec![
                ("name".to_owned(), q),
                ("_count".to_owned(), "20".to_owned()),
            ];
            if let Some(s) = sort {
                params.push(("_sort".into(), s.into()));
            }
            let (d, n) = run(params)?;
            hits += n;
            times.push(d);
        }
        times.sort();
        kinds.push((label, times, hits));
    }
    let mut other = Vec::new();
    for _ in 0..queries {
        let p = format!("p-{:06}", rng.below(patients));
        let t = Instant::now();
        r.search(
            "Observation",
            &[
                ("patient".into(), p),
                ("code".into(), "http://loinc.org|8867-4".into()),
                ("_sort".into(), "-date".into()),
            ],
            "x",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        other.push(t.elapsed());
    }
    other.sort();
    kinds.push(("Observation by patient + code, newest first", other, 0));

    println!(
        "Store: {patients} patients, {written} resources in all, loaded through the FHIR write path in {:.0} s ({:.0} resources/s); file {size:.0} MiB.",
        load.as_secs_f64(),
        written as f64 / load.as_secs_f64()
    );
    println!();
    println!("| search ({queries} queries) | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (label, times, _) in &kinds {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} |",
            percentile(times, 0.5),
            percentile(times, 0.95),
            percentile(times, 0.99),
            percentile(times, 1.0)
        );
    }
    Ok(())
}
