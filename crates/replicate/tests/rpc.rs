//! The hub's encrypted RPC transport, end to end on 127.0.0.1: pairing, replication in both
//! directions through the channel, audit pushes, and every refusal the issue names — wrong hub
//! key, unknown and revoked devices, replayed and tampered envelopes, expired tokens, role
//! filtering — plus a capture of every byte on the RPC port, searched for plaintext PHI.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use replicate::rpc::{Pairing, RpcClient};
use replicate::{Endpoint, HttpDb, LocalDb, Replication};
use serde_json::{Value, json};
use store::{DocWrite, Role, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault::channel::{self, Envelope, Hello, Initiator, Route, StaticKey, Welcome};
use vault::pairing::Offer;

const PHI: &str = "Zebulon Quixotemarsh";

fn node(dir: &tempfile::TempDir, name: &str) -> Arc<Store> {
    let s = Arc::new(
        Store::open(
            &dir.path().join(format!("{name}.db")),
            &vault::Dek::generate().unwrap(),
        )
        .unwrap(),
    );
    // Replication mechanics with bodies that are not all valid FHIR: a database of its own,
    // since the hub validates its clinical database, `records` (ADR 28).
    s.ensure_db("clinic").unwrap();
    s
}

fn local(store: &Arc<Store>) -> Endpoint {
    Endpoint::Local(LocalDb {
        store: store.clone(),
        db: "clinic".into(),
        actor: store::Session::relay(),
    })
}

fn put(store: &Store, id: &str, body: Value) {
    store
        .put("clinic", DocWrite::from_json(body, Some(id)).unwrap())
        .unwrap();
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct TestHub {
    store: Arc<Store>,
    /// The RPC port, reached through a proxy that records every byte.
    addr: String,
    hub_key: [u8; 32],
    captured: Arc<Mutex<Vec<u8>>>,
    uuid: String,
}

async fn proxy(target: std::net::SocketAddr, captured: Arc<Mutex<Vec<u8>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let captured = captured.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let c1 = captured.clone();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        c1.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        captured.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("http://{addr}")
}

async fn start_hub(dir: &tempfile::TempDir, token_ttl: Duration) -> TestHub {
    start_hub_with(
        dir,
        hub::rpc::RpcSettings {
            token_ttl,
            ..Default::default()
        },
    )
    .await
}

async fn start_hub_with(dir: &tempfile::TempDir, settings: hub::rpc::RpcSettings) -> TestHub {
    let store = node(dir, "hub");
    let hub = Arc::new(hub::Hub::new(store.clone()).unwrap());
    hub.set_account_role("nurse@clinic", "nurse-password", Role::Nurse)
        .unwrap();
    hub.set_account_role("desk@clinic", "desk-password", Role::FrontDesk)
        .unwrap();
    hub.set_account("admin@clinic", "admin-password", true)
        .unwrap();
    let channel_key = StaticKey::generate().unwrap();
    let hub_key = channel_key.public();
    let keys = hub::rpc::HubKeys {
        channel: channel_key,
        signing: SigningKey::from_bytes(&vault::random_bytes::<32>().unwrap()),
    };
    let couch = hub::router(hub.clone(), 64 << 20);
    let rpc = Arc::new(hub::rpc::Rpc::new(hub.clone(), keys, couch, settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(hub::serve(
        listener,
        hub::rpc::router(rpc),
        std::future::pending(),
    ));
    let captured = Arc::new(Mutex::new(Vec::new()));
    let addr = proxy(target, captured.clone()).await;
    TestHub {
        store,
        addr,
        hub_key,
        captured,
        uuid: hub.uuid.clone(),
    }
}

fn offer(h: &TestHub) -> Offer {
    let token = vault::random_bytes::<16>().unwrap();
    h.store
        .put_pairing_offer(&token, now() as i64 + 600, "admin")
        .unwrap();
    Offer {
        v: 1,
        addr: h.addr.clone(),
        hub: h.uuid.clone(),
        key: hex::encode(h.hub_key),
        tls: None,
        token: hex::encode(token),
        exp: now() + 600,
    }
}

fn rpc_db(store: &Arc<Store>, account: &str, password: &str) -> (Arc<RpcClient>, Endpoint) {
    let c = Arc::new(RpcClient::from_store(store, account, password).unwrap());
    let ep = Endpoint::Http(HttpDb::over_rpc(c.clone(), "clinic").unwrap());
    (c, ep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_sync_through_the_channel_and_no_plaintext_crosses_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub(&dir, Duration::from_secs(900)).await;
    h.store.ensure_db("clinic").unwrap();
    let (a, b) = (node(&dir, "a"), node(&dir, "b"));
    replicate::rpc::pair(&a, &offer(&h), "tablet A")
        .await
        .unwrap();
    replicate::rpc::pair(&b, &offer(&h), "tablet B")
        .await
        .unwrap();
    // A used-up offer cannot pair a third device.
    let used = offer(&h);
    let c = node(&dir, "c");
    replicate::rpc::pair(&c, &used, "x").await.unwrap();
    let err = replicate::rpc::pair(&node(&dir, "d"), &used, "y")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");

    put(
        &a,
        "Patient/p1",
        json!({"resourceType": "Patient", "id": "p1", "name": [{"text": PHI}]}),
    );
    put(
        &a,
        "Observation/o1",
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"}, "note": [{"text": PHI}]}),
    );
    a.audit_append(&[store::AuditEvent {
        user: "nurse1".into(),
        role: "nurse".into(),
        action: "read".into(),
        outcome: "success".into(),
        patient: Some("Patient/p1".into()),
        ..Default::default()
    }])
    .unwrap();

    // Device A pushes through the channel; device B pulls.
    let (ca, hub_a) = rpc_db(&a, "nurse@clinic", "nurse-password");
    let stats = Replication::new(local(&a), hub_a)
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!(stats.docs_written, 2);
    // The entry above went when the session opened, before any record moved; the
    // replication's own entries now. The hub holds them all.
    let pushed = ca.push_audit(&a).await.unwrap();
    let total = a.audit_since(0).unwrap().len() as u64;
    assert!(pushed >= 1 && pushed < total, "{pushed} of {total}");
    assert_eq!(h.store.device_audit_list(None).unwrap().len() as u64, total);
    assert_eq!(ca.push_audit(&a).await.unwrap(), 0, "nothing new to push");
    let (_, hub_b) = rpc_db(&b, "nurse@clinic", "nurse-password");
    let stats = Replication::new(hub_b, local(&b))
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!(stats.docs_written, 2);
    let got = b
        .get(
            "clinic",
            &store::DocId::parse("Patient/p1").unwrap(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(got.to_json()["name"][0]["text"], PHI);
    // The hub holds A's audit entry about the patient.
    let about = h.store.device_audit_list(Some("Patient/p1")).unwrap();
    assert_eq!(about.len(), 1);

    // Every byte that crossed the RPC port: no PHI, no document id, no password.
    let bytes = h.captured.lock().unwrap().clone();
    assert!(bytes.len() > 1000, "the capture saw the traffic");
    let text = String::from_utf8_lossy(&bytes);
    for secret in [
        PHI,
        "Observation/o1",
        "Patient/p1",
        "nurse-password",
        "nurse@clinic",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} crossed the RPC port in plaintext"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_filter_what_the_hub_sends_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub(&dir, Duration::from_secs(900)).await;
    h.store.ensure_db("clinic").unwrap();
    put(
        &h.store,
        "Patient/p1",
        json!({"resourceType": "Patient", "id": "p1"}),
    );
    put(
        &h.store,
        "Observation/o1",
        json!({"resourceType": "Observation", "id": "o1", "status": "final"}),
    );
    put(
        &h.store,
        "DocumentReference/n1",
        json!({"resourceType": "DocumentReference", "id": "n1", "status": "current"}),
    );
    let desk = node(&dir, "desk");
    replicate::rpc::pair(&desk, &offer(&h), "front desk")
        .await
        .unwrap();
    let (client, hub_ep) = rpc_db(&desk, "desk@clinic", "desk-password");
    Replication::new(hub_ep.clone(), local(&desk))
        .run_once(|_| {})
        .await
        .unwrap();
    let ids: Vec<String> = desk
        .changes("clinic", &Default::default())
        .unwrap()
        .results
        .into_iter()
        .map(|c| c.id.as_str().to_owned())
        .collect();
    assert_eq!(
        ids,
        vec!["Patient/p1"],
        "front desk receives demographics only"
    );
    // Asking directly is refused too.
    let r = client
        .couch("GET", "/clinic/DocumentReference%2Fn1", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = client
        .couch(
            "POST",
            "/clinic/_bulk_get",
            Some(br#"{"docs":[{"id":"Observation/o1"}]}"#.to_vec().into()),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&r.body).contains("forbidden"));
    assert!(!String::from_utf8_lossy(&r.body).contains("final"));
    // What it may not write is refused per document, and nothing else is lost.
    put(
        &desk,
        "Observation/o2",
        json!({"resourceType": "Observation", "id": "o2", "status": "final"}),
    );
    put(
        &desk,
        "Patient/p2",
        json!({"resourceType": "Patient", "id": "p2"}),
    );
    let stats = Replication::new(local(&desk), hub_ep)
        .run_once(|_| {})
        .await
        .unwrap();
    assert_eq!(stats.docs_written, 1);
    assert_eq!(stats.doc_write_failures, 1);
    let o2 = store::DocId::parse("Observation/o2").unwrap();
    assert!(h.store.get("clinic", &o2, &Default::default()).is_err());
}

/// A hand-driven channel, to send what a well-behaved client never would.
struct Raw {
    http: reqwest::Client,
    addr: String,
    keys: channel::SessionKeys,
}

impl Raw {
    async fn open(
        addr: &str,
        device: &str,
        key: &StaticKey,
        hub_key: [u8; 32],
    ) -> Result<Raw, (u16, Value)> {
        let http = reqwest::Client::new();
        let challenge = Raw::challenge(&http, addr, device).await;
        let (init, hello) = Initiator::start(device, key, hub_key, now(), &challenge).unwrap();
        Raw::hello(http, addr, key, init, hello).await
    }

    /// A fresh challenge from the hub for `device`.
    async fn challenge(http: &reqwest::Client, addr: &str, device: &str) -> String {
        let v: Value = http
            .post(format!("{addr}/rpc/handshake"))
            .json(&json!({"challenge": {"device": device}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["challenge"].as_str().unwrap().to_owned()
    }

    /// Sends a hello; the channel when the hub welcomes it.
    async fn hello(
        http: reqwest::Client,
        addr: &str,
        key: &StaticKey,
        init: Initiator,
        hello: Hello,
    ) -> Result<Raw, (u16, Value)> {
        let r = http
            .post(format!("{addr}/rpc/handshake"))
            .json(&json!({"hello": hello}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if status != 200 {
            return Err((status, v));
        }
        let w: Welcome = serde_json::from_value(v["welcome"].clone()).unwrap();
        let keys = init.finish(&w, key).unwrap();
        Ok(Raw {
            http,
            addr: addr.to_owned(),
            keys,
        })
    }

    fn seal(&self, route: Route, counter: u64, head: Value) -> Envelope {
        self.seal_with(route, counter, head, b"")
    }

    fn seal_with(&self, route: Route, counter: u64, head: Value, body: &[u8]) -> Envelope {
        let mut plain = serde_json::to_vec(&head).unwrap();
        plain.push(b'\n');
        plain.extend_from_slice(body);
        self.keys.seal_request(route, counter, &plain).unwrap()
    }

    async fn send(&self, route: Route, env: &Envelope) -> (u16, Value) {
        let path = if route == Route::Query {
            "query"
        } else {
            "command"
        };
        let r = self
            .http
            .post(format!("{}/rpc/{path}", self.addr))
            .json(env)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if status != 200 {
            return (status, v);
        }
        let env: Envelope = serde_json::from_value(v).unwrap();
        let plain = self.keys.open_response(route, env.counter, &env).unwrap();
        let nl = plain.iter().position(|b| *b == b'\n').unwrap();
        let head: Value = serde_json::from_slice(&plain[..nl]).unwrap();
        let body: Value = serde_json::from_slice(&plain[nl + 1..]).unwrap_or(Value::Null);
        (head["status"].as_u64().unwrap() as u16, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_impostors_replays_tampering_expired_tokens_and_revoked_devices() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub(&dir, Duration::from_secs(2)).await;
    h.store.ensure_db("clinic").unwrap();
    let dev = node(&dir, "dev");
    let pairing = replicate::rpc::pair(&dev, &offer(&h), "tablet")
        .await
        .unwrap();
    let key = || {
        StaticKey::from_bytes(
            &dev.get_secret(replicate::rpc::CHANNEL_KEY_SECRET)
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    };

    // Wrong hub key: the device pinned another key, so the handshake fails.
    let wrong = Pairing {
        key: hex::encode(StaticKey::generate().unwrap().public()),
        ..pairing.clone()
    };
    let c = RpcClient::new(&wrong, key(), "nurse@clinic", "nurse-password").unwrap();
    let err = c
        .couch("GET", "/clinic", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("handshake_failed") || err.contains("did not prove"),
        "{err}"
    );

    // An unknown device (never paired) is refused.
    let stranger = StaticKey::generate().unwrap();
    let (status, v) = Raw::open(&h.addr, "0123456789abcdef", &stranger, h.hub_key)
        .await
        .err()
        .unwrap();
    assert_eq!((status, v["error"].as_str()), (403, Some("unknown_device")));
    // A paired id with another key cannot pass as the device.
    let (status, _) = Raw::open(&h.addr, &pairing.device, &stranger, h.hub_key)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403);

    // A captured hello opens no second session: the hub's challenge it answers is used up;
    // a hello with no challenge, or one issued to another device, is refused too.
    let http = reqwest::Client::new();
    let challenge = Raw::challenge(&http, &h.addr, &pairing.device).await;
    let (init, hello) =
        Initiator::start(&pairing.device, &key(), h.hub_key, now(), &challenge).unwrap();
    assert!(
        Raw::hello(http.clone(), &h.addr, &key(), init, hello.clone())
            .await
            .is_ok()
    );
    let replay = |hello: Hello| {
        let http = http.clone();
        let (init, _) = Initiator::start(&pairing.device, &key(), h.hub_key, now(), "-").unwrap();
        let addr = h.addr.clone();
        let k = key();
        async move {
            Raw::hello(http, &addr, &k, init, hello)
                .await
                .err()
                .unwrap()
        }
    };
    let (status, v) = replay(hello.clone()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("stale_challenge")),
        "{v}"
    );
    let (_, bare) = Initiator::start(&pairing.device, &key(), h.hub_key, now(), "").unwrap();
    assert_eq!(replay(bare).await.0, 401);
    let theirs = Raw::challenge(&http, &h.addr, "0123456789abcdef").await;
    let (_, misdirected) =
        Initiator::start(&pairing.device, &key(), h.hub_key, now(), &theirs).unwrap();
    assert_eq!(replay(misdirected).await.0, 401);

    // Log in, then replay and tamper.
    let raw = Raw::open(&h.addr, &pairing.device, &key(), h.hub_key)
        .await
        .unwrap();
    let login = raw.seal(
        Route::Command,
        1,
        json!({"op": "login", "name": "nurse@clinic", "password": "nurse-password"}),
    );
    let (status, v) = raw.send(Route::Command, &login).await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (status, v) = raw.send(Route::Command, &login).await;
    assert_eq!((status, v["error"].as_str()), (409, Some("replay")));
    let get = |n: u64| {
        raw.seal(
            Route::Query,
            n,
            json!({"op": "http", "method": "GET", "path": "/clinic", "token": token}),
        )
    };
    // No record moves before the device proved its audit position in this session (ADR 32).
    let (status, v) = raw.send(Route::Query, &get(2)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (428, Some("audit_first")),
        "{v}"
    );
    // This device has audited nothing yet, and the hub witnessed nothing: an empty trail
    // proves its position.
    assert!(dev.audit_head().unwrap().is_none());
    let push = json!({"entries": [], "head": null});
    let env = raw.seal_with(
        Route::Command,
        3,
        json!({"op": "audit_push", "token": token}),
        &serde_json::to_vec(&push).unwrap(),
    );
    let (status, v) = raw.send(Route::Command, &env).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = raw.send(Route::Query, &get(4)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["db_name"], "clinic");
    // Reordered: counter 3 after 4.
    let (status, _) = raw.send(Route::Query, &get(3)).await;
    assert_eq!(status, 409);
    // One flipped ciphertext byte.
    let mut env = get(5);
    let mut data = base64_decode(&env.data);
    data[5] ^= 0x01;
    env.data = base64_encode(&data);
    let (status, v) = raw.send(Route::Query, &env).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_envelope")));
    // A write sent as a query is refused.
    let put_local = raw.seal(
        Route::Query,
        6,
        json!({"op": "http", "method": "PUT", "path": "/clinic/_local/x", "token": token}),
    );
    assert_eq!(raw.send(Route::Query, &put_local).await.0, 400);
    // No token, or a forged one.
    let anon = raw.seal(
        Route::Query,
        7,
        json!({"op": "http", "method": "GET", "path": "/clinic"}),
    );
    assert_eq!(raw.send(Route::Query, &anon).await.0, 401);

    // The token expires (2 s here).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, v) = raw.send(Route::Query, &get(8)).await;
    assert_eq!(status, 401, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("expired"));

    // Revoked: the open session is refused at once, and the next handshake too.
    assert!(
        h.store
            .revoke_device(&pairing.device, "admin", now() as i64)
            .unwrap()
    );
    let (status, v) = raw.send(Route::Query, &get(9)).await;
    assert_eq!((status, v["error"].as_str()), (403, Some("revoked")));
    let (status, v) = Raw::open(&h.addr, &pairing.device, &key(), h.hub_key)
        .await
        .err()
        .unwrap();
    assert_eq!((status, v["error"].as_str()), (403, Some("revoked")));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_the_client_handshakes_again() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub_with(
        &dir,
        hub::rpc::RpcSettings {
            // Whole seconds, checked against the clock's second: 3 s leaves a login under a loaded
            // CI machine (Argon2id in a debug build) time to finish inside one session.
            session_ttl: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    h.store.ensure_db("clinic").unwrap();
    let dev = node(&dir, "dev");
    let pairing = replicate::rpc::pair(&dev, &offer(&h), "tablet")
        .await
        .unwrap();
    let key = StaticKey::from_bytes(
        &dev.get_secret(replicate::rpc::CHANNEL_KEY_SECRET)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let raw = Raw::open(&h.addr, &pairing.device, &key, h.hub_key)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let login = raw.seal(
        Route::Command,
        1,
        json!({"op": "login", "name": "nurse@clinic", "password": "nurse-password"}),
    );
    let (status, v) = raw.send(Route::Command, &login).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("session_expired"))
    );
    // The client renews what expired on its own.
    let c = RpcClient::from_store(&dev, "nurse@clinic", "nurse-password").unwrap();
    assert_eq!(c.couch("GET", "/clinic", None).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(c.couch("GET", "/clinic", None).await.unwrap().status, 200);
    // A wrong password is refused inside the channel.
    let bad = RpcClient::from_store(&dev, "nurse@clinic", "wrong").unwrap();
    let err = bad
        .couch("GET", "/clinic", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("incorrect"), "{err}");
}

/// Many batches through the pipelined replicator, whose stages share one channel (a stage that
/// stops polling a call must not hold the channel's turn: this hung before calls ran in tasks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_batches_replicate_over_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub(&dir, Duration::from_secs(900)).await;
    h.store.ensure_db("clinic").unwrap();
    let a = node(&dir, "a");
    replicate::rpc::pair(&a, &offer(&h), "tablet")
        .await
        .unwrap();
    let docs: Vec<DocWrite> = (0..1200)
        .map(|i| {
            DocWrite::from_json(
                json!({"_id": format!("Observation/o{i}"), "resourceType": "Observation", "id": format!("o{i}"),
                       "status": "final", "subject": {"reference": format!("Patient/p{}", i % 700)}, "note": [{"text": "x".repeat(560)}]}),
                None,
            )
            .unwrap()
        })
        .collect();
    a.bulk_docs("clinic", docs, true).unwrap();
    // A database the hub does not have yet: the replication creates it (an administrator).
    let c = Arc::new(RpcClient::from_store(&a, "admin@clinic", "admin-password").unwrap());
    let hub_ep = Endpoint::Http(HttpDb::over_rpc(c, "newdb").unwrap());
    let mut r = Replication::new(local(&a), hub_ep.clone());
    r.batch_size = 500;
    let stats = tokio::time::timeout(Duration::from_secs(60), r.run_once(|_| {}))
        .await
        .expect("the replication finished")
        .unwrap();
    assert_eq!(stats.docs_written, 1200, "{:?}", stats.errors);
    let b = node(&dir, "b");
    let mut r = Replication::new(hub_ep, local(&b));
    r.batch_size = 100;
    let stats = tokio::time::timeout(Duration::from_secs(60), r.run_once(|_| {}))
        .await
        .expect("the replication finished")
        .unwrap();
    assert_eq!(stats.docs_written, 1200);
}

/// Hostile bytes on the RPC port: every one a 4xx with `{"error","reason"}`, never a 5xx; the
/// hub keeps serving and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_rpc_port_gets_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub(&dir, Duration::from_secs(900)).await;
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        (
            "not JSON",
            "/rpc/handshake",
            "application/json",
            b"hello?".to_vec(),
        ),
        (
            "invalid UTF-8",
            "/rpc/handshake",
            "application/json",
            vec![b'{', 0xff, 0xfe, b'}'],
        ),
        (
            "deep nesting",
            "/rpc/query",
            "application/json",
            deep.into_bytes(),
        ),
        (
            "wrong content type",
            "/rpc/command",
            "text/plain",
            b"{}".to_vec(),
        ),
        (
            "oversized body",
            "/rpc/command",
            "application/json",
            vec![b' '; 80 << 20],
        ),
        (
            "missing fields",
            "/rpc/handshake",
            "application/json",
            br#"{"hello":{}}"#.to_vec(),
        ),
        (
            "bad key in hello",
            "/rpc/handshake",
            "application/json",
            br#"{"hello":{"device":"d","ephemeral":"!!","time":0,"proof":""}}"#.to_vec(),
        ),
        (
            "unknown session",
            "/rpc/query",
            "application/json",
            br#"{"session":"nope","counter":1,"data":"AAAA"}"#.to_vec(),
        ),
        (
            "huge counter",
            "/rpc/command",
            "application/json",
            br#"{"session":"nope","counter":18446744073709551616,"data":""}"#.to_vec(),
        ),
        (
            "not base64",
            "/rpc/query",
            "application/json",
            br#"{"session":"nope","counter":1,"data":"%%%"}"#.to_vec(),
        ),
        (
            "unknown route",
            "/rpc/../../admin",
            "application/json",
            b"{}".to_vec(),
        ),
    ];
    for (what, path, ctype, body) in cases {
        let r = fresh
            .post(format!("{}{path}", h.addr))
            .header("Content-Type", ctype)
            .body(body)
            .send()
            .await;
        let Ok(r) = r else {
            // The server may close after refusing an oversized body before reading it all.
            assert_eq!(what, "oversized body");
            continue;
        };
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert!((400..500).contains(&status), "{what}: {status} {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: the answer is not JSON: {text}"));
        assert!(
            v["error"].is_string() && v["reason"].is_string(),
            "{what}: {v}"
        );
    }
    // Still serving: a real device completes a handshake.
    let key = StaticKey::generate().unwrap();
    assert_eq!(
        h.store.list_devices().unwrap().len(),
        0,
        "nothing was paired or written"
    );
    let r = Raw::open(&h.addr, "unknown-device", &key, h.hub_key).await;
    assert!(
        matches!(r, Err((403 | 401, _))),
        "an unpaired device is refused, by a live hub"
    );
}

/// Issue 16: a login token ends when its account's password changes or the account is removed,
/// even while the token has time left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_token_ends_when_its_account_changes_or_goes() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hub(&dir, Duration::from_secs(900)).await;
    h.store.ensure_db("clinic").unwrap();
    let a = node(&dir, "a");
    replicate::rpc::pair(&a, &offer(&h), "tablet A")
        .await
        .unwrap();
    let (c, _) = rpc_db(&a, "nurse@clinic", "nurse-password");
    assert_eq!(c.couch("GET", "/clinic", None).await.unwrap().status, 200);
    // Another password, written straight to the hub's store (as another process would): the
    // token in hand stops working, and the old password does not log in again.
    let mut account = h.store.get_account("nurse@clinic").unwrap().unwrap();
    account.password_hash = hub::auth::hash_password("a-new-password").unwrap();
    h.store.put_account(&account).unwrap();
    let after = c.couch("GET", "/clinic", None).await;
    assert!(
        after.as_ref().map_or(true, |r| r.status == 401),
        "{:?}",
        after.map(|r| r.status)
    );
    // With the new password it works; removing the account ends that session too.
    let (c2, _) = rpc_db(&a, "nurse@clinic", "a-new-password");
    assert_eq!(c2.couch("GET", "/clinic", None).await.unwrap().status, 200);
    assert!(h.store.delete_account("nurse@clinic").unwrap());
    let gone = c2.couch("GET", "/clinic", None).await;
    assert!(
        gone.as_ref().map_or(true, |r| r.status == 401),
        "{:?}",
        gone.map(|r| r.status)
    );
}
