//! Who may use the hub's CouchDB API: hub accounts with Argon2id-hashed passwords, presented
//! as HTTP Basic credentials or an `AuthSession` cookie from `POST /_session`. Anonymous
//! requests to data are refused (docs/adr/0012-hub-couchdb-api.md).
//!
//! Verifying Argon2id costs tens of milliseconds and memory by design, which a replicating
//! client sending Basic credentials on every request must not pay each time. A successful
//! check is remembered for [`CACHE_SECS`] as an HMAC of the password under a key that lives
//! only in this process; a cached answer is only ever a yes for exactly that password.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use store::Session;
use store::{Account, Store};
use zeroize::Zeroizing;

use crate::error::{CouchError, CouchResult};

/// How long a verified password is remembered.
pub const CACHE_SECS: u64 = 600;
/// How long an `AuthSession` cookie is valid (CouchDB's default `timeout`).
pub const SESSION_SECS: u64 = 600;
/// Consecutive failures for one account before it is refused for a while.
/// Failed logins of one account from one source before that source waits (configurable:
/// `login_free_attempts`).
pub const FREE_ATTEMPTS: u32 = 5;

/// The longest wait between attempts (configurable: `login_max_delay_secs`).
pub const MAX_DELAY_SECS: u64 = 300;

/// Argon2id parameters for hub account passwords (OWASP's first recommendation: 19 MiB, 2
/// passes, 1 lane). Kept in each hash, so they can be raised later.
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;

/// CouchDB's roles for `_session`: `_admin` for an administrator.
pub fn couch_roles(p: &Session) -> Vec<&'static str> {
    if p.is_admin() { vec!["_admin"] } else { vec![] }
}

