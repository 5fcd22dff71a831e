//! Who is acting, and the audit entries each clinical operation writes.

use serde_json::{Value, json};
use store::{AuditEvent, Role};

/// The person an operation runs for, as the records layer keeps it: the user and role of the
/// [`store::Session`] that opened the records (ADR 11). Private to this crate: callers name
/// who is acting with a `Session`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Actor {
    /// User name.
    pub user: String,
    /// Role.
    pub role: Role,
}

impl Actor {
    /// The person of a session.
    pub fn new(user: &str, role: Role) -> Actor {
        Actor {
            user: user.to_owned(),
            role,
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
            role: self.role.to_string(),
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

/// An audit entry as a FHIR R4 `AuditEvent` (<https://hl7.org/fhir/R4/auditevent.html>), for
/// export and for the accounting of disclosures a patient may request.
pub fn audit_event(e: &store::AuditEntry) -> Value {
    let ev = &e.event;
    let (type_, action) = match ev.action.as_str() {
        "login" | "login_failed" | "lock" | "unlock" | "timeout" => (
            json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"}),
            "E",
        ),
        "export" => (
            json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"}),
            "R",
        ),
        other => (
            json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"}),
            match other {
                "create" => "C",
                "update" => "U",
                "delete" => "D",
                "read" | "search" | "audit_read" => "R",
                _ => "E",
            },
        ),
    };
    let outcome = match ev.outcome.as_str() {
        "success" => "0",
        "denied" => "4",
        _ => "8",
    };
    let mut entities = Vec::new();
    if let Some(r) = ev
        .resource
        .as_ref()
        .filter(|r| r.contains('/') && !r.contains('?'))
    {
        entities.push(json!({"what": {"reference": r}}));
    }
    if let Some(p) = &ev.patient {
        entities.push(json!({"what": {"reference": p},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}}));
    }
    let mut out = json!({
        "resourceType": "AuditEvent",
        "id": format!("{}-{}", e.device, e.seq),
        "type": type_,
        "subtype": [{"system": "urn:hearth:audit-action", "code": ev.action}],
        "action": action,
        "recorded": fhir::time::instant(e.time),
        "outcome": outcome,
        "agent": [{
            "who": {"identifier": {"system": "urn:hearth:user", "value": ev.user}},
            "role": [{"text": ev.role}],
            "requestor": true
        }],
        "source": {"observer": {"identifier": {"system": "urn:hearth:device", "value": e.device}}}
    });
    if let Some(d) = &ev.detail {
        out["outcomeDesc"] = json!(d);
    }
    if ev.break_glass {
        out["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT", "display": "Emergency Treatment"}]}]);
    }
    if !entities.is_empty() {
        out["entity"] = Value::Array(entities);
    }
    out
}
