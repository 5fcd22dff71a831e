//! The device↔hub channel: a mutually authenticated X25519 handshake and AES-256-GCM envelopes
//! with counters (docs/architecture.md §4). Pure: messages in, messages out.
//!
//! ```text
//! device D (static d, pinned hub key H)              hub H (static h, registered device key D)
//!   e = fresh X25519
//!   k0 = HKDF(DH(e,H) ‖ DH(d,H))                       ← only the holder of h, and d's owner
//!   Hello { device, e, time, proof = AEAD(k0, time) } ──►  look up D (unknown/revoked: refuse),
//!                                                         open the proof (wrong key: refuse)
//!                                                         f = fresh X25519, session id s
//!   keys = HKDF(DH(e,f) ‖ DH(e,H) ‖ DH(d,f) ‖ DH(d,H), transcript)
//!   ◄── Welcome { s, f, expires, confirm = AEAD(h2d, "welcome") }
//!   open confirm (a hub without h cannot make it: a man in the middle fails here)
//! ```
//!
//! Both static keys enter every session key, so neither side can be impersonated by someone who
//! lacks its static secret, and the ephemeral pair gives forward secrecy. Envelopes carry a
//! counter that must grow strictly (a replayed or reordered envelope is refused); the counter,
//! the session and the route are authenticated as associated data, so a flipped byte anywhere
//! fails the tag. Responses use the other direction's key with the request's counter.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::Error;
use crate::keys::random_bytes;

/// Protocol label mixed into every derivation.
const LABEL: &[u8] = b"hearth-rpc-v1";
/// How far a hello's clock may be from the hub's.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// A node's long-term X25519 key (the hub's identity, or a paired device's).
pub struct StaticKey(StaticSecret);

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticKey(<redacted>)")
    }
}

impl StaticKey {
    /// A fresh key.
    pub fn generate() -> Result<StaticKey, Error> {
        let bytes = Zeroizing::new(random_bytes::<32>()?);
        Ok(StaticKey(StaticSecret::from(*bytes)))
    }

    /// From stored secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<StaticKey, Error> {
        let b: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Corrupt("an X25519 key is not 32 bytes"))?;
        Ok(StaticKey(StaticSecret::from(b)))
    }

    /// The secret bytes, for sealing into a vault.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }
}

/// A short, human-comparable fingerprint of a public key or certificate: SHA-256, hex.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(crate) fn unb64(s: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    B64.decode(s).map_err(|_| Error::Channel(what))
}

pub(crate) fn key32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], Error> {
    bytes.try_into().map_err(|_| Error::Channel(what))
}

pub(crate) fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    // A low-order point gives an all-zero secret: refuse it.
    if !shared.was_contributory() {
        return Err(Error::Channel("a handshake key is not a valid public key"));
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

pub(crate) fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out.as_mut())
        .map_err(|_| Error::Kdf)?;
    Ok(out)
}

fn nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(n)
}

pub(crate) fn seal(
    key: &[u8; 32],
    counter: u64,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, Error> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| Error::Kdf)?;
    cipher
        .encrypt(&nonce(counter), Payload { msg: plain, aad })
        .map_err(|_| Error::Kdf)
}

pub(crate) fn open(
    key: &[u8; 32],
    counter: u64,
    aad: &[u8],
    sealed: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| Error::Kdf)?;
    cipher
        .decrypt(&nonce(counter), Payload { msg: sealed, aad })
        .map(Zeroizing::new)
        .map_err(|_| Error::Channel(what))
}

pub(crate) fn transcript(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LABEL);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The device's opening message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// The device id registered at pairing.
    pub device: String,
    /// The device's ephemeral X25519 public key (base64url).
    pub ephemeral: String,
    /// Unix seconds on the device.
    pub time: u64,
    /// The hub's fresh, single-use challenge this hello answers (bound into the proof), so a
    /// captured hello cannot be replayed.
    #[serde(default)]
    pub challenge: String,
    /// Proof that the sender holds the device key and knows the hub key (base64url).
    pub proof: String,
}

/// The hub's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Welcome {
    /// The session id (hex).
    pub session: String,
    /// The hub's ephemeral X25519 public key (base64url).
    pub ephemeral: String,
    /// When the session expires (unix seconds).
    pub expires: u64,
    /// Proof that the hub holds its static key (base64url).
    pub confirm: String,
}

