//! FHIR search parameters (<https://hl7.org/fhir/R4/search.html>) translated to store queries.
//!
//! Supported, per type: `Patient`: name, family, given (full text, prefix, accent- and
//! case-insensitive), birthdate, identifier, phone, gender; `Observation`: patient|subject,
//! code, date; `Task`: patient, status, due (Hearth: `restriction.period.end`);
//! `MedicationRequest`: patient, status, next-due (Hearth: the next reminder);
//! `MedicationAdministration`: patient, effective-time;
//! `Communication`: patient, sent; `Encounter`, `Condition`, `DocumentReference`: patient,
//! date; `AllergyIntolerance`, `Consent`: patient; `RelatedPerson`, `Practitioner`: name (and
//! patient for RelatedPerson); `Provenance`: target. Every type: `_lastUpdated`, `_sort`,
//! `_count` (default 20, at most 1000) and `_offset` (paging). An unknown parameter is an error,
//! not silently ignored: a clinician must never see a broader result than they asked for.

use fhir::IssueCode;
use store::{Filter, SearchQuery};

use crate::FhirError;

/// A parsed search: the store query and the parameters to echo in paging links.
#[derive(Clone, Debug)]
pub struct SearchParams {
    /// What the store runs.
    pub query: SearchQuery,
    echo: Vec<(String, String)>,
}

impl SearchParams {
    /// The query string of this search at another offset.
    pub fn query_string_with_offset(&self, offset: usize) -> String {
        let mut parts: Vec<String> = self
            .echo
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        parts.push(format!("_count={}", self.query.limit));
        if offset > 0 {
            parts.push(format!("_offset={offset}"));
        }
        parts.join("&")
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Full-text name search.
    Text,
    /// Exact token (`code` or `system|code`).
    Token,
    /// A reference to a patient (`Patient/x` or `x`).
    PatientRef,
    /// A reference of any type (`Type/id`).
    Reference,
    /// A date stored as written (birthDate).
    DateString,
    /// A date or time stored as a UTC instant.
    Instant,
    /// Digits of a phone number.
    Phone,
}

/// (search name, index parameter, kind) for a resource type.
fn params_of(rt: &str) -> &'static [(&'static str, &'static str, Kind)] {
    match rt {
        "Patient" => &[
            ("name", "", Kind::Text),
            ("family", "", Kind::Text),
            ("given", "", Kind::Text),
            ("birthdate", "Patient.birthdate", Kind::DateString),
            ("identifier", "Patient.identifier", Kind::Token),
            ("phone", "Patient.phone", Kind::Phone),
            ("gender", "Patient.gender", Kind::Token),
        ],
        "RelatedPerson" => &[
            ("name", "", Kind::Text),
            ("patient", "patient", Kind::PatientRef),
        ],
        "Practitioner" => &[("name", "", Kind::Text)],
        "Observation" => &[
            ("patient", "patient", Kind::PatientRef),
            ("subject", "patient", Kind::PatientRef),
            ("code", "Observation.code", Kind::Token),
            ("date", "Observation.date", Kind::Instant),
        ],
        "Task" => &[
            ("patient", "patient", Kind::PatientRef),
            ("status", "Task.status", Kind::Token),
            ("due", "Task.due", Kind::Instant),
        ],
        "MedicationRequest" => &[
            ("patient", "patient", Kind::PatientRef),
            ("subject", "patient", Kind::PatientRef),
            ("status", "MedicationRequest.status", Kind::Token),
            ("next-due", "MedicationRequest.next-due", Kind::Instant),
        ],
        "Communication" => &[
            ("patient", "patient", Kind::PatientRef),
            ("subject", "patient", Kind::PatientRef),
            ("sent", "Communication.date", Kind::Instant),
        ],
        "MedicationAdministration" => &[
            ("patient", "patient", Kind::PatientRef),
            ("subject", "patient", Kind::PatientRef),
            (
                "effective-time",
                "MedicationAdministration.date",
                Kind::Instant,
            ),
        ],
        "Encounter" => &[
            ("patient", "patient", Kind::PatientRef),
            ("date", "Encounter.date", Kind::Instant),
        ],
        "Condition" => &[
            ("patient", "patient", Kind::PatientRef),
            ("recorded-date", "Condition.date", Kind::Instant),
        ],
        "DocumentReference" => &[
            ("patient", "patient", Kind::PatientRef),
            ("date", "DocumentReference.date", Kind::Instant),
        ],
        "AllergyIntolerance" | "Consent" => &[("patient", "patient", Kind::PatientRef)],
        "Provenance" => &[("target", "Provenance.target", Kind::Reference)],
        _ => &[],
    }
}

