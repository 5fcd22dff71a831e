//! The device side of the hub's encrypted RPC transport (see `hub::rpc`): pairing, the channel
//! handshake, login, and CouchDB calls carried in envelopes. [`crate::HttpDb::over_rpc`] makes a
//! replication endpoint of it, so the same replicator runs over either transport.
//!
//! Calls on one client are serialized (envelope counters must arrive in order); the channel
//! session and the login token are renewed as they expire.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use store::Store;
use vault::channel::{self, Envelope, Initiator, Route, SessionKeys, StaticKey, Welcome};
use vault::pairing::Offer;
use zeroize::Zeroizing;

use crate::Error;

/// Name of the device's channel key in its node secrets.
pub const CHANNEL_KEY_SECRET: &str = "hub.channel_key";
/// Name of the device's pairing record in its node secrets.
pub const PAIRING_SECRET: &str = "hub.pairing";

/// What a device remembers about the hub it paired with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pairing {
    /// The hub's RPC address.
    pub addr: String,
    /// The hub's uuid.
    pub hub: String,
    /// The hub's pinned X25519 key (hex).
    pub key: String,
    /// The hub's TLS certificate fingerprint, if it has one.
    pub tls: Option<String>,
    /// This device's id at the hub.
    pub device: String,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| Error::Config(format!("cannot make an HTTP client: {e}")))
}

fn transport(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<(u16, Value), Error> {
    let resp = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| transport(url, e))?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.map_err(|_| {
        transport(
            url,
            format!("the hub answered {status} with a body that is not JSON"),
        )
    })?;
    Ok((status, v))
}

fn refused(status: u16, v: &Value) -> Error {
    Error::Http {
        what: "hub rpc".into(),
        status,
        error: v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        reason: v
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}

/// Pairs this device with the hub of `offer`: creates the device's channel key, registers it and
/// the device's audit key with the hub (encrypted to the hub's pinned key, with the one-time
/// token), and remembers the hub in the device's encrypted store.
pub async fn pair(store: &Store, offer: &Offer, name: &str) -> Result<Pairing, Error> {
    let hub_key = offer.hub_key().map_err(|e| Error::Config(e.to_string()))?;
    if offer.exp <= now() {
        return Err(Error::Config(
            "this pairing offer has expired; ask for a new one".into(),
        ));
    }
    let (device, audit_key) = store.device_identity()?;
    let key = StaticKey::generate().map_err(|e| Error::Config(e.to_string()))?;
    let req = Zeroizing::new(
        json!({
            "token": offer.token,
            "device": device,
            "name": name,
            "channel_key": hex::encode(key.public()),
            "audit_key": audit_key,
        })
        .to_string(),
    );
    let (sealed, pair_key) =
        channel::seal_to_hub(hub_key, req.as_bytes()).map_err(|e| Error::Config(e.to_string()))?;
    let url = format!("{}/rpc/handshake", offer.addr.trim_end_matches('/'));
    let (status, v) = post_json(&client()?, &url, &json!({"pair": sealed})).await?;
    if status != 200 {
        return Err(refused(status, &v));
    }
    let answer = v
        .get("answer")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Protocol("the hub's pairing answer is malformed".into()))?;
    let plain = pair_key
        .open_answer(answer)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let a: Value = serde_json::from_slice(&plain)
        .map_err(|_| Error::Protocol("the hub's pairing answer is malformed".into()))?;
    if a.get("hub").and_then(Value::as_str) != Some(offer.hub.as_str()) {
        return Err(Error::Protocol(
            "the hub that answered is not the hub of the offer".into(),
        ));
    }
    let pairing = Pairing {
        addr: offer.addr.trim_end_matches('/').to_owned(),
        hub: offer.hub.clone(),
        key: offer.key.clone(),
        tls: offer.tls.clone(),
        device,
    };
    store.put_secret(CHANNEL_KEY_SECRET, &key.secret_bytes()[..])?;
    store.put_secret(
        PAIRING_SECRET,
        &serde_json::to_vec(&pairing).map_err(|e| Error::Protocol(e.to_string()))?,
    )?;
    Ok(pairing)
}

/// The hub this device paired with, if any.
pub fn pairing(store: &Store) -> Result<Option<Pairing>, Error> {
    match store.get_secret(PAIRING_SECRET)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|_| Error::Protocol("the stored pairing is damaged; pair again".into())),
    }
}

struct Channel {
    keys: SessionKeys,
    counter: u64,
    expires: u64,
    token: Option<(String, u64)>,
}

