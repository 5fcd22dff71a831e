//! The vault file's contents: each user's wrap of the data key, the PIN policy and the failed
//! attempt counters. It holds no secret in the clear; it is read before the database is opened,
//! which is why it lives beside the database and not inside it. Persisting it is the caller's
//! job (atomically); this module is pure and takes the time as an argument.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{Dek, DeviceSecret, Pin, random_bytes};
use crate::wrap::{KdfParams, Wrap, unwrap, wrap};
use crate::{Error, Role};

/// Rules for PINs and for failed attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinPolicy {
    /// Minimum length in characters (passphrases of any length above it are allowed).
    pub min_length: usize,
    /// Failed attempts allowed before delays start.
    pub free_attempts: u32,
    /// Consecutive failures after which the user is locked out until an admin resets the PIN.
    pub max_failures: u32,
    /// First delay in seconds once the free attempts are used; doubles with each failure.
    pub base_delay_secs: u64,
    /// Longest delay between attempts, in seconds.
    pub max_delay_secs: u64,
    /// Roles that must unlock with an authenticator code as well as the PIN.
    #[serde(default)]
    pub totp_roles: Vec<Role>,
}

impl Default for PinPolicy {
    fn default() -> Self {
        PinPolicy {
            min_length: 6,
            free_attempts: 3,
            max_failures: 10,
            base_delay_secs: 2,
            max_delay_secs: 15 * 60,
            totp_roles: Vec::new(),
        }
    }
}

/// The wait between attempts, once the failures are used up, for a user nobody else can reset
/// (the only administrator): an hour, so a lost race with typos never locks a hub for good and
/// a guesser gets 24 tries a day.
pub const LONE_USER_DELAY_SECS: u64 = 3600;

/// Longest PIN or passphrase accepted, in characters.
pub const MAX_PIN_CHARS: usize = 1024;

impl PinPolicy {
    /// Checks a new PIN against the policy.
    pub fn check(&self, pin: &Pin) -> Result<(), Error> {
        let n = pin.char_len();
        if n < self.min_length {
            return Err(Error::PinTooShort {
                min: self.min_length,
            });
        }
        if n > MAX_PIN_CHARS {
            return Err(Error::PinTooLong { max: MAX_PIN_CHARS });
        }
        Ok(())
    }

    /// Checks the policy itself is sane.
    pub fn validate(&self) -> Result<(), Error> {
        if self.min_length < 4 || self.max_failures == 0 || self.free_attempts >= self.max_failures
        {
            return Err(Error::BadPolicy);
        }
        Ok(())
    }

    /// Seconds to wait after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> u64 {
        if failures < self.free_attempts {
            return 0;
        }
        let exp = (failures - self.free_attempts).min(30);
        self.base_delay_secs
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_secs)
    }
}

/// One user of this device's vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    /// The user's role.
    pub role: Role,
    /// The wrap of the data key; `None` after a full re-key until an admin sets a new PIN.
    pub wrap: Option<Wrap>,
    /// Consecutive failed unlock attempts (kept across restarts).
    pub failed_attempts: u32,
    /// Unix time of the last failed attempt.
    pub last_failure: Option<u64>,
    /// The authenticator secret, sealed under a key derived from the data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Sealed>,
}

/// A small secret sealed with AES-256-GCM under a key derived from the data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Nonce (hex).
    pub nonce: String,
    /// Ciphertext and tag (hex).
    pub ciphertext: String,
}

/// Why an unlock attempt may not even be tried now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Open,
    /// Wait this many seconds first.
    Wait(u64),
}

/// The whole vault file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultFile {
    /// Format version of this file.
    pub format: u32,
    /// Random id of this vault; part of every wrap's associated data.
    pub vault_id: String,
    /// Increases with every full re-key of the database.
    pub key_epoch: u32,
    /// PIN and attempt rules.
    pub policy: PinPolicy,
    /// Users by name.
    pub users: BTreeMap<String, UserEntry>,
}

const FORMAT: u32 = 1;

/// Checks a user name: 1–64 characters of lowercase letters, digits, `.`, `_`, `-`, `@`.
pub fn validate_user_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'@')
        });
    if ok { Ok(()) } else { Err(Error::BadUserName) }
}

