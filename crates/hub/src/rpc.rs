//! The device-facing RPC transport (seed 003, docs/architecture.md §4): four routes on
//! plain HTTP that carry only ciphertext.
//!
//! ```text
//! GET  /rpc/heartbeat   liveness; says nothing about the hub's data
//! POST /rpc/handshake   {"challenge": {"device"}} → {"challenge", "expires"}  (single use, 60 s)
//!                       {"hello": …} → {"welcome": …}   (vault::channel; answers a challenge)
//!                       {"pair": …}  → {"answer": …}    (pairing with a one-time offer)
//! POST /rpc/command     envelope: login, writes (_bulk_docs, _local checkpoints), audit_push
//! POST /rpc/query       envelope: reads (_changes, _revs_diff, _bulk_get, _all_docs, documents),
//!                       audit_head
//! ```
//!
//! Inside an envelope the plaintext is one line of JSON (the header) then the body bytes. A
//! request header is `{"op":"login","name":…,"password":…}`,
//! `{"op":"http","method":…,"path":…,"token":…}` (a CouchDB API call, dispatched into the same
//! router the CouchDB API uses, as the token's account and device, so access control, audit and
//! every protocol detail are the same on both transports), or `{"op":"audit_head"|"audit_push",
//! "token":…}`. The answer's header is `{"status":…}`.
//!
//! Records move only after the device proved its audit position in the session: an `http`
//! call before a witnessed `audit_push` gets `428 audit_first`. A device restored from an old
//! copy of its folder (its chain no longer extends what the hub witnessed) is refused at that
//! push, before it sends or receives any record.
//!
//! Envelope counters must grow strictly within a session, so a replayed or reordered envelope
//! is refused; tampering fails the AEAD tag. Sessions expire; tokens are short-lived, signed by
//! the hub's Ed25519 key, and bound to the session and device they were issued in. A revoked
//! device is refused at its next handshake and on every call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use vault::channel::{self, Claims, Envelope, Hello, Route, SealedToHub, SessionKeys, StaticKey};
use zeroize::Zeroizing;

use store::Session;

use crate::{HubState, blocking, unix_now};

/// Lifetimes and limits of the RPC transport.
#[derive(Clone, Debug)]
pub struct RpcSettings {
    /// How long a channel session lasts after its handshake.
    pub session_ttl: Duration,
    /// How long a login token lasts.
    pub token_ttl: Duration,
    /// Largest request body (envelope) accepted.
    pub max_body: usize,
}

impl Default for RpcSettings {
    fn default() -> Self {
        RpcSettings {
            session_ttl: Duration::from_secs(3600),
            token_ttl: Duration::from_secs(900),
            max_body: crate::DEFAULT_MAX_BODY,
        }
    }
}

/// The hub's long-term identity on the channel.
pub struct HubKeys {
    /// X25519 key devices pin at pairing.
    pub channel: StaticKey,
    /// Ed25519 key that signs login tokens.
    pub signing: SigningKey,
}

struct Channel {
    keys: SessionKeys,
    device: String,
    last_counter: u64,
    expires: u64,
    /// Whether the device proved its audit position in this session (an `audit_push` the
    /// hub witnessed): records move only after that, so a device restored from an old copy
    /// of its folder is refused before it sends or receives anything.
    witnessed: bool,
}

/// The RPC service's state.
pub struct Rpc {
    hub: HubState,
    keys: HubKeys,
    couch: Router,
    sessions: Mutex<HashMap<String, Channel>>,
    /// Open handshake challenges: challenge → (device, expiry).
    challenges: Mutex<HashMap<String, (String, u64)>>,
    settings: RpcSettings,
}

/// How long a handshake challenge may be answered.
const CHALLENGE_SECS: u64 = 60;

/// Most open challenges kept at once (the oldest go first).
const MAX_CHALLENGES: usize = 4096;

