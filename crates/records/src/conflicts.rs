//! Conflicts that never lose clinical data (docs/architecture.md §4, docs/adr/0014-conflict-policies.md).
//!
//! Replication keeps every concurrent edit as a conflicting leaf revision. This module resolves
//! them by a policy per resource type, deterministically: the resolution is a pure function of
//! the conflicting revisions (and their common ancestor), written as content-derived revisions,
//! so two replicas resolving the same conflict independently write identical revisions and
//! create no new conflict. What no policy may decide goes to the conflict inbox for a person.
//!
//! | policy | resource types (default) | resolution |
//! |---|---|---|
//! | `field-merge` | Patient, RelatedPerson, AllergyIntolerance, Condition | three-way merge of top-level elements against the common ancestor; the same element changed on both sides is left for a person |
//! | `keep-both` | Observation | each losing version becomes its own Observation (id `{id}-{8 hex}`), linked to the original by an extension |
//! | `last-writer-wins` | Task, Communication | the version with the latest hybrid logical clock (stamped in `meta` at every write) |
//! | `manual` | DocumentReference, Consent, everything else | never automatic |

use std::collections::{BTreeMap, BTreeSet};

use revtree::{Rev, RevTree};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use store::{DocId, DocWrite, OpenRevs, Store};

use crate::audit::{Actor, patient_of};
use crate::{FhirError, IssueCode, Records};

/// The extension that carries a write's hybrid logical clock in `meta`.
pub const HLC_URL: &str = "https://hearth.invalid/fhir/StructureDefinition/hlc";
/// The extension on a kept-both Observation naming the Observation it conflicted with.
pub const CONFLICT_OF_URL: &str = "https://hearth.invalid/fhir/StructureDefinition/conflict-of";

/// How conflicts of one resource type are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Three-way merge of top-level elements.
    FieldMerge,
    /// Every version kept as its own resource.
    KeepBoth,
    /// The latest hybrid logical clock wins.
    LastWriterWins,
    /// A person decides.
    Manual,
}

impl Policy {
    /// The policy's name, as audited.
    pub fn name(self) -> &'static str {
        match self {
            Policy::FieldMerge => "field-merge",
            Policy::KeepBoth => "keep-both",
            Policy::LastWriterWins => "last-writer-wins",
            Policy::Manual => "manual",
        }
    }

    /// The default policy of a resource type.
    pub fn default_for(resource_type: &str) -> Policy {
        match resource_type {
            "Patient" | "RelatedPerson" | "AllergyIntolerance" | "Condition" => Policy::FieldMerge,
            "Observation" => Policy::KeepBoth,
            "Task" | "Communication" => Policy::LastWriterWins,
            _ => Policy::Manual,
        }
    }
}

/// Policies per resource type: the defaults, overridden by the node's stored merge policies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// Overrides by resource type.
    #[serde(default)]
    pub overrides: BTreeMap<String, Policy>,
}

impl Policies {
    /// The policy for a resource type. Clinical notes and consents are never automatic,
    /// whatever is configured.
    pub fn for_type(&self, rt: &str) -> Policy {
        if matches!(rt, "DocumentReference" | "Consent") {
            return Policy::Manual;
        }
        self.overrides
            .get(rt)
            .copied()
            .unwrap_or_else(|| Policy::default_for(rt))
    }
}

/// One version of a conflicted resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Version {
    /// Its revision.
    pub rev: String,
    /// Whether it is the current winner.
    pub winner: bool,
    /// The resource.
    pub resource: Value,
}

/// A top-level element that differs between versions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    /// Element name.
    pub field: String,
    /// Its value in the common ancestor (absent: `null`).
    pub ancestor: Value,
    /// Its value in each version, by revision.
    pub versions: BTreeMap<String, Value>,
}