impl VaultFile {
    /// A new vault with its first (admin) user; returns the vault and the new data key.
    pub fn create(
        admin: &str,
        pin: &Pin,
        kdf: &KdfParams,
        policy: PinPolicy,
        device: &DeviceSecret,
    ) -> Result<(VaultFile, Dek), Error> {
        policy.validate()?;
        validate_user_name(admin)?;
        policy.check(pin)?;
        let id: [u8; 16] = random_bytes()?;
        let mut vf = VaultFile {
            format: FORMAT,
            vault_id: hex::encode(id),
            key_epoch: 1,
            policy,
            users: BTreeMap::new(),
        };
        let dek = Dek::generate()?;
        let w = wrap(&dek, pin, kdf, device, &vf.context(admin))?;
        vf.users.insert(
            admin.to_owned(),
            UserEntry {
                role: Role::Admin,
                wrap: Some(w),
                failed_attempts: 0,
                last_failure: None,
                totp: None,
            },
        );
        Ok((vf, dek))
    }

    /// Parses the stored form.
    pub fn from_json(bytes: &[u8]) -> Result<VaultFile, Error> {
        let vf: VaultFile =
            serde_json::from_slice(bytes).map_err(|_| Error::Corrupt("vault file is not valid"))?;
        if vf.format != FORMAT {
            return Err(Error::Corrupt("vault file has an unknown format version"));
        }
        Ok(vf)
    }

