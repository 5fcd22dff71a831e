//! A sealed box: a small secret document (a hub's identity keys, TLS key, upstream credentials)
//! encrypted under a passphrase and the device secret, the same way a user's wrap of the data
//! key is made. A random key encrypts the content (AES-256-GCM); that key is wrapped like a DEK.
//! A wrong passphrase fails the wrap's tag; nothing in the box is readable without both.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;
use crate::keys::{Dek, DeviceSecret, Pin, random_bytes};
use crate::wrap::{KdfParams, Wrap, unwrap, wrap};

/// The stored form (JSON-serializable, no plaintext).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedBox {
    /// Format version (1).
    pub v: u8,
    /// The content key, wrapped under the passphrase and device secret.
    pub wrap: Wrap,
    /// AES-GCM nonce (hex).
    pub nonce: String,
    /// The content with its tag (hex).
    pub ciphertext: String,
}

/// Seals `plain`. `context` names what the box is for (bound into both layers).
pub fn seal(
    plain: &[u8],
    passphrase: &Pin,
    kdf: &KdfParams,
    device: &DeviceSecret,
    context: &[u8],
) -> Result<SealedBox, Error> {
    let key = Dek::generate()?;
    let w = wrap(&key, passphrase, kdf, device, context)?;
    let nonce: [u8; 12] = random_bytes()?;
    let cipher = Aes256Gcm::new_from_slice(key.as_bytes()).map_err(|_| Error::Kdf)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: context,
            },
        )
        .map_err(|_| Error::Kdf)?;
    Ok(SealedBox {
        v: 1,
        wrap: w,
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    })
}

/// Opens a box; a wrong passphrase or device secret is [`Error::WrongPin`].
pub fn open(
    b: &SealedBox,
    passphrase: &Pin,
    device: &DeviceSecret,
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let key = unwrap(&b.wrap, passphrase, device, context)?;
    let nonce: [u8; 12] = hex::decode(&b.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(Error::Corrupt("sealed box nonce is malformed"))?;
    let ct = hex::decode(&b.ciphertext).map_err(|_| Error::Corrupt("sealed box is not hex"))?;
    let cipher = Aes256Gcm::new_from_slice(key.as_bytes()).map_err(|_| Error::Kdf)?;
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ct,
                aad: context,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::Corrupt("sealed box content does not authenticate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_passphrase_device_and_context() {
        let kdf = KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let dev = DeviceSecret::generate().unwrap();
        let b = seal(
            b"secret keys",
            &Pin::from("correct horse"),
            &kdf,
            &dev,
            b"hub",
        )
        .unwrap();
        assert!(!serde_json::to_string(&b).unwrap().contains("secret"));
        assert_eq!(
            open(&b, &Pin::from("correct horse"), &dev, b"hub")
                .unwrap()
                .as_slice(),
            b"secret keys"
        );
        assert!(open(&b, &Pin::from("wrong"), &dev, b"hub").is_err());
        assert!(
            open(
                &b,
                &Pin::from("correct horse"),
                &DeviceSecret::generate().unwrap(),
                b"hub"
            )
            .is_err()
        );
        assert!(open(&b, &Pin::from("correct horse"), &dev, b"other").is_err());
    }
}
