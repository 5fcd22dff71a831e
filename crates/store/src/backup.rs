//! Online, encrypted backups of a node, and verified restores (ADR 20).
//!
//! ```text
//! <to>/hearth-backup-20261122T080000Z/
//!   snapshot.db     a consistent copy of the database file, SQLCipher under a fresh random key
//!   manifest.json   time, node, schema, per-database counts and sequences, audit chain head,
//!                   the snapshot's size and SHA-256, and a part sealed to the backup public key:
//!                   the snapshot key and the node's small files (vault, device secret, hub
//!                   secrets), bound to the manifest's facts
//! ```
//!
//! The snapshot is read by a second connection in one read transaction while the owner keeps
//! serving (WAL: readers and the writer do not block each other). Restoring needs the backup
//! key file and its passphrase, then the PIN of a user of the backed-up node (for a hub: its
//! passphrase): the snapshot is re-keyed to the node's data key, checked, and only then moved
//! into place.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vault::backup::{BackupKey, SealedForBackup, seal_for_backup};
use vault::{Dek, Pin};
use zeroize::Zeroizing;

use crate::Error;
use crate::datadir::{DB_FILE, DEVICE_SECRET_FILE, DataDir, Unlocked, VAULT_FILE};
use crate::store::Store;

/// The manifest's format name.
pub const FORMAT: &str = "hearth-backup/1";
/// The snapshot's file name inside a backup.
pub const SNAPSHOT_FILE: &str = "snapshot.db";
/// The manifest's file name inside a backup.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Backup folders are named `hearth-backup-<UTC time>`.
pub const BACKUP_PREFIX: &str = "hearth-backup-";
/// The node's small files carried (sealed) in a backup, when present.
const NODE_FILES: &[&str] = &[
    VAULT_FILE,
    DEVICE_SECRET_FILE,
    "hub-secrets.json",
    "hub.toml",
];

/// One named database in a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DbFacts {
    /// Its name.
    pub name: String,
    /// Live documents.
    pub doc_count: u64,
    /// Deleted documents.
    pub doc_del_count: u64,
    /// Its latest sequence.
    pub update_seq: u64,
}

/// What a snapshot holds, read from the snapshot itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotFacts {
    /// Schema version.
    pub schema: u32,
    /// Every named database.
    pub databases: Vec<DbFacts>,
    /// The audit chain head: last sequence (0: empty).
    pub audit_seq: u64,
    /// The audit chain head's hash (hex; empty when the chain is empty).
    pub audit_hash: String,
}

/// The snapshot file's identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotFile {
    /// File name inside the backup.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file (hex).
    pub sha256: String,
}

/// `manifest.json`. Nothing in it is PHI; the sealed part is opaque without the backup key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// When the snapshot was taken (UTC, RFC 3339).
    pub created: String,
    /// The same, Unix seconds.
    pub created_unix: u64,
    /// The node's device id.
    pub node: String,
    /// Who took it.
    pub user: String,
    /// The snapshot's contents.
    pub facts: SnapshotFacts,
    /// The snapshot file.
    pub snapshot: SnapshotFile,
    /// The node files carried in the sealed part.
    pub files: Vec<String>,
    /// The snapshot key and node files, sealed to the backup key; bound to everything above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedForBackup>,
}

impl Manifest {
    /// The bytes the sealed part is bound to: the manifest without it.
    fn bound_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut m = self.clone();
        m.sealed = None;
        serde_json::to_vec(&m).map_err(|_| Error::Corrupt("a manifest does not serialize".into()))
    }

    /// Reads `manifest.json` from a backup folder.
    pub fn read(backup: &Path) -> Result<Manifest, Error> {
        let bytes = fs::read(backup.join(MANIFEST_FILE))
            .map_err(|e| Error::Io("reading the backup's manifest.json", e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::BadBackup(format!(
                "manifest.json is not a Hearth backup manifest: {e}"
            ))
        })?;
        if m.format != FORMAT {
            return Err(Error::BadBackup(format!(
                "unknown backup format '{}' (this Hearth reads {FORMAT})",
                m.format
            )));
        }
        Ok(m)
    }
}

/// The sealed part's contents.
#[derive(Serialize, Deserialize)]
struct Secrets {
    /// The snapshot's SQLCipher key, `x'…'`.
    snapshot_key: String,
    /// Node files by name, base64.
    files: BTreeMap<String, String>,
}

/// What a finished backup reports.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The backup folder.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// What a verified restore reports.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Live documents counted in the restored store, per database.
    pub counted: Vec<(String, u64)>,
    /// Audit entries verified.
    pub audit_entries: u64,
}

