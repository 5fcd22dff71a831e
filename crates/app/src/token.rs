//! The local API's bearer token, bound to the user it was issued for (issue 16).
//!
//! A token is issued when a user signs in (or when `hearth app --user U` starts unlocked) and
//! written to a file only this account can read; it is accepted only while that user is the
//! one signed in. Another user signing in gets a new token (the old one stops working), and
//! signing out withdraws it. So a script holding a token acts as the user it was given to, or
//! not at all — never silently as whoever signs in next on the web page.

use std::path::PathBuf;
use std::sync::Mutex;

/// The API token and the user it is bound to.
#[derive(Debug)]
pub struct ApiToken {
    bound: Mutex<Option<(String, String)>>,
    file: Option<PathBuf>,
}

impl ApiToken {
    /// No token yet; tokens issued later are written to `file` (mode 0600) when given. A file
    /// a crashed run left behind is removed: its token is dead.
    pub fn new(file: Option<PathBuf>) -> ApiToken {
        if let Some(path) = &file {
            let _ = std::fs::remove_file(path);
        }
        ApiToken {
            bound: Mutex::new(None),
            file,
        }
    }

    /// A fixed token for `user` (tests and embedding).
    pub fn fixed(user: &str, token: &str) -> ApiToken {
        ApiToken {
            bound: Mutex::new(Some((user.to_owned(), token.to_owned()))),
            file: None,
        }
    }

    /// Issues a token for `user`: kept if `user` already holds one, otherwise a fresh one that
    /// replaces any other user's, written to the token file.
    pub fn issue(&self, user: &str) -> std::io::Result<()> {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if bound.as_ref().is_some_and(|(u, _)| u == user) {
            return Ok(());
        }
        let token = crate::new_token()?;
        if let Some(path) = &self.file {
            write_private(path, token.as_bytes())?;
        }
        *bound = Some((user.to_owned(), token));
        Ok(())
    }

    /// Withdraws the token (sign-out): it stops working and its file is removed.
    pub fn withdraw(&self) {
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(path) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Whether `given` is the token issued to `user` (compared in constant time).
    pub fn accepts(&self, given: &str, user: &str) -> bool {
        let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        let Some((owner, want)) = bound.as_ref() else {
            return false;
        };
        let same = given.len() == want.len()
            && given
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same && owner == user
    }

    /// The user the current token is bound to.
    pub fn user(&self) -> Option<String> {
        self.bound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(u, _)| u.clone())
    }
}

/// Replaces `path` with `bytes`, readable by this account only (0600 on Unix), synced.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_for_its_user_only_and_rotates_when_another_signs_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app-token");
        let t = ApiToken::new(Some(file.clone()));
        assert!(!t.accepts("", "kim"));
        t.issue("kim").unwrap();
        let kims = std::fs::read_to_string(&file).unwrap();
        assert!(t.accepts(&kims, "kim"));
        assert!(!t.accepts(&kims, "ana"), "bound to kim");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The same user again keeps the token; another user gets a new one.
        t.issue("kim").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), kims);
        t.issue("ana").unwrap();
        let anas = std::fs::read_to_string(&file).unwrap();
        assert_ne!(anas, kims);
        assert!(!t.accepts(&kims, "ana") && !t.accepts(&kims, "kim"));
        assert!(t.accepts(&anas, "ana"));
        t.withdraw();
        assert!(!t.accepts(&anas, "ana"));
        assert!(!file.exists());
    }
}
