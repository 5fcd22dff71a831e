//! Reading documents: the winner, a given revision, `open_revs`, attachments. See
//! <https://docs.couchdb.org/en/stable/api/document/common.html#get--db-docid>.

use std::collections::BTreeMap;

use revtree::{Rev, RevTree, Revisions};
use rusqlite::{Connection, OptionalExtension, params};

use crate::doc::{AttachmentInfo, Body, DocId, Document};
use crate::store::Store;
use crate::{Error, attachments};

/// Options for [`Store::get`], as CouchDB's query parameters.
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    /// `rev`: read this revision instead of the winner (a deleted one too).
    pub rev: Option<Rev>,
    /// `conflicts`: include `_conflicts`.
    pub conflicts: bool,
    /// `deleted_conflicts`: include `_deleted_conflicts`.
    pub deleted_conflicts: bool,
    /// `revs`: include `_revisions`.
    pub revs: bool,
}

/// Which revisions [`Store::open_revs`] returns.
#[derive(Clone, Debug)]
pub enum OpenRevs {
    /// Every leaf, deleted ones included.
    All,
    /// These revisions.
    Revs(Vec<Rev>),
}

/// One answer of [`Store::open_revs`].
// `Ok` is the answer nearly every time; boxing it would add an allocation per revision to save
// stack space on the rare `Missing`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum OpenRev {
    /// The revision was found.
    Ok(Document),
    /// The store does not hold this revision (or no longer holds its body).
    Missing(Rev),
}

/// The winning revision of a document with its body as stored (JSON as written, unparsed).
/// `Debug` shows the id and revision, never the body.
#[derive(Clone, PartialEq)]
pub struct RawDocument {
    /// Its id.
    pub id: DocId,
    /// The winning revision.
    pub rev: Rev,
    /// The body: a JSON object without underscore fields, keys in written order.
    pub body: Vec<u8>,
    /// Attachment stubs by name.
    pub attachments: BTreeMap<String, AttachmentInfo>,
}

impl std::fmt::Debug for RawDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDocument")
            .field("id", &self.id)
            .field("rev", &self.rev)
            .field(
                "body",
                &format_args!("<{} bytes redacted>", self.body.len()),
            )
            .finish()
    }
}

impl RawDocument {
    /// Parses the body into a [`Document`].
    pub fn parse(self) -> Result<Document, Error> {
        Ok(Document {
            body: parse_body(&self.body)?,
            id: self.id,
            rev: self.rev,
            deleted: false,
            attachments: self.attachments,
            conflicts: None,
            deleted_conflicts: None,
            revisions: None,
        })
    }

    /// The CouchDB JSON of the document, `_id` and `_rev` spliced in front of the stored body
    /// (attachments as stubs), without parsing the body.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let atts = (!self.attachments.is_empty()).then(|| stubs_json(&self.attachments));
        splice_json(
            &self.id,
            &self.rev,
            false,
            None,
            atts.as_deref(),
            &self.body,
        )
    }
}

/// The `_attachments` object of stubs, as JSON.
pub fn stubs_json(attachments: &BTreeMap<String, AttachmentInfo>) -> Vec<u8> {
    let stubs: serde_json::Map<String, serde_json::Value> = attachments
        .iter()
        .map(|(name, a)| {
            let stub = serde_json::json!({
                "content_type": a.content_type,
                "digest": a.digest,
                "length": a.length,
                "revpos": a.revpos,
                "stub": true,
            });
            (name.clone(), stub)
        })
        .collect();
    serde_json::to_vec(&stubs).unwrap_or_default()
}

