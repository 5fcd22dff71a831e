//! The hub's secrets vault (`hub-secrets.json` beside its database): the X25519 channel key
//! devices pin, the Ed25519 key that signs login tokens, the TLS certificate and key of its
//! CouchDB API, and the upstream's URL and credentials — sealed by the hub passphrase and the
//! node's device secret (`vault::sealed`). Open only while the hub runs; zeroized on drop.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use vault::channel::StaticKey;
use vault::{DeviceSecret, KdfParams, Pin};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The file name in the data folder.
pub const SECRETS_FILE: &str = "hub-secrets.json";
const CONTEXT: &[u8] = b"hearth-hub-secrets-v1";

/// Where the hub relays to.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Upstream {
    /// The upstream server's URL (without a database), e.g. `https://couch.example.org:6984`.
    pub url: String,
    /// Account name there.
    pub user: String,
    /// Its password.
    pub password: String,
    /// SHA-256 of the upstream's TLS certificate (hex) when it is pinned rather than checked
    /// against the system's certificate authorities (another Hearth hub).
    #[serde(default)]
    pub tls_fingerprint: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Stored {
    channel_key: String,
    signing_key: String,
    tls_cert: String,
    tls_key: String,
    #[serde(default)]
    upstream: Option<Upstream>,
}

/// The opened secrets.
pub struct HubSecrets {
    /// The channel key.
    pub channel: StaticKey,
    /// The token-signing key.
    pub signing: SigningKey,
    /// The TLS certificate (DER).
    pub tls_cert: Vec<u8>,
    /// The TLS private key (PKCS#8 DER).
    pub tls_key: Zeroizing<Vec<u8>>,
    /// The upstream, if configured.
    pub upstream: Option<Upstream>,
}

impl std::fmt::Debug for HubSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSecrets")
            .field("tls_fingerprint", &self.tls_fingerprint())
            .finish_non_exhaustive()
    }
}

/// Errors of the secrets vault.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No vault yet.
    #[error("this hub has no secrets vault yet; run `hearth hub init` first")]
    Missing,
    /// A vault exists already.
    #[error("this hub already has a secrets vault ({0}); refusing to replace it")]
    Exists(PathBuf),
    /// Wrong passphrase (or device secret).
    #[error("wrong hub passphrase")]
    WrongPassphrase,
    /// Key or certificate generation failed.
    #[error("cannot create the hub's keys: {0}")]
    Generate(String),
    /// Reading or writing the file.
    #[error("{0}")]
    Io(String),
    /// The file is damaged.
    #[error("the hub secrets vault is damaged: {0}")]
    Corrupt(&'static str),
}

impl HubSecrets {
    /// Fresh identity keys and a self-signed TLS certificate for `names` (host names or IP
    /// addresses the CouchDB API is reached at).
    pub fn generate(names: &[String]) -> Result<HubSecrets, SecretsError> {
        let gen_err = |e: &dyn std::fmt::Display| SecretsError::Generate(e.to_string());
        let channel = StaticKey::generate().map_err(|e| gen_err(&e))?;
        let signing = SigningKey::from_bytes(&Zeroizing::new(
            vault::random_bytes::<32>().map_err(|e| gen_err(&e))?,
        ));
        let mut names = names.to_vec();
        if !names.iter().any(|n| n == "localhost") {
            names.push("localhost".into());
        }
        if !names.iter().any(|n| n == "127.0.0.1") {
            names.push("127.0.0.1".into());
        }
        let cert = rcgen::generate_simple_self_signed(names).map_err(|e| gen_err(&e))?;
        Ok(HubSecrets {
            channel,
            signing,
            tls_cert: cert.cert.der().to_vec(),
            tls_key: Zeroizing::new(cert.key_pair.serialize_der()),
            upstream: None,
        })
    }

    /// SHA-256 of the TLS certificate (hex): pinned by devices and relays.
    pub fn tls_fingerprint(&self) -> String {
        vault::channel::fingerprint(&self.tls_cert)
    }

