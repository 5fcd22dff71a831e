//! `hearth conflicts`: the conflict inbox — list, show (versions, common ancestor, field diff),
//! resolve by keeping a version or saving a merged one, apply the merge policies, and set them.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use records::{Policy, Records};
use serde_json::Value;

use super::{Context, DEFAULT_DB, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum ConflictsCommand {
    /// Unresolved conflicts (one line each): record, patient, policy, versions.
    List {
        /// Only this patient's (id or Patient/id).
        #[arg(long)]
        patient: Option<String>,
        /// Only this resource type.
        #[arg(long = "type", value_name = "TYPE")]
        resource_type: Option<String>,
    },
    /// One conflict as JSON: the versions, their common ancestor and the fields that differ.
    Show {
        /// `Type/id`.
        reference: String,
    },
    /// Resolve a conflict: keep one version, or save a merged resource.
    Resolve {
        /// `Type/id`.
        reference: String,
        /// The revision to keep (from `show`).
        #[arg(long, conflicts_with = "merged")]
        keep: Option<String>,
        /// A file with the merged resource (`-` for standard input).
        #[arg(long)]
        merged: Option<PathBuf>,
    },
    /// Apply the merge policies to every conflict; what they may not decide stays listed.
    Auto,
    /// Show the merge policy of every resource type, or set one (administrators).
    Policy {
        /// Resource type to set.
        resource_type: Option<String>,
        /// field-merge, keep-both, last-writer-wins or manual.
        policy: Option<String>,
    },
}

fn open(ctx: &mut Context) -> Result<Records> {
    let node = ctx.unlock()?;
    Ok(Records::new(
        node.replica().clone(),
        DEFAULT_DB,
        &node.session()?,
    )?)
}

pub fn run(ctx: &mut Context, cmd: ConflictsCommand) -> Result<()> {
    match cmd {
        ConflictsCommand::List {
            patient,
            resource_type,
        } => {
            let r = open(ctx)?;
            let list = r.conflicts(patient.as_deref(), resource_type.as_deref())?;
            if list.is_empty() {
                outln!("No unresolved conflicts.");
            }
            for c in list {
                outln!(
                    "{}\t{}\t{}\t{} versions\t{}",
                    c.id,
                    c.patient.as_deref().unwrap_or("-"),
                    c.policy.name(),
                    c.versions.len(),
                    c.diff
                        .iter()
                        .map(|d| d.field.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        ConflictsCommand::Show { reference } => {
            let r = open(ctx)?;
            let c = r.conflict(&reference)?;
            print_json(&serde_json::to_value(c).context("formatting the conflict")?)?;
        }
        ConflictsCommand::Resolve {
            reference,
            keep,
            merged,
        } => {
            let merged = match merged {
                None => None,
                Some(p) => {
                    let text = if p.as_os_str() == "-" {
                        ctx.input.rest_of_stdin()?
                    } else {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("cannot read {}", p.display()))?
                    };
                    Some(
                        serde_json::from_str::<Value>(&text)
                            .map_err(|e| anyhow!("the merged resource is not valid JSON: {e}"))?,
                    )
                }
            };
            if keep.is_none() && merged.is_none() {
                bail!(
                    "say which version to keep (--keep REV) or give a merged resource (--merged FILE)"
                );
            }
            let r = open(ctx)?;
            let res = r.resolve_conflict(&reference, keep.as_deref(), merged)?;
            outln!(
                "{} resolved; current version {}",
                res.id,
                res.rev.unwrap_or_default()
            );
        }
        ConflictsCommand::Auto => {
            let r = open(ctx)?;
            let ids = r.conflicted(0)?;
            report(&r.auto_resolve(&ids)?);
        }
        ConflictsCommand::Policy {
            resource_type,
            policy,
        } => {
            let r = open(ctx)?;
            match (resource_type, policy) {
                (Some(rt), Some(p)) => {
                    let policy: Policy = serde_json::from_value(Value::String(p.clone()))
                        .map_err(|_| anyhow!("{p:?} is not a policy: field-merge, keep-both, last-writer-wins or manual"))?;
                    r.set_merge_policy(&rt, policy)?;
                    outln!("{rt}: {}", policy.name());
                }
                (None, None) => {
                    let p = r.merge_policies()?;
                    for (rt, _) in fhir::schema::RESOURCES {
                        outln!("{rt}\t{}", p.for_type(rt).name());
                    }
                }
                _ => bail!("give both a resource type and a policy to set one"),
            }
        }
    }
    Ok(())
}

/// Prints what an automatic pass did.
pub fn report(res: &[records::Resolution]) {
    let done = res.iter().filter(|r| r.rev.is_some()).count();
    for r in res {
        match (&r.rev, &r.unresolved) {
            (Some(rev), _) => {
                let extra = if r.created.is_empty() {
                    String::new()
                } else {
                    format!(" (kept as {})", r.created.join(", "))
                };
                outln!("  {} resolved by {}: {rev}{extra}", r.id, r.policy.name());
            }
            (None, Some(why)) => outln!("  {} waits for a person: {why}", r.id),
            (None, None) => {}
        }
    }
    outln!(
        "Conflicts: {done} resolved by policy, {} waiting in the inbox (hearth conflicts list).",
        res.len() - done
    );
}
