//! The pairing offer a hub administrator shows as a QR code and a device scans (or pastes):
//! everything the device needs to pin the hub, plus a one-time token.
//!
//! Text form: `hearth-pair:` followed by base64url (no padding) of a JSON object. It carries no
//! secret but the token, which is single-use, expires within minutes, and only travels to the
//! hub encrypted to the hub's key (see [`crate::channel::seal_to_hub`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The text prefix of an offer.
pub const PREFIX: &str = "hearth-pair:";

/// A pairing offer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Offer {
    /// Format version (1).
    pub v: u8,
    /// The hub's RPC address, e.g. `http://192.168.1.10:4001`.
    pub addr: String,
    /// The hub's uuid.
    pub hub: String,
    /// The hub's X25519 public key (hex): pinned by the device.
    pub key: String,
    /// SHA-256 of the hub's TLS certificate (hex), pinned for its CouchDB API over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The one-time token (hex).
    pub token: String,
    /// Expiry (unix seconds).
    pub exp: u64,
}

impl Offer {
    /// The text form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", B64.encode(json))
    }

    /// Parses and checks the text form.
    pub fn parse(text: &str) -> Result<Offer, Error> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(Error::Offer("a pairing offer starts with 'hearth-pair:'"))?;
        if body.len() > 4096 {
            return Err(Error::Offer("the pairing offer is too long"));
        }
        let json = B64
            .decode(body)
            .map_err(|_| Error::Offer("the pairing offer is damaged (not base64url)"))?;
        let o: Offer = serde_json::from_slice(&json)
            .map_err(|_| Error::Offer("the pairing offer is damaged (not an offer)"))?;
        if o.v != 1 {
            return Err(Error::Offer("this pairing offer is from a newer Hearth"));
        }
        let hex32 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex32(&o.key) {
            return Err(Error::Offer("the pairing offer's hub key is malformed"));
        }
        if o.tls.as_deref().is_some_and(|t| !hex32(t)) {
            return Err(Error::Offer(
                "the pairing offer's certificate fingerprint is malformed",
            ));
        }
        if o.token.len() < 32 || !o.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Offer("the pairing offer's token is malformed"));
        }
        if !(o.addr.starts_with("http://") || o.addr.starts_with("https://")) {
            return Err(Error::Offer(
                "the pairing offer's hub address is not an http(s) URL",
            ));
        }
        Ok(o)
    }

    /// The pinned hub key.
    pub fn hub_key(&self) -> Result<[u8; 32], Error> {
        hex::decode(&self.key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or(Error::Offer("the pairing offer's hub key is malformed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            v: 1,
            addr: "http://127.0.0.1:4001".into(),
            hub: "abc".into(),
            key: "11".repeat(32),
            tls: Some("22".repeat(32)),
            token: "33".repeat(16),
            exp: 10,
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let o = offer();
        assert_eq!(Offer::parse(&o.encode()).unwrap(), o);
        assert!(Offer::parse("hello").is_err());
        assert!(Offer::parse("hearth-pair:!!!").is_err());
        let mut bad = offer();
        bad.key = "zz".into();
        assert!(Offer::parse(&bad.encode()).is_err());
        let mut bad = offer();
        bad.addr = "ftp://x".into();
        assert!(Offer::parse(&bad.encode()).is_err());
    }
}
