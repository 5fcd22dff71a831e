//! Document, attachment, `_local` and design-document endpoints.

use std::collections::BTreeMap;

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use revtree::Rev;
use serde_json::{Map, Value, json};
use store::{AttachmentInput, DocId, DocWrite, Document, GetOptions, OpenRev, OpenRevs, Store};

use crate::db::{check_db, json_body, store_doc_error};
use crate::error::{CouchError, CouchResult};
use crate::params::Params;
use crate::{Access, HubState, Session, blocking, json};

/// A fresh document id: 32 random hex digits, as CouchDB's `random` uuids.
pub(crate) fn new_doc_id() -> CouchResult<String> {
    vault::random_bytes::<16>()
        .map(hex::encode)
        .map_err(|_| CouchError::bad_request("the system random number generator failed"))
}

/// The JSON of a revision for a response; with `attachments`, attachment bodies inline
/// (base64), except those not changed since one of `atts_since`.
pub(crate) fn doc_json(
    store: &Store,
    db: &str,
    doc: &Document,
    attachments: bool,
    atts_since: Option<&[Rev]>,
) -> CouchResult<Value> {
    let mut v = doc.to_json();
    if !attachments || doc.attachments.is_empty() {
        return Ok(v);
    }
    // The newest revision of atts_since that is an ancestor of this one: attachments with
    // revpos at or before it are already known to the reader.
    let known = match atts_since {
        Some(since) if !since.is_empty() => {
            let path = match &doc.revisions {
                Some(r) => r.to_path().unwrap_or_default(),
                None => store
                    .rev_tree(db, &doc.id)?
                    .path_to(&doc.rev)
                    .unwrap_or_default(),
            };
            since
                .iter()
                .filter(|r| path.contains(r))
                .map(Rev::generation)
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    };
    if let Some(Value::Object(atts)) = v.get_mut("_attachments") {
        for (name, info) in &doc.attachments {
            if info.revpos <= known {
                continue;
            }
            let data = store.attachment_data(db, &info.digest)?;
            atts.insert(
                name.clone(),
                json!({
                    "content_type": info.content_type,
                    "digest": info.digest,
                    "revpos": info.revpos,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                }),
            );
        }
    }
    Ok(v)
}

/// The `_attachments` JSON of a stored revision for a response: stubs, or with `attachments`
/// the bodies inline except those not changed since one of `atts_since`. `None` when the
/// revision has no attachments.
pub(crate) fn attachments_json(
    store: &Store,
    db: &str,
    raw: &store::RawRevision,
    attachments: bool,
    atts_since: Option<&[Rev]>,
) -> CouchResult<Option<Vec<u8>>> {
    if raw.attachments.is_empty() {
        return Ok(None);
    }
    if !attachments {
        return Ok(Some(store::stubs_json(&raw.attachments)));
    }
    let doc = Document {
        id: raw.id.clone(),
        rev: raw.rev.clone(),
        deleted: raw.deleted,
        body: Map::new(),
        attachments: raw.attachments.clone(),
        conflicts: None,
        deleted_conflicts: None,
        revisions: raw.revisions.clone(),
    };
    let v = doc_json(store, db, &doc, true, atts_since)?;
    Ok(Some(
        serde_json::to_vec(&v["_attachments"]).unwrap_or_default(),
    ))
}

fn etag(rev: &Rev) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{rev}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

fn parse_rev(s: &str) -> CouchResult<Rev> {
    s.parse::<Rev>()
        .map_err(|_| CouchError::bad_request(format!("Invalid rev format: {s:?}")))
}

/// The revision a request names: `?rev=` or `If-Match`.
fn rev_of(q: &Params, headers: &HeaderMap) -> CouchResult<Option<Rev>> {
    if let Some(r) = q.get("rev") {
        return parse_rev(r).map(Some);
    }
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(r) => parse_rev(r.trim_matches('"')).map(Some),
        None => Ok(None),
    }
}

fn parse_docid(id: &str) -> CouchResult<DocId> {
    DocId::parse(id).map_err(|e| match e {
        store::Error::BadDocId(r) => CouchError::new(StatusCode::BAD_REQUEST, "illegal_docid", r),
        other => other.into(),
    })
}