/// Sortable parameters: (search name, index parameter).
fn sorts_of(rt: &str) -> &'static [(&'static str, &'static str)] {
    match rt {
        "Patient" => &[
            ("name", "Patient.name"),
            ("family", "Patient.name"),
            ("birthdate", "Patient.birthdate"),
        ],
        "RelatedPerson" => &[("name", "RelatedPerson.name")],
        "Practitioner" => &[("name", "Practitioner.name")],
        "Observation" => &[("date", "Observation.date")],
        "Task" => &[("due", "Task.due"), ("status", "Task.status")],
        "MedicationRequest" => &[("next-due", "MedicationRequest.next-due")],
        "Communication" => &[("sent", "Communication.date")],
        "Encounter" => &[("date", "Encounter.date")],
        "DocumentReference" => &[("date", "DocumentReference.date")],
        _ => &[],
    }
}

fn bad(param: &str, why: &str) -> FhirError {
    FhirError {
        status: 400,
        issues: vec![fhir::Issue::error(IssueCode::Invalid, param, why)],
    }
}

/// The end (exclusive) of the period a date or dateTime names, as Unix seconds.
fn period_end(value: &str, start: i64) -> i64 {
    if value.contains('T') {
        return start + 1;
    }
    let parts: Vec<&str> = value.split('-').collect();
    let y: i64 = parts[0].parse().unwrap_or(0);
    match parts.len() {
        1 => fhir::time::days_from_civil(y + 1, 1, 1) * 86_400,
        2 => {
            let m: u32 = parts[1].parse().unwrap_or(1);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            fhir::time::days_from_civil(ny, nm, 1) * 86_400
        }
        _ => start + 86_400,
    }
}

fn split_prefix(value: &str) -> (&str, &str) {
    for p in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"] {
        if let Some(rest) = value.strip_prefix(p)
            && rest.starts_with(|c: char| c.is_ascii_digit())
        {
            return (p, rest);
        }
    }
    ("eq", value)
}

fn date_filter(name: &str, index: &str, value: &str, kind: Kind) -> Result<Filter, FhirError> {
    let (op, v) = split_prefix(value);
    let (from, to) = if kind == Kind::DateString {
        if !fhir::primitives::is_date(v) {
            return Err(bad(name, "a date looks like 2026, 2026-11 or 2026-11-20"));
        }
        let after = format!("{v}\u{10FFFF}");
        match op {
            "eq" => {
                return Ok(Filter::Prefix {
                    param: index.into(),
                    value: v.into(),
                });
            }
            "ge" | "sa" => (Some(v.to_owned()), None),
            "gt" => (Some(after), None),
            "le" => (None, Some(after)),
            "lt" | "eb" => (None, Some(v.to_owned())),
            _ => {
                return Err(bad(
                    name,
                    &format!("the '{op}' prefix is not supported for {name}"),
                ));
            }
        }
    } else {
        let start = fhir::time::parse(v)
            .ok_or_else(|| bad(name, "a date looks like 2026-11-20 or 2026-11-20T09:30:00Z"))?;
        let end = period_end(v, start);
        let (s, e) = (fhir::time::instant(start), fhir::time::instant(end));
        match op {
            "eq" => (Some(s), Some(e)),
            "ge" => (Some(s), None),
            "gt" | "sa" => (Some(e), None),
            "le" => (None, Some(e)),
            "lt" | "eb" => (None, Some(s)),
            _ => {
                return Err(bad(
                    name,
                    &format!("the '{op}' prefix is not supported for {name}"),
                ));
            }
        }
    };
    Ok(Filter::Range {
        param: index.into(),
        from,
        to,
    })
}

