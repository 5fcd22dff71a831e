//! The store side of the CouchDB replication protocol and its listings: `_revs_diff` (which
//! revisions a peer must send) and `_all_docs`. See
//! <https://docs.couchdb.org/en/stable/replication/protocol.html> and
//! <https://docs.couchdb.org/en/stable/api/database/bulk-api.html>.

use std::collections::BTreeMap;

use revtree::{Rev, RevTree};
use rusqlite::{OptionalExtension, params};

use crate::Error;
use crate::doc::DocId;
use crate::store::Store;

/// The answer for one document of `_revs_diff`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevsDiff {
    /// The asked revisions this store does not have.
    pub missing: Vec<Rev>,
    /// Leaves this store has that could be ancestors of the missing ones (lower generation), so
    /// the peer can send only the new part of the history.
    pub possible_ancestors: Vec<Rev>,
}

/// Options for [`Store::all_docs`], as CouchDB's query parameters.
#[derive(Clone, Debug, Default)]
pub struct AllDocsQuery {
    /// First id (inclusive); with `descending`, the highest.
    pub start_key: Option<String>,
    /// Last id; inclusive unless `exclusive_end`.
    pub end_key: Option<String>,
    /// Exclude `end_key` itself.
    pub exclusive_end: bool,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Skip this many rows first.
    pub skip: u64,
    /// Highest id first.
    pub descending: bool,
}

/// One row of `_all_docs`: a live document's id and winning revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllDocsRow {
    /// The id.
    pub id: DocId,
    /// The winning revision.
    pub rev: Rev,
}

impl Store {
    /// CouchDB's `_revs_diff`: for each document, the given revisions this store lacks and
    /// the leaves it has that may be their ancestors. Documents lacking nothing are left out.
    pub fn revs_diff(
        &self,
        db: &str,
        asked: &BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let mut stmt = inner
                .conn
                .prepare_cached("SELECT tree FROM docs WHERE db_id = ?1 AND doc_id = ?2")?;
            let mut out = BTreeMap::new();
            for (id, revs) in asked {
                let tree = match stmt
                    .query_row(params![meta.id, id], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    Some(bytes) => RevTree::decode(&bytes)?,
                    None => RevTree::new(),
                };
                let mut missing: Vec<Rev> =
                    revs.iter().filter(|r| !tree.contains(r)).cloned().collect();
                missing.sort();
                missing.dedup();
                if missing.is_empty() {
                    continue;
                }
                let top = missing.iter().map(Rev::generation).max().unwrap_or(0);
                let possible_ancestors: Vec<Rev> = tree
                    .leaves()
                    .into_iter()
                    .map(|l| l.rev)
                    .filter(|r| r.generation() < top)
                    .collect();
                out.insert(
                    id.clone(),
                    RevsDiff {
                        missing,
                        possible_ancestors,
                    },
                );
            }
            Ok(out)
        })
    }

    /// CouchDB's `_all_docs` without `keys`: live documents (design documents included, local
    /// ones never) in id order, a page at a time. Returns the rows and the total live count.
    pub fn all_docs(&self, db: &str, q: &AllDocsQuery) -> Result<(Vec<AllDocsRow>, u64), Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let (lo_op, hi_op) = if q.exclusive_end {
                (">=", "<")
            } else {
                (">=", "<=")
            };
            let mut sql =
                String::from("SELECT doc_id, winner FROM docs WHERE db_id = ?1 AND deleted = 0");
            let mut args: Vec<rusqlite::types::Value> = vec![meta.id.into()];
            // With `descending`, start is the high end and end the low one.
            let (low, high, low_op, high_op) = if q.descending {
                (
                    &q.end_key,
                    &q.start_key,
                    if q.exclusive_end { ">" } else { ">=" },
                    "<=",
                )
            } else {
                (&q.start_key, &q.end_key, lo_op, hi_op)
            };
            if let Some(k) = low {
                args.push(k.clone().into());
                sql.push_str(&format!(" AND doc_id {low_op} ?{}", args.len()));
            }
            if let Some(k) = high {
                args.push(k.clone().into());
                sql.push_str(&format!(" AND doc_id {high_op} ?{}", args.len()));
            }
            sql.push_str(if q.descending {
                " ORDER BY doc_id DESC"
            } else {
                " ORDER BY doc_id"
            });
            args.push(q.limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64).into());
            sql.push_str(&format!(" LIMIT ?{}", args.len()));
            args.push((q.skip.min(i64::MAX as u64) as i64).into());
            sql.push_str(&format!(" OFFSET ?{}", args.len()));
            let conn = &inner.conn;
            let rows = {
                let mut st = conn.prepare_cached(&sql)?;
                let mapped = st.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut rows = Vec::new();
                for row in mapped {
                    let (id, rev) = row?;
                    rows.push(AllDocsRow {
                        id: DocId::parse(&id).map_err(|_| {
                            Error::Corrupt("a stored document id is invalid".into())
                        })?,
                        rev: rev.parse().map_err(|_| {
                            Error::Corrupt("a stored revision id is malformed".into())
                        })?,
                    });
                }
                rows
            };
            let total: i64 = conn
                .prepare_cached("SELECT doc_count FROM dbs WHERE id = ?1")?
                .query_row([meta.id], |r| r.get(0))?;
            Ok((rows, total as u64))
        })
    }
}
