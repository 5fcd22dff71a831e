//! `hearth backup` and `hearth restore`: encrypted snapshots sealed to a backup key, and
//! verified restores into a new folder (ADR 20).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use store::backup::{self, BACKUP_PREFIX, Manifest};
use vault::KdfParams;
use vault::backup::{BackupKey, BackupKeyFile, parse_public};

use super::Context;

/// The shortest backup key passphrase accepted.
const MIN_PASSPHRASE: usize = 12;

#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Make a backup key pair: the key file (secret sealed under a passphrase) to keep off the
    /// machine, and the public key to configure where backups are taken.
    Keygen {
        /// Where to write the key file (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Argon2id memory for the passphrase, in MiB.
        #[arg(long, default_value_t = 64, hide = true)]
        kdf_memory_mib: u32,
    },
    /// Take an encrypted snapshot of this node into a new folder under DIR (administrators).
    Create {
        /// The folder that receives `hearth-backup-<time>/` (an external drive, a restic/borg
        /// source folder, ...).
        #[arg(long)]
        to: PathBuf,
        /// The backup public key (`hearth-backup-key:…`, from `hearth backup keygen`).
        #[arg(long, env = "HEARTH_BACKUP_KEY")]
        key: String,
    },
    /// Check a backup: manifest, snapshot checksum, and that the key file opens it.
    Verify {
        /// The backup folder (`…/hearth-backup-<time>`).
        backup: PathBuf,
        /// The backup key file.
        #[arg(long)]
        key_file: PathBuf,
    },
    /// List the backups in a folder, newest last (no key needed: manifests only).
    List {
        /// The folder holding `hearth-backup-*` folders.
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup folder (`…/hearth-backup-<time>`).
    pub backup: PathBuf,
    /// The backup key file.
    #[arg(long)]
    pub key_file: PathBuf,
}

pub fn run(ctx: &mut Context, c: BackupCommand) -> Result<()> {
    match c {
        BackupCommand::Keygen {
            out,
            kdf_memory_mib,
        } => keygen(ctx, &out, kdf_memory_mib),
        BackupCommand::Create { to, key } => create(ctx, &to, &key),
        BackupCommand::Verify { backup, key_file } => {
            let key = open_key_file(ctx, &key_file)?;
            let m = backup::verify(&backup, &key).context("the backup did not verify")?;
            outln!("ok: {} verifies with this key", backup.display());
            describe(&m);
            Ok(())
        }
        BackupCommand::List { dir } => list(&dir),
    }
}

fn keygen(ctx: &mut Context, out: &Path, mib: u32) -> Result<()> {
    if out.exists() {
        bail!("{} exists; choose a new file for the key", out.display());
    }
    let pass = ctx.input.new_pin("Passphrase for the backup key file: ")?;
    if pass.expose().chars().count() < MIN_PASSPHRASE {
        bail!("the passphrase must be at least {MIN_PASSPHRASE} characters");
    }
    let key = BackupKey::generate()?;
    let kdf = KdfParams {
        memory_kib: mib.saturating_mul(1024),
        ..KdfParams::default()
    };
    let file = key.to_file(&pass, &kdf)?;
    let json = serde_json::to_vec_pretty(&file).context("formatting the key file")?;
    super::write_new(out, &json)?;
    outln!(
        "Wrote the backup key file {} (keep it and its passphrase off this machine).",
        out.display()
    );
    outln!("Public key, for `hearth backup create --key` and the hub's `backup_key`:");
    outln!("{}", key.public_text());
    Ok(())
}

fn open_key_file(ctx: &mut Context, path: &Path) -> Result<BackupKey> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the backup key file {}", path.display()))?;
    let file: BackupKeyFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a Hearth backup key file", path.display()))?;
    let pass = ctx.input.pin("Passphrase for the backup key file: ")?;
    BackupKey::from_file(&file, &pass).map_err(|e| match e {
        vault::Error::WrongPin => anyhow::anyhow!("wrong passphrase for the backup key file"),
        e => e.into(),
    })
}

/// Runs `f` while showing elapsed time on a terminal (a snapshot is one long statement).
fn with_elapsed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (done, what) = (done.clone(), what.to_owned());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                eprint!("\r{what}… {} s", start.elapsed().as_secs());
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            eprintln!("\r{what}… done in {:.1} s", start.elapsed().as_secs_f64());
        })
    };
    let out = f();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    out
}

fn create(ctx: &mut Context, to: &Path, key: &str) -> Result<()> {
    let recipient = parse_public(key)?;
    // Beside a running `hearth app` or hub if there is one: it keeps serving.
    let node = ctx.unlock_alongside()?;
    let report = with_elapsed("Taking the snapshot", || node.backup(to, &recipient))
        .context("the backup failed")?;
    outln!("Backup written to {}", report.path.display());
    describe(&report.manifest);
    Ok(())
}

fn describe(m: &Manifest) {
    outln!(
        "  taken      {} on node {} by {}",
        m.created,
        m.node,
        m.user
    );
    for d in &m.facts.databases {
        outln!(
            "  database   {}: {} documents ({} deleted), sequence {}",
            d.name,
            d.doc_count,
            d.doc_del_count,
            d.update_seq
        );
    }
    outln!("  audit head {}", m.facts.audit_seq);
    outln!(
        "  snapshot   {} bytes, sha256 {}",
        m.snapshot.bytes,
        m.snapshot.sha256
    );
}

fn list(dir: &Path) -> Result<()> {
    let mut found: Vec<(PathBuf, Result<Manifest, store::Error>)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(BACKUP_PREFIX))
        .map(|e| (e.path(), Manifest::read(&e.path())))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        outln!("No backups in {}", dir.display());
    }
    for (path, m) in found {
        match m {
            Ok(m) => outln!(
                "{}  {}  {} documents  audit head {}  {} bytes",
                path.display(),
                m.created,
                m.facts.databases.iter().map(|d| d.doc_count).sum::<u64>(),
                m.facts.audit_seq,
                m.snapshot.bytes
            ),
            Err(e) => outln!("{}  unreadable: {e}", path.display()),
        }
    }
    Ok(())
}

pub fn restore(ctx: &mut Context, a: RestoreArgs) -> Result<()> {
    let user = ctx.user()?;
    let pin = ctx
        .input
        .pin(&format!("PIN for {user} (a user of the backed-up node): "))?;
    let key = open_key_file(ctx, &a.key_file)?;
    let target = ctx.data_dir.clone();
    let r = with_elapsed("Restoring and verifying", || {
        backup::restore(&a.backup, &key, &target, &user, &pin)
    })
    .context("the restore failed; nothing was written to the target folder")?;
    outln!("Restored into {} and verified:", target.display());
    for (db, n) in &r.counted {
        outln!("  {db}: {n} documents, as the manifest says");
    }
    outln!(
        "  audit chain: {} entries verified, head at or after {}",
        r.audit_entries,
        r.manifest.facts.audit_seq
    );
    outln!("  SQLite and SQLCipher integrity checks passed");
    outln!(
        "If this node syncs with a hub, its next sync is checked against the audit head the hub \
         witnessed: an old snapshot is reported, not silently rewound."
    );
    Ok(())
}