/// Builds a document's CouchDB JSON from its parts without parsing the stored body, in
/// CouchDB's order: `_id`, `_rev`, the body's members as written, then `_deleted`, `_revisions`
/// and `_attachments` (given as JSON).
pub fn splice_json(
    id: &DocId,
    rev: &Rev,
    deleted: bool,
    revisions: Option<&Revisions>,
    attachments_json: Option<&[u8]>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + id.as_str().len() + 96);
    out.extend_from_slice(b"{\"_id\":");
    // Serializing a &str cannot fail.
    out.extend_from_slice(&serde_json::to_vec(id.as_str()).unwrap_or_default());
    out.extend_from_slice(b",\"_rev\":\"");
    out.extend_from_slice(rev.to_string().as_bytes());
    out.push(b'"');
    // The stored body is a JSON object: "{}" or "{...}".
    let inner = body
        .get(1..body.len().saturating_sub(1))
        .unwrap_or_default();
    if !inner.is_empty() {
        out.push(b',');
        out.extend_from_slice(inner);
    }
    if deleted {
        out.extend_from_slice(b",\"_deleted\":true");
    }
    if let Some(r) = revisions {
        out.extend_from_slice(b",\"_revisions\":");
        out.extend_from_slice(&serde_json::to_vec(r).unwrap_or_default());
    }
    if let Some(a) = attachments_json {
        out.extend_from_slice(b",\"_attachments\":");
        out.extend_from_slice(a);
    }
    out.push(b'}');
    out
}

/// One revision as stored, body unparsed: what replication serves.
#[derive(Clone, PartialEq)]
pub struct RawRevision {
    /// Document id.
    pub id: DocId,
    /// The revision.
    pub rev: Rev,
    /// Whether it is a deletion.
    pub deleted: bool,
    /// The body as written (JSON object without underscore members).
    pub body: Vec<u8>,
    /// Attachment stubs.
    pub attachments: BTreeMap<String, AttachmentInfo>,
    /// Its ancestry, when asked for.
    pub revisions: Option<Revisions>,
}

impl std::fmt::Debug for RawRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRevision")
            .field("id", &self.id)
            .field("rev", &self.rev)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

/// Status of one revision in `_revs_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevStatus {
    /// The body is stored.
    Available,
    /// The body is gone (compacted, or never received).
    Missing,
    /// A deletion.
    Deleted,
}

struct RevRow {
    deleted: bool,
    body: Vec<u8>,
    atts: Option<String>,
}

fn parse_body(bytes: &[u8]) -> Result<Body, Error> {
    serde_json::from_slice(bytes)
        .map_err(|_| Error::Corrupt("a stored document body is not valid JSON".into()))
}

fn parse_atts(atts: Option<String>) -> Result<BTreeMap<String, AttachmentInfo>, Error> {
    match atts {
        None => Ok(BTreeMap::new()),
        Some(j) => serde_json::from_str(&j)
            .map_err(|_| Error::Corrupt("stored attachment stubs are not valid".into())),
    }
}

fn load_doc_row(conn: &Connection, db_id: i64, id: &str) -> Result<Option<(i64, RevTree)>, Error> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT id, tree FROM docs WHERE db_id = ?1 AND doc_id = ?2")?
        .query_row(params![db_id, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(rowid, t)| Ok((rowid, RevTree::decode(&t)?)))
        .transpose()
}

fn load_rev(conn: &Connection, rowid: i64, rev: &Rev) -> Result<Option<RevRow>, Error> {
    Ok(conn
        .prepare_cached("SELECT deleted, body, atts FROM revs WHERE doc = ?1 AND rev = ?2")?
        .query_row(params![rowid, rev.to_string()], |r| {
            Ok(RevRow {
                deleted: r.get(0)?,
                body: r.get(1)?,
                atts: r.get(2)?,
            })
        })
        .optional()?)
}

fn build(
    id: &DocId,
    rev: Rev,
    row: RevRow,
    tree: Option<&RevTree>,
    opts: &GetOptions,
) -> Result<Document, Error> {
    let revisions = match (opts.revs, tree) {
        (true, Some(t)) => t.path_to(&rev).and_then(|p| Revisions::from_path(&p)),
        _ => None,
    };
    Ok(Document {
        id: id.clone(),
        deleted: row.deleted,
        body: parse_body(&row.body)?,
        attachments: parse_atts(row.atts)?,
        conflicts: (opts.conflicts).then(|| tree.map(RevTree::conflicts).unwrap_or_default()),
        deleted_conflicts: (opts.deleted_conflicts)
            .then(|| tree.map(RevTree::deleted_conflicts).unwrap_or_default()),
        revisions,
        rev,
    })
}

