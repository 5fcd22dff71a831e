//! `hearth db create|list|info|delete` and `hearth check`.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum DbCommand {
    /// Create a database.
    Create { name: String },
    /// List databases.
    List,
    /// Show a database's counts and sequence.
    Info { name: String },
    /// Delete a database and everything in it.
    Delete {
        name: String,
        /// Required: deleting is permanent on this device.
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(ctx: &mut Context, cmd: DbCommand) -> Result<()> {
    let node = ctx.unlock_admin("db")?;
    let audited = |action: &str, name: &str| -> Result<()> {
        node.admin_store("hearth db")?
            .audit_append(&[store::AuditEvent {
                user: node.user.clone(),
                role: node.role.to_string(),
                action: action.into(),
                outcome: "success".into(),
                detail: Some(format!("hearth db: '{name}'")),
                ..store::AuditEvent::default()
            }])?;
        Ok(())
    };
    match cmd {
        DbCommand::Create { name } => {
            node.admin_store("hearth db")?.create_db(&name)?;
            audited("db_create", &name)?;
            outln!("Created database '{name}'.");
        }
        DbCommand::List => {
            for name in node.admin_store("hearth db")?.list_dbs()? {
                outln!("{name}");
            }
        }
        DbCommand::Info { name } => {
            let i = node.admin_store("hearth db")?.db_info(&name)?;
            print_json(&json!({
                "db_name": i.name, "doc_count": i.doc_count, "doc_del_count": i.doc_del_count,
                "update_seq": i.update_seq, "revs_limit": i.revs_limit, "instance_uuid": i.uuid,
            }))?;
        }
        DbCommand::Delete { name, yes } => {
            if !yes {
                bail!(
                    "deleting '{name}' removes all its documents from this device; add --yes to confirm"
                );
            }
            node.admin_store("hearth db")?.delete_db(&name)?;
            audited("db_delete", &name)?;
            outln!("Deleted database '{name}'.");
        }
    }
    Ok(())
}

pub fn check(ctx: &mut Context) -> Result<()> {
    let node = ctx.unlock()?;
    let problems = node.replica().integrity_check()?;
    if problems.is_empty() {
        outln!(
            "ok: {} passed SQLite and SQLCipher integrity checks",
            node.replica().path().display()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        bail!(
            "the database failed its integrity check ({} problems); keep the file and restore from a backup",
            problems.len()
        )
    }
}
