//! What the binary's integration tests share: running `hearth` as a process with answers on
//! standard input, and ending the servers they start.

#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

pub mod hub;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A child process, ended by its PID when the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `hearth --data-dir DIR ARGS…` with `stdin` as its standard input (PINs, passwords, one
/// per line), ignoring any `HEARTH_*` settings of the environment the tests run in.
pub fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("HEARTH_DATA_DIR")
        .env_remove("HEARTH_USER")
        .env_remove("HEARTH_REMOTE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hearth starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Standard output of a run that must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "hearth failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `tests/pouchdb-interop` with its npm packages installed (`npm ci` on first use; tests run in
/// parallel threads, so one installs and the others wait for it).
pub fn interop_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install_interop).clone()
}

fn install_interop() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/pouchdb-interop");
    if !dir.join("node_modules/pouchdb").exists()
        || !dir.join("node_modules/express-pouchdb").exists()
        || !dir.join("node_modules/pouchdb-find").exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the PouchDB interop tests (Node.js 20+)");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    dir
}

/// Reads the child's stdout until a line containing `http://`; returns the URL. Keeps draining
/// stdout afterwards so the child never blocks on a full pipe.
pub fn url_from(child: &mut Child) -> String {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines
            .next()
            .expect("the process printed its address")
            .unwrap();
        if let Some(i) = line.find("http://") {
            let url: String = line[i..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return url.trim_end_matches('/').to_owned();
        }
    }
}

/// `hearth hub serve --init` (the CouchDB API alone) on `listen`, with administrator `admin`
/// (PIN `pin`), the account `sync` (password `password`) and the database `records`. Run again
/// on the same folder it unlocks the existing node. Returns the process and its URL.
pub fn serve_hub(dir: &Path, listen: &str, pin: &str, password: &str) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--user", "admin", "--pin-stdin", "hub", "serve", "--init"])
        .args(["--listen", listen])
        .args(["--account", "sync", "--create-db", "records"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("hearth starts");
    writeln!(child.stdin.as_mut().unwrap(), "{pin}\n{password}").unwrap();
    let url = url_from(&mut child);
    (Running(child), url)
}
