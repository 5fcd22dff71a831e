//! The changes feed: every document once, at the sequence of its latest change. See
//! <https://docs.couchdb.org/en/stable/api/database/changes.html>.

use revtree::{Rev, RevTree};
use rusqlite::params;

use crate::Error;
use crate::doc::{DocId, Document};
use crate::read::GetOptions;
use crate::store::Store;

/// Which revisions a change lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Style {
    /// Only the winning revision (`style=main_only`).
    #[default]
    MainOnly,
    /// Every leaf, winner first (`style=all_docs`).
    AllDocs,
}

/// A changes query.
#[derive(Clone, Debug, Default)]
pub struct ChangesQuery {
    /// Only changes after this sequence.
    pub since: u64,
    /// At most this many results.
    pub limit: Option<u64>,
    /// Newest first.
    pub descending: bool,
    /// Which revisions to list.
    pub style: Style,
    /// Include the winning revision's document.
    pub include_docs: bool,
    /// With `include_docs`, add `_conflicts` to each document.
    pub conflicts: bool,
}

/// One row of the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The document's latest sequence.
    pub seq: u64,
    /// The document.
    pub id: DocId,
    /// Its winning revision (and with `style=all_docs`, the other leaves after it).
    pub changes: Vec<Rev>,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
    /// The winning revision's document, with `include_docs` (absent for deletions).
    pub doc: Option<Document>,
}

/// A page of the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Changes {
    /// The rows.
    pub results: Vec<Change>,
    /// The sequence to pass as `since` to continue.
    pub last_seq: u64,
    /// Changes after `last_seq` not in this page (ascending feeds).
    pub pending: u64,
}

impl Store {
    /// Reads a page of the changes feed.
    pub fn changes(&self, db: &str, q: &ChangesQuery) -> Result<Changes, Error> {
        let rows: Vec<(u64, String, bool, Vec<u8>)> = self.read(|inner| {
            let meta = inner.meta(db)?;
            let sql = if q.descending {
                "SELECT seq, doc_id, deleted, tree FROM docs WHERE db_id = ?1 AND seq > ?2 ORDER BY seq DESC LIMIT ?3"
            } else {
                "SELECT seq, doc_id, deleted, tree FROM docs WHERE db_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            };
            let limit = q.limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64);
            let mut st = inner.conn.prepare_cached(sql)?;
            let rows = st
                .query_map(params![meta.id, q.since as i64, limit], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })?;
        let mut results = Vec::with_capacity(rows.len());
        for (seq, id, deleted, tree) in rows {
            let tree = RevTree::decode(&tree)?;
            let winner = tree
                .winner()
                .ok_or_else(|| Error::Corrupt("a revision tree has no leaf".into()))?;
            let mut changes = vec![winner.rev.clone()];
            if q.style == Style::AllDocs {
                changes.extend(
                    tree.leaves()
                        .into_iter()
                        .rev()
                        .map(|l| l.rev)
                        .filter(|r| *r != winner.rev),
                );
            }
            let id = DocId::parse(&id)
                .map_err(|_| Error::Corrupt("a stored document id is invalid".into()))?;
            let doc = if q.include_docs && !deleted {
                let opts = GetOptions {
                    conflicts: q.conflicts,
                    ..GetOptions::default()
                };
                match self.get(db, &id, &opts) {
                    Ok(d) => Some(d),
                    // Deleted or changed between the two reads: the next page will carry it.
                    Err(Error::NotFound(_)) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            results.push(Change {
                seq,
                id,
                changes,
                deleted,
                doc,
            });
        }
        let last_seq = results.last().map_or(q.since, |c| c.seq);
        let pending = if q.descending {
            0
        } else {
            self.read(|inner| {
                let meta = inner.meta(db)?;
                let n: i64 = inner
                    .conn
                    .prepare_cached("SELECT count(*) FROM docs WHERE db_id = ?1 AND seq > ?2")?
                    .query_row(params![meta.id, last_seq as i64], |r| r.get(0))?;
                Ok(n as u64)
            })?
        };
        Ok(Changes {
            results,
            last_seq,
            pending,
        })
    }

    /// The latest sequence of a database.
    pub fn update_seq(&self, db: &str) -> Result<u64, Error> {
        self.read(|inner| {
            let meta = inner.meta(db)?;
            let seq: i64 = inner
                .conn
                .prepare_cached("SELECT update_seq FROM dbs WHERE id = ?1")?
                .query_row([meta.id], |r| r.get(0))?;
            Ok(seq as u64)
        })
    }
}
