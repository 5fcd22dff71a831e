//! A node's data folder: the encrypted database file, the vault file (users' wraps of the data
//! key) and the device secret. Unlocking reads the vault, checks the attempt throttle, opens the
//! data key with the user's PIN and opens the database with it.
//!
//! ```text
//! <data-dir>/hearth.db        SQLCipher database (and -wal, -shm)
//! <data-dir>/vault.json       wraps of the data key, PIN policy, attempt counters; no secret
//! <data-dir>/device.secret    32 random bytes, mode 0600, never inside the database
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault::{Dek, DeviceSecret, Gate, KdfParams, Pin, PinPolicy, Role, VaultFile};

use crate::Error;
use crate::store::Store;

/// The database file's name in a data folder.
pub const DB_FILE: &str = "hearth.db";
/// The vault file's name.
pub const VAULT_FILE: &str = "vault.json";
/// The device secret file's name.
pub const DEVICE_SECRET_FILE: &str = "device.secret";
/// A vault written during a re-key, before the database is re-encrypted.
const PENDING_VAULT_FILE: &str = "vault.json.rekey";

/// Choices made when a node is created.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Argon2id cost for the first user's wrap.
    pub kdf: KdfParams,
    /// PIN and attempt rules.
    pub policy: PinPolicy,
}

/// A node's data folder, locked: nothing decrypted yet.
pub struct DataDir {
    path: PathBuf,
    vault: VaultFile,
    device: DeviceSecret,
}

/// An unlocked node: the open store and the user who unlocked it. Dropping it drops (and
/// zeroizes) the data key.
pub struct Unlocked {
    /// The open database file. Private: clinical data is reached through `records::Records`
    /// (the gate); the other ways in are named for what they are for ([`Unlocked::replica`],
    /// [`Unlocked::admin_store`]), so every path around the gate is visible and justified.
    pub(crate) store: Arc<Store>,
    /// Who unlocked it.
    pub user: String,
    /// Their role.
    pub role: Role,
    pub(crate) dek: Dek,
    dir: DataDir,
}

/// Who is acting: the one type every layer uses for "who" (the records layer, the app, the
/// CLI, the hub's CouchDB API and RPC, the replicator's audit, the relay).
///
/// - A person on an unlocked device (issued only by [`Unlocked::session`] and
///   [`Unlocked::login`], so no clinical operation runs without an unlock and a login);
/// - a hub account, after the hub checked its password or token ([`Session::account`]),
///   through a paired device or directly;
/// - a hub's relay ([`Session::relay`]): the hub itself replicating with its upstream. It has
///   no role, so it opens no records and passes no role check; the replicator's own endpoint
///   is all it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    user: String,
    role: Option<Role>,
    device: Option<String>,
}

impl Session {
    /// A hub account's session, once the hub has checked its credentials; `device` is the
    /// paired device the call came through (RPC).
    pub fn account(account: &crate::Account, device: Option<String>) -> Session {
        Session {
            user: account.name.clone(),
            role: Some(account.role),
            device,
        }
    }

    /// A hub's relay to its upstream (audited as `relay`).
    pub fn relay() -> Session {
        Session {
            user: "relay".into(),
            role: None,
            device: None,
        }
    }

    /// The user or account name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Their role (none for the relay).
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// The role as the audit trail records it (`relay` for the relay).
    pub fn audit_role(&self) -> &'static str {
        self.role.map_or("relay", Role::as_str)
    }

    /// Whether they administer this node.
    pub fn is_admin(&self) -> bool {
        self.role.is_some_and(Role::is_admin)
    }

    /// The device they are on (a device session), or came through (a hub account over RPC).
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// An audit event by them, `success` unless changed.
    pub fn event(&self, action: &str) -> crate::AuditEvent {
        crate::AuditEvent {
            user: self.user.clone(),
            role: self.audit_role().to_owned(),
            action: action.to_owned(),
            outcome: "success".into(),
            ..crate::AuditEvent::default()
        }
    }
}

