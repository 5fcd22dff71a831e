//! Import and export: batches of resources written in one transaction, FHIR Bundles with
//! `urn:uuid:` references, and NDJSON per resource type (the Bulk Data layout).

use std::collections::HashMap;

use fhir::IssueCode;
use serde_json::{Map, Value};
use store::{ChangesQuery, DocWrite};

use crate::{FhirError, Records, Stored, new_id, with_version};

/// Resource types in the order an import writes them, so references point backwards.
pub const IMPORT_ORDER: &[&str] = &[
    "Practitioner",
    "Patient",
    "RelatedPerson",
    "Encounter",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "MedicationAdministration",
    "Observation",
    "Communication",
    "Task",
    "DocumentReference",
    "Consent",
    "Provenance",
];

/// Rank of a resource type in [`IMPORT_ORDER`] (unknown types last).
pub fn import_rank(rt: &str) -> usize {
    IMPORT_ORDER
        .iter()
        .position(|t| *t == rt)
        .unwrap_or(IMPORT_ORDER.len())
}

fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                    && let Some(to) = map.get(s.as_str())
                {
                    *s = to.clone();
                    continue;
                }
                rewrite_references(child, map);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_references(c, map)),
        _ => {}
    }
}

/// The resources of a Bundle (transaction, batch or collection) with `fullUrl` references
/// (`urn:uuid:…`, `urn:oid:…` or absolute) rewritten to `Type/id`, ids assigned where missing,
/// and entries ordered so referenced resources come first.
/// Each resource comes with its entry's index in the Bundle, for error messages.
pub fn resources_of_bundle(bundle: &Value) -> Result<Vec<(usize, Value)>, FhirError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::one(
            400,
            IssueCode::Invalid,
            "Bundle",
            "expected a Bundle",
        ));
    }
    match bundle.get("type").and_then(Value::as_str) {
        Some("transaction" | "batch" | "collection" | "searchset" | "document") => {}
        Some(other) => {
            return Err(FhirError::one(
                400,
                IssueCode::NotSupported,
                "Bundle.type",
                &format!("importing a '{other}' Bundle is not supported"),
            ));
        }
        None => {
            return Err(FhirError::one(
                400,
                IssueCode::Required,
                "Bundle.type",
                "Bundle.type is required",
            ));
        }
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut map = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let Some(mut resource) = entry.get("resource").cloned().filter(Value::is_object) else {
            return Err(FhirError::one(
                400,
                IssueCode::Required,
                &format!("Bundle.entry[{i}].resource"),
                "each entry needs a resource",
            ));
        };
        let rt = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let id = match resource.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                // A urn:uuid full URL gives a stable id; otherwise a new one.
                let from_url = entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .and_then(|u| u.strip_prefix("urn:uuid:"))
                    .filter(|u| fhir::primitives::is_id(u))
                    .map(str::to_owned);
                let id = match from_url {
                    Some(id) => id,
                    None => new_id()?,
                };
                resource["id"] = Value::String(id.clone());
                id
            }
        };
        if let Some(full) = entry.get("fullUrl").and_then(Value::as_str) {
            map.insert(full.to_owned(), format!("{rt}/{id}"));
        }
        out.push((i, resource));
    }
    for (_, r) in &mut out {
        rewrite_references(r, &map);
    }
    out.sort_by_key(|(_, r)| {
        import_rank(r.get("resourceType").and_then(Value::as_str).unwrap_or(""))
    });
    Ok(out)
}

fn collect_conditional(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                match (k.as_str(), child) {
                    ("reference", Value::String(s)) if s.contains('?') && !s.contains("://") => {
                        if !out.contains(s) {
                            out.push(s.clone());
                        }
                    }
                    _ => collect_conditional(child, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_conditional(c, out)),
        _ => {}
    }
}

/// Whether a resource has an identifier `system|value` (or just `value`).
fn has_identifier(r: &Value, token: &str) -> bool {
    let (system, value) = match token.split_once('|') {
        Some((s, v)) => (Some(s), v),
        None => (None, token),
    };
    r.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|id| {
            id.get("value").and_then(Value::as_str) == Some(value)
                && system.is_none_or(|s| {
                    s.is_empty() || id.get("system").and_then(Value::as_str) == Some(s)
                })
        })
}

