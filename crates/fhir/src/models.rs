//! Typed models of the resources Hearth works with. Each struct names the elements Hearth's code
//! reads or writes; every other element (and every extension) is kept in `other` and written
//! back unchanged, so nothing a user or another system wrote is dropped on a round trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Elements a model does not name, kept as they came.
pub type Other = Map<String, Value>;

/// `Coding`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Coding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `CodeableConcept`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

impl CodeableConcept {
    /// Whether any coding has this system and code.
    pub fn has(&self, system: &str, code: &str) -> bool {
        self.coding
            .iter()
            .any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
    }
}

/// `Reference`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

impl Reference {
    /// A literal reference `Type/id`.
    pub fn to(target: &str) -> Reference {
        Reference {
            reference: Some(target.to_owned()),
            ..Reference::default()
        }
    }
}

/// `Identifier`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `HumanName`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HumanName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `ContactPoint`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactPoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Address`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(
        rename = "postalCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub postal_code: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Period`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Quantity`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    /// Kept as written (`120` and `120.0` differ in FHIR: precision is significant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Timing.repeat`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    #[serde(
        rename = "boundsPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bounds_period: Option<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<serde_json::Number>,
    #[serde(
        rename = "periodUnit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub period_unit: Option<String>,
    #[serde(rename = "dayOfWeek", default, skip_serializing_if = "Vec::is_empty")]
    pub day_of_week: Vec<String>,
    #[serde(rename = "timeOfDay", default, skip_serializing_if = "Vec::is_empty")]
    pub time_of_day: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Timing`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Dosage`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dosage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Meta`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(rename = "versionId", default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(
        rename = "lastUpdated",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Attachment`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(
        rename = "contentType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Patient`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(rename = "birthDate", default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<Address>,
    #[serde(flatten)]
    pub other: Other,
}

/// `RelatedPerson`: healthcare proxies (medical power of attorney) and emergency contacts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelatedPerson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub patient: Reference,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationship: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Observation`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(
        rename = "effectiveDateTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub effective_date_time: Option<String>,
    #[serde(
        rename = "valueQuantity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub value_quantity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Observation.component` (e.g. systolic and diastolic in a blood pressure panel).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    #[serde(
        rename = "valueQuantity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub value_quantity: Option<Quantity>,
    #[serde(flatten)]
    pub other: Other,
}

/// `MedicationRequest`: its dosage timing drives medication reminders.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MedicationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: String,
    pub intent: String,
    #[serde(
        rename = "medicationCodeableConcept",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub medication_codeable_concept: Option<CodeableConcept>,
    pub subject: Reference,
    #[serde(
        rename = "authoredOn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub authored_on: Option<String>,
    #[serde(
        rename = "dosageInstruction",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dosage_instruction: Vec<Dosage>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Task`: maintenance items, care gaps, follow-ups.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: String,
    pub intent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<Reference>,
    #[serde(
        rename = "executionPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub execution_period: Option<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<TaskRestriction>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Task.restriction`: `period.end` is the due date.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRestriction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(flatten)]
    pub other: Other,
}

impl Task {
    /// The due date: `restriction.period.end`, else `executionPeriod.end`.
    pub fn due(&self) -> Option<&str> {
        self.restriction
            .as_ref()
            .and_then(|r| r.period.as_ref())
            .and_then(|p| p.end.as_deref())
            .or_else(|| {
                self.execution_period
                    .as_ref()
                    .and_then(|p| p.end.as_deref())
            })
    }
}

/// `Communication`: the patient communications log (calls, messages, visits).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Communication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub medium: Vec<CodeableConcept>,
    #[serde(flatten)]
    pub other: Other,
}

/// `DocumentReference`: progress notes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub content: Vec<DocumentContent>,
    #[serde(flatten)]
    pub other: Other,
}

/// `DocumentReference.content`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentContent {
    pub attachment: Attachment,
    #[serde(flatten)]
    pub other: Other,
}