fn wants_multipart(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("multipart/mixed") && !accept.contains("application/json")
}

async fn read_doc(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    id: String,
    q: Params,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let docid = parse_docid(&id)?;
    let meta = q.bool("meta", false)?;
    let opts = GetOptions {
        rev: q.get("rev").map(parse_rev).transpose()?,
        conflicts: q.bool("conflicts", false)? || meta,
        deleted_conflicts: q.bool("deleted_conflicts", false)? || meta,
        revs: q.bool("revs", false)?,
    };
    let revs_info = q.bool("revs_info", false)? || meta;
    let latest = q.bool("latest", false)?;
    let attachments = q.bool("attachments", false)?;
    let atts_since: Option<Vec<Rev>> = match q.json::<Vec<String>>("atts_since")? {
        Some(list) => Some(
            list.iter()
                .map(|s| parse_rev(s))
                .collect::<CouchResult<_>>()?,
        ),
        None => None,
    };
    let open_revs = match q.get("open_revs") {
        None => None,
        Some("all") => Some(OpenRevs::All),
        Some(_) => {
            let list: Vec<String> = q.json("open_revs")?.unwrap_or_default();
            Some(OpenRevs::Revs(
                list.iter()
                    .map(|s| parse_rev(s))
                    .collect::<CouchResult<_>>()?,
            ))
        }
    };
    let multipart = wants_multipart(&headers);
    blocking(move || {
        let store = &hub.store;
        if !gate_p.access(store, &db)?.may_read(docid.as_str()) {
            hub.denied(&p, &db, docid.as_str(), "read through the couchdb api")?;
            return Err(Access::forbidden(false));
        }
        if let Some(which) = open_revs {
            let found = store.open_revs(&db, &docid, &which, opts.revs, latest)?;
            let mut out = Vec::with_capacity(found.len());
            let mut sent = crate::Disclosed::default();
            for o in found {
                match o {
                    OpenRev::Ok(d) => {
                        let doc = doc_json(store, &db, &d, attachments, atts_since.as_deref())?;
                        sent.note_value(docid.as_str(), &doc);
                        out.push(json!({"ok": doc}));
                    }
                    OpenRev::Missing(r) => out.push(json!({"missing": r.to_string()})),
                }
            }
            hub.disclosed(&p, "read", &format!("open_revs db={db}"), &sent)?;
            if multipart {
                return Ok(crate::multipart::mixed_response(&out));
            }
            return Ok(json(StatusCode::OK, Value::Array(out)));
        }
        let mut opts = opts;
        if latest && let Some(rev) = &opts.rev {
            // `rev` with `latest=true`: the leaf that descends from it (CouchDB answers the
            // newest leaf, for a client holding an old revision).
            let leaf = store
                .open_revs(&db, &docid, &OpenRevs::Revs(vec![rev.clone()]), false, true)?
                .into_iter()
                .find_map(|o| match o {
                    OpenRev::Ok(d) => Some(d.rev),
                    OpenRev::Missing(_) => None,
                });
            if let Some(leaf) = leaf {
                opts.rev = Some(leaf);
            }
        }
        let d = store.get(&db, &docid, &opts)?;
        let mut v = doc_json(store, &db, &d, attachments, atts_since.as_deref())?;
        if revs_info {
            let info = store.revs_info(&db, &docid, &d.rev)?;
            v["_revs_info"] = info
                .into_iter()
                .map(|(r, s)| {
                    json!({"rev": r.to_string(), "status": match s {
                        store::RevStatus::Available => "available",
                        store::RevStatus::Missing => "missing",
                        store::RevStatus::Deleted => "deleted",
                    }})
                })
                .collect();
        }
        let mut sent = crate::Disclosed::default();
        sent.note_value(docid.as_str(), &v);
        hub.disclosed(&p, "read", &format!("couchdb api db={db}"), &sent)?;
        let mut resp = json(StatusCode::OK, v);
        resp.headers_mut().insert(header::ETAG, etag(&d.rev));
        Ok(resp)
    })
    .await
}

