//! Wrapping the data key for one user: Argon2id(PIN) combined with the device secret by HKDF,
//! then AES-256-GCM. A wrong PIN fails authentication of the wrap.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Error;
use crate::keys::{Dek, DeviceSecret, KEY_LEN, Pin, SecretKey, random_bytes};

/// Argon2id cost parameters, stored beside each wrap so they can be raised later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second on a 2-core machine (see
    /// `docs/benchmarks.md`), within OWASP's Argon2id guidance.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Checks the parameters are usable and not weaker than a floor.
    pub fn validate(&self) -> Result<(), Error> {
        if self.memory_kib < 8 * 1024
            || self.iterations < 1
            || self.parallelism < 1
            || self.parallelism > 16
        {
            return Err(Error::WeakKdf);
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|_| Error::WeakKdf)?;
        Ok(())
    }
}

/// One user's wrap of the data key, as stored in the vault file. Contains no secret in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    /// Argon2id salt (hex).
    pub salt: String,
    /// Argon2id parameters used.
    pub kdf: KdfParams,
    /// AES-GCM nonce (hex).
    pub nonce: String,
    /// The wrapped data key with its tag (hex).
    pub ciphertext: String,
}

/// Derives the wrap key: HKDF-SHA256 over Argon2id(PIN, salt) with the device secret as salt.
fn wrap_key(
    pin: &Pin,
    salt: &[u8],
    kdf: &KdfParams,
    device: &DeviceSecret,
    context: &[u8],
) -> Result<SecretKey, Error> {
    kdf.validate()?;
    let params = Params::new(
        kdf.memory_kib,
        kdf.iterations,
        kdf.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|_| Error::WeakKdf)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut kek = SecretKey([0u8; KEY_LEN]);
    argon
        .hash_password_into(pin.as_bytes(), salt, &mut kek.0)
        .map_err(|_| Error::Kdf)?;
    let hk = Hkdf::<Sha256>::new(Some(device.expose_bytes()), &kek.0);
    let mut out = SecretKey([0u8; KEY_LEN]);
    let mut info = b"hearth/v1/dek-wrap/".to_vec();
    info.extend_from_slice(context);
    hk.expand(&info, &mut out.0).map_err(|_| Error::Kdf)?;
    Ok(out)
}

/// Wraps `dek` for a user. `context` binds the wrap to its vault, user and key epoch (it is the
/// AEAD associated data), so a wrap copied to another user or vault does not open.
pub fn wrap(
    dek: &Dek,
    pin: &Pin,
    kdf: &KdfParams,
    device: &DeviceSecret,
    context: &[u8],
) -> Result<Wrap, Error> {
    let salt: [u8; 16] = random_bytes()?;
    let nonce: [u8; 12] = random_bytes()?;
    let key = wrap_key(pin, &salt, kdf, device, context)?;
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|_| Error::Kdf)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: dek.as_bytes(),
                aad: context,
            },
        )
        .map_err(|_| Error::Kdf)?;
    Ok(Wrap {
        salt: hex::encode(salt),
        kdf: *kdf,
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    })
}

/// Opens a wrap with a PIN. Fails with [`Error::WrongPin`] when the PIN (or device secret, or
/// context) is not the one it was made with.
pub fn unwrap(w: &Wrap, pin: &Pin, device: &DeviceSecret, context: &[u8]) -> Result<Dek, Error> {
    let salt = hex::decode(&w.salt).map_err(|_| Error::Corrupt("wrap salt is not hex"))?;
    let nonce: [u8; 12] = hex::decode(&w.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(Error::Corrupt("wrap nonce is malformed"))?;
    let ct = hex::decode(&w.ciphertext).map_err(|_| Error::Corrupt("wrapped key is not hex"))?;
    let key = wrap_key(pin, &salt, &w.kdf, device, context)?;
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|_| Error::Kdf)?;
    let plain = zeroize::Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ct,
                    aad: context,
                },
            )
            .map_err(|_| Error::WrongPin)?,
    );
    Dek::from_bytes(&plain)
}

/// Seals a small secret under a key derived (HKDF) from the data key and a label.
pub(crate) fn seal(dek: &Dek, label: &str, secret: &[u8]) -> Result<crate::file::Sealed, Error> {
    let nonce: [u8; 12] = random_bytes()?;
    let cipher = sealing_cipher(dek, label)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: secret,
                aad: label.as_bytes(),
            },
        )
        .map_err(|_| Error::Kdf)?;
    Ok(crate::file::Sealed {
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    })
}

/// Opens what [`seal`] sealed.
pub(crate) fn open_sealed(
    dek: &Dek,
    label: &str,
    sealed: &crate::file::Sealed,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    let nonce: [u8; 12] = hex::decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(Error::Corrupt("a sealed secret's nonce is malformed"))?;
    let ct = hex::decode(&sealed.ciphertext)
        .map_err(|_| Error::Corrupt("a sealed secret is not hex"))?;
    let cipher = sealing_cipher(dek, label)?;
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ct,
                aad: label.as_bytes(),
            },
        )
        .map(zeroize::Zeroizing::new)
        .map_err(|_| Error::Corrupt("a sealed secret does not open with this data key"))
}

fn sealing_cipher(dek: &Dek, label: &str) -> Result<Aes256Gcm, Error> {
    let hk = Hkdf::<Sha256>::new(None, dek.as_bytes());
    let mut key = SecretKey([0u8; KEY_LEN]);
    let mut info = b"hearth/v1/seal/".to_vec();
    info.extend_from_slice(label.as_bytes());
    hk.expand(&info, &mut key.0).map_err(|_| Error::Kdf)?;
    Aes256Gcm::new_from_slice(&key.0).map_err(|_| Error::Kdf)
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

    #[test]
    fn wrap_opens_only_with_the_right_pin_device_and_context() {
        let dek = Dek::generate().unwrap();
        let dev = DeviceSecret::generate().unwrap();
        let pin = Pin::from("correct horse");
        let w = wrap(&dek, &pin, &fast(), &dev, b"vault1/alice/1").unwrap();
        let back = unwrap(&w, &pin, &dev, b"vault1/alice/1").unwrap();
        assert_eq!(back.as_bytes(), dek.as_bytes());
        assert!(matches!(
            unwrap(&w, &Pin::from("wrong horse"), &dev, b"vault1/alice/1"),
            Err(Error::WrongPin)
        ));
        let other = DeviceSecret::generate().unwrap();
        assert!(matches!(
            unwrap(&w, &pin, &other, b"vault1/alice/1"),
            Err(Error::WrongPin)
        ));
        assert!(matches!(
            unwrap(&w, &pin, &dev, b"vault1/bob/1"),
            Err(Error::WrongPin)
        ));
        // Nothing in the stored wrap reveals the key.
        let json = serde_json::to_string(&w).unwrap();
        assert!(!json.contains(&hex::encode(dek.as_bytes())));
    }

    #[test]
    fn refuses_weak_parameters() {
        let weak = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(weak.validate(), Err(Error::WeakKdf)));
        assert!(KdfParams::default().validate().is_ok());
    }
}