impl Store {
    /// Reads a document: the winning revision, or `opts.rev`.
    ///
    /// A missing document is `NotFound("missing")`; one whose winner is deleted is
    /// `NotFound("deleted")` unless a revision is asked for explicitly.
    pub fn get(&self, db: &str, id: &DocId, opts: &GetOptions) -> Result<Document, Error> {
        let plain = opts.rev.is_none() && !opts.conflicts && !opts.deleted_conflicts && !opts.revs;
        if plain {
            return self.get_raw(db, id)?.parse();
        }
        self.read(|inner| {
            let meta = inner.meta(db)?;
            // The tree and the revisions' rows from one committed state.
            let tx = inner.conn.unchecked_transaction()?;
            let conn: &Connection = &tx;
            let (rowid, tree) =
                load_doc_row(conn, meta.id, id.as_str())?.ok_or(Error::NotFound("missing"))?;
            let rev = match &opts.rev {
                Some(r) => r.clone(),
                None => {
                    let w = tree
                        .winner()
                        .ok_or_else(|| Error::Corrupt("a revision tree has no leaf".into()))?;
                    if w.deleted {
                        return Err(Error::NotFound("deleted"));
                    }
                    w.rev
                }
            };
            let row = load_rev(conn, rowid, &rev)?.ok_or(Error::NotFound("missing"))?;
            build(id, rev, row, Some(&tree), opts)
        })
    }

