//! The device's loopback server: the local FHIR R4 REST API and the Patient Explorer web UI
//! (`web`). It binds loopback addresses only; the API requires the bearer token of the user
//! signed in (written to a 0600 file, [`ApiToken`], docs/adr/0007-local-api-on-loopback-with-a-token.md),
//! the web UI a signed-in user.
//!
//! Routes (all JSON is `application/fhir+json`; errors are `OperationOutcome`):
//!
//! ```text
//! GET    /fhir/metadata                       CapabilityStatement (no token needed)
//! GET    /fhir/{type}?{search}                searchset Bundle
//! POST   /fhir/{type}                         create            201, Location, ETag
//! GET    /fhir/{type}/{id}                    read              ETag W/"{version}"
//! PUT    /fhir/{type}/{id}                    update or create  If-Match: W/"{version}"
//! DELETE /fhir/{type}/{id}                    delete            204
//! GET    /fhir/{type}/{id}/_history           history Bundle
//! GET    /fhir/Patient/{id}/$everything       the patient's record as a Bundle
//! GET    /conflicts?patient=&type=            the conflict inbox
//! GET    /conflicts/{type}/{id}               versions, common ancestor, field diff
//! POST   /conflicts/{type}/{id}/resolve       {"keep": rev} or {"resource": …}
//! POST   /conflicts/auto                      apply the merge policies
//! GET    /session                             {"user", "locked", "seconds_left"} (for a countdown)
//! POST   /session/lock | /session/logout      lock now (keys dropped) | lock for good
//! POST   /session/unlock {"pin", "code"?}     the same user resumes
//! ```
//!
//! After `--idle-minutes` without a request (default 15) the session locks: the data
//! key is dropped (zeroized) and the file closed; requests get `423 Locked` until the same
//! user unlocks again.

mod api;
mod session;
mod token;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

pub use api::router;
pub use session::{Closed, DEFAULT_IDLE_SECS, Guard};
pub use token::ApiToken;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The session: the unlocked node's records while active, locked after inactivity.
    pub guard: Arc<std::sync::Mutex<Guard>>,
    /// The bearer token every API request (but `metadata`) must carry, bound to the user it
    /// was issued to.
    pub token: Arc<ApiToken>,
    /// The web app's browser session.
    pub web: web::WebState,
}

/// A fresh random API token (32 hex characters).
pub fn new_token() -> Result<String, std::io::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|_| std::io::Error::other("the system random number generator failed"))?;
    Ok(hex::encode(b))
}

/// Refuses anything but a loopback address: the device API never listens on the network.
pub fn check_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address; the device app only listens on 127.0.0.1 or [::1]"
        ))
    }
}

/// Serves until Ctrl-C (or the future `shutdown` completes).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app =
        app.layer(axum::middleware::from_fn(loopback_only))
            .layer(axum::middleware::map_response(
                |mut resp: axum::response::Response| async move {
                    resp.headers_mut().insert(
                        axum::http::header::X_CONTENT_TYPE_OPTIONS,
                        axum::http::HeaderValue::from_static("nosniff"),
                    );
                    resp
                },
            ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn loopback_refusal(
    headers: &axum::http::HeaderMap,
    method: &axum::http::Method,
) -> Option<axum::response::Response> {
    use axum::http::{Method, StatusCode, header};
    use axum::response::IntoResponse;
    let header_str = |name| headers.get(name).and_then(|h| h.to_str().ok());
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match vault::origin::check(
        header_str(header::HOST),
        header_str(header::ORIGIN),
        changes,
    ) {
        Ok(()) => None,
        Err(vault::origin::Refused::Host) => Some(
            (
                StatusCode::MISDIRECTED_REQUEST,
                "This app answers only the names 127.0.0.1, localhost and [::1].",
            )
                .into_response(),
        ),
        Err(vault::origin::Refused::Origin) => {
            Some((StatusCode::FORBIDDEN, "Cross-site requests are refused.").into_response())
        }
    }
}

/// Answers only requests addressed to this server's own loopback names, and takes
/// state-changing requests only from its own origin: a page that rebinds its DNS name to
/// 127.0.0.1, or posts a form from another site, gets nothing (ADR 30).
async fn loopback_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(refusal) = loopback_refusal(req.headers(), req.method()) {
        return refusal;
    }
    next.run(req).await
}