impl Store {
    /// Writes a consistent copy of the whole file to `dest` (a new file), encrypted under
    /// `snapshot_key`, while this store keeps serving: a second connection reads one snapshot
    /// (`source_key` is this file's key). Returns the facts read from the copy.
    pub fn snapshot(
        &self,
        dest: &Path,
        source_key: &Dek,
        snapshot_key: &Dek,
    ) -> Result<SnapshotFacts, Error> {
        if dest.exists() {
            return Err(Error::BadBackup(format!(
                "{} already exists; a snapshot is only written to a new file",
                dest.display()
            )));
        }
        let conn = Connection::open_with_flags(
            self.path(),
            // CREATE: the attached snapshot file is created through this connection.
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
        let sql = Zeroizing::new(format!(
            "PRAGMA key = \"{}\";",
            source_key.sqlcipher_pragma_value().as_str()
        ));
        conn.execute_batch(&sql)?;
        let dest_name = dest
            .to_str()
            .ok_or_else(|| Error::BadRequest("the backup path is not valid UTF-8".into()))?;
        conn.execute(
            "ATTACH DATABASE ?1 AS snap KEY ?2",
            params![dest_name, snapshot_key.sqlcipher_pragma_value().as_str()],
        )?;
        // One statement, one read transaction on the source: a consistent copy.
        conn.query_row("SELECT sqlcipher_export('snap')", [], |_| Ok(()))?;
        let version: u32 = conn.query_row("PRAGMA main.user_version", [], |r| r.get(0))?;
        let copied: u32 = conn.query_row("PRAGMA snap.user_version", [], |r| r.get(0))?;
        if copied != version {
            conn.execute_batch(&format!("PRAGMA snap.user_version = {version};"))?;
        }
        let facts = facts_of(&conn, "snap")?;
        conn.execute_batch("DETACH DATABASE snap;")?;
        drop(conn);
        fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::Io("syncing the snapshot", e))?;
        Ok(facts)
    }
}

