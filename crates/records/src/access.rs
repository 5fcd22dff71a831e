//! Role-based access: a permission matrix over resource type × action, minimum necessary by
//! default, stored in the node's encrypted file and editable by an admin.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use store::Role;

/// What a user does to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read one record.
    Read,
    /// See it in search results.
    Search,
    /// Create it.
    Create,
    /// Change it.
    Update,
    /// Delete it.
    Delete,
    /// Export it off the device.
    Export,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 6] = [
        Action::Read,
        Action::Search,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Export,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Search => "search",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Export => "export",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The permission matrix: role → resource type → allowed actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// The grants.
    pub roles: BTreeMap<Role, BTreeMap<String, BTreeSet<Action>>>,
}

const DEMOGRAPHICS: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Practitioner",
    "Task",
    "Communication",
];

impl Default for Permissions {
    /// Minimum necessary: clinicians and admins everything; nurses everything but delete and
    /// export; front desk demographics, contacts, tasks and communications (no notes,
    /// observations or medications); auditors no charts at all (they read the audit trail).
    fn default() -> Self {
        let types: Vec<&str> = fhir::schema::RESOURCES.iter().map(|(t, _)| *t).collect();
        let mut roles = BTreeMap::new();
        let grant = |types: &[&str], actions: &[Action]| -> BTreeMap<String, BTreeSet<Action>> {
            types
                .iter()
                .map(|t| ((*t).to_owned(), actions.iter().copied().collect()))
                .collect()
        };
        roles.insert(Role::Admin, grant(&types, &Action::ALL));
        roles.insert(Role::Clinician, grant(&types, &Action::ALL));
        roles.insert(
            Role::Nurse,
            grant(
                &types,
                &[Action::Read, Action::Search, Action::Create, Action::Update],
            ),
        );
        let mut front = grant(
            DEMOGRAPHICS,
            &[Action::Read, Action::Search, Action::Create, Action::Update],
        );
        front.insert(
            "Practitioner".into(),
            [Action::Read, Action::Search].into_iter().collect(),
        );
        roles.insert(Role::FrontDesk, front);
        roles.insert(Role::Auditor, BTreeMap::new());
        Permissions { roles }
    }
}

impl Permissions {
    /// The matrix in force on database `db` of a node: the one its administrator set, or the
    /// minimum-necessary default. The one loader every gate uses (device records, app, CLI,
    /// the hub's CouchDB API and RPC).
    pub fn load(store: &store::Store, db: &str) -> Result<Permissions, store::Error> {
        match store.get_policy(db, store::PolicyPart::Permissions)? {
            Some(v) => serde_json::from_value(v).map_err(|_| {
                store::Error::Corrupt("the stored permission matrix is not valid".into())
            }),
            None => Ok(Permissions::default()),
        }
    }

    /// Whether `role` may do `action` on records of type `rt`.
    pub fn allows(&self, role: Role, rt: &str, action: Action) -> bool {
        self.roles
            .get(&role)
            .and_then(|m| m.get(rt))
            .is_some_and(|acts| acts.contains(&action))
    }

    /// Grants or revokes one permission. Unknown types are refused.
    pub fn set(&mut self, role: Role, rt: &str, action: Action, allow: bool) -> Result<(), String> {
        if fhir::schema::resource(rt).is_none() {
            return Err(format!("unknown resource type '{rt}'"));
        }
        let acts = self
            .roles
            .entry(role)
            .or_default()
            .entry(rt.to_owned())
            .or_default();
        if allow {
            acts.insert(action);
        } else {
            acts.remove(&action);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_necessary_defaults() {
        let p = Permissions::default();
        assert!(p.allows(Role::Clinician, "Observation", Action::Delete));
        assert!(p.allows(Role::Nurse, "Observation", Action::Create));
        assert!(!p.allows(Role::Nurse, "Observation", Action::Delete));
        assert!(!p.allows(Role::Nurse, "Patient", Action::Export));
        for rt in ["Patient", "RelatedPerson", "Task", "Communication"] {
            assert!(p.allows(Role::FrontDesk, rt, Action::Read), "{rt}");
        }
        for rt in [
            "DocumentReference",
            "Observation",
            "MedicationRequest",
            "Condition",
            "Consent",
        ] {
            for a in Action::ALL {
                assert!(!p.allows(Role::FrontDesk, rt, a), "{rt} {a:?}");
            }
        }
        assert!(!p.allows(Role::FrontDesk, "Practitioner", Action::Update));
        for (rt, _) in fhir::schema::RESOURCES {
            for a in Action::ALL {
                assert!(!p.allows(Role::Auditor, rt, a));
                assert!(p.allows(Role::Admin, rt, a));
            }
        }
    }

    #[test]
    fn admins_edit_the_matrix() {
        let mut p = Permissions::default();
        p.set(Role::FrontDesk, "Observation", Action::Read, true)
            .unwrap();
        assert!(p.allows(Role::FrontDesk, "Observation", Action::Read));
        p.set(Role::Clinician, "Patient", Action::Delete, false)
            .unwrap();
        assert!(!p.allows(Role::Clinician, "Patient", Action::Delete));
        assert!(
            p.set(Role::Nurse, "Medication", Action::Read, true)
                .is_err()
        );
    }
}

/// An emergency ("break-glass") grant: a user may read one patient's chart until a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who.
    pub user: String,
    /// Whose chart (`Patient/{id}`).
    pub patient: String,
    /// Until (Unix seconds).
    pub until: i64,
    /// Why, as the user gave it.
    pub reason: String,
}

/// How long a break-glass grant lasts by default: 60 minutes.
pub const BREAK_GLASS_SECS: i64 = 60 * 60;
