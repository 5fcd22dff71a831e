//! The app's session: the unlocked node and its records, dropped (keys zeroized) after a period
//! of inactivity or on an explicit lock, and reopened only by the same user's PIN.

use std::path::PathBuf;
use std::sync::Arc;

use records::Records;
use store::{AuditEvent, DataDir, Unlocked};
use vault::Pin;

/// Default inactivity before the session locks: 15 minutes.
pub const DEFAULT_IDLE_SECS: i64 = 15 * 60;

/// What is held while unlocked. Dropping it drops the data key (zeroized) and closes the file.
struct Open {
    node: Unlocked,
    records: Arc<Records>,
}

/// Why a request cannot use the records now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Locked (inactivity or explicit): unlock with the same user's PIN.
    Locked,
    /// Logged out: the app must be started again.
    LoggedOut,
}

/// The session guard: one user, their unlocked node while active.
pub struct Guard {
    data_dir: PathBuf,
    user: String,
    db: String,
    open: Option<Open>,
    logged_out: bool,
    last_activity: i64,
    idle_secs: i64,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

fn event(node: &Unlocked, action: &str) -> AuditEvent {
    AuditEvent {
        user: node.user.clone(),
        role: node.role.to_string(),
        action: action.into(),
        outcome: "success".into(),
        ..AuditEvent::default()
    }
}

impl Guard {
    /// A guard over an unlocked node, locking after `idle_secs` of inactivity by `clock`.
    pub fn new(
        data_dir: PathBuf,
        db: &str,
        node: Unlocked,
        idle_secs: i64,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Result<Guard, records::FhirError> {
        let records = Arc::new(Records::new(node.replica().clone(), db, &node.session()?)?);
        let now = clock();
        Ok(Guard {
            data_dir,
            user: node.user.clone(),
            db: db.to_owned(),
            open: Some(Open { node, records }),
            logged_out: false,
            last_activity: now,
            idle_secs: idle_secs.max(1),
            clock,
        })
    }

    /// A guard with nobody logged in yet: the web app's login page opens it.
    pub fn locked(
        data_dir: PathBuf,
        db: &str,
        idle_secs: i64,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Guard {
        let now = clock();
        Guard {
            data_dir,
            user: String::new(),
            db: db.to_owned(),
            open: None,
            logged_out: false,
            last_activity: now,
            idle_secs: idle_secs.max(1),
            clock,
        }
    }

    /// The session's user (empty before anyone logged in).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The role of the user while unlocked.
    pub fn role(&self) -> Option<store::Role> {
        self.open.as_ref().map(|o| o.node.role)
    }

    /// Whether anyone is logged in (locked or not).
    pub fn has_user(&self) -> bool {
        !self.user.is_empty() && !self.logged_out
    }

    /// Logs a user in (any user of this device), ending the previous user's session first.
    /// A wrong PIN or code is counted by the vault like any unlock.
    pub fn login(&mut self, user: &str, pin: &Pin, code: Option<&str>) -> Result<(), String> {
        // Always a fresh unlock: a sign-in proves the PIN even if this user's session is open.
        self.close("logout");
        self.user = user.to_owned();
        self.logged_out = false;
        self.unlock(pin, code)
    }

    /// Re-reads the records layer (after a break-glass grant, which is stored in the file).
    pub fn reload(&mut self) -> Result<(), String> {
        if let Some(open) = &mut self.open {
            let session = open.node.session().map_err(|e| e.to_string())?;
            let records = Records::new(open.node.replica().clone(), &self.db, &session)
                .map_err(|e| e.to_string())?;
            open.records = Arc::new(records);
        }
        Ok(())
    }

    /// The unlocked node's store and session, for operations outside the records layer.
    pub fn node(&self) -> Option<&Unlocked> {
        self.open.as_ref().map(|o| &o.node)
    }

    /// Seconds left before the inactivity lock (0 when locked).
    pub fn seconds_left(&self) -> i64 {
        if self.open.is_none() {
            return 0;
        }
        (self.idle_secs - ((self.clock)() - self.last_activity)).max(0)
    }

    /// Locks now, recording why (`lock`, `timeout`, `logout`). The audit entry is written
    /// before the keys go; if it cannot be, the keys go anyway (locking must not fail open).
    fn close(&mut self, why: &str) {
        if let Some(open) = self.open.take() {
            let _ = open.node.replica().audit_append(&[event(&open.node, why)]);
            drop(open);
        }
    }

    /// The records for a request, if the session is open; marks activity. An idle session is
    /// locked here first.
    pub fn records(&mut self) -> Result<Arc<Records>, Closed> {
        if self.logged_out {
            return Err(Closed::LoggedOut);
        }
        self.expire();
        let now = (self.clock)();
        match &self.open {
            Some(open) => {
                self.last_activity = now;
                Ok(open.records.clone())
            }
            None => Err(Closed::Locked),
        }
    }

    /// The node's store as a replica, for syncing and pairing (the replicator audits each run
    /// as the session's user); records themselves go through [`Guard::records`]. Marks
    /// activity like `records`.
    pub fn replica(&mut self) -> Result<Arc<store::Store>, Closed> {
        self.records()?;
        match &self.open {
            Some(open) => Ok(open.node.replica().clone()),
            None => Err(Closed::Locked),
        }
    }

    /// Locks the session if its inactivity time is up (without counting as activity).
    pub fn expire(&mut self) {
        if self.open.is_some() && (self.clock)() - self.last_activity >= self.idle_secs {
            self.close("timeout");
        }
    }

    /// Explicit lock.
    pub fn lock(&mut self) {
        self.close("lock");
    }

    /// Logout: locks and refuses to unlock again in this run of the app.
    pub fn logout(&mut self) {
        self.close("logout");
        self.logged_out = true;
    }

    /// Unlocks again with the same user's PIN (and code where required): resumes their work.
    pub fn unlock(&mut self, pin: &Pin, code: Option<&str>) -> Result<(), String> {
        if self.logged_out {
            return Err("logged out: start the app again".into());
        }
        // An unlock always proves the PIN, even if the session is still open.
        self.close("lock");
        let dir = DataDir::open(&self.data_dir).map_err(|e| e.to_string())?;
        let node = dir
            .unlock_with_code(&self.user, pin, code)
            .map_err(|e| e.to_string())?;
        let session = node.session().map_err(|e| e.to_string())?;
        let records =
            Records::new(node.replica().clone(), &self.db, &session).map_err(|e| e.to_string())?;
        node.replica()
            .audit_append(&[event(&node, "unlock")])
            .map_err(|e| e.to_string())?;
        self.open = Some(Open {
            node,
            records: Arc::new(records),
        });
        self.last_activity = (self.clock)();
        Ok(())
    }
}