/// Writes one document; returns the new revision.
pub(crate) fn write_one(
    hub: &HubState,
    gate: &crate::access::Gate,
    db: &str,
    mut w: DocWrite,
    new_edits: bool,
) -> CouchResult<Rev> {
    let p = gate.session();
    let id = w.id.clone();
    let rev = w.rev.clone();
    if !gate
        .access(&hub.store, db)?
        .may_write(id.as_str(), w.deleted)
    {
        hub.denied(p, db, id.as_str(), "write through the couchdb api")?;
        return Err(Access::forbidden(true));
    }
    if let Err(e) = crate::access::check_record(db, &mut w) {
        hub.denied(
            p,
            db,
            id.as_str(),
            "an invalid record through the couchdb api",
        )?;
        return Err(e);
    }
    let who = p.clone();
    let mut results = hub.store.bulk_docs_audited(db, vec![w], new_edits, |res| {
        let action = if !new_edits {
            "sync"
        } else if res
            .first()
            .is_some_and(|r| r.as_ref().is_ok_and(|r| r.generation() == 1))
        {
            "create"
        } else {
            "update"
        };
        vec![store::AuditEvent {
            user: who.user().to_owned(),
            role: who.audit_role().to_owned(),
            action: action.into(),
            outcome: if res.iter().all(Result::is_ok) {
                "success"
            } else {
                "failure"
            }
            .into(),
            patient: None,
            resource: Some(id.as_str().to_owned()),
            detail: Some("couchdb api".into()),
            break_glass: false,
        }]
    })?;
    match results.pop() {
        Some(Ok(r)) => Ok(if new_edits { r } else { rev.unwrap_or(r) }),
        Some(Err(e)) => Err(store_doc_error(&e)),
        None => Err(CouchError::bad_request("nothing was written")),
    }
}

fn written(status: StatusCode, id: &str, rev: &Rev) -> Response {
    let mut resp = json(
        status,
        json!({"ok": true, "id": id, "rev": rev.to_string()}),
    );
    resp.headers_mut().insert(header::ETAG, etag(rev));
    resp
}

async fn write_doc(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    id: String,
    q: Params,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    check_db(&db)?;
    let docid = parse_docid(&id)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v = if ct.to_ascii_lowercase().starts_with("multipart/related") {
        crate::multipart::parse_related(&ct, &body)?
    } else {
        json_body(&headers, &body)?
    };
    drop(body);
    write_value(hub, gate_p.clone(), db, docid, q, v).await
}

/// Writes a parsed document (`?rev=`, `?new_edits=false` and `?batch=ok` as CouchDB takes them).
async fn write_value(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    docid: DocId,
    q: Params,
    mut v: Value,
) -> CouchResult<Response> {
    if let (Some(r), Some(obj)) = (q.get("rev"), v.as_object_mut()) {
        obj.entry("_rev")
            .or_insert_with(|| Value::String(r.to_owned()));
    }
    let new_edits = q.bool("new_edits", true)?;
    let batch = q.get("batch") == Some("ok");
    let w = DocWrite::from_json(v, Some(docid.as_str())).map_err(CouchError::from)?;
    if !new_edits && w.rev.is_none() {
        return Err(CouchError::bad_request("new_edits=false needs _rev"));
    }
    blocking(move || {
        let rev = write_one(&hub, &gate_p, &db, w, new_edits)?;
        if batch {
            return Ok(json(
                StatusCode::ACCEPTED,
                json!({"ok": true, "id": docid.as_str()}),
            ));
        }
        Ok(written(StatusCode::CREATED, docid.as_str(), &rev))
    })
    .await
}

async fn remove_doc(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    id: String,
    q: Params,
    headers: HeaderMap,
) -> CouchResult<Response> {
    check_db(&db)?;
    let docid = parse_docid(&id)?;
    let Some(rev) = rev_of(&q, &headers)? else {
        return Err(CouchError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Document update conflict.",
        ));
    };
    blocking(move || {
        let rev = write_one(
            &hub,
            &gate_p,
            &db,
            DocWrite::deletion(docid.clone(), rev),
            true,
        )?;
        Ok(written(StatusCode::OK, docid.as_str(), &rev))
    })
    .await
}

