//! `hearth user add|remove|passwd|list` and `hearth rekey`.

use anyhow::{Context as _, Result};
use store::Role;
use vault::KdfParams;

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user with their own PIN (admin only). With --pin-stdin, line 2 is the new PIN.
    Add {
        name: String,
        /// Their role: admin, clinician, nurse, front_desk or auditor.
        #[arg(long)]
        role: Role,
    },
    /// Remove a user (admin only).
    Remove { name: String },
    /// Change your PIN, or (admin) set another user's PIN, which also lifts a lockout. With
    /// --pin-stdin, line 2 is the new PIN.
    Passwd {
        /// The user whose PIN changes; yourself when omitted.
        name: Option<String>,
    },
    /// List users, roles and failed-attempt counts.
    List,
    /// Enroll an authenticator app for yourself, or (admin) another user; prints the secret once.
    Totp {
        /// The user; yourself when omitted.
        name: Option<String>,
    },
    /// Require (or with --off, stop requiring) an authenticator code for a role (admin only).
    RequireTotp {
        /// The role: admin, clinician, nurse, front_desk or auditor.
        #[arg(long)]
        role: Role,
        #[arg(long)]
        off: bool,
    },
}

pub fn run(ctx: &mut Context, cmd: UserCommand) -> Result<()> {
    let mut node = ctx.unlock()?;
    match cmd {
        UserCommand::Add { name, role } => {
            let pin = ctx.input.new_pin(&format!("New PIN for {name}: "))?;
            let kdf = own_kdf(&node);
            node.add_user(&name, role, &pin, &kdf)
                .context("cannot add the user")?;
            outln!("Added user '{name}' with role '{role}'.");
        }
        UserCommand::Remove { name } => {
            node.remove_user(&name).context("cannot remove the user")?;
            outln!("Removed user '{name}'.");
        }
        UserCommand::Passwd { name } => {
            let name = name.unwrap_or_else(|| node.user.clone());
            let pin = ctx.input.new_pin(&format!("New PIN for {name}: "))?;
            node.set_pin(&name, &pin).context("cannot set the PIN")?;
            outln!("PIN changed for '{name}'.");
        }
        UserCommand::Totp { name } => {
            let name = name.unwrap_or_else(|| node.user.clone());
            let secret = node
                .enroll_totp(&name)
                .context("cannot enroll the authenticator")?;
            let b32 = vault::totp::base32(&secret);
            outln!("Authenticator secret for '{name}' (shown once; scan or type it into the app):");
            outln!("{b32}");
            outln!("otpauth://totp/Hearth:{name}?secret={b32}&issuer=Hearth&digits=6&period=30");
        }
        UserCommand::RequireTotp { role, off } => {
            node.require_totp(role, !off)
                .context("cannot change the authenticator policy")?;
            outln!(
                "Authenticator code {} for role '{role}'.",
                if off { "optional" } else { "required" }
            );
        }
        UserCommand::List => {
            for (name, u) in &node.vault().users {
                let state = if u.wrap.is_none() {
                    "needs a new PIN".to_string()
                } else if u.failed_attempts >= node.vault().policy.max_failures {
                    "locked out".to_string()
                } else {
                    format!("{} failed attempts", u.failed_attempts)
                };
                outln!("{name}\t{}\t{state}", u.role);
            }
        }
    }
    Ok(())
}

fn own_kdf(node: &store::Unlocked) -> KdfParams {
    node.vault()
        .users
        .get(&node.user)
        .and_then(|u| u.wrap.as_ref())
        .map(|w| w.kdf)
        .unwrap_or_default()
}

pub fn rekey(ctx: &mut Context) -> Result<()> {
    let mut node = ctx.unlock()?;
    let pin = ctx.input.pin(&format!(
        "PIN for {} (again, to wrap the new key): ",
        node.user
    ))?;
    node.rekey(&pin).context("cannot re-key the database")?;
    let others = node.vault().users.len() - 1;
    outln!(
        "Re-encrypted {} under a new key. {others} other user(s) need a new PIN from an administrator (hearth user passwd NAME).",
        node.replica().path().display()
    );
    Ok(())
}
