//! One module per subcommand.

pub mod app;
pub mod audit;
pub mod backup;
pub mod changes;
pub mod conflicts;
pub mod db;
pub mod demo;
pub mod doc;
pub mod fhir;
pub mod hub;
pub mod init;
pub mod pair;
pub mod sync;
pub mod user;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use store::{AuditEvent, DataDir, Role, Unlocked};

use crate::input::Input;

/// The database commands use when `--db` is not given.
pub const DEFAULT_DB: &str = "records";

/// What every command gets: where the data is, who is unlocking, and where input comes from.
pub struct Context {
    pub data_dir: PathBuf,
    pub user: Option<String>,
    pub input: Input,
}

impl Context {
    pub fn new(data_dir: PathBuf, user: Option<String>, pin_stdin: bool) -> Context {
        Context {
            data_dir,
            user,
            input: Input::new(pin_stdin),
        }
    }

    /// The `--user` value, required by commands that unlock.
    pub fn user(&self) -> Result<String> {
        self.user
            .clone()
            .context("this command unlocks the vault: name the user with --user (or HEARTH_USER)")
    }

    /// Opens the data folder and unlocks it with the user's PIN.
    pub fn unlock(&mut self) -> Result<Unlocked> {
        self.unlock_as(false)
    }

    /// Unlocks for a raw document command (`doc`, `changes`, `db`, `sync --remote local:`).
    /// These work on documents beside the permission matrix, so they are administrator tools:
    /// any other role is refused with a clear message, and the refusal is audited.
    pub fn unlock_admin(&mut self, command: &str) -> Result<Unlocked> {
        let node = self.unlock()?;
        require_role(
            &node,
            &[Role::Admin],
            command,
            "is an administrator tool: it reads and writes documents outside the permission matrix. Use `hearth fhir` (or the app) for records",
        )?;
        Ok(node)
    }

    /// Unlocks beside a running app or hub (for a backup; see `Store::open_alongside`).
    pub fn unlock_alongside(&mut self) -> Result<Unlocked> {
        self.unlock_as(true)
    }

    fn unlock_as(&mut self, alongside: bool) -> Result<Unlocked> {
        let user = self.user()?;
        let dir = DataDir::open(&self.data_dir)
            .with_context(|| format!("cannot open the data folder {}", self.data_dir.display()))?;
        let pin = self.input.pin(&format!("PIN for {user}: "))?;
        // With --pin-stdin the code is the line after the PIN.
        let code = if dir.needs_code(&user) {
            Some(self.input.pin("Authenticator code: ")?)
        } else {
            None
        };
        let code = code.as_ref().map(|c| c.expose());
        let code = code.as_ref().map(|c| c.as_str());
        let node = if alongside {
            dir.unlock_alongside(&user, &pin, code)
        } else {
            dir.unlock_with_code(&user, &pin, code)
        }
        .context("cannot unlock the vault")?;
        Ok(node)
    }
}

/// Roles that may read the audit trail: who saw which patient is itself protected
/// information, so front desk, nurses and clinicians do not read it (docs/adr/0027-raw-commands-are-administrator-tools.md).
pub const AUDIT_READERS: &[Role] = &[Role::Admin, Role::Auditor];

/// Refuses `hearth {command}` unless the unlocked user's role is one of `roles`; the refusal
/// is in the audit trail.
pub fn require_role(node: &Unlocked, roles: &[Role], command: &str, why: &str) -> Result<()> {
    if roles.contains(&node.role) {
        return Ok(());
    }
    node.replica().audit_append(&[AuditEvent {
        user: node.user.clone(),
        role: node.role.to_string(),
        action: "denied".into(),
        outcome: "denied".into(),
        detail: Some(format!("hearth {command}")),
        ..AuditEvent::default()
    }])?;
    bail!(
        "`hearth {command}` {why}. Your role is {}; this needs {}.",
        node.role,
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// The audit entry of one document an administrator read or wrote through a raw command:
/// the document as resource, and its patient where the document names one.
pub fn doc_event(
    node: &Unlocked,
    action: &str,
    id: &str,
    body: Option<&Value>,
    command: &str,
) -> AuditEvent {
    let patient = if id.starts_with("Patient/") {
        Some(id.to_owned())
    } else {
        body.and_then(records::patient_of)
    };
    AuditEvent {
        user: node.user.clone(),
        role: node.role.to_string(),
        action: action.into(),
        outcome: "success".into(),
        patient,
        resource: Some(id.to_owned()),
        detail: Some(format!("hearth {command}")),
        ..AuditEvent::default()
    }
}

/// Writes a new file readable by this account only (mode 0600 on Unix), synced; refuses to
/// replace an existing one. For key files, the app's API token and the like.
pub fn write_new(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Prints JSON to stdout, pretty.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).context("formatting JSON")?
    );
    Ok(())
}
