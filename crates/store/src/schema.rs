//! The database schema, applied by numbered, forward-only migrations (`PRAGMA user_version`).
//!
//! ```text
//! dbs          one row per named database in the node's file
//!   id           INTEGER PRIMARY KEY AUTOINCREMENT (never reused)
//!   name         CouchDB database name, unique
//!   update_seq   last sequence handed out in this database
//!   revs_limit   revisions kept per leaf path (CouchDB _revs_limit, default 1000)
//!   uuid         random id of this database instance
//! docs         one row per document (the changes feed is its (db_id, seq) index)
//!   db_id, doc_id  unique together
//!   seq          sequence of the document's latest change
//!   winner       the winning leaf revision
//!   winner_row   revs.id of the winner's body (reads skip the (doc, rev) index)
//!   deleted      whether the winner is a tombstone
//!   tree         the revision tree (revtree::RevTree::encode)
//! revs         stored bodies of revisions (leaves, and ancestors until compaction)
//!   doc, rev     unique together
//!   deleted      whether the revision is a deletion
//!   body         JSON of the body as written (keys in written order, numbers as written; ADR 25)
//!   atts         JSON map of attachment stubs, or NULL
//! attachments  attachment contents, content-addressed per database
//!   db_id, digest  primary key (digest is md5-<base64> of the identity bytes)
//!   encoding     0 = identity, 1 = gzip
//!   length       identity length
//!   data         stored bytes
//! local_docs   _local/ documents: no revision tree, not in the changes feed
//!   db_id, doc_id  primary key
//!   rev          "0-N"
//!   body         JSON
//! terms        search index of winning revisions (from the store's Indexer)
//!   doc          docs.id
//!   param        parameter name, e.g. "Patient.birthdate"
//!   value        exact value; string order is the sort order
//! text_index   FTS5 (unicode61, diacritics removed): full text per document, rowid = docs.id
//! identity     this device's id and Ed25519 identity key (one row)
//! audit        the audit trail: seq, entry_id "{device}:{seq}", time, user, role, action,
//!              outcome, patient, resource, detail, break_glass, prev hash, hash
//!              (UPDATE and DELETE refused by triggers)
//! audit_head   the last seq and hash, signed by the identity key
//! audit_anchor where the retained chain starts after a purge (signed)
//! accounts     hub accounts: name, Argon2id PHC password hash, admin, role, created_at
//! devices      devices paired with this hub: id, name, channel_key (X25519 public),
//!              audit_key (Ed25519 public), paired_at, last_contact, revoked_at, and the
//!              witnessed head of the device's audit chain (audit_seq, audit_hash), and when
//!              its trail was refused (audit_refused_at: suspended until re-paired)
//! pairing_offers  one-time pairing tokens (SHA-256 only), expiry, who made it, used_by
//! device_audit the audit entries devices pushed, verified, append-only (triggers)
//! node_secrets this node's own secrets by name (a device's channel key and its paired hub)
//! policy       each database's security policy (permission matrix, break-glass grants,
//!              merge policies) by name: not documents, so no document API reaches them
//!   db_id, name  primary key
//! conflicts    documents with more than one live leaf, kept by every write (the inbox and the
//!              conflicts filter read it instead of scanning every revision tree)
//!   db_id, doc   primary key (doc is docs.id)
//! ```

use rusqlite::Connection;