/// A logged-in RPC connection to the paired hub.
pub struct RpcClient {
    http: reqwest::Client,
    addr: String,
    device: String,
    hub_key: [u8; 32],
    key: StaticKey,
    account: String,
    password: Zeroizing<String>,
    channel: tokio::sync::Mutex<Option<Channel>>,
    /// This device's store, whose audit trail each new session pushes before records move.
    audit: Option<Arc<Store>>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("addr", &self.addr)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// What an RPC call answered.
#[derive(Debug)]
pub struct Reply {
    /// The CouchDB status.
    pub status: u16,
    /// The body.
    pub body: bytes::Bytes,
}

impl RpcClient {
    /// A client for the hub `store` is paired with, logging in as `account`.
    /// Each new session proves the device's audit position (pushes its unwitnessed entries)
    /// right after logging in, before any record moves: the hub requires it.
    pub fn from_store(
        store: &Arc<Store>,
        account: &str,
        password: &str,
    ) -> Result<RpcClient, Error> {
        let p = pairing(store)?.ok_or_else(|| {
            Error::Config(
                "this device is not paired with a hub; run `hearth pair OFFER` first".into(),
            )
        })?;
        let key = store.get_secret(CHANNEL_KEY_SECRET)?.ok_or_else(|| {
            Error::Config("this device's channel key is missing; pair again".into())
        })?;
        let key = StaticKey::from_bytes(&key).map_err(|e| Error::Config(e.to_string()))?;
        let mut c = RpcClient::new(&p, key, account, password)?;
        c.audit = Some(store.clone());
        Ok(c)
    }

    /// A client from explicit parts.
    pub fn new(
        p: &Pairing,
        key: StaticKey,
        account: &str,
        password: &str,
    ) -> Result<RpcClient, Error> {
        let hub_key: [u8; 32] = hex::decode(&p.key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Config("the stored hub key is malformed; pair again".into()))?;
        Ok(RpcClient {
            http: client()?,
            addr: p.addr.clone(),
            device: p.device.clone(),
            hub_key,
            key,
            account: account.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            channel: tokio::sync::Mutex::new(None),
            audit: None,
        })
    }

