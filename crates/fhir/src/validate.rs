//! Structural validation of a resource against [`crate::schema`]: unknown elements, cardinality,
//! types, required value sets, choice types, reference targets and extensions. Every problem is
//! reported with a FHIRPath-style location such as `Patient.name[0].given[1]`.

use serde_json::{Map, Value};

use crate::outcome::{Issue, IssueCode};
use crate::schema::{self, Card, El, RESOURCE_BASE, Ty};

/// What validation found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Problems; empty means valid.
    pub issues: Vec<Issue>,
    /// Every literal reference (`Type/id`) with where it was found, for the caller to resolve.
    pub references: Vec<(String, String)>,
}

/// Validates a resource (any supported type).
pub fn validate(resource: &Value) -> Report {
    let mut report = Report::default();
    let Some(obj) = resource.as_object() else {
        report.issues.push(Issue::error(
            IssueCode::Structure,
            "Resource",
            "a resource must be a JSON object",
        ));
        return report;
    };
    let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
        report.issues.push(Issue::error(
            IssueCode::Required,
            "Resource.resourceType",
            "resourceType is required",
        ));
        return report;
    };
    let Some(elements) = schema::resource(rt) else {
        report.issues.push(Issue::error(
            IssueCode::NotSupported,
            "Resource.resourceType",
            &format!("resource type '{rt}' is not supported by Hearth"),
        ));
        return report;
    };
    check_object(
        &mut report,
        rt,
        obj,
        &[RESOURCE_BASE, elements],
        Level::Resource,
    );
    report
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Resource,
    Datatype,
    Backbone,
}