use crate::Error;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a shipped entry; add one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE dbs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        update_seq INTEGER NOT NULL DEFAULT 0,
        revs_limit INTEGER NOT NULL DEFAULT 1000,
        uuid TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE docs (
        id INTEGER PRIMARY KEY,
        db_id INTEGER NOT NULL REFERENCES dbs(id) ON DELETE CASCADE,
        doc_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        winner TEXT NOT NULL,
        winner_row INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        tree BLOB NOT NULL,
        UNIQUE (db_id, doc_id)
    );
    CREATE INDEX docs_by_seq ON docs (db_id, seq);
    CREATE TABLE revs (
        id INTEGER PRIMARY KEY,
        doc INTEGER NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
        rev TEXT NOT NULL,
        deleted INTEGER NOT NULL,
        body BLOB NOT NULL,
        atts TEXT,
        UNIQUE (doc, rev)
    );
    CREATE TABLE attachments (
        db_id INTEGER NOT NULL REFERENCES dbs(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        encoding INTEGER NOT NULL,
        length INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (db_id, digest)
    );
    CREATE TABLE local_docs (
        db_id INTEGER NOT NULL REFERENCES dbs(id) ON DELETE CASCADE,
        doc_id TEXT NOT NULL,
        rev TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (db_id, doc_id)
    );",
    // 2: search index, maintained with every write of a document's winning revision.
    "CREATE TABLE terms (
        doc INTEGER NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
        param TEXT NOT NULL,
        value TEXT NOT NULL
    );
    CREATE INDEX terms_lookup ON terms (param, value, doc);
    CREATE INDEX terms_by_doc ON terms (doc, param, value);
    CREATE VIRTUAL TABLE text_index USING fts5 (
        text,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '1 2 3'
    );",
    // 3: device identity and the audit trail (append-only: the triggers refuse changes;
    // the hash chain and signed head catch what gets around them).
    "CREATE TABLE identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        device TEXT NOT NULL,
        signing_key BLOB NOT NULL,
        public_key BLOB NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL UNIQUE,
        device TEXT NOT NULL,
        time INTEGER NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        patient TEXT,
        resource TEXT,
        detail TEXT,
        break_glass INTEGER NOT NULL,
        prev BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX audit_by_patient ON audit (patient, seq);
    CREATE INDEX audit_by_user ON audit (user, seq);
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        signature BLOB NOT NULL
    );
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        signature BLOB NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 4: hub accounts for the CouchDB-compatible API (HTTP Basic and `_session`). Passwords are
    // Argon2id PHC strings, and the whole file is encrypted besides.
    "CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        admin INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 5: live and deleted document counts per database, kept with every write (CouchDB's
    // doc_count and doc_del_count without scanning).
    "ALTER TABLE dbs ADD COLUMN doc_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dbs ADD COLUMN del_count INTEGER NOT NULL DEFAULT 0;
    UPDATE dbs SET
        doc_count = (SELECT count(*) FROM docs WHERE docs.db_id = dbs.id AND deleted = 0),
        del_count = (SELECT count(*) FROM docs WHERE docs.db_id = dbs.id AND deleted = 1);",
    // 6: the hub's devices, pairing offers and the audit entries devices push; roles for hub
    // accounts; and a device's own secrets (its channel key, the hub it paired with).
    "ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'clinician';
    UPDATE accounts SET role = 'admin' WHERE admin = 1;
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        channel_key BLOB NOT NULL,
        audit_key BLOB NOT NULL,
        paired_at INTEGER NOT NULL,
        last_contact INTEGER,
        revoked_at INTEGER,
        audit_seq INTEGER NOT NULL DEFAULT 0,
        audit_hash BLOB
    );
    CREATE TABLE pairing_offers (
        token_hash BLOB PRIMARY KEY,
        expires INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        used_by TEXT
    );
    CREATE TABLE device_audit (
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        entry_id TEXT NOT NULL,
        time INTEGER NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        patient TEXT,
        resource TEXT,
        detail TEXT,
        break_glass INTEGER NOT NULL,
        prev BLOB NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (device, seq)
    );
    CREATE INDEX device_audit_by_patient ON device_audit (patient);
    CREATE TRIGGER device_audit_no_update BEFORE UPDATE ON device_audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER device_audit_no_delete BEFORE DELETE ON device_audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TABLE node_secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );",
    // 7: the documents in conflict, kept with every write; filled from the revision trees by
    // `backfill` below.
    "CREATE TABLE conflicts (
        db_id INTEGER NOT NULL REFERENCES dbs(id) ON DELETE CASCADE,
        doc INTEGER NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
        PRIMARY KEY (db_id, doc)
    ) WITHOUT ROWID;",
    // 8: the security policy leaves the documents: the permission matrix, break-glass grants
    // and merge policies were `_local/hearth-*` documents; they move to their own table,
    // which no document API reaches (issue 15, ADR 31).
    "CREATE TABLE policy (
        db_id INTEGER NOT NULL REFERENCES dbs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (db_id, name)
    ) WITHOUT ROWID;
    INSERT INTO policy (db_id, name, body)
        SELECT db_id, substr(doc_id, 15), body FROM local_docs
        WHERE doc_id IN ('_local/hearth-permissions', '_local/hearth-break-glass',
                         '_local/hearth-merge-policies');
    DELETE FROM local_docs
        WHERE doc_id IN ('_local/hearth-permissions', '_local/hearth-break-glass',
                         '_local/hearth-merge-policies');",
    // 9: a device whose audit trail the hub refused (restored from an old copy, or a broken
    // chain) is suspended until an administrator re-pairs it (ADR 32).
    "ALTER TABLE devices ADD COLUMN audit_refused_at INTEGER;",
];

/// Steps a migration needs that SQL alone cannot do, run in the same transaction right after
/// migration `version`'s SQL (decoding revision trees, for one).
fn backfill(tx: &Connection, version: u32) -> Result<(), Error> {
    if version == 7 {
        let mut read = tx.prepare("SELECT id, db_id, tree FROM docs WHERE deleted = 0")?;
        let mut add = tx.prepare("INSERT INTO conflicts (db_id, doc) VALUES (?1, ?2)")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let tree = revtree::RevTree::decode(&row.get::<_, Vec<u8>>(2)?)
                .map_err(|e| Error::Corrupt(format!("a revision tree does not decode: {e}")))?;
            if !tree.conflicts().is_empty() {
                add.execute(rusqlite::params![
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(0)?
                ])?;
            }
        }
    }
    Ok(())
}

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema up to date in one transaction. A file from a newer Hearth is refused, not
/// touched.
pub fn migrate(conn: &mut Connection) -> Result<(), Error> {
    migrate_to(conn, latest_version())
}

