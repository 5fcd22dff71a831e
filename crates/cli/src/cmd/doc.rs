//! `hearth doc put|get|delete|load`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use revtree::Rev;
use serde_json::{Value, json};
use store::{DocId, DocWrite, GetOptions, OpenRev, OpenRevs};

use super::{Context, DEFAULT_DB, doc_event, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum DocCommand {
    /// Write a document (CouchDB JSON). Give the JSON inline, as @FILE, or as - to read it
    /// from standard input after any PIN line.
    Put {
        /// The JSON, @FILE, or -.
        json: String,
        /// The document id, if the JSON has no _id.
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Read a document.
    Get {
        id: String,
        /// Read this revision instead of the winner.
        #[arg(long)]
        rev: Option<String>,
        /// Include _conflicts and _deleted_conflicts.
        #[arg(long)]
        conflicts: bool,
        /// Include _revisions.
        #[arg(long)]
        revs: bool,
        /// Read several revisions: "all" for every leaf, or revisions separated by commas.
        #[arg(long)]
        open_revs: Option<String>,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Delete a document's revision (leaves a tombstone that replicates).
    Delete {
        id: String,
        /// The current revision being deleted (as CouchDB, no blind deletes).
        #[arg(long)]
        rev: String,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Load many documents from a JSON array or NDJSON file, each batch in one transaction.
    Load {
        /// The file (- for standard input after any PIN line).
        file: PathBuf,
        /// Documents per transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

pub fn run(ctx: &mut Context, cmd: DocCommand) -> Result<()> {
    match cmd {
        DocCommand::Put { json, id, db } => {
            let node = ctx.unlock_admin("doc put")?;
            let text = match json.as_str() {
                "-" => ctx.input.rest_of_stdin()?,
                s if s.starts_with('@') => std::fs::read_to_string(&s[1..])
                    .with_context(|| format!("cannot read {}", &s[1..]))?,
                s => s.to_owned(),
            };
            let value: Value =
                serde_json::from_str(&text).context("the document is not valid JSON")?;
            let write = DocWrite::from_json(value, id.as_deref())?;
            let doc_id = write.id.clone();
            let body = Value::Object(write.body.clone());
            let event = doc_event(&node, "update", doc_id.as_str(), Some(&body), "doc put");
            let rev = node
                .admin_store("hearth doc")?
                .bulk_docs_audited(&db, vec![write], true, |_| vec![event])
                .context("cannot write the document")?
                .pop()
                .context("nothing was written")?
                .context("cannot write the document")?;
            print_json(&json!({"ok": true, "id": doc_id.as_str(), "rev": rev.to_string()}))
        }
        DocCommand::Get {
            id,
            rev,
            conflicts,
            revs,
            open_revs,
            db,
        } => {
            let node = ctx.unlock_admin("doc get")?;
            let id = DocId::parse(&id)?;
            if let Some(which) = open_revs {
                let which = if which == "all" {
                    OpenRevs::All
                } else {
                    OpenRevs::Revs(which.split(',').map(parse_rev).collect::<Result<_>>()?)
                };
                let out = node
                    .admin_store("hearth doc")?
                    .open_revs(&db, &id, &which, revs, false)?;
                let events: Vec<_> = out
                    .iter()
                    .filter_map(|r| match r {
                        OpenRev::Ok(d) => Some(doc_event(
                            &node,
                            "read",
                            id.as_str(),
                            Some(&Value::Object(d.body.clone())),
                            "doc get",
                        )),
                        OpenRev::Missing(_) => None,
                    })
                    .collect();
                node.admin_store("hearth doc")?.audit_append(&events)?;
                let rows: Vec<Value> = out
                    .into_iter()
                    .map(|r| match r {
                        OpenRev::Ok(d) => json!({"ok": d.to_json()}),
                        OpenRev::Missing(r) => json!({"missing": r.to_string()}),
                    })
                    .collect();
                return print_json(&Value::Array(rows));
            }
            let opts = GetOptions {
                rev: rev.as_deref().map(parse_rev).transpose()?,
                conflicts,
                deleted_conflicts: conflicts,
                revs,
            };
            let doc = node
                .admin_store("hearth doc")?
                .get(&db, &id, &opts)
                .context("cannot read the document")?;
            node.admin_store("hearth doc")?.audit_append(&[doc_event(
                &node,
                "read",
                id.as_str(),
                Some(&Value::Object(doc.body.clone())),
                "doc get",
            )])?;
            print_json(&doc.to_json())
        }
        DocCommand::Delete { id, rev, db } => {
            let node = ctx.unlock_admin("doc delete")?;
            let id = DocId::parse(&id)?;
            let event = doc_event(&node, "delete", id.as_str(), None, "doc delete");
            let new = node
                .admin_store("hearth doc")?
                .bulk_docs_audited(
                    &db,
                    vec![DocWrite::deletion(id.clone(), parse_rev(&rev)?)],
                    true,
                    |_| vec![event],
                )
                .context("cannot delete the document")?
                .pop()
                .context("nothing was written")?
                .context("cannot delete the document")?;
            print_json(&json!({"ok": true, "id": id.as_str(), "rev": new.to_string()}))
        }
        DocCommand::Load {
            file,
            batch_size,
            db,
        } => load(ctx, &file, batch_size.max(1), &db),
    }
}

fn parse_rev(s: &str) -> Result<Rev> {
    s.trim()
        .parse::<Rev>()
        .with_context(|| "a revision looks like 3-1a2b… (generation-hash)".to_string())
}

/// Parses a JSON array or NDJSON into documents.
fn parse_many(text: &str) -> Result<Vec<Value>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: Vec<Value> =
            serde_json::from_str(trimmed).context("the file is not a valid JSON array")?;
        return Ok(v);
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .with_context(|| format!("line {} is not valid JSON", n + 1))?,
        );
    }
    Ok(out)
}

fn load(ctx: &mut Context, file: &std::path::Path, batch_size: usize, db: &str) -> Result<()> {
    let node = ctx.unlock_admin("doc load")?;
    let text = if file.as_os_str() == "-" {
        ctx.input.rest_of_stdin()?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let values = parse_many(&text)?;
    // Validate everything before writing anything.
    let mut writes = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        writes.push(
            DocWrite::from_json(v, None)
                .with_context(|| format!("document {} is invalid", i + 1))?,
        );
    }
    let total = writes.len();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (mut ok, mut failed, mut done) = (0usize, 0usize, 0usize);
    let mut rest = writes;
    while !rest.is_empty() {
        let tail = rest.split_off(batch_size.min(rest.len()));
        let batch = std::mem::replace(&mut rest, tail);
        done += batch.len();
        // One audit entry per document written, in the batch's transaction.
        let written: Vec<(String, Value)> = batch
            .iter()
            .map(|w| (w.id.as_str().to_owned(), Value::Object(w.body.clone())))
            .collect();
        let audit = |results: &[Result<Rev, store::Error>]| {
            written
                .iter()
                .zip(results)
                .filter(|(_, r)| r.is_ok())
                .map(|((id, body), _)| doc_event(&node, "update", id, Some(body), "doc load"))
                .collect()
        };
        for r in node
            .admin_store("hearth doc")?
            .bulk_docs_audited(db, batch, true, audit)
            .context("cannot write a batch")?
        {
            match r {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        if progress {
            eprint!("\rloaded {done}/{total}");
        }
    }
    if progress {
        eprintln!();
    }
    outln!("Loaded {ok} documents into '{db}'; {failed} were refused (conflicts or invalid).");
    if failed > 0 {
        bail!("{failed} of {total} documents were not written");
    }
    Ok(())
}
