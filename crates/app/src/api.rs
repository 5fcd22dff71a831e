//! The FHIR REST handlers (<https://hl7.org/fhir/R4/http.html>).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fhir::{Issue, IssueCode};
use records::{FhirError, Records};
use serde_json::{Value, json};

use crate::AppState;

/// Largest request body accepted (a resource with an embedded signature image fits easily).
const MAX_BODY: usize = 16 * 1024 * 1024;
const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The whole route table.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/fhir/{rt}", get(search).post(create))
        .route("/fhir/{rt}/{id}", get(read).put(update).delete(delete))
        .route("/fhir/{rt}/{id}/_history", get(history))
        .route("/fhir/{rt}/{id}/_history/{vid}", get(vread))
        .route("/fhir/Patient/{id}/$everything", get(everything))
        .route("/conflicts", get(conflicts_list))
        .route("/conflicts/auto", axum::routing::post(conflicts_auto))
        .route("/conflicts/{rt}/{id}", get(conflicts_show))
        .route(
            "/conflicts/{rt}/{id}/resolve",
            axum::routing::post(conflicts_resolve),
        )
        .route("/session", get(session_status))
        .route("/session/lock", axum::routing::post(session_lock))
        .route("/session/logout", axum::routing::post(session_logout))
        .route("/session/unlock", axum::routing::post(session_unlock))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .merge(protected)
        .merge(crate::web::router(state.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(api_errors))
        .with_state(state)
}

/// Errors raised before a handler runs (a body over the limit, a body that is not UTF-8) come
/// from the framework as plain text; on the API they become OperationOutcomes. The web pages
/// keep their own HTML errors.
async fn api_errors(req: Request, next: Next) -> Response {
    let api = ["/fhir", "/conflicts", "/session"]
        .iter()
        .any(|p| req.uri().path().starts_with(p));
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let why = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let code = if status.is_server_error() {
        IssueCode::Exception
    } else {
        IssueCode::Invalid
    };
    error(status.as_u16(), code, "Request", &why).into_response()
}

/// A FHIR response: status, resource, optional ETag and Location.
struct Fhir {
    status: StatusCode,
    body: Value,
    etag: Option<String>,
    location: Option<String>,
}

impl Fhir {
    fn ok(body: Value) -> Fhir {
        Fhir {
            status: StatusCode::OK,
            body,
            etag: None,
            location: None,
        }
    }
}

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut res = (self.status, bytes).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if let Some(e) = self
            .etag
            .and_then(|e| HeaderValue::from_str(&format!("W/\"{e}\"")).ok())
        {
            h.insert(header::ETAG, e);
        }
        if let Some(l) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, l);
        }
        res
    }
}

/// Errors as `OperationOutcome`.
struct ApiError(FhirError);

impl From<FhirError> for ApiError {
    fn from(e: FhirError) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Fhir {
            status,
            body: self.0.outcome(),
            etag: None,
            location: None,
        }
        .into_response()
    }
}

fn error(status: u16, code: IssueCode, where_: &str, why: &str) -> ApiError {
    ApiError(FhirError {
        status,
        issues: vec![Issue::error(code, where_, why)],
    })
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // The token of the user signed in now: another user's (or a withdrawn) token is refused.
    let user = state
        .guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .user()
        .to_owned();
    let same = state.token.accepts(given, &user);
    if !same {
        let mut res = error(
            401,
            IssueCode::Forbidden,
            "Authorization",
            "a valid bearer token is required",
        )
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hearth\""),
        );
        return res;
    }
    next.run(req).await
}

/// The FHIR base URL as the client reached us (for fullUrl and links).
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/fhir")
}