impl Rpc {
    /// A fresh single-use challenge for `device`'s next hello, and when it expires.
    fn new_challenge(&self, device: &str) -> Option<(String, u64)> {
        let challenge = random_hex::<16>()?;
        let now = unix_now();
        let expires = now + CHALLENGE_SECS;
        let mut c = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|_, (_, exp)| *exp > now);
        if c.len() >= MAX_CHALLENGES
            && let Some(oldest) = c
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
        {
            c.remove(&oldest);
        }
        c.insert(challenge.clone(), (device.to_owned(), expires));
        Some((challenge, expires))
    }

    /// Uses up `challenge`: true when it was issued for `device` and has not expired.
    fn take_challenge(&self, challenge: &str, device: &str) -> bool {
        let taken = self
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(challenge);
        taken.is_some_and(|(d, exp)| d == device && exp > unix_now())
    }

    fn witnessed(&self, session: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .is_some_and(|c| c.witnessed)
    }

    fn set_witnessed(&self, session: &str) {
        if let Some(c) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(session)
        {
            c.witnessed = true;
        }
    }
}

/// Why a suspended device is refused.
const SUSPENDED: &str = "this device is suspended: the hub refused its audit trail (restored from an old copy, or a broken chain); an administrator must pair it again as a new device";

/// Most channel sessions kept at once (the oldest expire first).
const MAX_SESSIONS: usize = 4096;

impl Rpc {
    /// The service over `hub`, dispatching CouchDB calls into `couch` (the hub's router).
    pub fn new(hub: HubState, keys: HubKeys, couch: Router, settings: RpcSettings) -> Rpc {
        Rpc {
            hub,
            keys,
            couch,
            sessions: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            settings,
        }
    }

    /// Channel sessions currently open.
    pub fn open_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// The four device-facing routes.
pub fn router(rpc: std::sync::Arc<Rpc>) -> Router {
    let limit = rpc.settings.max_body;
    Router::new()
        .route("/rpc/heartbeat", get(heartbeat))
        .route("/rpc/handshake", post(handshake))
        .route("/rpc/command", post(command))
        .route("/rpc/query", post(query))
        .fallback(|| async {
            rpc_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "this port serves only /rpc/heartbeat, /rpc/handshake, /rpc/command and /rpc/query",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(crate::couch_errors))
        .with_state(rpc)
}

type RpcState = std::sync::Arc<Rpc>;

fn rpc_error(status: StatusCode, error: &str, reason: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "reason": reason})),
    )
        .into_response()
}

async fn heartbeat() -> Response {
    axum::Json(json!({"ok": true, "service": "hearth-hub", "rpc": 1, "time": unix_now()}))
        .into_response()
}

fn random_hex<const N: usize>() -> Option<String> {
    vault::random_bytes::<N>().ok().map(hex::encode)
}

async fn handshake(State(rpc): State<RpcState>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the handshake is not JSON",
        );
    };
    if let Some(c) = v.get("challenge") {
        let Some(device) = c.get("device").and_then(Value::as_str) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a challenge request is {\"challenge\": {\"device\": id}}",
            );
        };
        return match rpc.new_challenge(device) {
            Some((challenge, expires)) => {
                axum::Json(json!({"challenge": challenge, "expires": expires})).into_response()
            }
            None => rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the system random number generator failed",
            ),
        };
    }
    if let Some(h) = v.get("hello") {
        let Ok(hello) = serde_json::from_value::<Hello>(h.clone()) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the hello is malformed",
            );
        };
        return hello_handshake(rpc, hello).await;
    }
    if let Some(p) = v.get("pair") {
        let Ok(sealed) = serde_json::from_value::<SealedToHub>(p.clone()) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the pairing request is malformed",
            );
        };
        return pair(rpc, sealed).await;
    }
    rpc_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "a handshake is {\"challenge\": …}, then {\"hello\": …}; or {\"pair\": …}",
    )
}

