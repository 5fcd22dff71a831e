//! Writing documents: normal edits (`new_edits=true`) and replicated revisions
//! (`new_edits=false`), each batch in one transaction.
//!
//! Semantics follow CouchDB's `_bulk_docs`
//! (<https://docs.couchdb.org/en/stable/api/database/bulk-api.html#db-bulk-docs>): a normal
//! write must name a current leaf as `_rev` (or none, for a new document or one whose winner is
//! deleted), otherwise that document gets a conflict; the other documents of the batch still
//! commit, all together.

use std::collections::BTreeMap;

use revtree::{Rev, RevTree, body_json, canonical_json};
use rusqlite::{Connection, OptionalExtension, params};

use crate::audit::AuditEvent;
use crate::doc::{AttachmentInfo, AttachmentInput, DocId, DocKind, DocWrite};
use crate::index::{self, Indexer};
use crate::store::{DbMeta, Store};
use crate::{Error, attachments};

/// What a batch changed: the latest sequence, and the change in live and deleted documents
/// (kept in `dbs` so counting costs nothing).
struct Counts {
    seq: i64,
    live: i64,
    dead: i64,
}

/// The stored state of one document row, loaded for a write.
struct Existing {
    rowid: i64,
    tree: RevTree,
}

impl Store {
    /// Writes one document as a normal edit; returns its new revision.
    pub fn put(&self, db: &str, doc: DocWrite) -> Result<Rev, Error> {
        let mut results = self.bulk_docs(db, vec![doc], true)?;
        results.pop().unwrap_or(Err(Error::Conflict))
    }

    /// Writes a batch in one transaction and returns one result per document, in order.
    ///
    /// With `new_edits = false` each document must carry `_rev` (and usually `_revisions`); its
    /// revisions are merged into the tree as they are, which is how replication inserts foreign
    /// revisions. A revision already present is accepted and changes nothing.
    ///
    /// Per-document problems (conflicts, missing attachment stubs) are results; anything else
    /// (I/O, a corrupt file) rolls back the whole batch and is returned as the error.
    pub fn bulk_docs(
        &self,
        db: &str,
        docs: Vec<DocWrite>,
        new_edits: bool,
    ) -> Result<Vec<Result<Rev, Error>>, Error> {
        self.bulk_docs_audited(db, docs, new_edits, |_| Vec::new())
    }

    /// [`Store::bulk_docs`] that also appends the audit events `audit` makes from the
    /// per-document results, in the same transaction: if the audit entries cannot be written,
    /// nothing is.
    pub fn bulk_docs_audited(
        &self,
        db: &str,
        docs: Vec<DocWrite>,
        new_edits: bool,
        audit: impl FnOnce(&[Result<Rev, Error>]) -> Vec<AuditEvent>,
    ) -> Result<Vec<Result<Rev, Error>>, Error> {
        // Group commit (ADR 22): the batch joins the open group transaction under a
        // savepoint of its own, and returns once that group is committed.
        self.write_in_group(|inner| write_batch(inner, db, docs, new_edits, audit))
    }
}