/// Counts, sequences and the audit head of the database `schema` on `conn`.
fn facts_of(conn: &Connection, schema: &str) -> Result<SnapshotFacts, Error> {
    let mut st = conn.prepare(&format!(
        "SELECT name, doc_count, del_count, update_seq FROM {schema}.dbs ORDER BY name"
    ))?;
    let databases = st
        .query_map([], |r| {
            Ok(DbFacts {
                name: r.get(0)?,
                doc_count: r.get::<_, i64>(1)? as u64,
                doc_del_count: r.get::<_, i64>(2)? as u64,
                update_seq: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let head: Option<(i64, Vec<u8>)> = conn
        .query_row(
            &format!("SELECT seq, hash FROM {schema}.audit_head WHERE id = 1"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let schema_version: u32 =
        conn.query_row(&format!("PRAGMA {schema}.user_version"), [], |r| r.get(0))?;
    Ok(SnapshotFacts {
        schema: schema_version,
        databases,
        audit_seq: head.as_ref().map_or(0, |h| h.0 as u64),
        audit_hash: head.map_or_else(String::new, |h| hex::encode(h.1)),
    })
}

fn sha256_file(path: &Path) -> Result<(u64, String), Error> {
    let mut f = fs::File::open(path).map_err(|e| Error::Io("reading the snapshot", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| Error::Io("reading the snapshot", e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// `YYYYMMDDTHHMMSSZ` and RFC 3339 for a Unix time.
fn stamps(t: u64) -> (String, String) {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    (
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Unlocked {
    /// Takes an encrypted backup into a new folder under `to` (admins only), sealed to the
    /// backup public key `recipient`. The store keeps serving meanwhile. Audited.
    pub fn backup(&self, to: &Path, recipient: &[u8; 32]) -> Result<BackupReport, Error> {
        self.require_admin()?;
        let now = crate::store::now_secs().max(0) as u64;
        let (stamp, created) = stamps(now);
        fs::create_dir_all(to).map_err(|e| Error::Io("creating the backup folder", e))?;
        let mut name = format!("{BACKUP_PREFIX}{stamp}");
        let mut n = 1;
        while to.join(&name).exists() {
            n += 1;
            name = format!("{BACKUP_PREFIX}{stamp}-{n}");
        }
        let partial = to.join(format!(".{name}.partial"));
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir(&partial).map_err(|e| Error::Io("creating the backup folder", e))?;
        // Recorded before the snapshot, so the backup carries its own entry.
        self.audit_event("backup", format!("{name}: started"))?;
        let result = self.backup_into(&partial, recipient, now, created);
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_dir_all(&partial);
                let _ = self.audit_event("backup", format!("{name}: failed: {e}"));
                return Err(e);
            }
        };
        let path = to.join(&name);
        fs::rename(&partial, &path).map_err(|e| Error::Io("finishing the backup folder", e))?;
        if let Ok(d) = fs::File::open(to) {
            let _ = d.sync_all();
        }
        let docs: u64 = manifest.facts.databases.iter().map(|d| d.doc_count).sum();
        self.audit_event(
            "backup",
            format!(
                "{name}: done, {docs} documents, audit head {}",
                manifest.facts.audit_seq
            ),
        )?;
        Ok(BackupReport { path, manifest })
    }

    fn backup_into(
        &self,
        dir: &Path,
        recipient: &[u8; 32],
        now: u64,
        created: String,
    ) -> Result<Manifest, Error> {
        let key = Dek::generate()?;
        let facts = self
            .store
            .snapshot(&dir.join(SNAPSHOT_FILE), &self.dek, &key)?;
        let (bytes, sha256) = sha256_file(&dir.join(SNAPSHOT_FILE))?;
        let mut files = BTreeMap::new();
        for f in NODE_FILES {
            match fs::read(self.path().join(f)) {
                Ok(b) => {
                    files.insert((*f).to_owned(), b64().encode(Zeroizing::new(b).as_slice()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io("reading the node's files", e)),
            }
        }
        let (node, _) = self.store.device_identity()?;
        let mut manifest = Manifest {
            format: FORMAT.into(),
            created,
            created_unix: now,
            node,
            user: self.user.clone(),
            facts,
            snapshot: SnapshotFile {
                file: SNAPSHOT_FILE.into(),
                bytes,
                sha256,
            },
            files: files.keys().cloned().collect(),
            sealed: None,
        };
        let secrets = Zeroizing::new(
            serde_json::to_vec(&Secrets {
                snapshot_key: key.sqlcipher_pragma_value().to_string(),
                files,
            })
            .map_err(|_| Error::Corrupt("backup secrets do not serialize".into()))?,
        );
        manifest.sealed = Some(seal_for_backup(
            recipient,
            &manifest.bound_bytes()?,
            &secrets,
        )?);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|_| Error::Corrupt("a manifest does not serialize".into()))?;
        let mut f = fs::File::create(dir.join(MANIFEST_FILE))
            .map_err(|e| Error::Io("writing the manifest", e))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::Io("writing the manifest", e))?;
        Ok(manifest)
    }
}

/// Checks a backup folder without restoring it: the manifest, the snapshot's size and
/// checksum, and that the backup key opens the sealed part bound to them.
pub fn verify(backup: &Path, key: &BackupKey) -> Result<Manifest, Error> {
    let m = Manifest::read(backup)?;
    let (bytes, sha) = sha256_file(&backup.join(&m.snapshot.file))?;
    if bytes != m.snapshot.bytes || sha != m.snapshot.sha256 {
        return Err(Error::BadBackup(format!(
            "the snapshot does not match its manifest (size {bytes} vs {}, checksum differs: {}): \
             the backup is damaged or was altered",
            m.snapshot.bytes,
            sha != m.snapshot.sha256
        )));
    }
    open_secrets(&m, key)?;
    Ok(m)
}

fn open_secrets(m: &Manifest, key: &BackupKey) -> Result<Secrets, Error> {
    let sealed = m
        .sealed
        .as_ref()
        .ok_or_else(|| Error::BadBackup("the manifest has no sealed part".into()))?;
    let plain = key.open(&m.bound_bytes()?, sealed)?;
    serde_json::from_slice(&plain)
        .map_err(|_| Error::BadBackup("the backup's sealed part is not readable".into()))
}

/// Restores a backup into `target`, a new or empty folder, and verifies it (checksum, SQLite
/// and SQLCipher integrity, every database's document count, the audit chain and its head)
/// before moving it into place. `user`/`pin` are a user of the backed-up node (for a hub, `hub`
/// and its passphrase): the snapshot is re-keyed to that node's data key.
pub fn restore(
    backup: &Path,
    key: &BackupKey,
    target: &Path,
    user: &str,
    pin: &Pin,
) -> Result<RestoreReport, Error> {
    refuse_live_target(target)?;
    let m = verify(backup, key)?;
    if m.facts.schema > crate::schema_version() {
        return Err(Error::SchemaTooNew {
            found: m.facts.schema,
            supported: crate::schema_version(),
        });
    }
    let secrets = open_secrets(&m, key)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "restore".into());
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::Io("creating the restore folder", e))?;
    let staging = parent.join(format!(".{name}.restoring"));
    let _ = fs::remove_dir_all(&staging);
    let result = restore_into(backup, &m, &secrets, &staging, user, pin);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if target.exists() {
        fs::remove_dir(target).map_err(|e| Error::Io("replacing the empty target folder", e))?;
    }
    fs::rename(&staging, target)
        .map_err(|e| Error::Io("moving the restored node into place", e))?;
    Ok(report)
}

/// A restore goes only into a new or empty folder: never over a node, live or not.
fn refuse_live_target(target: &Path) -> Result<(), Error> {
    if target.join(DB_FILE).exists() || target.join(VAULT_FILE).exists() {
        return Err(Error::BadBackup(format!(
            "{} holds a Hearth node; restore into a new folder (a live store is never overwritten)",
            target.display()
        )));
    }
    if let Ok(mut entries) = fs::read_dir(target)
        && entries.next().is_some()
    {
        return Err(Error::BadBackup(format!(
            "{} is not empty; restore into a new or empty folder",
            target.display()
        )));
    }
    Ok(())
}

fn restore_into(
    backup: &Path,
    m: &Manifest,
    secrets: &Secrets,
    staging: &Path,
    user: &str,
    pin: &Pin,
) -> Result<RestoreReport, Error> {
    fs::create_dir_all(staging).map_err(|e| Error::Io("creating the restore folder", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(staging, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Io("creating the restore folder", e))?;
    }
    for (name, data) in &secrets.files {
        if !NODE_FILES.contains(&name.as_str()) {
            return Err(Error::BadBackup(format!(
                "unexpected file '{name}' in the backup"
            )));
        }
        let bytes = Zeroizing::new(
            b64()
                .decode(data)
                .map_err(|_| Error::BadBackup("a node file in the backup is malformed".into()))?,
        );
        crate::datadir::write_private(&staging.join(name), &bytes)?;
    }
    let db = staging.join(DB_FILE);
    fs::copy(backup.join(&m.snapshot.file), &db)
        .map_err(|e| Error::Io("copying the snapshot", e))?;
    // Re-key from the snapshot key to the node's data key, opened with the user's PIN.
    let dir = DataDir::open(staging)?;
    let dek = dir.vault().open(user, pin, dir.device_secret())?;
    {
        let conn = Connection::open(&db)?;
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
        let sql = Zeroizing::new(format!("PRAGMA key = \"{}\";", secrets.snapshot_key));
        conn.execute_batch(&sql)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(|_| Error::BadBackup("the snapshot does not open with its key".into()))?;
        let sql = Zeroizing::new(format!(
            "PRAGMA rekey = \"{}\";",
            dek.sqlcipher_pragma_value().as_str()
        ));
        conn.execute_batch(&sql)?;
    }
    drop(dek);
    // Open it as the node opens it, and check everything against the manifest.
    let node = DataDir::open(staging)?.unlock(user, pin)?;
    let problems = node.store.integrity_check()?;
    if !problems.is_empty() {
        return Err(Error::BadBackup(format!(
            "the restored file fails its integrity check: {}",
            problems.join("; ")
        )));
    }
    let mut counted = Vec::new();
    for d in &m.facts.databases {
        let n = node.store.count_live(&d.name)?;
        if n != d.doc_count {
            return Err(Error::BadBackup(format!(
                "database '{}' has {n} documents, the manifest says {}",
                d.name, d.doc_count
            )));
        }
        counted.push((d.name.clone(), n));
    }
    let audit_entries = match node.store.audit_verify()? {
        Ok(n) => n,
        Err(p) => {
            return Err(Error::BadBackup(format!(
                "the restored audit chain does not verify: {p}"
            )));
        }
    };
    let head = node.store.audit_head()?;
    let (seq, hash) = head.map_or((0, String::new()), |h| (h.seq, hex::encode(h.hash)));
    if seq < m.facts.audit_seq || (seq == m.facts.audit_seq && hash != m.facts.audit_hash) {
        return Err(Error::BadBackup(
            "the restored audit chain head is not the manifest's".into(),
        ));
    }
    node.audit_event(
        "restore",
        format!(
            "from backup of {} taken {} (audit head {})",
            m.node, m.created, m.facts.audit_seq
        ),
    )?;
    node.store.checkpoint()?;
    Ok(RestoreReport {
        manifest: m.clone(),
        counted,
        audit_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(stamps(0).0, "19700101T000000Z");
        assert_eq!(stamps(1_795_305_600).1, "2026-11-22T00:00:00Z");
        assert_eq!(stamps(951_782_400 + 3_661).1, "2000-02-29T01:01:01Z");
    }
}
