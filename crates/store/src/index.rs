//! The search index: terms of each document's winning revision, written in the same
//! transaction as the document (so the index is never behind, and lives in the encrypted file),
//! and queries over it. What the terms are is the [`Indexer`]'s business (the FHIR layer); the
//! store only keeps and queries them.

use std::sync::Arc;

use rusqlite::{Connection, params_from_iter, types::Value as SqlValue};

use crate::Error;
use crate::doc::DocId;
use crate::store::Store;

/// One index entry of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexTerm {
    /// An exact value of a parameter; string order is its sort and range order.
    Token {
        /// The parameter.
        param: String,
        /// The value.
        value: String,
    },
    /// Text for full-text search (case- and accent-insensitive, prefix matching).
    Text(String),
}

/// Computes a document's index terms from its stored body (canonical JSON).
pub trait Indexer: Send + Sync {
    /// The terms of the winning revision `body` of document `id` in database `db`.
    fn terms(&self, db: &str, id: &DocId, body: &[u8]) -> Vec<IndexTerm>;
}

/// Replaces a document's terms with those of `body` (`None`: the document is deleted).
pub(crate) fn replace(
    conn: &Connection,
    indexer: &dyn Indexer,
    db: &str,
    rowid: i64,
    id: &DocId,
    body: Option<&[u8]>,
) -> Result<(), Error> {
    conn.prepare_cached("DELETE FROM terms WHERE doc = ?1")?
        .execute([rowid])?;
    conn.prepare_cached("DELETE FROM text_index WHERE rowid = ?1")?
        .execute([rowid])?;
    let Some(body) = body else {
        return Ok(());
    };
    let mut text = String::new();
    let mut insert =
        conn.prepare_cached("INSERT INTO terms (doc, param, value) VALUES (?1, ?2, ?3)")?;
    for term in indexer.terms(db, id, body) {
        match term {
            IndexTerm::Token { param, value } => {
                insert.execute(rusqlite::params![rowid, param, value])?;
            }
            IndexTerm::Text(t) => {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&t);
            }
        }
    }
    if !text.is_empty() {
        conn.prepare_cached("INSERT INTO text_index (rowid, text) VALUES (?1, ?2)")?
            .execute(rusqlite::params![rowid, text])?;
    }
    Ok(())
}

/// A condition of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `param` equals `value`.
    Eq {
        /// The parameter.
        param: String,
        /// The value.
        value: String,
    },
    /// `param` starts with `value`.
    Prefix {
        /// The parameter.
        param: String,
        /// The prefix.
        value: String,
    },
    /// `from <= param < to` (either end open).
    Range {
        /// The parameter.
        param: String,
        /// Inclusive lower bound.
        from: Option<String>,
        /// Exclusive upper bound.
        to: Option<String>,
    },
    /// Every word of the query is a prefix of a word of the document's text.
    Text(String),
}

/// A search over one database.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// Only documents whose id starts with this (e.g. `Patient/`).
    pub id_prefix: Option<String>,
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Sort keys: a parameter (its smallest value for the document) and descending; ties and
    /// the default order are by document id.
    pub sort: Vec<(String, bool)>,
    /// Page size.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
}

/// One page of search results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    /// Matching documents, in order.
    pub ids: Vec<DocId>,
    /// Whether more follow this page.
    pub more: bool,
}

/// Turns user text into an FTS5 query: each word becomes a quoted prefix term, all required.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" AND "))
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut s = prefix.to_owned();
    s.push(char::MAX);
    s
}

impl Store {
    /// Sets the indexer that computes search terms; documents written from now on are indexed.
    /// Call [`Store::reindex`] to index documents written before.
    pub fn set_indexer(&self, indexer: Arc<dyn Indexer>) {
        self.lock().indexer = Some(indexer);
    }

