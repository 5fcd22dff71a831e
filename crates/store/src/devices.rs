//! What a hub knows about the devices paired with it — their channel and audit keys, last
//! contact, revocation, and the audit entries they pushed — and what a device keeps about
//! itself (its own secrets by name).
//!
//! Audit entries pushed by a device are verified before they are stored: each entry's hash is
//! recomputed, each links to the one before, the first links to the head the hub witnessed
//! last, and the device's signature covers the new head. A device whose chain is behind the
//! witnessed head (restored from an old copy) or diverges from it (a fork) is refused with
//! [`Error::AuditChain`], and the refusal itself is recorded in the hub's own chain.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::audit::{AuditEntry, AuditEvent, append, entry_hash, head_message};
use crate::store::Store;

/// Records that the hub refused `device`'s audit trail (`why`) and suspends the device, in the
/// caller's transaction.
fn suspend(tx: &rusqlite::Connection, device: &str, why: &str) -> Result<(), Error> {
    append(
        tx,
        &[AuditEvent {
            user: "system".into(),
            role: "hub".into(),
            action: "audit_refused".into(),
            outcome: "failure".into(),
            resource: Some(format!("Device/{device}")),
            detail: Some(why.to_owned()),
            ..AuditEvent::default()
        }],
    )?;
    tx.execute(
        "UPDATE devices SET audit_refused_at = ?2 WHERE id = ?1 AND audit_refused_at IS NULL",
        params![device, crate::store::now_secs()],
    )?;
    Ok(())
}

/// A device paired with this hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its id (the device's identity id).
    pub id: String,
    /// A name for people ("front desk tablet").
    pub name: String,
    /// Its X25519 channel key (public).
    pub channel_key: [u8; 32],
    /// Its Ed25519 audit signing key (public).
    pub audit_key: [u8; 32],
    /// When it was paired (unix seconds).
    pub paired_at: i64,
    /// Its last successful handshake.
    pub last_contact: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// The last audit sequence number the hub witnessed from it.
    pub audit_seq: u64,
    /// When the hub refused its audit trail (restored from an old copy, a broken chain): it is
    /// suspended from then on, until an administrator pairs it again as a new device.
    pub audit_refused_at: Option<i64>,
}

/// A device's signed audit chain head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// Sequence number of the last entry.
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// The device's Ed25519 signature over it.
    pub signature: [u8; 64],
}

/// Why a pushed audit chain was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainProblem {
    /// The device's chain ends before the head the hub witnessed: it was rolled back.
    Rollback {
        /// The device's head.
        device_seq: u64,
        /// What the hub witnessed.
        witnessed_seq: u64,
    },
    /// The device's chain does not continue from the witnessed head (history rewritten).
    Fork {
        /// The first entry that does not link.
        seq: u64,
    },
    /// Entries are missing between the witnessed head and the pushed ones.
    Gap {
        /// The first missing sequence number.
        seq: u64,
    },
    /// An entry's content does not match its hash.
    Modified {
        /// The entry.
        seq: u64,
    },
    /// The head is not signed by the device's registered key, or does not match the entries.
    BadSignature,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::Rollback {
                device_seq,
                witnessed_seq,
            } => write!(
                f,
                "this device's audit chain ends at entry {device_seq}, but the hub already witnessed entry {witnessed_seq}: the device was restored from an old copy or rolled back"
            ),
            ChainProblem::Fork { seq } => write!(
                f,
                "this device's audit entry {seq} does not continue the chain the hub witnessed (a fork: history was rewritten)"
            ),
            ChainProblem::Gap { seq } => {
                write!(f, "audit entries from {seq} on are missing from the push")
            }
            ChainProblem::Modified { seq } => {
                write!(f, "audit entry {seq} does not match its hash (modified)")
            }
            ChainProblem::BadSignature => {
                write!(
                    f,
                    "the audit chain head is not signed by this device's registered key"
                )
            }
        }
    }
}

/// What a successful push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Witnessed {
    /// Entries stored.
    pub stored: u64,
    /// The head now witnessed.
    pub seq: u64,
}

fn key32(b: Vec<u8>) -> Result<[u8; 32], Error> {
    b.try_into()
        .map_err(|_| Error::Corrupt("a stored device key has the wrong length".into()))
}