/// A device's handshake in progress.
pub struct Initiator {
    device: String,
    device_public: [u8; 32],
    hub_public: [u8; 32],
    ephemeral: StaticSecret,
    ephemeral_public: [u8; 32],
    ikm_static: Zeroizing<[u8; 64]>,
}

/// One direction's key and the session it belongs to.
pub struct SessionKeys {
    /// The session id.
    pub session: String,
    d2h: Zeroizing<[u8; 32]>,
    h2d: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

fn hello_key(
    ikm_static: &[u8; 64],
    hub: &[u8; 32],
    device: &[u8; 32],
    e: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, Error> {
    hkdf(
        ikm_static,
        &transcript(&[b"hello", hub, device, e]),
        b"hearth-rpc hello",
    )
}

fn session_keys(
    ikm: &[u8],
    hub: &[u8; 32],
    device: &[u8; 32],
    e: &[u8; 32],
    f: &[u8; 32],
    session: &str,
) -> Result<SessionKeys, Error> {
    let salt = transcript(&[b"session", hub, device, e, f, session.as_bytes()]);
    Ok(SessionKeys {
        session: session.to_owned(),
        d2h: hkdf(ikm, &salt, b"hearth-rpc device-to-hub")?,
        h2d: hkdf(ikm, &salt, b"hearth-rpc hub-to-device")?,
    })
}

fn concat(parts: &[&[u8; 32]]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(parts.len() * 32));
    for p in parts {
        v.extend_from_slice(&p[..]);
    }
    v
}

impl Initiator {
    /// Starts a handshake from `device` (holding `key`) to the hub whose pinned public key is
    /// `hub_public`, answering the hub's fresh `challenge`.
    pub fn start(
        device: &str,
        key: &StaticKey,
        hub_public: [u8; 32],
        now: u64,
        challenge: &str,
    ) -> Result<(Initiator, Hello), Error> {
        let ephemeral = StaticSecret::from(*Zeroizing::new(random_bytes::<32>()?));
        let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
        let es = dh(&ephemeral, &hub_public)?;
        let ss = dh(&key.0, &hub_public)?;
        let mut ikm_static = Zeroizing::new([0u8; 64]);
        ikm_static[..32].copy_from_slice(&es[..]);
        ikm_static[32..].copy_from_slice(&ss[..]);
        let device_public = key.public();
        let k0 = hello_key(&ikm_static, &hub_public, &device_public, &ephemeral_public)?;
        let proof = seal(
            &k0,
            0,
            hello_aad(device, challenge).as_bytes(),
            &now.to_be_bytes(),
        )?;
        let hello = Hello {
            device: device.to_owned(),
            ephemeral: b64(&ephemeral_public),
            time: now,
            challenge: challenge.to_owned(),
            proof: b64(&proof),
        };
        let init = Initiator {
            device: device.to_owned(),
            device_public,
            hub_public,
            ephemeral,
            ephemeral_public,
            ikm_static,
        };
        Ok((init, hello))
    }

