//! The audit trail: append-only, hash-chained, signed by the device.
//!
//! Each entry has a stable id `{device}:{seq}` and a per-device sequence number (so entries can
//! later replicate to the hub as an append-only stream), and its hash covers the previous
//! entry's hash and every field of its own. The device's Ed25519 identity key (kept inside the
//! encrypted file) signs the chain head after every append. Triggers refuse `UPDATE` and
//! `DELETE` on the table; [`Store::audit_verify`] detects what gets past them (raw edits through
//! the key): a modified entry, a deleted one (sequence gap), an inserted or reordered one
//! (broken link), and a head that was rewound or re-signed with another key.
//!
//! Entries carry who, role, device, time, action, outcome, patient and resource ids — never
//! record contents.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Error;
use crate::store::Store;

/// What happened, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who (a user name, or `system`).
    pub user: String,
    /// Their role at the time.
    pub role: String,
    /// What: `login`, `login_failed`, `unlock`, `lock`, `timeout`, `read`, `search`, `create`,
    /// `update`, `delete`, `export`, `import`, `sync`, `denied`, `break_glass`, `user_change`,
    /// `key_change`, …
    pub action: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The patient concerned (`Patient/{id}`), if any.
    pub patient: Option<String>,
    /// The record concerned (`{type}/{id}`), or a search's query, if any.
    pub resource: Option<String>,
    /// More context, never PHI (a reason code, a count, a break-glass reason category).
    pub detail: Option<String>,
    /// Whether this happened under break-glass access.
    pub break_glass: bool,
}

/// An entry of the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in this device's chain, from 1.
    pub seq: u64,
    /// Stable id: `{device}:{seq}`.
    pub id: String,
    /// The device that wrote it.
    pub device: String,
    /// Unix seconds.
    pub time: i64,
    /// The event.
    pub event: AuditEvent,
    /// Hash of the previous entry (zeros for the first).
    pub prev: [u8; 32],
    /// This entry's hash.
    pub hash: [u8; 32],
}

impl AuditEntry {
    /// The wire form devices push to the hub (hashes in hex).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seq": self.seq, "id": self.id, "device": self.device, "time": self.time,
            "user": self.event.user, "role": self.event.role, "action": self.event.action,
            "outcome": self.event.outcome, "patient": self.event.patient,
            "resource": self.event.resource, "detail": self.event.detail,
            "break_glass": self.event.break_glass,
            "prev": hex::encode(self.prev), "hash": hex::encode(self.hash),
        })
    }

    /// Reads the wire form; the hash is checked by whoever verifies the chain.
    pub fn from_json(v: &serde_json::Value) -> Result<AuditEntry, Error> {
        let bad = || Error::BadRequest("an audit entry is malformed".into());
        let s = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(bad)
        };
        let opt = |k: &str| -> Result<Option<String>, Error> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(x)) => Ok(Some(x.clone())),
                Some(_) => Err(bad()),
            }
        };
        let h = |k: &str| -> Result<[u8; 32], Error> {
            hex::decode(s(k)?)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)
        };
        Ok(AuditEntry {
            seq: v
                .get("seq")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(bad)?,
            id: s("id")?,
            device: s("device")?,
            time: v
                .get("time")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(bad)?,
            event: AuditEvent {
                user: s("user")?,
                role: s("role")?,
                action: s("action")?,
                outcome: s("outcome")?,
                patient: opt("patient")?,
                resource: opt("resource")?,
                detail: opt("detail")?,
                break_glass: v
                    .get("break_glass")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or_else(bad)?,
            },
            prev: h("prev")?,
            hash: h("hash")?,
        })
    }
}

/// What [`Store::audit_verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditProblem {
    /// An entry's content does not match its hash.
    Modified {
        /// The entry.
        seq: u64,
    },
    /// Sequence numbers jump: entries are missing.
    Missing {
        /// The first missing sequence number.
        seq: u64,
    },
    /// An entry does not link to the one before it (inserted or reordered).
    BrokenLink {
        /// The entry.
        seq: u64,
    },
    /// The signed head does not match the last entry (entries removed from the end, or the
    /// head rewritten).
    HeadMismatch,
    /// The head's signature is not the device's.
    BadSignature,
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditProblem::Modified { seq } => write!(
                f,
                "entry {seq} was modified (its hash does not match its content)"
            ),
            AuditProblem::Missing { seq } => write!(f, "entry {seq} is missing (deleted)"),
            AuditProblem::BrokenLink { seq } => {
                write!(
                    f,
                    "entry {seq} does not follow the entry before it (inserted or reordered)"
                )
            }
            AuditProblem::HeadMismatch => {
                write!(
                    f,
                    "the signed chain head does not match the last entry (entries removed from the end?)"
                )
            }
            AuditProblem::BadSignature => {
                write!(f, "the chain head's signature is not this device's")
            }
        }
    }
}

