//! The hub's loopback-only administration port.
//!
//! ```text
//! GET  /status                      JSON: databases, devices, sessions, relay (no PHI)
//! GET  /metrics                     Prometheus text format
//! POST /admin/pairing-offers        a one-time pairing offer          (hub administrator)
//! GET  /admin/devices               paired devices, last contact      (hub administrator)
//! POST /admin/devices/{id}/revoke   refuse a device from now on       (hub administrator)
//! GET  /admin/audit?patient=P       audit entries of every device and the hub (hub administrator)
//! GET  /admin/security-events?limit=N  refusals, failed logins, refused device trails, break-glass,
//!                                    account/key/device/policy changes, newest first (administrator)
//! POST /admin/backup                take a backup now (ADR 20)        (hub administrator)
//! GET  /ui …                        the administration screens (see `admin_ui`)
//! ```
//!
//! The administration calls take a hub administrator account (HTTP Basic) and are audited.
//! The port must be loopback (`config::HubConfig::validate`), so only someone on the hub's own
//! machine reaches it; status and metrics carry counts, never record contents or ids.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use vault::pairing::Offer;

use crate::error::{CouchError, CouchResult};
use crate::rpc::Rpc;
use crate::{HubState, Session, auth, blocking, unix_now};

/// What the relay to the upstream reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayState {
    /// The upstream (URL without credentials), if one is configured.
    pub upstream: Option<String>,
    /// When the last full round (push and pull of every database) succeeded.
    pub last_success: Option<u64>,
    /// The last error and when it happened.
    pub last_error: Option<(u64, String)>,
    /// Rounds that failed since start.
    pub errors: u64,
    /// Documents sent upstream since start.
    pub docs_pushed: u64,
    /// Documents received from upstream since start.
    pub docs_pulled: u64,
    /// Changes on the hub not yet relayed (as of the last round).
    pub backlog: u64,
}

/// Shared relay status (written by the relay task, read here).
pub type RelayStatus = Arc<Mutex<RelayState>>;

/// What the administration port needs.
pub struct AdminState {
    /// The hub.
    pub hub: HubState,
    /// Its RPC service (open sessions).
    pub rpc: Arc<Rpc>,
    /// The RPC address written into offers.
    pub public_url: String,
    /// The hub's channel key (hex) for offers.
    pub channel_key: String,
    /// The TLS certificate fingerprint, when the CouchDB API is served over TLS.
    pub tls_fingerprint: Option<String>,
    /// Offer lifetime in seconds.
    pub pairing_ttl: u64,
    /// Relay status.
    pub relay: RelayStatus,
    /// The databases served.
    pub databases: Vec<String>,
    /// The hub's database file (its size is reported).
    pub db_file: PathBuf,
    /// When the hub started.
    pub started: Instant,
    /// The administration screens' browser session.
    pub ui: crate::admin_ui::UiState,
    /// Scheduled backups, when a backup key is configured.
    pub backups: Option<Arc<crate::backup::Backups>>,
}

type AdminHandle = Arc<AdminState>;

/// The administration router.
pub fn router(state: AdminHandle) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/admin/pairing-offers", post(new_offer))
        .route("/admin/devices", get(devices))
        .route("/admin/devices/{id}/revoke", post(revoke))
        .route("/admin/audit", get(audit_report))
        .route("/admin/security-events", get(security_events))
        .route("/admin/backup", post(backup_now))
        .route("/ui", get(crate::admin_ui::home))
        .route("/ui/login", post(crate::admin_ui::login))
        .route("/ui/logout", post(crate::admin_ui::logout))
        .route("/ui/pair", post(crate::admin_ui::pair))
        .route("/ui/devices", get(crate::admin_ui::devices))
        .route("/ui/devices/{id}/revoke", post(crate::admin_ui::revoke))
        .route(
            "/ui/accounts",
            get(crate::admin_ui::accounts).post(crate::admin_ui::save_account),
        )
        .route(
            "/ui/accounts/{name}/remove",
            post(crate::admin_ui::remove_account),
        )
        .fallback(|| async { CouchError::not_found("missing").into_response() })
        .with_state(state)
}