/// An unresolved conflict, as the inbox shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// `Type/id`.
    pub id: String,
    /// The resource type.
    pub resource_type: String,
    /// The patient whose record it is, if any.
    pub patient: Option<String>,
    /// The policy that applies.
    pub policy: Policy,
    /// The conflicting versions (winner first).
    pub versions: Vec<Version>,
    /// Their common ancestor, when it is stored.
    pub ancestor: Option<Value>,
    /// Elements that differ, with the ancestor's value.
    pub diff: Vec<FieldDiff>,
}

/// What an automatic pass did to one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// `Type/id`.
    pub id: String,
    /// The policy applied.
    pub policy: Policy,
    /// The revision now current (`None` when it was left for a person).
    pub rev: Option<String>,
    /// New resources made (kept-both copies).
    pub created: Vec<String>,
    /// Why it was left for a person, if it was.
    pub unresolved: Option<String>,
}

/// A leaf's stored JSON body.
fn leaf_bodies(
    store: &Store,
    db: &str,
    id: &DocId,
    revs: &[Rev],
) -> Result<Vec<Option<Value>>, FhirError> {
    Ok(store
        .open_revs_raw(db, id, &OpenRevs::Revs(revs.to_vec()), false, false)?
        .into_iter()
        .map(|r| {
            r.ok()
                .and_then(|raw| serde_json::from_slice(&raw.body).ok())
        })
        .collect())
}

/// The nearest common ancestor of two revisions of a tree.
fn common_ancestor(tree: &RevTree, a: &Rev, b: &Rev) -> Option<Rev> {
    let pa = tree.path_to(a)?;
    let pb: BTreeSet<Rev> = tree.path_to(b)?.into_iter().collect();
    pa.into_iter().find(|r| pb.contains(r))
}

/// The HLC stamped in a resource's `meta`, if any.
pub fn hlc_of(resource: &Value) -> Option<String> {
    resource
        .pointer("/meta/extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(HLC_URL))?
        .get("valueString")?
        .as_str()
        .map(str::to_owned)
}

/// The next HLC for a write whose previous version carried `parent`: never behind the wall
/// clock, always after the parent (so an edit made after seeing a version wins over it, even
/// from a device whose clock runs late). Format `{ms:013}-{counter:04}-{device}`, ordered as
/// text.
pub fn next_hlc(now_ms: i64, parent: Option<&str>, device: &str) -> String {
    let (pt, pc) = parent
        .and_then(|p| {
            let mut it = p.splitn(3, '-');
            Some((
                it.next()?.parse::<i64>().ok()?,
                it.next()?.parse::<u32>().ok()?,
            ))
        })
        .unwrap_or((0, 0));
    let (t, c) = if now_ms > pt {
        (now_ms, 0)
    } else {
        (pt, pc + 1)
    };
    format!("{t:013}-{c:04}-{device}")
}

/// Sets the HLC extension in a resource's `meta`.
pub(crate) fn stamp_hlc(resource: &mut Value, hlc: &str) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    let ext = m.entry("extension").or_insert_with(|| json!([]));
    if let Some(list) = ext.as_array_mut() {
        list.retain(|e| e.get("url").and_then(Value::as_str) != Some(HLC_URL));
        list.push(json!({"url": HLC_URL, "valueString": hlc}));
    }
}

/// Elements compared in a merge: everything but `meta` (bookkeeping, merged separately).
fn element_names<'a>(maps: &[&'a Map<String, Value>]) -> BTreeSet<&'a str> {
    maps.iter()
        .flat_map(|m| m.keys().map(String::as_str))
        .filter(|k| *k != "meta")
        .collect()
}

