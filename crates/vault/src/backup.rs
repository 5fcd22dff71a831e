//! Backup keys: backups are sealed to an X25519 public key, so a node (or a hub running its
//! schedule) can make them with no secret at hand, and only the holder of the private key —
//! kept off the machine, in a passphrase-protected key file — can open one.
//!
//! ```text
//! hearth backup keygen ──► backup-key.json   X25519 secret, sealed under a passphrase (Argon2id)
//!                     └─► hearth-backup-key:<base64url public key>   configured on nodes
//! seal:  ephemeral X25519 ─DH─► HKDF(salt = transcript) ─► AES-256-GCM(aad = the manifest's facts)
//! ```

use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::channel::{StaticKey, b64, dh, hkdf, key32, open, seal, transcript, unb64};
use crate::keys::{DeviceSecret, Pin, random_bytes};
use crate::sealed::{self, SealedBox};
use crate::{Error, KdfParams};

/// How a backup public key is written in configuration and on the command line.
pub const PUBLIC_PREFIX: &str = "hearth-backup-key:";
const FILE_CONTEXT: &[u8] = b"hearth backup key file v1";
const SEAL_INFO: &[u8] = b"hearth backup v1";

/// A backup key pair (the private half only in memory, zeroized on drop).
pub struct BackupKey(StaticKey);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(<redacted>)")
    }
}

/// The key file the administrator keeps (JSON): the public key in clear, the secret sealed
/// under a passphrase. The file is not bound to any device (it must open anywhere a restore
/// runs), so its only secret is the passphrase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupKeyFile {
    /// Format version (1).
    pub v: u8,
    /// The public key, as `hearth-backup-key:…`.
    pub public: String,
    /// The X25519 secret.
    pub sealed: SealedBox,
}

/// Data sealed to a backup public key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedForBackup {
    /// The recipient, as `hearth-backup-key:…` (which key file opens it).
    pub recipient: String,
    /// The sender's ephemeral X25519 public key (base64url).
    pub ephemeral: String,
    /// Ciphertext with its tag (base64url).
    pub data: String,
}

/// The fixed stand-in for a device secret in a key file's wrap: the file must open on any
/// machine, so only the passphrase (through Argon2id) protects it.
fn no_device() -> Result<DeviceSecret, Error> {
    DeviceSecret::from_bytes(&[0u8; 32])
}

impl BackupKey {
    /// A fresh key pair.
    pub fn generate() -> Result<BackupKey, Error> {
        Ok(BackupKey(StaticKey::generate()?))
    }

    /// The public half.
    pub fn public(&self) -> [u8; 32] {
        self.0.public()
    }

    /// The public half as `hearth-backup-key:…`.
    pub fn public_text(&self) -> String {
        public_text(&self.public())
    }

    /// Seals the secret under `passphrase` for the key file.
    pub fn to_file(&self, passphrase: &Pin, kdf: &KdfParams) -> Result<BackupKeyFile, Error> {
        let secret = self.0.secret_bytes();
        Ok(BackupKeyFile {
            v: 1,
            public: self.public_text(),
            sealed: sealed::seal(&secret[..], passphrase, kdf, &no_device()?, FILE_CONTEXT)?,
        })
    }

    /// Opens a key file; a wrong passphrase is [`Error::WrongPin`].
    pub fn from_file(file: &BackupKeyFile, passphrase: &Pin) -> Result<BackupKey, Error> {
        if file.v != 1 {
            return Err(Error::Corrupt("unknown backup key file version"));
        }
        let secret = sealed::open(&file.sealed, passphrase, &no_device()?, FILE_CONTEXT)?;
        let key = BackupKey(StaticKey::from_bytes(&secret)?);
        if key.public_text() != file.public {
            return Err(Error::Corrupt(
                "the backup key file's public key does not match its secret",
            ));
        }
        Ok(key)
    }

