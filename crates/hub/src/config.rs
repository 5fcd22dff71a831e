//! The hub's one typed configuration: defaults in code, then a TOML file, then `HEARTH_HUB_*`
//! environment variables, then command-line flags (applied by the `hearth` binary). Validated
//! once at start and passed explicitly.
//!
//! ```toml
//! # hub.toml (every key optional)
//! rpc_listen = "0.0.0.0:4001"        # device-facing RPC: ciphertext only
//! couch_listen = "127.0.0.1:5984"    # CouchDB API, plain HTTP: loopback only ("" = off)
//! couch_tls_listen = "0.0.0.0:6984"  # CouchDB API over TLS with the hub's certificate ("" = off)
//! admin_listen = "127.0.0.1:4002"    # /status, /metrics, /admin: loopback only
//! public_url = ""                    # RPC address put in pairing offers (default: derived)
//! databases = ["records"]
//! session_ttl_secs = 3600
//! token_ttl_secs = 900
//! pairing_ttl_secs = 600
//! relay_interval_secs = 10
//! max_body_mib = 64
//! cache_mib = 64
//! backup_key = ""                    # hearth-backup-key:… ("" = no scheduled backups)
//! backup_dir = ""                    # where backups go (default: <data-dir>/backups)
//! backup_interval_secs = 86400       # daily (RPO ≤ 24 h)
//! backup_keep = 7                    # newest backups kept; older ones are removed
//! login_free_attempts = 5            # failed logins per account and source before the back-off
//! login_max_delay_secs = 300         # the back-off doubles from 1 s up to this
//! security_webhook = ""              # https URL new security events are posted to ("" = off)
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The hub's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Device-facing RPC listener (seed 003: `0.0.0.0:4001`).
    pub rpc_listen: String,
    /// CouchDB API without TLS: must be loopback; empty turns it off.
    pub couch_listen: String,
    /// CouchDB API over TLS; empty turns it off.
    pub couch_tls_listen: String,
    /// `/status`, `/metrics` and `/admin`: must be loopback.
    pub admin_listen: String,
    /// The RPC address devices use, written into pairing offers; empty derives it.
    pub public_url: String,
    /// Databases the hub serves and relays.
    pub databases: Vec<String>,
    /// Channel session lifetime.
    pub session_ttl_secs: u64,
    /// Login token lifetime.
    pub token_ttl_secs: u64,
    /// Pairing offer lifetime.
    pub pairing_ttl_secs: u64,
    /// Pause between relay rounds with the upstream.
    pub relay_interval_secs: u64,
    /// Largest request body.
    pub max_body_mib: usize,
    /// Database page cache.
    pub cache_mib: u32,
    /// The backup public key (`hearth-backup-key:…`); empty: no scheduled backups.
    pub backup_key: String,
    /// Where scheduled backups go; empty: `<data-dir>/backups`.
    pub backup_dir: String,
    /// Time between scheduled backups.
    pub backup_interval_secs: u64,
    /// How many backups to keep.
    pub backup_keep: u64,
    /// Failed logins of one account from one source (an address, or a paired device) before
    /// that source waits between attempts.
    pub login_free_attempts: u32,
    /// Longest wait between attempts (the back-off doubles from 1 s).
    pub login_max_delay_secs: u64,
    /// Where new security events are posted (JSON); empty: nowhere. `https://`, or `http://`
    /// to this machine only.
    pub security_webhook: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            rpc_listen: "0.0.0.0:4001".into(),
            couch_listen: "127.0.0.1:5984".into(),
            couch_tls_listen: "0.0.0.0:6984".into(),
            admin_listen: "127.0.0.1:4002".into(),
            public_url: String::new(),
            databases: vec!["records".into()],
            session_ttl_secs: 3600,
            token_ttl_secs: 900,
            pairing_ttl_secs: 600,
            relay_interval_secs: 10,
            max_body_mib: 64,
            cache_mib: 64,
            backup_key: String::new(),
            backup_dir: String::new(),
            backup_interval_secs: 86_400,
            backup_keep: 7,
            login_free_attempts: crate::auth::FREE_ATTEMPTS,
            login_max_delay_secs: crate::auth::MAX_DELAY_SECS,
            security_webhook: String::new(),
        }
    }
}