/// Three-way merge of top-level elements; `Err(fields)` names the elements both sides changed
/// differently.
fn merge3(
    ancestor: &Map<String, Value>,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut out = Map::new();
    let mut clashes = Vec::new();
    for k in element_names(&[ancestor, a, b]) {
        let (o, x, y) = (ancestor.get(k), a.get(k), b.get(k));
        let pick = if x == y {
            x
        } else if x == o {
            y
        } else if y == o {
            x
        } else {
            clashes.push(k.to_owned());
            continue;
        };
        if let Some(v) = pick {
            out.insert(k.to_owned(), v.clone());
        }
    }
    if !clashes.is_empty() {
        return Err(clashes);
    }
    // meta: the later lastUpdated and HLC of the two (deterministic: a function of both).
    let later = |p: &str| {
        let va = a.get("meta").and_then(|m| m.pointer(p)).cloned();
        let vb = b.get("meta").and_then(|m| m.pointer(p)).cloned();
        match (va, vb) {
            (Some(x), Some(y)) => Some(if x.as_str() >= y.as_str() { x } else { y }),
            (x, y) => x.or(y),
        }
    };
    let mut meta = a
        .get("meta")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(lu) = later("/lastUpdated") {
        meta.insert("lastUpdated".into(), lu);
    }
    let ha = hlc_of(&Value::Object(a.clone()));
    let hb = hlc_of(&Value::Object(b.clone()));
    let mut merged = Value::Object(out);
    if !meta.is_empty() {
        merged["meta"] = Value::Object(meta);
    }
    if let Some(h) = ha.max(hb) {
        stamp_hlc(&mut merged, &h);
    }
    Ok(merged.as_object().cloned().unwrap_or_default())
}

impl Records {
    /// The merge policies in force.
    pub fn merge_policies(&self) -> Result<Policies, FhirError> {
        match self
            .store
            .get_policy(&self.db, store::PolicyPart::MergePolicies)?
        {
            Some(v) => serde_json::from_value(v).map_err(|_| {
                FhirError::one(
                    500,
                    IssueCode::Exception,
                    "Policies",
                    "the stored merge policies are not valid",
                )
            }),
            None => Ok(Policies::default()),
        }
    }

    /// Sets the policy of a resource type (administrators). Notes and consents stay manual.
    pub fn set_merge_policy(&self, rt: &str, policy: Policy) -> Result<Policies, FhirError> {
        if !self.actor.role.is_admin() {
            return Err(FhirError::one(
                403,
                IssueCode::Forbidden,
                "Policies",
                "only an administrator can change merge policies",
            ));
        }
        if fhir::schema::resource(rt).is_none() {
            return Err(FhirError::one(
                400,
                IssueCode::NotSupported,
                "Policies",
                &format!("resource type '{rt}' is not supported by Hearth"),
            ));
        }
        if matches!(rt, "DocumentReference" | "Consent") && policy != Policy::Manual {
            return Err(FhirError::one(
                400,
                IssueCode::Invalid,
                "Policies",
                "clinical notes and consents are never resolved automatically",
            ));
        }
        let mut p = self.merge_policies()?;
        let before = p.for_type(rt);
        p.overrides.insert(rt.to_owned(), policy);
        let value = serde_json::to_value(&p).unwrap_or(Value::Null);
        let mut e = self.actor.event(
            "policy_change",
            "success",
            Some(format!("merge-policy/{rt}")),
            None,
        );
        e.detail = Some(format!(
            "before: {}, after: {}",
            before.name(),
            policy.name()
        ));
        self.store
            .put_policy(&self.db, store::PolicyPart::MergePolicies, &value, &e)?;
        Ok(p)
    }

    /// Documents with more than one live leaf, among the changes after `since` (0: all).
    pub fn conflicted(&self, since: u64) -> Result<Vec<DocId>, FhirError> {
        Ok(self.store.conflicted(&self.db, since)?)
    }

    /// The unresolved conflicts, optionally of one patient or one resource type (the inbox).
    /// Listing is audited as a read of each conflicted record.
    pub fn conflicts(
        &self,
        patient: Option<&str>,
        resource_type: Option<&str>,
    ) -> Result<Vec<Conflict>, FhirError> {
        let mut out = Vec::new();
        for id in self.conflicted(0)? {
            let c = self.conflict_unaudited(&id)?;
            if patient.is_some_and(|p| {
                c.patient.as_deref() != Some(p)
                    && c.patient.as_deref() != Some(&format!("Patient/{p}"))
            }) || resource_type.is_some_and(|t| t != c.resource_type)
            {
                continue;
            }
            out.push(c);
        }
        for c in &out {
            let (rt, id) = c.id.split_once('/').unwrap_or(("", ""));
            self.allow(
                rt,
                crate::Action::Read,
                Some(format!("{rt}/{id}")),
                c.patient.clone(),
            )?;
        }
        let shown: Vec<&Value> = out
            .iter()
            .flat_map(|c| c.versions.iter().map(|v| &v.resource))
            .collect();
        self.audit_reads("read", &shown)?;
        Ok(out)
    }

