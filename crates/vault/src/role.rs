//! The roles a person acts in. Parsed once, where a name enters (a vault file, an account row,
//! a command-line flag, a form), and used as this type everywhere after: the permission
//! matrix, the gates of the administration and audit commands, the screens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A person's role on a node (docs/adr/0009-role-permission-matrix.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Administers the node: users, devices, the permission matrix; every record.
    Admin,
    /// Full clinical access.
    Clinician,
    /// Clinical access without deletion or export.
    Nurse,
    /// Demographics, contacts, tasks and communications; no clinical content.
    FrontDesk,
    /// The audit trail; no charts.
    Auditor,
}

impl Role {
    /// Every role, in the order screens list them.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Clinician,
        Role::Nurse,
        Role::FrontDesk,
        Role::Auditor,
    ];

    /// The name stored and typed (`front_desk`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::FrontDesk => "front_desk",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role administers the node.
    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }

    /// Whether the role may read the audit trail (administrators and auditors).
    pub fn reads_audit(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }

    /// The role names, for messages (`admin, clinician, nurse, front_desk, auditor`).
    pub fn names() -> String {
        Role::ALL.map(Role::as_str).join(", ")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name Hearth does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown role '{}'; roles are {}", self.0, Role::names())
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let e = "janitor".parse::<Role>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown role 'janitor'; roles are admin, clinician, nurse, front_desk, auditor"
        );
        assert!("Admin".parse::<Role>().is_err());
        assert!(Role::Auditor.reads_audit() && !Role::Nurse.reads_audit());
        // As a map key (the permission matrix) the name is the key.
        let m: std::collections::BTreeMap<Role, u8> =
            serde_json::from_str(r#"{"front_desk": 1}"#).unwrap();
        assert_eq!(m[&Role::FrontDesk], 1);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"front_desk":1}"#);
    }
}