type DocPath = Path<(String, String)>;
type Q = Query<Vec<(String, String)>>;

/// Reads, writes or deletes a document, by method.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    id: String,
    q: Params,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    // `/{db}/_local%2F{id}`: the same `_local` handlers (and their gate) as `/{db}/_local/{id}`.
    if let Some(local) = id.strip_prefix("_local/") {
        let (s, e, path) = (State(hub), gate_p, Path((db, local.to_owned())));
        return match method {
            Method::PUT => put_local(s, e, path, Query(q.0), headers, body).await,
            Method::DELETE => delete_local(s, e, path, Query(q.0), headers).await,
            _ => get_local(s, e, path).await,
        };
    }
    match method {
        Method::PUT => write_doc(hub, gate_p.clone(), db, id, q, headers, body).await,
        Method::DELETE => remove_doc(hub, gate_p.clone(), db, id, q, headers).await,
        _ => read_doc(hub, gate_p.clone(), db, id, q, headers).await,
    }
}

/// `GET|PUT|DELETE /{db}/{docid}`.
pub(crate) async fn doc_route(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, id)): DocPath,
    Query(q): Q,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    dispatch(hub, gate_p, db, id, Params(q), method, headers, body).await
}

pub(crate) async fn post_doc(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    check_db(&db)?;
    let mut v = json_body(&headers, &body)?;
    let Some(obj) = v.as_object_mut() else {
        return Err(CouchError::bad_request("Document must be a JSON object"));
    };
    let id = match obj.get("_id") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(CouchError::new(
                StatusCode::BAD_REQUEST,
                "illegal_docid",
                "Document id must be a string",
            ));
        }
        None => {
            let id = new_doc_id()?;
            obj.insert("_id".into(), Value::String(id.clone()));
            id
        }
    };
    let docid = parse_docid(&id)?;
    write_value(hub, gate_p.clone(), db, docid, Params(q), v).await
}

/// `GET|PUT|DELETE /{db}/_design/{name}`: design documents are ordinary documents here.
pub(crate) async fn design_route(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, name)): DocPath,
    Query(q): Q,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let id = format!("_design/{name}");
    dispatch(hub, gate_p, db, id, Params(q), method, headers, body).await
}

/// `/{db}/_design/{name}/{rest}`: views, shows, lists and updates are refused (no JavaScript
/// runs here); anything else is an attachment of the design document.
pub(crate) async fn design_sub(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, name, rest)): Path<(String, String, String)>,
    Query(q): Q,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    if let Some(kind) = rest.strip_prefix('_') {
        let what = kind.split('/').next().unwrap_or(kind);
        return Err(CouchError::no_javascript(&format!(
            "_design/{name}/_{what}"
        )));
    }
    let id = format!("_design/{name}");
    attachment(hub, gate_p, db, id, rest, Params(q), method, headers, body).await
}

type AttPath = Path<(String, String, String)>;

/// `GET|PUT|DELETE /{db}/{docid}/{attachment}`.
pub(crate) async fn attachment_route(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, id, name)): AttPath,
    Query(q): Q,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    if id == "_local" {
        // `/{db}/_local/{id}/{name}` (chttpd_db's answer).
        return Err(CouchError::bad_request(
            "_local documents do not accept attachments.",
        ));
    }
    attachment(hub, gate_p, db, id, name, Params(q), method, headers, body).await
}

