//! The sync panel: which hub this device is paired with and whether it answers, what is
//! waiting, conflicts, and "sync now" over the hub's encrypted RPC (push, pull, audit push).

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use replicate::{Endpoint, HttpDb, LocalDb, Replication};
use serde::Deserialize;

use super::{Viewer, error_page, esc, html, page};
use crate::AppState;

/// Node secret holding `{seq} {unix time}` of the last successful sync from this device.
pub const LAST_SYNC: &str = "sync.last";

struct Facts {
    pairing: Option<replicate::rpc::Pairing>,
    update_seq: u64,
    last: Option<(u64, i64)>,
    conflicts: usize,
}

async fn facts(s: &AppState) -> Result<Facts, (u16, String)> {
    let store = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        g.replica()
            .map_err(|_| (423u16, "the session is locked".to_owned()))?
    };
    super::with_records(s, move |r| {
        let pairing = replicate::rpc::pairing(&store).ok().flatten();
        let last = store.get_secret(LAST_SYNC)?.and_then(|b| {
            let t = String::from_utf8_lossy(&b).into_owned();
            let (a, b) = t.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        });
        Ok(Facts {
            pairing,
            update_seq: store.update_seq("records")?,
            last,
            conflicts: r.conflicted(0)?.len(),
        })
    })
    .await
}

async fn reachable(addr: &str) -> bool {
    let Ok(c) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    c.get(format!("{addr}/rpc/heartbeat"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn panel_page(v: &Viewer, f: &Facts, up: bool, message: &str) -> String {
    let hub = match &f.pairing {
        None => r#"<p>This device is not paired with a clinic hub. Ask the hub's administrator for a pairing offer (<code>hearth hub pair</code>) and paste it here.</p>
<form method="post" action="/sync/pair"><label for="offer">Pairing offer</label><input id="offer" name="offer" placeholder="hearth-pair:…" required>
<label for="dname">Name of this device</label><input id="dname" name="name" value="tablet">
<p><button type="submit">Pair with the hub</button></p></form>"#
            .to_owned(),
        Some(p) => format!(
            r#"<p>Hub <code>{}</code> at {} — <span id="hub-state" class="pill {}">{}</span></p>
<form method="post" action="/sync" class="row" aria-label="Sync now"><div><label for="account">Hub account</label><input id="account" name="account" autocomplete="username" required></div>
<div><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required></div>
<button type="submit">Sync now</button></form>"#,
            esc(&p.hub),
            esc(&p.addr),
            if up { "ok" } else { "warn" },
            if up { "reachable" } else { "not reachable (working offline)" }
        ),
    };
    let pending = f.update_seq.saturating_sub(f.last.map_or(0, |l| l.0));
    format!(
        r#"<h1>Sync</h1>{message}<section class="card">{hub}</section>
<section class="card"><table>
<tr><th scope="row">Last sync from this page</th><td id="last-sync">{}</td></tr>
<tr><th scope="row">Changes on this device since</th><td id="pending">{pending}</td></tr>
<tr><th scope="row">Conflicts waiting</th><td><a href="/inbox">{}</a></td></tr></table>
<p class="muted">Signed in as {}. Syncing sends this device's changes and audit trail to the hub and brings the clinic's changes here; nothing leaves the device unencrypted.</p></section>"#,
        f.last
            .map(|(_, t)| fhir::time::instant(t))
            .unwrap_or_else(|| "never".into()),
        f.conflicts,
        esc(&v.user)
    )
}

/// The panel with `message` on top.
async fn render(s: &AppState, v: &Viewer, status: StatusCode, message: &str) -> Response {
    let f = match facts(s).await {
        Ok(f) => f,
        Err((code, msg)) => return error_page(v, code, &msg, ""),
    };
    let up = match &f.pairing {
        Some(p) => reachable(&p.addr).await,
        None => false,
    };
    html(
        status,
        page("Sync", Some(v), &panel_page(v, &f, up, message)),
    )
}

pub(crate) async fn panel(State(s): State<AppState>) -> Response {
    let v = Viewer::of(&s);
    let job = s.web.job.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let message = job.as_ref().map(job_html).unwrap_or_default();
    let status = match &job {
        Some(j) if j.error.is_some() => StatusCode::BAD_GATEWAY,
        _ => StatusCode::OK,
    };
    render(&s, &v, status, &message).await
}

#[derive(Deserialize)]
pub(crate) struct SyncForm {
    account: String,
    password: String,
}

/// A "sync now" in progress or finished, shown live on the panel.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncJob {
    /// Still running.
    pub running: bool,
    /// `push`, `pull`, `audit` or `done`.
    pub phase: String,
    /// Documents sent so far.
    pub sent: u64,
    /// Documents received so far.
    pub received: u64,
    /// Documents the other end refused.
    pub refused: u64,
    /// Audit entries the hub witnessed.
    pub audit: u64,
    /// The error, if it failed.
    pub error: Option<String>,
}

fn job_html(j: &SyncJob) -> String {
    if let Some(e) = &j.error {
        return format!(
            r#"<div class="alert" role="alert" id="sync-result">Sync failed: {}</div>"#,
            esc(e)
        );
    }
    let what = if j.running {
        format!("Syncing ({}):", esc(&j.phase))
    } else {
        "Synced:".to_owned()
    };
    format!(
        r#"<div class="notice" role="status" aria-live="polite" id="sync-result" data-running="{}">{what} {} sent, {} received, {} refused{}.</div>"#,
        j.running,
        j.sent,
        j.received,
        j.refused,
        if j.running {
            String::new()
        } else {
            format!("; {} audit entries witnessed by the hub", j.audit)
        }
    )
}

pub(crate) async fn progress(State(s): State<AppState>) -> Response {
    let j = s.web.job.lock().unwrap_or_else(|p| p.into_inner()).clone();
    axum::Json(j.unwrap_or_default()).into_response()
}

/// Starts a sync in the background; the panel shows its progress.
pub(crate) async fn sync_now(State(s): State<AppState>, Form(form): Form<SyncForm>) -> Response {
    let (store, session) = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        match (g.records(), g.replica()) {
            (Ok(r), Ok(store)) => (store, r.session().clone()),
            _ => return super::redirect("/locked"),
        }
    };
    {
        let mut job = s.web.job.lock().unwrap_or_else(|p| p.into_inner());
        if job.as_ref().is_some_and(|j| j.running) {
            return super::redirect("/sync");
        }
        *job = Some(SyncJob {
            running: true,
            phase: "push".into(),
            ..Default::default()
        });
    }
    let job = s.web.job.clone();
    let set = move |f: &dyn Fn(&mut SyncJob)| {
        if let Some(j) = job.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(j);
        }
    };
    tokio::spawn(async move {
        let result = async {
            let client = Arc::new(
                replicate::rpc::RpcClient::from_store(&store, &form.account, &form.password)
                    .map_err(|e| e.to_string())?,
            );
            let remote = Endpoint::Http(
                HttpDb::over_rpc(client.clone(), "records").map_err(|e| e.to_string())?,
            );
            let local = Endpoint::Local(LocalDb {
                store: store.clone(),
                db: "records".into(),
                actor: session,
            });
            let push = Replication::new(local.clone(), remote.clone())
                .run_once(|p| {
                    let (n, f) = (p.stats.docs_written, p.stats.doc_write_failures);
                    set(&|j| {
                        j.sent = n;
                        j.refused = f;
                    })
                })
                .await
                .map_err(|e| format!("push: {e}"))?;
            set(&|j| j.phase = "pull".into());
            let refused = push.doc_write_failures;
            let pull = Replication::new(remote, local)
                .run_once(|p| {
                    let (n, f) = (p.stats.docs_written, p.stats.doc_write_failures);
                    set(&|j| {
                        j.received = n;
                        j.refused = refused + f;
                    })
                })
                .await
                .map_err(|e| format!("pull: {e}"))?;
            set(&|j| j.phase = "audit".into());
            let audit = client
                .push_audit(&store)
                .await
                .map_err(|e| format!("audit: {e}"))?;
            Ok::<_, String>((push, pull, audit))
        }
        .await;
        match result {
            Ok((push, pull, audit)) => {
                let seq = store.update_seq("records").unwrap_or(0);
                let _ =
                    store.put_secret(LAST_SYNC, format!("{seq} {}", fhir::time::now()).as_bytes());
                set(&|j| {
                    j.sent = push.docs_written;
                    j.received = pull.docs_written;
                    j.refused = push.doc_write_failures + pull.doc_write_failures;
                    j.audit = audit;
                    j.phase = "done".into();
                    j.running = false;
                });
            }
            Err(e) => set(&|j| {
                j.error = Some(e.clone());
                j.phase = "done".into();
                j.running = false;
            }),
        }
    });
    super::redirect("/sync")
}

