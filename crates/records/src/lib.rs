//! Clinical records: FHIR R4 operations over a node's store — create, read, update (with
//! version checks), delete, history, search and `Patient/$everything` — with validation and
//! reference resolution on every write and the search index kept by [`FhirIndexer`].
//!
//! Errors are [`FhirError`]s: an HTTP status with `OperationOutcome` issues.
//!
//! ```no_run
//! # fn demo(node: store::Unlocked) -> Result<(), records::FhirError> {
//! let session = node.session()?;
//! let records = records::Records::new(node.replica().clone(), "records", &session)?;
//! let stored = records.create(serde_json::json!({"resourceType": "Patient", "name": [{"family": "Okafor"}]}))?;
//! let page = records.search("Patient", &[("name".into(), "oka".into())], "http://127.0.0.1/fhir")?;
//! assert_eq!(page["entry"][0]["resource"]["id"], stored.id);
//! # Ok(()) }
//! ```

mod access;
mod audit;
pub mod conflicts;
mod exchange;
mod search;

use std::sync::Arc;

use fhir::{Issue, IssueCode};
use revtree::Rev;
use serde_json::{Value, json};
use store::{DocId, DocWrite, GetOptions, PolicyPart, Store};

pub use access::{Action, BREAK_GLASS_SECS, Grant, Permissions};
use audit::Actor;
pub use audit::{audit_event, patient_of, reference_of};
pub use conflicts::{Conflict, Policies, Policy, Resolution};
pub use exchange::{IMPORT_ORDER, import_rank, resources_of_bundle};
pub use search::{SearchParams, parse_search};
pub use store::Role;
pub use store::Session;

/// Computes FHIR search terms for the store's index.
pub struct FhirIndexer;

impl store::Indexer for FhirIndexer {
    fn terms(&self, _db: &str, _id: &DocId, body: &[u8]) -> Vec<store::IndexTerm> {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Vec::new();
        };
        fhir::index::terms(&v, fhir::time::now())
            .into_iter()
            .map(|t| match t {
                fhir::index::Term::Token { param, value } => {
                    store::IndexTerm::Token { param, value }
                }
                fhir::index::Term::Text(t) => store::IndexTerm::Text(t),
            })
            .collect()
    }
}

/// A FHIR error: an HTTP status and the issues of an `OperationOutcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirError {
    /// HTTP status (400, 404, 409, 410, 412, 422, 500).
    pub status: u16,
    /// What went wrong, where.
    pub issues: Vec<Issue>,
}

impl FhirError {
    /// An error with one issue.
    pub fn one(status: u16, code: IssueCode, expression: &str, diagnostics: &str) -> FhirError {
        FhirError {
            status,
            issues: vec![Issue::error(code, expression, diagnostics)],
        }
    }

    /// The `OperationOutcome` resource.
    pub fn outcome(&self) -> Value {
        fhir::operation_outcome(&self.issues)
    }
}

impl std::fmt::Display for FhirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", issue.expression, issue.diagnostics)?;
        }
        Ok(())
    }
}

impl std::error::Error for FhirError {}

impl From<store::Error> for FhirError {
    fn from(e: store::Error) -> FhirError {
        let (status, code) = match &e {
            store::Error::NotFound(_) | store::Error::DbNotFound => (404, IssueCode::NotFound),
            store::Error::Conflict => (409, IssueCode::Conflict),
            store::Error::BadDocId(_)
            | store::Error::BadRequest(_)
            | store::Error::DocValidation(_) => (400, IssueCode::Invalid),
            _ => (500, IssueCode::Exception),
        };
        FhirError::one(status, code, "Resource", &e.to_string())
    }
}

/// A resource as stored: its id, version and content (with `meta.versionId`).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// `id`
    pub id: String,
    /// `meta.versionId`: the document revision.
    pub version: String,
    /// The resource.
    pub resource: Value,
    /// Whether the write created it.
    pub created: bool,
}

/// FHIR operations on one database of a node's store.
pub struct Records {
    store: Arc<Store>,
    db: String,
    /// Who opened them.
    session: Session,
    actor: Actor,
    permissions: Permissions,
    /// The actor's break-glass grants (active or not; checked against the clock).
    grants: Vec<Grant>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// This node's device id, in the hybrid logical clocks it stamps.
    device: String,
}

fn new_id() -> Result<String, FhirError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| {
        FhirError::one(
            500,
            IssueCode::Exception,
            "Resource.id",
            "the system random number generator failed",
        )
    })?;
    Ok(hex::encode(b))
}

