//! `hearth hub init`, `hearth hub start` and `hearth hub upstream`: the hub's lifecycle.
//!
//! `init` creates the hub's encrypted store and its secrets vault, both sealed by the hub
//! passphrase (the PIN of the hub's node user, `hub` unless `--user` says otherwise). `start`
//! unlocks both and serves: the device RPC port, the CouchDB API (loopback plain, LAN over TLS),
//! and the loopback administration port; with an upstream configured it relays. Stopping
//! (Ctrl-C or SIGTERM) drops every key: the files are encrypted at rest again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use hub::config::HubConfig;
use hub::secrets::{HubSecrets, Upstream};
use store::{DataDir, InitOptions};

use super::super::Context;

/// The user whose PIN is the hub passphrase, unless `--user` names another.
pub const HUB_USER: &str = "hub";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Configuration file (default: hub.toml in the data folder, if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Device-facing RPC address (default 0.0.0.0:4001).
    #[arg(long)]
    pub rpc_listen: Option<String>,
    /// CouchDB API without TLS, loopback only ("" turns it off).
    #[arg(long)]
    pub couch_listen: Option<String>,
    /// CouchDB API over TLS ("" turns it off).
    #[arg(long)]
    pub couch_tls_listen: Option<String>,
    /// Status, metrics and administration, loopback only.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Any other setting, as KEY=VALUE (repeatable), e.g. --set token_ttl_secs=600.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// Defaults, file, `HEARTH_HUB_*`, then these flags; validated.
    pub fn load(&self, data_dir: &Path) -> Result<(HubConfig, hub::config::Listeners)> {
        let file = self
            .config
            .clone()
            .unwrap_or_else(|| data_dir.join("hub.toml"));
        if self.config.is_some() && !file.exists() {
            bail!("the configuration file {} does not exist", file.display());
        }
        let mut c = HubConfig::load(Some(&file), std::env::vars()).map_err(|e| anyhow!("{e}"))?;
        let named = [
            ("rpc_listen", &self.rpc_listen),
            ("couch_listen", &self.couch_listen),
            ("couch_tls_listen", &self.couch_tls_listen),
            ("admin_listen", &self.admin_listen),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                c.set(k, v)
                    .map_err(|e| anyhow!("--{}: {e}", k.replace('_', "-")))?;
            }
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {kv:?}: write KEY=VALUE"))?;
            c.set(k.trim(), v.trim())
                .map_err(|e| anyhow!("--set {kv}: {e}"))?;
        }
        let l = c.validate().map_err(|e| anyhow!("{e}"))?;
        Ok((c, l))
    }
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Host names or addresses the CouchDB API's TLS certificate is valid for (repeatable;
    /// localhost and 127.0.0.1 are always included).
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,
    /// Create this hub administrator account too (its password is the next input line).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Wait for the passphrase on the administration port's web page
    /// (http://127.0.0.1:4002/ui) instead of the console.
    #[arg(long)]
    pub unlock_in_browser: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum UpstreamCommand {
    /// Relay to this upstream (a Hearth hub's or any CouchDB server's URL, without a database);
    /// its password is the next input line after the passphrase.
    Set {
        /// e.g. `https://couch.example.org:6984`
        url: String,
        /// Account on the upstream. (Its own id: named `user`, clap would also fill the global
        /// `--user` with it, and the hub would be unlocked as that name.)
        #[arg(long = "upstream-user", id = "upstream_user")]
        user: String,
        /// Pin the upstream's TLS certificate by its SHA-256 (hex), e.g. another Hearth hub's.
        #[arg(long)]
        tls_fingerprint: Option<String>,
    },
    /// Stop relaying.
    Clear,
    /// Show the configured upstream (without its password).
    Show,
}

fn hub_user(ctx: &mut Context) -> String {
    ctx.user.get_or_insert_with(|| HUB_USER.to_owned()).clone()
}

