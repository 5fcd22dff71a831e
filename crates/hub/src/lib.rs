//! The Hearth hub's CouchDB-compatible HTTP API: what PouchDB apps, CouchDB replicators and
//! other Hearth nodes use to replicate with a hub (docs/architecture.md §4).
//!
//! ```text
//! GET    /                                     welcome, with the hub's stable uuid
//! GET    /_up | /_all_dbs | /_uuids            liveness | databases (admin) | fresh ids
//! GET|POST|DELETE /_session                    cookie login (name, password), who am I, logout
//! GET|PUT|DELETE /{db}                         info | create (admin) | delete (admin)
//! POST   /{db}                                 create a document with a server id
//! GET|POST /{db}/_changes                      normal, longpoll, continuous, eventsource; _doc_ids, _selector, _design
//! POST   /{db}/_revs_diff | _bulk_docs | _bulk_get | _ensure_full_commit | _compact
//! GET|POST /{db}/_all_docs                     keys, startkey/endkey, include_docs, limit, skip, descending
//! GET|PUT|DELETE /{db}/{docid}                 rev, revs, revs_info, open_revs, latest, conflicts, attachments, atts_since
//! GET|PUT|DELETE /{db}/{docid}/{attachment}    attachments
//! GET|PUT|DELETE /{db}/_local/{id}             checkpoints
//! GET|PUT|DELETE /{db}/_design/{name}          design documents, stored and replicated; no JavaScript runs
//! POST   /{db}/_find | _explain                Mango queries (a scan; indexes choose and sort)
//! GET|POST /{db}/_index, DELETE _index/{ddoc}/json/{name}   JSON index definitions
//! GET|PUT /{db}/_revs_limit                    revisions of history kept (PUT: admin)
//! GET    /{db}/_security                       the roles with access (PUT refused: the matrix rules)
//! POST   /{db}/_purge                          refused: records keep their history
//! POST   /{db}/_view_cleanup | _compact/{ddoc} nothing to do (no view files): 202
//! ```
//!
//! Every request but `/`, `/_up` and `/_session` needs a hub account (HTTP Basic or the
//! `AuthSession` cookie). Errors are CouchDB's `{"error","reason"}`; bodies are limited;
//! responses are gzip-compressed when the client asks; long listings stream.

pub mod access;
pub mod admin;
pub mod admin_ui;
pub mod auth;
pub mod backup;
mod changes;
pub mod config;
mod db;
mod doc;
pub mod error;
mod find;
mod multipart;
pub mod params;
pub mod qr;
pub mod rpc;
pub mod secrets;
pub mod selector;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use store::{AuditEvent, Role, Store};

pub use access::Access;
pub use auth::{Auth, hash_password, verify_password};
pub use error::{CouchError, CouchResult};
pub use store::Session;

/// The CouchDB version the API behaves as (reported in `GET /`).
pub const COUCHDB_VERSION: &str = "3.3.3";
/// Default limit on a request body (after decompression): 64 MiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// What the handlers share.
pub struct Hub {
    /// The hub's unlocked store.
    pub store: Arc<Store>,
    /// Account checks and session cookies.
    pub auth: Auth,
    /// The hub's uuid: derived from its device identity, so stable across restarts.
    pub uuid: String,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

/// Counters the hub keeps for its status and `/metrics` (since it started).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Channel sessions opened by devices (successful handshakes).
    pub sync_sessions: std::sync::atomic::AtomicU64,
    /// Handshakes and envelopes refused (unknown or revoked device, replay, tampering).
    pub rpc_refused: std::sync::atomic::AtomicU64,
    /// Documents received (`_bulk_docs`).
    pub docs_in: std::sync::atomic::AtomicU64,
    /// Documents sent (`_bulk_get`).
    pub docs_out: std::sync::atomic::AtomicU64,
    /// Record accesses refused (each an audit entry).
    pub denied: std::sync::atomic::AtomicU64,
    /// Device audit trails refused (the device suspended).
    pub audit_refused: std::sync::atomic::AtomicU64,
}

impl Hub {
    /// A hub over an unlocked store.
    pub fn new(store: Arc<Store>) -> Result<Hub, CouchError> {
        let (device, _) = store.device_identity()?;
        use md5::{Digest, Md5};
        let uuid = hex::encode(Md5::digest(format!("hearth-hub-uuid-v1:{device}")));
        let auth = Auth::new()
            .map_err(|_| CouchError::bad_request("the system random number generator failed"))?;
        Ok(Hub {
            store,
            auth,
            uuid,
            metrics: Metrics::default(),
        })
    }

