//! Scheduled backups of the hub (ADR 20): every `backup_interval_secs` (default daily) a
//! snapshot sealed to the configured backup key, taken while the hub keeps serving; the newest
//! `backup_keep` are kept. The last good backup is reported in `/status`, `/metrics` and the
//! administration screens; `POST /admin/backup` takes one now.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::backup::{BACKUP_PREFIX, Manifest};

use crate::unix_now;

/// What the backup schedule reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupState {
    /// The folder backups go to.
    pub dir: String,
    /// When the last good backup was taken.
    pub last_success: Option<u64>,
    /// Its folder name.
    pub last_name: Option<String>,
    /// Its snapshot size.
    pub last_bytes: u64,
    /// Live documents in it.
    pub last_documents: u64,
    /// How long it took, in milliseconds.
    pub last_duration_ms: u64,
    /// The last failure and when.
    pub last_error: Option<(u64, String)>,
    /// Failures since start.
    pub failures: u64,
    /// When the next scheduled backup is due.
    pub next_due: Option<u64>,
}

/// The hub's backups: one at a time, scheduled or on request.
pub struct Backups {
    node: Arc<store::Unlocked>,
    dir: PathBuf,
    recipient: [u8; 32],
    keep: usize,
    interval: Duration,
    state: Mutex<BackupState>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// The backup folders under `dir` with readable manifests, oldest first.
pub fn existing(dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let mut out: Vec<(PathBuf, Manifest)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(BACKUP_PREFIX))
        .filter_map(|e| Manifest::read(&e.path()).ok().map(|m| (e.path(), m)))
        .collect();
    out.sort_by_key(|(p, m)| (m.created_unix, p.clone()));
    out
}

impl Backups {
    /// A schedule for `node` into `dir`, sealed to `recipient`.
    pub fn new(
        node: Arc<store::Unlocked>,
        dir: PathBuf,
        recipient: [u8; 32],
        keep: usize,
        interval: Duration,
    ) -> Backups {
        // Pick up where an earlier run left off: the newest good backup on disk.
        let mut state = BackupState {
            dir: dir.display().to_string(),
            ..Default::default()
        };
        if let Some((p, m)) = existing(&dir).pop() {
            state.last_success = Some(m.created_unix);
            state.last_name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            state.last_bytes = m.snapshot.bytes;
            state.last_documents = m.facts.databases.iter().map(|d| d.doc_count).sum();
        }
        Backups {
            node,
            dir,
            recipient,
            keep: keep.max(1),
            interval,
            state: Mutex::new(state),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// The current report.
    pub fn state(&self) -> BackupState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes a backup now (waiting for one already running), then applies retention.
    pub async fn run_now(&self) -> Result<BackupState, String> {
        let _turn = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let (node, dir, recipient) = (self.node.clone(), self.dir.clone(), self.recipient);
        let result = tokio::task::spawn_blocking(move || node.backup(&dir, &recipient))
            .await
            .map_err(|_| "the backup task stopped unexpectedly".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(report) => {
                st.last_success = Some(report.manifest.created_unix);
                st.last_name = report
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                st.last_bytes = report.manifest.snapshot.bytes;
                st.last_documents = report
                    .manifest
                    .facts
                    .databases
                    .iter()
                    .map(|d| d.doc_count)
                    .sum();
                st.last_duration_ms = started.elapsed().as_millis() as u64;
                drop(st);
                self.prune();
                Ok(self.state())
            }
            Err(e) => {
                st.failures += 1;
                st.last_error = Some((unix_now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Removes the oldest backups beyond `keep` (only folders with a readable manifest, so
    /// nothing else in the folder is touched).
    fn prune(&self) {
        let all = existing(&self.dir);
        let extra = all.len().saturating_sub(self.keep);
        for (p, _) in all.into_iter().take(extra) {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                eprintln!("cannot remove old backup {}: {e}", p.display());
            }
        }
    }

    /// Runs the schedule until `stop` turns true: the first backup when the newest on disk is
    /// older than the interval, then one per interval. A failure is retried after a tenth of
    /// the interval (at most an hour).
    pub async fn schedule(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let interval = self.interval.as_secs().max(1);
        loop {
            let last = self.state().last_success.unwrap_or(0);
            let failed_after = self
                .state()
                .last_error
                .map(|(t, _)| t)
                .filter(|t| *t >= last);
            let due = match failed_after {
                Some(t) => t + (interval / 10).clamp(1, 3600),
                None => last + interval,
            };
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_due = Some(due);
            let wait = due.saturating_sub(unix_now());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            match self.run_now().await {
                Ok(s) => eprintln!(
                    "backup {} written ({} documents)",
                    s.last_name.unwrap_or_default(),
                    s.last_documents
                ),
                Err(e) => eprintln!("scheduled backup failed: {e}"),
            }
        }
    }
}