pub fn init(ctx: &mut Context, a: InitArgs) -> Result<()> {
    let (cfg, _) = a.config.load(&ctx.data_dir)?;
    let user = hub_user(ctx);
    if HubSecrets::path(&ctx.data_dir).exists() {
        bail!(
            "{} already holds a hub; start it with `hearth hub start`",
            ctx.data_dir.display()
        );
    }
    let pass = ctx
        .input
        .new_pin(&format!("New hub passphrase (for user {user}): "))?;
    let opts = InitOptions::default();
    let dir = DataDir::init(&ctx.data_dir, &user, &pass, &opts)
        .with_context(|| format!("cannot create the hub in {}", ctx.data_dir.display()))?;
    eprintln!("Generating the hub's identity keys and TLS certificate…");
    let secrets = HubSecrets::generate(&a.tls_names).map_err(|e| anyhow!("{e}"))?;
    secrets
        .save(dir.path(), &pass, dir.device_secret(), &opts.kdf, false)
        .map_err(|e| anyhow!("{e}"))?;
    let node = dir
        .unlock(&user, &pass)
        .context("cannot unlock the new hub")?;
    for db in &cfg.databases {
        node.admin_store("hearth hub start")?.ensure_db(db)?;
    }
    if let Some(name) = &a.account {
        let hub = hub::Hub::new(node.admin_store("hearth hub start")?.clone())
            .map_err(|e| anyhow!("{}", e.reason))?;
        let pw = super::password(ctx, name)?;
        hub.set_account(name, &pw, true)
            .map_err(|e| anyhow!("cannot save the account: {}", e.reason))?;
    }
    let toml = ctx.data_dir.join("hub.toml");
    if !toml.exists() {
        std::fs::write(&toml, DEFAULT_TOML)
            .with_context(|| format!("cannot write {}", toml.display()))?;
    }
    outln!("Created a hub in {}.", ctx.data_dir.display());
    outln!("  channel key   {}", hex::encode(secrets.channel.public()));
    outln!("  TLS cert      sha256 {}", secrets.tls_fingerprint());
    outln!("  settings      {}", toml.display());
    outln!(
        "Start it with: hearth hub start --data-dir {}",
        ctx.data_dir.display()
    );
    Ok(())
}

const DEFAULT_TOML: &str = "# Hearth hub settings. Every key is optional; HEARTH_HUB_<KEY> variables and flags\n\
# override this file. See `hearth hub start --help` and docs/hub.md.\n\
# rpc_listen = \"0.0.0.0:4001\"        # devices: encrypted RPC (ciphertext only)\n\
# couch_listen = \"127.0.0.1:5984\"    # CouchDB API without TLS: loopback only\n\
# couch_tls_listen = \"0.0.0.0:6984\"  # CouchDB API over TLS with the hub's certificate\n\
# admin_listen = \"127.0.0.1:4002\"    # /status, /metrics, /admin: loopback only\n\
# public_url = \"\"                    # RPC address in pairing offers (default: derived)\n\
# databases = [\"records\"]\n\
# session_ttl_secs = 3600\n\
# token_ttl_secs = 900\n\
# pairing_ttl_secs = 600\n\
# relay_interval_secs = 10\n";

/// Reads the passphrase once; opens the secrets vault and the store with it (the passphrase is
/// dropped, zeroized, on return).
fn unlock_hub(ctx: &mut Context) -> Result<(store::Unlocked, HubSecrets)> {
    let user = hub_user(ctx);
    let pass = ctx.input.pin(&format!("Hub passphrase (user {user}): "))?;
    open_hub(&ctx.data_dir, &user, &pass)
}

fn open_hub(
    data_dir: &Path,
    user: &str,
    pass: &vault::Pin,
) -> Result<(store::Unlocked, HubSecrets)> {
    let dir = DataDir::open(data_dir)
        .with_context(|| format!("cannot open the hub in {}", data_dir.display()))?;
    // The store first: its vault counts and throttles wrong passphrases.
    let node = dir.unlock(user, pass).map_err(|e| match e {
        store::Error::Vault(vault::Error::WrongCredentials | vault::Error::WrongPin) => {
            anyhow!("wrong hub passphrase")
        }
        e => anyhow::Error::new(e).context("cannot unlock the hub"),
    })?;
    let secrets =
        HubSecrets::open(node.path(), pass, node.device_secret()).map_err(|e| anyhow!("{e}"))?;
    if !node.role.is_admin() {
        bail!("{user} is not an administrator of this hub");
    }
    Ok((node, secrets))
}

