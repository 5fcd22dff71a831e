//! Patient Explorer: the clinician's web app, server-rendered HTML from this binary with a
//! little plain JavaScript (auto-lock countdown, signature pad). Everything is embedded — no
//! CDN, no external font — so it works with no network at all. Every page goes through the
//! same session, permission matrix, validation and audit as the FHIR API (ADR 18).
//!
//! ```text
//! GET  /login  POST /login            user + PIN (+ authenticator code)
//! GET  /locked POST /unlock           the same user resumes after the inactivity lock
//! POST /lock   POST /logout  POST /keepalive
//! GET  /patients?q=&filter=&page=     search by name, MRN, phone or birth date
//! GET  /patients/{id}                 the chart
//! POST /patients/{id}/vitals | demographics | notes | notes/{nid}/sign | consents | communications | break-glass
//! POST /patients/{id}/medications/{mid}/administer   a reminder's dose given or skipped
//! POST /patients/{id}/notes/{nid}      edit a draft note
//! GET  /patients/{id}/export[?deidentified=1]   the chart as a FHIR Bundle (download; audited)
//! GET  /inbox  GET /inbox/{type}/{id}  POST /inbox/{type}/{id}/resolve   (the conflict inbox)
//! GET  /audit?patient=&user=&break_glass=       (admins and auditors)
//! GET  /sync   POST /sync   POST /sync/pair     hub status, sync now (in the background), pair
//! GET  /sync/progress                          the running sync's counts (JSON, polled by the page)
//! ```

mod chart;
mod pages;
mod sync;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

/// The browser session cookie's name.
pub const COOKIE: &str = "hearth_session";

/// The web app's own state: the cookie of the browser that logged in.
#[derive(Clone, Default)]
pub struct WebState {
    cookie: Arc<Mutex<Option<String>>>,
    /// The last "sync now", running or finished.
    job: Arc<Mutex<Option<sync::SyncJob>>>,
}

/// The web routes (merged into the app's router).
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/patients", get(pages::patients))
        .route("/patients/{id}", get(chart::chart))
        .route("/patients/{id}/vitals", post(chart::add_vitals))
        .route(
            "/patients/{id}/demographics",
            post(chart::edit_demographics),
        )
        .route("/patients/{id}/export", get(chart::export))
        .route("/patients/{id}/notes", post(chart::add_note))
        .route(
            "/patients/{id}/medications/{mid}/administer",
            post(chart::administer),
        )
        .route("/patients/{id}/notes/{nid}/sign", post(chart::sign_note))
        .route("/patients/{id}/notes/{nid}", post(chart::edit_note))
        .route("/patients/{id}/consents", post(chart::add_consent))
        .route(
            "/patients/{id}/communications",
            post(chart::add_communication),
        )
        .route("/patients/{id}/break-glass", post(chart::break_glass))
        .route("/inbox", get(pages::conflicts))
        .route("/inbox/{rt}/{id}", get(pages::conflict))
        .route("/inbox/{rt}/{id}/resolve", post(pages::resolve))
        .route("/audit", get(pages::audit))
        .route("/sync", get(sync::panel).post(sync::sync_now))
        .route("/sync/pair", post(sync::pair))
        .route("/sync/progress", get(sync::progress))
        .route("/lock", post(pages::lock))
        .route("/keepalive", post(pages::keepalive))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_login));
    Router::new()
        .route("/", get(|| async { redirect("/patients") }))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/locked", get(pages::locked_form))
        .route("/unlock", post(pages::unlock))
        .route("/logout", post(pages::logout))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", include_str!("app.css")) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", include_str!("app.js")) }),
        )
        .merge(pages)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