    /// The stored form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    fn context(&self, user: &str) -> Vec<u8> {
        format!("{}/{}/{}", self.vault_id, user, self.key_epoch).into_bytes()
    }

    fn user(&self, name: &str) -> Result<&UserEntry, Error> {
        self.users.get(name).ok_or(Error::WrongCredentials)
    }

    /// Whether `user` may attempt an unlock at `now` (Unix seconds).
    pub fn gate(&self, user: &str, now: u64) -> Result<Gate, Error> {
        let Some(entry) = self.users.get(user) else {
            // Unknown users get the same answer as a wrong PIN, after the attempt.
            return Ok(Gate::Open);
        };
        if entry.wrap.is_none() {
            return Err(Error::ResetRequired);
        }
        if entry.failed_attempts >= self.policy.max_failures {
            if self.another_admin_can_reset(user) {
                return Err(Error::LockedOut);
            }
            // Nobody else could set a new PIN (a hub's vault, a one-user device): a lock would
            // be for good, so the user waits instead, long enough that guessing stays hopeless.
            let since = entry
                .last_failure
                .map_or(u64::MAX, |t| now.saturating_sub(t));
            if since < LONE_USER_DELAY_SECS {
                return Ok(Gate::Wait(LONE_USER_DELAY_SECS - since));
            }
            return Ok(Gate::Open);
        }
        let delay = self.policy.delay_after(entry.failed_attempts);
        let since = entry
            .last_failure
            .map_or(u64::MAX, |t| now.saturating_sub(t));
        // A clock that went backwards counts as no time passed.
        if delay > 0 && since < delay {
            return Ok(Gate::Wait(delay - since));
        }
        Ok(Gate::Open)
    }

    /// Whether an administrator other than `user` could set `user` a new PIN.
    fn another_admin_can_reset(&self, user: &str) -> bool {
        self.users
            .iter()
            .any(|(name, e)| name != user && e.role.is_admin() && e.wrap.is_some())
    }

    /// Counts an attempt as failed before it is tried, so killing the process mid-attempt does
    /// not avoid the counter. [`VaultFile::note_success`] clears it.
    pub fn note_attempt(&mut self, user: &str, now: u64) {
        if let Some(e) = self.users.get_mut(user) {
            e.failed_attempts = e.failed_attempts.saturating_add(1);
            e.last_failure = Some(now);
        }
    }

    /// Clears the failure counter after a successful unlock.
    pub fn note_success(&mut self, user: &str) {
        if let Some(e) = self.users.get_mut(user) {
            e.failed_attempts = 0;
            e.last_failure = None;
        }
    }

    /// Attempts left before lockout.
    pub fn attempts_left(&self, user: &str) -> u32 {
        self.users.get(user).map_or(0, |e| {
            self.policy.max_failures.saturating_sub(e.failed_attempts)
        })
    }

    /// Opens the data key with a user's PIN. Does not touch the counters.
    pub fn open(&self, user: &str, pin: &Pin, device: &DeviceSecret) -> Result<Dek, Error> {
        let Some(entry) = self.users.get(user) else {
            // An unknown name costs the same key derivation as a wrong PIN, so timing does
            // not tell which names exist (issue 16): try the PIN against another user's wrap
            // under this name's context, which cannot authenticate.
            if let Some(w) = self.users.values().find_map(|e| e.wrap.as_ref()) {
                let _ = unwrap(w, pin, device, &self.context(user));
            }
            return Err(Error::WrongCredentials);
        };
        let w = entry.wrap.as_ref().ok_or(Error::ResetRequired)?;
        unwrap(w, pin, device, &self.context(user)).map_err(|e| match e {
            Error::WrongPin => Error::WrongCredentials,
            other => other,
        })
    }

    /// The role of a user.
    pub fn role(&self, user: &str) -> Option<Role> {
        self.users.get(user).map(|e| e.role)
    }

    /// Adds a user with their own wrap of the data key.
    pub fn add_user(
        &mut self,
        dek: &Dek,
        name: &str,
        role: Role,
        pin: &Pin,
        kdf: &KdfParams,
        device: &DeviceSecret,
    ) -> Result<(), Error> {
        validate_user_name(name)?;
        if self.users.contains_key(name) {
            return Err(Error::UserExists);
        }
        self.policy.check(pin)?;
        let w = wrap(dek, pin, kdf, device, &self.context(name))?;
        self.users.insert(
            name.to_owned(),
            UserEntry {
                role,
                wrap: Some(w),
                failed_attempts: 0,
                last_failure: None,
                totp: None,
            },
        );
        Ok(())
    }

    /// Removes a user's wrap. The last admin cannot be removed.
    pub fn remove_user(&mut self, name: &str) -> Result<(), Error> {
        let entry = self.users.get(name).ok_or(Error::NoSuchUser)?;
        if entry.role.is_admin() && self.users.values().filter(|e| e.role.is_admin()).count() == 1 {
            return Err(Error::LastAdmin);
        }
        self.users.remove(name);
        Ok(())
    }

    /// Sets a new PIN for a user: re-wraps the same data key (fast; the database is untouched),
    /// clears the failure counter and any lockout.
    pub fn set_pin(
        &mut self,
        dek: &Dek,
        name: &str,
        pin: &Pin,
        kdf: &KdfParams,
        device: &DeviceSecret,
    ) -> Result<(), Error> {
        self.policy.check(pin)?;
        let ctx = self.context(name);
        let entry = self.users.get_mut(name).ok_or(Error::NoSuchUser)?;
        entry.wrap = Some(wrap(dek, pin, kdf, device, &ctx)?);
        entry.failed_attempts = 0;
        entry.last_failure = None;
        Ok(())
    }

    /// Whether unlocking as `user` needs an authenticator code.
    pub fn totp_required(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.totp.is_some() || self.policy.totp_roles.contains(&u.role))
    }

    /// Enrolls (or re-enrolls) a user's authenticator: a new random secret, sealed under the
    /// data key. Returns the secret to show once (as base32) to the user's authenticator app.
    pub fn enroll_totp(
        &mut self,
        dek: &Dek,
        user: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let secret = zeroize::Zeroizing::new(random_bytes::<20>()?.to_vec());
        let sealed = crate::wrap::seal(dek, &format!("totp/{}/{user}", self.vault_id), &secret)?;
        self.users.get_mut(user).ok_or(Error::NoSuchUser)?.totp = Some(sealed);
        Ok(secret)
    }

    /// Checks the second factor after the PIN opened the data key.
    pub fn check_totp(
        &self,
        dek: &Dek,
        user: &str,
        code: Option<&str>,
        now: i64,
    ) -> Result<(), Error> {
        if !self.totp_required(user) {
            return Ok(());
        }
        let entry = self.user(user)?;
        let sealed = entry.totp.as_ref().ok_or(Error::SecondFactorNotEnrolled)?;
        let secret =
            crate::wrap::open_sealed(dek, &format!("totp/{}/{user}", self.vault_id), sealed)?;
        match code {
            Some(c) if crate::totp::verify(&secret, c, now) => Ok(()),
            // The same answer as a wrong PIN: a wrong code must not confirm the PIN was right.
            _ => Err(Error::WrongCredentials),
        }
    }

    /// Records a full re-key: a new epoch, a fresh wrap of the new key for the admin doing it,
    /// and every other user's wrap dropped (their PINs may be what was compromised) until an
    /// admin sets them a new PIN.
    pub fn rekeyed(
        &self,
        old_dek: &Dek,
        new_dek: &Dek,
        actor: &str,
        pin: &Pin,
        device: &DeviceSecret,
    ) -> Result<VaultFile, Error> {
        let mut next = self.clone();
        next.key_epoch += 1;
        let kdf = self
            .user(actor)?
            .wrap
            .as_ref()
            .map(|w| w.kdf)
            .unwrap_or_default();
        let ctx = next.context(actor);
        let vault_id = next.vault_id.clone();
        for (name, entry) in next.users.iter_mut() {
            // Authenticator secrets move to the new key; they were not what leaked.
            if let Some(sealed) = &entry.totp {
                let label = format!("totp/{vault_id}/{name}");
                let secret = crate::wrap::open_sealed(old_dek, &label, sealed)?;
                entry.totp = Some(crate::wrap::seal(new_dek, &label, &secret)?);
            }
            entry.wrap = None;
            if name == actor {
                entry.wrap = Some(wrap(new_dek, pin, &kdf, device, &ctx)?);
                entry.failed_attempts = 0;
                entry.last_failure = None;
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn setup() -> (VaultFile, Dek, DeviceSecret) {
        let dev = DeviceSecret::generate().unwrap();
        let (vf, dek) = VaultFile::create(
            "admin",
            &Pin::from("123456"),
            &fast(),
            PinPolicy::default(),
            &dev,
        )
        .unwrap();
        (vf, dek, dev)
    }

    #[test]
    fn the_only_administrator_waits_instead_of_being_locked_out_for_good() {
        let (mut vf, dek, dev) = setup();
        let max = vf.policy.max_failures;
        for i in 0..max {
            vf.note_attempt("admin", 1_000 + u64::from(i));
        }
        let last = 1_000 + u64::from(max) - 1;
        assert_eq!(
            vf.gate("admin", last + 10).unwrap(),
            Gate::Wait(LONE_USER_DELAY_SECS - 10)
        );
        assert_eq!(
            vf.gate("admin", last + LONE_USER_DELAY_SECS).unwrap(),
            Gate::Open
        );
        // The right passphrase still opens it after the wait.
        assert!(vf.open("admin", &Pin::from("123456"), &dev).is_ok());
        // With a second administrator who could reset it, the lockout stands.
        vf.add_user(
            &dek,
            "admin2",
            Role::Admin,
            &Pin::from("second-admin"),
            &fast(),
            &dev,
        )
        .unwrap();
        assert!(matches!(
            vf.gate("admin", last + LONE_USER_DELAY_SECS),
            Err(Error::LockedOut)
        ));
    }

    #[test]
    fn users_have_their_own_wraps_of_one_key() {
        let (mut vf, dek, dev) = setup();
        vf.add_user(
            &dek,
            "nurse.kim",
            Role::Nurse,
            &Pin::from("kim-secret"),
            &fast(),
            &dev,
        )
        .unwrap();
        let a = vf.open("admin", &Pin::from("123456"), &dev).unwrap();
        let b = vf
            .open("nurse.kim", &Pin::from("kim-secret"), &dev)
            .unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert!(matches!(
            vf.open("nurse.kim", &Pin::from("123456"), &dev),
            Err(Error::WrongCredentials)
        ));
        assert!(matches!(
            vf.open("nobody", &Pin::from("123456"), &dev),
            Err(Error::WrongCredentials)
        ));
        let back = VaultFile::from_json(&vf.to_json()).unwrap();
        assert_eq!(back, vf);
    }

    #[test]
    fn pin_policy_is_enforced() {
        let (mut vf, dek, dev) = setup();
        assert!(matches!(
            vf.add_user(&dek, "x", Role::Nurse, &Pin::from("12345"), &fast(), &dev),
            Err(Error::PinTooShort { min: 6 })
        ));
        assert!(matches!(
            vf.add_user(
                &dek,
                "Bad Name",
                Role::Nurse,
                &Pin::from("123456"),
                &fast(),
                &dev
            ),
            Err(Error::BadUserName)
        ));
        vf.add_user(
            &dek,
            "x",
            Role::Nurse,
            &Pin::from("a long passphrase with spaces"),
            &fast(),
            &dev,
        )
        .unwrap();
    }

    #[test]
    fn delays_grow_then_lock_out() {
        let (mut vf, dek, dev) = setup();
        // Another administrator could set a new PIN, so the lockout applies.
        vf.add_user(
            &dek,
            "admin2",
            Role::Admin,
            &Pin::from("second-admin"),
            &fast(),
            &dev,
        )
        .unwrap();
        let p = vf.policy.clone();
        let mut now = 1_000;
        for i in 0..p.max_failures {
            // Wait exactly as long as the gate asks, then fail again.
            if let Gate::Wait(s) = vf.gate("admin", now).unwrap() {
                assert_eq!(s, p.delay_after(i));
                assert!(i >= p.free_attempts);
                now += s;
            } else {
                assert!(i < p.free_attempts, "attempt {i} should be delayed");
            }
            assert_eq!(vf.gate("admin", now).unwrap(), Gate::Open);
            vf.note_attempt("admin", now);
        }
        assert!(matches!(
            vf.gate("admin", now + 1_000_000),
            Err(Error::LockedOut)
        ));
        assert_eq!(p.delay_after(3), 2);
        assert_eq!(p.delay_after(4), 4);
        assert_eq!(p.delay_after(40), p.max_delay_secs);
    }

    #[test]
    fn success_clears_counter_and_set_pin_unlocks() {
        let (mut vf, dek, dev) = setup();
        vf.add_user(
            &dek,
            "admin2",
            Role::Admin,
            &Pin::from("second-admin"),
            &fast(),
            &dev,
        )
        .unwrap();
        for _ in 0..vf.policy.max_failures {
            vf.note_attempt("admin", 5);
        }
        assert!(matches!(vf.gate("admin", 10_000), Err(Error::LockedOut)));
        vf.set_pin(&dek, "admin", &Pin::from("654321"), &fast(), &dev)
            .unwrap();
        assert_eq!(vf.gate("admin", 10_000).unwrap(), Gate::Open);
        assert!(vf.open("admin", &Pin::from("654321"), &dev).is_ok());
        vf.note_attempt("admin", 5);
        vf.note_success("admin");
        assert_eq!(vf.attempts_left("admin"), vf.policy.max_failures);
    }

    #[test]
    fn last_admin_stays() {
        let (mut vf, dek, dev) = setup();
        assert!(matches!(vf.remove_user("admin"), Err(Error::LastAdmin)));
        vf.add_user(
            &dek,
            "admin2",
            Role::Admin,
            &Pin::from("999999"),
            &fast(),
            &dev,
        )
        .unwrap();
        vf.remove_user("admin").unwrap();
        assert!(matches!(vf.remove_user("nope"), Err(Error::NoSuchUser)));
    }

    #[test]
    fn authenticator_enrolment_and_check_survive_a_rekey() {
        let (mut vf, dek, dev) = setup();
        assert!(!vf.totp_required("admin"));
        vf.check_totp(&dek, "admin", None, 0).unwrap();
        vf.add_user(
            &dek,
            "kim",
            Role::Clinician,
            &Pin::from("kim-pin-1"),
            &fast(),
            &dev,
        )
        .unwrap();
        vf.policy.totp_roles.push(Role::Clinician);
        assert!(matches!(
            vf.check_totp(&dek, "kim", Some("123456"), 0),
            Err(Error::SecondFactorNotEnrolled)
        ));
        let secret = vf.enroll_totp(&dek, "kim").unwrap();
        let now = 1_900_000_000;
        let code = crate::totp::code_at(&secret, now, crate::totp::DIGITS);
        vf.check_totp(&dek, "kim", Some(&code), now).unwrap();
        assert!(matches!(
            vf.check_totp(&dek, "kim", Some("000000"), now),
            Err(Error::WrongCredentials)
        ));
        assert!(matches!(
            vf.check_totp(&dek, "kim", None, now),
            Err(Error::WrongCredentials)
        ));
        // The sealed secret is not in the file in the clear.
        let json = String::from_utf8(vf.to_json()).unwrap();
        assert!(!json.contains(&hex::encode(&*secret)));
        let new = Dek::generate().unwrap();
        let next = vf
            .rekeyed(&dek, &new, "admin", &Pin::from("123456"), &dev)
            .unwrap();
        next.check_totp(&new, "kim", Some(&code), now).unwrap();
    }

    #[test]
    fn rekey_drops_other_wraps() {
        let (mut vf, dek, dev) = setup();
        vf.add_user(
            &dek,
            "bob",
            Role::Clinician,
            &Pin::from("bob-pin-1"),
            &fast(),
            &dev,
        )
        .unwrap();
        let new = Dek::generate().unwrap();
        let next = vf
            .rekeyed(&dek, &new, "admin", &Pin::from("123456"), &dev)
            .unwrap();
        assert_eq!(next.key_epoch, 2);
        assert_eq!(
            next.open("admin", &Pin::from("123456"), &dev)
                .unwrap()
                .as_bytes(),
            new.as_bytes()
        );
        assert!(matches!(
            next.open("bob", &Pin::from("bob-pin-1"), &dev),
            Err(Error::ResetRequired)
        ));
        assert!(matches!(next.gate("bob", 0), Err(Error::ResetRequired)));
        // The old wrap does not open under the new epoch either.
        assert!(vf.open("admin", &Pin::from("123456"), &dev).is_ok());
    }
}