    /// Reads the winning revision as stored: its JSON body as written, unparsed. This is the
    /// path that serves documents over HTTP (the stored bytes are spliced into the response),
    /// so a read costs one indexed lookup and no JSON parsing.
    pub fn get_raw(&self, db: &str, id: &DocId) -> Result<RawDocument, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let row: Option<(String, bool, Vec<u8>, Option<String>)> = inner
                .conn
                .prepare_cached(
                    "SELECT d.winner, d.deleted, r.body, r.atts FROM docs d
                     JOIN revs r ON r.id = d.winner_row
                     WHERE d.db_id = ?1 AND d.doc_id = ?2",
                )?
                .query_row(params![meta.id, id.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((winner, deleted, body, atts)) = row else {
                return Err(Error::NotFound("missing"));
            };
            if deleted {
                return Err(Error::NotFound("deleted"));
            }
            Ok(RawDocument {
                id: id.clone(),
                rev: winner
                    .parse()
                    .map_err(|_| Error::Corrupt("a stored revision id is malformed".into()))?,
                body,
                attachments: parse_atts(atts)?,
            })
        })
    }

    /// CouchDB's `open_revs`: several revisions of one document at once, each found or
    /// missing. With `latest`, a non-leaf revision is replaced by the leaves that descend from
    /// it. With `revs`, each carries `_revisions`.
    pub fn open_revs(
        &self,
        db: &str,
        id: &DocId,
        which: &OpenRevs,
        revs: bool,
        latest: bool,
    ) -> Result<Vec<OpenRev>, Error> {
        self.open_revs_raw(db, id, which, revs, latest)?
            .into_iter()
            .map(|r| match r {
                Ok(raw) => Ok(OpenRev::Ok(Document {
                    body: parse_body(&raw.body)?,
                    id: raw.id,
                    rev: raw.rev,
                    deleted: raw.deleted,
                    attachments: raw.attachments,
                    conflicts: None,
                    deleted_conflicts: None,
                    revisions: raw.revisions,
                })),
                Err(rev) => Ok(OpenRev::Missing(rev)),
            })
            .collect()
    }

    /// [`Store::open_revs`] with bodies as stored (unparsed); a missing revision is `Err(rev)`.
    pub fn open_revs_raw(
        &self,
        db: &str,
        id: &DocId,
        which: &OpenRevs,
        revs: bool,
        latest: bool,
    ) -> Result<Vec<Result<RawRevision, Rev>>, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            // The tree and the revisions' rows from one committed state.
            let tx = inner.conn.unchecked_transaction()?;
            let conn: &Connection = &tx;
            let Some((rowid, tree)) = load_doc_row(conn, meta.id, id.as_str())? else {
                return match which {
                    OpenRevs::All => Err(Error::NotFound("missing")),
                    OpenRevs::Revs(list) => Ok(list.iter().cloned().map(Err).collect()),
                };
            };
            let wanted: Vec<Rev> = match which {
                OpenRevs::All => tree.leaves().into_iter().map(|l| l.rev).collect(),
                OpenRevs::Revs(list) if latest => {
                    let leaves = tree.leaves();
                    let mut out = Vec::new();
                    for r in list {
                        let descendants: Vec<Rev> = leaves
                            .iter()
                            .filter(|l| tree.path_to(&l.rev).is_some_and(|p| p.contains(r)))
                            .map(|l| l.rev.clone())
                            .collect();
                        if descendants.is_empty() {
                            out.push(r.clone());
                        } else {
                            out.extend(descendants);
                        }
                    }
                    out.dedup();
                    out
                }
                OpenRevs::Revs(list) => list.clone(),
            };
            let mut out = Vec::with_capacity(wanted.len());
            for rev in wanted {
                match load_rev(conn, rowid, &rev)? {
                    Some(row) if tree.contains(&rev) => {
                        let revisions = if revs {
                            tree.path_to(&rev).and_then(|p| Revisions::from_path(&p))
                        } else {
                            None
                        };
                        out.push(Ok(RawRevision {
                            id: id.clone(),
                            deleted: row.deleted,
                            body: row.body,
                            attachments: parse_atts(row.atts)?,
                            revisions,
                            rev,
                        }));
                    }
                    _ => out.push(Err(rev)),
                }
            }
            Ok(out)
        })
    }

    /// CouchDB's `_revs_info` for a revision: its ancestry, newest first, with the status of
    /// each.
    pub fn revs_info(
        &self,
        db: &str,
        id: &DocId,
        rev: &Rev,
    ) -> Result<Vec<(Rev, RevStatus)>, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let conn = &inner.conn;
            let (rowid, tree) =
                load_doc_row(conn, meta.id, id.as_str())?.ok_or(Error::NotFound("missing"))?;
            let path = tree.path_to(rev).ok_or(Error::NotFound("missing"))?;
            let mut stmt =
                conn.prepare_cached("SELECT deleted FROM revs WHERE doc = ?1 AND rev = ?2")?;
            let mut out = Vec::with_capacity(path.len());
            for r in path {
                let deleted: Option<bool> = stmt
                    .query_row(params![rowid, r.to_string()], |row| row.get(0))
                    .optional()?;
                let status = match deleted {
                    Some(true) => RevStatus::Deleted,
                    Some(false) => RevStatus::Available,
                    None => RevStatus::Missing,
                };
                out.push((r, status));
            }
            Ok(out)
        })
    }

    /// The revision tree of a document.
    /// The documents with unresolved conflicts (more than one live leaf) whose latest change is
    /// after `since` (0: all), in changes order. Read from the table every write keeps, not by
    /// walking revision trees.
    pub fn conflicted(&self, db: &str, since: u64) -> Result<Vec<DocId>, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let mut st = inner.conn.prepare_cached(
                "SELECT d.doc_id FROM conflicts c JOIN docs d ON d.id = c.doc \
                 WHERE c.db_id = ?1 AND d.seq > ?2 ORDER BY d.seq",
            )?;
            let ids = st
                .query_map(params![meta.id, since as i64], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.iter().map(|s| DocId::parse(s)).collect()
        })
    }

    /// The document's revision tree: every revision kept, with its status and deleted flag.
    pub fn rev_tree(&self, db: &str, id: &DocId) -> Result<RevTree, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            load_doc_row(&inner.conn, meta.id, id.as_str())?
                .map(|(_, t)| t)
                .ok_or(Error::NotFound("missing"))
        })
    }

    /// Reads attachment bytes by digest (as a stub names them): how replication serves the
    /// attachments of a revision without reading the revision again.
    pub fn attachment_data(&self, db: &str, digest: &str) -> Result<Vec<u8>, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            attachments::get(&inner.conn, meta.id, digest)
        })
    }

    /// Reads an attachment's bytes and stub from a revision (the winner when `rev` is `None`).
    pub fn get_attachment(
        &self,
        db: &str,
        id: &DocId,
        name: &str,
        rev: Option<&Rev>,
    ) -> Result<(AttachmentInfo, Vec<u8>), Error> {
        let opts = GetOptions {
            rev: rev.cloned(),
            ..GetOptions::default()
        };
        let doc = self.get(db, id, &opts)?;
        let info = doc
            .attachments
            .get(name)
            .cloned()
            .ok_or(Error::NotFound("missing"))?;
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let data = attachments::get(&inner.conn, meta.id, &info.digest)?;
            Ok((info, data))
        })
    }
}
