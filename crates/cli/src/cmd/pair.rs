//! `hearth pair OFFER`: pair this device with a clinic hub, from the offer its administrator
//! showed (`hearth hub pair`): the device pins the hub's key and registers its own.

use anyhow::{Context as _, Result, anyhow};

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The offer text (`hearth-pair:…`), as shown under the hub's QR code.
    pub offer: String,
    /// A name for this device on the hub's list.
    #[arg(long, default_value = "device")]
    pub name: String,
}

pub fn run(ctx: &mut Context, a: Args) -> Result<()> {
    let offer = vault::pairing::Offer::parse(&a.offer).map_err(|e| anyhow!("{e}"))?;
    let node = ctx.unlock()?;
    if !node.role.is_admin() {
        anyhow::bail!("only an administrator of this device can pair it with a hub");
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start a runtime")?;
    let p = rt
        .block_on(replicate::rpc::pair(
            node.admin_store("hearth pair")?,
            &offer,
            &a.name,
        ))
        .map_err(|e| anyhow!("pairing failed: {e}"))?;
    node.admin_store("hearth pair")?
        .audit_append(&[store::AuditEvent {
            user: node.user.clone(),
            role: node.role.to_string(),
            action: "key_change".into(),
            outcome: "success".into(),
            patient: None,
            resource: None,
            detail: Some(format!("paired with hub {} at {}", p.hub, p.addr)),
            break_glass: false,
        }])?;
    outln!(
        "Paired with hub {} at {} as device {}.",
        p.hub,
        p.addr,
        p.device
    );
    outln!("Sync with: hearth sync --hub --remote-user YOUR-HUB-ACCOUNT");
    Ok(())
}
