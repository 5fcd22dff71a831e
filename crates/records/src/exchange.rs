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

/// Whether a stored body and a prepared resource say the same thing, `meta` aside.
fn same_content(stored: &[u8], resource: &Value) -> bool {
    let Ok(Value::Object(mut a)) = serde_json::from_slice::<Value>(stored) else {
        return false;
    };
    let Value::Object(mut b) = resource.clone() else {
        return false;
    };
    a.remove("meta");
    b.remove("meta");
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

    fn write_batch(
        &self,
        resources: Vec<Value>,
        upsert: bool,
    ) -> Result<Vec<Result<Stored, FhirError>>, FhirError> {
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
            let Value::Object(body) = resource.clone() else {
                continue;
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
            slots.push((results.len(), id, resource));
            results.push(Err(FhirError::one(
                500,
                IssueCode::Exception,
                "Resource",
                "not written",
            )));
            writes.push(DocWrite::new(did, parent, body));
        }
        let written = self.store.bulk_docs(&self.db, writes, true)?;
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
    pub fn export_each(
        &self,
        mut each: impl FnMut(&str, &Value) -> Result<(), FhirError>,
    ) -> Result<u64, FhirError> {
        let mut since = 0;
        let mut n = 0;
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
                each(&rt, &resource)?;
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