fn put(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s);
}

pub(crate) fn entry_hash(
    prev: &[u8; 32],
    seq: u64,
    id: &str,
    device: &str,
    time: i64,
    e: &AuditEvent,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hearth-audit-v1");
    h.update(prev);
    h.update(seq.to_le_bytes());
    put(&mut h, id.as_bytes());
    put(&mut h, device.as_bytes());
    h.update(time.to_le_bytes());
    for field in [&e.user, &e.role, &e.action, &e.outcome] {
        put(&mut h, field.as_bytes());
    }
    for field in [&e.patient, &e.resource, &e.detail] {
        match field {
            Some(v) => {
                h.update([1]);
                put(&mut h, v.as_bytes());
            }
            None => h.update([0]),
        }
    }
    h.update([u8::from(e.break_glass)]);
    h.finalize().into()
}

pub(crate) fn head_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = b"hearth-audit-head-v1".to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash);
    m
}

/// The device identity: its id and Ed25519 key, created on first use, kept in the encrypted
/// file.
pub(crate) fn identity(conn: &Connection) -> Result<(String, SigningKey), Error> {
    let row: Option<(String, Vec<u8>)> = conn
        .prepare_cached("SELECT device, signing_key FROM identity WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((device, key)) = row {
        let key = Zeroizing::new(key);
        let bytes: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corrupt("the device identity key has the wrong length".into()))?;
        return Ok((device, SigningKey::from_bytes(&bytes)));
    }
    let secret = Zeroizing::new(vault::random_bytes::<32>()?);
    let device = hex::encode(vault::random_bytes::<8>()?);
    let key = SigningKey::from_bytes(&secret);
    conn.execute(
        "INSERT INTO identity (id, device, signing_key, public_key) VALUES (1, ?1, ?2, ?3)",
        params![
            device,
            &secret[..],
            key.verifying_key().as_bytes().as_slice()
        ],
    )?;
    Ok((device, key))
}

/// Appends events inside the caller's transaction and re-signs the head.
pub(crate) fn append(conn: &Connection, events: &[AuditEvent]) -> Result<Vec<AuditEntry>, Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (device, key) = identity(conn)?;
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let anchor: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit_anchor WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, prev) = match last.or(anchor) {
        Some((s, h)) => (s as u64, h),
        None => (0, vec![0u8; 32]),
    };
    let mut prev: [u8; 32] = prev
        .try_into()
        .map_err(|_| Error::Corrupt("an audit hash has the wrong length".into()))?;
    let time = crate::store::now_secs();
    let mut out = Vec::with_capacity(events.len());
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit (seq, entry_id, device, time, user, role, action, outcome, patient, resource, detail, break_glass, prev, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for e in events {
        seq += 1;
        let id = format!("{device}:{seq}");
        let hash = entry_hash(&prev, seq, &id, &device, time, e);
        insert.execute(params![
            seq as i64,
            id,
            device,
            time,
            e.user,
            e.role,
            e.action,
            e.outcome,
            e.patient,
            e.resource,
            e.detail,
            e.break_glass,
            &prev[..],
            &hash[..]
        ])?;
        out.push(AuditEntry {
            seq,
            id,
            device: device.clone(),
            time,
            event: e.clone(),
            prev,
            hash,
        });
        prev = hash;
    }
    let sig = key.sign(&head_message(seq, &prev));
    conn.prepare_cached(
        "INSERT OR REPLACE INTO audit_head (id, seq, hash, signature) VALUES (1, ?1, ?2, ?3)",
    )?
    .execute(params![seq as i64, &prev[..], &sig.to_bytes()[..]])?;
    Ok(out)
}

pub(crate) fn read_entry(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(AuditEntry, Vec<u8>, Vec<u8>)> {
    let seq: i64 = r.get(0)?;
    Ok((
        AuditEntry {
            seq: seq as u64,
            id: r.get(1)?,
            device: r.get(2)?,
            time: r.get(3)?,
            event: AuditEvent {
                user: r.get(4)?,
                role: r.get(5)?,
                action: r.get(6)?,
                outcome: r.get(7)?,
                patient: r.get(8)?,
                resource: r.get(9)?,
                detail: r.get(10)?,
                break_glass: r.get(11)?,
            },
            prev: [0; 32],
            hash: [0; 32],
        },
        r.get(12)?,
        r.get(13)?,
    ))
}

/// A position in the security-event stream ([`Store::security_events_after`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCursor {
    audit: i64,
    device_audit: i64,
}

