//! Convergence, as a property: 3–5 replicas (encrypted stores on disk) make random creates,
//! updates, deletes and concurrent conflicting edits, and replicate between random pairs, some
//! replications interrupted part-way. After a full round of syncs every replica holds the same
//! documents (winners, leaf revisions and their bodies), and no acknowledged write is lost: each
//! revision a replica acknowledged is a leaf everywhere (a winner or a kept conflict) or an
//! ancestor of one, and every surviving leaf has exactly the body that was written.
//!
//! A third mode runs every replication through a hub behind a fault-injecting proxy (dropped
//! connections, lost answers, truncated answers, delays) and crashes replications mid-flight
//! (the future dropped at a random moment, as `kill -9` of the replicator would); the faults stop
//! before the final round, which must then converge with nothing lost.
//!
//! `HEARTH_CONVERGENCE_CASES` sets the number of cases (CI: 24; a long run: 1000 or more).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use replicate::{Endpoint, LocalDb, Replication};
use revtree::Rev;
use serde_json::{Value, json};
use store::{DocId, DocWrite, GetOptions, OpenRev, OpenRevs, Store};

/// The documents are not FHIR records, so they use a database of their own (the hub validates
/// its clinical database, `records`: ADR 28).
const DB: &str = "convergence";
const DOCS: u8 = 5;

#[derive(Clone, Debug)]
enum Op {
    /// Create the document, or edit its current winner (a concurrent edit when another
    /// replica edits the same revision before they sync).
    Write { replica: usize, doc: u8 },
    /// Delete the current winner.
    Delete { replica: usize, doc: u8 },
    /// Replicate from one replica to another; `interrupt` stops it after that many batches.
    Sync {
        from: usize,
        to: usize,
        interrupt: Option<u8>,
    },
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..replicas, 0..DOCS).prop_map(|(replica, doc)| Op::Write { replica, doc }),
        1 => (0..replicas, 0..DOCS).prop_map(|(replica, doc)| Op::Delete { replica, doc }),
        3 => (0..replicas, 0..replicas, proptest::option::of(0u8..4))
            .prop_map(|(from, to, interrupt)| Op::Sync { from, to, interrupt }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3usize..=5).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..40)))
}

fn endpoint(store: &Arc<Store>) -> Endpoint {
    Endpoint::Local(LocalDb {
        store: store.clone(),
        db: DB.into(),
        actor: store::Session::relay(),
    })
}

/// A hub in this process: the CouchDB API and the encrypted RPC channel, each on its own
/// loopback port, over one store.
struct TestHub {
    store: Arc<Store>,
    couch: std::net::SocketAddr,
    rpc: std::net::SocketAddr,
    hub_key: [u8; 32],
    uuid: String,
}