fn read_device(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Device, Vec<u8>, Vec<u8>)> {
    let seq: i64 = r.get(7)?;
    Ok((
        Device {
            id: r.get(0)?,
            name: r.get(1)?,
            channel_key: [0; 32],
            audit_key: [0; 32],
            paired_at: r.get(4)?,
            last_contact: r.get(5)?,
            revoked_at: r.get(6)?,
            audit_seq: seq as u64,
            audit_refused_at: r.get(8)?,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

const SELECT_DEVICE: &str = "SELECT id, name, channel_key, audit_key, paired_at, last_contact, revoked_at, audit_seq, audit_refused_at FROM devices";

fn finish(row: (Device, Vec<u8>, Vec<u8>)) -> Result<Device, Error> {
    let (mut d, ck, ak) = row;
    d.channel_key = key32(ck)?;
    d.audit_key = key32(ak)?;
    Ok(d)
}

fn token_hash(token: &[u8]) -> Vec<u8> {
    Sha256::digest(token).to_vec()
}

impl Store {
    /// Records a one-time pairing offer (only the token's hash is kept).
    pub fn put_pairing_offer(&self, token: &[u8], expires: i64, by: &str) -> Result<(), Error> {
        let inner = self.lock();
        inner.conn.execute(
            "INSERT INTO pairing_offers (token_hash, expires, created_by) VALUES (?1, ?2, ?3)",
            params![token_hash(token), expires, by],
        )?;
        Ok(())
    }

    /// Pairs a device with an offer's token: the token must exist, be unused and unexpired; it
    /// is used up in the same transaction that registers the device. A known device id is
    /// never re-paired with other keys, and a revoked one stays revoked (see below).
    pub fn pair_device(&self, token: &[u8], device: &Device, now: i64) -> Result<(), Error> {
        let mut inner = self.lock();
        let tx = inner
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let offer: Option<(i64, Option<String>)> = tx
            .query_row(
                "SELECT expires, used_by FROM pairing_offers WHERE token_hash = ?1",
                [token_hash(token)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match offer {
            None => {
                return Err(Error::BadRequest(
                    "this pairing offer is not known to the hub".into(),
                ));
            }
            Some((_, Some(_))) => {
                return Err(Error::BadRequest(
                    "this pairing offer was already used; ask for a new one".into(),
                ));
            }
            Some((exp, None)) if exp <= now => {
                return Err(Error::BadRequest(
                    "this pairing offer has expired; ask for a new one".into(),
                ));
            }
            Some(_) => {}
        }
        // A device id is paired once. Pairing under a known id — even a revoked one — would
        // replace the real device's keys, lock it out, and hand its witnessed audit position to
        // the newcomer; a revoked device stays revoked (issue 16). A new identity (a new device
        // folder) pairs as a new device.
        let known: Option<(Vec<u8>, Vec<u8>, Option<i64>)> = tx
            .query_row(
                "SELECT channel_key, audit_key, revoked_at FROM devices WHERE id = ?1",
                [&device.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let again = match known {
            None => false,
            Some((_, _, Some(_))) => {
                return Err(Error::BadRequest(format!(
                    "device {} was revoked on this hub and stays revoked; set up a new device folder (hearth init) to pair again",
                    device.id
                )));
            }
            // The same device asking again (its answer was lost): nothing changes.
            Some((ch, au, None)) if ch == device.channel_key && au == device.audit_key => true,
            Some(_) => {
                return Err(Error::BadRequest(format!(
                    "a device with the id {} is already paired with this hub under other keys; a device id is never paired twice",
                    device.id
                )));
            }
        };
        tx.execute(
            "UPDATE pairing_offers SET used_by = ?2 WHERE token_hash = ?1",
            params![token_hash(token), device.id],
        )?;
        if again {
            tx.commit()?;
            return Ok(());
        }
        tx.execute(
            "INSERT INTO devices (id, name, channel_key, audit_key, paired_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                device.id,
                device.name,
                &device.channel_key[..],
                &device.audit_key[..],
                now
            ],
        )?;
        append(
            &tx,
            &[AuditEvent {
                user: "system".into(),
                role: "hub".into(),
                action: "device_paired".into(),
                outcome: "success".into(),
                patient: None,
                resource: Some(format!("Device/{}", device.id)),
                detail: None,
                break_glass: false,
            }],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A paired device.
    pub fn get_device(&self, id: &str) -> Result<Option<Device>, Error> {
        let inner = self.lock();
        let row = inner
            .conn
            .prepare_cached(&format!("{SELECT_DEVICE} WHERE id = ?1"))?
            .query_row([id], read_device)
            .optional()?;
        row.map(finish).transpose()
    }

    /// Every paired device, by id.
    pub fn list_devices(&self) -> Result<Vec<Device>, Error> {
        let inner = self.lock();
        let mut st = inner
            .conn
            .prepare_cached(&format!("{SELECT_DEVICE} ORDER BY id"))?;
        let rows = st.query_map([], read_device)?;
        rows.map(|r| finish(r?)).collect()
    }

    /// Revokes a device: its next handshake is refused. `false` if there is no such device.
    pub fn revoke_device(&self, id: &str, by: &str, now: i64) -> Result<bool, Error> {
        let mut inner = self.lock();
        let tx = inner
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        if n > 0 {
            append(
                &tx,
                &[AuditEvent {
                    user: by.to_owned(),
                    role: crate::Role::Admin.to_string(),
                    action: "device_revoked".into(),
                    outcome: "success".into(),
                    patient: None,
                    resource: Some(format!("Device/{id}")),
                    detail: None,
                    break_glass: false,
                }],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Notes a device's successful contact.
    pub fn touch_device(&self, id: &str, now: i64) -> Result<(), Error> {
        let inner = self.lock();
        inner.conn.execute(
            "UPDATE devices SET last_contact = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// Verifies and stores audit entries pushed by a paired device (see the module doc).
    /// `entries` are the device's entries after the witnessed head, in order; `head` is the
    /// device's signed head. A refusal is recorded in the hub's chain and returned as
    /// [`Error::AuditChain`].
    pub fn witness_device_audit(
        &self,
        device: &str,
        entries: &[AuditEntry],
        head: &SignedHead,
    ) -> Result<Witnessed, Error> {
        let mut inner = self.lock();
        let tx = inner
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(Vec<u8>, i64, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT audit_key, audit_seq, audit_hash FROM devices WHERE id = ?1",
                [device],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((key, witnessed_seq, witnessed_hash)) = row else {
            return Err(Error::NotFound("device"));
        };
        let key = key32(key)?;
        let witnessed_seq = witnessed_seq as u64;
        let witnessed_hash: [u8; 32] = match witnessed_hash {
            Some(h) => key32(h)?,
            None => [0; 32],
        };
        let problem = check_chain(&key, witnessed_seq, &witnessed_hash, entries, head, device);
        if let Err(problem) = problem {
            suspend(&tx, device, &problem.to_string())?;
            tx.commit()?;
            return Err(Error::AuditChain(problem));
        }
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO device_audit (device, seq, entry_id, time, user, role, action, outcome,
                     patient, resource, detail, break_glass, prev, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for e in entries {
                ins.execute(params![
                    device,
                    e.seq as i64,
                    e.id,
                    e.time,
                    e.event.user,
                    e.event.role,
                    e.event.action,
                    e.event.outcome,
                    e.event.patient,
                    e.event.resource,
                    e.event.detail,
                    e.event.break_glass,
                    &e.prev[..],
                    &e.hash[..]
                ])?;
            }
        }
        if head.seq > witnessed_seq {
            tx.execute(
                "UPDATE devices SET audit_seq = ?2, audit_hash = ?3 WHERE id = ?1",
                params![device, head.seq as i64, &head.hash[..]],
            )?;
            append(
                &tx,
                &[AuditEvent {
                    user: "system".into(),
                    role: "hub".into(),
                    action: "audit_witnessed".into(),
                    outcome: "success".into(),
                    patient: None,
                    resource: Some(format!("Device/{device}")),
                    detail: Some(format!(
                        "entries {}..={} head {}",
                        witnessed_seq + 1,
                        head.seq,
                        hex::encode(head.hash)
                    )),
                    break_glass: false,
                }],
            )?;
        }
        tx.commit()?;
        Ok(Witnessed {
            stored: entries.len() as u64,
            seq: head.seq.max(witnessed_seq),
        })
    }

    /// Suspends a device whose audit position failed (an empty trail where the hub witnessed
    /// entries): recorded with `why`, refused from then on until it is paired again.
    pub fn suspend_device(&self, device: &str, why: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction()?;
        suspend(&tx, device, why)?;
        tx.commit()?;
        Ok(())
    }

    /// The audit entries devices pushed, about one patient or all, oldest first per device.
    pub fn device_audit_list(&self, patient: Option<&str>) -> Result<Vec<AuditEntry>, Error> {
        let inner = self.lock();
        let sql = "SELECT seq, entry_id, device, time, user, role, action, outcome, patient,
                resource, detail, break_glass, prev, hash FROM device_audit
             WHERE (?1 IS NULL OR patient = ?1) ORDER BY time, device, seq";
        let mut st = inner.conn.prepare(sql)?;
        let rows = st.query_map([patient], crate::audit::read_entry)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut e, prev, hash) = row?;
            e.prev = key32(prev)?;
            e.hash = key32(hash)?;
            out.push(e);
        }
        Ok(out)
    }

    /// Stores one of this node's own secrets (the file is encrypted; still, only keys and
    /// settings go here, never PHI).
    pub fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        let inner = self.lock();
        inner.conn.execute(
            "INSERT INTO node_secrets (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    /// Reads one of this node's own secrets.
    pub fn get_secret(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, Error> {
        let inner = self.lock();
        Ok(inner
            .conn
            .prepare_cached("SELECT value FROM node_secrets WHERE name = ?1")?
            .query_row([name], |r| r.get::<_, Vec<u8>>(0))
            .optional()?
            .map(zeroize::Zeroizing::new))
    }
}

fn check_chain(
    key: &[u8; 32],
    witnessed_seq: u64,
    witnessed_hash: &[u8; 32],
    entries: &[AuditEntry],
    head: &SignedHead,
    device: &str,
) -> Result<(), ChainProblem> {
    let verifying = VerifyingKey::from_bytes(key).map_err(|_| ChainProblem::BadSignature)?;
    verifying
        .verify(
            &head_message(head.seq, &head.hash),
            &Signature::from_bytes(&head.signature),
        )
        .map_err(|_| ChainProblem::BadSignature)?;
    if head.seq < witnessed_seq {
        return Err(ChainProblem::Rollback {
            device_seq: head.seq,
            witnessed_seq,
        });
    }
    if head.seq == witnessed_seq {
        if !entries.is_empty() {
            return Err(ChainProblem::Fork {
                seq: entries[0].seq,
            });
        }
        return if head.hash == *witnessed_hash {
            Ok(())
        } else {
            Err(ChainProblem::Fork { seq: head.seq })
        };
    }
    let mut seq = witnessed_seq;
    let mut prev = *witnessed_hash;
    for e in entries {
        if e.seq != seq + 1 {
            return Err(if e.seq > seq + 1 {
                ChainProblem::Gap { seq: seq + 1 }
            } else {
                ChainProblem::Fork { seq: e.seq }
            });
        }
        if e.device != device || e.id != format!("{device}:{}", e.seq) {
            return Err(ChainProblem::Modified { seq: e.seq });
        }
        if e.prev != prev {
            return Err(ChainProblem::Fork { seq: e.seq });
        }
        if entry_hash(&e.prev, e.seq, &e.id, &e.device, e.time, &e.event) != e.hash {
            return Err(ChainProblem::Modified { seq: e.seq });
        }
        seq = e.seq;
        prev = e.hash;
    }
    if seq != head.seq {
        return Err(ChainProblem::Gap { seq: seq + 1 });
    }
    if prev != head.hash {
        return Err(ChainProblem::BadSignature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, name: &str) -> Store {
        Store::open(&dir.join(name), &vault::Dek::generate().unwrap()).unwrap()
    }

    fn event(n: u32) -> AuditEvent {
        AuditEvent {
            user: "nurse1".into(),
            role: "nurse".into(),
            action: "read".into(),
            outcome: "success".into(),
            patient: Some(format!("Patient/p{n}")),
            resource: None,
            detail: None,
            break_glass: false,
        }
    }

    fn paired(hub: &Store, dev: &Store) -> String {
        let (id, key) = dev.device_identity().unwrap();
        hub.put_pairing_offer(b"tok", 100, "admin").unwrap();
        let d = Device {
            id: id.clone(),
            name: "tablet".into(),
            channel_key: [7; 32],
            audit_key: hex::decode(key).unwrap().try_into().unwrap(),
            paired_at: 0,
            last_contact: None,
            revoked_at: None,
            audit_seq: 0,
            audit_refused_at: None,
        };
        hub.pair_device(b"tok", &d, 50).unwrap();
        // A token works once.
        assert!(hub.pair_device(b"tok", &d, 50).is_err());
        id
    }

    #[test]
    fn offers_are_single_use_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (hub, dev) = (open(dir.path(), "h.db"), open(dir.path(), "d.db"));
        paired(&hub, &dev);
        hub.put_pairing_offer(b"old", 10, "admin").unwrap();
        let d = hub.list_devices().unwrap().remove(0);
        assert!(hub.pair_device(b"old", &d, 11).is_err());
        assert!(hub.pair_device(b"never", &d, 1).is_err());
        assert!(hub.revoke_device(&d.id, "admin", 60).unwrap());
        assert_eq!(hub.get_device(&d.id).unwrap().unwrap().revoked_at, Some(60));
    }

    #[test]
    fn a_device_id_is_paired_once_and_a_revoked_device_stays_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let (hub, dev) = (open(dir.path(), "h.db"), open(dir.path(), "d.db"));
        paired(&hub, &dev);
        let d = hub.list_devices().unwrap().remove(0);
        // The same device asking again changes nothing.
        hub.put_pairing_offer(b"again", 100, "admin").unwrap();
        hub.pair_device(b"again", &d, 60).unwrap();
        assert_eq!(
            hub.get_device(&d.id).unwrap().unwrap().paired_at,
            d.paired_at
        );
        // Someone else under the same id, with other keys: refused, the real keys stay.
        let mut taker = d.clone();
        taker.channel_key = [9; 32];
        hub.put_pairing_offer(b"take", 100, "admin").unwrap();
        let err = hub.pair_device(b"take", &taker, 60).unwrap_err();
        assert!(err.to_string().contains("never paired twice"), "{err}");
        assert_eq!(
            hub.get_device(&d.id).unwrap().unwrap().channel_key,
            d.channel_key
        );
        // Revoked stays revoked, whoever asks.
        assert!(hub.revoke_device(&d.id, "admin", 70).unwrap());
        for (tok, who) in [(&b"r1"[..], &d), (&b"r2"[..], &taker)] {
            hub.put_pairing_offer(tok, 100, "admin").unwrap();
            let err = hub.pair_device(tok, who, 80).unwrap_err();
            assert!(err.to_string().contains("stays revoked"), "{err}");
        }
        assert_eq!(hub.get_device(&d.id).unwrap().unwrap().revoked_at, Some(70));
    }

    #[test]
    fn pushes_are_verified_and_rollbacks_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (hub, dev) = (open(dir.path(), "h.db"), open(dir.path(), "d.db"));
        let id = paired(&hub, &dev);
        dev.audit_append(&[event(1), event(2)]).unwrap();
        let head = dev.audit_head().unwrap().unwrap();
        let w = hub
            .witness_device_audit(&id, &dev.audit_since(0).unwrap(), &head)
            .unwrap();
        assert_eq!((w.stored, w.seq), (2, 2));
        // Pushing the same head again is a no-op.
        assert_eq!(hub.witness_device_audit(&id, &[], &head).unwrap().stored, 0);
        // Save an old copy of the device, then move on.
        let old_head = head.clone();
        dev.audit_append(&[event(3)]).unwrap();
        let head = dev.audit_head().unwrap().unwrap();
        let since = dev.audit_since(2).unwrap();
        // A gap: entry 3 left out.
        assert!(matches!(
            hub.witness_device_audit(&id, &[], &head),
            Err(Error::AuditChain(ChainProblem::Gap { seq: 3 }))
        ));
        // A modified entry.
        let mut forged = since.clone();
        forged[0].event.patient = Some("Patient/other".into());
        assert!(matches!(
            hub.witness_device_audit(&id, &forged, &head),
            Err(Error::AuditChain(ChainProblem::Modified { seq: 3 }))
        ));
        // A head signed by someone else.
        let mut bad = head.clone();
        bad.signature[0] ^= 1;
        assert!(matches!(
            hub.witness_device_audit(&id, &since, &bad),
            Err(Error::AuditChain(ChainProblem::BadSignature))
        ));
        hub.witness_device_audit(&id, &since, &head).unwrap();
        // The device comes back from the old copy: behind the witnessed head.
        assert!(matches!(
            hub.witness_device_audit(&id, &[], &old_head),
            Err(Error::AuditChain(ChainProblem::Rollback {
                device_seq: 2,
                witnessed_seq: 3
            }))
        ));
        assert_eq!(hub.device_audit_list(Some("Patient/p3")).unwrap().len(), 1);
        // Refusals are in the hub's own chain.
        let refusals = hub
            .audit_list(&crate::AuditFilter::default())
            .unwrap()
            .into_iter()
            .filter(|e| e.event.action == "audit_refused")
            .count();
        assert_eq!(refusals, 4);
        assert!(hub.audit_verify().unwrap().is_ok());
    }

    #[test]
    fn secrets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), "s.db");
        assert!(s.get_secret("k").unwrap().is_none());
        s.put_secret("k", b"v1").unwrap();
        s.put_secret("k", b"v2").unwrap();
        assert_eq!(s.get_secret("k").unwrap().unwrap().as_slice(), b"v2");
    }
}
