//! Deterministic, realistic demo data for a clinic: patients with proxies, vitals over time,
//! conditions, allergies, medications with reminder schedules, notes, tasks, communications,
//! signed consents with provenance. The same seed always gives the same resources.
//!
//! All people are fictional; names are drawn from lists that include accented letters so search
//! and de-identification see realistic input.

use base64::Engine;
use serde_json::{Value, json};

/// A small deterministic PRNG (SplitMix64): fast, seedable, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One item of a slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FAMILY: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreno",
    "Nguyen",
    "Kowalski",
    "Haddad",
    "O'Brien",
    "Müller",
    "Søndergaard",
    "García",
    "Tanaka",
    "Abebe",
    "Dubois",
    "Rossi",
    "Ivanova",
    "Singh",
    "Mensah",
    "Björklund",
    "Łukasik",
    "Fernández",
];
const GIVEN_F: &[&str] = &[
    "Adaeze",
    "Lucía",
    "Zoë",
    "Mai",
    "Agnieszka",
    "Leila",
    "Siobhán",
    "Anneliese",
    "Ingrid",
    "Mercedes",
    "Yuki",
    "Selam",
    "Élodie",
    "Giulia",
    "Olga",
    "Priya",
    "Ama",
    "Björk",
    "Renée",
    "Inés",
];
const GIVEN_M: &[&str] = &[
    "Henrik", "José", "Minh", "Tomasz", "Karim", "Seán", "Jürgen", "Søren", "Mateo", "Hiroshi",
    "Dawit", "Étienne", "Marco", "Dmitri", "Arjun", "Kwame", "Björn", "Łukasz", "Andrés", "Chidi",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "62701"),
    ("Hartford", "CT", "06103"),
    ("Boise", "ID", "83702"),
    ("Tucson", "AZ", "85701"),
    ("Duluth", "MN", "55802"),
    ("Asheville", "NC", "28801"),
    ("Bangor", "ME", "04401"),
    ("Fresno", "CA", "93721"),
];
const STREETS: &[&str] = &[
    "Maple Ave",
    "Oak St",
    "River Rd",
    "Hillcrest Dr",
    "Main St",
    "Cedar Ln",
    "Lake View Rd",
];
const CONDITIONS: &[(&str, &str)] = &[
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("13645005", "Chronic obstructive lung disease"),
    ("84114007", "Heart failure"),
    ("35489007", "Depressive disorder"),
    ("69896004", "Rheumatoid arthritis"),
];
const ALLERGENS: &[(&str, &str)] = &[
    ("7980", "Penicillin G"),
    ("1191", "Aspirin"),
    ("2670", "Codeine"),
    ("733", "Ampicillin"),
];
const MEDICATIONS: &[(&str, &str)] = &[
    ("860975", "Metformin 500 MG Oral Tablet"),
    ("314076", "Lisinopril 10 MG Oral Tablet"),
    ("197361", "Amlodipine 5 MG Oral Tablet"),
    ("310798", "Hydrochlorothiazide 25 MG Oral Tablet"),
    ("617312", "Atorvastatin 10 MG Oral Tablet"),
    ("311036", "Insulin Lispro 100 UNT/ML Injectable Solution"),
];
const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";

/// The practitioners every demo clinic has (referenced by encounters, notes, consents).
pub fn practitioners() -> Vec<Value> {
    (1..=5)
        .map(|i| {
            let (family, given) = [("Reyes", "Carmen"), ("Osei", "Kofi"), ("Brandt", "Helga"), ("Park", "Ji-woo"), ("Ahmed", "Nadia")][i - 1];
            json!({
                "resourceType": "Practitioner", "id": format!("pr-{i}"), "active": true,
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("19{:08}", 12_345 * i)}],
                "name": [{"family": family, "given": [given], "prefix": [if i % 2 == 0 { "Dr." } else { "RN" }]}],
                "telecom": [{"system": "phone", "value": format!("555-02{:02}", i), "use": "work"}]
            })
        })
        .collect()
}