    /// Creates or updates a hub account (hashing the password with Argon2id): an administrator
    /// (role `admin`) or a `clinician`.
    pub fn set_account(&self, name: &str, password: &str, admin: bool) -> CouchResult<()> {
        self.set_account_role(
            name,
            password,
            if admin { Role::Admin } else { Role::Clinician },
        )
    }

    /// Creates or updates a hub account with a role of the permission matrix (`admin` makes
    /// it a hub administrator).
    pub fn set_account_role(&self, name: &str, password: &str, role: Role) -> CouchResult<()> {
        let admin = role.is_admin();
        let hash = hash_password(password)?;
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.store.put_account(&store::Account {
            name: name.to_owned(),
            password_hash: hash,
            admin,
            role,
            created_at,
        })?;
        self.auth.forget(name);
        Ok(())
    }

    /// Records a refused access to a document of database `db`, naming its patient.
    pub(crate) fn denied(
        &self,
        who: &Session,
        db: &str,
        id: &str,
        detail: &str,
    ) -> CouchResult<()> {
        self.denied_all(who, db, &[id.to_owned()], detail)
    }

    /// Records refused accesses to documents of database `db`, one entry per id, each naming
    /// the patient whose record it is (from the id, or the stored document: a security officer
    /// asks who tried to see P's record). Nothing when nothing was refused.
    pub(crate) fn denied_all(
        &self,
        who: &Session,
        db: &str,
        ids: &[String],
        what: &str,
    ) -> CouchResult<()> {
        let patient_of = |id: &str| -> Option<String> {
            if id.starts_with("Patient/") {
                return Some(id.to_owned());
            }
            let doc = store::DocId::parse(id).ok()?;
            let raw = self.store.get_raw(db, &doc).ok()?;
            fhir::index::patients_of_json(&raw.body).into_iter().next()
        };
        self.metrics
            .denied
            .fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let events: Vec<AuditEvent> = ids
            .iter()
            .map(|id| AuditEvent {
                outcome: "denied".into(),
                patient: patient_of(id),
                resource: Some(id.clone()),
                detail: Some(what.to_owned()),
                ..who.event("denied")
            })
            .collect();
        self.store.audit_append(&events)?;
        Ok(())
    }

    /// Records what a read sent: one entry per patient whose records went out (so `hearth hub
    /// audit report --patient P` answers who received P's record), and one for the documents
    /// in no patient's compartment. Nothing when nothing was sent.
    pub(crate) fn disclosed(
        &self,
        who: &Session,
        action: &str,
        what: &str,
        d: &Disclosed,
    ) -> CouchResult<()> {
        if d.docs == 0 {
            return Ok(());
        }
        let event = |patient: Option<&String>, n: u64| AuditEvent {
            patient: patient.cloned(),
            resource: d.first.clone().filter(|_| d.docs == 1),
            detail: Some(format!("{what} docs={n}")),
            ..who.event(action)
        };
        let mut events: Vec<AuditEvent> =
            d.patients.iter().map(|(p, n)| event(Some(p), *n)).collect();
        if d.others > 0 || events.is_empty() {
            events.push(event(None, d.others));
        }
        self.store.audit_append(&events)?;
        Ok(())
    }

    pub(crate) fn audit(&self, who: &Session, action: &str, detail: String) -> CouchResult<()> {
        self.store.audit_append(&[AuditEvent {
            detail: Some(detail),
            ..who.event(action)
        }])?;
        Ok(())
    }
}

/// What one read sent, for the accounting of disclosures: documents per patient compartment.
#[derive(Debug, Default)]
pub(crate) struct Disclosed {
    /// Documents sent.
    pub(crate) docs: u64,
    /// Documents per patient (`Patient/{id}`); a document in two compartments counts in both.
    patients: std::collections::BTreeMap<String, u64>,
    /// Documents in no patient's compartment.
    others: u64,
    /// The first document's id: the entries name it when it was the only one.
    first: Option<String>,
}

impl Disclosed {
    /// Notes one document sent: its id and its JSON (the body, or the whole document).
    pub(crate) fn note(&mut self, id: &str, json: &[u8]) {
        self.docs += 1;
        if self.first.is_none() {
            self.first = Some(id.to_owned());
        }
        let mut patients = fhir::index::patients_of_json(json);
        if id.starts_with("Patient/") && !patients.iter().any(|p| p == id) {
            patients.push(id.to_owned());
        }
        if patients.is_empty() {
            self.others += 1;
        }
        for p in patients {
            *self.patients.entry(p).or_default() += 1;
        }
    }

    /// Notes one parsed document sent.
    pub(crate) fn note_value(&mut self, id: &str, doc: &serde_json::Value) {
        self.note(id, &serde_json::to_vec(doc).unwrap_or_default());
    }
}

