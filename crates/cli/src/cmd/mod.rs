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

use anyhow::{Context as _, Result};
use store::{DataDir, Unlocked};

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

/// Prints JSON to stdout, pretty.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).context("formatting JSON")?
    );
    Ok(())
}