    /// Finishes with the hub's answer: the session keys, once the hub proved its key.
    pub fn finish(self, w: &Welcome, key: &StaticKey) -> Result<SessionKeys, Error> {
        let f = key32(
            &unb64(&w.ephemeral, "the hub's handshake is malformed")?,
            "the hub's handshake is malformed",
        )?;
        let ee = dh(&self.ephemeral, &f)?;
        let se = dh(&key.0, &f)?;
        let ikm = concat(&[
            &ee,
            &key32(&self.ikm_static[..32], "internal")?,
            &se,
            &key32(&self.ikm_static[32..], "internal")?,
        ]);
        let keys = session_keys(
            &ikm,
            &self.hub_public,
            &self.device_public,
            &self.ephemeral_public,
            &f,
            &w.session,
        )?;
        let confirm = unb64(&w.confirm, "the hub's handshake is malformed")?;
        open(
            &keys.h2d,
            0,
            welcome_aad(&w.session, &self.device).as_bytes(),
            &confirm,
            "the hub did not prove its pinned key (wrong hub, or a man in the middle)",
        )?;
        Ok(keys)
    }
}

/// What a hello's proof authenticates besides the time: the device and the hub's challenge.
fn hello_aad(device: &str, challenge: &str) -> String {
    format!("hello:{device}:{challenge}")
}

fn welcome_aad(session: &str, device: &str) -> String {
    format!("welcome:{session}:{device}")
}

/// The hub's side: checks a hello from a device whose registered key is `device_public`.
/// `session` is a fresh session id chosen by the hub.
pub fn accept(
    hub: &StaticKey,
    device_public: [u8; 32],
    hello: &Hello,
    session: &str,
    expires: u64,
    now: u64,
) -> Result<(SessionKeys, Welcome), Error> {
    if hello.time.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(Error::Channel(
            "the device's clock is more than five minutes off the hub's",
        ));
    }
    let e = key32(
        &unb64(&hello.ephemeral, "the device's handshake is malformed")?,
        "the device's handshake is malformed",
    )?;
    let es = dh(&hub.0, &e)?;
    let ss = dh(&hub.0, &device_public)?;
    let mut ikm_static = Zeroizing::new([0u8; 64]);
    ikm_static[..32].copy_from_slice(&es[..]);
    ikm_static[32..].copy_from_slice(&ss[..]);
    let hub_public = hub.public();
    let k0 = hello_key(&ikm_static, &hub_public, &device_public, &e)?;
    let proof = unb64(&hello.proof, "the device's handshake is malformed")?;
    let time = open(
        &k0,
        0,
        hello_aad(&hello.device, &hello.challenge).as_bytes(),
        &proof,
        "the device did not prove its registered key",
    )?;
    if time.as_slice() != hello.time.to_be_bytes() {
        return Err(Error::Channel(
            "the device did not prove its registered key",
        ));
    }
    let ephemeral = StaticSecret::from(*Zeroizing::new(random_bytes::<32>()?));
    let f = PublicKey::from(&ephemeral).to_bytes();
    let ee = dh(&ephemeral, &e)?;
    let se = dh(&ephemeral, &device_public)?;
    let ikm = concat(&[&ee, &es, &se, &ss]);
    let keys = session_keys(&ikm, &hub_public, &device_public, &e, &f, session)?;
    let confirm = seal(
        &keys.h2d,
        0,
        welcome_aad(session, &hello.device).as_bytes(),
        b"welcome",
    )?;
    Ok((
        keys,
        Welcome {
            session: session.to_owned(),
            ephemeral: b64(&f),
            expires,
            confirm: b64(&confirm),
        },
    ))
}

/// Which RPC route an envelope belongs to (authenticated, so a query cannot be replayed as a
/// command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/rpc/query`: reads.
    Query,
    /// `/rpc/command`: writes.
    Command,
}

impl Route {
    /// The route of a CouchDB API call: reads (`GET`, and the `POST`s that only read:
    /// `_changes`, `_revs_diff`, `_bulk_get`, `_all_docs`) are queries, the rest commands.
    /// Both ends apply this rule.
    pub fn for_call(method: &str, path: &str) -> Route {
        let p = path.split('?').next().unwrap_or("");
        let read = method == "GET"
            || (method == "POST"
                && ["/_changes", "/_revs_diff", "/_bulk_get", "/_all_docs"]
                    .iter()
                    .any(|s| p.ends_with(s)));
        if read { Route::Query } else { Route::Command }
    }

    fn tag(self) -> &'static str {
        match self {
            Route::Query => "query",
            Route::Command => "command",
        }
    }
}

/// An encrypted message on the wire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// The session id.
    pub session: String,
    /// Strictly increasing per session (from 1).
    pub counter: u64,
    /// AES-256-GCM ciphertext and tag (base64url).
    pub data: String,
}

fn envelope_aad(dir: &str, route: Route, session: &str, counter: u64) -> String {
    format!("env:{dir}:{}:{session}:{counter}", route.tag())
}

impl SessionKeys {
    /// Seals a device→hub message.
    pub fn seal_request(
        &self,
        route: Route,
        counter: u64,
        plain: &[u8],
    ) -> Result<Envelope, Error> {
        let aad = envelope_aad("d2h", route, &self.session, counter);
        Ok(Envelope {
            session: self.session.clone(),
            counter,
            data: b64(&seal(&self.d2h, counter, aad.as_bytes(), plain)?),
        })
    }

