//! `_local/` documents: per-replica state such as replication checkpoints. They have no revision
//! tree and never appear in the changes feed; their `_rev` is `0-N`, counting updates.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::doc::{Body, DocId, DocKind};
use crate::store::Store;

fn check_local(id: &DocId) -> Result<(), Error> {
    if id.kind() == DocKind::Local {
        Ok(())
    } else {
        Err(Error::BadDocId(
            "a local document id must start with _local/".into(),
        ))
    }
}

fn current(conn: &Connection, db_id: i64, id: &str) -> Result<Option<(String, Vec<u8>)>, Error> {
    Ok(conn
        .prepare_cached("SELECT rev, body FROM local_docs WHERE db_id = ?1 AND doc_id = ?2")?
        .query_row(params![db_id, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

impl Store {
    /// Writes a local document. `rev` must be the current `0-N` when the document exists (as
    /// CouchDB requires); returns the new `0-N`. `deleted` removes it.
    pub fn put_local(
        &self,
        db: &str,
        id: &DocId,
        rev: Option<&str>,
        deleted: bool,
        body: &Body,
    ) -> Result<String, Error> {
        check_local(id)?;
        let mut inner = self.lock();
        let meta = inner.meta(db)?;
        let tx = inner.conn.transaction()?;
        let existing = current(&tx, meta.id, id.as_str())?;
        let next = match (&existing, rev) {
            (Some((cur, _)), Some(r)) if cur == r => local_generation(cur)? + 1,
            (Some(_), _) => return Err(Error::Conflict),
            (None, None) => 1,
            (None, Some(_)) => return Err(Error::Conflict),
        };
        if deleted {
            tx.execute(
                "DELETE FROM local_docs WHERE db_id = ?1 AND doc_id = ?2",
                params![meta.id, id.as_str()],
            )?;
        } else {
            let bytes = serde_json::to_vec(body)
                .map_err(|_| Error::BadRequest("body does not serialize".into()))?;
            tx.execute(
                "INSERT OR REPLACE INTO local_docs (db_id, doc_id, rev, body) VALUES (?1, ?2, ?3, ?4)",
                params![meta.id, id.as_str(), format!("0-{next}"), bytes],
            )?;
        }
        tx.commit()?;
        Ok(format!("0-{next}"))
    }

    /// Reads a local document: its `0-N` rev and body.
    pub fn get_local(&self, db: &str, id: &DocId) -> Result<(String, Body), Error> {
        check_local(id)?;
        let mut inner = self.lock();
        let meta = inner.meta(db)?;
        let (rev, body) =
            current(&inner.conn, meta.id, id.as_str())?.ok_or(Error::NotFound("missing"))?;
        let body = serde_json::from_slice(&body)
            .map_err(|_| Error::Corrupt("a stored local document is not valid JSON".into()))?;
        Ok((rev, body))
    }
}

fn local_generation(rev: &str) -> Result<u64, Error> {
    rev.strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Corrupt("a stored local revision is malformed".into()))
}
