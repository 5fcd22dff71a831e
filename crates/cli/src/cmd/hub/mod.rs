//! `hearth hub`: the clinic hub. `init` and `start` run it (device RPC, CouchDB API, relay,
//! status); `pair`, `devices`, `status` and `audit report` talk to it while it runs; `account`
//! and `upstream` change it while it is stopped; `serve` is the CouchDB API alone, on loopback.

mod alerts;
mod relay;
mod remote;
mod start;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use store::{DataDir, InitOptions};

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum HubCommand {
    /// Create a hub: its encrypted store and its secrets vault, sealed by the hub passphrase.
    Init(start::InitArgs),
    /// Unlock the hub and serve devices (RPC), the CouchDB API, status and metrics; relay to
    /// the upstream if one is set. Ctrl-C locks it again.
    Start(start::StartArgs),
    /// Make a one-time pairing offer and show it as a QR code (the hub must be running).
    Pair(remote::PairArgs),
    /// Paired devices: list, revoke (the hub must be running).
    #[command(subcommand)]
    Devices(remote::DevicesCommand),
    /// What the running hub is doing: databases, devices, sessions, relay.
    Status(remote::StatusArgs),
    /// Audit entries the devices pushed (the hub must be running).
    #[command(subcommand)]
    Audit(remote::HubAuditCommand),
    /// Take a backup now (the hub must be running with a backup_key; scheduled ones are daily).
    Backup(remote::AdminArgs),
    /// The upstream the hub relays to (kept in its secrets vault; the hub must be stopped).
    #[command(subcommand)]
    Upstream(start::UpstreamCommand),
    /// Serve only the CouchDB-compatible API, on loopback, from any node (no RPC, no relay).
    Serve(ServeArgs),
    /// Hub accounts: who may replicate with this hub.
    #[command(subcommand)]
    Account(AccountCommand),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Plain HTTP is only served on loopback until the hub has TLS.
    #[arg(long, default_value = "127.0.0.1:5984")]
    pub listen: SocketAddr,
    /// Create the node in the data folder first if it has none (the PIN is read once, as for
    /// `hearth init`).
    #[arg(long)]
    pub init: bool,
    /// Create (or reset the password of) this administrator account before serving; its
    /// password is the next line of standard input with --pin-stdin, or prompted.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Create these databases if missing (repeatable).
    #[arg(long = "create-db", value_name = "DB")]
    pub create_db: Vec<String>,
    /// Largest accepted request body, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
    /// Database page cache, in MiB (bounds the hub's memory; devices use 256).
    #[arg(long, default_value_t = 64)]
    pub cache_mib: u32,
}

#[derive(clap::Subcommand, Debug)]
pub enum AccountCommand {
    /// Add an account, or set a new password for an existing one.
    Add {
        /// Account name, e.g. an email (letters, digits, '.', '_', '-', '@').
        name: String,
        /// Make it a hub administrator (may create and delete databases, pair devices).
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// Its role in the permission matrix: what it may read and write through the hub
        /// (admin, clinician, nurse, front_desk, auditor).
        #[arg(long, default_value = "clinician")]
        role: store::Role,
    },
    /// Remove an account.
    Remove {
        /// Account name.
        name: String,
    },
    /// List the accounts.
    List,
}

fn unlock_or_init(ctx: &mut Context, init: bool) -> Result<store::Unlocked> {
    let fresh = init
        && matches!(
            DataDir::open(&ctx.data_dir),
            Err(store::Error::NotInitialized)
        );
    if !fresh {
        return ctx.unlock();
    }
    let user = ctx.user()?;
    let pin = ctx.input.new_pin(&format!("New PIN for {user}: "))?;
    let dir = DataDir::init(&ctx.data_dir, &user, &pin, &InitOptions::default())
        .with_context(|| format!("cannot create a node in {}", ctx.data_dir.display()))?;
    eprintln!(
        "Created an encrypted node in {} with administrator '{user}'.",
        ctx.data_dir.display()
    );
    dir.unlock(&user, &pin)
        .context("cannot unlock the new vault")
}