#[derive(Deserialize)]
pub(crate) struct PairForm {
    offer: String,
    name: String,
}

pub(crate) async fn pair(State(s): State<AppState>, Form(form): Form<PairForm>) -> Response {
    let v = Viewer::of(&s);
    if v.role != Some(store::Role::Admin) {
        return error_page(
            &v,
            403,
            "only an administrator of this device can pair it with a hub",
            "",
        );
    }
    let offer = match vault::pairing::Offer::parse(&form.offer) {
        Ok(o) => o,
        Err(e) => return error_page(&v, 400, &e.to_string(), ""),
    };
    let store = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        match g.replica() {
            Ok(store) => store,
            Err(_) => return super::redirect("/locked"),
        }
    };
    match replicate::rpc::pair(&store, &offer, &form.name).await {
        Ok(p) => {
            let _ = store.audit_append(&[store::AuditEvent {
                user: v.user.clone(),
                role: v.role.map_or("", store::Role::as_str).to_owned(),
                action: "key_change".into(),
                outcome: "success".into(),
                patient: None,
                resource: None,
                detail: Some(format!("paired with hub {} at {}", p.hub, p.addr)),
                break_glass: false,
            }]);
            super::redirect("/sync")
        }
        Err(e) => error_page(&v, 400, &format!("pairing failed: {e}"), ""),
    }
}