#[allow(clippy::too_many_arguments)]
async fn attachment(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    id: String,
    name: String,
    q: Params,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let docid = parse_docid(&id)?;
    if name.is_empty() || name.starts_with('_') {
        return Err(CouchError::bad_request(
            "Attachment name can't start with '_' or be empty",
        ));
    }
    let rev = rev_of(&q, &headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    blocking(move || {
        let store = &hub.store;
        let access = gate_p.access(store, &db)?;
        let reading = matches!(method, Method::GET | Method::HEAD);
        let allowed = if reading {
            access.may_read(docid.as_str())
        } else {
            access.may_write(docid.as_str(), false)
        };
        if !allowed {
            hub.denied(
                &p,
                &db,
                docid.as_str(),
                "attachment through the couchdb api",
            )?;
            return Err(Access::forbidden(!reading));
        }
        match method {
            Method::GET | Method::HEAD => {
                let (info, data) = store.get_attachment(&db, &docid, &name, rev.as_ref())?;
                hub.audit(&p, "read", format!("attachment db={db} doc={docid}"))?;
                let mut resp = Response::new(HttpBody::from(data));
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&info.content_type) {
                    h.insert(header::CONTENT_TYPE, v);
                }
                if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", info.digest)) {
                    h.insert(header::ETAG, v);
                }
                Ok(resp)
            }
            Method::PUT | Method::DELETE => {
                let current = match (
                    &rev,
                    store.get(
                        &db,
                        &docid,
                        &GetOptions {
                            rev: rev.clone(),
                            ..GetOptions::default()
                        },
                    ),
                ) {
                    (_, Ok(d)) => Some(d),
                    (None, Err(store::Error::NotFound(_))) if method == Method::PUT => None,
                    (Some(_), Err(store::Error::NotFound(_))) => {
                        return Err(CouchError::new(
                            StatusCode::CONFLICT,
                            "conflict",
                            "Document update conflict.",
                        ));
                    }
                    (_, Err(e)) => return Err(e.into()),
                };
                if current.is_some() && rev.is_none() {
                    return Err(CouchError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        "Document update conflict.",
                    ));
                }
                let mut atts: BTreeMap<String, AttachmentInput> = current
                    .as_ref()
                    .map(|d| {
                        d.attachments
                            .iter()
                            .map(|(n, a)| {
                                (
                                    n.clone(),
                                    AttachmentInput::Stub {
                                        digest: Some(a.digest.clone()),
                                    },
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if method == Method::PUT {
                    atts.insert(
                        name.clone(),
                        AttachmentInput::Data {
                            content_type,
                            data: body.to_vec(),
                            revpos: None,
                        },
                    );
                } else if atts.remove(&name).is_none() {
                    return Err(CouchError::not_found("Document is missing attachment"));
                }
                let w = DocWrite {
                    id: docid.clone(),
                    rev,
                    deleted: false,
                    body: current.map(|d| d.body).unwrap_or_else(Map::new),
                    attachments: atts,
                    revisions: None,
                };
                let new_rev = write_one(&hub, &gate_p, &db, w, true)?;
                let status = if method == Method::PUT {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(written(status, docid.as_str(), &new_rev))
            }
            other => Ok(crate::CouchError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{other} is not allowed on an attachment"),
            )
            .into_response()),
        }
    })
    .await
}

fn local_id(id: &str) -> CouchResult<DocId> {
    parse_docid(&format!("_local/{id}"))
}

/// `_local` ids reserved to the node (`_local/hearth-…`): where the security policy lived before
/// it left the documents (ADR 31). Still refused to every account, so no client can plant a
/// document that an older node, or a reader of the database, would take for the policy.
const RESERVED_LOCAL_PREFIX: &str = "_local/hearth-";

/// Refuses a `_local` document the node keeps for itself, to every account (administrators
/// included), and records the attempt.
pub(crate) fn check_local_access(hub: &HubState, p: &Session, id: &DocId) -> CouchResult<()> {
    if !id.as_str().starts_with(RESERVED_LOCAL_PREFIX) {
        return Ok(());
    }
    hub.denied(
        p,
        "",
        id.as_str(),
        "the node's own policy document, through a document api",
    )?;
    Err(CouchError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this _local document is the node's security policy; change it with `hearth roles` on the node",
    ))
}

/// A write of a `_local` document, parsed once for `PUT`, `DELETE` and `_bulk_docs`.
/// `_local` documents have no revision tree and no attachments: `_revisions` and
/// `_attachments` are not kept (as CouchDB), and the revision is `0-N`.
pub(crate) struct LocalWrite {
    pub(crate) id: DocId,
    rev: Option<String>,
    deleted: bool,
    body: Map<String, Value>,
}

impl LocalWrite {
    /// Parses the JSON of a `_local` document; `path_id` is the id from the URL.
    pub(crate) fn from_json(
        mut m: Map<String, Value>,
        path_id: Option<&str>,
    ) -> CouchResult<LocalWrite> {
        let id = match (m.shift_remove("_id"), path_id) {
            (Some(Value::String(a)), Some(b)) if a != b => {
                return Err(CouchError::bad_request(
                    "Document id must match the id in the URL",
                ));
            }
            (Some(Value::String(a)), _) => a,
            (None, Some(b)) => b.to_owned(),
            _ => return Err(CouchError::bad_request("Document id must be a string")),
        };
        let rev = match m.shift_remove("_rev") {
            Some(Value::String(s)) => Some(s),
            None | Some(Value::Null) => None,
            Some(_) => return Err(CouchError::bad_request("Invalid rev format")),
        };
        let deleted = match m.shift_remove("_deleted") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(CouchError::bad_request("_deleted must be true or false")),
        };
        m.shift_remove("_revisions");
        m.shift_remove("_attachments");
        for k in store::IGNORED_SPECIALS {
            m.shift_remove(*k);
        }
        if let Some(k) = m.keys().find(|k| k.starts_with('_')) {
            return Err(CouchError::new(
                StatusCode::BAD_REQUEST,
                "doc_validation",
                format!("Bad special document member: {k}"),
            ));
        }
        Ok(LocalWrite {
            id: parse_docid(&id)?,
            rev,
            deleted,
            body: m,
        })
    }

    /// Writes it, after the reserved-id check; the new revision (`0-0` for a deletion).
    pub(crate) fn write(self, hub: &HubState, p: &Session, db: &str) -> CouchResult<String> {
        check_local_access(hub, p, &self.id)?;
        let rev = hub
            .store
            .put_local(db, &self.id, self.rev.as_deref(), self.deleted, &self.body)
            .map_err(|e| store_doc_error(&e))?;
        Ok(if self.deleted { "0-0".into() } else { rev })
    }
}

pub(crate) async fn get_local(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, id)): DocPath,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let docid = local_id(&id)?;
    blocking(move || {
        check_local_access(&hub, &p, &docid)?;
        let (rev, body) = hub.store.get_local(&db, &docid)?;
        let mut m = Map::with_capacity(body.len() + 2);
        m.insert("_id".into(), docid.as_str().into());
        m.insert("_rev".into(), rev.into());
        m.extend(body);
        Ok(json(StatusCode::OK, Value::Object(m)))
    })
    .await
}