/// The columns of an audit entry, as [`read_entry`] reads them.
const ENTRY_COLUMNS: &str = "SELECT seq, entry_id, device, time, user, role, action, outcome, patient, resource, detail, break_glass, prev, hash";

/// Which rows are security events: their actions, every refusal, every break-glass access.
fn security_predicate() -> String {
    format!(
        "action IN ({}) OR outcome = 'denied' OR break_glass = 1",
        SECURITY_ACTIONS
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Runs an entry query.
fn entries<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<Vec<AuditEntry>, Error> {
    let mut st = conn.prepare(sql)?;
    let mut out = Vec::new();
    for row in st.query_map(params, read_entry)? {
        let (mut e, prev, hash) = row?;
        e.prev = prev.try_into().unwrap_or([0; 32]);
        e.hash = hash.try_into().unwrap_or([0; 32]);
        out.push(e);
    }
    Ok(out)
}

/// The actions that are security events ([`Store::security_events`]), besides every refusal
/// and every break-glass access.
pub const SECURITY_ACTIONS: &[&str] = &[
    "login_failed",
    "audit_refused",
    "break_glass",
    "permission_change",
    "policy_change",
    "user_change",
    "key_change",
    "device_revoked",
    "audit_purge",
    "pairing_offer",
];

const SELECT_ENTRY: &str = "SELECT seq, entry_id, device, time, user, role, action, outcome, patient, resource, detail, break_glass, prev, hash FROM audit";

/// Filters for [`Store::audit_list`].
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only entries about this patient (`Patient/{id}`).
    pub patient: Option<String>,
    /// Only entries by this user.
    pub user: Option<String>,
    /// Only break-glass entries.
    pub break_glass: bool,
    /// Only the newest this many (still returned oldest first).
    pub newest: Option<usize>,
}

/// How long audit entries must be kept: six years (HIPAA §164.316(b)(2)).
pub const AUDIT_RETENTION_SECS: i64 = 6 * 365 * 86_400 + 2 * 86_400;

fn anchor_message(seq: u64, hash: &[u8]) -> Vec<u8> {
    let mut m = b"hearth-audit-anchor-v1".to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash);
    m
}

impl Store {
    /// Removes entries older than `before` (Unix seconds), which must be at least six years
    /// before `now`. The last removed entry's hash is kept as a signed anchor, so the rest of
    /// the chain still verifies. Returns how many entries were removed.
    pub fn audit_purge(&self, before: i64, now: i64) -> Result<u64, Error> {
        if before > now - AUDIT_RETENTION_SECS {
            return Err(Error::BadRequest(
                "audit entries younger than six years cannot be purged".into(),
            ));
        }
        let mut inner = self.lock();
        let tx = inner
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (_, key) = identity(&tx)?;
        // The removed part is a prefix of the chain: up to the last entry older than `before`.
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, hash FROM audit WHERE seq <= (SELECT max(seq) FROM audit WHERE time < ?1) ORDER BY seq DESC LIMIT 1",
                [before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((seq, hash)) = last else {
            return Ok(0);
        };
        let sig = key.sign(&anchor_message(seq as u64, &hash));
        tx.execute_batch("DROP TRIGGER audit_no_delete;")?;
        let removed = tx.execute("DELETE FROM audit WHERE seq <= ?1", [seq])?;
        tx.execute_batch(
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
             BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO audit_anchor (id, seq, hash, signature) VALUES (1, ?1, ?2, ?3)",
            params![seq, hash, &sig.to_bytes()[..]],
        )?;
        tx.commit()?;
        Ok(removed as u64)
    }

    /// Appends audit events in their own transaction (for events that change nothing else:
    /// reads, searches, logins). Returns the entries written, once they are committed.
    ///
    /// Joins the group transaction of concurrent writes (ADR 22): many reads' audit entries,
    /// and the document writes beside them, share one commit and one fsync.
    pub fn audit_append(&self, events: &[AuditEvent]) -> Result<Vec<AuditEntry>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write_in_group(|inner| {
            inner.begin_group()?;
            let entries = {
                let sp = inner.conn.savepoint()?;
                let entries = append(&sp, events)?;
                sp.commit()?;
                entries
            };
            inner.joined_group(None);
            Ok(entries)
        })
    }

