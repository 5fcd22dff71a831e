//! The hub's administration screens, on its loopback administration port: sign in with a hub
//! administrator account, see the server and relay status, make a pairing offer shown as a QR
//! code, list and revoke devices, manage accounts and their roles. Server-rendered, no script,
//! every change audited like the CLI's.
//!
//! ```text
//! GET  /ui            sign-in form, or the status page when signed in
//! POST /ui/login      POST /ui/logout
//! POST /ui/pair       a one-time offer, shown as a QR code
//! GET  /ui/devices    POST /ui/devices/{id}/revoke
//! GET  /ui/accounts   POST /ui/accounts (add or change)   POST /ui/accounts/{name}/remove
//! ```

use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::admin::AdminState;
use crate::{Session, blocking, unix_now};

/// The signed-in browser (one at a time): cookie value and account.
#[derive(Default)]
pub struct UiState {
    session: Mutex<Option<(String, Session, u64)>>,
}

/// Idle time before the admin screens ask for the password again.
const UI_IDLE_SECS: u64 = 15 * 60;

type Handle = Arc<AdminState>;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, signed_in: bool, body: &str) -> Response {
    let nav = if signed_in {
        r#"<nav aria-label="Hub"><a href="/ui">Status</a> · <a href="/ui/devices">Devices</a> · <a href="/ui/accounts">Accounts</a>
<form method="post" action="/ui/logout" style="display:inline"><button type="submit">Sign out</button></form></nav>"#
    } else {
        ""
    };
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · Hearth hub</title><style>
body{{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f8fb}} header{{background:#12324f;color:#fff;padding:.6rem 1rem}}
header a{{color:#fff}} main{{max-width:960px;margin:auto;padding:1rem}} .card{{background:#fff;border:1px solid #d5dbe3;border-radius:8px;padding:1rem;margin-bottom:1rem}}
table{{width:100%;border-collapse:collapse}} td,th{{text-align:left;padding:.4rem;border-bottom:1px solid #d5dbe3}}
input,select,button{{font:inherit;min-height:44px;padding:.4rem .6rem}} button{{background:#0b5cad;color:#fff;border:0;border-radius:6px;cursor:pointer}}
label{{display:block;font-weight:600;margin-top:.5rem}} .alert{{background:#fdecea;border-left:4px solid #b3261e;padding:.6rem}} code{{word-break:break-all}}
.qr svg{{width:320px;height:320px}}</style></head>
<body><header><strong>Hearth hub</strong> {nav}</header><main>{body}</main></body></html>"#,
        esc(title)
    );
    let mut r = (StatusCode::OK, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn see(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn same_origin(headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(o) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            o == format!("http://{host}")
        }
    }
}

/// The signed-in administrator, if the cookie is current (refreshes its idle timer).
fn who(s: &Handle, headers: &HeaderMap) -> Option<Session> {
    let c = crate::cookie(headers, "hearth_hub")?;
    let mut g = s.ui.session.lock().unwrap_or_else(|p| p.into_inner());
    let now = unix_now();
    match g.as_mut() {
        Some((v, p, at)) if *v == c && now.saturating_sub(*at) < UI_IDLE_SECS => {
            *at = now;
            Some(p.clone())
        }
        _ => None,
    }
}

/// The page a hub started with `--unlock-in-browser` shows until its passphrase is entered.
pub fn unlock_page(error: &str) -> Response {
    let e = if error.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="alert" role="alert">{}</p>"#, esc(error))
    };
    let mut r = page(
        "Unlock",
        false,
        &format!(
            r#"<div class="card"><h1>Unlock the hub</h1><p>The hub's data and secrets are encrypted at rest. Enter the hub passphrase to start serving devices.</p>{e}
<form method="post" action="/ui/unlock"><label for="passphrase">Hub passphrase</label><input id="passphrase" name="passphrase" type="password" autocomplete="current-password" required autofocus>
<p><button type="submit">Unlock and start</button></p></form></div>"#
        ),
    );
    if !error.is_empty() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    r
}

/// What the unlock page answers once the hub is unlocked.
pub fn unlock_done() -> Response {
    page(
        "Unlocked",
        false,
        r#"<div class="card"><h1>Unlocked</h1><p>The hub is starting. <a href="/ui">Sign in to the administration screens</a>.</p></div>"#,
    )
}

/// Whether a form post comes from this page's own origin.
pub fn same_origin_post(headers: &HeaderMap) -> bool {
    same_origin(headers)
}

fn login_form(error: &str) -> Response {
    let e = if error.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="alert" role="alert">{}</p>"#, esc(error))
    };
    page(
        "Sign in",
        false,
        &format!(
            r#"<div class="card"><h1>Hub administration</h1>{e}<form method="post" action="/ui/login">
<label for="name">Administrator account</label><input id="name" name="name" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<p><button type="submit">Sign in</button></p></form></div>"#
        ),
    )
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
}

pub(crate) async fn login(
    State(s): State<Handle>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    let hub = s.hub.clone();
    let pw = zeroize::Zeroizing::new(f.password);
    let name = f.name.clone();
    // The administration screens listen on loopback only: every sign-in comes from here.
    let p = match blocking(move || hub.auth.login(&hub.store, &name, &pw, "loopback")).await {
        Ok(p) if p.is_admin() => p,
        Ok(_) => return login_form("this needs a hub administrator account"),
        Err(e) => {
            // Failed sign-ins are audited by `Auth`, like every other login failure.
            return login_form(&e.reason);
        }
    };
    let Ok(c) = vault::random_bytes::<16>().map(hex::encode) else {
        return login_form("the system random number generator failed");
    };
    *s.ui.session.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((c.clone(), p.clone(), unix_now()));
    let _ = s
        .hub
        .audit(&p, "login", "hub administration screens".into());
    let mut r = see("/ui");
    if let Ok(v) = HeaderValue::from_str(&format!(
        "hearth_hub={c}; HttpOnly; SameSite=Strict; Path=/ui"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(crate) async fn logout(State(s): State<Handle>) -> Response {
    *s.ui.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
    see("/ui")
}

pub(crate) async fn home(State(s): State<Handle>, headers: HeaderMap) -> Response {
    if who(&s, &headers).is_none() {
        return login_form("");
    }
    let relay = s.relay.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let hub = s.hub.clone();
    let dbs = s.databases.clone();
    let info = blocking(move || {
        let mut rows = Vec::new();
        for d in &dbs {
            if let Ok(i) = hub.store.db_info(d) {
                rows.push((i.name, i.doc_count, i.update_seq));
            }
        }
        Ok((
            rows,
            hub.store.list_devices()?.len(),
            hub.store.security_events(20)?,
        ))
    })
    .await;
    let (rows, devices, events) = info.unwrap_or_default();
    let event_rows: String = events
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.time,
                esc(&e.device),
                esc(&e.event.user),
                esc(&e.event.action),
                esc(e
                    .event
                    .resource
                    .as_deref()
                    .or(e.event.patient.as_deref())
                    .unwrap_or("")),
                esc(e.event.detail.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let events_html = if events.is_empty() {
        "<p>None.</p>".to_owned()
    } else {
        format!(
            r#"<table id="security-events"><thead><tr><th>Time</th><th>Device</th><th>User</th><th>Event</th><th>Record</th><th>Detail</th></tr></thead><tbody>{event_rows}</tbody></table>"#
        )
    };
    let dbrows: String = rows
        .iter()
        .map(|(n, c, q)| format!("<tr><td>{}</td><td>{c}</td><td>{q}</td></tr>", esc(n)))
        .collect();
    let relay_html = match &relay.upstream {
        None => {
            "<p>No upstream: this hub does not relay (<code>hearth hub upstream set</code>).</p>"
                .to_owned()
        }
        Some(u) => format!(
            "<p>Relaying to <code>{}</code>. Last success: {}. Backlog: <strong id=\"backlog\">{}</strong> changes. Sent {} · received {} · failed rounds {}.</p>{}",
            esc(u),
            relay.last_success.map_or("never".into(), |t| format!(
                "{} s ago",
                unix_now().saturating_sub(t)
            )),
            relay.backlog,
            relay.docs_pushed,
            relay.docs_pulled,
            relay.errors,
            relay
                .last_error
                .as_ref()
                .map(|(_, e)| format!(r#"<p class="alert">Last error: {}</p>"#, esc(e)))
                .unwrap_or_default()
        ),
    };
    let backup_html = match &s.backups {
        None => "<p>No backup key: this hub takes no scheduled backups (<code>backup_key</code> in hub.toml, from <code>hearth backup keygen</code>).</p>".to_owned(),
        Some(b) => {
            let b = b.state();
            format!(
                "<p>Into <code>{}</code>. Last good backup: <strong id=\"last-backup\">{}</strong>{}. Next due in {}. Failures since start: {}.</p>{}",
                esc(&b.dir),
                b.last_success.map_or("never".into(), |t| format!("{} s ago", unix_now().saturating_sub(t))),
                b.last_name.as_ref().map(|n| format!(" (<code>{}</code>, {} documents, {} bytes)", esc(n), b.last_documents, b.last_bytes)).unwrap_or_default(),
                b.next_due.map_or("—".into(), |t| format!("{} s", t.saturating_sub(unix_now()))),
                b.failures,
                b.last_error.as_ref().map(|(_, e)| format!(r#"<p class="alert">Last failure: {}</p>"#, esc(e))).unwrap_or_default()
            )
        }
    };
    page(
        "Status",
        true,
        &format!(
            r#"<h1>Hub {}</h1><div class="card"><h2>Server</h2><p>Devices connect to <code>{}</code>. {devices} devices paired; {} sessions open. Up {} s.</p>
<table><thead><tr><th>Database</th><th>Documents</th><th>Sequence</th></tr></thead><tbody>{dbrows}</tbody></table></div>
<div class="card"><h2>Relay</h2>{relay_html}</div>
<div class="card"><h2>Backups</h2>{backup_html}</div>
<div class="card"><h2>Security events</h2><p>Refusals, failed logins, refused device trails, break-glass and account, key, device and policy changes, newest first (all: <code>/admin/security-events</code>).</p>{events_html}</div>
<div class="card"><h2>Pair a device</h2><form method="post" action="/ui/pair"><button type="submit">Show a pairing code</button></form></div>"#,
            esc(&s.hub.uuid),
            esc(&s.public_url),
            s.rpc.open_sessions(),
            s.started.elapsed().as_secs()
        ),
    )
}

pub(crate) async fn pair(State(s): State<Handle>, headers: HeaderMap) -> Response {
    let Some(p) = who(&s, &headers) else {
        return see("/ui");
    };
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    let offer = match crate::admin::make_offer(&s, &p).await {
        Ok(o) => o,
        Err(e) => {
            return page(
                "Pairing",
                true,
                &format!(r#"<p class="alert">{}</p>"#, esc(&e.reason)),
            );
        }
    };
    let text = offer.encode();
    let svg = crate::qr::svg(&text).unwrap_or_default();
    page(
        "Pair a device",
        true,
        &format!(
            r#"<h1>Pair a device</h1><div class="card"><div class="qr" role="img" aria-label="Pairing QR code">{svg}</div>
<p>Scan this code on the device, or run <code>hearth pair '&lt;offer&gt;'</code> with the text below. It works once and expires in {} minutes.</p>
<p><code id="offer">{}</code></p></div>"#,
            s.pairing_ttl / 60,
            esc(&text)
        ),
    )
}

pub(crate) async fn devices(State(s): State<Handle>, headers: HeaderMap) -> Response {
    if who(&s, &headers).is_none() {
        return see("/ui");
    }
    let hub = s.hub.clone();
    let list = blocking(move || Ok(hub.store.list_devices()?))
        .await
        .unwrap_or_default();
    let now = unix_now() as i64;
    let rows: String = list
        .iter()
        .map(|d| {
            format!(
                r#"<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&d.id),
                esc(&d.name),
                d.last_contact.map_or("never".into(), |t| format!("{} s ago", (now - t).max(0))),
                d.audit_seq,
                if d.revoked_at.is_some() {
                    "revoked".to_owned()
                } else if d.audit_refused_at.is_some() {
                    r#"<strong class="bad">suspended: audit trail refused (restored from an old copy?) — pair it again</strong>"#.to_owned()
                } else {
                    format!(
                        r#"<form method="post" action="/ui/devices/{}/revoke"><button type="submit">Revoke</button></form>"#,
                        esc(&d.id)
                    )
                }
            )
        })
        .collect();
    page(
        "Devices",
        true,
        &format!(
            r#"<h1>Devices</h1><div class="card"><table><thead><tr><th>Device</th><th>Name</th><th>Last contact</th><th>Audit witnessed</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>"#
        ),
    )
}

pub(crate) async fn revoke(
    State(s): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(p) = who(&s, &headers) else {
        return see("/ui");
    };
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    let hub = s.hub.clone();
    let _ = blocking(move || Ok(hub.store.revoke_device(&id, p.user(), unix_now() as i64)?)).await;
    see("/ui/devices")
}

pub(crate) async fn accounts(State(s): State<Handle>, headers: HeaderMap) -> Response {
    if who(&s, &headers).is_none() {
        return see("/ui");
    }
    accounts_page(&s, "").await
}

async fn accounts_page(s: &Handle, message: &str) -> Response {
    let hub = s.hub.clone();
    let list = blocking(move || Ok(hub.store.list_accounts()?))
        .await
        .unwrap_or_default();
    let rows: String = list
        .iter()
        .map(|a| {
            format!(
                r#"<tr><td>{}</td><td>{}</td><td><form method="post" action="/ui/accounts/{}/remove"><button type="submit">Remove</button></form></td></tr>"#,
                esc(&a.name),
                a.role,
                esc(&a.name)
            )
        })
        .collect();
    let roles: String = store::Role::ALL
        .iter()
        .map(|r| format!(r#"<option value="{r}">{r}</option>"#))
        .collect();
    page(
        "Accounts",
        true,
        &format!(
            r#"<h1>Accounts</h1>{message}<div class="card"><table><thead><tr><th>Account</th><th>Role</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>
<div class="card"><h2>Add an account, or set a new password and role</h2><form method="post" action="/ui/accounts">
<label for="aname">Account (an email)</label><input id="aname" name="name" required>
<label for="arole">Role</label><select id="arole" name="role">{roles}</select>
<label for="apw">Password (at least 10 characters)</label><input id="apw" name="password" type="password" minlength="10" required autocomplete="new-password">
<p><button type="submit">Save</button></p></form></div>"#
        ),
    )
}

#[derive(Deserialize)]
pub(crate) struct AccountForm {
    name: String,
    role: String,
    password: String,
}

pub(crate) async fn save_account(
    State(s): State<Handle>,
    headers: HeaderMap,
    Form(f): Form<AccountForm>,
) -> Response {
    let Some(p) = who(&s, &headers) else {
        return see("/ui");
    };
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    if f.password.chars().count() < 10 {
        return accounts_page(
            &s,
            r#"<p class="alert" role="alert">The password must be at least 10 characters.</p>"#,
        )
        .await;
    }
    let hub = s.hub.clone();
    let pw = zeroize::Zeroizing::new(f.password);
    let (name, role) = (f.name.trim().to_owned(), f.role.clone());
    let r = blocking(move || {
        let role: store::Role = role
            .parse()
            .map_err(|e: store::UnknownRole| crate::CouchError::bad_request(e.to_string()))?;
        hub.set_account_role(&name, &pw, role)?;
        hub.audit(
            &p,
            "user_change",
            format!("hub account {name} set (role={role})"),
        )
    })
    .await;
    match r {
        Ok(()) => accounts_page(&s, r#"<p role="status">Saved.</p>"#).await,
        Err(e) => {
            accounts_page(
                &s,
                &format!(r#"<p class="alert" role="alert">{}</p>"#, esc(&e.reason)),
            )
            .await
        }
    }
}

pub(crate) async fn remove_account(
    State(s): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(p) = who(&s, &headers) else {
        return see("/ui");
    };
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    if name == p.user() {
        return accounts_page(&s, r#"<p class="alert" role="alert">You cannot remove the account you are signed in with.</p>"#).await;
    }
    let hub = s.hub.clone();
    let _ = blocking(move || {
        hub.store.delete_account(&name)?;
        hub.auth.forget(&name);
        hub.audit(&p, "user_change", format!("hub account {name} removed"))
    })
    .await;
    see("/ui/accounts")
}
