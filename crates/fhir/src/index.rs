//! Search terms of a resource: what the store indexes, in the same transaction as the write,
//! so offline search never scans documents. Parameter names are `{resourceType}.{param}`, plus
//! `patient` (the patient compartment, for `$everything`) and `_lastUpdated` on every type.
//!
//! Dates and times are stored as UTC instants (`2026-11-20T09:30:00Z`) so string order is time
//! order; `birthdate` keeps the date as written. Names go to full-text search (case- and
//! accent-insensitive, prefix matching).

use serde_json::Value;

use crate::models::MedicationRequest;
use crate::{reminders, time};

/// One index entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// An exact, ordered value of a parameter.
    Token {
        /// `{resourceType}.{param}`, `patient` or `_lastUpdated`.
        param: String,
        /// The value.
        value: String,
    },
    /// Text for full-text (name) search.
    Text(String),
}

fn token(out: &mut Vec<Term>, rt: &str, param: &str, value: impl Into<String>) {
    out.push(Term::Token {
        param: format!("{rt}.{param}"),
        value: value.into(),
    });
}

fn reference(v: &Value) -> Option<&str> {
    v.get("reference").and_then(Value::as_str)
}

fn patient_ref(v: &Value) -> Option<&str> {
    reference(v).filter(|r| r.starts_with("Patient/"))
}

fn as_instant(s: &str) -> Option<String> {
    time::parse(s).map(time::instant)
}

fn names(v: &Value) -> String {
    let mut words = Vec::new();
    for n in v
        .get("name")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for k in ["text", "family"] {
            if let Some(s) = n.get(k).and_then(Value::as_str) {
                words.push(s.to_owned());
            }
        }
        for k in ["given", "prefix", "suffix"] {
            for s in n
                .get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                words.push(s.to_owned());
            }
        }
    }
    words.join(" ")
}

/// A sort key for names: lowercase "family given".
fn name_key(v: &Value) -> Option<String> {
    let n = v.get("name")?.as_array()?.first()?;
    let family = n.get("family").and_then(Value::as_str).unwrap_or("");
    let given = n
        .get("given")
        .and_then(Value::as_array)
        .and_then(|g| g.first())
        .and_then(Value::as_str)
        .unwrap_or("");
    let key = format!("{family} {given}").trim().to_lowercase();
    (!key.is_empty()).then_some(key)
}

fn codes(out: &mut Vec<Term>, rt: &str, param: &str, cc: Option<&Value>) {
    for c in cc
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(code) = c.get("code").and_then(Value::as_str) {
            token(out, rt, param, code);
            if let Some(system) = c.get("system").and_then(Value::as_str) {
                token(out, rt, param, format!("{system}|{code}"));
            }
        }
    }
}

