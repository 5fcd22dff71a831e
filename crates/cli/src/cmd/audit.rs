//! `hearth audit verify|list`: the device's audit trail.

use anyhow::{Context as _, Result, bail};
use store::{AuditEvent, AuditFilter};

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain and the signed head; name the first bad entry.
    Verify,
    /// Remove entries older than a date at least six years back (admins only); a signed anchor
    /// keeps the rest verifiable.
    Purge {
        /// Entries before this date (YYYY-MM-DD) go.
        #[arg(long)]
        before: String,
    },
    /// Export entries as FHIR AuditEvent NDJSON on stdout (same filters as list).
    Export {
        /// Only entries about this patient (an id, or Patient/id).
        #[arg(long)]
        patient: Option<String>,
        /// Only entries by this user.
        #[arg(long)]
        by: Option<String>,
    },
    /// List entries, oldest first: who saw or changed what, when, from which device (the
    /// accounting a patient may request). Also `hearth audit report`.
    #[command(alias = "report")]
    List {
        /// Only entries about this patient (an id, or Patient/id).
        #[arg(long)]
        patient: Option<String>,
        /// Only entries by this user (`--user` is who runs the command).
        #[arg(long)]
        by: Option<String>,
        /// Only break-glass entries.
        #[arg(long)]
        break_glass: bool,
    },
}

pub fn run(ctx: &mut Context, cmd: AuditCommand) -> Result<()> {
    let node = ctx.unlock()?;
    // Who read which patient's record is itself protected: reading the entries takes the
    // auditor or administrator role, as in the app.
    if matches!(cmd, AuditCommand::List { .. } | AuditCommand::Export { .. }) {
        super::require_role(
            &node,
            super::AUDIT_READERS,
            "audit list/export",
            "shows who read which patient's record",
        )?;
    }
    match cmd {
        AuditCommand::Verify => match node.replica().audit_verify()? {
            Ok(n) => {
                let (device, _) = node.replica().device_identity()?;
                outln!(
                    "ok: {n} audit entries of device {device}: chain intact, head signed by this device."
                );
                Ok(())
            }
            Err(problem) => bail!("the audit trail failed verification: {problem}"),
        },
        AuditCommand::Purge { before } => {
            if !node.role.is_admin() {
                bail!("only an administrator can purge the audit trail");
            }
            let t = fhir::time::parse(&before)
                .filter(|_| fhir::primitives::is_date(&before))
                .with_context(|| {
                    format!("--before takes a date like 2019-01-01, not '{before}'")
                })?;
            let removed = node
                .admin_store("hearth audit purge")?
                .audit_purge(t, fhir::time::now())?;
            node.replica().audit_append(&[AuditEvent {
                user: node.user.clone(),
                role: node.role.to_string(),
                action: "audit_purge".into(),
                outcome: "success".into(),
                detail: Some(format!("{removed} entries before {before} removed")),
                ..AuditEvent::default()
            }])?;
            outln!(
                "Removed {removed} audit entries older than {before}; the rest still verifies from a signed anchor."
            );
            Ok(())
        }
        AuditCommand::Export { patient, by } => {
            let patient = reading_the_trail(&node, patient, "AuditEvent export".into())?;
            for e in node.replica().audit_list(&AuditFilter {
                patient,
                user: by,
                break_glass: false,
                newest: None,
            })? {
                outln!("{}", records::audit_event(&e));
            }
            Ok(())
        }
        AuditCommand::List {
            patient,
            by: user,
            break_glass,
        } => {
            let detail = user
                .as_ref()
                .map_or_else(|| "entries".to_owned(), |u| format!("entries of user {u}"));
            let patient = reading_the_trail(&node, patient, detail)?;
            let entries = node.replica().audit_list(&AuditFilter {
                patient,
                user,
                break_glass,
                newest: None,
            })?;
            outln!("seq\ttime\tdevice\tuser\trole\taction\toutcome\tpatient\tresource\tdetail");
            for e in entries {
                let ev = &e.event;
                outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}{}\t{}\t{}\t{}",
                    e.seq,
                    fhir::time::instant(e.time),
                    e.device,
                    ev.user,
                    ev.role,
                    ev.action,
                    ev.outcome,
                    if ev.break_glass { " (break-glass)" } else { "" },
                    ev.patient.as_deref().unwrap_or("-"),
                    ev.resource.as_deref().unwrap_or("-"),
                    ev.detail.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
    }
}

/// Reading the trail is itself recorded. Returns the patient filter as `Patient/{id}`.
fn reading_the_trail(
    node: &store::Unlocked,
    patient: Option<String>,
    detail: String,
) -> Result<Option<String>> {
    let patient = patient.map(|p| {
        if p.starts_with("Patient/") {
            p
        } else {
            format!("Patient/{p}")
        }
    });
    node.replica().audit_append(&[AuditEvent {
        user: node.user.clone(),
        role: node.role.to_string(),
        action: "audit_read".into(),
        outcome: "success".into(),
        patient: patient.clone(),
        detail: Some(detail),
        ..AuditEvent::default()
    }])?;
    Ok(patient)
}