async fn start_hub(dir: &tempfile::TempDir) -> TestHub {
    let store = Arc::new(
        Store::open(&dir.path().join("hub.db"), &vault::Dek::generate().unwrap()).unwrap(),
    );
    store.ensure_db(DB).unwrap();
    let hub = Arc::new(hub::Hub::new(store.clone()).unwrap());
    hub.set_account("sync", "sync-password", true).unwrap();
    let couch_router = hub::router(hub.clone(), 64 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let couch = listener.local_addr().unwrap();
    tokio::spawn(hub::serve(
        listener,
        couch_router.clone(),
        std::future::pending(),
    ));
    let channel = vault::channel::StaticKey::generate().unwrap();
    let hub_key = channel.public();
    let keys = hub::rpc::HubKeys {
        channel,
        signing: ed25519_dalek::SigningKey::from_bytes(&vault::random_bytes::<32>().unwrap()),
    };
    let rpc = Arc::new(hub::rpc::Rpc::new(
        hub.clone(),
        keys,
        couch_router,
        hub::rpc::RpcSettings::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc_addr = listener.local_addr().unwrap();
    tokio::spawn(hub::serve(
        listener,
        hub::rpc::router(rpc),
        std::future::pending(),
    ));
    TestHub {
        store,
        couch,
        rpc: rpc_addr,
        hub_key,
        uuid: hub.uuid.clone(),
    }
}

/// Pairs a replica with the hub, the RPC channel reached at `addr` (the proxy, when faulty).
async fn pair(hub: &TestHub, replica: &Store, addr: &str) {
    let token = vault::random_bytes::<16>().unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    hub.store
        .put_pairing_offer(&token, exp as i64, "admin")
        .unwrap();
    let offer = vault::pairing::Offer {
        v: 1,
        addr: addr.to_owned(),
        hub: hub.uuid.clone(),
        key: hex::encode(hub.hub_key),
        tls: None,
        token: hex::encode(token),
        exp,
    };
    replicate::rpc::pair(replica, &offer, "replica")
        .await
        .unwrap();
}

/// How a replica reaches the hub: the CouchDB API over HTTP, or the encrypted RPC channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Http,
    Rpc,
}

/// Even replicas use the CouchDB API, odd ones the RPC channel.
fn transport(replica: usize) -> Transport {
    if replica.is_multiple_of(2) {
        Transport::Http
    } else {
        Transport::Rpc
    }
}

fn remote(url: &str, replica: &Arc<Store>, t: Transport) -> Endpoint {
    match t {
        Transport::Http => Endpoint::Http(
            replicate::HttpDb::new(&format!("{url}/{DB}"), Some("sync"), Some("sync-password"))
                .unwrap(),
        ),
        Transport::Rpc => {
            let client =
                replicate::rpc::RpcClient::from_store(replica, "sync", "sync-password").unwrap();
            Endpoint::Http(replicate::HttpDb::over_rpc(Arc::new(client), DB).unwrap())
        }
    }
}

async fn replicate(from: &Arc<Store>, to: &Arc<Store>, interrupt: Option<u8>) {
    run_rep(Replication::new(endpoint(from), endpoint(to)), interrupt).await;
}

/// A replication that may fail (under network faults): its error is the expected outcome.
async fn run_rep_tolerant(mut rep: Replication) {
    rep.batch_size = 1;
    rep.checkpoint_every = Duration::ZERO;
    let _ = rep.run_once(|_| {}).await;
}

async fn run_rep(mut rep: Replication, interrupt: Option<u8>) {
    rep.batch_size = 1;
    rep.checkpoint_every = Duration::ZERO;
    match interrupt {
        None => {
            rep.run_once(|_| {}).await.unwrap();
        }
        Some(k) => {
            // Stopped between batches, as a user's cancel or a lost link ends it; the batch
            // being written completes first.
            let (tx, rx) = tokio::sync::watch::channel(false);
            rep.run_once_until(
                move |p| {
                    if p.stats.batches >= u64::from(k) {
                        let _ = tx.send(true);
                    }
                },
                rx,
            )
            .await
            .unwrap();
        }
    }
}

/// A leaf: revision, deleted, body.
type Leaf = (String, bool, Value);

/// Every document's winner and leaves.
fn snapshot(s: &Store) -> BTreeMap<String, (String, Vec<Leaf>)> {
    let mut out = BTreeMap::new();
    for c in s
        .changes(DB, &store::ChangesQuery::default())
        .unwrap()
        .results
    {
        let mut leaves: Vec<Leaf> = s
            .open_revs(DB, &c.id, &OpenRevs::All, false, false)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                OpenRev::Ok(d) => (d.rev.to_string(), d.deleted, Value::Object(d.body)),
                OpenRev::Missing(r) => (r.to_string(), false, json!("missing")),
            })
            .collect();
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        out.insert(c.id.as_str().to_owned(), (c.changes[0].to_string(), leaves));
    }
    out
}

fn run(replicas: usize, ops: &[Op]) {
    run_with(replicas, ops, Mode::Direct);
}

/// How replicas reach each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Store to store.
    Direct,
    /// Through a hub over HTTP: push to it, pull from it.
    Hub,
    /// Through a hub behind a faulty proxy, with crashed replications, until the final round.
    FaultyHub,
}