    /// The vault's path in a data folder.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(SECRETS_FILE)
    }

    /// Seals and writes the vault (atomically; a new vault refuses to replace an old one).
    pub fn save(
        &self,
        dir: &Path,
        passphrase: &Pin,
        device: &DeviceSecret,
        kdf: &KdfParams,
        replace: bool,
    ) -> Result<(), SecretsError> {
        let path = HubSecrets::path(dir);
        if !replace && path.exists() {
            return Err(SecretsError::Exists(path));
        }
        let stored = Stored {
            channel_key: hex::encode(*self.channel.secret_bytes()),
            signing_key: hex::encode(self.signing.to_bytes()),
            tls_cert: B64.encode(&self.tls_cert),
            tls_key: B64.encode(&*self.tls_key),
            upstream: self.upstream.clone(),
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&stored).map_err(|_| SecretsError::Corrupt("encoding"))?,
        );
        let sealed = vault::sealed::seal(&plain, passphrase, kdf, device, CONTEXT)
            .map_err(|e| SecretsError::Generate(e.to_string()))?;
        let text =
            serde_json::to_vec_pretty(&sealed).map_err(|_| SecretsError::Corrupt("encoding"))?;
        let tmp = path.with_extension("json.tmp");
        let io = |e: std::io::Error| SecretsError::Io(format!("writing {}: {e}", path.display()));
        {
            use std::io::Write as _;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(&text).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Opens the vault in `dir`.
    pub fn open(
        dir: &Path,
        passphrase: &Pin,
        device: &DeviceSecret,
    ) -> Result<HubSecrets, SecretsError> {
        let path = HubSecrets::path(dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretsError::Missing);
            }
            Err(e) => return Err(SecretsError::Io(format!("reading {}: {e}", path.display()))),
        };
        let sealed: vault::sealed::SealedBox =
            serde_json::from_slice(&text).map_err(|_| SecretsError::Corrupt("not a sealed box"))?;
        let plain =
            vault::sealed::open(&sealed, passphrase, device, CONTEXT).map_err(|e| match e {
                vault::Error::WrongPin => SecretsError::WrongPassphrase,
                _ => SecretsError::Corrupt("the content does not authenticate"),
            })?;
        let stored: Stored =
            serde_json::from_slice(&plain).map_err(|_| SecretsError::Corrupt("content"))?;
        let bytes32 = |h: &str| -> Result<Zeroizing<[u8; 32]>, SecretsError> {
            let v = Zeroizing::new(hex::decode(h).map_err(|_| SecretsError::Corrupt("key"))?);
            let arr: [u8; 32] = v
                .as_slice()
                .try_into()
                .map_err(|_| SecretsError::Corrupt("key"))?;
            Ok(Zeroizing::new(arr))
        };
        Ok(HubSecrets {
            channel: StaticKey::from_bytes(&*bytes32(&stored.channel_key)?)
                .map_err(|_| SecretsError::Corrupt("channel key"))?,
            signing: SigningKey::from_bytes(&*bytes32(&stored.signing_key)?),
            tls_cert: B64
                .decode(&stored.tls_cert)
                .map_err(|_| SecretsError::Corrupt("certificate"))?,
            tls_key: Zeroizing::new(
                B64.decode(&stored.tls_key)
                    .map_err(|_| SecretsError::Corrupt("TLS key"))?,
            ),
            upstream: stored.upstream.clone(),
        })
    }

    /// A rustls server configuration with the hub's certificate.
    pub fn tls_config(&self) -> Result<rustls::ServerConfig, SecretsError> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(self.tls_key.to_vec()),
        );
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SecretsError::Generate(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(
                    self.tls_cert.clone(),
                )],
                key,
            )
            .map_err(|e| SecretsError::Generate(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let dev = DeviceSecret::generate().unwrap();
        let kdf = KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let mut s = HubSecrets::generate(&["hub.local".into()]).unwrap();
        s.upstream = Some(Upstream {
            url: "https://up.example:6984".into(),
            user: "relay".into(),
            password: "relay-secret".into(),
            tls_fingerprint: String::new(),
        });
        s.save(dir.path(), &Pin::from("hub passphrase"), &dev, &kdf, false)
            .unwrap();
        assert!(matches!(
            s.save(dir.path(), &Pin::from("x"), &dev, &kdf, false),
            Err(SecretsError::Exists(_))
        ));
        let raw = std::fs::read_to_string(HubSecrets::path(dir.path())).unwrap();
        assert!(!raw.contains("relay-secret") && !raw.contains("up.example"));
        let o = HubSecrets::open(dir.path(), &Pin::from("hub passphrase"), &dev).unwrap();
        assert_eq!(o.channel.public(), s.channel.public());
        assert_eq!(o.tls_fingerprint(), s.tls_fingerprint());
        assert_eq!(o.upstream.as_ref().unwrap().password, "relay-secret");
        o.tls_config().unwrap();
        assert!(matches!(
            HubSecrets::open(dir.path(), &Pin::from("wrong"), &dev),
            Err(SecretsError::WrongPassphrase)
        ));
    }
}
