//! `hearth sync`: replicate a database of this node with a hub or any CouchDB-compatible
//! server: push, pull or both, once or continuously.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result, anyhow, bail};
use replicate::{Endpoint, HttpDb, LocalDb, Progress, Replication, Stats};

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The database of this node.
    #[arg(long, default_value = super::DEFAULT_DB)]
    pub db: String,
    /// The other end: `http://host:port/db` (a Hearth hub, CouchDB, PouchDB Server), or
    /// `local:DB` for another database of this node.
    #[arg(long, required_unless_present = "hub", conflicts_with = "hub")]
    pub remote: Option<String>,
    /// Sync with the hub this device paired with (`hearth pair`), over its encrypted RPC
    /// transport, and push this device's audit entries to it. Log in with --remote-user.
    #[arg(long, requires = "remote_user")]
    pub hub: bool,
    /// Account on the remote. Its password is the next line of standard input with
    /// --pin-stdin, else HEARTH_REMOTE_PASSWORD, else prompted.
    #[arg(long, value_name = "NAME")]
    pub remote_user: Option<String>,
    /// Only send this node's changes.
    #[arg(long, conflicts_with = "pull")]
    pub push: bool,
    /// Only receive the remote's changes.
    #[arg(long)]
    pub pull: bool,
    /// Keep following changes until Ctrl-C.
    #[arg(long)]
    pub continuous: bool,
    /// Changes per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: u64,
    /// Allow a plain `http://` remote that is not on this machine: records and the password
    /// then cross the network unencrypted. Without it such a remote is refused.
    #[arg(long)]
    pub insecure_plain_http: bool,
}

/// Whether a remote URL is plain HTTP to another machine (loopback is this machine).
fn plain_http_off_machine(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "http" {
        return false;
    }
    match u.host() {
        Some(url::Host::Domain(d)) => !d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        None => false,
    }
}

fn bar(label: &'static str, show: bool) -> impl FnMut(&Progress<'_>) {
    move |p: &Progress<'_>| {
        if !show {
            return;
        }
        let s = p.stats;
        match p.source_seq {
            Some(total) if total > 0 => {
                let done = s.last_seq.as_u64().unwrap_or(0).min(total);
                let pct = done * 100 / total;
                let filled = (pct / 5) as usize;
                eprint!(
                    "\r\x1b[K{label} [{}{}] {pct:>3}%  {} written, {} failed",
                    "#".repeat(filled),
                    "-".repeat(20 - filled),
                    s.docs_written,
                    s.doc_write_failures
                );
            }
            _ => eprint!(
                "\r\x1b[K{label}: {} written, {} failed",
                s.docs_written, s.doc_write_failures
            ),
        }
        let _ = std::io::stderr().flush();
    }
}

fn report(label: &str, s: &Stats, show_bar: bool) {
    if show_bar {
        eprint!("\r\x1b[K");
    }
    let secs = s.elapsed_ms as f64 / 1000.0;
    let rate = if secs > 0.0 {
        s.docs_written as f64 / secs
    } else {
        0.0
    };
    outln!(
        "{label}: {} changes read, {} revisions missing, {} written, {} failed, {} retries in {secs:.2} s ({rate:.0} docs/s); checkpoint at {}",
        s.changes_read,
        s.missing_found,
        s.docs_written,
        s.doc_write_failures,
        s.retries,
        s.last_seq
    );
    for e in &s.errors {
        outln!(
            "  {label}: document {} refused: {} ({})",
            e.id,
            e.error,
            e.reason
        );
    }
}