/// Shared state of the router.
pub type HubState = Arc<Hub>;

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> CouchResult<T> + Send + 'static,
) -> CouchResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        CouchError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "a request handler failed",
        )
    })?
}

/// A JSON response with a status.
pub(crate) fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// Marks a response that must not be compressed (streams that send heartbeats).
#[derive(Clone, Copy)]
pub(crate) struct NoCompress;

/// The router, with the given request body limit.
pub fn router(hub: HubState, max_body: usize) -> Router {
    use tower_http::compression::predicate::{DefaultPredicate, Predicate};
    let compress_when = DefaultPredicate::new().and(
        |_: StatusCode, _: axum::http::Version, _: &HeaderMap, ext: &axum::http::Extensions| {
            ext.get::<NoCompress>().is_none()
        },
    );
    let db_routes = get(db::db_info)
        .put(db::create_db)
        .delete(db::delete_db)
        .post(doc::post_doc)
        .fallback(db::method_not_allowed);
    Router::new()
        .route("/", get(db::welcome).fallback(db::method_not_allowed))
        .route("/_up", get(db::up))
        .route("/_all_dbs", get(db::all_dbs))
        .route("/_uuids", get(db::uuids))
        .route(
            "/_session",
            get(db::get_session)
                .post(db::post_session)
                .delete(db::delete_session)
                .fallback(db::method_not_allowed),
        )
        .route("/{db}", db_routes.clone())
        // PouchDB addresses a database with a trailing slash.
        .route("/{db}/", db_routes)
        .route(
            "/{db}/_changes",
            get(changes::changes)
                .post(changes::changes)
                .fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_revs_diff",
            post(db::revs_diff).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_bulk_docs",
            post(db::bulk_docs).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_bulk_get",
            post(db::bulk_get).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_all_docs",
            get(db::all_docs)
                .post(db::all_docs)
                .fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_ensure_full_commit",
            post(db::ensure_full_commit).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_compact",
            post(db::compact).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_local/{id}",
            get(doc::get_local)
                .put(doc::put_local)
                .delete(doc::delete_local)
                .fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_design/{name}",
            get(doc::design_route)
                .put(doc::design_route)
                .delete(doc::design_route)
                .fallback(db::method_not_allowed),
        )
        .route("/{db}/_design/{name}/{*rest}", any(doc::design_sub))
        .route("/{db}/_find", any(find::find))
        .route("/{db}/_explain", any(find::explain))
        .route("/{db}/_index", any(find::index))
        .route("/{db}/_index/{ddoc}/{kind}/{name}", any(find::delete_index))
        .route(
            "/{db}/_index/_design/{ddoc}/{kind}/{name}",
            any(find::delete_index),
        )
        .route(
            "/{db}/_revs_limit",
            get(db::revs_limit)
                .put(db::revs_limit)
                .fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_security",
            get(db::security)
                .put(db::security)
                .fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_purge",
            post(db::purge).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_view_cleanup",
            post(db::view_maintenance).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/_compact/{ddoc}",
            post(db::view_maintenance).fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/{doc}",
            get(doc::doc_route)
                .put(doc::doc_route)
                .delete(doc::doc_route)
                .fallback(db::method_not_allowed),
        )
        .route(
            "/{db}/{doc}/{*att}",
            get(doc::attachment_route)
                .put(doc::attachment_route)
                .delete(doc::attachment_route)
                .fallback(db::method_not_allowed),
        )
        .fallback(db::not_found)
        .layer(middleware::from_fn_with_state(hub.clone(), authenticate))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(couch_errors))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(
            // The fastest level: on a clinic LAN, CPU is scarcer than bandwidth.
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(compress_when),
        )
        .with_state(hub)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of the cookie `name` in a request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The `AuthSession` cookie of a request.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, "AuthSession")
}

/// Where a request came from, for the login back-off: the peer's IP address, or `-` where the
/// transport has none.
pub(crate) fn peer_of(ext: &axum::http::Extensions) -> String {
    use axum::extract::ConnectInfo;
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| ext.get::<ConnectInfo<tls::TlsPeer>>().map(|c| c.0.0))
        .map_or_else(|| "-".to_owned(), |a| a.ip().to_string())
}

/// The request's source ([`peer_of`]) as an extractor that never fails.
pub(crate) struct Peer(pub(crate) String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Peer, Self::Rejection> {
        Ok(Peer(peer_of(&parts.extensions)))
    }
}

