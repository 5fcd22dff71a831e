//! Role-based access: a permission matrix over resource type × action, minimum necessary by
//! default, stored in the node's encrypted file and editable by an admin.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

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

/// The roles Hearth knows.
pub const ROLES: &[&str] = &["admin", "clinician", "nurse", "front_desk", "auditor"];

/// The permission matrix: role → resource type → allowed actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// The grants.
    pub roles: BTreeMap<String, BTreeMap<String, BTreeSet<Action>>>,
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
        roles.insert("admin".into(), grant(&types, &Action::ALL));
        roles.insert("clinician".into(), grant(&types, &Action::ALL));
        roles.insert(
            "nurse".into(),
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
        roles.insert("front_desk".into(), front);
        roles.insert("auditor".into(), BTreeMap::new());
        Permissions { roles }
    }
}

impl Permissions {
    /// Whether `role` may do `action` on records of type `rt`.
    pub fn allows(&self, role: &str, rt: &str, action: Action) -> bool {
        self.roles
            .get(role)
            .and_then(|m| m.get(rt))
            .is_some_and(|acts| acts.contains(&action))
    }

    /// Grants or revokes one permission. Unknown roles or types are refused.
    pub fn set(&mut self, role: &str, rt: &str, action: Action, allow: bool) -> Result<(), String> {
        if !ROLES.contains(&role) {
            return Err(format!(
                "unknown role '{role}'; roles are {}",
                ROLES.join(", ")
            ));
        }
        if fhir::schema::resource(rt).is_none() {
            return Err(format!("unknown resource type '{rt}'"));
        }
        let acts = self
            .roles
            .entry(role.to_owned())
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
        assert!(p.allows("clinician", "Observation", Action::Delete));
        assert!(p.allows("nurse", "Observation", Action::Create));
        assert!(!p.allows("nurse", "Observation", Action::Delete));
        assert!(!p.allows("nurse", "Patient", Action::Export));
        for rt in ["Patient", "RelatedPerson", "Task", "Communication"] {
            assert!(p.allows("front_desk", rt, Action::Read), "{rt}");
        }
        for rt in [
            "DocumentReference",
            "Observation",
            "MedicationRequest",
            "Condition",
            "Consent",
        ] {
            for a in Action::ALL {
                assert!(!p.allows("front_desk", rt, a), "{rt} {a:?}");
            }
        }
        assert!(!p.allows("front_desk", "Practitioner", Action::Update));
        for (rt, _) in fhir::schema::RESOURCES {
            for a in Action::ALL {
                assert!(!p.allows("auditor", rt, a));
                assert!(p.allows("admin", rt, a));
            }
        }
        assert!(!p.allows("nobody", "Patient", Action::Read));
    }

    #[test]
    fn admins_edit_the_matrix() {
        let mut p = Permissions::default();
        p.set("front_desk", "Observation", Action::Read, true)
            .unwrap();
        assert!(p.allows("front_desk", "Observation", Action::Read));
        p.set("clinician", "Patient", Action::Delete, false)
            .unwrap();
        assert!(!p.allows("clinician", "Patient", Action::Delete));
        assert!(p.set("janitor", "Patient", Action::Read, true).is_err());
        assert!(p.set("nurse", "Medication", Action::Read, true).is_err());
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