/// Runs a blocking store operation off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Records) -> Result<T, FhirError> + Send + 'static,
) -> Result<T, ApiError> {
    let records = {
        let mut guard = state.guard.lock().unwrap_or_else(|p| p.into_inner());
        guard.records().map_err(|c| match c {
            crate::Closed::Locked => error(
                423,
                IssueCode::Forbidden,
                "Session",
                "the session is locked after inactivity; unlock with POST /session/unlock",
            ),
            crate::Closed::LoggedOut => error(401, IssueCode::Forbidden, "Session", "logged out"),
        })?
    };
    tokio::task::spawn_blocking(move || f(&records))
        .await
        .map_err(|_| {
            error(
                500,
                IssueCode::Exception,
                "Server",
                "the request failed inside the server",
            )
        })?
        .map_err(ApiError)
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            400,
            IssueCode::Structure,
            "Resource",
            &format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

async fn metadata(headers: HeaderMap) -> Fhir {
    let types: Vec<Value> = fhir::schema::RESOURCES
        .iter()
        .map(|(rt, _)| {
            json!({"type": rt, "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "delete"},
                {"code": "history-instance"}, {"code": "create"}, {"code": "search-type"}],
                "versioning": "versioned-update", "updateCreate": true})
        })
        .collect();
    Fhir::ok(json!({
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-22", "kind": "instance",
        "software": {"name": "Hearth", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Hearth device (loopback)", "url": base(&headers)},
        "fhirVersion": "4.0.1", "format": ["json"],
        "rest": [{"mode": "server", "resource": types, "security": {"description": "Bearer token printed by `hearth app` at start"}}]
    }))
}

async fn search(
    State(state): State<AppState>,
    Path(rt): Path<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Fhir, ApiError> {
    let Query(params) = query.map_err(|_| {
        error(
            400,
            IssueCode::Invalid,
            "Request",
            "the query string is malformed",
        )
    })?;
    let base = base(&headers);
    let bundle = blocking(&state, move |r| r.search(&rt, &params, &base)).await?;
    Ok(Fhir::ok(bundle))
}

async fn create(
    State(state): State<AppState>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    let resource = parse_body(&body)?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(rt.as_str()) {
        return Err(error(
            400,
            IssueCode::Invalid,
            "Resource.resourceType",
            "resourceType does not match the URL",
        ));
    }
    let stored = blocking(&state, move |r| r.create(resource)).await?;
    Ok(Fhir {
        status: StatusCode::CREATED,
        location: Some(format!(
            "{}/{rt}/{}/_history/{}",
            base(&headers),
            stored.id,
            stored.version
        )),
        etag: Some(stored.version),
        body: stored.resource,
    })
}

async fn read(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Fhir, ApiError> {
    let stored = blocking(&state, move |r| r.read(&rt, &id)).await?;
    Ok(Fhir {
        status: StatusCode::OK,
        etag: Some(stored.version),
        body: stored.resource,
        location: None,
    })
}

async fn vread(
    State(state): State<AppState>,
    Path((rt, id, vid)): Path<(String, String, String)>,
) -> Result<Fhir, ApiError> {
    let stored = blocking(&state, move |r| r.vread(&rt, &id, &vid)).await?;
    Ok(Fhir {
        status: StatusCode::OK,
        etag: Some(stored.version),
        body: stored.resource,
        location: None,
    })
}

async fn update(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    let resource = parse_body(&body)?;
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let base = base(&headers);
    let stored = blocking(&state, move |r| {
        r.update(&rt, &id, resource, if_match.as_deref())
    })
    .await?;
    let location = stored.created.then(|| {
        format!(
            "{base}/{}/{}/_history/{}",
            stored.resource["resourceType"].as_str().unwrap_or(""),
            stored.id,
            stored.version
        )
    });
    Ok(Fhir {
        status: if stored.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        etag: Some(stored.version),
        body: stored.resource,
        location,
    })
}

async fn delete(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    blocking(&state, move |r| r.delete(&rt, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn history(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Fhir, ApiError> {
    let base = base(&headers);
    Ok(Fhir::ok(
        blocking(&state, move |r| r.history(&rt, &id, &base)).await?,
    ))
}

async fn everything(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Fhir, ApiError> {
    let base = base(&headers);
    Ok(Fhir::ok(
        blocking(&state, move |r| r.everything(&id, &base)).await?,
    ))
}

async fn not_found() -> ApiError {
    error(
        404,
        IssueCode::NotFound,
        "Request",
        "no such endpoint; the FHIR API is under /fhir",
    )
}

fn guard(state: &AppState) -> std::sync::MutexGuard<'_, crate::Guard> {
    state.guard.lock().unwrap_or_else(|p| p.into_inner())
}

async fn session_status(State(state): State<AppState>) -> Fhir {
    let g = guard(&state);
    let left = g.seconds_left();
    Fhir::ok(json!({"user": g.user(), "locked": left == 0, "seconds_left": left}))
}

async fn session_lock(State(state): State<AppState>) -> Response {
    guard(&state).lock();
    StatusCode::NO_CONTENT.into_response()
}

async fn session_logout(State(state): State<AppState>) -> Response {
    guard(&state).logout();
    state.token.withdraw();
    StatusCode::NO_CONTENT.into_response()
}

async fn session_unlock(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    let pin = v
        .get("pin")
        .and_then(Value::as_str)
        .ok_or_else(|| error(400, IssueCode::Required, "pin", "the PIN is required"))?;
    let pin = vault::Pin::from(pin);
    let code = v.get("code").and_then(Value::as_str).map(str::to_owned);
    let state2 = state.clone();
    // Unlocking runs Argon2id: off the async workers.
    tokio::task::spawn_blocking(move || guard(&state2).unlock(&pin, code.as_deref()))
        .await
        .map_err(|_| {
            error(
                500,
                IssueCode::Exception,
                "Session",
                "the unlock failed inside the server",
            )
        })?
        .map_err(|why| error(401, IssueCode::Forbidden, "Session", &why))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /conflicts?patient=&type=`: the conflict inbox.
async fn conflicts_list(
    State(state): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Fhir, ApiError> {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (patient, rt) = (get("patient"), get("type"));
    let list = blocking(&state, move |r| {
        r.conflicts(patient.as_deref(), rt.as_deref())
    })
    .await?;
    Ok(Fhir::ok(json!({"conflicts": list})))
}

/// `GET /conflicts/{type}/{id}`: versions, common ancestor and field diff.
async fn conflicts_show(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Fhir, ApiError> {
    let c = blocking(&state, move |r| r.conflict(&format!("{rt}/{id}"))).await?;
    Ok(Fhir::ok(serde_json::to_value(c).unwrap_or(Value::Null)))
}

/// `POST /conflicts/{type}/{id}/resolve` with `{"keep": "<rev>"}` or `{"resource": {…}}`.
async fn conflicts_resolve(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    let v = parse_body(&body)?;
    let keep = v.get("keep").and_then(Value::as_str).map(str::to_owned);
    let merged = v.get("resource").cloned();
    let res = blocking(&state, move |r| {
        r.resolve_conflict(&format!("{rt}/{id}"), keep.as_deref(), merged)
    })
    .await?;
    Ok(Fhir::ok(serde_json::to_value(res).unwrap_or(Value::Null)))
}

/// `POST /conflicts/auto`: applies the merge policies to every conflict.
async fn conflicts_auto(State(state): State<AppState>) -> Result<Fhir, ApiError> {
    let res = blocking(&state, |r| {
        let ids = r.conflicted(0)?;
        r.auto_resolve(&ids)
    })
    .await?;
    Ok(Fhir::ok(json!({"resolutions": res})))
}
