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
use store::{DocId, Store};

use crate::Principal;
use crate::error::{CouchError, CouchResult};

/// The rights of one principal on one database.
#[derive(Clone, Debug)]
pub enum Access {
    /// An administrator: everything.
    All,
    /// A role under a permission matrix.
    Role {
        /// The role.
        role: String,
        /// The database's matrix.
        perms: Permissions,
    },
}

impl Access {
    /// Loads the rights of `p` on database `db`.
    pub fn load(store: &Store, db: &str, p: &Principal) -> CouchResult<Access> {
        if p.admin || p.role == "admin" {
            return Ok(Access::All);
        }
        let id = DocId::parse("_local/hearth-permissions")
            .map_err(|_| CouchError::bad_request("internal: permissions id"))?;
        let perms = match store.get_local(db, &id) {
            Ok((_, body)) => {
                serde_json::from_value(serde_json::Value::Object(body)).map_err(|_| {
                    CouchError::bad_request("the stored permission matrix is not valid")
                })?
            }
            Err(store::Error::NotFound(_)) => Permissions::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(Access::Role {
            role: p.role.clone(),
            perms,
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
                perms.allows(role, t, action)
            }
            _ => fhir::schema::RESOURCES
                .iter()
                .all(|(t, _)| perms.allows(role, t, action)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn role(r: &str) -> Access {
        Access::Role {
            role: r.into(),
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