async fn hello_handshake(rpc: RpcState, hello: Hello) -> Response {
    // A hello answers one fresh challenge, once: a captured hello replays nothing.
    if !rpc.take_challenge(&hello.challenge, &hello.device) {
        rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            "stale_challenge",
            "the handshake does not answer a fresh challenge from this hub (replayed, used or expired); ask for a new one",
        );
    }
    let hub = rpc.hub.clone();
    let id = hello.device.clone();
    let device = match blocking(move || Ok(hub.store.get_device(&id)?)).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let Some(device) = device else {
        rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
        return rpc_error(
            StatusCode::FORBIDDEN,
            "unknown_device",
            "this device is not paired with this hub; pair it with a new offer",
        );
    };
    if device.revoked_at.is_some() {
        rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
        return rpc_error(
            StatusCode::FORBIDDEN,
            "revoked",
            "this device was revoked by the hub administrator",
        );
    }
    if device.audit_refused_at.is_some() {
        rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
        return rpc_error(StatusCode::FORBIDDEN, "suspended", SUSPENDED);
    }
    let now = unix_now();
    let Some(sid) = random_hex::<16>() else {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no randomness",
        );
    };
    let expires = now + rpc.settings.session_ttl.as_secs();
    let (keys, welcome) = match channel::accept(
        &rpc.keys.channel,
        device.channel_key,
        &hello,
        &sid,
        expires,
        now,
    ) {
        Ok(x) => x,
        Err(e) => {
            rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
            return rpc_error(StatusCode::FORBIDDEN, "handshake_failed", &e.to_string());
        }
    };
    {
        let mut sessions = rpc.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(
            sid,
            Channel {
                keys,
                device: device.id.clone(),
                last_counter: 0,
                expires,
                witnessed: false,
            },
        );
    }
    rpc.hub
        .metrics
        .sync_sessions
        .fetch_add(1, Ordering::Relaxed);
    let hub = rpc.hub.clone();
    let id = device.id.clone();
    if let Err(e) = blocking(move || Ok(hub.store.touch_device(&id, now as i64)?)).await {
        return e.into_response();
    }
    axum::Json(json!({"welcome": welcome})).into_response()
}

async fn pair(rpc: RpcState, sealed: SealedToHub) -> Response {
    let (plain, key) = match channel::open_from_device(&rpc.keys.channel, &sealed) {
        Ok(x) => x,
        Err(e) => return rpc_error(StatusCode::FORBIDDEN, "pairing_failed", &e.to_string()),
    };
    let Ok(req) = serde_json::from_slice::<Value>(&plain) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the pairing request is malformed",
        );
    };
    let s = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let k32 = |k: &str| -> Option<[u8; 32]> { hex::decode(s(k)).ok()?.try_into().ok() };
    let (Some(channel_key), Some(audit_key)) = (k32("channel_key"), k32("audit_key")) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the pairing request lacks the device keys",
        );
    };
    let token = Zeroizing::new(hex::decode(s("token")).unwrap_or_default());
    let device = store::Device {
        id: s("device"),
        name: s("name").chars().take(100).collect(),
        channel_key,
        audit_key,
        paired_at: 0,
        last_contact: None,
        revoked_at: None,
        audit_seq: 0,
        audit_refused_at: None,
    };
    if device.id.is_empty()
        || device.id.len() > 64
        || !device
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the device id is malformed",
        );
    }
    let hub = rpc.hub.clone();
    let d = device.clone();
    let now = unix_now() as i64;
    if let Err(e) = blocking(move || Ok(hub.store.pair_device(&token, &d, now)?)).await {
        return rpc_error(StatusCode::FORBIDDEN, "pairing_failed", &e.reason);
    }
    let answer = json!({"ok": true, "hub": rpc.hub.uuid, "device": device.id});
    match key.seal_answer(answer.to_string().as_bytes()) {
        Ok(a) => axum::Json(json!({"answer": a})).into_response(),
        Err(_) => rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "cannot seal the answer",
        ),
    }
}

async fn command(State(rpc): State<RpcState>, body: Bytes) -> Response {
    call(rpc, Route::Command, body).await
}

async fn query(State(rpc): State<RpcState>, body: Bytes) -> Response {
    call(rpc, Route::Query, body).await
}

/// An answer inside the channel: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, v: Value) -> Answer {
        Answer {
            status,
            body: serde_json::to_vec(&v).unwrap_or_default(),
        }
    }

    fn error(status: u16, error: &str, reason: &str) -> Answer {
        Answer::json(status, json!({"error": error, "reason": reason}))
    }
}