    /// Opens data sealed to this key; `aad` must be what the sealer bound.
    pub fn open(&self, aad: &[u8], m: &SealedForBackup) -> Result<Zeroizing<Vec<u8>>, Error> {
        if m.recipient != self.public_text() {
            return Err(Error::Backup(
                "this backup was sealed to a different backup key",
            ));
        }
        let e = key32(
            &unb64(&m.ephemeral, "the backup's sealed part is malformed")?,
            "the backup's sealed part is malformed",
        )?;
        let secret = StaticSecret::from(*self.0.secret_bytes());
        let key = derive(&secret, &e, &self.public(), &e)?;
        let data = unb64(&m.data, "the backup's sealed part is malformed")?;
        open(
            &key,
            0,
            aad,
            &data,
            "the backup's sealed part does not authenticate (altered, or another backup's)",
        )
        .map_err(|_| {
            Error::Backup(
                "the backup's sealed part does not authenticate (altered, or not this backup's)",
            )
        })
    }
}

fn derive(
    secret: &StaticSecret,
    peer: &[u8; 32],
    recipient: &[u8; 32],
    ephemeral: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, Error> {
    let shared = dh(secret, peer)?;
    hkdf(
        &shared[..],
        &transcript(&[b"backup", recipient, ephemeral]),
        SEAL_INFO,
    )
}

/// `hearth-backup-key:<base64url>`.
pub fn public_text(public: &[u8; 32]) -> String {
    format!("{PUBLIC_PREFIX}{}", b64(public))
}

/// Parses `hearth-backup-key:<base64url>`.
pub fn parse_public(text: &str) -> Result<[u8; 32], Error> {
    let rest = text
        .trim()
        .strip_prefix(PUBLIC_PREFIX)
        .ok_or(Error::Backup(
            "a backup key starts with 'hearth-backup-key:'",
        ))?;
    let bytes = unb64(rest, "").map_err(|_| Error::Backup("the backup key is not base64url"))?;
    key32(&bytes, "").map_err(|_| Error::Backup("a backup key is 32 bytes"))
}

/// Seals `plain` to the backup public key, bound to `aad`.
pub fn seal_for_backup(
    recipient: &[u8; 32],
    aad: &[u8],
    plain: &[u8],
) -> Result<SealedForBackup, Error> {
    let e = StaticSecret::from(*Zeroizing::new(random_bytes::<32>()?));
    let e_pub = PublicKey::from(&e).to_bytes();
    let key = derive(&e, recipient, recipient, &e_pub)?;
    Ok(SealedForBackup {
        recipient: public_text(recipient),
        ephemeral: b64(&e_pub),
        data: b64(&seal(&key, 0, aad, plain)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kdf() -> KdfParams {
        KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn sealed_to_the_public_key_opens_only_with_the_key_file_and_the_same_aad() {
        let key = BackupKey::generate().unwrap();
        let file = key.to_file(&Pin::from("correct horse"), &kdf()).unwrap();
        let public = parse_public(&file.public).unwrap();
        let m = seal_for_backup(&public, b"manifest facts", b"the snapshot key").unwrap();
        let opened = BackupKey::from_file(&file, &Pin::from("correct horse")).unwrap();
        assert_eq!(
            &opened.open(b"manifest facts", &m).unwrap()[..],
            b"the snapshot key"
        );
        // Other facts, a flipped byte, another key, a wrong passphrase: all refused.
        assert!(opened.open(b"other facts", &m).is_err());
        let mut bad = m.clone();
        let mut raw = unb64(&bad.data, "").unwrap();
        raw[3] ^= 1;
        bad.data = b64(&raw);
        assert!(opened.open(b"manifest facts", &bad).is_err());
        let other = BackupKey::generate().unwrap();
        assert!(matches!(
            other.open(b"manifest facts", &m),
            Err(Error::Backup(_))
        ));
        assert!(matches!(
            BackupKey::from_file(&file, &Pin::from("wrong horse")),
            Err(Error::WrongPin)
        ));
        // The key file holds no plaintext secret.
        let json = serde_json::to_string(&file).unwrap();
        let secret = hex::encode(*opened.0.secret_bytes());
        assert!(!json.contains(&secret));
        assert!(parse_public("hearth-backup-key:AAAA").is_err());
        assert!(parse_public("nope").is_err());
    }
}