/// Applies migrations up to `target` (tests use it to stop at an older version).
fn migrate_to(conn: &mut Connection, target: u32) -> Result<(), Error> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > latest_version() {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: latest_version(),
        });
    }
    if current >= target {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    // Re-read inside the lock: another process may have migrated meanwhile.
    let current: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        tx.execute_batch(sql)?;
        backfill(&tx, i as u32 + 1)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn stepwise_upgrade_equals_fresh_schema() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        // Every older version, with data in it, upgraded to the latest.
        for from in 1..latest_version() {
            let mut old = Connection::open_in_memory().unwrap();
            migrate_to(&mut old, from).unwrap();
            old.execute(
                "INSERT INTO dbs (name, uuid, created_at) VALUES ('d', 'u', 0)",
                [],
            )
            .unwrap();
            migrate(&mut old).unwrap();
            assert_eq!(
                schema_of(&fresh),
                schema_of(&old),
                "upgrade from version {from}"
            );
            let n: i64 = old
                .query_row("SELECT count(*) FROM dbs", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1);
        }
        let mut stepwise = Connection::open_in_memory().unwrap();
        for v in 1..=latest_version() {
            migrate_to(&mut stepwise, v).unwrap();
        }
        assert_eq!(schema_of(&fresh), schema_of(&stepwise));
        let v: u32 = fresh
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest_version());
    }

    #[test]
    fn upgrade_to_7_fills_the_conflicts_table_from_the_trees() {
        use revtree::{Rev, RevTree};
        let mut c = Connection::open_in_memory().unwrap();
        migrate_to(&mut c, 6).unwrap();
        c.execute(
            "INSERT INTO dbs (name, uuid, created_at) VALUES ('d', 'u', 0)",
            [],
        )
        .unwrap();
        let r1: Rev = "1-aa".parse().unwrap();
        let mut plain = RevTree::new();
        plain.merge_path(std::slice::from_ref(&r1), false).unwrap();
        let mut forked = plain.clone();
        forked
            .merge_path(&["2-bb".parse().unwrap(), r1.clone()], false)
            .unwrap();
        forked
            .merge_path(&["2-cc".parse().unwrap(), r1.clone()], false)
            .unwrap();
        for (i, (id, tree)) in [("a", &plain), ("b", &forked)].into_iter().enumerate() {
            c.execute(
                "INSERT INTO docs (db_id, doc_id, seq, winner, winner_row, deleted, tree) \
                 VALUES (1, ?1, ?2, 'x', 0, 0, ?3)",
                rusqlite::params![id, i as i64 + 1, tree.encode()],
            )
            .unwrap();
        }
        migrate(&mut c).unwrap();
        let ids: Vec<String> = c
            .prepare("SELECT d.doc_id FROM conflicts JOIN docs d ON d.id = conflicts.doc")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, vec!["b".to_owned()]);
    }

    #[test]
    fn upgrade_to_8_moves_the_policy_out_of_the_local_documents() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate_to(&mut c, 7).unwrap();
        c.execute(
            "INSERT INTO dbs (name, uuid, created_at) VALUES ('records', 'u', 0)",
            [],
        )
        .unwrap();
        for (id, body) in [
            ("_local/hearth-permissions", r#"{"roles":{}}"#),
            ("_local/hearth-break-glass", r#"{"grants":[]}"#),
            ("_local/hearth-merge-policies", r#"{"overrides":{}}"#),
            ("_local/checkpoint-1", r#"{"last_seq":5}"#),
        ] {
            c.execute(
                "INSERT INTO local_docs (db_id, doc_id, rev, body) VALUES (1, ?1, '0-1', ?2)",
                rusqlite::params![id, body.as_bytes()],
            )
            .unwrap();
        }
        migrate(&mut c).unwrap();
        let policy: Vec<(String, Vec<u8>)> = c
            .prepare("SELECT name, body FROM policy ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            policy,
            vec![
                ("break-glass".to_owned(), br#"{"grants":[]}"#.to_vec()),
                ("merge-policies".to_owned(), br#"{"overrides":{}}"#.to_vec()),
                ("permissions".to_owned(), br#"{"roles":{}}"#.to_vec()),
            ]
        );
        let left: Vec<String> = c
            .prepare("SELECT doc_id FROM local_docs")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, vec!["_local/checkpoint-1".to_owned()]);
    }

    #[test]
    fn refuses_newer_schema() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        assert!(matches!(migrate(&mut c), Err(Error::SchemaTooNew { .. })));
    }
}