fn argon(m: u32, t: u32) -> Result<Argon2<'static>, argon2::Error> {
    Ok(Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(m, t, 1, Some(32))?,
    ))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`).
pub fn hash_password(password: &str) -> CouchResult<String> {
    if password.chars().count() < 8 {
        return Err(CouchError::bad_request(
            "a hub account password needs at least 8 characters",
        ));
    }
    let salt = vault::random_bytes::<16>()
        .map_err(|_| CouchError::bad_request("the system random number generator failed"))?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon(M_COST, T_COST)
        .and_then(|a| a.hash_password_into(password.as_bytes(), &salt, out.as_mut()))
        .map_err(|_| CouchError::bad_request("the password could not be hashed"))?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST},t={T_COST},p=1${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out.as_ref())
    ))
}

/// Checks a password against a PHC string made by [`hash_password`].
pub fn verify_password(password: &str, phc: &str) -> bool {
    let parts: Vec<&str> = phc.split('$').collect();
    let [_, "argon2id", "v=19", params, salt, hash] = parts.as_slice() else {
        return false;
    };
    let mut m = 0;
    let mut t = 0;
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("m", v)) => m = v.parse().unwrap_or(0),
            Some(("t", v)) => t = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    let (Ok(salt), Ok(hash)) = (STANDARD_NO_PAD.decode(salt), STANDARD_NO_PAD.decode(hash)) else {
        return false;
    };
    let mut out = Zeroizing::new(vec![0u8; hash.len()]);
    let Ok(a) = argon(m, t) else {
        return false;
    };
    if a.hash_password_into(password.as_bytes(), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    ct_eq(&out, &hash)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A password hash with the accounts' parameters, for unknown names to be checked against.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("hearth-decoy-password").unwrap_or_default())
}

/// What a session cookie or RPC token is bound to: the account's name, role, admin flag and
/// password hash. Changing the password or the role, or removing the account, changes (or
/// removes) the stamp, which ends every cookie and token issued before, at once.
pub fn credential_stamp(account: &Account) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    for part in [
        account.name.as_bytes(),
        account.role.as_str().as_bytes(),
        &[u8::from(account.admin)],
        account.password_hash.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize()[..16])
}

/// Verifies credentials and issues and checks session cookies.
pub struct Auth {
    key: Zeroizing<[u8; 32]>,
    cache: Mutex<HashMap<String, ([u8; 32], Instant)>>,
    /// Failed logins per account and source (`name`, `source`): a stranger's guesses slow
    /// the stranger, not the owner signing in from elsewhere.
    failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
    /// One verification at a time per account: when many clients of one account connect at
    /// once, one pays for Argon2id and the others find the result remembered.
    inflight: Mutex<HashMap<String, std::sync::Arc<Mutex<()>>>>,
    /// Failures allowed per account and source before the back-off.
    free_attempts: std::sync::atomic::AtomicU32,
    /// The back-off's ceiling, in seconds.
    max_delay_secs: std::sync::atomic::AtomicU64,
    /// Logins refused for wrong credentials (each also an audit entry), since start.
    pub failed_logins: std::sync::atomic::AtomicU64,
    /// Login attempts answered 429 (waiting out the back-off), since start.
    pub throttled_logins: std::sync::atomic::AtomicU64,
}

impl Auth {
    /// A fresh authenticator with a random per-process key.
    pub fn new() -> Result<Auth, vault::Error> {
        Ok(Auth {
            key: Zeroizing::new(vault::random_bytes::<32>()?),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            free_attempts: std::sync::atomic::AtomicU32::new(FREE_ATTEMPTS),
            max_delay_secs: std::sync::atomic::AtomicU64::new(MAX_DELAY_SECS),
            failed_logins: std::sync::atomic::AtomicU64::new(0),
            throttled_logins: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Sets the back-off: `free_attempts` failures per account and source, then waits doubling
    /// from 1 s up to `max_delay_secs` (hub.toml `login_free_attempts`, `login_max_delay_secs`).
    pub fn set_limits(&self, free_attempts: u32, max_delay_secs: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.free_attempts.store(free_attempts.max(1), Relaxed);
        self.max_delay_secs.store(max_delay_secs.max(1), Relaxed);
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Checks a name and password (blocking: Argon2id) coming from `source` (the peer's
    /// address, or `device:{id}` over RPC). Wrong credentials and unknown names get the same
    /// answer; repeated failures make that source wait for that account.
    pub fn login(
        &self,
        store: &Store,
        name: &str,
        password: &str,
        source: &str,
    ) -> CouchResult<Session> {
        self.login_account(store, name, password, source)
            .map(|a| Session::account(&a, None))
    }

    /// [`Auth::login`], answering with the account itself (for the caller that binds a cookie
    /// or token to its [`credential_stamp`] without reading it again).
    pub fn login_account(
        &self,
        store: &Store,
        name: &str,
        password: &str,
        source: &str,
    ) -> CouchResult<Account> {
        let key = (name.to_owned(), source.to_owned());
        // One attempt at a time per account, and the back-off is checked inside the turn:
        // parallel guesses each wait for the one before to be counted, so they cannot all
        // slip past the check made before the first failure was recorded.
        let gate = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        let _turn = gate.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.throttled(&key) {
            self.throttled_logins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
        // Every refused login is an audit entry naming the account tried and the source, from
        // whichever door it came (CouchDB API, cookie login, RPC, administration screens).
        let wrong = || {
            self.failed_logins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = store.audit_append(&[store::AuditEvent {
                user: name.to_owned(),
                action: "login_failed".into(),
                outcome: "failure".into(),
                detail: Some(format!("hub login from {source}")),
                ..store::AuditEvent::default()
            }]);
            CouchError::unauthorized("Name or password is incorrect.")
        };
        let account: Option<Account> = store.get_account(name)?;
        let Some(account) = account else {
            // An unknown name costs the same Argon2id work as a wrong password, so timing does
            // not tell which accounts exist (issue 16).
            let _ = verify_password(password, decoy_hash());
            self.note_failure(&key);
            return Err(wrong());
        };
        // The remembered verification is bound to the stored hash too: a password changed by
        // another process (the CLI on the hub's folder) is not answered
        // from memory with the old one.
        let tag = self.mac(&[
            b"pw",
            name.as_bytes(),
            password.as_bytes(),
            account.password_hash.as_bytes(),
        ]);
        let is_cached = || {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(name).is_some_and(|(t, at)| {
                ct_eq(t, &tag) && at.elapsed() < Duration::from_secs(CACHE_SECS)
            })
        };
        if !is_cached() {
            if !verify_password(password, &account.password_hash) {
                self.note_failure(&key);
                return Err(wrong());
            }
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_owned(), (tag, Instant::now()));
        }
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(account)
    }

    /// 429 while this source is in its back-off window for this account.
    fn throttled(&self, key: &(String, String)) -> CouchResult<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let (free, max) = (
            self.free_attempts.load(Relaxed),
            self.max_delay_secs.load(Relaxed),
        );
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, at)) = failures.get(key) {
            let wait = Duration::from_secs(2u64.saturating_pow(n.saturating_sub(free)).min(max));
            if *n >= free && at.elapsed() < wait {
                return Err(CouchError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    format!(
                        "too many failed logins for this account from here; wait {} s",
                        (wait - at.elapsed()).as_secs() + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    fn note_failure(&self, key: &(String, String)) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: names and sources tried at random must not grow memory without limit.
        if f.len() >= 10_000 {
            let max = self
                .max_delay_secs
                .load(std::sync::atomic::Ordering::Relaxed);
            f.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(max));
        }
        let e = f.entry(key.clone()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key.0);
    }

    /// Forgets a remembered password (after the account changed or was removed).
    pub fn forget(&self, name: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// A session cookie value for `account`: `base64(name:expiry:mac)`, the MAC bound to the
    /// account's [`credential_stamp`].
    pub fn cookie(&self, account: &Account, now: u64) -> String {
        let expiry = now + SESSION_SECS;
        let stamp = credential_stamp(account);
        let name = &account.name;
        let mac = self.mac(&[
            b"session",
            name.as_bytes(),
            &expiry.to_le_bytes(),
            stamp.as_bytes(),
        ]);
        STANDARD.encode(format!("{name}:{expiry:x}:{}", hex::encode(mac)))
    }

    /// The account name a cookie value claims (unchecked): look the account up, then
    /// [`Auth::check_cookie`].
    pub fn cookie_name(value: &str) -> Option<String> {
        parse_cookie(value).map(|(name, _, _)| name)
    }

    /// Whether a cookie value is genuine, unexpired and issued for the account as it is now
    /// (same password, role and admin flag).
    pub fn check_cookie(&self, value: &str, account: &Account, now: u64) -> bool {
        let Some((name, expiry, mac)) = parse_cookie(value) else {
            return false;
        };
        let stamp = credential_stamp(account);
        let want = self.mac(&[
            b"session",
            name.as_bytes(),
            &expiry.to_le_bytes(),
            stamp.as_bytes(),
        ]);
        name == account.name && ct_eq(&mac, &want) && now < expiry
    }
}

/// A cookie value's parts: `base64(name:expiry-hex:mac-hex)` (the name may hold colons).
fn parse_cookie(value: &str) -> Option<(String, u64, Vec<u8>)> {
    let raw = String::from_utf8(STANDARD.decode(value).ok()?).ok()?;
    let mut parts = raw.rsplitn(3, ':');
    let mac = hex::decode(parts.next()?).ok()?;
    let expiry = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((parts.next()?.to_owned(), expiry, mac))
}

/// Parses `Authorization: Basic …` into name and password.
pub fn parse_basic(header: &str) -> Option<(String, Zeroizing<String>)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = Zeroizing::new(STANDARD.decode(b64.trim()).ok()?);
    let text = std::str::from_utf8(&raw).ok()?;
    let (name, pw) = text.split_once(':')?;
    Some((name.to_owned(), Zeroizing::new(pw.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "$argon2id$garbage"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn cookies_are_signed_and_expire() {
        let a = Auth::new().unwrap();
        let acct = |pw: &str, role: &str| Account {
            name: "nurse:1".into(),
            password_hash: pw.into(),
            admin: false,
            role: role.parse().unwrap(),
            created_at: 0,
        };
        let c = a.cookie(&acct("h1", "nurse"), 1000);
        assert_eq!(Auth::cookie_name(&c).as_deref(), Some("nurse:1"));
        assert!(a.check_cookie(&c, &acct("h1", "nurse"), 1001));
        assert!(!a.check_cookie(&c, &acct("h1", "nurse"), 1000 + SESSION_SECS));
        // A new password or another role ends the session.
        assert!(!a.check_cookie(&c, &acct("h2", "nurse"), 1001));
        assert!(!a.check_cookie(&c, &acct("h1", "front_desk"), 1001));
        let other = Auth::new().unwrap();
        assert!(!other.check_cookie(&c, &acct("h1", "nurse"), 1001));
        let forged = STANDARD.encode(format!("nurse:1:{:x}:{}", 5000, "00".repeat(32)));
        assert!(!a.check_cookie(&forged, &acct("h1", "nurse"), 1001));
    }

    #[test]
    fn basic_header_parses() {
        let h = format!("Basic {}", STANDARD.encode("sync:pa:ss"));
        let (n, p) = parse_basic(&h).unwrap();
        assert_eq!((n.as_str(), p.as_str()), ("sync", "pa:ss"));
        assert!(parse_basic("Bearer x").is_none());
    }
}