    /// One conflict with its versions, common ancestor and field-level diff.
    pub fn conflict(&self, reference: &str) -> Result<Conflict, FhirError> {
        let id = DocId::parse(reference)?;
        let c = self.conflict_unaudited(&id)?;
        let (rt, rid) = reference.split_once('/').unwrap_or(("", ""));
        self.allow(
            rt,
            crate::Action::Read,
            Some(format!("{rt}/{rid}")),
            c.patient.clone(),
        )?;
        let shown: Vec<&Value> = c.versions.iter().map(|v| &v.resource).collect();
        self.audit_reads("read", &shown)?;
        Ok(c)
    }

    fn conflict_unaudited(&self, id: &DocId) -> Result<Conflict, FhirError> {
        let tree = self.store.rev_tree(&self.db, id)?;
        let winner = tree.winner().ok_or_else(|| {
            FhirError::one(404, IssueCode::NotFound, id.as_str(), "no such resource")
        })?;
        let mut revs = vec![winner.rev.clone()];
        revs.extend(tree.conflicts());
        if revs.len() < 2 {
            return Err(FhirError::one(
                404,
                IssueCode::NotFound,
                id.as_str(),
                "this resource has no unresolved conflict",
            ));
        }
        let bodies = leaf_bodies(&self.store, &self.db, id, &revs)?;
        let versions: Vec<Version> = revs
            .iter()
            .zip(bodies)
            .map(|(r, b)| Version {
                rev: r.to_string(),
                winner: *r == winner.rev,
                resource: b.unwrap_or(Value::Null),
            })
            .collect();
        let ancestor_rev = revs[1..]
            .iter()
            .try_fold(winner.rev.clone(), |a, r| common_ancestor(&tree, &a, r));
        let ancestor = match &ancestor_rev {
            Some(r) => leaf_bodies(&self.store, &self.db, id, std::slice::from_ref(r))?
                .pop()
                .flatten(),
            None => None,
        };
        let maps: Vec<Map<String, Value>> = versions
            .iter()
            .filter_map(|v| v.resource.as_object().cloned())
            .collect();
        let anc_map = ancestor
            .as_ref()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut refs: Vec<&Map<String, Value>> = maps.iter().collect();
        refs.push(&anc_map);
        let diff = element_names(&refs)
            .into_iter()
            .filter(|k| {
                let first = maps.first().and_then(|m| m.get(*k));
                maps.iter().any(|m| m.get(*k) != first)
            })
            .map(|k| FieldDiff {
                field: k.to_owned(),
                ancestor: anc_map.get(k).cloned().unwrap_or(Value::Null),
                versions: versions
                    .iter()
                    .map(|v| {
                        (
                            v.rev.clone(),
                            v.resource.get(k).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect(),
            })
            .collect();
        let rt = id.as_str().split('/').next().unwrap_or("").to_owned();
        let patient = versions.iter().find_map(|v| patient_of(&v.resource));
        Ok(Conflict {
            id: id.as_str().to_owned(),
            policy: self.merge_policies()?.for_type(&rt),
            resource_type: rt,
            patient,
            versions,
            ancestor,
            diff,
        })
    }

    /// A person resolves a conflict: keep version `keep` as it is, or save `merged` (a resource
    /// built from the versions). The other versions are closed. The resolution is written as
    /// the winner's child, so it is the same revision wherever the same choice is made.
    pub fn resolve_conflict(
        &self,
        reference: &str,
        keep: Option<&str>,
        merged: Option<Value>,
    ) -> Result<Resolution, FhirError> {
        let id = DocId::parse(reference)?;
        let c = self.conflict_unaudited(&id)?;
        let (rt, rid) = reference.split_once('/').unwrap_or(("", ""));
        self.allow(
            rt,
            crate::Action::Update,
            Some(reference.to_owned()),
            c.patient.clone(),
        )?;
        let body = match (keep, merged) {
            (Some(k), None) => c
                .versions
                .iter()
                .find(|v| v.rev == k)
                .map(|v| v.resource.clone())
                .ok_or_else(|| {
                    FhirError::one(
                        400,
                        IssueCode::Value,
                        reference,
                        "that revision is not one of the conflicting versions",
                    )
                })?,
            (None, Some(mut m)) => {
                if let Some(o) = m.as_object_mut() {
                    o.insert("id".into(), Value::String(rid.to_owned()));
                    o.insert("resourceType".into(), Value::String(rt.to_owned()));
                    if let Some(meta) = o.get_mut("meta").and_then(Value::as_object_mut) {
                        meta.shift_remove("versionId");
                    }
                }
                self.check(&m, &[])?;
                m
            }
            _ => {
                return Err(FhirError::one(
                    400,
                    IssueCode::Required,
                    reference,
                    "choose one version to keep, or give a merged resource",
                ));
            }
        };
        let winner = c
            .versions
            .iter()
            .find(|v| v.winner)
            .map(|v| v.rev.clone())
            .unwrap_or_default();
        let losers: Vec<String> = c
            .versions
            .iter()
            .filter(|v| !v.winner)
            .map(|v| v.rev.clone())
            .collect();
        let rev = self.write_resolution(&id, &winner, &losers, Some(body), "manual", c.patient)?;
        Ok(Resolution {
            id: reference.to_owned(),
            policy: Policy::Manual,
            rev: Some(rev),
            created: Vec::new(),
            unresolved: None,
        })
    }

    /// Writes a resolution in one transaction: `body` (if any) as the child of `winner` unless
    /// it equals the winner's, then a tombstone on each loser; one audit entry naming the
    /// policy.
    fn write_resolution(
        &self,
        id: &DocId,
        winner: &str,
        losers: &[String],
        body: Option<Value>,
        policy: &str,
        patient: Option<String>,
    ) -> Result<String, FhirError> {
        let parse = |r: &str| {
            r.parse::<Rev>().map_err(|_| {
                FhirError::one(
                    500,
                    IssueCode::Exception,
                    id.as_str(),
                    "a stored revision is malformed",
                )
            })
        };
        let winner_rev = parse(winner)?;
        let mut writes = Vec::new();
        let current_winner =
            leaf_bodies(&self.store, &self.db, id, std::slice::from_ref(&winner_rev))?
                .pop()
                .flatten();
        if let Some(b) = body.filter(|b| Some(b) != current_winner.as_ref()) {
            let Value::Object(map) = b else {
                return Err(FhirError::one(
                    400,
                    IssueCode::Structure,
                    id.as_str(),
                    "a resource must be a JSON object",
                ));
            };
            writes.push(DocWrite::new(id.clone(), Some(winner_rev.clone()), map));
        }
        for l in losers {
            writes.push(DocWrite::deletion(id.clone(), parse(l)?));
        }
        let actor: &Actor = &self.actor;
        let detail = format!("policy={policy} closed={}", losers.join(","));
        let results = self
            .store
            .bulk_docs_audited(&self.db, writes, true, |res| {
                let mut e = actor.event(
                    "conflict_resolve",
                    if res.iter().all(Result::is_ok) {
                        "success"
                    } else {
                        "failure"
                    },
                    Some(id.as_str().to_owned()),
                    patient.clone(),
                );
                e.detail = Some(detail.clone());
                vec![e]
            })?;
        for r in &results {
            if let Err(e) = r {
                return Err(match e {
                    store::Error::Conflict => FhirError::one(
                        409,
                        IssueCode::Conflict,
                        id.as_str(),
                        "the conflict changed meanwhile; look again",
                    ),
                    other => {
                        FhirError::one(500, IssueCode::Exception, id.as_str(), &other.to_string())
                    }
                });
            }
        }
        let tree = self.store.rev_tree(&self.db, id)?;
        Ok(tree.winner().map(|w| w.rev.to_string()).unwrap_or_default())
    }

    /// Resolves what the policies allow among these documents (for example those a sync just
    /// changed); leaves the rest in the inbox. Deterministic: replicas that resolve the same
    /// conflict write the same revisions.
    pub fn auto_resolve(&self, ids: &[DocId]) -> Result<Vec<Resolution>, FhirError> {
        let policies = self.merge_policies()?;
        let mut out = Vec::new();
        for id in ids {
            let c = match self.conflict_unaudited(id) {
                Ok(c) => c,
                Err(e) if e.status == 404 => continue,
                Err(e) => return Err(e),
            };
            let policy = policies.for_type(&c.resource_type);
            let winner = c.versions[0].clone();
            let losers: Vec<&Version> = c.versions[1..].iter().collect();
            let loser_revs: Vec<String> = losers.iter().map(|v| v.rev.clone()).collect();
            let mut res = Resolution {
                id: c.id.clone(),
                policy,
                rev: None,
                created: Vec::new(),
                unresolved: None,
            };
            match policy {
                Policy::Manual => {
                    res.unresolved = Some("this resource type is resolved by a person".into())
                }
                Policy::FieldMerge => {
                    let tree = self.store.rev_tree(&self.db, id)?;
                    let winner_rev: Rev = winner.rev.parse().map_err(|_| {
                        FhirError::one(500, IssueCode::Exception, id.as_str(), "bad revision")
                    })?;
                    let mut merged = winner.resource.as_object().cloned().unwrap_or_default();
                    let mut failed = None;
                    for l in &losers {
                        let lr: Rev = l.rev.parse().map_err(|_| {
                            FhirError::one(500, IssueCode::Exception, id.as_str(), "bad revision")
                        })?;
                        let anc = common_ancestor(&tree, &winner_rev, &lr)
                            .map(|a| leaf_bodies(&self.store, &self.db, id, &[a]))
                            .transpose()?
                            .and_then(|mut v| v.pop().flatten());
                        let Some(Value::Object(anc)) = anc else {
                            failed = Some("the common ancestor is not stored here".to_owned());
                            break;
                        };
                        let theirs = l.resource.as_object().cloned().unwrap_or_default();
                        match merge3(&anc, &merged, &theirs) {
                            Ok(m) => merged = m,
                            Err(fields) => {
                                failed = Some(format!("both sides changed: {}", fields.join(", ")));
                                break;
                            }
                        }
                    }
                    match failed {
                        Some(why) => res.unresolved = Some(why),
                        None => {
                            res.rev = Some(self.write_resolution(
                                id,
                                &winner.rev,
                                &loser_revs,
                                Some(Value::Object(merged)),
                                policy.name(),
                                c.patient.clone(),
                            )?)
                        }
                    }
                }
                Policy::LastWriterWins => {
                    let clocks: Option<Vec<(String, &Version)>> = c
                        .versions
                        .iter()
                        .map(|v| hlc_of(&v.resource).map(|h| (h, v)))
                        .collect();
                    match clocks {
                        None => {
                            res.unresolved =
                                Some("a version carries no hybrid logical clock".into())
                        }
                        Some(mut cs) => {
                            cs.sort_by(|a, b| (&a.0, &a.1.rev).cmp(&(&b.0, &b.1.rev)));
                            let latest = cs.last().map(|(_, v)| v.resource.clone());
                            res.rev = Some(self.write_resolution(
                                id,
                                &winner.rev,
                                &loser_revs,
                                latest,
                                policy.name(),
                                c.patient.clone(),
                            )?);
                        }
                    }
                }
                Policy::KeepBoth => {
                    let (rt, rid) = c.id.split_once('/').unwrap_or(("", ""));
                    for l in &losers {
                        let hash = l.rev.split_once('-').map_or("", |(_, h)| h);
                        let new_id = format!("{rid}-{}", &hash[..hash.len().min(8)]);
                        let mut copy = l.resource.clone();
                        copy["id"] = Value::String(new_id.clone());
                        let ext = copy
                            .as_object_mut()
                            .map(|o| o.entry("extension").or_insert_with(|| json!([])));
                        if let Some(Value::Array(list)) = ext {
                            list.push(json!({"url": CONFLICT_OF_URL, "valueReference": {"reference": c.id}}));
                        }
                        let copy_id = DocId::parse(&format!("{rt}/{new_id}"))?;
                        let body = copy.as_object().cloned().unwrap_or_default();
                        let actor = &self.actor;
                        let patient = c.patient.clone();
                        let reference = copy_id.as_str().to_owned();
                        let written = self.store.bulk_docs_audited(
                            &self.db,
                            vec![DocWrite::new(copy_id.clone(), None, body)],
                            true,
                            |_| {
                                let mut e = actor.event(
                                    "create",
                                    "success",
                                    Some(reference.clone()),
                                    patient.clone(),
                                );
                                e.detail = Some(format!("policy=keep-both copy of {}", c.id));
                                vec![e]
                            },
                        )?;
                        match written.into_iter().next() {
                            // Another replica made the same copy already: identical, nothing to do.
                            Some(Ok(_)) | Some(Err(store::Error::Conflict)) => {
                                res.created.push(copy_id.as_str().to_owned())
                            }
                            Some(Err(e)) => {
                                return Err(FhirError::one(
                                    500,
                                    IssueCode::Exception,
                                    copy_id.as_str(),
                                    &e.to_string(),
                                ));
                            }
                            None => {}
                        }
                    }
                    res.rev = Some(self.write_resolution(
                        id,
                        &winner.rev,
                        &loser_revs,
                        None,
                        policy.name(),
                        c.patient.clone(),
                    )?);
                }
            }
            out.push(res);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn three_way_merge_takes_each_sides_changes() {
        let anc = m(json!({"name": "A", "phone": "1", "city": "X"}));
        let a = m(json!({"name": "A", "phone": "2", "city": "X"}));
        let b = m(json!({"name": "A", "phone": "1", "city": "Y", "email": "e"}));
        assert_eq!(
            merge3(&anc, &a, &b).unwrap(),
            m(json!({"name": "A", "phone": "2", "city": "Y", "email": "e"}))
        );
        let c = m(json!({"name": "A", "phone": "3", "city": "X"}));
        assert_eq!(merge3(&anc, &a, &c).unwrap_err(), vec!["phone".to_owned()]);
        // A deletion on one side is a change.
        let d = m(json!({"name": "A", "phone": "1"}));
        assert_eq!(
            merge3(&anc, &a, &d).unwrap(),
            m(json!({"name": "A", "phone": "2"}))
        );
    }

    #[test]
    fn hybrid_logical_clock_never_goes_back() {
        let p = next_hlc(5_000, None, "dev1");
        assert_eq!(p, "0000000005000-0000-dev1");
        // A device whose clock is behind still writes after what it saw.
        let q = next_hlc(1_000, Some(&p), "dev2");
        assert_eq!(q, "0000000005000-0001-dev2");
        assert!(q > p);
        assert!(next_hlc(6_000, Some(&q), "dev1") > q);
    }

    #[test]
    fn notes_and_consents_stay_manual() {
        let mut p = Policies::default();
        p.overrides.insert("Consent".into(), Policy::LastWriterWins);
        assert_eq!(p.for_type("Consent"), Policy::Manual);
        assert_eq!(p.for_type("DocumentReference"), Policy::Manual);
        assert_eq!(p.for_type("Patient"), Policy::FieldMerge);
        assert_eq!(p.for_type("Observation"), Policy::KeepBoth);
        assert_eq!(p.for_type("Task"), Policy::LastWriterWins);
        assert_eq!(p.for_type("Encounter"), Policy::Manual);
    }
}