    /// This device's id and public key (hex).
    pub fn device_identity(&self) -> Result<(String, String), Error> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        let (device, key) = identity(&tx)?;
        tx.commit()?;
        Ok((device, hex::encode(key.verifying_key().as_bytes())))
    }

    /// This device's entries after `seq`, in order (what it pushes to the hub).
    pub fn audit_since(&self, seq: u64) -> Result<Vec<AuditEntry>, Error> {
        let inner = self.lock();
        let mut st = inner
            .conn
            .prepare_cached(&format!("{SELECT_ENTRY} WHERE seq > ?1 ORDER BY seq"))?;
        let rows = st.query_map([seq as i64], read_entry)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut e, prev, hash) = row?;
            e.prev = prev
                .try_into()
                .map_err(|_| Error::Corrupt("an audit hash has the wrong length".into()))?;
            e.hash = hash
                .try_into()
                .map_err(|_| Error::Corrupt("an audit hash has the wrong length".into()))?;
            out.push(e);
        }
        Ok(out)
    }

    /// This device's signed chain head, if it has written any entry.
    pub fn audit_head(&self) -> Result<Option<crate::SignedHead>, Error> {
        let inner = self.lock();
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = inner
            .conn
            .query_row(
                "SELECT seq, hash, signature FROM audit_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(seq, hash, sig)| {
            Ok(crate::SignedHead {
                seq: seq as u64,
                hash: hash
                    .try_into()
                    .map_err(|_| Error::Corrupt("the audit head is malformed".into()))?,
                signature: sig
                    .try_into()
                    .map_err(|_| Error::Corrupt("the audit head is malformed".into()))?,
            })
        })
        .transpose()
    }

    /// Entries matching a filter, oldest first.
    pub fn audit_list(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, Error> {
        let inner = self.lock();
        let mut sql = format!("{SELECT_ENTRY} WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(p) = &f.patient {
            sql.push_str(" AND patient = ?");
            args.push(p.clone().into());
        }
        if let Some(u) = &f.user {
            sql.push_str(" AND user = ?");
            args.push(u.clone().into());
        }
        if f.break_glass {
            sql.push_str(" AND break_glass = 1");
        }
        match f.newest {
            Some(n) => sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", n.min(1_000_000))),
            None => sql.push_str(" ORDER BY seq"),
        }
        let mut st = inner.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), read_entry)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut e, prev, hash) = row?;
            e.prev = prev.try_into().unwrap_or([0; 32]);
            e.hash = hash.try_into().unwrap_or([0; 32]);
            out.push(e);
        }
        if f.newest.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// The newest `limit` security events, newest first: refusals, failed logins, refused
    /// device trails, break-glass, and changes to accounts, keys, devices and policy — from this
    /// node's trail and (on a hub) the trails its devices pushed.
    pub fn security_events(&self, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        let inner = self.lock();
        let limit = limit.min(10_000);
        let mut out = Vec::new();
        for table in ["audit", "device_audit"] {
            let sql = format!(
                "{} FROM {table} WHERE {} ORDER BY rowid DESC LIMIT {limit}",
                ENTRY_COLUMNS,
                security_predicate()
            );
            out.extend(entries(&inner.conn, &sql, [])?);
        }
        out.sort_by_key(|e| std::cmp::Reverse((e.time, e.seq)));
        out.truncate(limit);
        Ok(out)
    }

    /// Where the security-event stream stands now: a cursor [`Store::security_events_after`]
    /// continues from (events before it are not returned).
    pub fn security_cursor(&self) -> Result<EventCursor, Error> {
        let inner = self.lock();
        let top = |t: &str| -> Result<i64, Error> {
            Ok(inner.conn.query_row(
                &format!("SELECT coalesce(max(rowid), 0) FROM {t}"),
                [],
                |r| r.get(0),
            )?)
        };
        Ok(EventCursor {
            audit: top("audit")?,
            device_audit: top("device_audit")?,
        })
    }

    /// The security events written after `cursor`, oldest first (at most 1,000), and the cursor
    /// to continue from. Reads only the rows added since (by row id), so polling it is cheap
    /// however long the trail.
    pub fn security_events_after(
        &self,
        cursor: EventCursor,
    ) -> Result<(Vec<AuditEntry>, EventCursor), Error> {
        const BATCH: usize = 1_000;
        let inner = self.lock();
        let mut out = Vec::new();
        let mut next = cursor;
        for (table, from) in [
            ("audit", &mut next.audit),
            ("device_audit", &mut next.device_audit),
        ] {
            let top: i64 = inner.conn.query_row(
                &format!("SELECT coalesce(max(rowid), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )?;
            let sql = format!(
                "{}, rowid FROM {table} WHERE rowid > ?1 AND rowid <= ?2 AND ({}) ORDER BY rowid LIMIT {BATCH}",
                ENTRY_COLUMNS,
                security_predicate()
            );
            let mut st = inner.conn.prepare(&sql)?;
            let mut last = *from;
            let mut n = 0;
            for row in st.query_map(rusqlite::params![*from, top], |r| {
                Ok((read_entry(r)?, r.get::<_, i64>(14)?))
            })? {
                let ((mut e, prev, hash), rowid) = row?;
                e.prev = prev.try_into().unwrap_or([0; 32]);
                e.hash = hash.try_into().unwrap_or([0; 32]);
                out.push(e);
                last = rowid;
                n += 1;
            }
            // A full batch continues after its last row; otherwise everything up to `top`
            // has been looked at.
            *from = if n == BATCH { last } else { top };
        }
        Ok((out, next))
    }

    /// Checks the whole chain and the signed head. Returns how many entries were checked, or
    /// the first problem.
    pub fn audit_verify(&self) -> Result<Result<u64, AuditProblem>, Error> {
        let inner = self.lock();
        let conn = &inner.conn;
        let public: Option<(String, Vec<u8>)> = conn
            .query_row(
                "SELECT device, public_key FROM identity WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let anchor: Option<(i64, Vec<u8>, Vec<u8>)> = conn
            .query_row(
                "SELECT seq, hash, signature FROM audit_anchor WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let verifying = public
            .as_ref()
            .and_then(|(_, p)| <[u8; 32]>::try_from(p.as_slice()).ok())
            .and_then(|p| VerifyingKey::from_bytes(&p).ok());
        let (mut expected_seq, mut prev) = match anchor {
            Some((s, h, sig)) => {
                let signed = verifying
                    .as_ref()
                    .zip(
                        <[u8; 64]>::try_from(sig.as_slice())
                            .ok()
                            .map(|b| Signature::from_bytes(&b)),
                    )
                    .is_some_and(|(k, sig)| k.verify(&anchor_message(s as u64, &h), &sig).is_ok());
                if !signed {
                    return Ok(Err(AuditProblem::BadSignature));
                }
                (s as u64 + 1, h.try_into().unwrap_or([0u8; 32]))
            }
            None => (1, [0u8; 32]),
        };
        let mut st = conn.prepare(&format!("{SELECT_ENTRY} ORDER BY seq"))?;
        let mut rows = st.query([])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let (e, stored_prev, stored_hash) = read_entry(row)?;
            if e.seq > expected_seq {
                return Ok(Err(AuditProblem::Missing { seq: expected_seq }));
            }
            if e.seq < expected_seq || stored_prev.as_slice() != prev.as_slice() {
                return Ok(Err(AuditProblem::BrokenLink { seq: e.seq }));
            }
            let h = entry_hash(&prev, e.seq, &e.id, &e.device, e.time, &e.event);
            if stored_hash.as_slice() != h.as_slice() || e.id != format!("{}:{}", e.device, e.seq) {
                return Ok(Err(AuditProblem::Modified { seq: e.seq }));
            }
            prev = h;
            expected_seq += 1;
            count += 1;
        }
        let head: Option<(i64, Vec<u8>, Vec<u8>)> = conn
            .query_row(
                "SELECT seq, hash, signature FROM audit_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match (head, public) {
            (None, _) if count == 0 => Ok(Ok(0)),
            (Some((seq, hash, sig)), Some((_, public))) => {
                if seq as u64 != expected_seq - 1 || hash.as_slice() != prev.as_slice() {
                    return Ok(Err(AuditProblem::HeadMismatch));
                }
                let ok = <[u8; 32]>::try_from(public.as_slice())
                    .ok()
                    .and_then(|p| VerifyingKey::from_bytes(&p).ok())
                    .zip(
                        <[u8; 64]>::try_from(sig.as_slice())
                            .ok()
                            .map(|s| Signature::from_bytes(&s)),
                    )
                    .is_some_and(|(k, s)| k.verify(&head_message(seq as u64, &prev), &s).is_ok());
                if ok {
                    Ok(Ok(count))
                } else {
                    Ok(Err(AuditProblem::BadSignature))
                }
            }
            _ => Ok(Err(AuditProblem::HeadMismatch)),
        }
    }
}
