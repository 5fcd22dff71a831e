//! What a hub account may read and write: the same role × resource-type permission matrix the
//! devices enforce (`records::Permissions`, stored per database in `_local/hearth-permissions`),
//! applied to what the hub sends (filtered changes, listings and reads) and accepts
//! (per-document `forbidden` errors). Document ids are `{resourceType}/{id}`, so the type is
//! known without opening the body.
//!
//! - Administrators may do everything.
//! - `_local/` documents (replication checkpoints) are each client's own.
//! - Design documents: any account reads them, only administrators write them (as CouchDB).
//! - A document whose id names no FHIR resource type is treated as the most sensitive kind: a
//!   role may touch it only if it may do the same on every resource type.
//! - A replicated write needs `create` and `update` on the type (the hub does not distinguish
//!   a first revision from a later one); a deletion needs `delete`.

use records::{Action, Permissions};
use store::{Role, Store};

use crate::Session;
use crate::error::{CouchError, CouchResult};

/// The authenticated caller, put on the request by the authentication middleware (or by the
/// RPC dispatcher, for a token-checked device call). What is inside is private to this module:
/// a handler gets the caller only through a [`Gate`], and an [`Access`] only from a `Gate`, so
/// a handler that does not take one cannot act as the caller at all.
#[derive(Clone, Debug)]
pub(crate) struct Authenticated(Session);

impl Authenticated {
    /// The caller the middleware or the RPC channel authenticated.
    pub(crate) fn new(session: Session) -> Authenticated {
        Authenticated(session)
    }
}

/// A handler's gate: the authenticated caller, and the one way to their rights on a database.
#[derive(Clone, Debug)]
pub(crate) struct Gate(Session);

impl Gate {
    /// Who is calling.
    pub(crate) fn session(&self) -> &Session {
        &self.0
    }