/// `Consent`: a signed consent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: String,
    pub scope: CodeableConcept,
    pub category: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<Reference>,
    #[serde(rename = "dateTime", default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Provenance`: who signed or changed what, when, on which device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub target: Vec<Reference>,
    pub recorded: String,
    pub agent: Vec<ProvenanceAgent>,
    #[serde(flatten)]
    pub other: Other,
}

/// `Provenance.agent`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceAgent {
    pub who: Reference,
    #[serde(flatten)]
    pub other: Other,
}

/// A resource of a type Hearth models in detail, or any other supported type as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    /// Patient
    Patient(Patient),
    /// RelatedPerson
    RelatedPerson(RelatedPerson),
    /// Observation
    Observation(Observation),
    /// MedicationRequest
    MedicationRequest(MedicationRequest),
    /// Task
    Task(Task),
    /// Communication
    Communication(Communication),
    /// DocumentReference
    DocumentReference(DocumentReference),
    /// Consent
    Consent(Consent),
    /// Provenance
    Provenance(Provenance),
}

/// Parses a resource Hearth models in detail; `Ok(None)` for other supported types (Practitioner,
/// Encounter, Condition, AllergyIntolerance), which are handled as validated JSON.
pub fn parse(value: &Value) -> Result<Option<Resource>, serde_json::Error> {
    let modelled = matches!(
        value.get("resourceType").and_then(Value::as_str),
        Some(
            "Patient"
                | "RelatedPerson"
                | "Observation"
                | "MedicationRequest"
                | "Task"
                | "Communication"
                | "DocumentReference"
                | "Consent"
                | "Provenance"
        )
    );
    if !modelled {
        return Ok(None);
    }
    serde_json::from_value(value.clone()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_unknown_elements_and_extensions() {
        let input = json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"lastUpdated": "2026-11-20T09:30:00Z", "tag": [{"code": "x"}]},
            "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [{"url": "text", "valueString": "x"}]}],
            "name": [{"family": "Okafor", "given": ["Ada"], "use": "official", "_family": {"extension": [{"url": "u", "valueString": "v"}]}}],
            "_birthDate": {"extension": [{"url": "http://example.org/approx", "valueBoolean": true}]},
            "birthDate": "1948-03-12",
            "maritalStatus": {"text": "Widowed"},
            "address": [{"city": "Lagos", "country": "NG", "line": ["1 Road"]}],
            "telecom": [{"system": "phone", "value": "555-0101", "rank": 1}]
        });
        let parsed = parse(&input).unwrap().unwrap();
        let Resource::Patient(p) = &parsed else {
            panic!("not a patient")
        };
        assert_eq!(p.name[0].family.as_deref(), Some("Okafor"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), input);
    }

    #[test]
    fn observation_with_components_round_trips() {
        let input = json!({
            "resourceType": "Observation", "id": "bp", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-20T09:30:00Z",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mmHg"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80.5, "unit": "mmHg"}}
            ]
        });
        let parsed = parse(&input).unwrap().unwrap();
        let Resource::Observation(o) = &parsed else {
            panic!("not an observation")
        };
        assert!(o.code.has("http://loinc.org", "85354-9"));
        assert_eq!(
            o.component[1]
                .value_quantity
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .and_then(|n| n.as_f64()),
            Some(80.5)
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), input);
        assert!(
            parse(&json!({"resourceType": "Encounter"}))
                .unwrap()
                .is_none()
        );
    }
}

#[cfg(test)]
mod number_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timing_counts_parse_beside_flattened_members() {
        let input = json!({"resourceType": "MedicationRequest", "id": "m", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p"},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1.0, "periodUnit": "d", "count": 10}}}]});
        let parsed = parse(&input).unwrap().unwrap();
        let Resource::MedicationRequest(m) = &parsed else {
            panic!("not a medication request")
        };
        let repeat = m.dosage_instruction[0]
            .timing
            .as_ref()
            .unwrap()
            .repeat
            .as_ref()
            .unwrap();
        assert_eq!(repeat.frequency, Some(2));
        assert_eq!(repeat.count, Some(10));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), input);
    }
}
