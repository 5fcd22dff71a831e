//! CouchDB's error form: an HTTP status and `{"error": …, "reason": …}`. See
//! <https://docs.couchdb.org/en/stable/api/basics.html#http-status-codes>.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error as the CouchDB API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouchError {
    /// HTTP status.
    pub status: StatusCode,
    /// CouchDB's error name (`not_found`, `conflict`, `bad_request`, …).
    pub error: String,
    /// A sentence saying what was wrong.
    pub reason: String,
}

impl CouchError {
    /// An error with this status, name and reason.
    pub fn new(status: StatusCode, error: &str, reason: impl Into<String>) -> CouchError {
        CouchError {
            status,
            error: error.to_owned(),
            reason: reason.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(reason: impl Into<String>) -> CouchError {
        CouchError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 404 `not_found` with CouchDB's reason (`missing`, `deleted`, `Database does not exist.`).
    pub fn not_found(reason: impl Into<String>) -> CouchError {
        CouchError::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(reason: impl Into<String>) -> CouchError {
        CouchError::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    /// 403 `forbidden`.
    pub fn forbidden(reason: impl Into<String>) -> CouchError {
        CouchError::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    /// 400 `query_parse_error`, CouchDB's answer to a malformed query parameter.
    pub fn query_parse(reason: impl Into<String>) -> CouchError {
        CouchError::new(StatusCode::BAD_REQUEST, "query_parse_error", reason)
    }

    /// The answer to anything that would need server-side JavaScript (views, JS filters,
    /// `validate_doc_update`, shows, lists, updates): Hearth never runs code from documents.
    pub fn no_javascript(what: &str) -> CouchError {
        CouchError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!(
                "{what} would run JavaScript from a design document; the Hearth hub runs no server-side JavaScript (design documents replicate as ordinary documents)"
            ),
        )
    }

    /// The `{"error","reason"}` body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": self.error, "reason": self.reason})
    }
}

impl std::fmt::Display for CouchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error,
            self.reason
        )
    }
}

impl std::error::Error for CouchError {}

impl From<store::Error> for CouchError {
    fn from(e: store::Error) -> CouchError {
        let (code, name) = e.couch_status();
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = match &e {
            store::Error::NotFound(r) => (*r).to_owned(),
            store::Error::InUse | store::Error::Io(..) | store::Error::Sqlite(_) => {
                // Store errors never carry document contents, but keep internals off the wire.
                eprintln!("hub: internal error: {e}");
                "the hub could not complete the request; see its log".to_owned()
            }
            _ => e.to_string(),
        };
        CouchError::new(status, name, reason)
    }
}

impl IntoResponse for CouchError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// The result type of every handler.
pub type CouchResult<T> = Result<T, CouchError>;