    /// The caller's rights on database `db`, under the matrix its administrator set (blocking:
    /// reads the store).
    pub(crate) fn access(&self, store: &Store, db: &str) -> CouchResult<Access> {
        Access::load(store, db, &self.0)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Gate {
    type Rejection = CouchError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Gate, CouchError> {
        parts
            .extensions
            .get::<Authenticated>()
            .map(|a| Gate(a.0.clone()))
            .ok_or_else(|| CouchError::unauthorized("Authentication required."))
    }
}

/// The rights of one principal on one database.
#[derive(Clone, Debug)]
pub enum Access {
    /// An administrator: everything.
    All,
    /// A role under a permission matrix.
    Role {
        /// The role.
        role: Role,
        /// The database's matrix.
        perms: Permissions,
    },
}

impl Access {
    /// Loads the rights of `p` on database `db`, from the matrix the node's administrator set
    /// (`records::Permissions::load`, the loader the devices use). A session without a role
    /// (the relay) has no rights here.
    fn load(store: &Store, db: &str, p: &Session) -> CouchResult<Access> {
        let role = p.role().ok_or_else(|| Access::forbidden(false))?;
        if role.is_admin() {
            return Ok(Access::All);
        }
        Ok(Access::Role {
            role,
            perms: Permissions::load(store, db)?,
        })
    }

    /// Whether everything is allowed (no filtering needed).
    pub fn is_all(&self) -> bool {
        matches!(self, Access::All)
    }

    fn allows(&self, id: &str, action: Action) -> bool {
        let Access::Role { role, perms } = self else {
            return true;
        };
        if id.starts_with("_local/") {
            return true;
        }
        if id.starts_with("_design/") {
            return action == Action::Read;
        }
        let rt = id.split_once('/').map(|(t, _)| t);
        match rt {
            Some(t) if fhir::schema::RESOURCES.iter().any(|(k, _)| *k == t) => {
                perms.allows(*role, t, action)
            }
            _ => fhir::schema::RESOURCES
                .iter()
                .all(|(t, _)| perms.allows(*role, t, action)),
        }
    }

    /// May read (and receive through replication) the document `id`.
    pub fn may_read(&self, id: &str) -> bool {
        self.allows(id, Action::Read)
    }

    /// May write a revision of `id` (a deletion when `deleted`).
    pub fn may_write(&self, id: &str, deleted: bool) -> bool {
        if deleted {
            self.allows(id, Action::Delete)
        } else {
            self.allows(id, Action::Create) && self.allows(id, Action::Update)
        }
    }

    /// The error for a refused document.
    pub fn forbidden(write: bool) -> CouchError {
        CouchError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            if write {
                "your role may not write documents of this type"
            } else {
                "your role may not read documents of this type"
            },
        )
    }
}

/// The hub's clinical database: the one devices replicate, whose documents are FHIR records.
/// Other databases belong to PouchDB apps and hold any JSON, as CouchDB's would.
pub const RECORDS_DB: &str = "records";

fn known_type(t: &str) -> bool {
    fhir::schema::RESOURCES.iter().any(|(k, _)| *k == t)
}

/// Checks a document bound for the clinical database before it is stored: a FHIR record's
/// `resourceType` is the type its id names (the body decides, not just the id), and it passes
/// the structural validation devices apply (`fhir::validate`; references are not resolved,
/// because what they name may arrive later in the same replication). Deletions, design
/// documents and documents that are not FHIR records pass. The refusal is CouchDB's answer to
/// a document `validate_doc_update` rejects: 403 `forbidden` with the reason.
pub fn check_record(db: &str, w: &mut store::DocWrite) -> CouchResult<()> {
    if db != RECORDS_DB || w.deleted || w.id.as_str().starts_with("_design/") {
        return Ok(());
    }
    let id = w.id.as_str();
    let id_type = id.split_once('/').map(|(t, _)| t).filter(|t| known_type(t));
    let body_type = w
        .body
        .get("resourceType")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let refuse = |reason: String| {
        Err(CouchError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            reason,
        ))
    };
    match (id_type, body_type.as_deref()) {
        (None, None) => return Ok(()),
        (None, Some(rt)) if !known_type(rt) => return Ok(()),
        (None, Some(rt)) => {
            return refuse(format!(
                "a {rt} record's document id is {rt}/<id>, not {id}"
            ));
        }
        (Some(t), None) => return refuse(format!("{id} needs \"resourceType\": \"{t}\"")),
        (Some(t), Some(rt)) if t != rt => {
            return refuse(format!(
                "resourceType {rt} does not match the document id {id}"
            ));
        }
        (Some(_), Some(_)) => {}
    }
    // Validated in place: the body moves into a Value and back, without a copy.
    let resource = serde_json::Value::Object(std::mem::take(&mut w.body));
    let report = fhir::validate(&resource);
    if let serde_json::Value::Object(m) = resource {
        w.body = m;
    }
    match report
        .issues
        .iter()
        .find(|i| i.severity == fhir::Severity::Error)
    {
        Some(issue) => refuse(format!(
            "{id} is not a valid FHIR record: {}: {}",
            issue.expression, issue.diagnostics
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(r: &str) -> Access {
        Access::Role {
            role: r.parse().unwrap(),
            perms: Permissions::default(),
        }
    }

    #[test]
    fn front_desk_sees_demographics_only() {
        let fd = role("front_desk");
        assert!(fd.may_read("Patient/p1"));
        assert!(!fd.may_read("Observation/o1"));
        assert!(!fd.may_read("DocumentReference/n1"));
        assert!(!fd.may_read("whatever"));
        assert!(fd.may_read("_design/app"));
        assert!(!fd.may_write("_design/app", false));
        assert!(fd.may_write("Patient/p1", false));
        assert!(!fd.may_write("Patient/p1", true));
        let nurse = role("nurse");
        assert!(nurse.may_read("Observation/o1"));
        assert!(!nurse.may_write("Observation/o1", true));
        assert!(role("clinician").may_read("whatever"));
        assert!(Access::All.may_write("whatever", true));
        assert!(!role("auditor").may_read("Patient/p1"));
    }
}
