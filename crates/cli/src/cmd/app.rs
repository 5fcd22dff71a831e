//! `hearth app`: the device's loopback server (the local FHIR API) for the unlocked node.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8780")]
    pub listen: SocketAddr,
    /// Minutes without a request before the session locks (keys dropped; unlock with the PIN).
    #[arg(long, default_value_t = 15)]
    pub idle_minutes: u32,
    /// Seconds instead of minutes (for demonstrations and tests of the auto-lock).
    #[arg(long, hide = true)]
    pub idle_seconds: Option<u32>,
}

pub fn run(ctx: &mut Context, args: Args) -> Result<()> {
    app::check_loopback(&args.listen).map_err(|e| anyhow!(e))?;
    let idle = match args.idle_seconds {
        Some(s) => i64::from(s.max(5)),
        None => i64::from(args.idle_minutes.max(1)) * 60,
    };
    // With --user the app starts unlocked for that user; without, it starts locked and the
    // web app's sign-in page unlocks it.
    let (guard, user) = if ctx.user.is_some() {
        let node = ctx.unlock()?;
        let user = node.user.clone();
        let guard = app::Guard::new(
            ctx.data_dir.clone(),
            super::DEFAULT_DB,
            node,
            idle,
            Arc::new(fhir::time::now),
        )?;
        (guard, user)
    } else {
        store::DataDir::open(&ctx.data_dir)
            .with_context(|| format!("cannot open the data folder {}", ctx.data_dir.display()))?;
        let guard = app::Guard::locked(
            ctx.data_dir.clone(),
            super::DEFAULT_DB,
            idle,
            Arc::new(fhir::time::now),
        );
        (guard, String::from("(sign in on the web page)"))
    };
    let token = app::ApiToken::new(Some(token_path(&ctx.data_dir)));
    if ctx.user.is_some() {
        // Started unlocked: the token is that user's from the start.
        token
            .issue(&user)
            .context("cannot write the API token file")?;
    }
    let state = app::AppState {
        guard: Arc::new(std::sync::Mutex::new(guard)),
        token: Arc::new(token),
        web: Default::default(),
    };
    serve(state, &ctx.data_dir, args.listen, &user, idle, None)
}

/// The file the app's API token is written to while it runs: `app-token` in the data folder,
/// readable by this account only, removed when the app stops. Never printed (issue 16): a
/// terminal log or a service journal would otherwise keep it.
pub fn token_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("app-token")
}

/// Removes the token file when the app stops, however it stops.
struct TokenFile(std::path::PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Serves the app (web and FHIR API) until Ctrl-C; with `open_browser`, points the desktop's
/// browser at it (best effort).
pub fn serve(
    state: app::AppState,
    data_dir: &std::path::Path,
    listen: SocketAddr,
    user: &str,
    idle_secs: i64,
    sign_in_hint: Option<&str>,
) -> Result<()> {
    // The token file (written when a user signs in) is removed when the app stops.
    let token_file = TokenFile(token_path(data_dir));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the server runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        outln!(
            "Hearth app for {user} listening on http://{addr}/ (FHIR API: http://{addr}/fhir)"
        );
        outln!(
            "API token of the signed-in user in {} (this account only; replaced when another user signs in, removed at sign-out and when the app stops)",
            token_file.0.display()
        );
        if let Some(hint) = sign_in_hint {
            outln!("Open http://{addr}/ in a browser and sign in {hint}.");
            // Best effort: a desktop session opens its browser; a server has none, and that is fine.
            let _ = std::process::Command::new("xdg-open")
                .arg(format!("http://{addr}/"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
        outln!(
            "Locks after {} s without a request; press Ctrl-C to stop (the database is locked again).",
            idle_secs
        );
        app::serve(listener, app::router(state), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the server stopped with an error")
    })
}

/// The app, locked, for the web sign-in page.
pub fn locked_state(data_dir: &std::path::Path, idle_secs: i64) -> Result<app::AppState> {
    let guard = app::Guard::locked(
        data_dir.to_owned(),
        super::DEFAULT_DB,
        idle_secs,
        Arc::new(fhir::time::now),
    );
    Ok(app::AppState {
        guard: Arc::new(std::sync::Mutex::new(guard)),
        token: Arc::new(app::ApiToken::new(Some(token_path(data_dir)))),
        web: Default::default(),
    })
}
