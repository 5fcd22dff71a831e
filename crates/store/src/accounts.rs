//! Hub accounts: the names and password hashes that may use the CouchDB-compatible API. The
//! store keeps them (encrypted with everything else); hashing and checking passwords is the
//! hub's business, so this module only stores opaque PHC strings.

use rusqlite::{OptionalExtension, params};

use vault::Role;

use crate::Error;
use crate::store::Store;

/// An account row (`name, password_hash, admin, created_at, role`).
fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let role: String = r.get(4)?;
    Ok(Account {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        admin: r.get(2)?,
        created_at: r.get(3)?,
        role: role.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

/// One hub account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// The password's Argon2id PHC string.
    pub password_hash: String,
    /// Whether the account may create and delete databases and manage the hub.
    pub admin: bool,
    /// The role whose permissions the account has on records; an administrator's role is
    /// [`Role::Admin`].
    pub role: Role,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Checks an account name: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn validate_account_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "an account name is 1-64 letters, digits, '.', '_', '-' or '@'".into(),
        ))
    }
}

impl Store {
    /// Creates or replaces an account.
    pub fn put_account(&self, account: &Account) -> Result<(), Error> {
        validate_account_name(&account.name)?;
        let inner = self.lock();
        inner.conn.execute(
            "INSERT INTO accounts (name, password_hash, admin, created_at, role)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
                 admin = excluded.admin, role = excluded.role",
            params![
                account.name,
                account.password_hash,
                account.admin,
                account.created_at,
                account.role.as_str()
            ],
        )?;
        Ok(())
    }

    /// Reads an account by name.
    pub fn get_account(&self, name: &str) -> Result<Option<Account>, Error> {
        let inner = self.lock();
        Ok(inner
            .conn
            .prepare_cached(
                "SELECT name, password_hash, admin, created_at, role FROM accounts WHERE name = ?1",
            )?
            .query_row([name], account_row)
            .optional()?)
    }

    /// Every account, by name.
    pub fn list_accounts(&self) -> Result<Vec<Account>, Error> {
        let inner = self.lock();
        let mut st = inner.conn.prepare_cached(
            "SELECT name, password_hash, admin, created_at, role FROM accounts ORDER BY name",
        )?;
        let rows = st.query_map([], account_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes an account; `false` when there was none.
    pub fn delete_account(&self, name: &str) -> Result<bool, Error> {
        let inner = self.lock();
        Ok(inner
            .conn
            .execute("DELETE FROM accounts WHERE name = ?1", [name])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&dir.path().join("a.db"), &vault::Dek::generate().unwrap()).unwrap();
        let a = Account {
            name: "sync@clinic".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
            admin: false,
            role: Role::Nurse,
            created_at: 5,
        };
        store.put_account(&a).unwrap();
        assert_eq!(store.get_account("sync@clinic").unwrap(), Some(a.clone()));
        let b = Account {
            admin: true,
            password_hash: "other".into(),
            ..a.clone()
        };
        store.put_account(&b).unwrap();
        assert_eq!(store.list_accounts().unwrap(), vec![b]);
        assert!(store.delete_account("sync@clinic").unwrap());
        assert!(!store.delete_account("sync@clinic").unwrap());
        assert_eq!(store.get_account("sync@clinic").unwrap(), None);
        for bad in ["", "a b", "x/y", &"a".repeat(65)] {
            assert!(validate_account_name(bad).is_err(), "{bad}");
        }
        assert!(!format!("{a:?}").contains("argon2"));
    }
}