/// One batch of [`Store::bulk_docs_audited`], inside the open group transaction under its own
/// savepoint: all of it joins the group, or none of it (the savepoint rolls back).
fn write_batch(
    inner: &mut crate::store::Inner,
    db: &str,
    docs: Vec<DocWrite>,
    new_edits: bool,
    audit: impl FnOnce(&[Result<Rev, Error>]) -> Vec<AuditEvent>,
) -> Result<Vec<Result<Rev, Error>>, Error> {
    let meta = inner.meta(db)?;
    let indexer = inner.indexer.clone();
    let ix = Ix {
        indexer: indexer.as_deref(),
        db,
    };
    inner.begin_group()?;
    let (results, seq, start_seq) = {
        let tx = inner.conn.savepoint()?;
        let seq: i64 = tx
            .prepare_cached("SELECT update_seq FROM dbs WHERE id = ?1")?
            .query_row([meta.id], |r| r.get(0))?;
        let start_seq = seq;
        let mut c = Counts {
            seq,
            live: 0,
            dead: 0,
        };
        let mut results = Vec::with_capacity(docs.len());
        for doc in docs {
            let result = if doc.id.kind() == DocKind::Local {
                Err(Error::BadRequest(
                    "_local documents are written with put_local, not in a batch".into(),
                ))
            } else if new_edits {
                write_edit(&tx, &meta, &ix, doc, &mut c)
            } else {
                write_replicated(&tx, &meta, &ix, doc, &mut c)
            };
            match result {
                Ok(rev) => results.push(Ok(rev)),
                Err(e) if e.is_per_document() => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        let seq = c.seq;
        if seq != start_seq {
            tx.prepare_cached(
                "UPDATE dbs SET update_seq = ?1, doc_count = doc_count + ?2, del_count = del_count + ?3 WHERE id = ?4",
            )?
            .execute(params![seq, c.live, c.dead, meta.id])?;
        }
        crate::audit::append(&tx, &audit(&results))?;
        tx.commit()?;
        (results, seq, start_seq)
    };
    inner.joined_group((seq != start_seq).then_some((meta.id, seq as u64)));
    Ok(results)
}

fn load(conn: &Connection, db_id: i64, doc_id: &str) -> Result<Option<Existing>, Error> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT id, tree FROM docs WHERE db_id = ?1 AND doc_id = ?2")?
        .query_row(params![db_id, doc_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((rowid, bytes)) => Ok(Some(Existing {
            rowid,
            tree: RevTree::decode(&bytes)?,
        })),
    }
}

/// The stub map stored with a revision.
fn load_atts(
    conn: &Connection,
    rowid: i64,
    rev: &Rev,
) -> Result<Option<BTreeMap<String, AttachmentInfo>>, Error> {
    let atts: Option<Option<String>> = conn
        .prepare_cached("SELECT atts FROM revs WHERE doc = ?1 AND rev = ?2")?
        .query_row(params![rowid, rev.to_string()], |r| r.get(0))
        .optional()?;
    match atts.flatten() {
        None => Ok(None),
        Some(json) => Ok(Some(serde_json::from_str(&json).map_err(|_| {
            Error::Corrupt("stored attachment stubs are not valid".into())
        })?)),
    }
}

/// The search indexer of the store, if any, and the database written.
struct Ix<'a> {
    indexer: Option<&'a dyn Indexer>,
    db: &'a str,
}

fn write_edit(
    conn: &Connection,
    meta: &DbMeta,
    ix: &Ix<'_>,
    doc: DocWrite,
    c: &mut Counts,
) -> Result<Rev, Error> {
    let existing = load(conn, meta.id, doc.id.as_str())?;
    let parent = match (&existing, &doc.rev) {
        (None, None) => None,
        (None, Some(_)) => return Err(Error::Conflict),
        (Some(e), None) => match e.tree.winner() {
            // Re-creating a deleted document continues its tombstone branch.
            Some(w) if w.deleted => Some(w.rev),
            _ => return Err(Error::Conflict),
        },
        (Some(e), Some(r)) if e.tree.is_leaf(r) => Some(r.clone()),
        (Some(_), Some(_)) => return Err(Error::Conflict),
    };
    let parent_atts = match (&existing, &parent) {
        (Some(e), Some(p)) => load_atts(conn, e.rowid, p)?.unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    let generation = parent.as_ref().map_or(1, |p| p.generation() + 1);
    let mut atts = BTreeMap::new();
    for (name, input) in doc.attachments {
        let info = match input {
            AttachmentInput::Data {
                content_type, data, ..
            } => {
                let digest = attachments::put(conn, meta.id, &content_type, &data)?;
                AttachmentInfo {
                    content_type,
                    digest,
                    length: data.len() as u64,
                    revpos: generation,
                }
            }
            AttachmentInput::Stub { digest } => {
                let info = parent_atts
                    .get(&name)
                    .ok_or_else(|| Error::MissingStub(name.clone()))?;
                if digest.as_ref().is_some_and(|d| *d != info.digest) {
                    return Err(Error::MissingStub(name));
                }
                info.clone()
            }
        };
        atts.insert(name, info);
    }
    let digests: Vec<(&str, &str)> = atts
        .iter()
        .map(|(n, a)| (n.as_str(), a.digest.as_str()))
        .collect();
    let rev = Rev::derive(
        parent.as_ref(),
        doc.deleted,
        &canonical_json(&doc.body),
        &digests,
    );
    let body = body_json(&doc.body);
    let mut path = vec![rev.clone()];
    path.extend(parent);
    let new = NewRev {
        doc_id: &doc.id,
        rev: &rev,
        deleted: doc.deleted,
        body: &body,
        atts: &atts,
    };
    save(conn, meta, ix, existing, &path, &new, c)?;
    Ok(rev)
}

fn write_replicated(
    conn: &Connection,
    meta: &DbMeta,
    ix: &Ix<'_>,
    doc: DocWrite,
    c: &mut Counts,
) -> Result<Rev, Error> {
    // `_revisions`, when given, names the revision (CouchDB lets it win over `_rev`).
    let path = match (&doc.revisions, &doc.rev) {
        (Some(r), _) => r.to_path().map_err(|e| Error::BadRequest(e.to_string()))?,
        (None, Some(rev)) => vec![rev.clone()],
        (None, None) => Vec::new(),
    };
    let rev = path.first().cloned().ok_or_else(|| {
        Error::BadRequest("a replicated document (new_edits=false) needs _rev".into())
    })?;
    let existing = load(conn, meta.id, doc.id.as_str())?;
    if existing.as_ref().is_some_and(|e| e.tree.contains(&rev)) {
        return Ok(rev);
    }
    let mut atts = BTreeMap::new();
    for (name, input) in doc.attachments {
        let info = match input {
            AttachmentInput::Data {
                content_type,
                data,
                revpos,
            } => {
                let digest = attachments::put(conn, meta.id, &content_type, &data)?;
                AttachmentInfo {
                    content_type,
                    digest,
                    length: data.len() as u64,
                    revpos: revpos.unwrap_or(rev.generation()),
                }
            }
            AttachmentInput::Stub { digest } => {
                // A stub names an attachment of an ancestor we already hold.
                let found = match &existing {
                    Some(e) => find_ancestor_att(conn, e, &path[1..], &name)?,
                    None => None,
                };
                let info = found.ok_or_else(|| Error::MissingStub(name.clone()))?;
                if digest.as_ref().is_some_and(|d| *d != info.digest)
                    || !attachments::exists(conn, meta.id, &info.digest)?
                {
                    return Err(Error::MissingStub(name));
                }
                info
            }
        };
        atts.insert(name, info);
    }
    let body = body_json(&doc.body);
    let new = NewRev {
        doc_id: &doc.id,
        rev: &rev,
        deleted: doc.deleted,
        body: &body,
        atts: &atts,
    };
    save(conn, meta, ix, existing, &path, &new, c)?;
    Ok(rev)
}

fn find_ancestor_att(
    conn: &Connection,
    e: &Existing,
    ancestors: &[Rev],
    name: &str,
) -> Result<Option<AttachmentInfo>, Error> {
    for anc in ancestors {
        if let Some(info) = load_atts(conn, e.rowid, anc)?.and_then(|mut atts| atts.remove(name)) {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// A revision being stored.
struct NewRev<'a> {
    doc_id: &'a DocId,
    rev: &'a Rev,
    deleted: bool,
    body: &'a [u8],
    atts: &'a BTreeMap<String, AttachmentInfo>,
}

/// Merges the new revision's path into the tree, stores its body, stems, updates the document
/// row with a new sequence, and keeps the search index on the winning revision.
fn save(
    conn: &Connection,
    meta: &DbMeta,
    ix: &Ix<'_>,
    existing: Option<Existing>,
    path: &[Rev],
    new: &NewRev<'_>,
    c: &mut Counts,
) -> Result<(), Error> {
    let (rowid, mut tree) = match existing {
        Some(e) => (Some(e.rowid), e.tree),
        None => (None, RevTree::new()),
    };
    let before = tree.winner();
    let conflicted_before = rowid.is_some() && !tree.conflicts().is_empty();
    let deleted_before = before.as_ref().map(|w| w.deleted);
    let winner_before = before.map(|w| w.rev);
    tree.merge_path(path, new.deleted)?;
    let NewRev {
        doc_id,
        rev,
        deleted,
        body,
        atts,
        ..
    } = *new;
    let stemmed = if tree.len() > meta.revs_limit {
        tree.stem(meta.revs_limit)
    } else {
        Vec::new()
    };
    let winner = tree
        .winner()
        .ok_or_else(|| Error::Corrupt("a revision tree has no leaf".into()))?;
    c.seq += 1;
    match (deleted_before, winner.deleted) {
        (None, false) => c.live += 1,
        (None, true) => c.dead += 1,
        (Some(false), true) => {
            c.live -= 1;
            c.dead += 1;
        }
        (Some(true), false) => {
            c.live += 1;
            c.dead -= 1;
        }
        _ => {}
    }
    let tree_bytes = tree.encode();
    let atts_json = if atts.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(atts)
                .map_err(|_| Error::Corrupt("attachment stubs do not serialize".into()))?,
        )
    };
    let Some(rowid) = rowid else {
        // A new document: its only leaf is this revision. Its body row's id is chosen first, so
        // the document row is written once, complete (two statements instead of three).
        let body_row: i64 = conn
            .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM revs")?
            .query_row([], |r| r.get(0))?;
        conn.prepare_cached(
            "INSERT INTO docs (db_id, doc_id, seq, winner, winner_row, deleted, tree) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![meta.id, doc_id.as_str(), c.seq, winner.rev.to_string(), body_row, winner.deleted, tree_bytes])?;
        let rowid = conn.last_insert_rowid();
        conn.prepare_cached(
            "INSERT INTO revs (id, doc, rev, deleted, body, atts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            body_row,
            rowid,
            rev.to_string(),
            deleted,
            body,
            atts_json
        ])?;
        if winner.rev != *rev {
            return Err(Error::Corrupt(
                "a new document's winner is not its revision".into(),
            ));
        }
        if let Some(indexer) = ix.indexer {
            let winner_body = (!winner.deleted).then(|| body.to_vec());
            index::replace(conn, indexer, ix.db, rowid, doc_id, winner_body.as_deref())?;
        }
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO revs (doc, rev, deleted, body, atts) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![rowid, rev.to_string(), deleted, body, atts_json])?;
    let body_row = conn.last_insert_rowid();
    let winner_row = if winner.rev == *rev {
        body_row
    } else {
        conn.prepare_cached("SELECT id FROM revs WHERE doc = ?1 AND rev = ?2")?
            .query_row(params![rowid, winner.rev.to_string()], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::Corrupt("the winning revision has no stored body".into()))?
    };
    conn.prepare_cached("UPDATE docs SET seq = ?1, winner = ?2, winner_row = ?3, deleted = ?4, tree = ?5 WHERE id = ?6")?
        .execute(params![c.seq, winner.rev.to_string(), winner_row, winner.deleted, tree_bytes, rowid])?;
    // The conflicts table follows the tree (schema 7): written only when the answer changes.
    let conflicted = !tree.conflicts().is_empty();
    if conflicted != conflicted_before {
        let sql = if conflicted {
            "INSERT OR IGNORE INTO conflicts (db_id, doc) VALUES (?1, ?2)"
        } else {
            "DELETE FROM conflicts WHERE db_id = ?1 AND doc = ?2"
        };
        conn.prepare_cached(sql)?.execute(params![meta.id, rowid])?;
    }
    if !stemmed.is_empty() {
        let mut del = conn.prepare_cached("DELETE FROM revs WHERE doc = ?1 AND rev = ?2")?;
        for r in stemmed {
            del.execute(params![rowid, r.to_string()])?;
        }
    }
    if let Some(indexer) = ix.indexer {
        // Re-index when the winner changed, or when the new revision is the winner.
        if winner_before.as_ref() != Some(&winner.rev) || winner.rev == *rev {
            let winner_body = if winner.deleted {
                None
            } else if winner.rev == *rev {
                Some(body.to_vec())
            } else {
                Some(
                    conn.prepare_cached("SELECT body FROM revs WHERE id = ?1")?
                        .query_row([winner_row], |r| r.get::<_, Vec<u8>>(0))?,
                )
            };
            index::replace(conn, indexer, ix.db, rowid, doc_id, winner_body.as_deref())?;
        }
    }
    Ok(())
}
