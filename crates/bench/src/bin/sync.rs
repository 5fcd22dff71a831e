//! `hearth-sync-bench`: replication throughput, Hearth device ↔ Hearth hub beside PouchDB ↔
//! express-pouchdb, on the same generated ~1 KB FHIR-like documents, in one run.
//!
//! Run: `cargo build --release && cargo run --release -p hearth-bench --bin hearth-sync-bench --
//! [--docs 10000,100000] [--memory 100000,500000] [--clients 50] [--rpc 10000] [--skip-pouchdb]`.
//! `--rpc` compares the hub's two transports (CouchDB API and encrypted RPC) on one in-process
//! hub. A list of `0` skips a part (`--docs 0 --memory 0 --clients 0 --rpc 10000`).
//! The hub is the release `hearth` binary in its own process (`hub serve`), so its peak memory
//! is its own; devices are encrypted stores in this process. PouchDB needs `npm ci` in
//! `tests/pouchdb-interop`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../hubproc.rs"]
mod hubproc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use hubproc::Hub;
use replicate::{Endpoint, HttpDb, LocalDb, Replication, Stats};
use serde_json::{Value, json};
use store::{DocId, DocWrite, Store};

const PIN: &str = "bench-pin-1234";
const PASSWORD: &str = "bench-password";

struct Config {
    docs: Vec<usize>,
    memory: Vec<usize>,
    clients: usize,
    pouchdb: bool,
    rpc: Vec<usize>,
}

fn list(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .context("a list of numbers, like 10000,100000")
        })
        .collect()
}