fn doc_id(rt: &str, id: &str) -> Result<DocId, FhirError> {
    if fhir::schema::resource(rt).is_none() {
        return Err(FhirError::one(
            404,
            IssueCode::NotSupported,
            "Resource.resourceType",
            &format!("resource type '{rt}' is not supported by Hearth"),
        ));
    }
    if !fhir::primitives::is_id(id) {
        return Err(FhirError::one(
            400,
            IssueCode::Value,
            &format!("{rt}.id"),
            "must be a FHIR id: 1-64 of A-Z a-z 0-9 - .",
        ));
    }
    DocId::parse(&format!("{rt}/{id}")).map_err(FhirError::from)
}

/// Every break-glass grant stored for database `db` (active or not).
fn load_grants(store: &Store, db: &str) -> Result<Vec<Grant>, FhirError> {
    Ok(store
        .get_policy(db, PolicyPart::BreakGlass)?
        .and_then(|v| serde_json::from_value::<Vec<Grant>>(v.get("grants")?.clone()).ok())
        .unwrap_or_default())
}

/// Adds `meta.versionId` to a stored body.
fn with_version(mut body: Value, rev: &Rev) -> Value {
    if let Some(obj) = body.as_object_mut() {
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert("versionId".into(), Value::String(rev.to_string()));
        }
    }
    body
}

impl Records {
    /// FHIR operations on database `db` (created if missing), with the FHIR search indexer
    /// installed on the store.
    /// Every operation runs in `session` (checked against the permission matrix and audited as
    /// its user). A session comes only from an unlocked node's unlock or login.
    pub fn new(store: Arc<Store>, db: &str, session: &Session) -> Result<Records, FhirError> {
        let Some(role) = session.role() else {
            return Err(FhirError::one(
                403,
                IssueCode::Forbidden,
                "Session",
                "only a person in a role opens records (the relay does not)",
            ));
        };
        let actor = Actor::new(session.user(), role);
        store.ensure_db(db)?;
        store.set_indexer(Arc::new(FhirIndexer));
        let permissions = Permissions::load(&store, db)?;
        let grants = load_grants(&store, db)?
            .into_iter()
            .filter(|g| g.user == actor.user)
            .collect();
        let (device, _) = store.device_identity()?;
        Ok(Records {
            store,
            db: db.to_owned(),
            session: session.clone(),
            actor,
            permissions,
            grants,
            clock: Arc::new(fhir::time::now),
            device,
        })
    }