/// A TCP proxy in front of `upstream` that, while `faulty`, spoils connections: dropped at once,
/// answer lost after the request was served, answer cut short, or slowed down.
async fn fault_proxy(upstream: std::net::SocketAddr, faulty: Arc<AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            n += 1;
            // 0 pass, 1 drop, 2 lost answer, 3 truncated answer, 4 slow.
            let fault = if faulty.load(Ordering::Relaxed) {
                (n * 7 + n / 3) % 5
            } else {
                0
            };
            tokio::spawn(async move {
                if fault == 1 {
                    return;
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = async {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(k) = cr.read(&mut buf).await {
                        if k == 0 || sw.write_all(&buf[..k]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(k) = sr.read(&mut buf).await {
                        if k == 0 || fault == 2 {
                            break;
                        }
                        if fault == 3 {
                            let _ = cw.write_all(&buf[..k.min(30)]).await;
                            break;
                        }
                        if fault == 4 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if cw.write_all(&buf[..k]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    format!("http://{addr}")
}

fn run_with(replicas: usize, ops: &[Op], mode: Mode) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<Store>> = (0..replicas)
        .map(|i| {
            let s = Arc::new(
                Store::open(
                    &dir.path().join(format!("r{i}.db")),
                    &vault::Dek::generate().unwrap(),
                )
                .unwrap(),
            );
            s.ensure_db(DB).unwrap();
            s
        })
        .collect();
    let faulty = Arc::new(AtomicBool::new(false));
    // The hub, and the address of each of its ports as the replicas reach it (behind a faulty
    // proxy each, in the fault mode); every replica is paired for the RPC channel.
    let hub = (mode != Mode::Direct).then(|| {
        rt.block_on(async {
            let hub = start_hub(&dir).await;
            let (couch, rpc) = if mode == Mode::FaultyHub {
                (
                    fault_proxy(hub.couch, faulty.clone()).await,
                    fault_proxy(hub.rpc, faulty.clone()).await,
                )
            } else {
                (
                    format!("http://{}", hub.couch),
                    format!("http://{}", hub.rpc),
                )
            };
            for s in &stores {
                pair(&hub, s, &rpc).await;
            }
            (hub, couch, rpc)
        })
    });
    faulty.store(mode == Mode::FaultyHub, Ordering::Relaxed);
    let remote_of = |replica: usize| {
        let (_, couch, rpc) = hub.as_ref().unwrap();
        let t = transport(replica);
        let url = if t == Transport::Http { couch } else { rpc };
        remote(url, &stores[replica], t)
    };
    let mut crashes = 0u64;
    let mut sync = |from: usize, to: usize, interrupt: Option<u8>| {
        rt.block_on(async {
            match &hub {
                None => replicate(&stores[from], &stores[to], interrupt).await,
                Some(_) if faulty.load(Ordering::Relaxed) => {
                    // Under faults a replication may fail, or crash (dropped mid-flight at a
                    // moment that varies); either way nothing may be lost or invented.
                    crashes += 1;
                    let budget = Duration::from_millis(5 + (crashes * 37) % 120);
                    let push = Replication::new(endpoint(&stores[from]), remote_of(from));
                    let _ = tokio::time::timeout(budget, run_rep_tolerant(push)).await;
                    let pull = Replication::new(remote_of(to), endpoint(&stores[to]));
                    let _ = tokio::time::timeout(budget, run_rep_tolerant(pull)).await;
                }
                Some(_) => {
                    run_rep(
                        Replication::new(endpoint(&stores[from]), remote_of(from)),
                        interrupt,
                    )
                    .await;
                    run_rep(Replication::new(remote_of(to), endpoint(&stores[to])), None).await;
                }
            }
        })
    };
    // Every acknowledged write: (document, revision) -> (deleted, body).
    let mut acked: BTreeMap<(String, Rev), (bool, Value)> = BTreeMap::new();
    let mut counter = 0u64;
    for op in ops {
        match *op {
            Op::Write { replica, doc } => {
                counter += 1;
                let s = &stores[replica];
                let id = DocId::parse(&format!("Patient/p{doc}")).unwrap();
                let current = match s.get(DB, &id, &GetOptions::default()) {
                    Ok(d) => Some(d.rev),
                    Err(store::Error::NotFound(_)) => None,
                    Err(e) => panic!("{e}"),
                };
                let body = json!({"resourceType": "Patient", "v": counter, "by": replica});
                let w = DocWrite::new(id.clone(), current, body.as_object().cloned().unwrap());
                let tree = s.rev_tree(DB, &id).ok();
                let rev = s.put(DB, w).unwrap_or_else(|e| {
                    panic!("write on replica {replica} of {id:?} failed: {e}; tree {tree:?}")
                });
                acked.insert((id.as_str().to_owned(), rev), (false, body));
            }
            Op::Delete { replica, doc } => {
                let s = &stores[replica];
                let id = DocId::parse(&format!("Patient/p{doc}")).unwrap();
                if let Ok(d) = s.get(DB, &id, &GetOptions::default()) {
                    let rev = s.put(DB, DocWrite::deletion(id.clone(), d.rev)).unwrap();
                    acked.insert((id.as_str().to_owned(), rev), (true, json!({})));
                }
            }
            Op::Sync {
                from,
                to,
                interrupt,
            } if from != to => sync(from, to, interrupt),
            Op::Sync { .. } => {}
        }
    }
    // The faults stop. A full round: everyone to replica 0, then replica 0 to everyone.
    faulty.store(false, Ordering::Relaxed);
    for i in 1..replicas {
        sync(i, 0, None);
    }
    for i in 1..replicas {
        sync(0, i, None);
    }
    let first = snapshot(&stores[0]);
    for (i, s) in stores.iter().enumerate().skip(1) {
        assert_eq!(snapshot(s), first, "replica {i} differs from replica 0");
    }
    // Through a hub, every replica holds exactly the hub's documents: winner, every leaf
    // (conflicts), deleted flags and bodies, whichever transport it used.
    if let Some((h, _, _)) = &hub {
        assert_eq!(
            snapshot(&h.store),
            first,
            "the replicas differ from the hub"
        );
    }
    // No acknowledged write is lost.
    let mut leaves_seen = BTreeSet::new();
    for ((doc, rev), (deleted, body)) in &acked {
        let tree = stores[0].rev_tree(DB, &DocId::parse(doc).unwrap()).unwrap();
        assert!(
            tree.contains(rev),
            "{doc} {rev} was acknowledged and is gone"
        );
        let leaf = tree.leaves().into_iter().find(|l| &l.rev == rev);
        if let Some(l) = leaf {
            leaves_seen.insert((doc.clone(), rev.clone()));
            assert_eq!(l.deleted, *deleted);
            let (_, leaves) = &first[doc];
            let stored = leaves
                .iter()
                .find(|(r, _, _)| *r == rev.to_string())
                .unwrap();
            if !deleted {
                assert_eq!(
                    &stored.2, body,
                    "{doc} {rev}: the leaf's body is what was written"
                );
            }
        }
    }
    // Every leaf is a write someone acknowledged (nothing invented).
    for (doc, (_, leaves)) in &first {
        for (rev, _, _) in leaves {
            assert!(
                leaves_seen.contains(&(doc.clone(), rev.parse().unwrap())),
                "{doc} {rev} appeared from nowhere"
            );
        }
    }
}

fn cases() -> u32 {
    std::env::var("HEARTH_CONVERGENCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_and_keep_every_acknowledged_write((replicas, ops) in scenario()) {
        run(replicas, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (cases() / 4).max(4), ..ProptestConfig::default() })]

    /// The same property with every replication going through a real hub over HTTP.
    #[test]
    fn replicas_converge_through_the_hub((replicas, ops) in scenario()) {
        run_with(replicas, &ops, Mode::Hub);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (cases() / 4).max(4), ..ProptestConfig::default() })]

    /// The same property through a faulty network, with replications crashed mid-flight.
    #[test]
    fn replicas_converge_through_faults_and_crashes((replicas, ops) in scenario()) {
        run_with(replicas, &ops, Mode::FaultyHub);
    }
}

/// A fixed scenario with a three-way concurrent edit, a delete racing an edit, and interrupted
/// replications, so the property's core case runs even if the random ones are reduced.
#[test]
fn concurrent_edits_and_a_racing_delete_converge() {
    use Op::*;
    run(
        3,
        &[
            Write { replica: 0, doc: 1 },
            Sync {
                from: 0,
                to: 1,
                interrupt: None,
            },
            Sync {
                from: 0,
                to: 2,
                interrupt: None,
            },
            Write { replica: 0, doc: 1 },
            Write { replica: 1, doc: 1 },
            Delete { replica: 2, doc: 1 },
            Write { replica: 2, doc: 2 },
            Sync {
                from: 1,
                to: 2,
                interrupt: Some(0),
            },
            Sync {
                from: 2,
                to: 0,
                interrupt: Some(1),
            },
            Write { replica: 1, doc: 2 },
        ],
    );
}
