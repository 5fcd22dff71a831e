//! The encrypted document store of a Hearth node: the only crate with SQL.
//!
//! One SQLCipher file per node holds several named databases. Each holds CouchDB-style documents
//! with revision trees ([`revtree`]), a changes feed, `_local/` documents and attachments. The
//! file is opened with the node's data key ([`vault::Dek`]) as SQLCipher's raw key; nothing in
//! the file, its WAL or its temp files is plaintext. [`DataDir`] ties the file to the vault
//! (unlocking with a user's PIN).
//!
//! ```no_run
//! use store::{DataDir, DocId, DocWrite, GetOptions, InitOptions};
//! use vault::Pin;
//!
//! let dir = DataDir::init("/tmp/hearth-example".as_ref(), "admin", &Pin::from("246810"), &InitOptions::default())?;
//! let node = dir.unlock("admin", &Pin::from("246810"))?;
//! let store = node.admin_store("an example")?;
//! store.ensure_db("records")?;
//! let body = serde_json::json!({"resourceType": "Patient"}).as_object().cloned().unwrap_or_default();
//! let rev = store.put("records", DocWrite::new(DocId::parse("Patient/p1")?, None, body))?;
//! let doc = store.get("records", &DocId::parse("Patient/p1")?, &GetOptions::default())?;
//! assert_eq!(doc.rev, rev);
//! # Ok::<(), store::Error>(())
//! ```

mod accounts;
mod attachments;
mod audit;
pub mod backup;
mod changes;
mod datadir;
mod devices;
mod doc;
mod index;
mod local;
mod policy;
mod read;
mod replication;
mod schema;
mod store;
mod write;

pub use accounts::{Account, validate_account_name};
pub use attachments::{COMPRESS_MIN_BYTES, digest as attachment_digest};
pub use audit::{
    AUDIT_RETENTION_SECS, AuditEntry, AuditEvent, AuditFilter, AuditProblem, EventCursor,
    SECURITY_ACTIONS,
};
pub use changes::{Change, Changes, ChangesQuery, Style};
pub use datadir::{
    DB_FILE, DEVICE_SECRET_FILE, DataDir, InitOptions, Session, Unlocked, VAULT_FILE,
};
pub use devices::{ChainProblem, Device, SignedHead, Witnessed};
pub use doc::{
    AttachmentInfo, AttachmentInput, Body, DocId, DocKind, DocWrite, Document, IGNORED_SPECIALS,
    MAX_DOC_ID_BYTES,
};
pub use index::{Filter, IndexTerm, Indexer, SearchPage, SearchQuery};
pub use policy::PolicyPart;
pub use read::{
    GetOptions, OpenRev, OpenRevs, RawDocument, RawRevision, RevStatus, splice_json, stubs_json,
};
pub use replication::{AllDocsQuery, AllDocsRow, RevsDiff};
pub use schema::latest_version as schema_version;
pub use store::{DEFAULT_CACHE_MIB, DbInfo, Store, validate_db_name};
pub use vault::{Role, UnknownRole};

/// Errors from the store. Messages are specific and never contain document contents or keys.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite or SQLCipher reported an error (its message is the whole story: not chained).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The disk is full: the write was rolled back.
    #[error("the disk is full: nothing of this write was kept; free some space and try again")]
    DiskFull,
    /// The disk or folder is read-only.
    #[error(
        "the data folder is on a read-only disk or mount: nothing can be written until it is writable again"
    )]
    ReadOnly,
    /// The file did not open with this key, or is not a database.
    #[error("the database file could not be decrypted with this key, or is not a Hearth database")]
    NotADatabase,
    /// Another process has the database file open.
    #[error(
        "the database is in use by another Hearth process (a running hub or app); stop it or use its API"
    )]
    InUse,
    /// The file was written by a newer Hearth.
    #[error(
        "the database schema is version {found}, newer than this Hearth supports ({supported}); upgrade Hearth"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// No database of that name.
    #[error("Database does not exist.")]
    DbNotFound,
    /// Creating a database that exists.
    #[error("The database could not be created, the file already exists.")]
    DbExists,
    /// A database name outside CouchDB's rule.
    #[error(
        "Name must begin with a lowercase letter, contain only lowercase letters, digits and _$()+-/, and be at most 238 characters."
    )]
    BadDbName,
    /// A bad document id.
    #[error("{0}")]
    BadDocId(String),
    /// A malformed request or document.
    #[error("{0}")]
    BadRequest(String),
    /// A document that breaks a document rule (CouchDB's `doc_validation`).
    #[error("{0}")]
    DocValidation(String),
    /// Not found; the reason is CouchDB's (`missing` or `deleted`).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The write does not extend a current leaf.
    #[error("Document update conflict.")]
    Conflict,
    /// An attachment stub names nothing stored.
    #[error("Invalid attachment stub in {0}")]
    MissingStub(String),
    /// A device's pushed audit chain was refused.
    #[error("{0}")]
    AuditChain(devices::ChainProblem),
    /// Stored data failed to decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A revision tree problem.
    #[error(transparent)]
    RevTree(#[from] revtree::Error),
    /// A key-hierarchy problem (wrong PIN, lockout, policy).
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// Too many failed attempts recently.
    #[error("too many failed attempts; wait {0} s and try again")]
    Throttled(u64),
    /// A file operation failed (the cause is in the message, not chained again).
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// A backup or restore was refused (damaged, altered, or the wrong place).
    #[error("{0}")]
    BadBackup(String),
    /// The data folder has no Hearth node in it.
    #[error("no Hearth data found in this folder; run `hearth init` first")]
    NotInitialized,
    /// The data folder already has a Hearth node.
    #[error("this folder already holds a Hearth node; refusing to overwrite it")]
    AlreadyInitialized,
    /// The device secret file can be read by other users.
    #[error("the device secret file is readable by other users (mode {0:o}); it must be 0600")]
    InsecureSecretFile(u32),
    /// The action needs an administrator.
    #[error("only an administrator can do this")]
    NotAdmin,
}

