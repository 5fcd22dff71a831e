//! A node's security policy for one database: the permission matrix, the break-glass grants
//! and the merge policies. Not a document: no `_local` id, no revision, nothing replication or
//! a document API can read or write. Each change is written with its audit entry in one
//! transaction, so a policy never changes without a trace.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::Error;
use crate::audit::{AuditEvent, append};
use crate::store::Store;

/// The parts of a database's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyPart {
    /// Role × resource type × action (`records::Permissions`).
    Permissions,
    /// Break-glass grants (`records::Grant`s).
    BreakGlass,
    /// Conflict merge policies per resource type (`records::Policies`).
    MergePolicies,
}

impl PolicyPart {
    fn name(self) -> &'static str {
        match self {
            PolicyPart::Permissions => "permissions",
            PolicyPart::BreakGlass => "break-glass",
            PolicyPart::MergePolicies => "merge-policies",
        }
    }
}

impl Store {
    /// Reads one part of database `db`'s policy (`None` when never set: the defaults apply).
    pub fn get_policy(&self, db: &str, part: PolicyPart) -> Result<Option<Value>, Error> {
        let mut inner = self.lock();
        let meta = inner.meta(db)?;
        let bytes: Option<Vec<u8>> = inner
            .conn
            .prepare_cached("SELECT body FROM policy WHERE db_id = ?1 AND name = ?2")?
            .query_row(params![meta.id, part.name()], |r| r.get(0))
            .optional()?;
        bytes
            .map(|b| {
                serde_json::from_slice(&b)
                    .map_err(|_| Error::Corrupt("a stored policy is not valid JSON".into()))
            })
            .transpose()
    }

    /// Replaces one part of database `db`'s policy, and appends `audit` (who changed what,
    /// before and after) in the same transaction.
    pub fn put_policy(
        &self,
        db: &str,
        part: PolicyPart,
        value: &Value,
        audit: &AuditEvent,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|_| Error::BadRequest("the policy does not serialize".into()))?;
        let mut inner = self.lock();
        let meta = inner.meta(db)?;
        let tx = inner.conn.transaction()?;
        tx.execute(
            "INSERT INTO policy (db_id, name, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (db_id, name) DO UPDATE SET body = excluded.body",
            params![meta.id, part.name(), bytes],
        )?;
        append(&tx, std::slice::from_ref(audit))?;
        tx.commit()?;
        Ok(())
    }
}
