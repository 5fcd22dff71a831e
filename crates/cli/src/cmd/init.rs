//! `hearth init`: a new device vault and its first administrator.

use anyhow::{Context as _, Result};
use store::{DataDir, InitOptions};
use vault::{KdfParams, PinPolicy};

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Minimum PIN length for every user of this device.
    #[arg(long, default_value_t = 6)]
    pub min_pin_length: usize,
    /// Consecutive failed unlocks after which a user is locked out.
    #[arg(long, default_value_t = 10)]
    pub max_failures: u32,
    /// Argon2id memory per unlock, in MiB (at least 8).
    #[arg(long, default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = 3)]
    pub kdf_iterations: u32,
}

impl Args {
    pub fn kdf(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf_memory_mib.saturating_mul(1024),
            iterations: self.kdf_iterations,
            parallelism: 1,
        }
    }
}

pub fn run(ctx: &mut Context, args: Args) -> Result<()> {
    let user = ctx.user()?;
    let policy = PinPolicy {
        min_length: args.min_pin_length,
        max_failures: args.max_failures,
        free_attempts: PinPolicy::default()
            .free_attempts
            .min(args.max_failures.saturating_sub(1)),
        ..PinPolicy::default()
    };
    let pin = ctx.input.new_pin(&format!("New PIN for {user}: "))?;
    let opts = InitOptions {
        kdf: args.kdf(),
        policy,
    };
    let dir = DataDir::init(&ctx.data_dir, &user, &pin, &opts)
        .with_context(|| format!("cannot create a node in {}", ctx.data_dir.display()))?;
    let node = dir
        .unlock(&user, &pin)
        .context("cannot unlock the new vault")?;
    node.admin_store("hearth init")?
        .ensure_db(super::DEFAULT_DB)?;
    outln!(
        "Created an encrypted node in {} with administrator '{user}'.",
        ctx.data_dir.display()
    );
    Ok(())
}
