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

/// Computes a document's index terms from its stored body (JSON as written).
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
    /// Sort keys: a parameter (its smallest value for the document) and descending; ties are
    /// in storage order (reversed when the first key descends); unsorted, by document id.
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
        self.read(|inner| {
            let meta = inner.meta(db)?;
            if let [(param, desc)] = q.sort.as_slice() {
                // Browsing a whole list in order, or a worklist bounded on its own sort key ("due
                // before tomorrow, soonest first"): walk the sort key's index and stop after the page.
                // Not within one patient's compartment or a text match: those are small, and the
                // general query that starts from them is faster.
                let bounded = q.filters.iter().any(
                    |f| matches!(f, Filter::Range { param: p, to: Some(_), .. } if p == param),
                );
                let narrow = q.filters.iter().any(|f| {
                    matches!(f, Filter::Text(_))
                        || matches!(f, Filter::Eq { param, .. } if param == "patient")
                });
                if q.filters.is_empty() || (bounded && !narrow) {
                    return sorted_walk(&inner.conn, meta.id, q, param, *desc);
                }
            }
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
                filter_sql(f, i == 0, &mut sql, &mut args)?;
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
            // Ties in storage order (what an index walk of the sort key yields without sorting),
            // reversed for a descending sort; unsorted, in id order.
            sql.push_str(match q.sort.first() {
                None => "d.doc_id",
                Some((_, false)) => "d.id",
                Some((_, true)) => "d.id DESC",
            });
            sql.push_str(" LIMIT ? OFFSET ?");
            let limit = q.limit.clamp(1, 10_000);
            args.push(SqlValue::Integer(limit as i64 + 1));
            args.push(SqlValue::Integer(q.offset.min(i64::MAX as usize) as i64));
            page_of(read_ids(&inner.conn, &sql, args)?, limit)
        })
    }
}

/// Appends one filter's condition on the document `d`: as the driving `IN` (the first, most
/// selective filter of the general search) or as a per-candidate check.
fn filter_sql(
    f: &Filter,
    drive: bool,
    sql: &mut String,
    args: &mut Vec<SqlValue>,
) -> Result<(), Error> {
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
    Ok(())
}

fn read_ids(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> Result<Vec<String>, Error> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st
        .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Parses up to `limit + 1` ids read into a page (the extra one says whether more follow).
fn page_of(ids: Vec<String>, limit: usize) -> Result<SearchPage, Error> {
    let mut ids = ids
        .iter()
        .map(|s| {
            DocId::parse(s).map_err(|_| Error::Corrupt("a stored document id is invalid".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let more = ids.len() > limit;
    ids.truncate(limit);
    Ok(SearchPage { ids, more })
}

/// A search with one sort key, walking the `(param, value)` index in order and stopping after
/// the page instead of ranking every match first. Same order as the general query: each
/// document at its smallest value, ties in storage order (reversed when descending: ties are
/// common, e.g. doses due at 08:00, and any other tie-break would sort them all), documents
/// without the key last in the same order.
/// Filters are checked per step; an upper bound on the sort key itself bounds the walk (a
/// document's smallest value is below any of its values in range).
fn sorted_walk(
    conn: &Connection,
    db_id: i64,
    q: &SearchQuery,
    param: &str,
    desc: bool,
) -> Result<SearchPage, Error> {
    let limit = q.limit.clamp(1, 10_000);
    let want = limit as i64 + 1;
    let offset = q.offset.min(i64::MAX as usize) as i64;
    let (lo, hi) = match &q.id_prefix {
        Some(p) => (p.clone(), prefix_end(p)),
        None => (String::new(), prefix_end("")),
    };
    // The conditions on the document, shared by the walk, its count and the tail.
    let mut cond =
        String::from(" AND d.db_id = ? AND d.deleted = 0 AND d.doc_id >= ? AND d.doc_id < ?");
    let mut cond_args = vec![
        SqlValue::Integer(db_id),
        SqlValue::Text(lo),
        SqlValue::Text(hi),
    ];
    for f in &q.filters {
        filter_sql(f, false, &mut cond, &mut cond_args)?;
    }
    let upper = q
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Range { param: p, to, .. } if p == param => to.clone(),
            _ => None,
        })
        .min();
    // CROSS JOIN keeps the terms index outermost: left to itself, SQLite starts from the
    // documents' id range and sorts them all, which is what the walk is here to avoid.
    let mut walk_from =
        "FROM terms t CROSS JOIN docs d ON d.id = t.doc WHERE t.param = ?".to_owned();
    let mut walk_args = vec![SqlValue::Text(param.to_owned())];
    if let Some(u) = upper {
        walk_from.push_str(" AND t.value < ?");
        walk_args.push(SqlValue::Text(u));
    }
    walk_from.push_str(&cond);
    walk_args.extend(cond_args.iter().cloned());
    // The row of each document's smallest value is the one that places it; the rowid picks
    // one when a value repeats.
    let order = if desc { "DESC" } else { "ASC" };
    let walk = format!(
        "SELECT d.doc_id {walk_from} \
         AND t.rowid = (SELECT m.rowid FROM terms m WHERE m.doc = t.doc AND m.param = t.param \
                        ORDER BY m.value LIMIT 1) \
         ORDER BY t.value {order}, t.doc {order} LIMIT ? OFFSET ?"
    );
    let mut args = walk_args.clone();
    args.extend([SqlValue::Integer(want), SqlValue::Integer(offset)]);
    let mut ids = read_ids(conn, &walk, args)?;
    let keyless_match = !q.filters.iter().any(|f| match f {
        Filter::Eq { param: p, .. }
        | Filter::Prefix { param: p, .. }
        | Filter::Range { param: p, .. } => p == param,
        Filter::Text(_) => false,
    });
    if (ids.len() as i64) < want && keyless_match {
        // The walk ran out: the page continues with the documents that lack the key.
        let walked = if ids.is_empty() {
            let sql = format!("SELECT count(DISTINCT t.doc) {walk_from}");
            conn.prepare_cached(&sql)?
                .query_row(params_from_iter(walk_args), |r| r.get::<_, i64>(0))?
        } else {
            offset + ids.len() as i64
        };
        let tail = format!(
            "SELECT d.doc_id FROM docs d WHERE NOT EXISTS \
             (SELECT 1 FROM terms WHERE doc = d.id AND param = ?){cond} \
             ORDER BY d.id {order} LIMIT ? OFFSET ?"
        );
        let mut args = vec![SqlValue::Text(param.to_owned())];
        args.extend(cond_args);
        args.extend([
            SqlValue::Integer(want - ids.len() as i64),
            SqlValue::Integer((offset - walked).max(0)),
        ]);
        ids.extend(read_ids(conn, &tail, args)?);
    }
    page_of(ids, limit)
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
