//! The key hierarchy of a Hearth node. Pure: no file or network I/O.
//!
//! ```text
//! PIN ──Argon2id(salt, params)──► KEK ─┐
//! device secret ───────────────────────┴─HKDF─► wrap key ──AES-256-GCM──► wrapped DEK
//! DEK (random 256-bit) ──► SQLCipher raw key for the node's database file
//! ```
//!
//! Each user has their own wrap of the one data key (DEK) in the [`VaultFile`]; a wrong PIN fails
//! the AEAD tag. Secrets are zeroized on drop and print as `<redacted>`.
//!
//! ```
//! use vault::{DeviceSecret, KdfParams, Pin, PinPolicy, VaultFile};
//!
//! let device = DeviceSecret::generate().unwrap();
//! let kdf = KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 };
//! let (vault, dek) = VaultFile::create("admin", &Pin::from("246810"), &kdf, PinPolicy::default(), &device).unwrap();
//! let opened = vault.open("admin", &Pin::from("246810"), &device).unwrap();
//! assert_eq!(opened.sqlcipher_pragma_value().as_str(), dek.sqlcipher_pragma_value().as_str());
//! assert!(vault.open("admin", &Pin::from("000000"), &device).is_err());
//! ```

pub mod backup;
pub mod channel;
mod file;
mod keys;
pub mod origin;
pub mod pairing;
mod role;
pub mod sealed;
pub mod totp;
mod wrap;

pub use file::{
    Gate, LONE_USER_DELAY_SECS, MAX_PIN_CHARS, PinPolicy, UserEntry, VaultFile, validate_user_name,
};
pub use keys::{Dek, DeviceSecret, KEY_LEN, Pin, random_bytes};
pub use role::{Role, UnknownRole};
pub use wrap::{KdfParams, Wrap, unwrap, wrap};

/// Errors from the key hierarchy. Messages never contain key material or PINs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// Key derivation failed.
    #[error("key derivation failed")]
    Kdf,
    /// The KDF parameters are below Hearth's floor or invalid.
    #[error("key derivation parameters are too weak or invalid (need at least 8 MiB and 1 pass)")]
    WeakKdf,
    /// A wrap did not authenticate: wrong PIN, device secret or context.
    #[error("wrong PIN")]
    WrongPin,
    /// Wrong user name, PIN or authenticator code (deliberately one answer for all three, so a
    /// failure does not tell which part was right).
    #[error("wrong user or PIN (or authenticator code)")]
    WrongCredentials,
    /// Too many failed attempts.
    #[error(
        "this user is locked out after too many failed attempts; an administrator must set a new PIN"
    )]
    LockedOut,
    /// The user's wrap was dropped by a full re-key.
    #[error("this user's PIN must be reset by an administrator after the database was re-keyed")]
    ResetRequired,
    /// The PIN is shorter than the policy allows.
    #[error("the PIN must be at least {min} characters")]
    PinTooShort {
        /// The policy minimum.
        min: usize,
    },
    /// The PIN is longer than Hearth accepts.
    #[error("the PIN must be at most {max} characters")]
    PinTooLong {
        /// The maximum.
        max: usize,
    },
    /// The PIN policy is inconsistent.
    #[error(
        "the PIN policy is invalid (minimum length at least 4, free attempts below the lockout limit)"
    )]
    BadPolicy,
    /// A user name outside the allowed characters.
    #[error("user names are 1-64 characters of lowercase letters, digits, '.', '_', '-', '@'")]
    BadUserName,
    /// Adding a user that exists.
    #[error("that user already exists")]
    UserExists,
    /// Naming a user that does not exist (for admin operations, where enumeration is no concern).
    #[error("no such user")]
    NoSuchUser,
    /// Removing the only admin.
    #[error("the last administrator cannot be removed")]
    LastAdmin,
    /// The role requires an authenticator the user has not enrolled.
    #[error(
        "this role requires an authenticator app; an administrator must enroll you first (hearth user totp NAME)"
    )]
    SecondFactorNotEnrolled,
    /// The device↔hub channel refused a message (the reason names what failed, never a key).
    #[error("{0}")]
    Channel(&'static str),
    /// A login token was refused.
    #[error("{0}")]
    Token(&'static str),
    /// A pairing offer could not be read.
    #[error("{0}")]
    Offer(&'static str),
    /// Stored key material is malformed.
    #[error("vault data is corrupt: {0}")]
    Corrupt(&'static str),
    /// A backup or backup key was refused.
    #[error("{0}")]
    Backup(&'static str),
}