pub fn run(ctx: &mut Context, a: Args) -> Result<()> {
    // Copying one database of this node into another moves documents outside the permission
    // matrix: an administrator tool, like `hearth doc`.
    let node = if a.remote.as_deref().is_some_and(|r| r.starts_with("local:")) {
        ctx.unlock_admin("sync --remote local:")?
    } else {
        ctx.unlock()?
    };
    let actor = node.session()?;
    node.replica().ensure_db(&a.db)?;
    // Installs the FHIR search indexer, so pulled records are searchable at once.
    let recs = records::Records::new(node.replica().clone(), &a.db, &node.session()?)
        .context("cannot open the records")?;
    // Conflicts a pull brings are resolved by policy afterwards (see `hearth conflicts`).
    let before = node.replica().update_seq(&a.db)?;
    let local = Endpoint::Local(LocalDb {
        store: node.replica().clone(),
        db: a.db.clone(),
        actor: actor.clone(),
    });
    let read_password = |ctx: &mut Context, u: &str| -> Result<zeroize::Zeroizing<String>> {
        let p = if ctx.input.reads_stdin() {
            ctx.input.pin(&format!("Password for {u}: "))?.expose()
        } else if let Ok(p) = std::env::var("HEARTH_REMOTE_PASSWORD") {
            zeroize::Zeroizing::new(p)
        } else {
            ctx.input.pin(&format!("Password for {u}: "))?.expose()
        };
        Ok(zeroize::Zeroizing::new(
            p.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    };
    let mut channel = None;
    let remote_url = a.remote.clone().unwrap_or_default();
    let remote = if a.hub {
        let user = a.remote_user.clone().unwrap_or_default();
        let password = read_password(ctx, &user)?;
        let client = std::sync::Arc::new(
            replicate::rpc::RpcClient::from_store(node.replica(), &user, &password)
                .map_err(|e| anyhow!("{e}"))?,
        );
        channel = Some(client.clone());
        Endpoint::Http(HttpDb::over_rpc(client, &a.db).map_err(|e| anyhow!("{e}"))?)
    } else if let Some(db) = remote_url.strip_prefix("local:") {
        store::validate_db_name(db).map_err(|e| anyhow!("{db:?}: {e}"))?;
        Endpoint::Local(LocalDb {
            store: node.replica().clone(),
            db: db.to_owned(),
            actor: actor.clone(),
        })
    } else {
        if plain_http_off_machine(&remote_url) && !a.insecure_plain_http {
            bail!(
                "{} is plain HTTP to another machine: records and the password would cross the network unencrypted. Use the hub's TLS address (https://…), `hearth sync --hub`, or add --insecure-plain-http if this network is yours to trust",
                remote_url.split('@').next_back().unwrap_or(&remote_url)
            );
        }
        let password = match &a.remote_user {
            None => None,
            Some(u) => Some(read_password(ctx, u)?),
        };
        Endpoint::Http(
            HttpDb::new(
                &remote_url,
                a.remote_user.as_deref(),
                password.as_ref().map(|p| p.as_str()),
            )
            .map_err(|e| anyhow!("{e}"))?,
        )
    };
    let (push, pull) = match (a.push, a.pull) {
        (true, false) => (true, false),
        (false, true) => (false, true),
        _ => (true, true),
    };
    let make = |source: &Endpoint, target: &Endpoint| {
        let mut r = Replication::new(source.clone(), target.clone());
        r.batch_size = a.batch_size.clamp(1, 10_000);
        r
    };
    let push_rep = make(&local, &remote);
    let push_again = push_rep.clone();
    let pull_rep = make(&remote, &local);
    let show = std::io::stderr().is_terminal();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the sync runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let continuous = a.continuous;
    let results = runtime.block_on(async move {
        if continuous {
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop_tx.send(true);
            });
            outln!("Replicating continuously; press Ctrl-C to stop.");
        }
        let run = |rep: Replication,
                   label: &'static str,
                   rx: tokio::sync::watch::Receiver<bool>| async move {
            let show_bar = show && !continuous;
            let r = if continuous {
                rep.run_continuous(bar(label, show_bar), rx).await
            } else {
                rep.run_once(bar(label, show_bar)).await
            };
            (label, r)
        };
        let push_f = async {
            if push {
                Some(run(push_rep, "push", stop_rx.clone()).await)
            } else {
                None
            }
        };
        let pull_f = async {
            if pull {
                Some(run(pull_rep, "pull", stop_rx.clone()).await)
            } else {
                None
            }
        };
        // Both directions at once when syncing; each has its own checkpoints.
        let (p, q) = tokio::join!(push_f, pull_f);
        vec![p, q]
    });
    let mut failed = 0;
    let mut error = None;
    for (label, r) in results.into_iter().flatten() {
        match r {
            Ok(s) => {
                report(label, &s, show && !a.continuous);
                failed += s.doc_write_failures;
                node.replica().audit_append(&[store::AuditEvent {
                    user: node.user.clone(),
                    role: node.role.to_string(),
                    action: "sync".into(),
                    outcome: if s.doc_write_failures == 0 {
                        "success"
                    } else {
                        "failure"
                    }
                    .into(),
                    patient: None,
                    resource: None,
                    detail: Some(format!(
                        "session {label} db={} written={} failed={}",
                        a.db, s.docs_written, s.doc_write_failures
                    )),
                    break_glass: false,
                }])?;
            }
            Err(e) => {
                if show {
                    eprint!("\r\x1b[K");
                }
                error.get_or_insert_with(|| anyhow!("{label} failed: {e}"));
            }
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    if pull && !a.continuous {
        let ids = recs.conflicted(before)?;
        if !ids.is_empty() {
            let res = recs.auto_resolve(&ids)?;
            super::conflicts::report(&res);
            // Share the resolutions now, so the other end does not wait for the next sync.
            if push && res.iter().any(|r| r.rev.is_some()) {
                let s = runtime
                    .block_on(push_again.run_once(|_| {}))
                    .map_err(|e| anyhow!("push of the resolutions failed: {e}"))?;
                report("push", &s, false);
                failed += s.doc_write_failures;
            }
        }
    }
    if let Some(client) = channel {
        let n = runtime
            .block_on(client.push_audit(node.replica()))
            .map_err(|e| anyhow!("the hub refused this device's audit trail: {e}"))?;
        outln!("audit: {n} entries pushed to the hub and witnessed");
    }
    if failed > 0 {
        bail!("{failed} documents were refused by the other end (listed above)");
    }
    Ok(())
}
