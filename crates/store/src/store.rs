//! Opening the node's database file and managing the named databases inside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock, TryLockError};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::watch;
use vault::Dek;
use zeroize::Zeroizing;

use crate::{Error, schema};

/// Default SQLite page cache per connection: 256 MiB. SQLCipher's cost is paid on cache misses
/// (each miss decrypts and authenticates a page), so a cache sized to the hot set keeps reads
/// close to plain SQLite.
pub const DEFAULT_CACHE_MIB: u32 = 256;

/// One node's database file, unlocked.
///
/// Holds one writing connection behind a mutex, and a few read-only connections beside it
/// that serve document reads, the changes feed and searches without waiting for a write's
/// fsync (ADR 21). Every method is a short transaction. `Store` is `Send + Sync`; share it
/// with an `Arc`.
pub struct Store {
    pub(crate) inner: Mutex<Inner>,
    /// Read-only connections; empty for a store opened alongside its owner, or while a re-key
    /// runs, when reads go through the writer.
    readers: RwLock<Vec<Mutex<Inner>>>,
    next_reader: AtomicUsize,
    /// Bumped when a database is deleted or its settings change, so readers drop cached facts.
    dbs_gen: AtomicU64,
    cache_mib: AtomicU32,
    /// Document writers waiting for the writer (they decide who commits a group, ADR 22).
    writers_waiting: AtomicUsize,
    /// Which groups of document writes are committed, and the failed ones.
    groups: Mutex<Committed>,
    group_done: Condvar,
    watchers: Mutex<HashMap<i64, watch::Sender<u64>>>,
    path: PathBuf,
    encrypted: bool,
    /// The owner lock on `<file>.lock`, held while the store is open (ADR 4); `None` for a
    /// store opened alongside the owner.
    _owner: Option<std::fs::File>,
}

/// Takes the owner lock beside the database file: one process owns a node's file at a time.
/// Another holder gets `wait` to let go before the store reports it in use.
fn take_owner_lock(path: &Path, wait: std::time::Duration) -> Result<std::fs::File, Error> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Io("cannot open the database lock file", e))?;
    let until = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::InUse),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Io("cannot lock the database file", e));
            }
        }
    }
}

/// Most document writes one group transaction carries before it is committed even with more
/// writers waiting (bounds a writer's wait under steady load).
const MAX_GROUP: usize = 64;

/// An open transaction carrying document writes that are not committed yet.
pub(crate) struct Group {
    pub(crate) epoch: u64,
    /// Writes that joined (their savepoints released into the group).
    members: usize,
    /// Change-feed notifications to send once committed: (database id, sequence).
    notify: Vec<(i64, u64)>,
}

/// Groups committed so far, and the errors of those whose commit failed (until each of their
/// writers has taken it).
#[derive(Default)]
struct Committed {
    done: u64,
    failed: HashMap<u64, (Error, usize)>,
}

pub(crate) struct Inner {
    pub(crate) conn: Connection,
    dbs: HashMap<String, DbMeta>,
    /// The `dbs_gen` the cache above was filled under (readers only).
    dbs_gen: u64,
    /// The open group transaction of document writes, if any (writer only).
    pub(crate) group: Option<Group>,
    next_epoch: u64,
    pub(crate) indexer: Option<std::sync::Arc<dyn crate::index::Indexer>>,
}

/// What the store keeps in memory about a named database.
#[derive(Clone, Debug)]
pub(crate) struct DbMeta {
    pub(crate) id: i64,
    pub(crate) revs_limit: usize,
}

/// Facts about one named database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    /// Its name.
    pub name: String,
    /// Documents whose winner is not deleted.
    pub doc_count: u64,
    /// Documents whose winner is a tombstone.
    pub doc_del_count: u64,
    /// The latest sequence.
    pub update_seq: u64,
    /// Revisions kept per leaf path.
    pub revs_limit: usize,
    /// Random id of this database instance.
    pub uuid: String,
}

/// Checks CouchDB's database name rule: `^[a-z][a-z0-9_$()+/-]*$`, at most 238 characters.
pub fn validate_db_name(name: &str) -> Result<(), Error> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_$()+/-".contains(&b));
    if first_ok && rest_ok && name.len() <= 238 {
        Ok(())
    } else {
        Err(Error::BadDbName)
    }
}

