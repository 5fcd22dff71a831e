//! `hearth`: the command-line entry point of a Hearth node.
//!
//! Every command that opens the store unlocks it with `--user` and a PIN (typed without echo,
//! or the first line of standard input with `--pin-stdin`), so everything can be scripted.
//! Errors print one clear sentence (with its causes) and exit non-zero.

/// Prints a line to standard output; a closed pipe (`hearth … | head`) ends the program quietly
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod cmd;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hearth: offline-first, encrypted clinical records.
#[derive(Parser, Debug)]
#[command(name = "hearth", version, about, long_about = None)]
struct Cli {
    /// The node's data folder.
    #[arg(
        long,
        global = true,
        env = "HEARTH_DATA_DIR",
        default_value = "hearth-data"
    )]
    data_dir: PathBuf,
    /// The user who unlocks the vault.
    #[arg(long, global = true, env = "HEARTH_USER")]
    user: Option<String>,
    /// Read the PIN from the first line of standard input instead of the terminal (further
    /// lines answer later prompts, such as a new PIN).
    #[arg(long, global = true)]
    pin_stdin: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a demo node in a local folder, load a small clinic's records and show what happened.
    Demo(cmd::demo::Args),
    /// Serve the device's local FHIR API (and web app) on loopback until Ctrl-C.
    App(cmd::app::Args),
    /// The clinic hub: init, start, pair devices, status, accounts, upstream relay.
    #[command(subcommand)]
    Hub(cmd::hub::HubCommand),
    /// The conflict inbox: list, show, resolve; merge policies per resource type.
    #[command(subcommand)]
    Conflicts(cmd::conflicts::ConflictsCommand),
    /// Replicate a database with a hub or any CouchDB-compatible server (push, pull or both).
    Sync(cmd::sync::Args),
    /// Pair this device with a clinic hub, from the hub's pairing offer.
    Pair(cmd::pair::Args),
    /// Create a new device vault and its first administrator.
    Init(cmd::init::Args),
    /// Databases inside the node's file.
    #[command(subcommand)]
    Db(cmd::db::DbCommand),
    /// Write, read and delete documents.
    #[command(subcommand)]
    Doc(cmd::doc::DocCommand),
    /// FHIR R4 operations on the records: create, read, update, delete, search, history, $everything.
    #[command(subcommand)]
    Fhir(cmd::fhir::FhirCommand),
    /// Import FHIR NDJSON files or Bundles (validated; bad resources reported, good ones kept).
    Import(cmd::fhir::ImportArgs),
    /// Export FHIR resources: NDJSON per type, or one patient's record as a Bundle.
    Export(cmd::fhir::ExportArgs),
    /// Load a deterministic demo clinic (patients, proxies, vitals, medications, notes, …).
    DemoData(cmd::fhir::DemoDataArgs),
    /// Read a database's changes feed.
    Changes(cmd::changes::Args),
    /// Manage the users who can unlock this device.
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// Re-encrypt the whole database under a new key (compromise recovery).
    Rekey,
    /// Emergency access to one patient's chart your role does not allow: time-boxed, audited.
    BreakGlass(cmd::fhir::BreakGlassArgs),
    /// The role permission matrix (resource type × action): show, grant, revoke.
    #[command(subcommand)]
    Roles(cmd::fhir::RolesCommand),
    /// The audit trail: verify its chain, list who saw or changed what.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Check the database file's integrity (SQLite and SQLCipher page authentication).
    Check,
    /// Encrypted backups: make a backup key, take a snapshot while running, verify, list.
    #[command(subcommand)]
    Backup(cmd::backup::BackupCommand),
    /// Restore a backup into a new data folder (--data-dir) and verify it before declaring success.
    Restore(cmd::backup::RestoreArgs),
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Keeps keys, PINs and records in this process's memory out of files and other processes:
/// no core file (the limit is 0, and cannot be raised again), and not dumpable (no core, no
/// `ptrace` attach by other processes of the same account, `/proc/<pid>/mem` closed to them).
/// Done before any PIN is read. Where the system refuses, Hearth runs anyway (a container
/// without the permission): the data at rest stays encrypted either way (docs/security.md).
fn harden_process() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let _ = rustix::process::setrlimit(Resource::Core, none);
        let _ = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable);
    }
}

fn main() -> ExitCode {
    harden_process();
    let cli = Cli::parse();
    let mut ctx = cmd::Context::new(cli.data_dir.clone(), cli.user, cli.pin_stdin);
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(&mut ctx, a),
        Command::Init(a) => cmd::init::run(&mut ctx, a),
        Command::App(a) => cmd::app::run(&mut ctx, a),
        Command::Hub(c) => cmd::hub::run(&mut ctx, c),
        Command::Sync(a) => cmd::sync::run(&mut ctx, a),
        Command::Pair(a) => cmd::pair::run(&mut ctx, a),
        Command::Conflicts(c) => cmd::conflicts::run(&mut ctx, c),
        Command::Db(c) => cmd::db::run(&mut ctx, c),
        Command::Doc(c) => cmd::doc::run(&mut ctx, c),
        Command::Changes(a) => cmd::changes::run(&mut ctx, a),
        Command::Fhir(c) => cmd::fhir::run(&mut ctx, c),
        Command::Import(a) => cmd::fhir::import(&mut ctx, a),
        Command::Export(a) => cmd::fhir::export(&mut ctx, a),
        Command::DemoData(a) => cmd::fhir::demo_data(&mut ctx, a),
        Command::User(c) => cmd::user::run(&mut ctx, c),
        Command::Rekey => cmd::user::rekey(&mut ctx),
        Command::Check => cmd::db::check(&mut ctx),
        Command::Backup(c) => cmd::backup::run(&mut ctx, c),
        Command::Restore(a) => cmd::backup::restore(&mut ctx, a),
        Command::Audit(c) => cmd::audit::run(&mut ctx, c),
        Command::Roles(c) => cmd::fhir::roles(&mut ctx, c),
        Command::BreakGlass(a) => cmd::fhir::break_glass(&mut ctx, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // SQLite's "disk I/O error" does not say why: a full disk and a read-only mount are
            // told apart by trying to write in the data folder.
            let io_failure = e
                .chain()
                .filter_map(|c| c.downcast_ref::<store::Error>())
                .any(store::Error::is_io_failure);
            if io_failure && let Some(clear) = store::diagnose_disk(&cli.data_dir) {
                eprintln!("error: {e}: {clear}");
                return ExitCode::FAILURE;
            }
            eprint!("error: {e}");
            for cause in e.chain().skip(1) {
                eprint!(": {cause}");
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}