impl Error {
    /// Whether the error concerns one document of a batch (the batch goes on) rather than the
    /// whole write (the batch rolls back).
    pub fn is_per_document(&self) -> bool {
        matches!(
            self,
            Error::Conflict
                | Error::MissingStub(_)
                | Error::BadDocId(_)
                | Error::BadRequest(_)
                | Error::DocValidation(_)
                | Error::NotFound(_)
                | Error::RevTree(revtree::Error::InvalidRev(_))
        )
    }

    /// CouchDB's HTTP status and `error` name for this error.
    pub fn couch_status(&self) -> (u16, &'static str) {
        if let Error::Io(_, e) = self {
            match e.raw_os_error() {
                Some(28) => return (507, "insufficient_storage"),
                Some(30) => return (503, "read_only"),
                _ => {}
            }
        }
        match self {
            Error::DbNotFound | Error::NotFound(_) => (404, "not_found"),
            Error::DbExists => (412, "file_exists"),
            Error::BadDbName => (400, "illegal_database_name"),
            Error::BadDocId(_) => (400, "illegal_docid"),
            Error::BadRequest(_) | Error::RevTree(revtree::Error::InvalidRev(_)) => {
                (400, "bad_request")
            }
            Error::DocValidation(_) => (400, "doc_validation"),
            Error::Conflict => (409, "conflict"),
            Error::AuditChain(_) => (409, "audit_chain"),
            Error::MissingStub(_) => (412, "missing_stub"),
            Error::Throttled(_) => (429, "too_many_requests"),
            Error::DiskFull => (507, "insufficient_storage"),
            Error::ReadOnly => (503, "read_only"),
            Error::NotAdmin => (403, "forbidden"),
            Error::Vault(vault::Error::WrongCredentials | vault::Error::WrongPin) => {
                (401, "unauthorized")
            }
            _ => (500, "internal_server_error"),
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// A full or read-only disk gets its own clear error; everything else stays SQLite's.
    fn from(e: rusqlite::Error) -> Error {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                rusqlite::ErrorCode::DiskFull => Error::DiskFull,
                rusqlite::ErrorCode::ReadOnly => Error::ReadOnly,
                _ => Error::Sqlite(e),
            },
            _ => Error::Sqlite(e),
        }
    }
}

impl Error {
    /// The same error for another writer of a failed group commit (errors do not clone): a
    /// full or read-only disk and SQLite's own codes stay what they are.
    pub(crate) fn copy_for_group(&self) -> Error {
        match self {
            Error::DiskFull => Error::DiskFull,
            Error::ReadOnly => Error::ReadOnly,
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, m)) => {
                Error::Sqlite(rusqlite::Error::SqliteFailure(*f, m.clone()))
            }
            other => Error::Io(
                "committing a group of writes",
                std::io::Error::other(other.to_string()),
            ),
        }
    }

    /// Whether this is SQLite's generic I/O error (which does not say why).
    pub fn is_io_failure(&self) -> bool {
        matches!(self, Error::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::SystemIoFailure)
            || matches!(self, Error::Io(..))
    }
}

/// Tells why writing in `dir` fails, by trying: a full disk or a read-only mount (SQLite's
/// "disk I/O error" does not say which). `None` when a write there works.
pub fn diagnose_disk(dir: &std::path::Path) -> Option<Error> {
    let probe = dir.join(".hearth-space-probe");
    let result = std::fs::File::create(&probe).and_then(|mut f| {
        std::io::Write::write_all(&mut f, &[0u8; 256 * 1024])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    match result.err().and_then(|io| io.raw_os_error()) {
        Some(28) => Some(Error::DiskFull),
        Some(30) => Some(Error::ReadOnly),
        _ => None,
    }
}