async fn call(rpc: RpcState, route: Route, body: Bytes) -> Response {
    let Ok(env) = serde_json::from_slice::<Envelope>(&body) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the envelope is malformed",
        );
    };
    drop(body);
    let now = unix_now();
    // Open and count the envelope under the session lock: the counter moves only for an
    // envelope that authenticated.
    let (plain, device) = {
        let mut sessions = rpc.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = sessions.get_mut(&env.session) else {
            return rpc_error(
                StatusCode::UNAUTHORIZED,
                "no_session",
                "unknown or expired session; handshake again",
            );
        };
        if s.expires <= now {
            sessions.remove(&env.session);
            return rpc_error(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the session has expired; handshake again",
            );
        }
        if env.counter <= s.last_counter {
            rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
            return rpc_error(
                StatusCode::CONFLICT,
                "replay",
                "the envelope's counter is not above the last one (replayed or reordered)",
            );
        }
        let plain = match s.keys.open_request(route, &env) {
            Ok(p) => p,
            Err(e) => {
                rpc.hub.metrics.rpc_refused.fetch_add(1, Ordering::Relaxed);
                return rpc_error(StatusCode::BAD_REQUEST, "bad_envelope", &e.to_string());
            }
        };
        s.last_counter = env.counter;
        (plain, s.device.clone())
    };
    let answer = answer(&rpc, route, &env.session, &device, &plain, now).await;
    drop(plain);
    let mut out = serde_json::to_vec(&json!({"status": answer.status})).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(&answer.body);
    let sealed = {
        let sessions = rpc.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&env.session) {
            Some(s) => s.keys.seal_response(route, env.counter, &out),
            None => {
                return rpc_error(StatusCode::UNAUTHORIZED, "no_session", "the session ended");
            }
        }
    };
    let zero = Zeroizing::new(out);
    drop(zero);
    match sealed {
        Ok(e) => axum::Json(e).into_response(),
        Err(_) => rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "cannot seal the answer",
        ),
    }
}

fn split_plain(plain: &[u8]) -> Option<(Value, &[u8])> {
    let nl = plain
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(plain.len());
    let head = serde_json::from_slice(&plain[..nl]).ok()?;
    Some((head, plain.get(nl + 1..).unwrap_or(&[])))
}

async fn answer(
    rpc: &RpcState,
    route: Route,
    session: &str,
    device: &str,
    plain: &[u8],
    now: u64,
) -> Answer {
    let Some((head, body)) = split_plain(plain) else {
        return Answer::error(400, "bad_request", "the request header is not JSON");
    };
    let op = head.get("op").and_then(Value::as_str).unwrap_or("");
    let hub = rpc.hub.clone();
    let dev = device.to_owned();
    match blocking(move || Ok(hub.store.get_device(&dev)?)).await {
        Ok(Some(d)) if d.revoked_at.is_none() && d.audit_refused_at.is_none() => {}
        Ok(Some(d)) if d.revoked_at.is_none() => return Answer::error(403, "suspended", SUSPENDED),
        Ok(_) => return Answer::error(403, "revoked", "this device was revoked"),
        Err(e) => return Answer::error(e.status.as_u16(), &e.error, &e.reason),
    }
    if op == "login" {
        if route != Route::Command {
            return Answer::error(400, "bad_request", "login is a command");
        }
        return login(rpc, session, device, &head, now).await;
    }
    let token = head.get("token").and_then(Value::as_str).unwrap_or("");
    let claims = match channel::verify_token(&rpc.keys.signing.verifying_key(), token, now) {
        Ok(c) if c.sid == session && c.dev == device => c,
        Ok(_) => {
            return Answer::error(
                401,
                "unauthorized",
                "the login token was issued to another session",
            );
        }
        Err(e) => return Answer::error(401, "unauthorized", &e.to_string()),
    };
    // The account as it is now: removed, or a new password or role, ends the token at once.
    let hub = rpc.hub.clone();
    let sub = claims.sub.clone();
    let account = match blocking(move || Ok(hub.store.get_account(&sub)?)).await {
        Ok(Some(a)) if crate::auth::credential_stamp(&a) == claims.stamp => a,
        Ok(_) => {
            return Answer::error(
                401,
                "unauthorized",
                "the account changed or was removed since this login; log in again",
            );
        }
        Err(e) => return Answer::error(e.status.as_u16(), &e.error, &e.reason),
    };
    let principal = Session::account(&account, Some(device.to_owned()));
    match op {
        "http" if !rpc.witnessed(session) => Answer::error(
            428,
            "audit_first",
            "push this device's audit trail before exchanging records (the hub checks that it extends what it witnessed)",
        ),
        "http" => http(rpc, route, principal, &head, body).await,
        "audit_head" => audit_head(rpc, device).await,
        "audit_push" if route == Route::Command => {
            let a = audit_push(rpc, &principal, device, body).await;
            if a.status == 200 {
                rpc.set_witnessed(session);
            }
            a
        }
        _ => Answer::error(400, "bad_request", "unknown operation for this route"),
    }
}