    /// The hub's RPC address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn handshake(&self) -> Result<Channel, Error> {
        let url = format!("{}/rpc/handshake", self.addr);
        // The hub's fresh challenge first: a hello answers one, once, so a captured hello
        // cannot be replayed.
        let (status, v) = post_json(
            &self.http,
            &url,
            &json!({"challenge": {"device": self.device}}),
        )
        .await?;
        if status != 200 {
            return Err(refused(status, &v));
        }
        let challenge = v
            .get("challenge")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol("the hub's challenge is malformed".into()))?;
        let (init, hello) =
            Initiator::start(&self.device, &self.key, self.hub_key, now(), challenge)
                .map_err(|e| Error::Config(e.to_string()))?;
        let (status, v) = post_json(&self.http, &url, &json!({"hello": hello})).await?;
        if status != 200 {
            return Err(refused(status, &v));
        }
        let welcome: Welcome = v
            .get("welcome")
            .cloned()
            .and_then(|w| serde_json::from_value(w).ok())
            .ok_or_else(|| Error::Protocol("the hub's handshake answer is malformed".into()))?;
        let keys = init.finish(&welcome, &self.key).map_err(|e| Error::Http {
            what: "hub rpc handshake".into(),
            status: 0,
            error: "handshake_failed".into(),
            reason: e.to_string(),
        })?;
        Ok(Channel {
            keys,
            counter: 0,
            expires: welcome.expires,
            token: None,
        })
    }

    async fn exchange(
        &self,
        ch: &mut Channel,
        route: Route,
        head: &Value,
        body: &[u8],
    ) -> Result<Result<Reply, (u16, Value)>, Error> {
        let mut plain = Zeroizing::new(serde_json::to_vec(head).unwrap_or_default());
        plain.push(b'\n');
        plain.extend_from_slice(body);
        ch.counter += 1;
        let env = ch
            .keys
            .seal_request(route, ch.counter, &plain)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let path = match route {
            Route::Query => "query",
            Route::Command => "command",
        };
        let url = format!("{}/rpc/{path}", self.addr);
        let resp = self
            .http
            .post(&url)
            .json(&env)
            .send()
            .await
            .map_err(|e| transport(&format!("POST /rpc/{path}"), e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(&format!("POST /rpc/{path}"), e))?;
        if status != 200 {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Ok(Err((status, v)));
        }
        let answer: Envelope = serde_json::from_slice(&bytes)
            .map_err(|_| Error::Protocol("the hub's answer is not an envelope".into()))?;
        let plain = ch
            .keys
            .open_response(route, ch.counter, &answer)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let nl = plain
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(plain.len());
        let head: Value = serde_json::from_slice(&plain[..nl])
            .map_err(|_| Error::Protocol("the hub's answer header is malformed".into()))?;
        let status = head.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
        Ok(Ok(Reply {
            status,
            body: bytes::Bytes::copy_from_slice(plain.get(nl + 1..).unwrap_or(&[])),
        }))
    }

    async fn ready<'a>(&self, guard: &'a mut Option<Channel>) -> Result<&'a mut Channel, Error> {
        let t = now();
        let mut fresh = false;
        if guard.as_ref().is_none_or(|c| c.expires <= t + 30) {
            *guard = Some(self.handshake().await?);
            fresh = true;
        }
        let ch = guard
            .as_mut()
            .ok_or_else(|| Error::Protocol("no channel".into()))?;
        if ch.token.as_ref().is_none_or(|(_, exp)| *exp <= t + 30) {
            let head =
                json!({"op": "login", "name": self.account, "password": self.password.as_str()});
            match self.exchange(ch, Route::Command, &head, b"").await? {
                Ok(r) if r.status == 200 => {
                    let v: Value = serde_json::from_slice(&r.body)
                        .map_err(|_| Error::Protocol("the login answer is malformed".into()))?;
                    let token = v
                        .get("token")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let exp = v.get("expires").and_then(Value::as_u64).unwrap_or(0);
                    ch.token = Some((token, exp));
                }
                Ok(r) => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    return Err(refused(r.status, &v));
                }
                Err((s, v)) => return Err(refused(s, &v)),
            }
        }
        if fresh && let Some(store) = &self.audit {
            self.prove_audit(ch, store).await?;
        }
        Ok(ch)
    }

    /// One exchange with the session's token in the header; a refusal is an error.
    async fn with_token(
        &self,
        ch: &mut Channel,
        route: Route,
        mut head: Value,
        body: &[u8],
    ) -> Result<Value, Error> {
        head["token"] = Value::String(ch.token.as_ref().map(|t| t.0.clone()).unwrap_or_default());
        match self.exchange(ch, route, &head, body).await? {
            Ok(r) => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                if r.status == 200 {
                    Ok(v)
                } else {
                    Err(refused(r.status, &v))
                }
            }
            Err((s, v)) => Err(refused(s, &v)),
        }
    }

    /// Pushes the entries the hub has not witnessed, with the signed head, in this session.
    async fn prove_audit(&self, ch: &mut Channel, store: &Arc<Store>) -> Result<u64, Error> {
        let v = self
            .with_token(ch, Route::Query, json!({"op": "audit_head"}), b"")
            .await?;
        let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let (entries, head) = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                Ok((store.audit_since(seq)?, store.audit_head()?))
            })
            .await
            .map_err(|_| Error::Protocol("a store task failed".into()))??
        };
        // No head: nothing was ever audited here (the hub accepts that only if it witnessed
        // nothing from this device either).
        let body = match head {
            Some(head) => json!({
                "entries": entries.iter().map(store::AuditEntry::to_json).collect::<Vec<_>>(),
                "head": {"seq": head.seq, "hash": hex::encode(head.hash), "signature": hex::encode(head.signature)},
            }),
            None => json!({"entries": [], "head": null}),
        };
        let v = self
            .with_token(
                ch,
                Route::Command,
                json!({"op": "audit_push"}),
                &serde_json::to_vec(&body).unwrap_or_default(),
            )
            .await?;
        Ok(v.get("stored").and_then(Value::as_u64).unwrap_or(0))
    }

    /// One operation: `head` (without the token) and a body. Renews the session and the token
    /// once if the hub says they expired.
    pub async fn call(&self, route: Route, head: Value, body: &[u8]) -> Result<Reply, Error> {
        let mut guard = self.channel.lock().await;
        for attempt in 0..2 {
            let ch = self.ready(&mut guard).await?;
            let mut h = head.clone();
            h["token"] = Value::String(ch.token.as_ref().map(|t| t.0.clone()).unwrap_or_default());
            match self.exchange(ch, route, &h, body).await? {
                Ok(r) if r.status == 401 && attempt == 0 => {
                    // The token was refused (expired early, hub restarted): log in again.
                    ch.token = None;
                }
                Ok(r) => return Ok(r),
                Err((401, _)) if attempt == 0 => *guard = None,
                Err((s, v)) => return Err(refused(s, &v)),
            }
        }
        Err(Error::Protocol("the hub refused the session twice".into()))
    }

    /// A CouchDB API call through the channel.
    pub async fn couch(
        &self,
        method: &str,
        path: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<Reply, Error> {
        let route = Route::for_call(method, path);
        let head = json!({"op": "http", "method": method, "path": path});
        self.call(route, head, body.as_deref().unwrap_or(&[])).await
    }

    /// Pushes this device's audit entries the hub has not witnessed yet, with the signed head.
    /// Returns how many were stored. A device restored from an old copy is refused here. The
    /// hub exchanges no records in a session before this succeeded (a client made with
    /// [`RpcClient::from_store`] does it at each new session by itself).
    pub async fn push_audit(&self, store: &Arc<Store>) -> Result<u64, Error> {
        let mut guard = self.channel.lock().await;
        let ch = self.ready(&mut guard).await?;
        self.prove_audit(ch, store).await
    }
}