    /// Opens a device→hub message (the caller checks the counter's order).
    pub fn open_request(&self, route: Route, env: &Envelope) -> Result<Zeroizing<Vec<u8>>, Error> {
        if env.session != self.session {
            return Err(Error::Channel("the envelope belongs to another session"));
        }
        let aad = envelope_aad("d2h", route, &self.session, env.counter);
        let data = unb64(&env.data, "the envelope is malformed")?;
        open(
            &self.d2h,
            env.counter,
            aad.as_bytes(),
            &data,
            "the envelope did not authenticate (tampered, or for another route or session)",
        )
    }

    /// Seals the hub's answer to the request with `counter`.
    pub fn seal_response(
        &self,
        route: Route,
        counter: u64,
        plain: &[u8],
    ) -> Result<Envelope, Error> {
        let aad = envelope_aad("h2d", route, &self.session, counter);
        Ok(Envelope {
            session: self.session.clone(),
            counter,
            data: b64(&seal(&self.h2d, counter, aad.as_bytes(), plain)?),
        })
    }

    /// Opens the hub's answer to the request with `counter`.
    pub fn open_response(
        &self,
        route: Route,
        counter: u64,
        env: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if env.session != self.session || env.counter != counter {
            return Err(Error::Channel("the answer is not for this request"));
        }
        let aad = envelope_aad("h2d", route, &self.session, counter);
        let data = unb64(&env.data, "the answer is malformed")?;
        open(
            &self.h2d,
            counter,
            aad.as_bytes(),
            &data,
            "the answer did not authenticate (tampered in transit?)",
        )
    }
}

/// Encrypts a pairing request to the hub's static key (from the offer): only the hub can read
/// the one-time token inside. Returns the message and the key to open the hub's answer with.
pub fn seal_to_hub(hub_public: [u8; 32], plain: &[u8]) -> Result<(SealedToHub, PairKey), Error> {
    let e = StaticSecret::from(*Zeroizing::new(random_bytes::<32>()?));
    let e_pub = PublicKey::from(&e).to_bytes();
    let shared = dh(&e, &hub_public)?;
    let key = hkdf(
        &shared[..],
        &transcript(&[b"pair", &hub_public, &e_pub]),
        b"hearth-rpc pair",
    )?;
    let data = seal(&key, 0, b"pair-request", plain)?;
    Ok((
        SealedToHub {
            ephemeral: b64(&e_pub),
            data: b64(&data),
        },
        PairKey(key),
    ))
}

/// A message only the hub can open.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedToHub {
    /// The sender's ephemeral X25519 public key (base64url).
    pub ephemeral: String,
    /// Ciphertext (base64url).
    pub data: String,
}

/// The key shared by a pairing exchange.
pub struct PairKey(Zeroizing<[u8; 32]>);

impl PairKey {
    /// Seals the hub's answer.
    pub fn seal_answer(&self, plain: &[u8]) -> Result<String, Error> {
        Ok(b64(&seal(&self.0, 1, b"pair-answer", plain)?))
    }

    /// Opens the hub's answer.
    pub fn open_answer(&self, data: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        open(
            &self.0,
            1,
            b"pair-answer",
            &unb64(data, "the hub's answer is malformed")?,
            "the hub's answer did not authenticate (not the hub of the offer?)",
        )
    }
}

/// The hub opens a pairing request.
pub fn open_from_device(
    hub: &StaticKey,
    m: &SealedToHub,
) -> Result<(Zeroizing<Vec<u8>>, PairKey), Error> {
    let e = key32(
        &unb64(&m.ephemeral, "the pairing request is malformed")?,
        "the pairing request is malformed",
    )?;
    let shared = dh(&hub.0, &e)?;
    let key = hkdf(
        &shared[..],
        &transcript(&[b"pair", &hub.public(), &e]),
        b"hearth-rpc pair",
    )?;
    let plain = open(
        &key,
        0,
        b"pair-request",
        &unb64(&m.data, "the pairing request is malformed")?,
        "the pairing request did not authenticate (made for another hub?)",
    )?;
    Ok((plain, PairKey(key)))
}

/// What a login token says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The hub account.
    pub sub: String,
    /// Its role.
    pub role: crate::Role,
    /// The device it was issued to.
    pub dev: String,
    /// The channel session it was issued in.
    pub sid: String,
    /// Expiry (unix seconds).
    pub exp: u64,
    /// The account's credential stamp when the token was issued: a token whose stamp no longer
    /// matches the account (new password or role, account removed) is refused.
    #[serde(default)]
    pub stamp: String,
}