async fn require_admin(s: &AdminHandle, headers: &HeaderMap) -> CouchResult<Session> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            CouchError::unauthorized("a hub administrator account is required (HTTP Basic)")
        })?;
    let (name, pw) = auth::parse_basic(h)
        .ok_or_else(|| CouchError::unauthorized("only Basic authentication is accepted"))?;
    let hub = s.hub.clone();
    // The administration port listens on loopback only: every request comes from here.
    let p = blocking(move || hub.auth.login(&hub.store, &name, &pw, "loopback")).await?;
    if !p.is_admin() {
        return Err(CouchError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs a hub administrator account",
        ));
    }
    Ok(p)
}

fn storage_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        total += std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len());
    }
    total
}

struct Snapshot {
    dbs: Vec<store::DbInfo>,
    conflicts: Vec<(String, u64)>,
    devices: Vec<store::Device>,
    storage: u64,
}

fn conflicted(store: &store::Store, db: &str) -> Result<u64, store::Error> {
    Ok(store.conflicted(db, 0)?.len() as u64)
}

async fn snapshot(s: &AdminHandle) -> CouchResult<Snapshot> {
    let hub = s.hub.clone();
    let names = s.databases.clone();
    let file = s.db_file.clone();
    blocking(move || {
        let mut dbs = Vec::new();
        let mut conflicts = Vec::new();
        for n in &names {
            match hub.store.db_info(n) {
                Ok(i) => {
                    conflicts.push((n.clone(), conflicted(&hub.store, n)?));
                    dbs.push(i);
                }
                Err(store::Error::DbNotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Snapshot {
            dbs,
            conflicts,
            devices: hub.store.list_devices()?,
            storage: storage_bytes(&file),
        })
    })
    .await
}

async fn status(State(s): State<AdminHandle>) -> CouchResult<Response> {
    let snap = snapshot(&s).await?;
    let relay = s.relay.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let m = &s.hub.metrics;
    Ok(axum::Json(json!({
        "hub": s.hub.uuid,
        "uptime_secs": s.started.elapsed().as_secs(),
        "rpc_url": s.public_url,
        "tls_fingerprint": s.tls_fingerprint,
        "databases": snap.dbs.iter().map(|d| json!({"name": d.name, "doc_count": d.doc_count, "update_seq": d.update_seq})).collect::<Vec<_>>(),
        "conflicts": snap.conflicts.iter().map(|(d, n)| (d.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "devices": {"paired": snap.devices.iter().filter(|d| d.revoked_at.is_none()).count(), "revoked": snap.devices.iter().filter(|d| d.revoked_at.is_some()).count(),
                    "suspended": snap.devices.iter().filter(|d| d.revoked_at.is_none() && d.audit_refused_at.is_some()).count()},
        "sessions_open": s.rpc.open_sessions(),
        "sync_sessions": m.sync_sessions.load(Ordering::Relaxed),
        "rpc_refused": m.rpc_refused.load(Ordering::Relaxed),
        "docs_in": m.docs_in.load(Ordering::Relaxed),
        "docs_out": m.docs_out.load(Ordering::Relaxed),
        "storage_bytes": snap.storage,
        "backup": backup_json(&s),
        "relay": {
            "upstream": relay.upstream,
            "last_success": relay.last_success,
            "last_error": relay.last_error.as_ref().map(|(t, e)| json!({"time": t, "error": e})),
            "errors": relay.errors,
            "docs_pushed": relay.docs_pushed,
            "docs_pulled": relay.docs_pulled,
            "backlog": relay.backlog,
        },
    }))
    .into_response())
}

async fn metrics(State(s): State<AdminHandle>) -> CouchResult<Response> {
    let snap = snapshot(&s).await?;
    let relay = s.relay.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let m = &s.hub.metrics;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let one = |v: u64| vec![(String::new(), v)];
    metric(
        "hearth_sync_sessions_total",
        "counter",
        "Channel sessions opened by devices.",
        one(m.sync_sessions.load(Ordering::Relaxed)),
    );
    metric(
        "hearth_rpc_refused_total",
        "counter",
        "Handshakes and envelopes refused.",
        one(m.rpc_refused.load(Ordering::Relaxed)),
    );
    metric(
        "hearth_security_events_total",
        "counter",
        "Security events since start: logins refused for wrong credentials, login attempts held back by the back-off, record accesses refused, device audit trails refused.",
        vec![
            (
                "{kind=\"login_failed\"}".into(),
                s.hub.auth.failed_logins.load(Ordering::Relaxed),
            ),
            (
                "{kind=\"login_throttled\"}".into(),
                s.hub.auth.throttled_logins.load(Ordering::Relaxed),
            ),
            ("{kind=\"denied\"}".into(), m.denied.load(Ordering::Relaxed)),
            (
                "{kind=\"audit_refused\"}".into(),
                m.audit_refused.load(Ordering::Relaxed),
            ),
        ],
    );
    metric(
        "hearth_documents_in_total",
        "counter",
        "Documents received through _bulk_docs.",
        one(m.docs_in.load(Ordering::Relaxed)),
    );
    metric(
        "hearth_documents_out_total",
        "counter",
        "Documents sent through _bulk_get.",
        one(m.docs_out.load(Ordering::Relaxed)),
    );
    metric(
        "hearth_rpc_sessions_open",
        "gauge",
        "Channel sessions currently open.",
        one(s.rpc.open_sessions() as u64),
    );
    metric(
        "hearth_documents",
        "gauge",
        "Live documents per database.",
        snap.dbs
            .iter()
            .map(|d| (format!("{{db=\"{}\"}}", d.name), d.doc_count))
            .collect(),
    );
    metric(
        "hearth_conflicts",
        "gauge",
        "Documents with unresolved conflicts per database.",
        snap.conflicts
            .iter()
            .map(|(d, n)| (format!("{{db=\"{d}\"}}"), *n))
            .collect(),
    );
    metric(
        "hearth_devices_paired",
        "gauge",
        "Paired devices not revoked.",
        one(snap
            .devices
            .iter()
            .filter(|d| d.revoked_at.is_none())
            .count() as u64),
    );
    metric(
        "hearth_storage_bytes",
        "gauge",
        "Size of the hub's encrypted database files.",
        one(snap.storage),
    );
    metric(
        "hearth_relay_backlog",
        "gauge",
        "Changes not yet relayed upstream.",
        one(relay.backlog),
    );
    metric(
        "hearth_relay_documents_pushed_total",
        "counter",
        "Documents relayed upstream.",
        one(relay.docs_pushed),
    );
    metric(
        "hearth_relay_documents_pulled_total",
        "counter",
        "Documents received from upstream.",
        one(relay.docs_pulled),
    );
    metric(
        "hearth_relay_errors_total",
        "counter",
        "Relay rounds that failed.",
        one(relay.errors),
    );
    if let Some(b) = &s.backups {
        let b = b.state();
        metric(
            "hearth_backup_last_success_timestamp_seconds",
            "gauge",
            "When the last good backup was taken (0: never).",
            one(b.last_success.unwrap_or(0)),
        );
        metric(
            "hearth_backup_last_size_bytes",
            "gauge",
            "Size of the last good backup's snapshot.",
            one(b.last_bytes),
        );
        metric(
            "hearth_backup_last_duration_milliseconds",
            "gauge",
            "How long the last good backup took.",
            one(b.last_duration_ms),
        );
        metric(
            "hearth_backup_failures_total",
            "counter",
            "Backups that failed since start.",
            one(b.failures),
        );
    }
    metric(
        "hearth_relay_last_success_timestamp_seconds",
        "gauge",
        "When the relay last completed a round (0: never).",
        one(relay.last_success.unwrap_or(0)),
    );
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}

/// Records a one-time offer made by `p` and returns it.
pub(crate) async fn make_offer(s: &AdminHandle, p: &Session) -> CouchResult<Offer> {
    let token = vault::random_bytes::<16>()
        .map_err(|_| CouchError::bad_request("the system random number generator failed"))?;
    let exp = unix_now() + s.pairing_ttl;
    let hub = s.hub.clone();
    let who = p.clone();
    blocking(move || {
        hub.store
            .put_pairing_offer(&token, exp as i64, who.user())?;
        hub.audit(&who, "pairing_offer", format!("expires={exp}"))
    })
    .await?;
    Ok(Offer {
        v: 1,
        addr: s.public_url.clone(),
        hub: s.hub.uuid.clone(),
        key: s.channel_key.clone(),
        tls: s.tls_fingerprint.clone(),
        token: hex::encode(token),
        exp,
    })
}

async fn new_offer(State(s): State<AdminHandle>, headers: HeaderMap) -> CouchResult<Response> {
    let p = require_admin(&s, &headers).await?;
    let offer = make_offer(&s, &p).await?;
    Ok(
        axum::Json(json!({"offer": offer.encode(), "expires": offer.exp, "addr": offer.addr}))
            .into_response(),
    )
}

async fn devices(State(s): State<AdminHandle>, headers: HeaderMap) -> CouchResult<Response> {
    require_admin(&s, &headers).await?;
    let hub = s.hub.clone();
    let list = blocking(move || Ok(hub.store.list_devices()?)).await?;
    let rows: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({"id": d.id, "name": d.name, "paired_at": d.paired_at, "last_contact": d.last_contact,
                   "revoked_at": d.revoked_at, "audit_refused_at": d.audit_refused_at, "audit_witnessed": d.audit_seq})
        })
        .collect();
    Ok(axum::Json(json!({"devices": rows})).into_response())
}

async fn revoke(
    State(s): State<AdminHandle>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let p = require_admin(&s, &headers).await?;
    let hub = s.hub.clone();
    let done =
        blocking(move || Ok(hub.store.revoke_device(&id, p.user(), unix_now() as i64)?)).await?;
    if !done {
        return Err(CouchError::not_found(
            "no such device, or it was revoked already",
        ));
    }
    Ok(axum::Json(json!({"ok": true})).into_response())
}

/// The backup section of `/status` (`null` when no backup key is configured).
pub(crate) fn backup_json(s: &AdminState) -> Value {
    let Some(b) = &s.backups else {
        return Value::Null;
    };
    let b = b.state();
    json!({
        "dir": b.dir,
        "last_success": b.last_success,
        "last_backup": b.last_name,
        "last_bytes": b.last_bytes,
        "last_documents": b.last_documents,
        "last_duration_ms": b.last_duration_ms,
        "last_error": b.last_error.as_ref().map(|(t, e)| json!({"time": t, "error": e})),
        "failures": b.failures,
        "next_due": b.next_due,
    })
}

async fn backup_now(State(s): State<AdminHandle>, headers: HeaderMap) -> CouchResult<Response> {
    let p = require_admin(&s, &headers).await?;
    let Some(b) = s.backups.clone() else {
        return Err(CouchError::new(
            StatusCode::CONFLICT,
            "no_backup_key",
            "this hub has no backup key: set backup_key in hub.toml (from `hearth backup keygen`)",
        ));
    };
    let hub = s.hub.clone();
    blocking(move || Ok(hub.store.audit_append(&[p.event("backup_request")])?)).await?;
    match b.run_now().await {
        Ok(st) => Ok(axum::Json(json!({
            "ok": true,
            "backup": st.last_name,
            "dir": st.dir,
            "bytes": st.last_bytes,
            "documents": st.last_documents,
            "duration_ms": st.last_duration_ms,
        }))
        .into_response()),
        Err(e) => Err(CouchError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backup_failed",
            &e,
        )),
    }
}

async fn security_events(
    State(s): State<AdminHandle>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let p = require_admin(&s, &headers).await?;
    let limit = q
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(100usize);
    let hub = s.hub.clone();
    let entries = blocking(move || {
        let e = hub.store.security_events(limit)?;
        hub.store.audit_append(&[store::AuditEvent {
            detail: Some(format!("security events={}", e.len())),
            ..p.event("audit_report")
        }])?;
        Ok(e)
    })
    .await?;
    Ok(axum::Json(
        json!({"events": entries.iter().map(store::AuditEntry::to_json).collect::<Vec<_>>()}),
    )
    .into_response())
}

async fn audit_report(
    State(s): State<AdminHandle>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let p = require_admin(&s, &headers).await?;
    let patient = q
        .iter()
        .find(|(k, _)| k == "patient")
        .map(|(_, v)| v.clone());
    let hub = s.hub.clone();
    let entries = blocking(move || {
        // The devices' trails (as they pushed them) and the hub's own: what it sent to whom.
        let mut e = hub.store.device_audit_list(patient.as_deref())?;
        e.extend(hub.store.audit_list(&store::AuditFilter {
            patient: patient.clone(),
            ..store::AuditFilter::default()
        })?);
        e.sort_by(|a, b| (a.time, &a.device, a.seq).cmp(&(b.time, &b.device, b.seq)));
        hub.store.audit_append(&[store::AuditEvent {
            patient: patient.clone(),
            detail: Some(format!("entries={}", e.len())),
            ..p.event("audit_report")
        }])?;
        Ok(e)
    })
    .await?;
    Ok(axum::Json(
        json!({"entries": entries.iter().map(store::AuditEntry::to_json).collect::<Vec<_>>()}),
    )
    .into_response())
}
