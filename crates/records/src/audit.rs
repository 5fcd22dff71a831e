//! Who is acting, and the audit entries each clinical operation writes.

use serde_json::Value;
use store::AuditEvent;

/// The authenticated user an operation runs for (sessions and roles come with issue 4; until
/// then, the user who unlocked the node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// User name.
    pub user: String,
    /// Role.
    pub role: String,
}

impl Actor {
    /// An actor.
    pub fn new(user: &str, role: &str) -> Actor {
        Actor {
            user: user.to_owned(),
            role: role.to_owned(),
        }
    }

    /// An audit event by this actor.
    pub fn event(
        &self,
        action: &str,
        outcome: &str,
        resource: Option<String>,
        patient: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            user: self.user.clone(),
            role: self.role.clone(),
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            patient,
            resource,
            detail: None,
            break_glass: false,
        }
    }
}

/// The patient whose record a resource belongs to (`Patient/{id}`), from its compartment terms.
pub fn patient_of(resource: &Value) -> Option<String> {
    fhir::index::terms(resource, 0)
        .into_iter()
        .find_map(|t| match t {
            fhir::index::Term::Token { param, value } if param == "patient" => Some(value),
            _ => None,
        })
}

/// `Type/id` of a resource.
pub fn reference_of(resource: &Value) -> Option<String> {
    Some(format!(
        "{}/{}",
        resource.get("resourceType")?.as_str()?,
        resource.get("id")?.as_str()?
    ))
}