pub(crate) async fn put_local(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, id)): DocPath,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let docid = local_id(&id)?;
    let Value::Object(mut m) = json_body(&headers, &body)? else {
        return Err(CouchError::bad_request("Document must be a JSON object"));
    };
    if !m.contains_key("_rev")
        && let Some(r) = Params(q).get("rev")
    {
        m.insert("_rev".into(), r.into());
    }
    let w = LocalWrite::from_json(m, Some(docid.as_str()))?;
    blocking(move || {
        let rev = w.write(&hub, &p, &db)?;
        Ok(json(
            StatusCode::CREATED,
            json!({"ok": true, "id": docid.as_str(), "rev": rev}),
        ))
    })
    .await
}

pub(crate) async fn delete_local(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, id)): DocPath,
    Query(q): Q,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let docid = local_id(&id)?;
    let q = Params(q);
    let rev = q.get("rev").map(str::to_owned).or_else(|| {
        headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_owned())
    });
    let w = LocalWrite {
        id: docid.clone(),
        rev,
        deleted: true,
        body: Map::new(),
    };
    blocking(move || {
        let rev = w.write(&hub, &p, &db)?;
        Ok(json(
            StatusCode::OK,
            json!({"ok": true, "id": docid.as_str(), "rev": rev}),
        ))
    })
    .await
}