/// Writes a file atomically: temp file, fsync, rename, fsync the folder.
fn write_atomic(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| Error::Io(what, e))?;
    f.write_all(bytes).map_err(|e| Error::Io(what, e))?;
    f.sync_all().map_err(|e| Error::Io(what, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::Io(what, e))?;
    // Make the rename itself durable; a folder that cannot be opened for syncing (some
    // platforms) still has the file renamed.
    if let Some(Ok(d)) = path.parent().map(fs::File::open) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a new private file (mode 0600 on Unix), synced: a node file restored from a backup.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .map_err(|e| Error::Io("writing a restored node file", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Io("writing a restored node file", e))
}

#[cfg(unix)]
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io("creating the device secret file", e))?;
    f.write_all(bytes)
        .map_err(|e| Error::Io("writing the device secret file", e))?;
    f.sync_all()
        .map_err(|e| Error::Io("writing the device secret file", e))?;
    Ok(())
}

#[cfg(unix)]
fn check_secret_mode(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| Error::Io("reading the device secret file", e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureSecretFile(mode));
    }
    Ok(())
}

#[cfg(not(unix))]
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::write(path, bytes).map_err(|e| Error::Io("writing the device secret file", e))
}

#[cfg(not(unix))]
fn check_secret_mode(_path: &Path) -> Result<(), Error> {
    Ok(())
}

