//! `hearth changes`: a page of a database's changes feed, as CouchDB prints it.

use anyhow::Result;
use serde_json::{Value, json};
use store::{ChangesQuery, Style};

use super::{Context, DEFAULT_DB, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = DEFAULT_DB)]
    pub db: String,
    /// Only changes after this sequence.
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Newest first.
    #[arg(long)]
    pub descending: bool,
    /// main_only (the winner) or all_docs (every leaf).
    #[arg(long, default_value = "main_only", value_parser = ["main_only", "all_docs"])]
    pub style: String,
    /// Include each winning document.
    #[arg(long)]
    pub include_docs: bool,
}

pub fn run(ctx: &mut Context, a: Args) -> Result<()> {
    let node = ctx.unlock_admin("changes")?;
    let q = ChangesQuery {
        since: a.since,
        limit: a.limit,
        descending: a.descending,
        style: if a.style == "all_docs" {
            Style::AllDocs
        } else {
            Style::MainOnly
        },
        include_docs: a.include_docs,
        conflicts: false,
    };
    let page = node.admin_store("hearth changes")?.changes(&a.db, &q)?;
    // Every document shown is audited; ids alone are one entry for the listing.
    let events: Vec<_> = if a.include_docs {
        page.results
            .iter()
            .filter_map(|c| c.doc.as_ref())
            .map(|d| {
                super::doc_event(
                    &node,
                    "read",
                    d.id.as_str(),
                    Some(&Value::Object(d.body.clone())),
                    "changes --include-docs",
                )
            })
            .collect()
    } else {
        vec![store::AuditEvent {
            user: node.user.clone(),
            role: node.role.to_string(),
            action: "read".into(),
            outcome: "success".into(),
            detail: Some(format!(
                "hearth changes: {} ids of '{}'",
                page.results.len(),
                a.db
            )),
            ..store::AuditEvent::default()
        }]
    };
    node.admin_store("hearth changes")?.audit_append(&events)?;
    let results: Vec<Value> = page
        .results
        .iter()
        .map(|c| {
            let mut row = json!({
                "seq": c.seq,
                "id": c.id.as_str(),
                "changes": c.changes.iter().map(|r| json!({"rev": r.to_string()})).collect::<Vec<_>>(),
            });
            if c.deleted {
                row["deleted"] = Value::Bool(true);
            }
            if let Some(d) = &c.doc {
                row["doc"] = d.to_json();
            }
            row
        })
        .collect();
    print_json(&json!({"results": results, "last_seq": page.last_seq, "pending": page.pending}))
}
