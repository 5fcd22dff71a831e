//! Commands that talk to a running hub through its loopback administration port (the hub owns
//! its database file while it runs): pairing offers, devices, status, the audit report.

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use super::super::Context;

#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// The running hub's administration address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:4002",
        env = "HEARTH_HUB_ADMIN_URL"
    )]
    pub admin_url: String,
    /// A hub administrator account; its password is the next input line (or prompted).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Also write the QR code as a PNG image here.
    #[arg(long, value_name = "FILE")]
    pub png: Option<std::path::PathBuf>,
    /// Also write the QR code as an SVG image here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Print only the offer text (for scripts).
    #[arg(long)]
    pub text: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum DevicesCommand {
    /// Paired devices with their last contact.
    List(AdminArgs),
    /// Refuse a device from now on (its open sessions and next handshakes).
    Revoke {
        /// The device id (from `hearth hub devices list`).
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum HubAuditCommand {
    /// Audit entries from every device, about one patient or all.
    Report {
        /// Only entries about this patient (`Patient/ID` or `ID`).
        #[arg(long)]
        patient: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The running hub's administration address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:4002",
        env = "HEARTH_HUB_ADMIN_URL"
    )]
    pub admin_url: String,
    /// Print the JSON.
    #[arg(long)]
    pub json: bool,
}

fn check_loopback(url: &str) -> Result<url::Url> {
    let u = url::Url::parse(url).map_err(|e| anyhow!("{url:?} is not a URL: {e}"))?;
    let local = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !local || u.scheme() != "http" {
        bail!("the administration port is on loopback (http://127.0.0.1:…), not {url}");
    }
    Ok(u)
}

fn call(ctx: &mut Context, a: &AdminArgs, method: reqwest::Method, path: &str) -> Result<Value> {
    let base = check_loopback(&a.admin_url)?;
    let name = a
        .account
        .clone()
        .ok_or_else(|| anyhow!("name a hub administrator account with --account"))?;
    let pw = super::account_password(ctx, &name)?;
    let url = base.join(path).context("building the URL")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .request(method, url)
            .basic_auth(&name, Some(pw.as_str()))
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the hub's administration port at {}; is `hearth hub start` running?",
                    a.admin_url
                )
            })?;
        let status = resp.status();
        let v: Value = resp.json().await.context("the hub's answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "the hub refused: {} ({})",
                v["reason"].as_str().unwrap_or(""),
                v["error"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    })
}

fn when(t: &Value) -> String {
    match t.as_i64() {
        None => "never".into(),
        Some(t) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let ago = (now - t).max(0);
            match ago {
                0..60 => format!("{ago} s ago"),
                60..3600 => format!("{} min ago", ago / 60),
                3600..86400 => format!("{} h ago", ago / 3600),
                _ => format!("{} days ago", ago / 86400),
            }
        }
    }
}