fn date(days: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn date_time(days: i64, minute_of_day: u64) -> String {
    format!(
        "{}T{:02}:{:02}:00Z",
        date(days),
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// 2026-11-20, the demo's "today", as days since the epoch.
pub const TODAY: i64 = 20_777;

fn quantity(value: Value, unit: &str, code: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": code})
}

fn vital(
    id: String,
    patient: &str,
    days: i64,
    minute: u64,
    code: &str,
    display: &str,
    value: Value,
) -> Value {
    let mut obs = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date_time(days, minute),
    });
    if let Value::Object(parts) = value {
        for (k, v) in parts {
            obs[k] = v;
        }
    }
    obs
}

/// All resources of one demo patient, referencing the practitioners of [`practitioners`].
/// `n` is the patient's number; `extra` how many vitals sets to record (each set is 6
/// Observations).
pub fn patient_bundle(n: u64, seed: u64, vitals_sets: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(n));
    let pid = format!("p-{n:06}");
    let female = rng.below(2) == 0;
    let family = *rng.pick(FAMILY);
    let given = *rng.pick(if female { GIVEN_F } else { GIVEN_M });
    let (city, state, zip) = *rng.pick(CITIES);
    let birth = TODAY - 365 * (20 + rng.below(75) as i64) - rng.below(365) as i64;
    let phone = format!("555-{:04}", rng.below(10_000));
    let dr = format!("Practitioner/pr-{}", 1 + rng.below(5));
    let mut out = Vec::new();
    out.push(json!({
        "resourceType": "Patient", "id": pid, "active": true,
        "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                        "system": "urn:oid:2.16.840.1.113883.3.4.5.6", "value": format!("MRN{:07}", 100_000 + n)}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": phone, "use": "home"},
                    {"system": "email", "value": format!("{}.{}@example.org", given.to_lowercase(), n)}],
        "gender": if female { "female" } else { "male" },
        "birthDate": date(birth),
        "address": [{"use": "home", "line": [format!("{} {}", 10 + rng.below(990), rng.pick(STREETS))], "city": city, "state": state, "postalCode": zip, "country": "US"}],
        "generalPractitioner": [{"reference": dr}]
    }));
    // A healthcare proxy (medical power of attorney) and an emergency contact.
    let proxy_given = *rng.pick(if female { GIVEN_M } else { GIVEN_F });
    out.push(json!({
        "resourceType": "RelatedPerson", "id": format!("{pid}-proxy"), "active": true,
        "patient": {"reference": format!("Patient/{pid}")},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "HPOWATT", "display": "healthcare power of attorney"}]}],
        "name": [{"family": family, "given": [proxy_given]}],
        "telecom": [{"system": "phone", "value": format!("555-{:04}", rng.below(10_000)), "use": "mobile"}]
    }));
    out.push(json!({
        "resourceType": "RelatedPerson", "id": format!("{pid}-ec"), "active": true,
        "patient": {"reference": format!("Patient/{pid}")},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C", "display": "Emergency Contact"}]}],
        "name": [{"family": rng.pick(FAMILY), "given": [rng.pick(GIVEN_F)]}],
        "telecom": [{"system": "phone", "value": format!("555-{:04}", rng.below(10_000))}]
    }));
    let visit = TODAY - rng.below(30) as i64;
    let enc = format!("{pid}-enc-1");
    out.push(json!({
        "resourceType": "Encounter", "id": enc, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH", "display": "home health"},
        "subject": {"reference": format!("Patient/{pid}")},
        "participant": [{"individual": {"reference": dr}}],
        "period": {"start": date_time(visit, 9 * 60), "end": date_time(visit, 10 * 60)}
    }));
    let (cond_code, cond_name) = *rng.pick(CONDITIONS);
    out.push(json!({
        "resourceType": "Condition", "id": format!("{pid}-cond-1"),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": SNOMED, "code": cond_code, "display": cond_name}], "text": cond_name},
        "subject": {"reference": format!("Patient/{pid}")},
        "onsetDateTime": date_time(birth + 365 * 40, 0)
    }));
    let (all_code, all_name) = *rng.pick(ALLERGENS);
    out.push(json!({
        "resourceType": "AllergyIntolerance", "id": format!("{pid}-allergy-1"),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "type": "allergy", "category": ["medication"], "criticality": "high",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": all_code, "display": all_name}]},
        "patient": {"reference": format!("Patient/{pid}")},
        "reaction": [{"manifestation": [{"coding": [{"system": SNOMED, "code": "247472004", "display": "Hives"}]}], "severity": "moderate"}]
    }));
    for k in 0..2u64 {
        let (rx, name) = *rng.pick(MEDICATIONS);
        let timing = if k == 0 {
            json!({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"], "boundsPeriod": {"start": date_time(visit, 0)}}})
        } else {
            json!({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h", "boundsPeriod": {"start": date_time(visit, 6 * 60)}}})
        };
        out.push(json!({
            "resourceType": "MedicationRequest", "id": format!("{pid}-med-{k}"), "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rx, "display": name}], "text": name},
            "subject": {"reference": format!("Patient/{pid}")},
            "authoredOn": date_time(visit, 10 * 60),
            "requester": {"reference": dr},
            "dosageInstruction": [{"text": name, "timing": timing,
                "doseAndRate": [{"doseQuantity": quantity(json!(1), "tablet", "{tbl}")}]}]
        }));
    }
    // The first dose of the first medication, given at the visit (draws nothing from `rng`, so
    // the rest of the clinic is the same as before this resource existed).
    out.push(json!({
        "resourceType": "MedicationAdministration", "id": format!("{pid}-dose-0"), "status": "completed",
        "medicationCodeableConcept": out.iter().rev().find(|r| r["id"] == format!("{pid}-med-0"))
            .map(|m| m["medicationCodeableConcept"].clone()).unwrap_or(Value::Null),
        "subject": {"reference": format!("Patient/{pid}")},
        "effectiveDateTime": date_time(visit, 8 * 60),
        "performer": [{"actor": {"reference": dr}}],
        "request": {"reference": format!("MedicationRequest/{pid}-med-0")}
    }));
    for s in 0..vitals_sets {
        let day = TODAY - (s as i64) * 7 - rng.below(3) as i64;
        let minute = 8 * 60 + rng.below(10 * 60);
        let o = |k: &str| format!("{pid}-obs-{s}-{k}");
        let sys = 105 + rng.below(50);
        let dia = 60 + rng.below(30);
        out.push(vital(o("bp"), &pid, day, minute, "85354-9", "Blood pressure panel", json!({
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": quantity(json!(sys), "mmHg", "mm[Hg]")},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": quantity(json!(dia), "mmHg", "mm[Hg]")}
            ]})));
        out.push(vital(
            o("hr"),
            &pid,
            day,
            minute,
            "8867-4",
            "Heart rate",
            json!({"valueQuantity": quantity(json!(55 + rng.below(45)), "beats/minute", "/min")}),
        ));
        out.push(vital(o("temp"), &pid, day, minute, "8310-5", "Body temperature", json!({"valueQuantity": quantity(json!(36.1 + (rng.below(15) as f64) / 10.0), "Cel", "Cel")})));
        out.push(vital(
            o("spo2"),
            &pid,
            day,
            minute,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            json!({"valueQuantity": quantity(json!(90 + rng.below(10)), "%", "%")}),
        ));
        out.push(vital(
            o("wt"),
            &pid,
            day,
            minute,
            "29463-7",
            "Body weight",
            json!({"valueQuantity": quantity(json!(50 + rng.below(60)), "kg", "kg")}),
        ));
        out.push(vital(
            o("glu"),
            &pid,
            day,
            minute,
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            json!({"valueQuantity": quantity(json!(70 + rng.below(120)), "mg/dL", "mg/dL")}),
        ));
    }
    let note = format!(
        "Home visit. {given} {family} reports improved sleep; BP reviewed with proxy {proxy_given}. Continue current regimen. Call {phone} if symptoms worsen."
    );
    out.push(json!({
        "resourceType": "DocumentReference", "id": format!("{pid}-note-1"), "status": "current", "docStatus": "final",
        "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": format!("Patient/{pid}")},
        "date": date_time(visit, 10 * 60 + 30),
        "author": [{"reference": dr}],
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": "Progress note",
            "data": base64::engine::general_purpose::STANDARD.encode(note.as_bytes())}}]
    }));
    out.push(json!({
        "resourceType": "Task", "id": format!("{pid}-task-1"), "status": "requested", "intent": "order", "priority": "routine",
        "description": "Follow-up call about blood pressure readings",
        "for": {"reference": format!("Patient/{pid}")},
        "authoredOn": date_time(visit, 11 * 60),
        "owner": {"reference": dr},
        "restriction": {"period": {"end": date_time(TODAY + 3 + rng.below(20) as i64, 17 * 60)}}
    }));
    out.push(json!({
        "resourceType": "Communication", "id": format!("{pid}-comm-1"), "status": "completed",
        "medium": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": "PHONE", "display": "telephone"}]}],
        "subject": {"reference": format!("Patient/{pid}")},
        "sent": date_time(visit - 2, 14 * 60),
        "sender": {"reference": dr},
        "payload": [{"contentString": "Called to confirm the home visit time."}]
    }));
    let consent = format!("{pid}-consent-1");
    out.push(json!({
        "resourceType": "Consent", "id": consent, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "dateTime": date_time(visit, 9 * 60 + 5),
        "performer": [{"reference": format!("Patient/{pid}")}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]}
    }));
    out.push(json!({
        "resourceType": "Provenance", "id": format!("{consent}-signature"),
        "target": [{"reference": format!("Consent/{consent}")}],
        "recorded": date_time(visit, 9 * 60 + 5),
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                   "who": {"reference": format!("Patient/{pid}")}},
                  {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "enterer"}]},
                   "who": {"reference": dr}}],
        "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.7", "display": "Consent Signature"}],
                       "when": date_time(visit, 9 * 60 + 5), "who": {"reference": format!("Patient/{pid}")}, "sigFormat": "image/png"}]
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(TODAY), "2026-11-20");
        assert_eq!(date(11_016), "2000-02-29");
    }

    #[test]
    fn deterministic_and_valid() {
        let a = patient_bundle(7, 42, 2);
        assert_eq!(a, patient_bundle(7, 42, 2));
        assert_ne!(a, patient_bundle(8, 42, 2));
        let mut all = practitioners();
        all.extend(a);
        for r in &all {
            let report = crate::validate(r);
            assert!(
                report.issues.is_empty(),
                "{} {}: {:?}",
                r["resourceType"],
                r["id"],
                report.issues
            );
        }
        assert_eq!(all.len(), 5 + 14 + 12);
    }
}