    /// Rebuilds the search index of a database from the winning revisions, in batches of one
    /// transaction each. Returns how many documents were indexed.
    pub fn reindex(&self, db: &str) -> Result<u64, Error> {
        let mut inner = self.lock();
        let meta = inner.meta(db)?;
        let Some(indexer) = inner.indexer.clone() else {
            return Ok(0);
        };
        let tx = inner.conn.transaction()?;
        let rows: Vec<(i64, String, bool, Vec<u8>)> = {
            let mut st = tx.prepare(
                "SELECT d.id, d.doc_id, d.deleted, r.body FROM docs d JOIN revs r ON r.id = d.winner_row WHERE d.db_id = ?1",
            )?;
            st.query_map([meta.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut n = 0;
        for (rowid, id, deleted, body) in rows {
            let id = DocId::parse(&id)
                .map_err(|_| Error::Corrupt("a stored document id is invalid".into()))?;
            replace(
                &tx,
                indexer.as_ref(),
                db,
                rowid,
                &id,
                (!deleted).then_some(&body[..]),
            )?;
            n += 1;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Finds documents by their index terms.
    pub fn search(&self, db: &str, q: &SearchQuery) -> Result<SearchPage, Error> {
        let mut inner = self.lock();
        let meta = inner.meta(db)?;
        // With a filter to drive the search, keep SQLite from walking the id index instead
        // (unary `+` makes a term unusable for an index).
        // Full-text and range matches can be dense: there, walking ids in order and testing
        // membership finds a first page sooner.
        let selective = q
            .filters
            .iter()
            .any(|f| matches!(f, Filter::Eq { .. } | Filter::Prefix { .. }));
        let plus = if selective { "+" } else { "" };
        let mut sql =
            format!("SELECT d.doc_id FROM docs d WHERE {plus}d.db_id = ? AND d.deleted = 0");
        let mut args: Vec<SqlValue> = vec![SqlValue::Integer(meta.id)];
        if let Some(p) = &q.id_prefix {
            sql.push_str(&format!(" AND {plus}d.doc_id >= ? AND {plus}d.doc_id < ?"));
            args.push(SqlValue::Text(p.clone()));
            args.push(SqlValue::Text(prefix_end(p)));
        }
        // The most selective filter drives (an indexed `IN`); the others are checked per
        // candidate through the (doc, param, value) index. Patient compartment first, then
        // exact values, prefixes, full text, ranges.
        let rank = |f: &Filter| match f {
            Filter::Eq { param, .. } if param == "patient" => 0,
            Filter::Eq { .. } => 1,
            Filter::Prefix { .. } => 2,
            Filter::Text(_) => 3,
            Filter::Range { .. } => 4,
        };
        let mut filters: Vec<&Filter> = q.filters.iter().collect();
        filters.sort_by_key(|f| rank(f));
        for (i, f) in filters.into_iter().enumerate() {
            let drive = i == 0;
            let open = if drive {
                " AND d.id IN (SELECT doc FROM terms WHERE param = ?"
            } else {
                " AND EXISTS (SELECT 1 FROM terms WHERE doc = d.id AND param = ?"
            };
            match f {
                Filter::Eq { param, value } => {
                    sql.push_str(open);
                    sql.push_str(" AND value = ?)");
                    args.push(SqlValue::Text(param.clone()));
                    args.push(SqlValue::Text(value.clone()));
                }
                Filter::Prefix { param, value } => {
                    sql.push_str(open);
                    sql.push_str(" AND value >= ? AND value < ?)");
                    args.push(SqlValue::Text(param.clone()));
                    args.push(SqlValue::Text(value.clone()));
                    args.push(SqlValue::Text(prefix_end(value)));
                }
                Filter::Range { param, from, to } => {
                    sql.push_str(open);
                    args.push(SqlValue::Text(param.clone()));
                    if let Some(f) = from {
                        sql.push_str(" AND value >= ?");
                        args.push(SqlValue::Text(f.clone()));
                    }
                    if let Some(t) = to {
                        sql.push_str(" AND value < ?");
                        args.push(SqlValue::Text(t.clone()));
                    }
                    sql.push(')');
                }
                Filter::Text(text) => {
                    let Some(fts) = fts_query(text) else {
                        return Err(Error::BadRequest("the search text has no words".into()));
                    };
                    sql.push_str(if drive {
                        " AND d.id IN (SELECT rowid FROM text_index WHERE text_index MATCH ?)"
                    } else {
                        " AND d.id IN (SELECT rowid FROM text_index WHERE text_index MATCH ? AND rowid = d.id)"
                    });
                    args.push(SqlValue::Text(fts));
                }
            }
        }
        sql.push_str(" ORDER BY ");
        for (param, desc) in &q.sort {
            sql.push_str("(SELECT min(value) FROM terms t WHERE t.doc = d.id AND t.param = ?)");
            sql.push_str(if *desc {
                " DESC NULLS LAST, "
            } else {
                " ASC NULLS LAST, "
            });
            args.push(SqlValue::Text(param.clone()));
        }
        sql.push_str("d.doc_id LIMIT ? OFFSET ?");
        let limit = q.limit.clamp(1, 10_000);
        args.push(SqlValue::Integer(limit as i64 + 1));
        args.push(SqlValue::Integer(q.offset.min(i64::MAX as usize) as i64));
        let mut st = inner.conn.prepare_cached(&sql)?;
        let mut ids = st
            .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
            .map(|r| {
                r.map_err(Error::from).and_then(|s| {
                    DocId::parse(&s)
                        .map_err(|_| Error::Corrupt("a stored document id is invalid".into()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        Ok(SearchPage { ids, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_are_quoted_prefixes() {
        assert_eq!(fts_query("Ada lo").as_deref(), Some("\"Ada\"* AND \"lo\"*"));
        assert_eq!(
            fts_query("O'Brien").as_deref(),
            Some("\"O\"* AND \"Brien\"*")
        );
        assert_eq!(
            fts_query("\" OR 1=1 --").as_deref(),
            Some("\"OR\"* AND \"1\"* AND \"1\"*")
        );
        assert_eq!(fts_query("  -- "), None);
    }
}