/// A configuration problem, with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn parse_addr(what: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        ConfigError(format!(
            "{what} = {s:?} is not an address like 127.0.0.1:4001"
        ))
    })
}

impl HubConfig {
    /// Defaults, then the TOML file if it exists, then `HEARTH_HUB_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<HubConfig, ConfigError> {
        let mut c = match file {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("{}: {}", p.display(), e.message())))?
            }
            _ => HubConfig::default(),
        };
        for (k, v) in env {
            let Some(key) = k.strip_prefix("HEARTH_HUB_") else {
                continue;
            };
            c.set(&key.to_ascii_lowercase(), &v)
                .map_err(|e| ConfigError(format!("{k}: {}", e.0)))?;
        }
        Ok(c)
    }

    /// Sets one key from text (environment variables and `--set key=value` flags).
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), ConfigError> {
        let num = |v: &str| -> Result<u64, ConfigError> {
            v.parse()
                .map_err(|_| ConfigError(format!("{v:?} is not a whole number")))
        };
        match key {
            "rpc_listen" => self.rpc_listen = v.into(),
            "couch_listen" => self.couch_listen = v.into(),
            "couch_tls_listen" => self.couch_tls_listen = v.into(),
            "admin_listen" => self.admin_listen = v.into(),
            "public_url" => self.public_url = v.into(),
            "databases" => {
                self.databases = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "session_ttl_secs" => self.session_ttl_secs = num(v)?,
            "token_ttl_secs" => self.token_ttl_secs = num(v)?,
            "pairing_ttl_secs" => self.pairing_ttl_secs = num(v)?,
            "relay_interval_secs" => self.relay_interval_secs = num(v)?,
            "max_body_mib" => self.max_body_mib = num(v)? as usize,
            "cache_mib" => self.cache_mib = num(v)? as u32,
            "backup_key" => self.backup_key = v.into(),
            "backup_dir" => self.backup_dir = v.into(),
            "backup_interval_secs" => self.backup_interval_secs = num(v)?,
            "backup_keep" => self.backup_keep = num(v)?,
            "login_free_attempts" => self.login_free_attempts = num(v)? as u32,
            "login_max_delay_secs" => self.login_max_delay_secs = num(v)?,
            "security_webhook" => self.security_webhook = v.into(),
            other => return Err(ConfigError(format!("unknown setting {other:?}"))),
        }
        Ok(())
    }

    /// Checks everything once; returns the parsed listeners.
    pub fn validate(&self) -> Result<Listeners, ConfigError> {
        let rpc = parse_addr("rpc_listen", &self.rpc_listen)?;
        let couch = match self.couch_listen.as_str() {
            "" => None,
            s => {
                let a = parse_addr("couch_listen", s)?;
                if !a.ip().is_loopback() {
                    return Err(ConfigError(format!(
                        "couch_listen = {s:?}: the CouchDB API without TLS is served on loopback only; use couch_tls_listen for the LAN"
                    )));
                }
                Some(a)
            }
        };
        let couch_tls = match self.couch_tls_listen.as_str() {
            "" => None,
            s => Some(parse_addr("couch_tls_listen", s)?),
        };
        let admin = parse_addr("admin_listen", &self.admin_listen)?;
        if !admin.ip().is_loopback() {
            return Err(ConfigError(format!(
                "admin_listen = {:?}: status, metrics and administration are served on loopback only",
                self.admin_listen
            )));
        }
        if self.databases.is_empty() {
            return Err(ConfigError("databases: name at least one database".into()));
        }
        for db in &self.databases {
            store::validate_db_name(db)
                .map_err(|e| ConfigError(format!("databases: {db:?}: {e}")))?;
        }
        if !self.security_webhook.is_empty() {
            let ok = match url::Url::parse(&self.security_webhook) {
                Ok(u) if u.scheme() == "https" => true,
                Ok(u) if u.scheme() == "http" => {
                    matches!(
                        u.host(),
                        Some(url::Host::Ipv4(a)) if a.is_loopback()
                    ) || matches!(u.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
                        || u.host_str() == Some("localhost")
                }
                _ => false,
            };
            if !ok {
                return Err(ConfigError(format!(
                    "security_webhook = {:?}: an https:// URL (events name people and records), or http:// to this machine",
                    self.security_webhook
                )));
            }
        }
        if self.login_free_attempts < 1 || self.login_max_delay_secs < 1 {
            return Err(ConfigError(
                "login_free_attempts and login_max_delay_secs must be at least 1".into(),
            ));
        }
        if self.token_ttl_secs < 1 || self.session_ttl_secs < 1 || self.pairing_ttl_secs < 1 {
            return Err(ConfigError("lifetimes must be at least one second".into()));
        }
        let url_ok = self.public_url.is_empty()
            || self.public_url.starts_with("http://")
            || self.public_url.starts_with("https://");
        if !url_ok {
            return Err(ConfigError("public_url must start with http://".into()));
        }
        if !self.backup_key.is_empty() {
            vault::backup::parse_public(&self.backup_key)
                .map_err(|e| ConfigError(format!("backup_key: {e}")))?;
        }
        if self.backup_interval_secs < 1 || self.backup_keep < 1 {
            return Err(ConfigError(
                "backup_interval_secs and backup_keep must be at least 1".into(),
            ));
        }
        Ok(Listeners {
            rpc,
            couch,
            couch_tls,
            admin,
        })
    }
}

/// The parsed listener addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// RPC.
    pub rpc: SocketAddr,
    /// Plain CouchDB API (loopback).
    pub couch: Option<SocketAddr>,
    /// CouchDB API over TLS.
    pub couch_tls: Option<SocketAddr>,
    /// Status, metrics, administration (loopback).
    pub admin: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_webhook_is_https_or_this_machine() {
        for (url, ok) in [
            ("", true),
            ("https://siem.clinic.example/hearth", true),
            ("http://127.0.0.1:9000/hook", true),
            ("http://[::1]:9000/hook", true),
            ("http://localhost:9000/hook", true),
            ("http://siem.clinic.example/hook", false),
            ("ftp://127.0.0.1/x", false),
            ("not a url", false),
        ] {
            let mut c = HubConfig::default();
            c.set("security_webhook", url).unwrap();
            let r = c.validate();
            assert_eq!(r.is_ok(), ok, "{url}");
            if !ok {
                assert!(r.unwrap_err().0.contains("security_webhook"), "{url}");
            }
        }
    }

    #[test]
    fn layers_apply_in_order_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hub.toml");
        std::fs::write(&f, "rpc_listen = \"127.0.0.1:9\"\ntoken_ttl_secs = 60\n").unwrap();
        let c = HubConfig::load(
            Some(&f),
            [
                ("HEARTH_HUB_TOKEN_TTL_SECS".to_owned(), "30".to_owned()),
                ("PATH".into(), "x".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.rpc_listen, "127.0.0.1:9");
        assert_eq!(c.token_ttl_secs, 30);
        assert_eq!(c.session_ttl_secs, 3600);
        c.validate().unwrap();
        std::fs::write(&f, "rpc_lisen = \"x\"\n").unwrap();
        assert!(
            HubConfig::load(Some(&f), [])
                .unwrap_err()
                .0
                .contains("rpc_lisen")
        );
        let e = HubConfig::load(None, [("HEARTH_HUB_TOKEN_TTL_SECS".into(), "soon".into())])
            .unwrap_err();
        assert!(e.0.contains("HEARTH_HUB_TOKEN_TTL_SECS"), "{e}");
        let mut c = HubConfig::default();
        c.set("couch_listen", "0.0.0.0:5984").unwrap();
        assert!(c.validate().unwrap_err().0.contains("loopback"));
        let mut c = HubConfig::default();
        c.set("admin_listen", "10.0.0.1:4002").unwrap();
        assert!(c.validate().is_err());
    }
}