/// The current Unix time in seconds (0 if the clock is before 1970).
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Opens one connection to the file: the key, then the pragmas every connection runs with.
fn connect(
    path: &Path,
    key: Option<&Dek>,
    cache_mib: u32,
    busy: std::time::Duration,
) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    // SQLCipher prints "hmac check failed" to stderr on a wrong key unless told not to.
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    if let Some(key) = key {
        let sql = Zeroizing::new(format!(
            "PRAGMA key = \"{}\";",
            key.sqlcipher_pragma_value().as_str()
        ));
        conn.execute_batch(&sql)?;
    }
    // One process owns the file (the lock above, ADR 4); SQLite's own locking stays normal so
    // a second connection can read a consistent snapshot while this one writes (online
    // backups, ADR 20).
    // The first read proves the key: a wrong key or a plaintext file fails here.
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(Error::NotADatabase);
        }
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            return Err(Error::InUse);
        }
        Err(e) => return Err(e.into()),
    }
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{};",
        u64::from(cache_mib) * 1024
    ))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) an encrypted database file with the node's data key.
    pub fn open(path: &Path, key: &Dek) -> Result<Store, Error> {
        Store::open_inner(path, Some(key), DEFAULT_CACHE_MIB)
    }

    /// Opens the file alongside the process that owns it (a running app or hub), for a backup:
    /// SQLite's locking keeps the two connections safe, the snapshot reads one consistent
    /// state, and the backup's audit entries are appended in their own transactions. No
    /// migration: the schema must already be this version's.
    pub fn open_alongside(path: &Path, key: &Dek) -> Result<Store, Error> {
        if !path.exists() {
            return Err(Error::NotInitialized);
        }
        let s = Store::open_conn(path, Some(key), 16, None)?;
        let v: u32 = s
            .lock()
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if v != schema::latest_version() {
            return Err(Error::BadRequest(format!(
                "the database's schema is version {v}, this Hearth writes {}; open it once with \
                 this version (stop the running process first)",
                schema::latest_version()
            )));
        }
        Ok(s)
    }

    /// Opens with a chosen page-cache size in MiB.
    pub fn open_with_cache(path: &Path, key: &Dek, cache_mib: u32) -> Result<Store, Error> {
        Store::open_inner(path, Some(key), cache_mib)
    }

    /// Opens a plain, unencrypted SQLite file. Only for the benchmark that compares SQLCipher
    /// with plain SQLite on the same code path; never used for PHI.
    pub fn open_unencrypted_for_benchmark(path: &Path, cache_mib: u32) -> Result<Store, Error> {
        Store::open_inner(path, None, cache_mib)
    }

    fn open_inner(path: &Path, key: Option<&Dek>, cache_mib: u32) -> Result<Store, Error> {
        let owner = take_owner_lock(path, std::time::Duration::from_secs(2))?;
        let s = Store::open_conn(path, key, cache_mib, Some(owner))?;
        schema::migrate(&mut s.lock().conn)?;
        s.open_readers(key)?;
        Ok(s)
    }

    /// Opens the read-only connections beside the writer: one per core, at most four.
    fn open_readers(&self, key: Option<&Dek>) -> Result<(), Error> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let cache_mib = self.cache_mib.load(Ordering::Relaxed);
        let mut readers = Vec::with_capacity(n);
        for _ in 0..n {
            let conn = connect(
                &self.path,
                key,
                cache_mib,
                std::time::Duration::from_secs(2),
            )?;
            conn.execute_batch("PRAGMA query_only = ON;")?;
            readers.push(Mutex::new(Inner {
                conn,
                dbs: HashMap::new(),
                dbs_gen: self.dbs_gen.load(Ordering::Acquire),
                group: None,
                next_epoch: 0,
                indexer: None,
            }));
        }
        *self.readers.write().unwrap_or_else(|p| p.into_inner()) = readers;
        Ok(())
    }

    /// Runs a read on a free read-only connection (the writer when there is none). Each
    /// statement sees one committed state; a read of several statements that must agree opens
    /// a transaction on the connection it is given. Never nest: `f` must not call back into
    /// the store.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let readers = self.readers.read().unwrap_or_else(|p| p.into_inner());
        if readers.is_empty() {
            drop(readers);
            return f(&mut self.lock());
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        let mut free = None;
        for i in 0..readers.len() {
            match readers[(start + i) % readers.len()].try_lock() {
                Ok(g) => {
                    free = Some(g);
                    break;
                }
                // As for the writer: a panicking reader cannot leave the file half-written.
                Err(TryLockError::Poisoned(p)) => {
                    free = Some(p.into_inner());
                    break;
                }
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut inner =
            free.unwrap_or_else(|| readers[start].lock().unwrap_or_else(|p| p.into_inner()));
        let current = self.dbs_gen.load(Ordering::Acquire);
        if inner.dbs_gen != current {
            inner.dbs.clear();
            inner.dbs_gen = current;
        }
        f(&mut inner)
    }

    /// How many read-only connections serve reads beside the writer (0 while reads go through
    /// the writer).
    pub fn readers(&self) -> usize {
        self.readers.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Tells readers that cached database facts are stale.
    fn dbs_changed(&self) {
        self.dbs_gen.fetch_add(1, Ordering::AcqRel);
    }

    fn open_conn(
        path: &Path,
        key: Option<&Dek>,
        cache_mib: u32,
        owner: Option<std::fs::File>,
    ) -> Result<Store, Error> {
        // A writer in another connection gets this long to finish before we report it.
        let busy = std::time::Duration::from_secs(if owner.is_some() { 2 } else { 10 });
        let conn = connect(path, key, cache_mib, busy)?;
        Ok(Store {
            inner: Mutex::new(Inner {
                conn,
                dbs: HashMap::new(),
                dbs_gen: 0,
                group: None,
                next_epoch: 0,
                indexer: None,
            }),
            readers: RwLock::new(Vec::new()),
            next_reader: AtomicUsize::new(0),
            dbs_gen: AtomicU64::new(0),
            cache_mib: AtomicU32::new(cache_mib),
            writers_waiting: AtomicUsize::new(0),
            groups: Mutex::new(Committed::default()),
            group_done: Condvar::new(),
            watchers: Mutex::new(HashMap::new()),
            path: path.to_owned(),
            encrypted: key.is_some(),
            _owner: owner,
        })
    }
    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is encrypted (always, outside the benchmark).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The writer, with no group transaction open: an open group is committed first, so
    /// every other use of the writer starts from a clean connection.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions and
        // savepoints roll back on drop), so a poisoned lock is safe to reuse.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.commit_group(&mut inner);
        inner
    }

    /// Runs `work` as one member of the group transaction (ADR 22): `work` opens the group
    /// if needed (`Inner::begin_group`), does its writes under a savepoint of its own, and
    /// records itself (`Inner::joined_group`). The last writer in line commits the group; this
    /// returns only once the group holding `work`'s writes is committed. A failing `work` (or
    /// a panicking one) leaves the group as it found it: its savepoint rolls back.
    pub(crate) fn write_in_group<T>(
        &self,
        work: impl FnOnce(&mut Inner) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut inner)))
            .unwrap_or_else(|_| Err(Error::Corrupt("a write failed unexpectedly".into())));
        let epoch = inner.group.as_ref().map(|g| g.epoch);
        self.commit_group_if_last(&mut inner);
        drop(inner);
        let out = done?;
        if let Some(epoch) = epoch {
            self.wait_for_group(epoch)?;
        }
        Ok(out)
    }

    /// Commits the open group unless another writer is waiting for the writer (it will join
    /// the group and decide again), or the group is full.
    fn commit_group_if_last(&self, inner: &mut Inner) {
        let full = inner.group.as_ref().is_some_and(|g| g.members >= MAX_GROUP);
        if full || self.writers_waiting.load(Ordering::SeqCst) == 0 {
            self.commit_group(inner);
        }
    }

    /// Commits the open group transaction, if any, and tells its writers how it went.
    fn commit_group(&self, inner: &mut Inner) {
        let Some(group) = inner.group.take() else {
            return;
        };
        let failed = inner.conn.execute_batch("COMMIT").err().map(Error::from);
        if failed.is_some() {
            // Leave no transaction open, whatever state the failed COMMIT left.
            let _ = inner.conn.execute_batch("ROLLBACK");
        }
        let committed = failed.is_none();
        {
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            groups.done = group.epoch;
            if let Some(e) = failed
                && group.members > 0
            {
                groups.failed.insert(group.epoch, (e, group.members));
            }
        }
        self.group_done.notify_all();
        if committed {
            for (db_id, seq) in group.notify {
                self.notify(db_id, seq);
            }
        }
    }

    /// Waits until the group `epoch` is committed; its error if the commit failed.
    fn wait_for_group(&self, epoch: u64) -> Result<(), Error> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        while groups.done < epoch {
            groups = self
                .group_done
                .wait(groups)
                .unwrap_or_else(|p| p.into_inner());
        }
        let Some((error, left)) = groups.failed.get_mut(&epoch) else {
            return Ok(());
        };
        *left -= 1;
        let mine = error.copy_for_group();
        if *left == 0 {
            groups.failed.remove(&epoch);
        }
        Err(mine)
    }

    /// Creates a named database.
    pub fn create_db(&self, name: &str) -> Result<(), Error> {
        validate_db_name(name)?;
        let uuid = hex::encode(vault::random_bytes::<16>().map_err(Error::Vault)?);
        let inner = self.lock();
        let n = inner.conn.execute(
            "INSERT INTO dbs (name, uuid, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
            params![name, uuid, now_secs()],
        )?;
        if n == 0 {
            return Err(Error::DbExists);
        }
        Ok(())
    }

    /// Creates the database unless it exists.
    pub fn ensure_db(&self, name: &str) -> Result<(), Error> {
        match self.create_db(name) {
            Ok(()) | Err(Error::DbExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a named database and everything in it.
    pub fn delete_db(&self, name: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        let n = inner
            .conn
            .execute("DELETE FROM dbs WHERE name = ?1", [name])?;
        self.dbs_changed();
        if let Some(meta) = inner.dbs.remove(name) {
            self.watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&meta.id);
        }
        if n == 0 {
            return Err(Error::DbNotFound);
        }
        Ok(())
    }

    /// Names of all databases, sorted.
    pub fn list_dbs(&self) -> Result<Vec<String>, Error> {
        self.read(|inner| {
            let mut st = inner
                .conn
                .prepare_cached("SELECT name FROM dbs ORDER BY name")?;
            let names = st
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(names)
        })
    }

    /// Sets the page cache size (MiB). A hub streams more than it re-reads, so it runs with a
    /// smaller cache than a device; memory then stays flat as its databases grow.
    pub fn set_cache_mib(&self, mib: u32) -> Result<(), Error> {
        let size = -(i64::from(mib.max(1)) * 1024);
        self.cache_mib.store(mib.max(1), Ordering::Relaxed);
        self.lock().conn.pragma_update(None, "cache_size", size)?;
        let readers = self.readers.read().unwrap_or_else(|p| p.into_inner());
        for r in readers.iter() {
            let r = r.lock().unwrap_or_else(|p| p.into_inner());
            r.conn.pragma_update(None, "cache_size", size)?;
        }
        Ok(())
    }

    /// Facts about one database.
    pub fn db_info(&self, name: &str) -> Result<DbInfo, Error> {
        self.read(|inner| {
            let meta = inner.meta(name)?;
            let conn = &inner.conn;
            let (update_seq, revs_limit, uuid, live, dead): (i64, i64, String, i64, i64) = conn
                .query_row(
                    "SELECT update_seq, revs_limit, uuid, doc_count, del_count FROM dbs WHERE id = ?1",
                    [meta.id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
            Ok(DbInfo {
                name: name.to_owned(),
                doc_count: live as u64,
                doc_del_count: dead as u64,
                update_seq: update_seq as u64,
                revs_limit: revs_limit as usize,
                uuid,
            })
        })
    }

    /// Sets how many revisions are kept per leaf path (CouchDB `_revs_limit`); applies to
    /// documents as they are next written.
    pub fn set_revs_limit(&self, name: &str, limit: usize) -> Result<(), Error> {
        if limit == 0 || limit > 1_000_000 {
            return Err(Error::BadRequest(
                "revs_limit must be between 1 and 1000000".into(),
            ));
        }
        let mut inner = self.lock();
        let id = inner.meta(name)?.id;
        inner.conn.execute(
            "UPDATE dbs SET revs_limit = ?1 WHERE id = ?2",
            params![limit as i64, id],
        )?;
        inner.dbs.remove(name);
        self.dbs_changed();
        Ok(())
    }

    /// Counts a database's live documents row by row (a check on `doc_count`, which is kept
    /// by every write).
    pub fn count_live(&self, name: &str) -> Result<u64, Error> {
        self.read(|inner| {
            let id = inner.meta(name)?.id;
            let n: i64 = inner.conn.query_row(
                "SELECT count(*) FROM docs WHERE db_id = ?1 AND deleted = 0",
                [id],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
    }

    /// Writes the WAL back into the main file and truncates it.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let inner = self.lock();
        inner
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Runs SQLite's `integrity_check` and, for encrypted files, SQLCipher's
    /// `cipher_integrity_check` (which authenticates every page). Returns the problems found;
    /// empty means healthy.
    pub fn integrity_check(&self) -> Result<Vec<String>, Error> {
        let inner = self.lock();
        let mut problems = Vec::new();
        let mut st = inner.conn.prepare("PRAGMA integrity_check")?;
        for row in st.query_map([], |r| r.get::<_, String>(0))? {
            let row = row?;
            if row != "ok" {
                problems.push(row);
            }
        }
        if self.encrypted {
            let mut st = inner.conn.prepare("PRAGMA cipher_integrity_check")?;
            for row in st.query_map([], |r| r.get::<_, String>(0))? {
                problems.push(row?);
            }
        }
        Ok(problems)
    }

    /// Re-encrypts the whole file under a new data key (`PRAGMA rekey`), for compromise
    /// recovery. Every page is rewritten; the old key no longer opens the file.
    pub fn rekey(&self, new_key: &Dek) -> Result<(), Error> {
        if !self.encrypted {
            return Err(Error::BadRequest(
                "an unencrypted benchmark store cannot be re-keyed".into(),
            ));
        }
        // Leaving WAL mode needs the only connection: close the readers (reads go through the
        // writer meanwhile) and reopen them under the new key afterwards.
        let had_readers = {
            let mut readers = self.readers.write().unwrap_or_else(|p| p.into_inner());
            let had = !readers.is_empty();
            readers.clear();
            had
        };
        let inner = self.lock();
        // SQLCipher re-keys through the rollback journal; leave WAL mode for the duration.
        inner
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        inner
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        let sql = Zeroizing::new(format!(
            "PRAGMA rekey = \"{}\";",
            new_key.sqlcipher_pragma_value().as_str()
        ));
        let result = inner.conn.execute_batch(&sql);
        inner
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        result?;
        drop(inner);
        if had_readers {
            self.open_readers(Some(new_key))?;
        }
        Ok(())
    }

    pub(crate) fn notify(&self, db_id: i64, seq: u64) {
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = watchers.get(&db_id) {
            tx.send_replace(seq);
        }
    }

    /// Waits until the database's sequence passes `since`, then returns the new sequence.
    /// Sees writes made through this `Store`; wrap it in a timeout for long-polling.
    pub async fn wait_for_change(&self, db: &str, since: u64) -> Result<u64, Error> {
        let mut rx = {
            let mut inner = self.lock();
            let meta = inner.meta(db)?;
            let current: i64 = inner.conn.query_row(
                "SELECT update_seq FROM dbs WHERE id = ?1",
                [meta.id],
                |r| r.get(0),
            )?;
            let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
            let tx = watchers
                .entry(meta.id)
                .or_insert_with(|| watch::channel(current as u64).0);
            tx.send_if_modified(|v| {
                let newer = (current as u64) > *v;
                if newer {
                    *v = current as u64;
                }
                newer
            });
            tx.subscribe()
        };
        // The sender is dropped only when the database is deleted.
        let seq = rx
            .wait_for(|s| *s > since)
            .await
            .map(|s| *s)
            .map_err(|_| Error::DbNotFound)?;
        Ok(seq)
    }
}

impl Inner {
    /// Opens a group transaction unless one is open.
    pub(crate) fn begin_group(&mut self) -> Result<(), Error> {
        if self.group.is_none() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.next_epoch += 1;
            self.group = Some(Group {
                epoch: self.next_epoch,
                members: 0,
                notify: Vec::new(),
            });
        }
        Ok(())
    }

    /// Records a write whose savepoint was released into the open group.
    pub(crate) fn joined_group(&mut self, changed: Option<(i64, u64)>) {
        if let Some(g) = &mut self.group {
            g.members += 1;
            g.notify.extend(changed);
        }
    }

    /// Looks up a database by name, caching the answer.
    pub(crate) fn meta(&mut self, name: &str) -> Result<DbMeta, Error> {
        if let Some(m) = self.dbs.get(name) {
            return Ok(m.clone());
        }
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT id, revs_limit FROM dbs WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (id, revs_limit) = row.ok_or(Error::DbNotFound)?;
        let meta = DbMeta {
            id,
            revs_limit: revs_limit as usize,
        };
        self.dbs.insert(name.to_owned(), meta.clone());
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_follow_couchdb() {
        for ok in ["patients", "a", "clinic-1", "a_b$c(d)e+f/g"] {
            assert!(validate_db_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Patients", "1abc", "_users", "a b", &"a".repeat(239)] {
            assert!(validate_db_name(bad).is_err(), "{bad}");
        }
    }

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let key = Dek::generate().unwrap();
        let s = Store::open(&dir.path().join("t.db"), &key).unwrap();
        s.create_db("a").unwrap();
        (dir, s)
    }

    fn put(s: &Store, db: &str, id: &str, v: i64) -> revtree::Rev {
        let doc = serde_json::json!({"_id": id, "v": v});
        s.put(db, crate::DocWrite::from_json(doc, None).unwrap())
            .unwrap()
    }

    #[test]
    fn reads_do_not_wait_for_the_writer() {
        let (_dir, s) = open_temp();
        put(&s, "a", "p1", 1);
        let s = std::sync::Arc::new(s);
        // Hold the writer (as a write waiting on its fsync would) and read from another thread.
        let writer = s.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::sync::Arc::clone(&s);
        std::thread::spawn(move || {
            let id = crate::DocId::parse("p1").unwrap();
            let got = reader.get_raw("a", &id).map(|d| d.rev.generation());
            let _ = tx.send(got);
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(writer);
        assert_eq!(got.expect("the read waited for the writer").unwrap(), 1);
    }

    #[test]
    fn readers_forget_a_deleted_database() {
        let (_dir, s) = open_temp();
        put(&s, "a", "old", 1);
        let old = crate::DocId::parse("old").unwrap();
        let new = crate::DocId::parse("new").unwrap();
        // Every reader caches the database's row id.
        for _ in 0..2 * s.readers() {
            s.get_raw("a", &old).unwrap();
        }
        s.delete_db("a").unwrap();
        s.create_db("a").unwrap();
        put(&s, "a", "new", 2);
        for _ in 0..2 * s.readers() {
            assert!(matches!(s.get_raw("a", &old), Err(Error::NotFound(_))));
            assert_eq!(s.get_raw("a", &new).unwrap().rev.generation(), 1);
            assert_eq!(s.db_info("a").unwrap().doc_count, 1);
        }
    }

    #[test]
    fn concurrent_audit_appends_share_a_commit() {
        let (_dir, s) = open_temp();
        let s = std::sync::Arc::new(s);
        let event = |i: usize| crate::AuditEvent {
            user: format!("user{i}"),
            role: "clinician".into(),
            action: "read".into(),
            outcome: "success".into(),
            ..Default::default()
        };
        s.audit_append(&[event(99)]).unwrap();
        let before = s.groups.lock().unwrap().done;
        // While the writer is busy (a write's fsync), eight readers' audit entries queue up.
        let writer = s.lock();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || s.audit_append(&[event(i), event(i)]).unwrap())
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.writers_waiting.load(Ordering::SeqCst) < 8 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(writer);
        for (i, t) in threads.into_iter().enumerate() {
            let entries = t.join().unwrap();
            // Each caller gets back exactly its own entries.
            assert_eq!(entries.len(), 2);
            assert!(entries.iter().all(|e| e.event.user == format!("user{i}")));
        }
        // All eight in one commit.
        assert_eq!(s.groups.lock().unwrap().done - before, 1);
        assert_eq!(s.audit_verify().unwrap().unwrap(), 17);
    }

    #[test]
    fn concurrent_writes_share_a_commit() {
        let (_dir, s) = open_temp();
        put(&s, "a", "taken", 0);
        let s = std::sync::Arc::new(s);
        let before = s.groups.lock().unwrap().done;
        let seq_before = s.update_seq("a").unwrap();
        // While the writer is busy, eight writers line up: six new documents, one conflict,
        // one write to a database that does not exist.
        let writer = s.lock();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    let (db, id) = match i {
                        6 => ("a", "taken".to_owned()),
                        7 => ("missing", "x".to_owned()),
                        _ => ("a", format!("p{i}")),
                    };
                    let doc = serde_json::json!({"_id": id, "v": i});
                    s.put(db, crate::DocWrite::from_json(doc, None).unwrap())
                })
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.writers_waiting.load(Ordering::SeqCst) < 8 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(writer);
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (i, r) in results.iter().enumerate() {
            match i {
                6 => assert!(matches!(r, Err(Error::Conflict)), "{i}: {r:?}"),
                7 => assert!(matches!(r, Err(Error::DbNotFound)), "{i}: {r:?}"),
                _ => assert_eq!(r.as_ref().unwrap().generation(), 1),
            }
        }
        // Every write returned after it was committed, all in one transaction.
        assert_eq!(s.groups.lock().unwrap().done - before, 1);
        assert_eq!(s.db_info("a").unwrap().doc_count, 7);
        assert_eq!(s.update_seq("a").unwrap(), seq_before + 6);
        for i in 0..6 {
            let id = crate::DocId::parse(&format!("p{i}")).unwrap();
            assert_eq!(s.get_raw("a", &id).unwrap().rev.generation(), 1);
        }
        drop(s);
    }

    #[test]
    fn a_failed_group_commit_fails_every_writer_in_it() {
        let (dir, s) = open_temp();
        let s = std::sync::Arc::new(s);
        // A group that cannot commit: the writes join it, then a deferred foreign-key check
        // fails at COMMIT (the one failure a statement cannot see coming).
        let mut writer = s.lock();
        writer.begin_group().unwrap();
        writer
            .conn
            .execute_batch(
                "PRAGMA defer_foreign_keys = ON;
                 INSERT INTO docs (db_id, doc_id, tree, winner, winner_row, deleted, seq)
                 VALUES (424242, 'orphan', x'', '1-a', 0, 0, 0);",
            )
            .unwrap();
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || put_result(&s, i))
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.writers_waiting.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(writer);
        for t in threads {
            assert!(
                t.join().unwrap().is_err(),
                "a write in a failed group was acknowledged"
            );
        }
        // Nothing of the group was kept, and the store writes again.
        assert_eq!(s.db_info("a").unwrap().doc_count, 0);
        put(&s, "a", "after", 1);
        assert_eq!(s.db_info("a").unwrap().doc_count, 1);
        drop(s);
        drop(dir);
    }

    fn put_result(s: &Store, i: i64) -> Result<revtree::Rev, Error> {
        let doc = serde_json::json!({"_id": format!("q{i}"), "v": i});
        s.put("a", crate::DocWrite::from_json(doc, None).unwrap())
    }

    #[test]
    fn reads_beside_writes_see_whole_revisions() {
        let (_dir, s) = open_temp();
        let s = std::sync::Arc::new(s);
        let mut rev = put(&s, "a", "p", 0);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    let id = crate::DocId::parse("p").unwrap();
                    let opts = crate::GetOptions {
                        conflicts: true,
                        revs: true,
                        ..Default::default()
                    };
                    let mut last = 0;
                    for _ in 0..300 {
                        let d = s.get("a", &id, &opts).unwrap();
                        let v = d.body["v"].as_i64().unwrap();
                        // Generation and body belong together, and time never runs back.
                        assert_eq!(d.rev.generation() as i64, v + 1);
                        assert!(v >= last);
                        last = v;
                    }
                })
            })
            .collect();
        for v in 1..=150 {
            let doc = serde_json::json!({"_id": "p", "_rev": rev.to_string(), "v": v});
            rev = s
                .put("a", crate::DocWrite::from_json(doc, None).unwrap())
                .unwrap();
        }
        for r in readers {
            r.join().unwrap();
        }
    }
}