/// Finds the element a JSON key belongs to, with the type of the value under that key.
fn lookup(sets: &[&'static [El]], key: &str) -> Option<(El, Ty)> {
    for set in sets {
        for el in set.iter() {
            if el.name == key {
                return Some((*el, el.ty));
            }
            if let Ty::Choice(variants) = el.ty
                && let Some(suffix) = key.strip_prefix(el.name)
                && let Some((_, ty)) = variants.iter().find(|(s, _)| *s == suffix)
            {
                return Some((*el, *ty));
            }
        }
    }
    None
}

fn is_primitive(ty: Ty) -> bool {
    matches!(ty, Ty::Prim(_))
}

fn check_object(
    report: &mut Report,
    path: &str,
    obj: &Map<String, Value>,
    sets: &[&'static [El]],
    level: Level,
) {
    // Which elements are present (for cardinality and choices).
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    for (key, value) in obj {
        let here = format!("{path}.{key}");
        match key.as_str() {
            "resourceType" if level == Level::Resource => continue,
            "extension" => {
                check_extensions(report, &here, value);
                continue;
            }
            "modifierExtension" if level != Level::Datatype => {
                check_extensions(report, &here, value);
                continue;
            }
            "id" if level != Level::Resource => {
                if !value.is_string() {
                    report.issues.push(Issue::error(
                        IssueCode::Value,
                        &here,
                        "element ids must be strings",
                    ));
                }
                continue;
            }
            _ => {}
        }
        if let Some(base) = key.strip_prefix('_') {
            // A primitive's id/extensions: `_birthDate` beside `birthDate`.
            match lookup(sets, base) {
                Some((_, ty)) if is_primitive(ty) => {
                    let shape_ok = match value {
                        Value::Object(_) => true,
                        Value::Array(items) => items.iter().all(|i| i.is_object() || i.is_null()),
                        _ => false,
                    };
                    if !shape_ok {
                        report.issues.push(Issue::error(
                            IssueCode::Structure,
                            &here,
                            "a primitive's extension element must be an object (or an array of them)",
                        ));
                    }
                }
                _ => report.issues.push(Issue::error(
                    IssueCode::Structure,
                    &here,
                    &format!("unknown element '{key}'"),
                )),
            }
            continue;
        }
        let Some((el, ty)) = lookup(sets, key) else {
            report.issues.push(Issue::error(
                IssueCode::Structure,
                &here,
                &format!("unknown element '{key}'"),
            ));
            continue;
        };
        if let Some((_, other)) = seen.iter().find(|(n, _)| *n == el.name) {
            report.issues.push(Issue::error(
                IssueCode::Structure,
                &here,
                &format!(
                    "only one of {}[x] may be present (also found {other})",
                    el.name
                ),
            ));
            continue;
        }
        seen.push((el.name, key.clone()));
        check_value(report, &here, value, &el, ty);
    }
    for set in sets {
        for el in set.iter() {
            if !el.card.is_required() {
                continue;
            }
            let present = seen.iter().any(|(n, _)| *n == el.name)
                || obj.contains_key(&format!("_{}", el.name));
            if !present {
                let shown = if matches!(el.ty, Ty::Choice(_)) {
                    format!("{}[x]", el.name)
                } else {
                    el.name.to_owned()
                };
                report.issues.push(Issue::error(
                    IssueCode::Required,
                    &format!("{path}.{shown}"),
                    &format!("{shown} is required"),
                ));
            }
        }
    }
}

fn check_value(report: &mut Report, path: &str, value: &Value, el: &El, ty: Ty) {
    if el.card.is_many() {
        let Some(items) = value.as_array() else {
            report
                .issues
                .push(Issue::error(IssueCode::Structure, path, "must be an array"));
            return;
        };
        if items.is_empty() {
            report.issues.push(Issue::error(
                IssueCode::Structure,
                path,
                "arrays must not be empty (omit the element instead)",
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let here = format!("{path}[{i}]");
            if item.is_null() && is_primitive(ty) {
                continue; // a null placeholder paired with `_name` extensions
            }
            check_one(report, &here, item, el, ty);
        }
    } else if value.is_array() {
        report.issues.push(Issue::error(
            IssueCode::Structure,
            path,
            "must be a single value, not an array",
        ));
    } else {
        check_one(report, path, value, el, ty);
    }
}

fn check_one(report: &mut Report, path: &str, value: &Value, el: &El, ty: Ty) {
    match ty {
        Ty::Prim(prim) => {
            if let Err(why) = prim.check(value) {
                report
                    .issues
                    .push(Issue::error(IssueCode::Value, path, &why));
                return;
            }
            if let (Some(codes), Some(s)) = (el.codes, value.as_str())
                && !codes.contains(&s)
            {
                report.issues.push(Issue::error(
                    IssueCode::CodeInvalid,
                    path,
                    &format!("'{s}' is not one of: {}", codes.join(", ")),
                ));
            }
        }
        Ty::Complex(_, els) => match value.as_object() {
            Some(obj) => check_object(report, path, obj, &[els], Level::Datatype),
            None => report.issues.push(Issue::error(
                IssueCode::Structure,
                path,
                "must be an object",
            )),
        },
        Ty::Backbone(els) => match value.as_object() {
            Some(obj) => check_object(report, path, obj, &[els], Level::Backbone),
            None => report.issues.push(Issue::error(
                IssueCode::Structure,
                path,
                "must be an object",
            )),
        },
        Ty::Reference(targets) => check_reference(report, path, value, targets),
        Ty::Choice(_) => {}
        Ty::Extension => check_extensions(report, path, value),
        Ty::Resource => match value.as_object() {
            Some(obj) if obj.get("resourceType").is_some_and(Value::is_string) => {}
            _ => report.issues.push(Issue::error(
                IssueCode::Structure,
                path,
                "a contained resource must be an object with a resourceType",
            )),
        },
        Ty::Any => {
            if !value.is_object() {
                report.issues.push(Issue::error(
                    IssueCode::Structure,
                    path,
                    "must be an object",
                ));
            }
        }
    }
}

fn check_reference(report: &mut Report, path: &str, value: &Value, targets: &[&str]) {
    let Some(obj) = value.as_object() else {
        report.issues.push(Issue::error(
            IssueCode::Structure,
            path,
            "a Reference must be an object",
        ));
        return;
    };
    for (k, v) in obj {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "reference" | "display" => {
                if let Err(why) = crate::primitives::Prim::String.check(v) {
                    report
                        .issues
                        .push(Issue::error(IssueCode::Value, &here, &why));
                }
            }
            "type" => {
                if let Err(why) = crate::primitives::Prim::Uri.check(v) {
                    report
                        .issues
                        .push(Issue::error(IssueCode::Value, &here, &why));
                }
            }
            "identifier" => check_one(
                report,
                &here,
                v,
                &El {
                    name: "identifier",
                    ty: schema::IDENTIFIER,
                    card: Card::Opt,
                    codes: None,
                },
                schema::IDENTIFIER,
            ),
            "extension" => check_extensions(report, &here, v),
            "id" | "_reference" | "_display" | "_type" => {}
            _ => report.issues.push(Issue::error(
                IssueCode::Structure,
                &here,
                &format!("unknown element '{k}'"),
            )),
        }
    }
    let Some(reference) = obj.get("reference").and_then(Value::as_str) else {
        return;
    };
    if reference.contains('?') && !reference.contains("://") {
        report.issues.push(Issue::error(
            IssueCode::NotFound,
            &format!("{path}.reference"),
            "a conditional reference must match exactly one resource",
        ));
        return;
    }
    if reference.starts_with('#') || reference.starts_with("urn:") || reference.contains("://") {
        return; // contained, urn:uuid (bundles) or absolute: not resolved locally
    }
    let mut parts = reference.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(rt), Some(id), None)
            if crate::primitives::is_id(id)
                && rt.chars().next().is_some_and(char::is_uppercase) =>
        {
            if !targets.is_empty() && !targets.contains(&rt) {
                report.issues.push(Issue::error(
                    IssueCode::Value,
                    &format!("{path}.reference"),
                    &format!("must reference one of: {}", targets.join(", ")),
                ));
            } else {
                report
                    .references
                    .push((format!("{path}.reference"), reference.to_owned()));
            }
        }
        _ => report.issues.push(Issue::error(
            IssueCode::Value,
            &format!("{path}.reference"),
            "a reference must be 'Type/id', '#contained', a urn or an absolute URL",
        )),
    }
}

fn check_extensions(report: &mut Report, path: &str, value: &Value) {
    let Some(items) = value.as_array() else {
        report.issues.push(Issue::error(
            IssueCode::Structure,
            path,
            "extensions must be an array",
        ));
        return;
    };
    for (i, ext) in items.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let Some(obj) = ext.as_object() else {
            report.issues.push(Issue::error(
                IssueCode::Structure,
                &here,
                "an extension must be an object",
            ));
            continue;
        };
        match obj.get("url").and_then(Value::as_str) {
            Some(u) if !u.is_empty() && !u.chars().any(char::is_whitespace) => {}
            _ => report.issues.push(Issue::error(
                IssueCode::Required,
                &format!("{here}.url"),
                "url is required",
            )),
        }
        let values = obj.keys().filter(|k| k.starts_with("value")).count();
        let nested = obj.contains_key("extension");
        if values > 1 {
            report.issues.push(Issue::error(
                IssueCode::Structure,
                &here,
                "only one of value[x] may be present",
            ));
        }
        if (values == 1) == nested {
            report.issues.push(Issue::error(
                IssueCode::Invariant,
                &here,
                "an extension must have either a value[x] or nested extensions, not both (ext-1)",
            ));
        }
        if nested {
            check_extensions(report, &format!("{here}.extension"), &obj["extension"]);
        }
        for k in obj.keys() {
            if !(k == "url"
                || k == "id"
                || k == "extension"
                || k.starts_with("value")
                || k.starts_with('_'))
            {
                report.issues.push(Issue::error(
                    IssueCode::Structure,
                    &format!("{here}.{k}"),
                    &format!("unknown element '{k}'"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: Value) -> Vec<(String, String)> {
        validate(&v)
            .issues
            .into_iter()
            .map(|i| (i.expression, i.diagnostics))
            .collect()
    }

    #[test]
    fn a_good_patient_passes_and_reports_its_references() {
        let r = validate(&json!({
            "resourceType": "Patient", "id": "p1",
            "name": [{"family": "Okafor", "given": ["Ada", "N."]}],
            "gender": "female", "birthDate": "1948-03-12",
            "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "approx"}]},
            "generalPractitioner": [{"reference": "Practitioner/dr-1"}],
            "extension": [{"url": "http://example.org/ext", "valueBoolean": true}]
        }));
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        assert_eq!(
            r.references,
            vec![(
                "Patient.generalPractitioner[0].reference".into(),
                "Practitioner/dr-1".into()
            )]
        );
    }

    #[test]
    fn names_each_bad_path() {
        let p = problems(json!({
            "resourceType": "Observation",
            "status": "done",
            "valueQuantity": {"value": "72"},
            "valueString": "x",
            "subject": {"reference": "Medication/m1"},
            "category": [],
            "effectiveDateTime": "2026-11-20T09:30",
            "note": {"text": "n"},
            "colour": "red"
        }));
        let paths: Vec<&str> = p.iter().map(|(e, _)| e.as_str()).collect();
        for expected in [
            "Observation.status",
            "Observation.valueQuantity.value",
            "Observation.valueString",
            "Observation.subject.reference",
            "Observation.category",
            "Observation.effectiveDateTime",
            "Observation.note",
            "Observation.colour",
            "Observation.code",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {p:?}");
        }
        assert!(p.iter().any(|(_, d)| d.contains("'done' is not one of")));
    }

    #[test]
    fn required_elements_and_choices() {
        let p = problems(
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order"}),
        );
        let paths: Vec<&str> = p.iter().map(|(e, _)| e.as_str()).collect();
        assert!(paths.contains(&"MedicationRequest.medication[x]"), "{p:?}");
        assert!(paths.contains(&"MedicationRequest.subject"), "{p:?}");
        assert!(
            problems(json!({"resourceType": "Unknown"}))[0]
                .1
                .contains("not supported")
        );
        assert!(!problems(json!({"status": "x"})).is_empty());
        assert!(!problems(json!([1])).is_empty());
    }

    #[test]
    fn extensions_follow_ext_1() {
        let p = problems(json!({"resourceType": "Patient", "extension": [
            {"url": "http://x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]},
            {"valueString": "no url"},
            {"url": "http://x"}
        ]}));
        assert_eq!(p.len(), 3, "{p:?}");
    }
}