    /// Uses another clock (Unix seconds) for break-glass expiry; tests control time with it.
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> i64 + Send + Sync>) -> Records {
        self.clock = clock;
        self
    }

    /// Whether the actor holds an unexpired break-glass grant for this patient.
    fn glass(&self, patient: &str) -> bool {
        let now = (self.clock)();
        self.grants
            .iter()
            .any(|g| g.patient == patient && g.until > now)
    }

    /// Break-glass: opens one patient's chart to a user whose role does not allow it, for an
    /// emergency, for [`BREAK_GLASS_SECS`]. Needs a reason; works offline; the grant and every
    /// access under it are flagged in the audit trail for review. Read-only.
    pub fn break_glass(&mut self, patient: &str, reason: &str) -> Result<Grant, FhirError> {
        if reason.trim().chars().count() < 10 {
            return Err(FhirError::one(
                400,
                IssueCode::Required,
                "reason",
                "break-glass needs a reason of at least 10 characters, for the review",
            ));
        }
        if !self.exists("Patient", patient)? {
            return Err(FhirError::one(
                404,
                IssueCode::NotFound,
                "Patient",
                "no such patient",
            ));
        }
        let now = (self.clock)();
        let grant = Grant {
            user: self.actor.user.clone(),
            patient: format!("Patient/{patient}"),
            until: now + BREAK_GLASS_SECS,
            reason: reason.trim().to_owned(),
        };
        let mut all = load_grants(&self.store, &self.db)?;
        all.retain(|g| g.until > now);
        all.push(grant.clone());
        let mut e = self
            .actor
            .event("break_glass", "success", None, Some(grant.patient.clone()));
        e.detail = Some(grant.reason.clone());
        e.break_glass = true;
        self.store.put_policy(
            &self.db,
            PolicyPart::BreakGlass,
            &json!({"grants": all}),
            &e,
        )?;
        self.grants.push(grant.clone());
        Ok(grant)
    }

    /// The session these records run in (who is acting).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The permission matrix in force.
    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Grants or revokes a permission (admins only); stored in the node's encrypted file and
    /// audited.
    pub fn set_permission(
        &mut self,
        role: Role,
        rt: &str,
        action: Action,
        allow: bool,
    ) -> Result<(), FhirError> {
        if !self.actor.role.is_admin() {
            self.deny(rt, action, None, None)?;
        }
        let mut next = self.permissions.clone();
        next.set(role, rt, action, allow)
            .map_err(|why| FhirError::one(400, IssueCode::Invalid, "Permissions", &why))?;
        let before = self.permissions.allows(role, rt, action);
        let Ok(value) = serde_json::to_value(&next) else {
            return Err(FhirError::one(
                500,
                IssueCode::Exception,
                "Permissions",
                "the matrix does not serialize",
            ));
        };
        let mut e = self.actor.event("permission_change", "success", None, None);
        e.resource = Some(format!("Permissions/{role}/{rt}/{}", action.as_str()));
        e.detail = Some(format!(
            "{} {role} {} {rt} (before: {}, after: {})",
            if allow { "granted" } else { "revoked" },
            action.as_str(),
            if before { "allowed" } else { "refused" },
            if allow { "allowed" } else { "refused" },
        ));
        self.store
            .put_policy(&self.db, PolicyPart::Permissions, &value, &e)?;
        self.permissions = next;
        Ok(())
    }

    /// Checks the actor may do `action` on `rt`; a denial is audited and returned as 403.
    pub(crate) fn allow(
        &self,
        rt: &str,
        action: Action,
        resource: Option<String>,
        patient: Option<String>,
    ) -> Result<(), FhirError> {
        if fhir::schema::resource(rt).is_none() {
            // Not a permission question: the type does not exist here.
            return doc_id(rt, "x").map(|_| ());
        }
        if self.permissions.allows(self.actor.role, rt, action) {
            return Ok(());
        }
        self.deny(rt, action, resource, patient)
    }

    fn deny(
        &self,
        rt: &str,
        action: Action,
        resource: Option<String>,
        patient: Option<String>,
    ) -> Result<(), FhirError> {
        let mut e = self.actor.event("denied", "denied", resource, patient);
        e.detail = Some(format!("{} {rt}", action.as_str()));
        self.store.audit_append(&[e])?;
        Err(FhirError::one(
            403,
            IssueCode::Forbidden,
            rt,
            &format!(
                "the role '{}' may not {} {rt} records",
                self.actor.role,
                action.as_str()
            ),
        ))
    }

    /// The user the operations run for.
    pub fn user(&self) -> &str {
        &self.actor.user
    }

    /// Records reads (what was shown) before the data is handed out: if the audit trail
    /// cannot be written, the caller gets an error instead of the data.
    pub(crate) fn audit_reads(&self, action: &str, resources: &[&Value]) -> Result<(), FhirError> {
        let events: Vec<store::AuditEvent> = resources
            .iter()
            .map(|r| {
                let patient = patient_of(r);
                let mut e = self
                    .actor
                    .event(action, "success", reference_of(r), patient.clone());
                e.break_glass = patient.is_some_and(|p| self.glass(&p));
                e
            })
            .collect();
        self.store.audit_append(&events)?;
        Ok(())
    }

    /// Writes one document and its audit entry in one transaction.
    fn put_audited(
        &self,
        doc: DocWrite,
        action: &str,
        patient: Option<String>,
    ) -> Result<Rev, store::Error> {
        let reference = doc.id.to_string();
        let actor = &self.actor;
        let mut results = self
            .store
            .bulk_docs_audited(&self.db, vec![doc], true, |results| {
                let outcome = if results.iter().all(Result::is_ok) {
                    "success"
                } else {
                    "failure"
                };
                vec![actor.event(action, outcome, Some(reference.clone()), patient.clone())]
            })?;
        results.pop().unwrap_or(Err(store::Error::Conflict))
    }

    /// Stamps the write's hybrid logical clock in `meta`: after the parent version's clock and
    /// never behind the wall clock, so last-writer-wins never trusts the wall clock alone
    /// (docs/adr/0014-conflict-policies.md).
    pub(crate) fn stamp_clock(
        &self,
        did: &DocId,
        parent: Option<&Rev>,
        resource: &mut Value,
    ) -> Result<(), FhirError> {
        let parent_hlc = match parent {
            Some(p) => self
                .store
                .open_revs_raw(
                    &self.db,
                    did,
                    &store::OpenRevs::Revs(vec![p.clone()]),
                    false,
                    false,
                )?
                .into_iter()
                .next()
                .and_then(|r| r.ok())
                .and_then(|raw| serde_json::from_slice::<Value>(&raw.body).ok())
                .and_then(|b| conflicts::hlc_of(&b)),
            None => None,
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        conflicts::stamp_hlc(
            resource,
            &conflicts::next_hlc(now_ms, parent_hlc.as_deref(), &self.device),
        );
        Ok(())
    }

    /// Rebuilds the search index (after an upgrade, or for documents that arrived before).
    pub fn reindex(&self) -> Result<u64, FhirError> {
        Ok(self.store.reindex(&self.db)?)
    }

    /// Validates a resource and checks its references resolve (`pending` lists ids being
    /// written in the same batch, which count as present).
    pub fn check(&self, resource: &Value, pending: &[String]) -> Result<(), FhirError> {
        let report = fhir::validate(resource);
        let mut issues = report.issues;
        for (path, reference) in report.references {
            // Only references to types this device stores can resolve here; others (an
            // Organization, a Medication) point outside and are kept as written.
            let stored_type = reference
                .split_once('/')
                .is_some_and(|(rt, _)| fhir::schema::resource(rt).is_some());
            if !stored_type || pending.contains(&reference) {
                continue;
            }
            let exists = DocId::parse(&reference)
                .ok()
                .map(|id| self.store.get_raw(&self.db, &id))
                .is_some_and(|r| r.is_ok());
            if !exists {
                issues.push(Issue::error(
                    IssueCode::NotFound,
                    &path,
                    "the referenced resource does not exist on this device",
                ));
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(FhirError {
                status: 422,
                issues,
            })
        }
    }

    /// Prepares a resource for storage: checks it, stamps `meta.lastUpdated`, drops
    /// `meta.versionId` (it is the document revision, added on read).
    fn prepare(
        &self,
        mut resource: Value,
        pending: &[String],
    ) -> Result<(String, String, Value), FhirError> {
        let Some(obj) = resource.as_object_mut() else {
            return Err(FhirError::one(
                400,
                IssueCode::Structure,
                "Resource",
                "a resource must be a JSON object",
            ));
        };
        let rt = obj
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                FhirError::one(
                    400,
                    IssueCode::Required,
                    "Resource.resourceType",
                    "resourceType is required",
                )
            })?
            .to_owned();
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(FhirError::one(
                    400,
                    IssueCode::Value,
                    &format!("{rt}.id"),
                    "id must be a string",
                ));
            }
            None => {
                let id = new_id()?;
                obj.insert("id".into(), Value::String(id.clone()));
                id
            }
        };
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.shift_remove("versionId");
            // The clock is stamped by the store path (`write`), never taken from a client.
            if let Some(Value::Array(ext)) = m.get_mut("extension") {
                ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(conflicts::HLC_URL));
                if ext.is_empty() {
                    m.shift_remove("extension");
                }
            }
            m.insert(
                "lastUpdated".into(),
                Value::String(fhir::time::instant(fhir::time::now())),
            );
        }
        self.check(&resource, pending)?;
        Ok((rt, id, resource))
    }

    fn write(
        &self,
        rt: &str,
        id: &str,
        resource: Value,
        parent: Option<Rev>,
        created: bool,
    ) -> Result<Stored, FhirError> {
        let did = doc_id(rt, id)?;
        let mut resource = resource;
        self.stamp_clock(&did, parent.as_ref(), &mut resource)?;
        let Value::Object(body) = resource.clone() else {
            return Err(FhirError::one(
                400,
                IssueCode::Structure,
                "Resource",
                "a resource must be a JSON object",
            ));
        };
        let action = if created { "create" } else { "update" };
        let patient = audit::patient_of(&resource);
        let rev = self
            .put_audited(DocWrite::new(did, parent, body), action, patient)
            .map_err(|e| match e {
                store::Error::Conflict => FhirError::one(
                    409,
                    IssueCode::Conflict,
                    &format!("{rt}/{id}"),
                    "the resource changed meanwhile; read it again and retry",
                ),
                other => other.into(),
            })?;
        Ok(Stored {
            id: id.to_owned(),
            version: rev.to_string(),
            resource: with_version(resource, &rev),
            created,
        })
    }

    /// `create`: a new resource. A client-chosen `id` is kept (devices create offline with ids
    /// of their own); it must not exist yet.
    pub fn create(&self, resource: Value) -> Result<Stored, FhirError> {
        let (rt, id, resource) = self.prepare(resource, &[])?;
        self.allow(
            &rt,
            Action::Create,
            Some(format!("{rt}/{id}")),
            audit::patient_of(&resource),
        )?;
        let did = doc_id(&rt, &id)?;
        match self.store.get_raw(&self.db, &did) {
            Ok(_) => {
                return Err(FhirError::one(
                    409,
                    IssueCode::Conflict,
                    &format!("{rt}.id"),
                    "a resource with this id exists; update it instead",
                ));
            }
            Err(store::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.write(&rt, &id, resource, None, true)
    }

    /// `update` (or create with a given id). `if_match` is the version the client read
    /// (`W/"3-…"` or `3-…`); a different current version is `412`.
    pub fn update(
        &self,
        rt: &str,
        id: &str,
        resource: Value,
        if_match: Option<&str>,
    ) -> Result<Stored, FhirError> {
        if resource.get("resourceType").and_then(Value::as_str) != Some(rt) {
            return Err(FhirError::one(
                400,
                IssueCode::Invalid,
                "Resource.resourceType",
                "resourceType does not match the URL",
            ));
        }
        if resource
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|b| b != id)
        {
            return Err(FhirError::one(
                400,
                IssueCode::Invalid,
                &format!("{rt}.id"),
                "id does not match the URL",
            ));
        }
        let mut resource = resource;
        if let Some(o) = resource.as_object_mut() {
            o.insert("id".into(), Value::String(id.to_owned()));
        }
        let did = doc_id(rt, id)?;
        let current = match self.store.get_raw(&self.db, &did) {
            Ok(d) => Some(d.rev),
            Err(store::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(want) = if_match {
            let want = want.trim().trim_start_matches("W/").trim_matches('"');
            if current.as_ref().map(ToString::to_string).as_deref() != Some(want) {
                return Err(FhirError::one(
                    412,
                    IssueCode::Conflict,
                    &format!("{rt}/{id}"),
                    "If-Match does not name the current version",
                ));
            }
        }
        let (_, _, resource) = self.prepare(resource, &[])?;
        let created = current.is_none();
        let action = if created {
            Action::Create
        } else {
            Action::Update
        };
        self.allow(
            rt,
            action,
            Some(format!("{rt}/{id}")),
            audit::patient_of(&resource),
        )?;
        // A deleted resource is re-created on its tombstone branch by the store.
        self.write(rt, id, resource, current, created)
    }

    /// `read`: the current version.
    pub fn read(&self, rt: &str, id: &str) -> Result<Stored, FhirError> {
        self.may_read_record(rt, id)?;
        match self.read_unaudited(rt, id) {
            Ok(stored) => {
                self.audit_reads("read", &[&stored.resource])?;
                Ok(stored)
            }
            Err(e) => {
                let event = self
                    .actor
                    .event("read", "failure", Some(format!("{rt}/{id}")), None);
                self.store.audit_append(&[event])?;
                Err(e)
            }
        }
    }

    /// The role may read this type, or a break-glass grant opens this record's patient; a
    /// refusal is audited.
    fn may_read_record(&self, rt: &str, id: &str) -> Result<(), FhirError> {
        if !self.permissions.allows(self.actor.role, rt, Action::Read) {
            // Whose record it is: for the break-glass check, and so the refusal names the
            // patient (a security officer asks who tried to see P's record).
            let patient = self
                .read_unaudited(rt, id)
                .ok()
                .and_then(|s| patient_of(&s.resource));
            // Only a break-glass grant for this record's patient opens it.
            let opened =
                !self.grants.is_empty() && patient.as_deref().is_some_and(|p| self.glass(p));
            if !opened {
                self.allow(rt, Action::Read, Some(format!("{rt}/{id}")), patient)?;
            }
        }
        Ok(())
    }

    /// `vread`: one version of a resource (`{rt}/{id}/_history/{vid}`), audited like a read.
    /// A version the store does not hold is 404; a deletion is 410.
    pub fn vread(&self, rt: &str, id: &str, vid: &str) -> Result<Stored, FhirError> {
        self.may_read_record(rt, id)?;
        let did = doc_id(rt, id)?;
        let missing = || {
            FhirError::one(
                404,
                IssueCode::NotFound,
                "Resource",
                &format!("{rt}/{id} has no version {vid}"),
            )
        };
        let rev: Rev = vid.parse().map_err(|_| missing())?;
        let opts = GetOptions {
            rev: Some(rev.clone()),
            ..GetOptions::default()
        };
        let doc = match self.store.get(&self.db, &did, &opts) {
            Ok(d) => d,
            Err(store::Error::NotFound(_)) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        if doc.deleted {
            return Err(FhirError::one(
                410,
                IssueCode::NotFound,
                "Resource",
                &format!("version {vid} of {rt}/{id} is a deletion"),
            ));
        }
        let resource = with_version(Value::Object(doc.body), &rev);
        self.audit_reads("read", &[&resource])?;
        Ok(Stored {
            id: id.to_owned(),
            version: rev.to_string(),
            resource,
            created: false,
        })
    }

    /// Whether a resource exists (and is not deleted). Returns no content, so it is not
    /// audited.
    pub fn exists(&self, rt: &str, id: &str) -> Result<bool, FhirError> {
        match self.store.get_raw(&self.db, &doc_id(rt, id)?) {
            Ok(_) => Ok(true),
            Err(store::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn read_unaudited(&self, rt: &str, id: &str) -> Result<Stored, FhirError> {
        let did = doc_id(rt, id)?;
        let doc = self
            .store
            .get(&self.db, &did, &GetOptions::default())
            .map_err(|e| match e {
                store::Error::NotFound("deleted") => FhirError::one(
                    410,
                    IssueCode::NotFound,
                    &format!("{rt}/{id}"),
                    "the resource was deleted",
                ),
                store::Error::NotFound(_) => FhirError::one(
                    404,
                    IssueCode::NotFound,
                    &format!("{rt}/{id}"),
                    "no such resource",
                ),
                other => other.into(),
            })?;
        Ok(Stored {
            id: id.to_owned(),
            version: doc.rev.to_string(),
            resource: with_version(Value::Object(doc.body), &doc.rev),
            created: false,
        })
    }

    /// `delete`: leaves a tombstone that replicates. Deleting a missing resource is a no-op
    /// (FHIR allows `200`/`204` either way).
    pub fn delete(&self, rt: &str, id: &str) -> Result<(), FhirError> {
        self.allow(rt, Action::Delete, Some(format!("{rt}/{id}")), None)?;
        let did = doc_id(rt, id)?;
        match self.store.get_raw(&self.db, &did) {
            Ok(d) => {
                let patient = serde_json::from_slice::<Value>(&d.body)
                    .ok()
                    .and_then(|b| audit::patient_of(&b));
                self.put_audited(DocWrite::deletion(did, d.rev), "delete", patient)?;
                Ok(())
            }
            Err(store::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `_history` of one resource: its versions along the current branch, newest first (bodies
    /// kept until compaction; older versions without a body are left out).
    pub fn history(&self, rt: &str, id: &str, base: &str) -> Result<Value, FhirError> {
        self.allow(rt, Action::Read, Some(format!("{rt}/{id}")), None)?;
        let did = doc_id(rt, id)?;
        let tree = self.store.rev_tree(&self.db, &did)?;
        let winner = tree.winner().ok_or_else(|| {
            FhirError::one(
                500,
                IssueCode::Exception,
                "Resource",
                "a revision tree has no leaf",
            )
        })?;
        let path = tree.path_to(&winner.rev).unwrap_or_default();
        let mut entries = Vec::new();
        for rev in path {
            let opts = GetOptions {
                rev: Some(rev.clone()),
                ..GetOptions::default()
            };
            match self.store.get(&self.db, &did, &opts) {
                Ok(doc) => {
                    let method = if doc.deleted {
                        "DELETE"
                    } else if rev.generation() == 1 {
                        "POST"
                    } else {
                        "PUT"
                    };
                    let mut entry = json!({
                        "fullUrl": format!("{base}/{rt}/{id}"),
                        "request": {"method": method, "url": format!("{rt}/{id}")},
                        "response": {"status": if doc.deleted { "204" } else { "200" }, "etag": format!("W/\"{rev}\"")},
                    });
                    if !doc.deleted {
                        entry["resource"] = with_version(Value::Object(doc.body), &rev);
                    }
                    entries.push(entry);
                }
                Err(store::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let shown: Vec<&Value> = entries.iter().filter_map(|e| e.get("resource")).collect();
        self.audit_reads("read", &shown)?;
        Ok(
            json!({"resourceType": "Bundle", "type": "history", "total": entries.len(), "entry": entries}),
        )
    }

    fn bundle(
        &self,
        action: &str,
        ids: &[DocId],
        base: &str,
        self_link: &str,
        next: Option<String>,
    ) -> Result<Value, FhirError> {
        let mut entries = Vec::with_capacity(ids.len());
        for id in ids {
            let doc = match self.store.get_raw(&self.db, id) {
                Ok(d) => d,
                Err(store::Error::NotFound(_)) => continue, // deleted between search and read
                Err(e) => return Err(e.into()),
            };
            let body: Value = serde_json::from_slice(&doc.body).map_err(|_| {
                FhirError::one(
                    500,
                    IssueCode::Exception,
                    "Resource",
                    "a stored resource is not valid JSON",
                )
            })?;
            entries.push(json!({
                "fullUrl": format!("{base}/{id}"),
                "resource": with_version(body, &doc.rev),
                "search": {"mode": "match"},
            }));
        }
        // Every record the Bundle shows is audited before it is handed out.
        let shown: Vec<&Value> = entries.iter().map(|e| &e["resource"]).collect();
        self.audit_reads(action, &shown)?;
        let mut links = vec![json!({"relation": "self", "url": self_link})];
        if let Some(n) = next {
            links.push(json!({"relation": "next", "url": n}));
        }
        Ok(json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}))
    }

    /// `search`: a `searchset` Bundle of one page. `params` are the query's name/value pairs;
    /// `base` is the FHIR base URL for `fullUrl` and paging links.
    pub fn search(
        &self,
        rt: &str,
        params: &[(String, String)],
        base: &str,
    ) -> Result<Value, FhirError> {
        let parsed = parse_search(rt, params)?;
        let glass = params.iter().any(|(k, v)| {
            matches!(k.as_str(), "patient" | "subject")
                && self.glass(&format!("Patient/{}", v.trim_start_matches("Patient/")))
        });
        if !glass {
            self.allow(rt, Action::Search, None, None)?;
        }
        let page = self.store.search(&self.db, &parsed.query)?;
        let next = page.more.then(|| {
            format!(
                "{base}/{rt}?{}",
                parsed.query_string_with_offset(parsed.query.offset + parsed.query.limit)
            )
        });
        let self_link = format!(
            "{base}/{rt}?{}",
            parsed.query_string_with_offset(parsed.query.offset)
        );
        self.bundle("search", &page.ids, base, &self_link, next)
    }

    /// `Patient/{id}/$everything`: the patient and every resource in their compartment.
    pub fn everything(&self, patient: &str, base: &str) -> Result<Value, FhirError> {
        let glass = self.glass(&format!("Patient/{patient}"));
        if !glass {
            self.allow(
                "Patient",
                Action::Read,
                Some(format!("Patient/{patient}")),
                Some(format!("Patient/{patient}")),
            )?;
        }
        self.read_unaudited("Patient", patient)?;
        let query = store::SearchQuery {
            id_prefix: None,
            filters: vec![store::Filter::Eq {
                param: "patient".into(),
                value: format!("Patient/{patient}"),
            }],
            sort: Vec::new(),
            limit: 10_000,
            offset: 0,
        };
        let page = self.store.search(&self.db, &query)?;
        if page.more {
            return Err(FhirError::one(
                422,
                IssueCode::Invalid,
                "Patient/$everything",
                "more than 10,000 resources for one patient; export them instead",
            ));
        }
        // The Patient first, then the rest in id order.
        // Minimum necessary: only the types the role may read are included.
        let mut ids: Vec<DocId> = page
            .ids
            .into_iter()
            .filter(|d| {
                let rt = d.as_str().split('/').next().unwrap_or("");
                glass || self.permissions.allows(self.actor.role, rt, Action::Read)
            })
            .collect();
        ids.sort_by_key(|d| !d.as_str().starts_with("Patient/"));
        let mut b = self.bundle(
            "read",
            &ids,
            base,
            &format!("{base}/Patient/{patient}/$everything"),
            None,
        )?;
        b["type"] = json!("searchset");
        // Hidden is not absent: the types the role may not read are named in an outcome
        // entry, whether or not this patient has any, so a reader never takes a hidden
        // allergy list for an empty one (and learns nothing about what exists).
        let hidden = self.hidden_types(glass);
        if !hidden.is_empty() {
            let role = &self.actor.role;
            let issues: Vec<Issue> = hidden
                .iter()
                .map(|rt| {
                    Issue::warning(
                        IssueCode::Suppressed,
                        rt,
                        &format!(
                            "{rt} records are hidden for your role ({role}); break-glass to view"
                        ),
                    )
                })
                .collect();
            if let Some(entries) = b["entry"].as_array_mut() {
                entries.push(json!({
                    "resource": fhir::operation_outcome(&issues),
                    "search": {"mode": "outcome"},
                }));
            }
        }
        Ok(b)
    }

    /// A patient's chart for taking off the device (the app's download): needs `export` on
    /// Patient; the records of types the role may not export are left out (each refusal
    /// audited once), and the export itself is audited with the patient. `what` says where it
    /// went, for the audit detail.
    pub fn export_chart(&self, patient: &str, what: &str) -> Result<Vec<Value>, FhirError> {
        let reference = format!("Patient/{patient}");
        self.allow(
            "Patient",
            Action::Export,
            Some(reference.clone()),
            Some(reference.clone()),
        )?;
        let b = self.everything(patient, "urn:hearth")?;
        let mut out = Vec::new();
        let mut refused = std::collections::BTreeSet::new();
        for e in b["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            if e.pointer("/search/mode").and_then(Value::as_str) == Some("outcome") {
                continue;
            }
            let rt = r["resourceType"].as_str().unwrap_or("");
            if self.permissions.allows(self.actor.role, rt, Action::Export) {
                out.push(r.clone());
            } else if refused.insert(rt.to_owned()) {
                let mut d = self
                    .actor
                    .event("denied", "denied", None, Some(reference.clone()));
                d.detail = Some(format!("export {rt}"));
                self.store.audit_append(&[d])?;
            }
        }
        let mut e = self.actor.event("export", "success", None, Some(reference));
        e.detail = Some(format!("{what}: {} records", out.len()));
        self.store.audit_append(&[e])?;
        Ok(out)
    }

    /// Entries of this node's audit trail (administrators and auditors only; the read is
    /// itself audited, and a refusal too).
    pub fn audit_list(
        &self,
        filter: &store::AuditFilter,
    ) -> Result<Vec<store::AuditEntry>, FhirError> {
        if !self.actor.role.reads_audit() {
            let mut e = self
                .actor
                .event("denied", "denied", None, filter.patient.clone());
            e.detail = Some("audit trail".into());
            self.store.audit_append(&[e])?;
            return Err(FhirError::one(
                403,
                IssueCode::Forbidden,
                "AuditEvent",
                "the audit trail is for administrators and auditors",
            ));
        }
        let entries = self.store.audit_list(filter)?;
        let mut e = self
            .actor
            .event("audit_view", "success", None, filter.patient.clone());
        e.detail = Some(format!("entries={}", entries.len()));
        self.store.audit_append(&[e])?;
        Ok(entries)
    }

    /// The patients (`Patient/{id}`) with a conflicted record in this database: for the
    /// patient list's "conflicts" filter. Names patients only; what is shown of them is read
    /// (and audited) by the search that lists them.
    pub fn patients_with_conflicts(&self) -> Result<std::collections::BTreeSet<String>, FhirError> {
        let mut out = std::collections::BTreeSet::new();
        for id in self.conflicted(0)? {
            let rec = id.as_str();
            let patient = if rec.starts_with("Patient/") {
                Some(rec.to_owned())
            } else {
                self.store
                    .get(&self.db, &id, &GetOptions::default())
                    .ok()
                    .and_then(|d| patient_of(&d.to_json()))
            };
            out.extend(patient);
        }
        Ok(out)
    }

    /// Whether the record `rt/id` has more than one live version.
    pub fn in_conflict(&self, rt: &str, id: &str) -> bool {
        doc_id(rt, id)
            .ok()
            .and_then(|d| self.store.rev_tree(&self.db, &d).ok())
            .is_some_and(|t| !t.conflicts().is_empty())
    }

    /// The patients whose records this user created or changed on this device (their own
    /// audit entries, newest `limit`): the patient list's "mine" filter.
    pub fn patients_i_changed(
        &self,
        limit: usize,
    ) -> Result<std::collections::BTreeSet<String>, FhirError> {
        Ok(self
            .store
            .audit_list(&store::AuditFilter {
                user: Some(self.actor.user.clone()),
                newest: Some(limit),
                ..Default::default()
            })?
            .into_iter()
            .filter(|e| matches!(e.event.action.as_str(), "create" | "update"))
            .filter_map(|e| e.event.patient)
            .collect())
    }

    /// Writes the database file's pending log into it (benchmarks, before measuring size).
    pub fn checkpoint(&self) -> Result<(), FhirError> {
        Ok(self.store.checkpoint()?)
    }

    /// The record types of a patient's chart the caller's role may not read (none under a
    /// break-glass grant for that patient).
    pub fn hidden_types(&self, glass: bool) -> Vec<&'static str> {
        if glass {
            return Vec::new();
        }
        fhir::schema::RESOURCES
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| {
                *t != "Patient" && !self.permissions.allows(self.actor.role, t, Action::Read)
            })
            .collect()
    }

    /// Upcoming medication reminders for a patient: `(MedicationRequest id, due time)` for
    /// the next `per_request` doses of each active request, soonest first.
    pub fn reminders(
        &self,
        patient: &str,
        now: i64,
        per_request: usize,
        utc_offset: i64,
    ) -> Result<Vec<(String, i64)>, FhirError> {
        self.allow(
            "MedicationRequest",
            Action::Read,
            None,
            Some(format!("Patient/{patient}")),
        )?;
        let query = store::SearchQuery {
            id_prefix: Some("MedicationRequest/".into()),
            filters: vec![
                store::Filter::Eq {
                    param: "patient".into(),
                    value: format!("Patient/{patient}"),
                },
                store::Filter::Eq {
                    param: "MedicationRequest.status".into(),
                    value: "active".into(),
                },
            ],
            sort: Vec::new(),
            limit: 1000,
            offset: 0,
        };
        let mut out = Vec::new();
        for id in self.store.search(&self.db, &query)?.ids {
            let doc = self.store.get(&self.db, &id, &GetOptions::default())?;
            let resource = Value::Object(doc.body.clone());
            self.audit_reads("read", &[&resource])?;
            let Ok(req) =
                serde_json::from_value::<fhir::models::MedicationRequest>(Value::Object(doc.body))
            else {
                continue;
            };
            let rid = id
                .as_str()
                .trim_start_matches("MedicationRequest/")
                .to_owned();
            for t in fhir::reminders::next_due(&req, now, per_request, utc_offset) {
                out.push((rid.clone(), t));
            }
        }
        out.sort_by_key(|(_, t)| *t);
        Ok(out)
    }
}