/// Resolves the principal of a request from Basic credentials or a session cookie; `source`
/// is where it came from ([`peer_of`]), for the login back-off.
pub(crate) async fn principal_of(
    hub: &HubState,
    headers: &HeaderMap,
    source: String,
) -> CouchResult<Option<Session>> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let h = h
            .to_str()
            .map_err(|_| CouchError::unauthorized("Malformed Authorization header."))?;
        let (name, pw) = auth::parse_basic(h)
            .ok_or_else(|| CouchError::unauthorized("Only Basic authentication is accepted."))?;
        let hub = hub.clone();
        return blocking(move || hub.auth.login(&hub.store, &name, &pw, &source).map(Some)).await;
    }
    if let Some(c) = session_cookie(headers) {
        let Some(name) = auth::Auth::cookie_name(&c) else {
            return Ok(None);
        };
        let hub2 = hub.clone();
        let account = blocking(move || Ok(hub2.store.get_account(&name)?)).await?;
        // A removed account, a new password or a new role ends the session (the cookie is
        // bound to the account's credential stamp).
        return Ok(account
            .filter(|a| hub.auth.check_cookie(&c, a, unix_now()))
            .map(|a| Session::account(&a, None)));
    }
    Ok(None)
}

/// Errors produced before a handler runs (a body over the limit, a malformed query string)
/// come from the framework as plain text; clients of a CouchDB API (and of the RPC port, which
/// answers in the same form) expect `{"error","reason"}`.
pub(crate) async fn couch_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "bad_content_type",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        s if s.is_server_error() => "internal_server_error",
        _ => "bad_request",
    };
    let reason = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    json(
        status,
        serde_json::json!({"error": error, "reason": reason}),
    )
}

async fn authenticate(State(hub): State<HubState>, mut req: Request, next: Next) -> Response {
    // A call the RPC transport dispatches carries its (token-checked) principal already; no
    // request from the network can carry an extension.
    if req.extensions().get::<access::Authenticated>().is_some() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let public = matches!(path, "/" | "/_up" | "/_session");
    // CouchDB ignores an Authorization header it cannot parse on its public routes (the
    // request is then anonymous); wrong credentials in a well-formed header are still refused.
    let unparseable = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|h| h.to_str().ok().and_then(auth::parse_basic).is_none());
    if public && unparseable {
        return next.run(req).await;
    }
    let source = peer_of(req.extensions());
    match principal_of(&hub, req.headers(), source).await {
        Ok(Some(p)) => {
            req.extensions_mut().insert(access::Authenticated::new(p));
            next.run(req).await
        }
        Ok(None) if public => next.run(req).await,
        Ok(None) => CouchError::unauthorized("Authentication required.").into_response(),
        Err(e) => e.into_response(),
    }
}

/// Every hub response: `X-Content-Type-Options: nosniff`, so a browser never renders JSON or an
/// attachment as a page.
pub(crate) async fn hardening(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Over TLS, every cookie the hub sets is `Secure`: a browser never sends it over plain HTTP.
pub(crate) async fn secure_cookies(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let cookies: Vec<axum::http::HeaderValue> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| {
            let text = v.to_str().ok()?;
            if text.to_ascii_lowercase().contains("; secure") {
                Some(v.clone())
            } else {
                axum::http::HeaderValue::from_str(&format!("{text}; Secure")).ok()
            }
        })
        .collect();
    if !cookies.is_empty() {
        resp.headers_mut().remove(header::SET_COOKIE);
        for c in cookies {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    resp
}

/// On a loopback listener: answers only requests addressed to its own loopback names (a page
/// that rebinds its DNS name to 127.0.0.1 sends its own name in `Host`), and takes
/// state-changing requests only from its own origin (ADR 30). A request without `Host` (an
/// HTTP/1.0 client) is not a browser's and passes.
async fn loopback_only(req: Request, next: Next) -> Response {
    if let Some(refusal) = loopback_refusal(req.headers(), req.method()) {
        return refusal;
    }
    next.run(req).await
}

fn loopback_refusal(headers: &HeaderMap, method: &axum::http::Method) -> Option<Response> {
    let header_str = |name| headers.get(name).and_then(|h| h.to_str().ok());
    let changes = !matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    match vault::origin::check(
        header_str(header::HOST),
        header_str(header::ORIGIN),
        changes,
    ) {
        Ok(()) => None,
        Err(vault::origin::Refused::Host) => Some(
            CouchError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "this server answers only the names 127.0.0.1, localhost and [::1]",
            )
            .into_response(),
        ),
        Err(vault::origin::Refused::Origin) => {
            Some(CouchError::forbidden("cross-site requests are refused").into_response())
        }
    }
}

/// Serves the router on a bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY, a response written in pieces (streamed feeds) can wait out the
    // peer's delayed ACK: 40 ms per request.
    let local = listener.local_addr()?;
    let router = if local.ip().is_loopback() {
        router.layer(middleware::from_fn(loopback_only))
    } else {
        router
    };
    let router = router.layer(middleware::from_fn(hardening));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
