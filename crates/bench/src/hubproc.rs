//! A `hearth hub serve` process for the benchmarks (shared by `hearth-sync-bench` and
//! `hearth-load`): started on a free loopback port, ended when dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// A running hub process.
pub struct Hub {
    pub child: Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    /// The process's peak resident memory, in KiB (Linux).
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

/// The `hearth` binary beside this benchmark's.
pub fn hearth_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("hearth");
    if !bin.exists() {
        bail!(
            "{} is missing; run `cargo build --release` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Creates a node in `dir` (user `admin` with `pin`) and serves database `db` with one
/// administrator account.
pub fn start(dir: &Path, pin: &str, account: &str, password: &str, db: &str) -> Result<Hub> {
    let mut child = Command::new(hearth_bin()?)
        .arg("--data-dir")
        .arg(dir)
        .args(["--user", "admin", "--pin-stdin", "hub", "serve", "--init"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--account",
            account,
            "--create-db",
            db,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    writeln!(child.stdin.as_mut().context("stdin")?, "{pin}\n{password}")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = loop {
        let line = lines.next().context("the hub exited")??;
        if let Some(i) = line.find("http://") {
            break line[i..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok(Hub { child, url })
}