pub fn pair(ctx: &mut Context, a: PairArgs) -> Result<()> {
    let v = call(
        ctx,
        &a.admin,
        reqwest::Method::POST,
        "/admin/pairing-offers",
    )?;
    let offer = v["offer"].as_str().unwrap_or_default().to_owned();
    if let Some(p) = &a.png {
        std::fs::write(p, hub::qr::png(&offer, 6)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        std::fs::write(p, hub::qr::svg(&offer)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if a.text {
        outln!("{offer}");
        return Ok(());
    }
    outln!("{}", hub::qr::terminal(&offer)?);
    outln!(
        "Pairing offer for {} (one use, expires {}):",
        v["addr"].as_str().unwrap_or(""),
        {
            let exp = v["expires"].as_i64().unwrap_or(0);
            format!("in {} min", (exp - v_now()).max(0) / 60)
        }
    );
    outln!("{offer}");
    outln!("On the device: hearth pair '<offer>'  (or scan the code)");
    Ok(())
}

fn v_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn devices(ctx: &mut Context, cmd: DevicesCommand) -> Result<()> {
    match cmd {
        DevicesCommand::List(a) => {
            let v = call(ctx, &a, reqwest::Method::GET, "/admin/devices")?;
            let list = v["devices"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                outln!("No devices are paired. Create an offer with `hearth hub pair`.");
            }
            for d in list {
                outln!(
                    "{}\t{}\tlast contact {}\t{}\taudit witnessed to {}",
                    d["id"].as_str().unwrap_or(""),
                    d["name"].as_str().unwrap_or(""),
                    when(&d["last_contact"]),
                    if !d["revoked_at"].is_null() {
                        "REVOKED"
                    } else if !d["audit_refused_at"].is_null() {
                        "SUSPENDED (audit trail refused: restored from an old copy? pair it again)"
                    } else {
                        "active"
                    },
                    d["audit_witnessed"]
                );
            }
        }
        DevicesCommand::Revoke { id, admin } => {
            let path = format!("/admin/devices/{}/revoke", replicate::encode_component(&id));
            call(ctx, &admin, reqwest::Method::POST, &path)?;
            outln!("Device {id} revoked: the hub refuses it from now on.");
        }
    }
    Ok(())
}

pub fn backup(ctx: &mut Context, a: AdminArgs) -> Result<()> {
    let v = call(ctx, &a, reqwest::Method::POST, "/admin/backup")?;
    outln!(
        "Backup {} written in {} ({} documents, {} bytes, {} ms); the hub kept serving.",
        v["backup"].as_str().unwrap_or(""),
        v["dir"].as_str().unwrap_or(""),
        v["documents"],
        v["bytes"],
        v["duration_ms"]
    );
    Ok(())
}

pub fn audit(ctx: &mut Context, cmd: HubAuditCommand) -> Result<()> {
    let HubAuditCommand::Report {
        patient,
        admin,
        json,
    } = cmd;
    let path = match &patient {
        None => "/admin/audit".to_owned(),
        Some(p) => {
            let p = if p.starts_with("Patient/") {
                p.clone()
            } else {
                format!("Patient/{p}")
            };
            format!("/admin/audit?patient={}", replicate::encode_component(&p))
        }
    };
    let v = call(ctx, &admin, reqwest::Method::GET, &path)?;
    if json {
        return super::super::print_json(&v);
    }
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    outln!("{} entries from every device and the hub", entries.len());
    for e in entries {
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}{}",
            e["time"],
            e["device"].as_str().unwrap_or(""),
            e["user"].as_str().unwrap_or(""),
            e["role"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["outcome"].as_str().unwrap_or(""),
            e["resource"]
                .as_str()
                .or(e["patient"].as_str())
                .unwrap_or(""),
            if e["break_glass"].as_bool() == Some(true) {
                "\tBREAK-GLASS"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub fn status(a: StatusArgs) -> Result<()> {
    let base = check_loopback(&a.admin_url)?;
    let url = base.join("/status").context("building the URL")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let v: Value = rt.block_on(async {
        reqwest::get(url)
            .await
            .with_context(|| format!("cannot reach the hub at {}; is it running?", a.admin_url))?
            .json()
            .await
            .context("the hub's status is not JSON")
    })?;
    if a.json {
        return super::super::print_json(&v);
    }
    outln!(
        "Hub {}  up {} s",
        v["hub"].as_str().unwrap_or(""),
        v["uptime_secs"]
    );
    outln!("  devices RPC     {}", v["rpc_url"].as_str().unwrap_or(""));
    for d in v["databases"].as_array().into_iter().flatten() {
        let name = d["name"].as_str().unwrap_or("");
        outln!(
            "  database {name:<10} {} documents, seq {}, {} conflicted",
            d["doc_count"],
            d["update_seq"],
            v["conflicts"][name]
        );
    }
    outln!(
        "  devices         {} paired, {} revoked; {} sessions open; {} refused",
        v["devices"]["paired"],
        v["devices"]["revoked"],
        v["sessions_open"],
        v["rpc_refused"]
    );
    outln!(
        "  documents       {} in, {} out since start; storage {} bytes",
        v["docs_in"],
        v["docs_out"],
        v["storage_bytes"]
    );
    let r = &v["relay"];
    match r["upstream"].as_str() {
        None => outln!("  relay           none configured"),
        Some(u) => {
            outln!(
                "  relay           {u}: last success {}, backlog {}, {} pushed, {} pulled, {} errors",
                when(&r["last_success"]),
                r["backlog"],
                r["docs_pushed"],
                r["docs_pulled"],
                r["errors"]
            );
            if let Some(e) = r["last_error"]["error"].as_str() {
                outln!(
                    "                  last error {}: {e}",
                    when(&r["last_error"]["time"])
                );
            }
        }
    }
    let b = &v["backup"];
    if b.is_null() {
        outln!("  backups         off (no backup_key)");
    } else {
        outln!(
            "  backups         last good {} ({}, {} documents), {} failures, into {}",
            when(&b["last_success"]),
            b["last_backup"].as_str().unwrap_or("none yet"),
            b["last_documents"],
            b["failures"],
            b["dir"].as_str().unwrap_or("")
        );
        if let Some(e) = b["last_error"]["error"].as_str() {
            outln!(
                "                  last failure {}: {e}",
                when(&b["last_error"]["time"])
            );
        }
    }
    Ok(())
}