/// Signs a login token: `base64url(claims).base64url(ed25519 signature)`.
pub fn sign_token(key: &SigningKey, claims: &Claims) -> Result<String, Error> {
    let body = b64(&serde_json::to_vec(claims).map_err(|_| Error::Corrupt("claims"))?);
    let sig = key.sign(format!("hearth-token-v1.{body}").as_bytes());
    Ok(format!("{body}.{}", b64(&sig.to_bytes())))
}

/// Checks a login token's signature and expiry.
pub fn verify_token(key: &VerifyingKey, token: &str, now: u64) -> Result<Claims, Error> {
    let (body, sig) = token
        .split_once('.')
        .ok_or(Error::Token("the login token is malformed"))?;
    let sig = unb64(sig, "").map_err(|_| Error::Token("the login token is malformed"))?;
    let sig = ed25519_dalek::Signature::from_slice(&sig)
        .map_err(|_| Error::Token("the login token is malformed"))?;
    key.verify(format!("hearth-token-v1.{body}").as_bytes(), &sig)
        .map_err(|_| Error::Token("the login token's signature is not this hub's"))?;
    let claims: Claims = serde_json::from_slice(
        &unb64(body, "").map_err(|_| Error::Token("the login token is malformed"))?,
    )
    .map_err(|_| Error::Token("the login token is malformed"))?;
    if claims.exp <= now {
        return Err(Error::Token("the login token has expired; log in again"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (StaticKey, StaticKey) {
        (
            StaticKey::generate().unwrap(),
            StaticKey::generate().unwrap(),
        )
    }

    #[test]
    fn handshake_agrees_and_envelopes_round_trip() {
        let (hub, dev) = pair();
        let (init, hello) = Initiator::start("d1", &dev, hub.public(), 1000, "c1").unwrap();
        let (hk, welcome) = accept(&hub, dev.public(), &hello, "s1", 2000, 1010).unwrap();
        let dk = init.finish(&welcome, &dev).unwrap();
        let env = dk.seal_request(Route::Query, 1, b"hello hub").unwrap();
        assert_eq!(
            hk.open_request(Route::Query, &env).unwrap().as_slice(),
            b"hello hub"
        );
        let ans = hk.seal_response(Route::Query, 1, b"hello device").unwrap();
        assert_eq!(
            dk.open_response(Route::Query, 1, &ans).unwrap().as_slice(),
            b"hello device"
        );
        // The plaintext does not appear in the envelope.
        assert!(!serde_json::to_string(&env).unwrap().contains("hello"));
    }

    #[test]
    fn wrong_hub_key_fails_at_the_device() {
        let (hub, dev) = pair();
        let impostor = StaticKey::generate().unwrap();
        // The device pinned `hub`, but `impostor` answers: it cannot open the proof.
        let (_, hello) = Initiator::start("d1", &dev, hub.public(), 1000, "c1").unwrap();
        assert!(accept(&impostor, dev.public(), &hello, "s", 2000, 1000).is_err());
        // Even if the impostor skips the proof and answers, the device refuses the confirm.
        let (init, hello) = Initiator::start("d1", &dev, hub.public(), 1000, "c1").unwrap();
        let (_, forged) = accept_without_proof(&impostor, dev.public(), &hello);
        assert!(init.finish(&forged, &dev).is_err());
    }

    fn accept_without_proof(
        hub: &StaticKey,
        device: [u8; 32],
        hello: &Hello,
    ) -> (SessionKeys, Welcome) {
        let e = key32(&unb64(&hello.ephemeral, "").unwrap(), "").unwrap();
        let f_secret = StaticSecret::from(random_bytes::<32>().unwrap());
        let f = PublicKey::from(&f_secret).to_bytes();
        let ikm = concat(&[
            &dh(&f_secret, &e).unwrap(),
            &dh(&hub.0, &e).unwrap(),
            &dh(&f_secret, &device).unwrap(),
            &dh(&hub.0, &device).unwrap(),
        ]);
        let keys = session_keys(&ikm, &hub.public(), &device, &e, &f, "s").unwrap();
        let confirm = seal(
            &keys.h2d,
            0,
            welcome_aad("s", &hello.device).as_bytes(),
            b"welcome",
        )
        .unwrap();
        (
            keys,
            Welcome {
                session: "s".into(),
                ephemeral: b64(&f),
                expires: 0,
                confirm: b64(&confirm),
            },
        )
    }

    #[test]
    fn a_device_key_other_than_the_registered_one_is_refused() {
        let (hub, dev) = pair();
        let other = StaticKey::generate().unwrap();
        let (_, hello) = Initiator::start("d1", &other, hub.public(), 1000, "c1").unwrap();
        assert!(accept(&hub, dev.public(), &hello, "s", 2000, 1000).is_err());
    }

    #[test]
    fn stale_hello_and_tampering_are_refused() {
        let (hub, dev) = pair();
        let (_, hello) = Initiator::start("d1", &dev, hub.public(), 1000, "c1").unwrap();
        assert!(
            accept(
                &hub,
                dev.public(),
                &hello,
                "s",
                0,
                1000 + MAX_CLOCK_SKEW_SECS + 1
            )
            .is_err()
        );
        let mut renamed = hello.clone();
        renamed.device = "d2".into();
        assert!(accept(&hub, dev.public(), &renamed, "s", 0, 1000).is_err());
        // The challenge is bound into the proof: a captured hello cannot be moved to a fresh
        // challenge.
        let mut moved = hello.clone();
        moved.challenge = "c2".into();
        assert!(accept(&hub, dev.public(), &moved, "s", 0, 1000).is_err());

        let (init, hello) = Initiator::start("d1", &dev, hub.public(), 1000, "c1").unwrap();
        let (hk, w) = accept(&hub, dev.public(), &hello, "s", 0, 1000).unwrap();
        let dk = init.finish(&w, &dev).unwrap();
        let env = dk.seal_request(Route::Command, 5, b"payload").unwrap();
        // Flip one ciphertext byte.
        let mut raw = unb64(&env.data, "").unwrap();
        raw[3] ^= 1;
        let flipped = Envelope {
            data: b64(&raw),
            ..env.clone()
        };
        assert!(hk.open_request(Route::Command, &flipped).is_err());
        // Change the counter or the route.
        assert!(
            hk.open_request(
                Route::Command,
                &Envelope {
                    counter: 6,
                    ..env.clone()
                }
            )
            .is_err()
        );
        assert!(hk.open_request(Route::Query, &env).is_err());
        assert!(hk.open_request(Route::Command, &env).is_ok());
    }

    #[test]
    fn pairing_messages_only_open_at_the_hub() {
        let hub = StaticKey::generate().unwrap();
        let (m, key) = seal_to_hub(hub.public(), b"token").unwrap();
        let (plain, hub_key) = open_from_device(&hub, &m).unwrap();
        assert_eq!(plain.as_slice(), b"token");
        let ans = hub_key.seal_answer(b"ok").unwrap();
        assert_eq!(key.open_answer(&ans).unwrap().as_slice(), b"ok");
        let other = StaticKey::generate().unwrap();
        assert!(open_from_device(&other, &m).is_err());
    }

    #[test]
    fn tokens_are_signed_and_expire() {
        let key = SigningKey::from_bytes(&random_bytes::<32>().unwrap());
        let claims = Claims {
            sub: "a@clinic".into(),
            role: crate::Role::Nurse,
            dev: "d".into(),
            sid: "s".into(),
            exp: 100,
            stamp: "0123".into(),
        };
        let t = sign_token(&key, &claims).unwrap();
        assert_eq!(verify_token(&key.verifying_key(), &t, 99).unwrap(), claims);
        assert!(verify_token(&key.verifying_key(), &t, 100).is_err());
        let other = SigningKey::from_bytes(&random_bytes::<32>().unwrap());
        assert!(verify_token(&other.verifying_key(), &t, 0).is_err());
        let (body, sig) = t.split_once('.').unwrap();
        let mut c = claims.clone();
        c.role = crate::Role::Admin;
        let forged = format!("{}.{sig}", b64(&serde_json::to_vec(&c).unwrap()));
        assert_ne!(forged.split_once('.').unwrap().0, body);
        assert!(verify_token(&key.verifying_key(), &forged, 0).is_err());
    }
}