/// Decodes `%XX` escapes and `+` in a query component.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a stored body and a prepared resource say the same thing, `meta` aside.
fn same_content(stored: &[u8], resource: &Value) -> bool {
    let Ok(Value::Object(mut a)) = serde_json::from_slice::<Value>(stored) else {
        return false;
    };
    let Value::Object(mut b) = resource.clone() else {
        return false;
    };
    a.shift_remove("meta");
    b.shift_remove("meta");
    a == b
}

impl Records {
    /// Creates many resources in one transaction. Each is validated on its own; references
    /// may point to resources of the same batch. Returns one result per resource, in order; an
    /// invalid resource does not stop the others.
    pub fn create_batch(
        &self,
        resources: Vec<Value>,
    ) -> Result<Vec<Result<Stored, FhirError>>, FhirError> {
        self.write_batch(resources, false)
    }

    /// Imports many resources in one transaction, like [`Records::create_batch`], except that
    /// a resource whose id exists is updated (a new version), or left alone when its content
    /// is unchanged — so an import can be run again.
    pub fn import_batch(
        &self,
        resources: Vec<Value>,
    ) -> Result<Vec<Result<Stored, FhirError>>, FhirError> {
        self.write_batch(resources, true)
    }

    /// Rewrites conditional references (`Patient?identifier=urn:mrn|123`) to `Type/id` when
    /// they match exactly one resource: first among `batch`, then in the store. References
    /// that match none or several are left for validation to report.
    fn resolve_conditional(&self, batch: &mut [Value]) -> Result<(), FhirError> {
        let mut wanted: Vec<String> = Vec::new();
        for r in batch.iter() {
            collect_conditional(r, &mut wanted);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut map = HashMap::new();
        for cond in wanted {
            let Some((rt, query)) = cond.split_once('?') else {
                continue;
            };
            let params: Vec<(String, String)> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (percent_decode(k), percent_decode(v)))
                .collect();
            // Within the batch: identifier matches (the common case in transaction Bundles).
            let in_batch: Vec<String> = batch
                .iter()
                .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(rt))
                .filter(|r| {
                    params
                        .iter()
                        .all(|(k, v)| k == "identifier" && has_identifier(r, v))
                })
                .filter_map(|r| {
                    r.get("id")
                        .and_then(Value::as_str)
                        .map(|id| format!("{rt}/{id}"))
                })
                .collect();
            let resolved = if in_batch.len() == 1 {
                Some(in_batch[0].clone())
            } else if in_batch.is_empty() {
                let mut p = params.clone();
                p.push(("_count".into(), "2".into()));
                match crate::search::parse_search(rt, &p) {
                    Ok(parsed) => {
                        let page = self.store.search(&self.db, &parsed.query)?;
                        (page.ids.len() == 1).then(|| page.ids[0].to_string())
                    }
                    Err(_) => None,
                }
            } else {
                None
            };
            if let Some(to) = resolved {
                map.insert(cond, to);
            }
        }
        for r in batch.iter_mut() {
            rewrite_references(r, &map);
        }
        Ok(())
    }

    fn write_batch(
        &self,
        mut resources: Vec<Value>,
        upsert: bool,
    ) -> Result<Vec<Result<Stored, FhirError>>, FhirError> {
        self.resolve_conditional(&mut resources)?;
        // Ids first, so references within the batch resolve.
        let mut prepared: Vec<Result<Value, FhirError>> = Vec::with_capacity(resources.len());
        let mut pending = Vec::with_capacity(resources.len());
        for mut r in resources {
            let Some(obj) = r.as_object_mut() else {
                prepared.push(Err(FhirError::one(
                    400,
                    IssueCode::Structure,
                    "Resource",
                    "a resource must be a JSON object",
                )));
                continue;
            };
            if !obj.contains_key("id") {
                obj.insert("id".into(), Value::String(new_id()?));
            }
            if let (Some(rt), Some(id)) = (
                obj.get("resourceType").and_then(Value::as_str),
                obj.get("id").and_then(Value::as_str),
            ) {
                pending.push(format!("{rt}/{id}"));
            }
            prepared.push(Ok(r));
        }
        let mut results: Vec<Result<Stored, FhirError>> = Vec::with_capacity(prepared.len());
        let mut audits = Vec::new();
        let mut writes = Vec::new();
        let mut slots = Vec::new();
        for p in prepared {
            let (rt, id, resource) = match p.and_then(|r| self.prepare(r, &pending)) {
                Ok(x) => x,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let did = match crate::doc_id(&rt, &id) {
                Ok(d) => d,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let mut parent = None;
            if upsert {
                match self.store.get_raw(&self.db, &did) {
                    Ok(current) if same_content(&current.body, &resource) => {
                        results.push(Ok(Stored {
                            id,
                            version: current.rev.to_string(),
                            resource: with_version(resource, &current.rev),
                            created: false,
                        }));
                        continue;
                    }
                    Ok(current) => parent = Some(current.rev),
                    Err(store::Error::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let mut resource = resource;
            self.stamp_clock(&did, parent.as_ref(), &mut resource)?;
            let Value::Object(body) = resource.clone() else {
                continue;
            };
            let action = if parent.is_some() { "update" } else { "create" };
            let needed = if parent.is_some() {
                crate::Action::Update
            } else {
                crate::Action::Create
            };
            if let Err(e) = self.allow(
                &rt,
                needed,
                crate::audit::reference_of(&resource),
                crate::audit::patient_of(&resource),
            ) {
                results.push(Err(e));
                continue;
            }
            audits.push(self.actor.event(
                action,
                "success",
                crate::audit::reference_of(&resource),
                crate::audit::patient_of(&resource),
            ));
            slots.push((results.len(), id, resource));
            results.push(Err(FhirError::one(
                500,
                IssueCode::Exception,
                "Resource",
                "not written",
            )));
            writes.push(DocWrite::new(did, parent, body));
        }
        // Each written resource is audited in the same transaction; refused ones as failures.
        let written = self
            .store
            .bulk_docs_audited(&self.db, writes, true, |results| {
                audits
                    .into_iter()
                    .zip(results)
                    .map(|(mut e, r)| {
                        if r.is_err() {
                            e.outcome = "failure".into();
                        }
                        e
                    })
                    .collect()
            })?;
        for ((slot, id, resource), w) in slots.into_iter().zip(written) {
            results[slot] = match w {
                Ok(rev) => Ok(Stored {
                    id,
                    created: rev.generation() == 1,
                    version: rev.to_string(),
                    resource: with_version(resource, &rev),
                }),
                Err(store::Error::Conflict) => Err(FhirError::one(
                    409,
                    IssueCode::Conflict,
                    "Resource.id",
                    "a resource with this id exists already (or appears twice in one batch)",
                )),
                Err(e) => Err(e.into()),
            };
        }
        Ok(results)
    }

    /// Every current resource of the database, grouped by type, for NDJSON export: calls
    /// `each(resourceType, resource)` in changes-feed order, a page at a time (memory stays
    /// flat). Returns how many were exported.
    /// Each page of resources is audited under `audit_action` (`export`, or `read` for a scan
    /// that discloses nothing) before `each` sees it.
    pub fn export_each(
        &self,
        audit_action: &str,
        mut each: impl FnMut(&str, &Value) -> Result<(), FhirError>,
    ) -> Result<u64, FhirError> {
        let action = if audit_action == "export" {
            crate::Action::Export
        } else {
            crate::Action::Read
        };
        // A role that may do this to no type at all is refused outright (and audited), rather
        // than handed an empty export that looks like an empty database.
        if !fhir::schema::RESOURCES
            .iter()
            .any(|(t, _)| self.permissions.allows(self.actor.role, t, action))
        {
            return self.allow("Patient", action, None, None).map(|()| 0);
        }
        let mut since = 0;
        let mut n = 0;
        let mut refused = std::collections::BTreeSet::new();
        loop {
            let page = self.store.changes(
                &self.db,
                &ChangesQuery {
                    since,
                    limit: Some(500),
                    ..ChangesQuery::default()
                },
            )?;
            if page.results.is_empty() {
                return Ok(n);
            }
            let mut shown = Vec::with_capacity(page.results.len());
            for c in &page.results {
                since = c.seq;
                if c.deleted || c.id.as_str().starts_with("_design/") {
                    continue;
                }
                let doc = match self.store.get_raw(&self.db, &c.id) {
                    Ok(d) => d,
                    Err(store::Error::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let body: Map<String, Value> = serde_json::from_slice(&doc.body).map_err(|_| {
                    FhirError::one(
                        500,
                        IssueCode::Exception,
                        "Resource",
                        "a stored resource is not valid JSON",
                    )
                })?;
                let resource = with_version(Value::Object(body), &doc.rev);
                let rt = resource
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                shown.push((rt, resource));
            }
            // Types the role may not export (or read) are left out, and the refusal is
            // audited once per type.
            let mut allowed = Vec::with_capacity(shown.len());
            for (rt, r) in shown {
                if self.permissions.allows(self.actor.role, &rt, action) {
                    allowed.push((rt, r));
                } else if refused.insert(rt.clone()) {
                    let mut e = self.actor.event("denied", "denied", None, None);
                    e.detail = Some(format!("{} {rt}", action.as_str()));
                    self.store.audit_append(&[e])?;
                }
            }
            let shown = allowed;
            let refs: Vec<&Value> = shown.iter().map(|(_, r)| r).collect();
            self.audit_reads(audit_action, &refs)?;
            for (rt, resource) in &shown {
                each(rt, resource)?;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_components_decode() {
        assert_eq!(percent_decode("urn%3Amrn%7C123"), "urn:mrn|123");
        assert_eq!(percent_decode("a+b%"), "a b%");
        assert!(has_identifier(
            &json!({"identifier": [{"system": "urn:mrn", "value": "9"}]}),
            "urn:mrn|9"
        ));
        assert!(has_identifier(
            &json!({"identifier": [{"system": "urn:mrn", "value": "9"}]}),
            "9"
        ));
        assert!(!has_identifier(
            &json!({"identifier": [{"system": "urn:x", "value": "9"}]}),
            "urn:mrn|9"
        ));
    }

    #[test]
    fn bundles_resolve_urn_uuid_references_and_order_entries() {
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b7e5c1a-1111-4c2e-9b1e-3f9c2b7a0001", "resource": {"resourceType": "Observation", "status": "final",
                "code": {"text": "HR"}, "subject": {"reference": "urn:uuid:0b7e5c1a-1111-4c2e-9b1e-3f9c2b7a0002"}}},
            {"fullUrl": "urn:uuid:0b7e5c1a-1111-4c2e-9b1e-3f9c2b7a0002", "resource": {"resourceType": "Patient"}},
            {"fullUrl": "http://other.example/fhir/Practitioner/dr9", "resource": {"resourceType": "Practitioner", "id": "dr9"}}
        ]});
        let with_index = resources_of_bundle(&b).unwrap();
        assert_eq!(
            with_index.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![2, 1, 0]
        );
        let rs: Vec<Value> = with_index.into_iter().map(|(_, r)| r).collect();
        assert_eq!(rs[0]["resourceType"], "Practitioner");
        assert_eq!(rs[1]["resourceType"], "Patient");
        assert_eq!(rs[1]["id"], "0b7e5c1a-1111-4c2e-9b1e-3f9c2b7a0002");
        assert_eq!(
            rs[2]["subject"]["reference"],
            "Patient/0b7e5c1a-1111-4c2e-9b1e-3f9c2b7a0002"
        );
        assert!(
            resources_of_bundle(&json!({"resourceType": "Bundle", "type": "history"})).is_err()
        );
        assert!(resources_of_bundle(&json!({"resourceType": "Patient"})).is_err());
    }
}