/// A `303 See Other` to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(crate) fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl WebState {
    /// A fresh cookie for a login; the previous browser session ends.
    pub(crate) fn issue(&self) -> Option<String> {
        let c = crate::new_token().ok()?;
        *self.cookie.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Some(c)
    }

    pub(crate) fn clear(&self) {
        *self.cookie.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn valid(&self, headers: &HeaderMap) -> bool {
        let current = self
            .cookie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match (current, cookie_of(headers)) {
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.bytes()
                        .zip(b.bytes())
                        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                        == 0
            }
            _ => false,
        }
    }
}

/// A form post from another origin is refused (the cookie is SameSite=Strict as well).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}")
}

async fn require_login(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && !same_origin(req.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    if !s.web.valid(req.headers()) {
        return redirect("/login");
    }
    let locked = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        g.expire();
        g.seconds_left() == 0
    };
    if locked {
        return redirect("/locked");
    }
    next.run(req).await
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes a URL path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who is looking at a page (for the header and for what to show).
pub(crate) struct Viewer {
    pub user: String,
    /// Their role (none once locked).
    pub role: Option<store::Role>,
    pub seconds_left: i64,
}

impl Viewer {
    pub(crate) fn of(s: &AppState) -> Viewer {
        let g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        Viewer {
            user: g.user().to_owned(),
            role: g.role(),
            seconds_left: g.seconds_left(),
        }
    }
}

/// A whole page: header with navigation and the session, the auto-lock warning, and `body`.
pub(crate) fn page(title: &str, v: Option<&Viewer>, body: &str) -> String {
    let nav = match v {
        Some(v) => format!(
            r#"<header class="top" role="banner"><strong>Hearth</strong>
<nav aria-label="Main"><a href="/patients">Patients</a><a href="/inbox">Conflicts</a><a href="/sync">Sync</a>{audit}</nav>
<div class="who"><span>{user} <span class="pill">{role}</span></span>
<form method="post" action="/lock"><button class="secondary" type="submit">Lock</button></form>
<form method="post" action="/logout"><button class="secondary" type="submit">Log out</button></form></div></header>
<div id="lockwarn" class="lockwarn" role="alert" aria-live="assertive">Locking for inactivity in <span id="lockleft">60</span> s.
<button id="staybutton" type="button">Stay signed in</button></div>"#,
            audit = if v.role.is_some_and(store::Role::reads_audit) {
                r#"<a href="/audit">Audit</a>"#
            } else {
                ""
            },
            user = esc(&v.user),
            role = v.role.map_or("", store::Role::as_str)
        ),
        None => String::new(),
    };
    let data = match v {
        Some(v) => format!(r#" data-idle="1" data-seconds-left="{}""#, v.seconds_left),
        None => String::new(),
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Hearth</title><link rel="stylesheet" href="/static/app.css"></head>
<body{data}>{nav}<main id="main">{body}</main><script src="/static/app.js"></script></body></html>"#,
        title = esc(title)
    )
}

/// An HTML response with a status.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// A page that says what went wrong (a record error's reason, never its contents).
pub(crate) fn error_page(v: &Viewer, status: u16, message: &str, extra: &str) -> Response {
    html(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        page(
            "Problem",
            Some(v),
            &format!(
                r#"<h1>{}</h1><div class="alert" role="alert">{}</div>{extra}<p><a href="/patients">Back to patients</a></p>"#,
                if status == 403 {
                    "Not allowed"
                } else {
                    "That did not work"
                },
                esc(message)
            ),
        ),
    )
}

/// The message of a record error.
pub(crate) fn reason(e: &records::FhirError) -> String {
    e.issues
        .iter()
        .map(|i| i.diagnostics.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs record work off the async threads with the session's records (marks activity).
pub(crate) async fn with_records<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&records::Records) -> Result<T, records::FhirError> + Send + 'static,
) -> Result<T, (u16, String)> {
    let recs = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        g.records()
            .map_err(|_| (423u16, "the session is locked".to_owned()))?
    };
    tokio::task::spawn_blocking(move || f(&recs))
        .await
        .map_err(|_| (500u16, "the request failed".to_owned()))?
        .map_err(|e| (e.status, reason(&e)))
}