async fn login(rpc: &RpcState, session: &str, device: &str, head: &Value, now: u64) -> Answer {
    let name = head
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let password = Zeroizing::new(
        head.get("password")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    );
    let hub = rpc.hub.clone();
    let n = name.clone();
    // The source of an RPC login is the paired device it came through.
    let source = format!("device:{device}");
    let result = blocking(move || hub.auth.login_account(&hub.store, &n, &password, &source)).await;
    let audit = |outcome: &str, role: &str| store::AuditEvent {
        user: name.clone(),
        role: role.to_owned(),
        action: if outcome == "success" {
            "login"
        } else {
            "login_failed"
        }
        .into(),
        outcome: outcome.into(),
        patient: None,
        resource: Some(format!("Device/{device}")),
        detail: Some("hub rpc".into()),
        break_glass: false,
    };
    let account = match result {
        Ok(a) => a,
        // A refused login is audited by `Auth` (with the device as its source).
        Err(e) => return Answer::error(e.status.as_u16(), &e.error, &e.reason),
    };
    let exp = now + rpc.settings.token_ttl.as_secs();
    let stamp = crate::auth::credential_stamp(&account);
    let p = Session::account(&account, None);
    let claims = Claims {
        sub: p.user().to_owned(),
        role: account.role,
        dev: device.to_owned(),
        sid: session.to_owned(),
        exp,
        stamp,
    };
    let Ok(token) = channel::sign_token(&rpc.keys.signing, &claims) else {
        return Answer::error(503, "unavailable", "cannot sign a token");
    };
    let hub = rpc.hub.clone();
    let ev = audit("success", p.audit_role());
    if let Err(e) = blocking(move || Ok(hub.store.audit_append(&[ev])?)).await {
        return Answer::error(e.status.as_u16(), &e.error, &e.reason);
    }
    Answer::json(
        200,
        json!({"token": token, "expires": exp, "name": p.user(), "role": p.audit_role()}),
    )
}

async fn http(rpc: &RpcState, route: Route, p: Session, head: &Value, body: &[u8]) -> Answer {
    let method = head.get("method").and_then(Value::as_str).unwrap_or("GET");
    let path = head.get("path").and_then(Value::as_str).unwrap_or("");
    if !path.starts_with('/') || path.starts_with("/_session") || path.starts_with("//") {
        return Answer::error(400, "bad_request", "the path must be a CouchDB API path");
    }
    let q = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if q.split('&')
        .any(|kv| kv == "feed=continuous" || kv == "feed=eventsource")
    {
        return Answer::error(
            400,
            "bad_request",
            "continuous feeds are not carried over RPC; use feed=longpoll",
        );
    }
    let read = Route::for_call(method, path) == Route::Query;
    if read != (route == Route::Query) {
        return Answer::error(
            400,
            "bad_request",
            if read {
                "reads go to /rpc/query"
            } else {
                "writes go to /rpc/command"
            },
        );
    }
    let Ok(m) = Method::from_bytes(method.as_bytes()) else {
        return Answer::error(400, "bad_request", "unknown method");
    };
    let mut req = Request::builder()
        .method(m)
        .uri(path)
        .header(header::ACCEPT, "application/json");
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let Ok(mut req) = req.body(Body::from(body.to_vec())) else {
        return Answer::error(400, "bad_request", "the path is not a valid URI");
    };
    req.extensions_mut()
        .insert(crate::access::Authenticated::new(p));
    let resp = match rpc.couch.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    match axum::body::to_bytes(resp.into_body(), rpc.settings.max_body * 2).await {
        Ok(b) => Answer {
            status,
            body: b.to_vec(),
        },
        Err(_) => Answer::error(413, "too_large", "the answer is too large for one envelope"),
    }
}

