//! Secret key material: the data key, the device secret and PINs. Zeroized on drop, redacted in
//! `Debug`.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// Length of every symmetric key Hearth uses (AES-256, SQLCipher raw key).
pub const KEY_LEN: usize = 32;

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Error::Random)?;
    Ok(out)
}

/// The data encryption key: the SQLCipher raw key for a node's database file.
pub struct Dek(Zeroizing<[u8; KEY_LEN]>);

impl Dek {
    /// A fresh random key.
    pub fn generate() -> Result<Dek, Error> {
        Ok(Dek(Zeroizing::new(random_bytes()?)))
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Dek, Error> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Corrupt("data key has the wrong length"))?;
        Ok(Dek(Zeroizing::new(arr)))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key in SQLCipher's raw-key form, `x'<64 hex>'`, for `PRAGMA key` and `PRAGMA rekey`.
    /// Opening with a raw key skips SQLCipher's own (slow) passphrase KDF: our KDF ran already.
    pub fn sqlcipher_pragma_value(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(KEY_LEN * 2 + 3));
        s.push_str("x'");
        for b in self.0.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s.push('\'');
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

/// A per-device secret mixed into every user's wrap key. Kept outside the database (platform
/// keystore or a 0600 file), so a copied database plus vault file alone cannot be brute-forced.
pub struct DeviceSecret(Zeroizing<[u8; KEY_LEN]>);

impl DeviceSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<DeviceSecret, Error> {
        Ok(DeviceSecret(Zeroizing::new(random_bytes()?)))
    }

    /// Reads a secret from its stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<DeviceSecret, Error> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Corrupt("device secret has the wrong length"))?;
        Ok(DeviceSecret(Zeroizing::new(arr)))
    }

    /// The bytes to store (in a keystore or a 0600 file; never in the database or a log).
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
    }
}

/// A PIN or passphrase as typed by a user. Zeroized on drop; never printed.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps a typed PIN, trimming one trailing newline (from a terminal or stdin).
    pub fn new(mut s: String) -> Pin {
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        Pin(Zeroizing::new(s))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Compares two PINs without an early exit on the first differing byte.
    pub fn ct_eq(&self, other: &Pin) -> bool {
        let (a, b) = (self.as_bytes(), other.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The text, for the rare check that needs it (an authenticator code); zeroized on drop.
    pub fn expose(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(self.0.as_str().to_owned())
    }

    /// Length in characters.
    pub fn char_len(&self) -> usize {
        self.0.chars().count()
    }
}

impl From<&str> for Pin {
    fn from(s: &str) -> Pin {
        Pin::new(s.to_owned())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// A 32-byte key that must be wiped after use (KEKs, wrap keys).
pub(crate) struct SecretKey(pub(crate) [u8; KEY_LEN]);

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let dek = Dek::generate().unwrap();
        let hex = dek.sqlcipher_pragma_value();
        assert!(hex.starts_with("x'") && hex.len() == 67);
        assert_eq!(format!("{dek:?}"), "Dek(<redacted>)");
        let pin = Pin::from("hunter2-secret");
        assert!(!format!("{pin:?}").contains("hunter2"));
        let ds = DeviceSecret::generate().unwrap();
        assert_eq!(format!("{ds:?}"), "DeviceSecret(<redacted>)");
    }

    #[test]
    fn pin_trims_one_newline() {
        assert_eq!(Pin::new("123456\r\n".into()).char_len(), 6);
        assert_eq!(Pin::new("123456\n\n".into()).char_len(), 7);
    }
}