/// Serves only the unlock page on the administration address until the right passphrase is
/// entered; returns the unlocked hub and the address used (kept for the real port).
fn unlock_in_browser(
    data_dir: &Path,
    user: &str,
    admin: SocketAddr,
) -> Result<(store::Unlocked, HubSecrets, SocketAddr)> {
    use axum::extract::State;
    type Slot = Arc<Mutex<Option<(store::Unlocked, HubSecrets)>>>;
    #[derive(Clone)]
    struct S {
        dir: PathBuf,
        user: String,
        slot: Slot,
        done: Arc<tokio::sync::Notify>,
    }
    #[derive(serde::Deserialize)]
    struct F {
        passphrase: String,
    }
    async fn post(
        State(s): State<S>,
        headers: axum::http::HeaderMap,
        axum::Form(f): axum::Form<F>,
    ) -> axum::response::Response {
        if !hub::admin_ui::same_origin_post(&headers) {
            return hub::admin_ui::unlock_page("cross-origin form posts are refused");
        }
        let pass = vault::Pin::from(f.passphrase.as_str());
        drop(zeroize::Zeroizing::new(f.passphrase));
        let s2 = s.clone();
        let r = tokio::task::spawn_blocking(move || open_hub(&s2.dir, &s2.user, &pass)).await;
        match r {
            Ok(Ok(opened)) => {
                *s.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(opened);
                s.done.notify_one();
                hub::admin_ui::unlock_done()
            }
            Ok(Err(e)) => hub::admin_ui::unlock_page(&format!("{e:#}")),
            Err(_) => hub::admin_ui::unlock_page("the unlock failed"),
        }
    }
    let state = S {
        dir: data_dir.to_owned(),
        user: user.to_owned(),
        slot: Arc::new(Mutex::new(None)),
        done: Arc::new(tokio::sync::Notify::new()),
    };
    let slot = state.slot.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let addr = rt.block_on(async {
        let l = bind(admin, "the unlock page").await?;
        let addr = l.local_addr()?;
        outln!("Hub locked. Unlock it at http://{addr}/ui (loopback only).");
        let done = state.done.clone();
        let router = axum::Router::new()
            .route(
                "/ui",
                axum::routing::get(|| async { hub::admin_ui::unlock_page("") }),
            )
            .route("/ui/unlock", axum::routing::post(post))
            .fallback(|| async { axum::response::Redirect::to("/ui") })
            .with_state(state);
        hub::serve(l, router, async move { done.notified().await })
            .await
            .context("the unlock page stopped with an error")?;
        Ok::<_, anyhow::Error>(addr)
    })?;
    let opened = slot
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| anyhow!("the hub was not unlocked"))?;
    Ok((opened.0, opened.1, addr))
}

pub fn upstream(ctx: &mut Context, cmd: UpstreamCommand) -> Result<()> {
    let user = hub_user(ctx);
    let dir = DataDir::open(&ctx.data_dir)
        .with_context(|| format!("cannot open the hub in {}", ctx.data_dir.display()))?;
    let pass = ctx.input.pin(&format!("Hub passphrase (user {user}): "))?;
    // Through the vault first, so a wrong passphrase here is counted and throttled like one
    // at `hub start` (issue 16); alongside, because the hub may be running.
    let node = dir
        .unlock_alongside(&user, &pass, None)
        .map_err(|e| match e {
            store::Error::Vault(vault::Error::WrongCredentials | vault::Error::WrongPin) => {
                anyhow!("wrong hub passphrase")
            }
            other => anyhow!("cannot unlock the hub: {other}"),
        })?;
    let mut secrets =
        HubSecrets::open(node.path(), &pass, node.device_secret()).map_err(|e| anyhow!("{e}"))?;
    match cmd {
        UpstreamCommand::Show => {
            match &secrets.upstream {
                None => outln!("No upstream: this hub does not relay."),
                Some(u) => outln!(
                    "Upstream {} as {}{}",
                    u.url,
                    u.user,
                    if u.tls_fingerprint.is_empty() {
                        String::new()
                    } else {
                        format!(" (certificate pinned: sha256 {})", u.tls_fingerprint)
                    }
                ),
            }
            return Ok(());
        }
        UpstreamCommand::Clear => secrets.upstream = None,
        UpstreamCommand::Set {
            url,
            user,
            tls_fingerprint,
        } => {
            let parsed = url::Url::parse(&url).map_err(|e| anyhow!("{url:?} is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.password().is_some() {
                bail!(
                    "the upstream URL is http(s)://host:port without credentials (give --upstream-user)"
                );
            }
            let fp = tls_fingerprint
                .unwrap_or_default()
                .to_ascii_lowercase()
                .replace(':', "");
            if !fp.is_empty() && (fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit())) {
                bail!("--tls-fingerprint is the certificate's SHA-256 in hex (64 digits)");
            }
            let pw = super::password(ctx, &user)?;
            secrets.upstream = Some(Upstream {
                url: url.trim_end_matches('/').to_owned(),
                user,
                password: pw.to_string(),
                tls_fingerprint: fp,
            });
        }
    }
    let kdf = InitOptions::default().kdf;
    secrets
        .save(node.path(), &pass, node.device_secret(), &kdf, true)
        .map_err(|e| anyhow!("{e}"))?;
    outln!("Saved in the hub's secrets vault; it applies at the next `hearth hub start`.");
    Ok(())
}