/// The patients whose compartment a stored body belongs to (`Patient/{id}`, deduplicated, in
/// the order found): the same answer as the `patient` terms of [`terms`], read without building
/// a tree of the whole body, for the hub's accounting of what it sent to whom. A body that is
/// not a JSON object, or has no FHIR `resourceType`, is in no compartment.
pub fn patients_of_json(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Ref {
        reference: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Agent {
        who: Option<Ref>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "resourceType")]
        rt: Option<String>,
        id: Option<String>,
        subject: Option<Ref>,
        patient: Option<Ref>,
        #[serde(rename = "for")]
        for_: Option<Ref>,
        target: Option<Vec<Ref>>,
        agent: Option<Vec<Agent>>,
    }
    let b: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        // A member of an unexpected shape (an invalid resource): ask the full reader.
        Err(_) => {
            return serde_json::from_slice::<Value>(body)
                .map(|v| {
                    terms(&v, 0)
                        .into_iter()
                        .filter_map(|t| match t {
                            Term::Token { param, value } if param == "patient" => Some(value),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
    };
    let patient = |r: Option<Ref>| {
        r.and_then(|r| r.reference)
            .filter(|r| r.starts_with("Patient/"))
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: Option<String>| {
        if let Some(p) = p
            && !out.contains(&p)
        {
            out.push(p);
        }
    };
    match b.rt.as_deref() {
        Some("Patient") => push(b.id.map(|id| format!("Patient/{id}"))),
        Some("RelatedPerson" | "Practitioner" | "AllergyIntolerance" | "Consent") => {
            push(patient(b.patient))
        }
        Some(
            "Observation"
            | "MedicationRequest"
            | "MedicationAdministration"
            | "Communication"
            | "Encounter"
            | "Condition"
            | "DocumentReference",
        ) => push(patient(b.subject)),
        Some("Task") => push(patient(b.for_)),
        Some("Provenance") => {
            for t in b.target.into_iter().flatten() {
                push(patient(Some(t)));
            }
            for a in b.agent.into_iter().flatten() {
                push(patient(a.who));
            }
        }
        _ => {}
    }
    out
}

/// The terms of a resource. `now` (Unix seconds) anchors the next medication reminder.
pub fn terms(resource: &Value, now: i64) -> Vec<Term> {
    let mut out = Vec::new();
    let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
        return out;
    };
    if let Some(lu) = resource
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .and_then(as_instant)
    {
        out.push(Term::Token {
            param: "_lastUpdated".into(),
            value: lu,
        });
    }
    let compartment = |out: &mut Vec<Term>, r: Option<&str>| {
        if let Some(r) = r {
            out.push(Term::Token {
                param: "patient".into(),
                value: r.to_owned(),
            });
        }
    };
    match rt {
        "Patient" => {
            let text = names(resource);
            if !text.is_empty() {
                out.push(Term::Text(text));
            }
            if let Some(k) = name_key(resource) {
                token(&mut out, rt, "name", k);
            }
            if let Some(b) = resource.get("birthDate").and_then(Value::as_str) {
                token(&mut out, rt, "birthdate", b);
            }
            if let Some(g) = resource.get("gender").and_then(Value::as_str) {
                token(&mut out, rt, "gender", g);
            }
            for id in resource
                .get("identifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(v) = id.get("value").and_then(Value::as_str) {
                    token(&mut out, rt, "identifier", v);
                    if let Some(s) = id.get("system").and_then(Value::as_str) {
                        token(&mut out, rt, "identifier", format!("{s}|{v}"));
                    }
                }
            }
            for t in resource
                .get("telecom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let system = t.get("system").and_then(Value::as_str).unwrap_or("");
                if let (Some(v), true) = (
                    t.get("value").and_then(Value::as_str),
                    matches!(system, "phone" | "sms"),
                ) {
                    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                    if !digits.is_empty() {
                        token(&mut out, rt, "phone", digits);
                    }
                }
            }
            if let Some(id) = resource.get("id").and_then(Value::as_str) {
                compartment(&mut out, Some(&format!("Patient/{id}")));
            }
        }
        "RelatedPerson" | "Practitioner" => {
            let text = names(resource);
            if !text.is_empty() {
                out.push(Term::Text(text));
            }
            if let Some(k) = name_key(resource) {
                token(&mut out, rt, "name", k);
            }
            compartment(&mut out, resource.get("patient").and_then(patient_ref));
        }
        "Observation" => {
            let subject = resource.get("subject").and_then(patient_ref);
            compartment(&mut out, subject);
            codes(&mut out, rt, "code", resource.get("code"));
            let when = ["effectiveDateTime", "effectiveInstant", "issued"]
                .iter()
                .find_map(|k| resource.get(*k).and_then(Value::as_str))
                .or_else(|| {
                    resource
                        .pointer("/effectivePeriod/start")
                        .and_then(Value::as_str)
                });
            if let Some(d) = when.and_then(as_instant) {
                token(&mut out, rt, "date", d);
            }
        }
        "Task" => {
            compartment(&mut out, resource.get("for").and_then(patient_ref));
            if let Some(s) = resource.get("status").and_then(Value::as_str) {
                token(&mut out, rt, "status", s);
            }
            let due = resource
                .pointer("/restriction/period/end")
                .or_else(|| resource.pointer("/executionPeriod/end"))
                .and_then(Value::as_str)
                .and_then(as_instant);
            if let Some(d) = due {
                token(&mut out, rt, "due", d);
            }
        }
        "MedicationRequest" => {
            compartment(&mut out, resource.get("subject").and_then(patient_ref));
            if let Some(s) = resource.get("status").and_then(Value::as_str) {
                token(&mut out, rt, "status", s);
            }
            if let Ok(req) = serde_json::from_value::<MedicationRequest>(resource.clone())
                && let Some(next) = reminders::next_due(&req, now, 1, 0).first()
            {
                token(&mut out, rt, "next-due", time::instant(*next));
            }
        }
        "MedicationAdministration" => {
            compartment(&mut out, resource.get("subject").and_then(patient_ref));
            if let Some(d) = resource
                .get("effectiveDateTime")
                .and_then(Value::as_str)
                .and_then(as_instant)
            {
                token(&mut out, rt, "date", d);
            }
        }
        "Communication" => {
            compartment(&mut out, resource.get("subject").and_then(patient_ref));
            if let Some(d) = resource
                .get("sent")
                .and_then(Value::as_str)
                .and_then(as_instant)
            {
                token(&mut out, rt, "date", d);
            }
        }
        "Encounter" | "Condition" | "DocumentReference" => {
            compartment(&mut out, resource.get("subject").and_then(patient_ref));
            let date = resource
                .pointer("/period/start")
                .or_else(|| resource.get("date"))
                .or_else(|| resource.get("recordedDate"))
                .and_then(Value::as_str)
                .and_then(as_instant);
            if let Some(d) = date {
                token(&mut out, rt, "date", d);
            }
        }
        "AllergyIntolerance" | "Consent" => {
            compartment(&mut out, resource.get("patient").and_then(patient_ref));
        }
        "Provenance" => {
            for t in resource
                .get("target")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = reference(t) {
                    token(&mut out, rt, "target", r);
                }
                compartment(&mut out, patient_ref(t));
            }
            // A patient who signed (a consent) is in its compartment too, so the chart's
            // $everything carries the signature's provenance.
            for a in resource
                .get("agent")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                compartment(&mut out, a.get("who").and_then(patient_ref));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens(v: Value) -> Vec<(String, String)> {
        terms(&v, 0)
            .into_iter()
            .filter_map(|t| match t {
                Term::Token { param, value } => Some((param, value)),
                Term::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn compartment_reader_agrees_with_the_terms() {
        let mut all = crate::demo::practitioners();
        for n in 0..6 {
            all.extend(crate::demo::patient_bundle(n, 7, 2));
        }
        all.push(json!({"resourceType": "Provenance", "id": "pv",
            "target": [{"reference": "Consent/c1"}, {"reference": "Patient/p1"}],
            "agent": [{"who": {"reference": "Patient/p2"}}, {"who": {"reference": "Patient/p1"}}]}));
        // A member of the wrong shape falls back to the full reader.
        all.push(json!({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p3"}, "target": 7}));
        let mut with_patient = 0;
        for r in &all {
            let want: Vec<String> = tokens(r.clone())
                .into_iter()
                .filter(|(p, _)| p == "patient")
                .fold(Vec::new(), |mut v, (_, p)| {
                    if !v.contains(&p) {
                        v.push(p);
                    }
                    v
                });
            let got = patients_of_json(&serde_json::to_vec(r).unwrap());
            assert_eq!(got, want, "{r}");
            with_patient += usize::from(!got.is_empty());
        }
        assert!(
            with_patient > all.len() / 2,
            "{with_patient} of {}",
            all.len()
        );
        assert_eq!(
            patients_of_json(br#"{"resourceType":"Provenance","target":[{"reference":"Patient/a"}],"agent":[{"who":{"reference":"Patient/b"}}]}"#),
            ["Patient/a", "Patient/b"]
        );
        assert!(patients_of_json(b"[1,2]").is_empty());
        assert!(patients_of_json(br#"{"subject":{"reference":"Patient/x"}}"#).is_empty());
    }

    #[test]
    fn patient_terms() {
        let p = json!({"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2026-11-20T10:30:00+01:00"},
            "name": [{"family": "Lindqvist", "given": ["Björn"]}], "birthDate": "1939-11-02",
            "identifier": [{"system": "urn:mrn", "value": "MRN1"}], "telecom": [{"system": "phone", "value": "(555) 010-1"}]});
        let t = tokens(p.clone());
        for want in [
            ("_lastUpdated", "2026-11-20T09:30:00Z"),
            ("Patient.name", "lindqvist björn"),
            ("Patient.birthdate", "1939-11-02"),
            ("Patient.identifier", "urn:mrn|MRN1"),
            ("Patient.phone", "5550101"),
            ("patient", "Patient/p1"),
        ] {
            assert!(
                t.contains(&(want.0.to_owned(), want.1.to_owned())),
                "{want:?} not in {t:?}"
            );
        }
        assert!(terms(&p, 0).contains(&Term::Text("Lindqvist Björn".into())));
    }

    #[test]
    fn observation_and_reminder_terms() {
        let t = tokens(
            json!({"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "effectiveDateTime": "2026-11-20"}),
        );
        assert!(t.contains(&("Observation.code".into(), "http://loinc.org|8867-4".into())));
        assert!(t.contains(&("Observation.date".into(), "2026-11-20T00:00:00Z".into())));
        assert!(t.contains(&("patient".into(), "Patient/p1".into())));
        let now = time::parse("2026-11-20T09:00:00Z").unwrap();
        let m = terms(
            &json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/p1"},
                "dosageInstruction": [{"timing": {"repeat": {"timeOfDay": ["20:00:00"]}}}]}),
            now,
        );
        assert!(m.contains(&Term::Token {
            param: "MedicationRequest.next-due".into(),
            value: "2026-11-20T20:00:00Z".into()
        }));
    }
}
