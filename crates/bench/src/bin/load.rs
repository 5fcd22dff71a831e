//! `hearth-load`: a bounded load test of the hub's CouchDB API on loopback. Starts `hearth hub
//! serve` (release build, encrypted store) and runs many concurrent clients for a fixed time,
//! each mixing writes and reads; reports throughput, latency percentiles per operation, errors
//! (target 0), the hub's peak memory, and checks every acknowledged write is there.
//!
//! Run: `cargo build --release && ./target/release/hearth-load [--clients 64] [--seconds 30]`.

use std::time::{Duration, Instant};

#[path = "../hubproc.rs"]
mod hubproc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const PIN: &str = "load-pin-1234";
const PASSWORD: &str = "load-password";
const OPS: [&str; 5] = ["put", "get", "bulk_docs", "changes", "all_docs"];

fn body(client: usize, i: usize) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": format!("Patient/c{client}")},
        "valueQuantity": {"value": i % 200, "unit": "/min"},
        "note": [{"text": "x".repeat(700)}],
    })
}

#[derive(Default)]
struct Tally {
    /// Latencies in microseconds, per operation.
    lat: [Vec<u64>; 5],
    errors: [u64; 5],
    /// Ids the hub acknowledged (201).
    acked: Vec<String>,
    first_error: Option<String>,
}

async fn client(http: reqwest::Client, base: String, c: usize, until: Instant) -> Tally {
    let mut t = Tally::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (c as u64 + 1);
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let mut i = 0;
    while Instant::now() < until {
        let pick = rnd(100);
        let op = match pick {
            0..40 => 0,
            40..70 if !t.acked.is_empty() => 1,
            40..70 => 0,
            70..80 => 2,
            80..90 => 3,
            _ => 4,
        };
        let start = Instant::now();
        let result = match op {
            0 => {
                let id = format!("c{c}-{i}");
                i += 1;
                let r = http
                    .put(format!("{base}/{id}"))
                    .json(&body(c, i))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        t.acked.push(id);
                        Ok(())
                    }
                    Ok(r) => Err(format!("PUT: {}", r.status())),
                    Err(e) => Err(format!("PUT: {e}")),
                }
            }
            1 => {
                let id = t.acked[rnd(t.acked.len())].clone();
                match http.get(format!("{base}/{id}")).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("GET: {}", r.status())),
                    Err(e) => Err(format!("GET: {e}")),
                }
            }
            2 => {
                let docs: Vec<Value> = (0..20)
                    .map(|k| {
                        let mut b = body(c, i + k);
                        b["_id"] = json!(format!("c{c}-{}", i + k));
                        b
                    })
                    .collect();
                let ids: Vec<String> = (0..20).map(|k| format!("c{c}-{}", i + k)).collect();
                i += 20;
                match http
                    .post(format!("{base}/_bulk_docs"))
                    .json(&json!({"docs": docs}))
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 201 => match r.json::<Vec<Value>>().await {
                        Ok(rows) => {
                            for (row, id) in rows.iter().zip(ids) {
                                if row.get("ok") == Some(&json!(true)) {
                                    t.acked.push(id);
                                }
                            }
                            Ok(())
                        }
                        Err(e) => Err(format!("_bulk_docs: {e}")),
                    },
                    Ok(r) => Err(format!("_bulk_docs: {}", r.status())),
                    Err(e) => Err(format!("_bulk_docs: {e}")),
                }
            }
            3 => {
                let since = rnd(1000);
                match http
                    .get(format!("{base}/_changes?since={since}&limit=50"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("_changes: {}", r.status())),
                    Err(e) => Err(format!("_changes: {e}")),
                }
            }
            _ => match http
                .get(format!(
                    "{base}/_all_docs?limit=20&startkey=\"c{}\"",
                    rnd(64)
                ))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                }
                Ok(r) => Err(format!("_all_docs: {}", r.status())),
                Err(e) => Err(format!("_all_docs: {e}")),
            },
        };
        t.lat[op].push(start.elapsed().as_micros() as u64);
        if let Err(e) = result {
            t.errors[op] += 1;
            t.first_error.get_or_insert(e);
        }
    }
    t
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut clients = 64usize;
    let mut seconds = 30u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().context("a value is missing");
        match a.as_str() {
            "--clients" => clients = val()?.parse()?,
            "--seconds" => seconds = val()?.parse()?,
            "--help" | "-h" => {
                println!(
                    "hearth-load: a bounded load test of `hearth hub serve` on loopback\n\n\
                     usage: hearth-load [--clients N] [--seconds S]\n  \
                     --clients N   concurrent clients (default 64)\n  \
                     --seconds S   how long they run (default 30)"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other}; use --clients N, --seconds S"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let hub = hubproc::start(&tmp.path().join("hub"), PIN, "load", PASSWORD, "load")?;
    let base = format!("{}/load", hub.url);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(60))
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            let auth = base64_basic("load", PASSWORD);
            h.insert(reqwest::header::AUTHORIZATION, auth.parse()?);
            h
        })
        .build()?;
    println!(
        "{clients} clients for {seconds} s against {} (encrypted store, loopback)",
        hub.url
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(http.clone(), base.clone(), c, until)))
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        for k in 0..5 {
            all.lat[k].extend(&t.lat[k]);
            all.errors[k] += t.errors[k];
        }
        all.acked.extend(t.acked);
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rss = hub.peak_rss_kb().map(|k| k / 1024);
    let total: usize = all.lat.iter().map(Vec::len).sum();
    let errors: u64 = all.errors.iter().sum();
    println!(
        "\n{total} requests in {elapsed:.1} s: {:.0} requests/s, {} documents acknowledged ({:.0}/s), {errors} errors; hub peak RSS {} MiB\n",
        total as f64 / elapsed,
        all.acked.len(),
        all.acked.len() as f64 / elapsed,
        rss.map_or("?".into(), |m| m.to_string())
    );
    println!("| operation | requests | errors | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((op, lat), errors) in OPS.iter().zip(&all.lat).zip(all.errors) {
        let mut l = lat.clone();
        l.sort_unstable();
        println!(
            "| {op} | {} | {errors} | {:.1} | {:.1} | {:.1} | {:.1} |",
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.95),
            pct(&l, 0.99),
            pct(&l, 1.0)
        );
    }
    if let Some(e) = &all.first_error {
        println!("\nfirst error: {e}");
    }
    // Every acknowledged write is there.
    let info: Value = http.get(&base).send().await?.json().await?;
    let count = info["doc_count"].as_u64().unwrap_or(0);
    println!(
        "\nhub doc_count {count}, acknowledged {}: {}",
        all.acked.len(),
        if count == all.acked.len() as u64 {
            "every acknowledged write is there"
        } else {
            "MISMATCH"
        }
    );
    if count != all.acked.len() as u64 || errors > 0 {
        bail!("the load test found errors or missing writes");
    }
    Ok(())
}

fn base64_basic(user: &str, pw: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}