impl DataDir {
    /// Creates a new node in `path`: device secret, vault with its first admin, and an empty
    /// encrypted database. Refuses a folder that already holds a node.
    pub fn init(path: &Path, admin: &str, pin: &Pin, opts: &InitOptions) -> Result<DataDir, Error> {
        fs::create_dir_all(path).map_err(|e| Error::Io("creating the data folder", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        }
        for f in [DB_FILE, VAULT_FILE, DEVICE_SECRET_FILE] {
            if path.join(f).exists() {
                return Err(Error::AlreadyInitialized);
            }
        }
        let device = DeviceSecret::generate()?;
        let (vault, dek) = VaultFile::create(admin, pin, &opts.kdf, opts.policy.clone(), &device)?;
        write_secret_file(&path.join(DEVICE_SECRET_FILE), device.expose_bytes())?;
        // Create the database before publishing the vault: a folder with a vault file always
        // has a database its key opens.
        Store::open(&path.join(DB_FILE), &dek)?;
        write_atomic(
            &path.join(VAULT_FILE),
            &vault.to_json(),
            "writing the vault file",
        )?;
        Ok(DataDir {
            path: path.to_owned(),
            vault,
            device,
        })
    }

    /// Opens a data folder without unlocking it.
    pub fn open(path: &Path) -> Result<DataDir, Error> {
        let vault_path = path.join(VAULT_FILE);
        if !vault_path.exists() {
            return Err(Error::NotInitialized);
        }
        let secret_path = path.join(DEVICE_SECRET_FILE);
        check_secret_mode(&secret_path)?;
        let secret =
            fs::read(&secret_path).map_err(|e| Error::Io("reading the device secret file", e))?;
        let device = DeviceSecret::from_bytes(&secret)?;
        let vault = VaultFile::from_json(
            &fs::read(&vault_path).map_err(|e| Error::Io("reading the vault file", e))?,
        )?;
        Ok(DataDir {
            path: path.to_owned(),
            vault,
            device,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vault file's contents (no secrets in it).
    pub fn vault(&self) -> &VaultFile {
        &self.vault
    }

    /// The node's device secret (for sealing other secrets the way the data key is wrapped,
    /// e.g. a hub's secrets vault).
    pub fn device_secret(&self) -> &vault::DeviceSecret {
        &self.device
    }

    fn save_vault(&self) -> Result<(), Error> {
        write_atomic(
            &self.path.join(VAULT_FILE),
            &self.vault.to_json(),
            "writing the vault file",
        )
    }

    /// Unlocks with a user's PIN. The attempt is counted (and saved) before the PIN is tried,
    /// so killing the process cannot dodge the counter; success clears it.
    pub fn unlock(self, user: &str, pin: &Pin) -> Result<Unlocked, Error> {
        self.unlock_with_code(user, pin, None)
    }

    /// Whether unlocking as `user` needs an authenticator code too.
    pub fn needs_code(&self, user: &str) -> bool {
        self.vault.totp_required(user)
    }

    /// Unlocks with a PIN and, where the user or their role requires it, an authenticator code
    /// (RFC 6238, checked offline). A wrong code counts as a failed attempt.
    pub fn unlock_with_code(
        self,
        user: &str,
        pin: &Pin,
        code: Option<&str>,
    ) -> Result<Unlocked, Error> {
        self.unlock_inner(user, pin, code, false)
    }

    /// Unlocks beside a running app or hub that owns the file ([`Store::open_alongside`]): for
    /// taking a backup without stopping it. Same checks and audit as [`DataDir::unlock`].
    pub fn unlock_alongside(
        self,
        user: &str,
        pin: &Pin,
        code: Option<&str>,
    ) -> Result<Unlocked, Error> {
        self.unlock_inner(user, pin, code, true)
    }

    fn unlock_inner(
        mut self,
        user: &str,
        pin: &Pin,
        code: Option<&str>,
        alongside: bool,
    ) -> Result<Unlocked, Error> {
        let t = crate::store::now_secs().max(0) as u64;
        if let Gate::Wait(secs) = self.vault.gate(user, t)? {
            return Err(Error::Throttled(secs));
        }
        self.vault.note_attempt(user, t);
        self.save_vault()?;
        let dek = self.vault.open(user, pin, &self.device)?;
        self.vault.check_totp(&dek, user, code, t as i64)?;
        let opened = if alongside {
            Store::open_alongside(&self.path.join(DB_FILE), &dek)
        } else {
            Store::open(&self.path.join(DB_FILE), &dek)
        };
        let store = match opened {
            Ok(s) => s,
            Err(Error::NotADatabase) if self.path.join(PENDING_VAULT_FILE).exists() => {
                return self.finish_interrupted_rekey(user, pin, code, t as i64);
            }
            Err(e) => return Err(e),
        };
        let role = self.vault.role(user).ok_or(vault::Error::NoSuchUser)?;
        // Failed attempts could not be written to the trail when they happened (no key yet):
        // write them now, with the successful login, before the counter is cleared.
        let failed = self
            .vault
            .users
            .get(user)
            .map_or(0, |u| u.failed_attempts.saturating_sub(1));
        let mut events = Vec::new();
        if failed > 0 {
            events.push(crate::AuditEvent {
                user: user.to_owned(),
                role: role.to_string(),
                action: "login_failed".into(),
                outcome: "failure".into(),
                detail: Some(format!(
                    "{failed} failed unlock attempt(s) since the last unlock"
                )),
                ..crate::AuditEvent::default()
            });
        }
        events.push(crate::AuditEvent {
            user: user.to_owned(),
            role: role.to_string(),
            action: "login".into(),
            outcome: "success".into(),
            ..crate::AuditEvent::default()
        });
        store.audit_append(&events)?;
        self.vault.note_success(user);
        self.save_vault()?;
        Ok(Unlocked {
            store: Arc::new(store),
            user: user.to_owned(),
            role,
            dek,
            dir: self,
        })
    }

    /// A re-key was interrupted after the database was re-encrypted but before the new vault
    /// was published: publish it now.
    fn finish_interrupted_rekey(
        mut self,
        user: &str,
        pin: &Pin,
        code: Option<&str>,
        now: i64,
    ) -> Result<Unlocked, Error> {
        let pending_path = self.path.join(PENDING_VAULT_FILE);
        let pending = VaultFile::from_json(
            &fs::read(&pending_path).map_err(|e| Error::Io("reading the pending vault file", e))?,
        )?;
        let dek = pending.open(user, pin, &self.device)?;
        pending.check_totp(&dek, user, code, now)?;
        let store = Store::open(&self.path.join(DB_FILE), &dek)?;
        self.vault = pending;
        self.vault.note_success(user);
        self.save_vault()?;
        fs::remove_file(&pending_path)
            .map_err(|e| Error::Io("removing the pending vault file", e))?;
        let role = self.vault.role(user).ok_or(vault::Error::NoSuchUser)?;
        Ok(Unlocked {
            store: Arc::new(store),
            user: user.to_owned(),
            role,
            dek,
            dir: self,
        })
    }
}

impl Unlocked {
    /// The session of the user who unlocked the node.
    pub fn session(&self) -> Result<Session, Error> {
        let (device, _) = self.store.device_identity()?;
        Ok(Session {
            user: self.user.clone(),
            role: Some(self.role),
            device: Some(device),
        })
    }

    /// Another user logs in on this unlocked node (a shared tablet, the app): their PIN must
    /// open their own wrap of the data key, and their authenticator code is checked where
    /// required. Attempts are counted and throttled as at unlock; success and failure are
    /// audited.
    pub fn login(&mut self, user: &str, pin: &Pin, code: Option<&str>) -> Result<Session, Error> {
        let t = crate::store::now_secs().max(0) as u64;
        if let Gate::Wait(secs) = self.dir.vault.gate(user, t)? {
            return Err(Error::Throttled(secs));
        }
        self.dir.vault.note_attempt(user, t);
        self.dir.save_vault()?;
        let checked = self
            .dir
            .vault
            .open(user, pin, &self.dir.device)
            .and_then(|_| self.dir.vault.check_totp(&self.dek, user, code, t as i64));
        let role = self.dir.vault.role(user);
        let outcome = if checked.is_ok() {
            "success"
        } else {
            "failure"
        };
        self.store.audit_append(&[crate::AuditEvent {
            user: user.to_owned(),
            role: role.map(|r| r.to_string()).unwrap_or_default(),
            action: if checked.is_ok() {
                "login".into()
            } else {
                "login_failed".into()
            },
            outcome: outcome.into(),
            ..crate::AuditEvent::default()
        }])?;
        checked?;
        let role = role.ok_or(vault::Error::NoSuchUser)?;
        self.dir.vault.note_success(user);
        self.dir.save_vault()?;
        let (device, _) = self.store.device_identity()?;
        Ok(Session {
            user: user.to_owned(),
            role: Some(role),
            device: Some(device),
        })
    }

    /// Records an account or key change (the user concerned goes in `detail`: staff names are
    /// not PHI).
    pub(crate) fn audit_event(&self, action: &str, detail: String) -> Result<(), Error> {
        self.audit(action, detail)
    }

    fn audit(&self, action: &str, detail: String) -> Result<(), Error> {
        self.store.audit_append(&[crate::AuditEvent {
            user: self.user.clone(),
            role: self.role.to_string(),
            action: action.into(),
            outcome: "success".into(),
            detail: Some(detail),
            ..crate::AuditEvent::default()
        }])?;
        Ok(())
    }

    /// The store as this node's replica: for the layers that enforce access themselves — the
    /// FHIR records layer (`records::Records`, the permission matrix and audit), the replicator
    /// (`replicate::LocalDb`, which audits each run as its session), pairing and sync settings.
    /// Code that reads or writes records goes through `Records`, never through this.
    pub fn replica(&self) -> &Arc<Store> {
        &self.store
    }

    /// The raw store, for an administrator's tools (`hearth doc|db|changes`, backups, a hub's
    /// own services): refused to any other role, and each grant is an audit entry naming
    /// `what` it is for.
    pub fn admin_store(&self, what: &str) -> Result<&Arc<Store>, Error> {
        if let Err(e) = self.require_admin() {
            self.store.audit_append(&[crate::AuditEvent {
                user: self.user.clone(),
                role: self.role.to_string(),
                action: "denied".into(),
                outcome: "denied".into(),
                detail: Some(format!("raw store: {what}")),
                ..crate::AuditEvent::default()
            }])?;
            return Err(e);
        }
        Ok(&self.store)
    }

    pub(crate) fn require_admin(&self) -> Result<(), Error> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(Error::NotAdmin)
        }
    }

    /// The vault file's contents.
    pub fn vault(&self) -> &VaultFile {
        &self.dir.vault
    }

    /// The node's device secret (see [`DataDir::device_secret`]).
    pub fn device_secret(&self) -> &vault::DeviceSecret {
        &self.dir.device
    }

    /// The data folder.
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// Adds a user with their own wrap of the data key (admin only).
    pub fn add_user(
        &mut self,
        name: &str,
        role: Role,
        pin: &Pin,
        kdf: &KdfParams,
    ) -> Result<(), Error> {
        self.require_admin()?;
        self.dir
            .vault
            .add_user(&self.dek, name, role, pin, kdf, &self.dir.device)?;
        self.dir.save_vault()?;
        self.audit("user_change", format!("added {name} as {role}"))
    }

    /// Removes a user's wrap (admin only). Their PIN no longer opens anything.
    pub fn remove_user(&mut self, name: &str) -> Result<(), Error> {
        self.require_admin()?;
        self.dir.vault.remove_user(name)?;
        self.dir.save_vault()?;
        self.audit("user_change", format!("removed {name}"))
    }

    /// Sets a new PIN: for yourself, or (admin only) for another user, which also clears their
    /// lockout. Re-wraps the data key only; the database is untouched.
    pub fn set_pin(&mut self, name: &str, pin: &Pin) -> Result<(), Error> {
        if name != self.user {
            self.require_admin()?;
        }
        let kdf = self
            .dir
            .vault
            .users
            .get(name)
            .and_then(|u| u.wrap.as_ref())
            .map(|w| w.kdf)
            .unwrap_or_else(|| {
                self.dir
                    .vault
                    .users
                    .get(&self.user)
                    .and_then(|u| u.wrap.as_ref())
                    .map(|w| w.kdf)
                    .unwrap_or_default()
            });
        self.dir
            .vault
            .set_pin(&self.dek, name, pin, &kdf, &self.dir.device)?;
        self.dir.save_vault()?;
        self.audit("user_change", format!("new PIN for {name}"))
    }

    /// Enrolls an authenticator for yourself, or (admin) for another user; returns the secret
    /// to load into the authenticator app (shown once).
    pub fn enroll_totp(&mut self, name: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        if name != self.user {
            self.require_admin()?;
        }
        let secret = self.dir.vault.enroll_totp(&self.dek, name)?;
        self.dir.save_vault()?;
        self.audit("user_change", format!("authenticator enrolled for {name}"))?;
        Ok(secret)
    }

    /// Requires (or stops requiring) an authenticator code for a role (admin only).
    pub fn require_totp(&mut self, role: Role, required: bool) -> Result<(), Error> {
        self.require_admin()?;
        let roles = &mut self.dir.vault.policy.totp_roles;
        roles.retain(|r| *r != role);
        if required {
            roles.push(role);
        }
        self.dir.save_vault()?;
        self.audit(
            "user_change",
            format!(
                "authenticator {} for role {role}",
                if required { "required" } else { "optional" }
            ),
        )
    }

    /// Re-encrypts the whole database under a new data key (admin only, with their PIN). Other
    /// users must be given a new PIN by an admin afterwards.
    ///
    /// Crash-safe order: the new vault is written beside the old one, the database is
    /// re-keyed, then the new vault replaces the old. An interruption in between is finished by
    /// the next unlock.
    pub fn rekey(&mut self, pin: &Pin) -> Result<(), Error> {
        self.require_admin()?;
        // Prove the PIN first: the new wrap must be openable by it.
        self.dir.vault.open(&self.user, pin, &self.dir.device)?;
        let new_dek = Dek::generate()?;
        let next =
            self.dir
                .vault
                .rekeyed(&self.dek, &new_dek, &self.user, pin, &self.dir.device)?;
        let pending = self.dir.path.join(PENDING_VAULT_FILE);
        write_atomic(&pending, &next.to_json(), "writing the pending vault file")?;
        self.store.rekey(&new_dek)?;
        self.dir.vault = next;
        self.dir.save_vault()?;
        fs::remove_file(&pending).map_err(|e| Error::Io("removing the pending vault file", e))?;
        self.dek = new_dek;
        self.audit(
            "key_change",
            "database re-keyed; other users' PINs reset".into(),
        )
    }
}