/// Translates a FHIR search on `rt` into a store query.
pub fn parse_search(rt: &str, params: &[(String, String)]) -> Result<SearchParams, FhirError> {
    if fhir::schema::resource(rt).is_none() {
        return Err(FhirError {
            status: 404,
            issues: vec![fhir::Issue::error(
                IssueCode::NotSupported,
                "Resource.resourceType",
                &format!("resource type '{rt}' is not supported by Hearth"),
            )],
        });
    }
    let mut query = SearchQuery {
        id_prefix: Some(format!("{rt}/")),
        limit: 20,
        ..SearchQuery::default()
    };
    let mut echo = Vec::new();
    let mut text = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "_count" => {
                query.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("_count", "_count must be a number from 1 to 1000"))?;
                continue;
            }
            "_offset" => {
                query.offset = value
                    .parse()
                    .map_err(|_| bad("_offset", "_offset must be a number"))?;
                continue;
            }
            "_sort" => {
                for key in value.split(',').filter(|k| !k.is_empty()) {
                    let (desc, key) = key.strip_prefix('-').map_or((false, key), |k| (true, k));
                    let index = if key == "_lastUpdated" {
                        "_lastUpdated"
                    } else {
                        sorts_of(rt)
                            .iter()
                            .find(|(n, _)| *n == key)
                            .map(|(_, i)| *i)
                            .ok_or_else(|| {
                                bad("_sort", &format!("{rt} cannot be sorted by '{key}'"))
                            })?
                    };
                    query.sort.push((index.to_owned(), desc));
                }
                echo.push((name.clone(), value.clone()));
                continue;
            }
            "_lastUpdated" => {
                query
                    .filters
                    .push(date_filter(name, "_lastUpdated", value, Kind::Instant)?);
                echo.push((name.clone(), value.clone()));
                continue;
            }
            _ => {}
        }
        let Some((_, index, kind)) = params_of(rt).iter().find(|(n, _, _)| *n == name) else {
            return Err(bad(
                name,
                &format!("'{name}' is not a search parameter Hearth supports for {rt}"),
            ));
        };
        if value.is_empty() {
            return Err(bad(name, "a search value must not be empty"));
        }
        let filter = match kind {
            Kind::Text => {
                text.push(value.clone());
                None
            }
            Kind::Token | Kind::Reference => Some(Filter::Eq {
                param: (*index).into(),
                value: value.clone(),
            }),
            Kind::PatientRef => Some(Filter::Eq {
                param: (*index).into(),
                value: if value.starts_with("Patient/") {
                    value.clone()
                } else {
                    format!("Patient/{value}")
                },
            }),
            Kind::Phone => Some(Filter::Eq {
                param: (*index).into(),
                value: value.chars().filter(char::is_ascii_digit).collect(),
            }),
            Kind::DateString | Kind::Instant => Some(date_filter(name, index, value, *kind)?),
        };
        query.filters.extend(filter);
        echo.push((name.clone(), value.clone()));
    }
    if !text.is_empty() {
        let joined = text.join(" ");
        if !joined.chars().any(char::is_alphanumeric) {
            return Err(bad("name", "a name search needs letters or digits"));
        }
        query.filters.push(Filter::Text(joined));
    }
    Ok(SearchParams { query, echo })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn translates_parameters() {
        let s = parse_search(
            "Observation",
            &p(&[("patient", "p1"), ("date", "ge2026-11"), ("_count", "5")]),
        )
        .unwrap();
        assert_eq!(s.query.limit, 5);
        assert_eq!(
            s.query.filters,
            vec![
                Filter::Eq {
                    param: "patient".into(),
                    value: "Patient/p1".into()
                },
                Filter::Range {
                    param: "Observation.date".into(),
                    from: Some("2026-11-01T00:00:00Z".into()),
                    to: None
                },
            ]
        );
        let d = parse_search("Observation", &p(&[("date", "2026-11-20")])).unwrap();
        assert_eq!(
            d.query.filters,
            vec![Filter::Range {
                param: "Observation.date".into(),
                from: Some("2026-11-20T00:00:00Z".into()),
                to: Some("2026-11-21T00:00:00Z".into())
            }]
        );
        let b = parse_search(
            "Patient",
            &p(&[
                ("birthdate", "1948"),
                ("name", "Ok"),
                ("_sort", "-birthdate"),
            ]),
        )
        .unwrap();
        assert!(b.query.filters.contains(&Filter::Prefix {
            param: "Patient.birthdate".into(),
            value: "1948".into()
        }));
        assert!(b.query.filters.contains(&Filter::Text("Ok".into())));
        assert_eq!(b.query.sort, vec![("Patient.birthdate".into(), true)]);
        assert_eq!(
            b.query_string_with_offset(40),
            "birthdate=1948&name=Ok&_sort=-birthdate&_count=20&_offset=40"
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        for (rt, pairs) in [
            ("Patient", vec![("colour", "red")]),
            ("Patient", vec![("_count", "0")]),
            ("Patient", vec![("_sort", "phone")]),
            ("Patient", vec![("birthdate", "12/03/1948")]),
            ("Observation", vec![("date", "ne2026")]),
            ("Patient", vec![("name", "")]),
            ("Patient", vec![("name", "--")]),
            ("Medication", vec![]),
        ] {
            let pairs: Vec<(&str, &str)> = pairs;
            assert!(parse_search(rt, &p(&pairs)).is_err(), "{rt} {pairs:?}");
        }
    }
}