async fn audit_head(rpc: &RpcState, device: &str) -> Answer {
    let hub = rpc.hub.clone();
    let dev = device.to_owned();
    match blocking(move || Ok(hub.store.get_device(&dev)?)).await {
        Ok(Some(d)) => Answer::json(200, json!({"seq": d.audit_seq})),
        Ok(None) => Answer::error(403, "unknown_device", "this device is not paired"),
        Err(e) => Answer::error(e.status.as_u16(), &e.error, &e.reason),
    }
}

async fn audit_push(rpc: &RpcState, p: &Session, device: &str, body: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(400, "bad_request", "the audit push is not JSON");
    };
    let mut entries = Vec::new();
    for e in v
        .get("entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match store::AuditEntry::from_json(e) {
            Ok(e) => entries.push(e),
            Err(e) => return Answer::error(400, "bad_request", &e.to_string()),
        }
    }
    let head = v.get("head").and_then(|h| {
        Some(store::SignedHead {
            seq: h.get("seq")?.as_u64()?,
            hash: hex::decode(h.get("hash")?.as_str()?)
                .ok()?
                .try_into()
                .ok()?,
            signature: hex::decode(h.get("signature")?.as_str()?)
                .ok()?
                .try_into()
                .ok()?,
        })
    });
    let Some(head) = head else {
        // A device with no trail yet (nothing was ever audited on it) proves its position
        // only if the hub has witnessed nothing from it either; otherwise it was rewound.
        if !entries.is_empty() || !v.get("head").is_some_and(Value::is_null) {
            return Answer::error(400, "bad_request", "the audit push needs the signed head");
        }
        let hub = rpc.hub.clone();
        let dev = device.to_owned();
        return match blocking(move || Ok(hub.store.get_device(&dev)?)).await {
            Ok(Some(d)) if d.audit_seq == 0 => {
                Answer::json(200, json!({"ok": true, "stored": 0, "witnessed": 0}))
            }
            Ok(Some(d)) => {
                let why = format!(
                    "this device's audit trail is empty, but the hub witnessed {} of its entries: it was restored from an old copy or reset",
                    d.audit_seq
                );
                let hub = rpc.hub.clone();
                let dev = device.to_owned();
                let w = why.clone();
                rpc.hub
                    .metrics
                    .audit_refused
                    .fetch_add(1, Ordering::Relaxed);
                if let Err(e) = blocking(move || Ok(hub.store.suspend_device(&dev, &w)?)).await {
                    return Answer::error(e.status.as_u16(), &e.error, &e.reason);
                }
                Answer::error(409, "audit_rewound", &why)
            }
            Ok(None) => Answer::error(403, "unknown_device", "this device is not paired"),
            Err(e) => Answer::error(e.status.as_u16(), &e.error, &e.reason),
        };
    };
    let hub = rpc.hub.clone();
    let dev = device.to_owned();
    let who = p.user().to_owned();
    let witnessed =
        blocking(move || Ok(hub.store.witness_device_audit(&dev, &entries, &head)?)).await;
    if witnessed.is_err() {
        rpc.hub
            .metrics
            .audit_refused
            .fetch_add(1, Ordering::Relaxed);
    }
    match witnessed {
        Ok(w) => Answer::json(
            200,
            json!({"ok": true, "stored": w.stored, "witnessed": w.seq, "by": who}),
        ),
        Err(e) => Answer::error(e.status.as_u16(), &e.error, &e.reason),
    }
}