fn parse_args() -> Result<Config> {
    let mut c = Config {
        docs: vec![10_000, 100_000],
        memory: vec![100_000, 500_000],
        clients: 50,
        pouchdb: true,
        rpc: vec![10_000],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--docs" => c.docs = list(&val()?)?,
            "--memory" => c.memory = list(&val()?)?,
            "--clients" => c.clients = val()?.parse()?,
            "--skip-pouchdb" => c.pouchdb = false,
            "--rpc" => c.rpc = list(&val()?)?,
            "--help" | "-h" => {
                println!(
                    "hearth-sync-bench: replication speed, Hearth beside PouchDB in one run\n\n\
                     Usage: hearth-sync-bench [--docs N,N] [--memory N,N] [--clients N] [--rpc N,N] [--skip-pouchdb]\n\n\
                     \x20 --docs N,N      documents of the side-by-side push/pull runs (default 10000,100000)\n\
                     \x20 --memory N,N    documents pushed while the hub's peak memory is read (default 100000,500000)\n\
                     \x20 --clients N     devices syncing with one hub at once (default 50)\n\
                     \x20 --rpc N,N       documents of the CouchDB API vs RPC channel runs (default 10000)\n\
                     \x20 a list of 0 skips that part\n\
                     \x20 --skip-pouchdb  leave out the PouchDB side (needs npm ci in tests/pouchdb-interop)\n\n\
                     Needs `cargo build --release -p hearth` first. Prints Markdown tables; docs/benchmarks.md records a run."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; --help lists the options"),
        }
    }
    Ok(c)
}

/// The same ~1 KB Observation as `tests/pouchdb-interop/bench.mjs`.
fn doc(i: usize, changed: bool) -> Value {
    json!({
        "_id": format!("Observation/obs-{i:08}"),
        "resourceType": "Observation",
        "id": format!("obs-{i:08}"),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/p-{:06}", i % 5000)},
        "effectiveDateTime": "2026-11-20T09:30:00Z",
        "valueQuantity": {"value": 60 + (i % 40) + usize::from(changed), "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
        "note": [{"text": "x".repeat(560)}]
    })
}

fn start_hub(dir: &Path) -> Result<Hub> {
    hubproc::start(dir, PIN, "bench", PASSWORD, "bench")
}

fn device(dir: &Path, name: &str) -> Result<Arc<Store>> {
    let s = Arc::new(Store::open(
        &dir.join(format!("{name}.db")),
        &vault::Dek::generate()?,
    )?);
    s.ensure_db("bench")?;
    Ok(s)
}

fn fill(store: &Store, n: usize) -> Result<()> {
    for start in (0..n).step_by(1000) {
        let batch: Vec<DocWrite> = (start..n.min(start + 1000))
            .map(|i| DocWrite::from_json(doc(i, false), None))
            .collect::<Result<_, _>>()?;
        store.bulk_docs("bench", batch, true)?;
    }
    Ok(())
}

fn change_one_percent(store: &Store, n: usize) -> Result<usize> {
    let mut batch = Vec::new();
    for i in (0..n).step_by(100) {
        let id = DocId::parse(&format!("Observation/obs-{i:08}"))?;
        let cur = store.get("bench", &id, &store::GetOptions::default())?;
        let mut w = DocWrite::from_json(doc(i, true), None)?;
        w.rev = Some(cur.rev);
        batch.push(w);
    }
    let k = batch.len();
    store.bulk_docs("bench", batch, true)?;
    Ok(k)
}

fn local(store: &Arc<Store>) -> Endpoint {
    Endpoint::Local(LocalDb {
        store: store.clone(),
        db: "bench".into(),
        actor: store::Session::relay(),
    })
}

fn remote(url: &str, lat: Option<Arc<Mutex<Vec<Duration>>>>) -> Result<Endpoint> {
    let mut h = HttpDb::new(&format!("{url}/bench"), Some("bench"), Some(PASSWORD))?;
    if let Some(l) = lat {
        h = h.observe(Arc::new(move |d| {
            l.lock().unwrap_or_else(|p| p.into_inner()).push(d)
        }));
    }
    Ok(Endpoint::Http(h))
}

async fn rep(source: Endpoint, target: Endpoint) -> Result<(f64, Stats)> {
    let t = Instant::now();
    let s = Replication::new(source, target).run_once(|_| {}).await?;
    if s.doc_write_failures > 0 {
        bail!(
            "{} documents failed: {:?}",
            s.doc_write_failures,
            s.errors.first()
        );
    }
    Ok((t.elapsed().as_secs_f64() * 1000.0, s))
}

struct Row {
    docs: usize,
    push: f64,
    pull: f64,
    noop: f64,
    push1: f64,
    pull1: f64,
    rss_kb: Option<u64>,
}

async fn hearth_run(n: usize) -> Result<Row> {
    let tmp = tempfile::tempdir()?;
    let hub = start_hub(&tmp.path().join("hub"))?;
    let a = device(tmp.path(), "a")?;
    fill(&a, n)?;
    let (push, s) = rep(local(&a), remote(&hub.url, None)?).await?;
    assert_eq!(s.docs_written as usize, n);
    let b = device(tmp.path(), "b")?;
    let (pull, s) = rep(remote(&hub.url, None)?, local(&b)).await?;
    assert_eq!(s.docs_written as usize, n);
    let (noop, s) = rep(remote(&hub.url, None)?, local(&b)).await?;
    assert_eq!(s.docs_written, 0);
    let k = change_one_percent(&a, n)?;
    let (push1, _) = rep(local(&a), remote(&hub.url, None)?).await?;
    let (pull1, s) = rep(remote(&hub.url, None)?, local(&b)).await?;
    assert_eq!(s.docs_written as usize, k);
    Ok(Row {
        docs: n,
        push,
        pull,
        noop,
        push1,
        pull1,
        rss_kb: hub.peak_rss_kb(),
    })
}

fn pouchdb_run(n: usize) -> Result<Row> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/pouchdb-interop");
    let out = Command::new("node")
        .arg("bench.mjs")
        .arg(n.to_string())
        .current_dir(&dir)
        .output()?;
    if !out.status.success() {
        bail!(
            "PouchDB bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value =
        serde_json::from_slice(out.stdout.trim_ascii()).context("PouchDB bench output")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Row {
        docs: n,
        push: f("push_ms"),
        pull: f("pull_ms"),
        noop: f("noop_ms"),
        push1: f("push_1pct_ms"),
        pull1: f("pull_1pct_ms"),
        rss_kb: v["server_peak_rss_kb"].as_u64(),
    })
}

fn print_row(who: &str, r: &Row) {
    let rate = |ms: f64| r.docs as f64 / (ms / 1000.0);
    println!(
        "| {who} | {} | {:.0} ms ({:.0}/s) | {:.0} ms ({:.0}/s) | {:.1} ms | {:.0} ms | {:.0} ms | {} |",
        r.docs,
        r.push,
        rate(r.push),
        r.pull,
        rate(r.pull),
        r.noop,
        r.push1,
        r.pull1,
        r.rss_kb.map_or("-".into(), |k| format!("{} MiB", k / 1024))
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn clients_run(clients: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let hub = start_hub(&tmp.path().join("hub"))?;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let per = 100;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = device(tmp.path(), &format!("c{c}"))?;
        let batch: Vec<DocWrite> = (0..per)
            .map(|i| DocWrite::from_json(doc(c * 1_000_000 + i, false), None))
            .collect::<Result<_, _>>()?;
        store.bulk_docs("bench", batch, true)?;
        let url = hub.url.clone();
        let lat = lat.clone();
        tasks.push(tokio::spawn(async move {
            let push = rep(local(&store), remote(&url, Some(lat.clone()))?).await?;
            let pull = rep(remote(&url, Some(lat))?, local(&store)).await?;
            Ok::<_, anyhow::Error>((push.1, pull.1))
        }));
    }
    let mut errors = 0;
    let mut moved = 0;
    for t in tasks {
        match t.await? {
            Ok((p, q)) => moved += p.docs_written + q.docs_written,
            Err(e) => {
                errors += 1;
                eprintln!("client failed: {e}");
            }
        }
    }
    let mut l = lat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    l.sort();
    println!(
        "\n{clients} concurrent clients (each pushes {per} documents, then pulls everything): {} requests, {errors} failed clients, {moved} revisions moved in {:.1} s; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; hub peak RSS {} MiB",
        l.len(),
        started.elapsed().as_secs_f64(),
        percentile(&l, 0.5).as_secs_f64() * 1000.0,
        percentile(&l, 0.99).as_secs_f64() * 1000.0,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        hub.peak_rss_kb().unwrap_or(0) / 1024
    );
    Ok(())
}

async fn memory_run(n: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let hub = start_hub(&tmp.path().join("hub"))?;
    let a = device(tmp.path(), "a")?;
    fill(&a, n)?;
    rep(local(&a), remote(&hub.url, None)?).await?;
    let b = device(tmp.path(), "b")?;
    let (pull, _) = rep(remote(&hub.url, None)?, local(&b)).await?;
    // A full _changes and _all_docs listing, the streaming paths.
    let t = Instant::now();
    let bytes = read_changes_feed(&hub.url)?;
    println!(
        "hub holding {n} documents: push + pull ({pull:.0} ms pull) + full _changes ({bytes} bytes, {:.0} ms): hub peak RSS {} MiB",
        t.elapsed().as_secs_f64() * 1000.0,
        hub.peak_rss_kb().unwrap_or(0) / 1024
    );
    Ok(())
}

/// Reads the whole `_changes` feed with a plain TCP client, counting bytes.
fn read_changes_feed(url: &str) -> Result<usize> {
    use std::io::Read;
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    let auth = base64_basic("bench", PASSWORD);
    write!(
        s,
        "GET /bench/_changes?include_docs=true HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )?;
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn base64_basic(u: &str, p: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
}

/// One in-process hub serving both transports; a paired device; push and pull over each.
async fn transports_run(n: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let hub_store = device(tmp.path(), "hub")?;
    let h = Arc::new(hub::Hub::new(hub_store.clone()).map_err(|e| anyhow::anyhow!(e.reason))?);
    h.set_account("bench", PASSWORD, true)
        .map_err(|e| anyhow::anyhow!(e.reason))?;
    let channel = vault::channel::StaticKey::generate()?;
    let hub_key = hex_string(&channel.public());
    let couch = hub::router(h.clone(), 64 << 20);
    let rpc = Arc::new(hub::rpc::Rpc::new(
        h.clone(),
        hub::rpc::HubKeys {
            channel,
            signing: ed25519_dalek::SigningKey::from_bytes(&vault::random_bytes::<32>()?),
        },
        couch.clone(),
        hub::rpc::RpcSettings::default(),
    ));
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let couch_url = format!("http://{}", l1.local_addr()?);
    tokio::spawn(hub::serve(l1, couch, std::future::pending()));
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let rpc_url = format!("http://{}", l2.local_addr()?);
    tokio::spawn(hub::serve(
        l2,
        hub::rpc::router(rpc),
        std::future::pending(),
    ));
    let token = vault::random_bytes::<16>()?;
    hub_store.put_pairing_offer(&token, i64::MAX, "bench")?;
    let offer = vault::pairing::Offer {
        v: 1,
        addr: rpc_url,
        hub: h.uuid.clone(),
        key: hub_key,
        tls: None,
        token: hex_string(&token),
        exp: u64::MAX / 2,
    };
    let a = device(tmp.path(), "a")?;
    fill(&a, n)?;
    replicate::rpc::pair(&a, &offer, "bench").await?;
    for (label, db) in [("CouchDB API", "bench"), ("encrypted RPC", "viarpc")] {
        let target = if db == "bench" {
            remote(&couch_url, None)?
        } else {
            let c = Arc::new(replicate::rpc::RpcClient::from_store(
                &a, "bench", PASSWORD,
            )?);
            Endpoint::Http(HttpDb::over_rpc(c, db)?)
        };
        let (push, s) = rep(local(&a), target.clone()).await?;
        assert_eq!(s.docs_written as usize, n);
        let b = device(tmp.path(), &format!("b-{db}"))?;
        let (pull, s) = rep(target, local(&b)).await?;
        assert_eq!(s.docs_written as usize, n);
        let rate = |ms: f64| n as f64 / (ms / 1000.0);
        println!(
            "| {label} | {n} | {push:.0} ms ({:.0}/s) | {pull:.0} ms ({:.0}/s) |",
            rate(push),
            rate(pull)
        );
    }
    Ok(())
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let c = parse_args()?;
    if c.rpc.iter().any(|&n| n > 0) {
        println!("| hub transport (in-process hub) | docs | push | pull |");
        println!("|---|---|---|---|");
        for &n in c.rpc.iter().filter(|&&n| n > 0) {
            transports_run(n).await?;
        }
        println!();
    }
    println!(
        "| system | docs | initial push | initial pull | no-op re-sync | push after 1% changed | pull after 1% changed | hub/server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in c.docs.iter().filter(|&&n| n > 0) {
        print_row("Hearth device ↔ Hearth hub", &hearth_run(n).await?);
        if c.pouchdb {
            print_row("PouchDB ↔ express-pouchdb", &pouchdb_run(n)?);
        }
    }
    if c.clients > 0 {
        clients_run(c.clients).await?;
    }
    println!();
    for &n in c.memory.iter().filter(|&&n| n > 0) {
        memory_run(n).await?;
    }
    Ok(())
}