/// This machine's address on the LAN, for pairing offers (no packet is sent).
fn lan_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

pub fn start(ctx: &mut Context, a: StartArgs) -> Result<()> {
    let (cfg, mut listen) = a.config.load(&ctx.data_dir)?;
    let (node, secrets) = if a.unlock_in_browser {
        let user = hub_user(ctx);
        let (node, secrets, admin) = unlock_in_browser(&ctx.data_dir, &user, listen.admin)?;
        // The administration port comes back on the same address.
        listen.admin = admin;
        (node, secrets)
    } else {
        unlock_hub(ctx)?
    };
    node.admin_store("hearth hub start")?
        .set_cache_mib(cfg.cache_mib)?;
    let node = Arc::new(node);
    let backups = if cfg.backup_key.is_empty() {
        None
    } else {
        let dir = if cfg.backup_dir.is_empty() {
            ctx.data_dir.join("backups")
        } else {
            PathBuf::from(&cfg.backup_dir)
        };
        Some(Arc::new(hub::backup::Backups::new(
            node.clone(),
            dir,
            vault::backup::parse_public(&cfg.backup_key)?,
            cfg.backup_keep as usize,
            Duration::from_secs(cfg.backup_interval_secs),
        )))
    };
    for db in &cfg.databases {
        node.admin_store("hearth hub start")?.ensure_db(db)?;
    }
    let hub = Arc::new(
        hub::Hub::new(node.admin_store("hearth hub start")?.clone())
            .map_err(|e| anyhow!("{}", e.reason))?,
    );
    hub.auth
        .set_limits(cfg.login_free_attempts, cfg.login_max_delay_secs);
    if node
        .admin_store("hearth hub start")?
        .list_accounts()?
        .is_empty()
    {
        bail!(
            "this hub has no accounts, so nobody could log in; stop here and add one with `hearth hub account add NAME --role clinician` (or --admin)"
        );
    }
    let max_body = cfg.max_body_mib.max(1) * 1024 * 1024;
    let couch = hub::router(hub.clone(), max_body);
    let tls_fp = secrets.tls_fingerprint();
    let tls_config = secrets.tls_config().map_err(|e| anyhow!("{e}"))?;
    let channel_key = hex::encode(secrets.channel.public());
    let upstream = secrets.upstream.clone();
    let HubSecrets {
        channel, signing, ..
    } = secrets;
    let rpc = Arc::new(hub::rpc::Rpc::new(
        hub.clone(),
        hub::rpc::HubKeys { channel, signing },
        couch.clone(),
        hub::rpc::RpcSettings {
            session_ttl: Duration::from_secs(cfg.session_ttl_secs),
            token_ttl: Duration::from_secs(cfg.token_ttl_secs),
            max_body,
        },
    ));
    let relay: hub::admin::RelayStatus = Arc::new(Mutex::new(hub::admin::RelayState {
        upstream: upstream.as_ref().map(|u| u.url.clone()),
        ..Default::default()
    }));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the server runtime")?;
    let store_path = node.admin_store("hearth hub start")?.path().to_owned();
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let rpc_l = bind(listen.rpc, "the device RPC").await?;
        let rpc_addr = rpc_l.local_addr()?;
        let public_url = if cfg.public_url.is_empty() {
            let ip = if rpc_addr.ip().is_unspecified() {
                lan_ip().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
            } else {
                rpc_addr.ip()
            };
            format!("http://{}", SocketAddr::new(ip, rpc_addr.port()))
        } else {
            cfg.public_url.trim_end_matches('/').to_owned()
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(hub::serve(rpc_l, hub::rpc::router(rpc.clone()), stopped()));
        outln!("Hearth hub {} unlocked.", hub.uuid);
        outln!("  devices (RPC)        {public_url}  (listening on {rpc_addr})");
        if let Some(addr) = listen.couch {
            let l = bind(addr, "the CouchDB API").await?;
            outln!(
                "  CouchDB API          http://{}/  (loopback only)",
                l.local_addr()?
            );
            tasks.spawn(hub::serve(l, couch.clone(), stopped()));
        }
        let mut tls_fingerprint = None;
        if let Some(addr) = listen.couch_tls {
            let l = bind(addr, "the CouchDB API over TLS").await?;
            let la = l.local_addr()?;
            let tl = hub::tls::TlsListener::new(l, tls_config)?;
            outln!("  CouchDB API (TLS)    https://{la}/  certificate sha256 {tls_fp}");
            tls_fingerprint = Some(tls_fp.clone());
            tasks.spawn(hub::tls::serve_tls(tl, couch.clone(), stopped()));
        }
        let admin_state = Arc::new(hub::admin::AdminState {
            hub: hub.clone(),
            rpc: rpc.clone(),
            public_url: public_url.clone(),
            channel_key,
            tls_fingerprint,
            pairing_ttl: cfg.pairing_ttl_secs,
            relay: relay.clone(),
            databases: cfg.databases.clone(),
            db_file: store_path,
            started: Instant::now(),
            ui: Default::default(),
            backups: backups.clone(),
        });
        let admin_l = bind(listen.admin, "administration").await?;
        outln!(
            "  status and metrics   http://{}/status  /metrics  (loopback only)",
            admin_l.local_addr()?
        );
        tasks.spawn(hub::serve(
            admin_l,
            hub::admin::router(admin_state),
            stopped(),
        ));
        if let Some(up) = upstream {
            outln!("  relaying to          {}", up.url);
            let relay_task = super::relay::Relay {
                store: hub.store.clone(),
                upstream: up,
                databases: cfg.databases.clone(),
                interval: Duration::from_secs(cfg.relay_interval_secs.max(1)),
                status: relay.clone(),
            };
            let stop = stopped();
            tasks.spawn(async move {
                relay_task.run(stop).await;
                Ok(())
            });
        }
        if cfg.security_webhook.is_empty() {
            outln!("  security webhook     off (security_webhook in hub.toml)");
        } else {
            // The host only: a webhook URL often carries the receiver's secret.
            let host = url::Url::parse(&cfg.security_webhook)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            outln!("  security webhook     {host} (new security events, every 2 s)");
            let alerts = super::alerts::Alerts {
                store: hub.store.clone(),
                url: cfg.security_webhook.clone(),
                interval: Duration::from_secs(2),
            };
            let stop = stopped();
            tasks.spawn(async move {
                alerts.run(stop).await;
                Ok(())
            });
        }
        match &backups {
            Some(b) => {
                outln!(
                    "  backups              {} (every {} s, newest {} kept)",
                    b.state().dir,
                    cfg.backup_interval_secs,
                    cfg.backup_keep
                );
                let (b, stop) = (b.clone(), stop_tx.subscribe());
                tasks.spawn(async move {
                    b.schedule(stop).await;
                    Ok(())
                });
            }
            None => outln!("  backups              off (no backup_key in hub.toml)"),
        }
        outln!("Press Ctrl-C to stop (the hub is locked again).");
        shutdown_signal().await;
        eprintln!("Stopping; locking the hub.");
        let _ = stop_tx.send(true);
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                eprintln!("hub: a listener stopped with an error: {e}");
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    drop(runtime);
    drop(node);
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