/// An existing account's password: the next input line, or prompted.
fn account_password(ctx: &mut Context, name: &str) -> Result<zeroize::Zeroizing<String>> {
    let pw = ctx.input.pin(&format!("Password for {name}: "))?;
    let pw = pw.expose();
    Ok(zeroize::Zeroizing::new(
        pw.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

fn password(ctx: &mut Context, name: &str) -> Result<zeroize::Zeroizing<String>> {
    let pw = ctx
        .input
        .new_pin(&format!("Password for hub account {name}: "))?;
    let pw = pw.expose();
    Ok(zeroize::Zeroizing::new(
        pw.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

pub fn run(ctx: &mut Context, cmd: HubCommand) -> Result<()> {
    match cmd {
        HubCommand::Init(a) => start::init(ctx, a),
        HubCommand::Start(a) => start::start(ctx, a),
        HubCommand::Pair(a) => remote::pair(ctx, a),
        HubCommand::Devices(c) => remote::devices(ctx, c),
        HubCommand::Status(a) => remote::status(a),
        HubCommand::Audit(c) => remote::audit(ctx, c),
        HubCommand::Backup(a) => remote::backup(ctx, a),
        HubCommand::Upstream(c) => start::upstream(ctx, c),
        HubCommand::Serve(a) => serve(ctx, a),
        HubCommand::Account(c) => account(ctx, c),
    }
}

fn account(ctx: &mut Context, cmd: AccountCommand) -> Result<()> {
    if ctx.user.is_none()
        && store::DataDir::open(&ctx.data_dir).is_ok()
        && hub::secrets::HubSecrets::path(&ctx.data_dir).exists()
    {
        ctx.user = Some(start::HUB_USER.to_owned());
    }
    let node = ctx.unlock()?;
    if !node.role.is_admin() {
        bail!("only an administrator of this node can manage hub accounts");
    }
    let hub = hub::Hub::new(node.admin_store("hearth hub")?.clone())
        .map_err(|e| anyhow!("{}", e.reason))?;
    match cmd {
        AccountCommand::Add { name, admin, role } => {
            let role = if admin { store::Role::Admin } else { role };
            let admin = role.is_admin();
            let pw = password(ctx, &name)?;
            hub.set_account_role(&name, &pw, role)
                .map_err(|e| anyhow!("cannot save the account: {}", e.reason))?;
            node.admin_store("hearth hub")?
                .audit_append(&[store::AuditEvent {
                    detail: Some(format!("hub account {name} set (role={role})")),
                    ..node.session()?.event("user_change")
                }])?;
            outln!(
                "Hub account '{name}' saved with role {role}{}.",
                if admin { " (administrator)" } else { "" }
            );
        }
        AccountCommand::Remove { name } => {
            if !node.admin_store("hearth hub")?.delete_account(&name)? {
                bail!("there is no hub account named '{name}'");
            }
            node.admin_store("hearth hub")?
                .audit_append(&[store::AuditEvent {
                    detail: Some(format!("hub account {name} removed")),
                    ..node.session()?.event("user_change")
                }])?;
            outln!("Hub account '{name}' removed.");
        }
        AccountCommand::List => {
            for a in node.admin_store("hearth hub")?.list_accounts()? {
                outln!("{}\t{}", a.name, a.role);
            }
        }
    }
    Ok(())
}

fn serve(ctx: &mut Context, a: ServeArgs) -> Result<()> {
    if !a.listen.ip().is_loopback() {
        bail!(
            "{} is not a loopback address; until the hub serves TLS, its CouchDB API listens only on 127.0.0.1 or [::1]",
            a.listen
        );
    }
    let node = unlock_or_init(ctx, a.init)?;
    node.admin_store("hearth hub")?.set_cache_mib(a.cache_mib)?;
    let hub = Arc::new(
        hub::Hub::new(node.admin_store("hearth hub")?.clone())
            .map_err(|e| anyhow!("{}", e.reason))?,
    );
    if let Some(name) = &a.account {
        let pw = password(ctx, name)?;
        hub.set_account(name, &pw, true)
            .map_err(|e| anyhow!("cannot save the hub account: {}", e.reason))?;
    }
    for db in &a.create_db {
        node.admin_store("hearth hub")?
            .ensure_db(db)
            .with_context(|| format!("cannot create the database {db}"))?;
    }
    if node.admin_store("hearth hub")?.list_accounts()?.is_empty() {
        bail!(
            "this hub has no accounts, so nobody could use it; add one with --account NAME or `hearth hub account add`"
        );
    }
    let router = hub::router(hub.clone(), a.max_body_mib.max(1) * 1024 * 1024);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the server runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        outln!("Hearth hub listening on http://{addr}/ (uuid {})", hub.uuid);
        outln!("Press Ctrl-C to stop (the database is locked again).");
        hub::serve(listener, router, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the server stopped with an error")
    })
}
