//! Server and database endpoints, and the bulk endpoints of replication.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revtree::Rev;
use serde_json::{Map, Value, json};
use store::{AllDocsQuery, DocId, DocWrite, GetOptions, OpenRevs};

use crate::doc::new_doc_id;
use crate::error::{CouchError, CouchResult};
use crate::params::Params;
use crate::{Access, COUCHDB_VERSION, Disclosed, HubState, Session, blocking, json};

/// Checks a database name from a URL, with CouchDB's error.
pub(crate) fn check_db(name: &str) -> CouchResult<()> {
    store::validate_db_name(name).map_err(|_| {
        CouchError::new(
            StatusCode::BAD_REQUEST,
            "illegal_database_name",
            format!(
                "Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
            ),
        )
    })
}

/// Parses a JSON request body; CouchDB wants `application/json` on these endpoints.
pub(crate) fn json_body(headers: &HeaderMap, body: &Bytes) -> CouchResult<Value> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Err(CouchError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_content_type",
                "Content-Type must be application/json",
            ));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        CouchError::bad_request(if e.is_eof() || e.is_syntax() {
            "Request body is not valid JSON".to_owned()
        } else {
            format!("Request body could not be parsed: {e}")
        })
    })
}

fn require_admin(p: &Session) -> CouchResult<()> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(CouchError::unauthorized("You are not a server admin."))
    }
}

pub(crate) async fn welcome(State(hub): State<HubState>) -> Response {
    json(
        StatusCode::OK,
        json!({
            "couchdb": "Welcome",
            "version": COUCHDB_VERSION,
            "git_sha": "hearth",
            "uuid": hub.uuid,
            "features": [],
            "vendor": {"name": "Hearth", "version": env!("CARGO_PKG_VERSION")}
        }),
    )
}

pub(crate) async fn up() -> Response {
    json(StatusCode::OK, json!({"status": "ok"}))
}

pub(crate) async fn method_not_allowed(method: Method) -> Response {
    CouchError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
    .into_response()
}

pub(crate) async fn not_found() -> Response {
    CouchError::not_found("missing").into_response()
}

/// CouchDB's 405 naming the methods a route takes.
pub(crate) fn method_not_allowed_error(allowed: &str) -> CouchError {
    CouchError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("Only {allowed} allowed"),
    )
}

/// `GET|PUT /{db}/_revs_limit`: how many revisions of history each document keeps.
pub(crate) async fn revs_limit(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    method: Method,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    match method {
        Method::GET => {
            blocking(move || {
                let limit = hub.store.db_info(&db)?.revs_limit;
                Ok(json(StatusCode::OK, json!(limit)))
            })
            .await
        }
        Method::PUT => {
            require_admin(&p)?;
            let limit = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.as_u64())
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    CouchError::bad_request("Rev limit has to be an integer between 1 and 1000000")
                })?;
            blocking(move || {
                hub.store.set_revs_limit(&db, limit as usize)?;
                hub.audit(&p, "db_config", format!("db={db} revs_limit={limit}"))?;
                Ok(json(StatusCode::OK, json!({"ok": true})))
            })
            .await
        }
        _ => Err(method_not_allowed_error("GET,PUT")),
    }
}

/// `GET|PUT /{db}/_security`. Who may read and write is the hub's accounts and permission
/// matrix (ADR 24), not a CouchDB security object: reading answers with the roles that have
/// access, and writing is refused for everyone.
pub(crate) async fn security(
    State(hub): State<HubState>,
    Path(db): Path<String>,
    method: Method,
) -> CouchResult<Response> {
    check_db(&db)?;
    match method {
        Method::GET => {
            blocking(move || {
                hub.store.db_info(&db)?;
                Ok(json(
                    StatusCode::OK,
                    json!({
                        "admins": {"names": [], "roles": ["_admin"]},
                        "members": {"names": [], "roles": store::Role::ALL},
                    }),
                ))
            })
            .await
        }
        Method::PUT => Err(CouchError::forbidden(
            "The hub's access rules are its accounts and permission matrix (hearth hub account, hearth roles); _security cannot change them",
        )),
        _ => Err(method_not_allowed_error("GET,PUT")),
    }
}

/// `POST /{db}/_purge`: refused. A purge erases revisions as if they never existed, on this
/// node only; clinical records keep their history, and a deletion (a tombstone that
/// replicates) is how a record is removed.
pub(crate) async fn purge(
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    require_admin(&p)?;
    Err(CouchError::forbidden(
        "Purging is disabled on a Hearth hub: clinical records keep their history. Delete the document instead; the deletion replicates",
    ))
}

/// `POST /{db}/_view_cleanup` and `POST /{db}/_compact/{ddoc}`: there are no view index files
/// to clean or compact, so both succeed at once (administrators, as in CouchDB).
pub(crate) async fn view_maintenance(
    gate_p: crate::access::Gate,
    Path(params): Path<Vec<(String, String)>>,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    let db = params.first().map(|(_, v)| v.clone()).unwrap_or_default();
    check_db(&db)?;
    require_admin(&p)?;
    Ok(json(StatusCode::ACCEPTED, json!({"ok": true})))
}

pub(crate) async fn all_dbs(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    require_admin(&p)?;
    let dbs = blocking(move || Ok(hub.store.list_dbs()?)).await?;
    Ok(json(StatusCode::OK, json!(dbs)))
}

pub(crate) async fn uuids(Query(q): Query<Vec<(String, String)>>) -> CouchResult<Response> {
    let n = Params(q).u64("count")?.unwrap_or(1);
    if n > 1000 {
        return Err(CouchError::bad_request("count must be at most 1000"));
    }
    let ids = (0..n)
        .map(|_| new_doc_id())
        .collect::<CouchResult<Vec<_>>>()?;
    Ok(json(StatusCode::OK, json!({"uuids": ids})))
}

pub(crate) async fn get_session(
    State(hub): State<HubState>,
    crate::Peer(peer): crate::Peer,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let (p, how) = match crate::principal_of(&hub, &headers, peer).await? {
        Some(p) if headers.contains_key(header::AUTHORIZATION) => (Some(p), "default"),
        Some(p) => (Some(p), "cookie"),
        None => (None, ""),
    };
    let mut info = json!({"authentication_handlers": ["cookie", "default"]});
    if p.is_some() {
        info["authenticated"] = how.into();
    }
    Ok(json(
        StatusCode::OK,
        json!({
            "ok": true,
            "userCtx": {"name": p.as_ref().map(|p| p.user().to_owned()), "roles": p.as_ref().map(crate::auth::couch_roles).unwrap_or_default()},
            "info": info
        }),
    ))
}

pub(crate) async fn post_session(
    State(hub): State<HubState>,
    crate::Peer(peer): crate::Peer,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (name, password) = if ct.starts_with("application/x-www-form-urlencoded") {
        let mut name = None;
        let mut pw = None;
        for (k, v) in url_form(&body) {
            match k.as_str() {
                "name" | "username" => name = Some(v),
                "password" => pw = Some(v),
                _ => {}
            }
        }
        (name, pw)
    } else {
        let v = json_body(&headers, &body)?;
        (
            v.get("name").and_then(Value::as_str).map(str::to_owned),
            v.get("password").and_then(Value::as_str).map(str::to_owned),
        )
    };
    let (Some(name), Some(password)) = (name, password) else {
        return Err(CouchError::bad_request("name and password are required"));
    };
    let password = zeroize::Zeroizing::new(password);
    let hub2 = hub.clone();
    let account = blocking(move || {
        hub2.auth
            .login_account(&hub2.store, &name, &password, &peer)
    })
    .await?;
    let cookie = hub.auth.cookie(&account, crate::unix_now());
    let p = Session::account(&account, None);
    let mut resp = json(
        StatusCode::OK,
        json!({"ok": true, "name": p.user(), "roles": crate::auth::couch_roles(&p)}),
    );
    if let Ok(v) = format!(
        "AuthSession={cookie}; Version=1; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        crate::auth::SESSION_SECS
    )
    .parse()
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub(crate) async fn delete_session() -> Response {
    let mut resp = json(StatusCode::OK, json!({"ok": true}));
    if let Ok(v) = "AuthSession=; Version=1; Path=/; Max-Age=0; HttpOnly; SameSite=Strict".parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Decodes `application/x-www-form-urlencoded`.
fn url_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

pub(crate) async fn db_info(
    State(hub): State<HubState>,
    Path(db): Path<String>,
) -> CouchResult<Response> {
    check_db(&db)?;
    let info = blocking(move || Ok(hub.store.db_info(&db)?)).await?;
    Ok(json(
        StatusCode::OK,
        json!({
            "db_name": info.name,
            "doc_count": info.doc_count,
            "doc_del_count": info.doc_del_count,
            "update_seq": info.update_seq,
            "purge_seq": 0,
            "compact_running": false,
            "disk_format_version": 8,
            "instance_start_time": "0",
            "uuid": info.uuid,
            "props": {},
            "sizes": {"active": 0, "external": 0, "file": 0}
        }),
    ))
}

pub(crate) async fn create_db(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    require_admin(&p)?;
    blocking(move || {
        hub.store.create_db(&db)?;
        hub.audit(&p, "db_create", format!("db={db}"))
    })
    .await?;
    Ok(json(StatusCode::CREATED, json!({"ok": true})))
}

pub(crate) async fn delete_db(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    if Params(q).get("rev").is_some() {
        return Err(CouchError::bad_request(
            "You tried to DELETE a database with a ?rev= parameter. Did you mean to DELETE a document instead?",
        ));
    }
    require_admin(&p)?;
    blocking(move || {
        hub.store.delete_db(&db)?;
        hub.audit(&p, "db_delete", format!("db={db}"))
    })
    .await?;
    Ok(json(StatusCode::OK, json!({"ok": true})))
}

pub(crate) async fn ensure_full_commit(
    State(hub): State<HubState>,
    Path(db): Path<String>,
) -> CouchResult<Response> {
    check_db(&db)?;
    // Every write is committed with synchronous=FULL before it is acknowledged.
    blocking(move || Ok(hub.store.db_info(&db)?)).await?;
    Ok(json(
        StatusCode::CREATED,
        json!({"ok": true, "instance_start_time": "0"}),
    ))
}

pub(crate) async fn compact(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    require_admin(&p)?;
    let ct_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !ct_json {
        return Err(CouchError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "Content-Type must be application/json",
        ));
    }
    // Hearth keeps ancestor bodies (conflict merges need the common ancestor); compaction
    // folds the write-ahead log into the file and returns free pages.
    blocking(move || {
        hub.store.db_info(&db)?;
        hub.store.checkpoint()?;
        Ok(())
    })
    .await?;
    Ok(json(StatusCode::ACCEPTED, json!({"ok": true})))
}

fn parse_revs(v: &Value, what: &str) -> CouchResult<Vec<Rev>> {
    let Value::Array(items) = v else {
        return Err(CouchError::bad_request(format!(
            "{what} must be an array of revisions"
        )));
    };
    items
        .iter()
        .map(|r| {
            r.as_str()
                .and_then(|s| s.parse::<Rev>().ok())
                .ok_or_else(|| CouchError::bad_request(format!("Invalid revision in {what}: {r}")))
        })
        .collect()
}

pub(crate) async fn revs_diff(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    check_db(&db)?;
    let Value::Object(m) = json_body(&headers, &body)? else {
        return Err(CouchError::bad_request(
            "_revs_diff takes an object of document ids to revision lists",
        ));
    };
    let mut asked = BTreeMap::new();
    for (id, revs) in m {
        asked.insert(id, parse_revs(&revs, "_revs_diff")?);
    }
    let diff = blocking(move || {
        // Which revisions the hub holds of a document the caller may not read is not the
        // caller's to learn: those are answered as all missing (a push of them is then
        // refused per document, as the matrix says).
        let access = gate_p.access(&hub.store, &db)?;
        let (open, closed): (BTreeMap<_, _>, BTreeMap<_, _>) =
            asked.into_iter().partition(|(id, _)| access.may_read(id));
        let mut diff = hub.store.revs_diff(&db, &open)?;
        for (id, revs) in closed {
            diff.insert(
                id,
                store::RevsDiff {
                    missing: revs,
                    possible_ancestors: Vec::new(),
                },
            );
        }
        Ok(diff)
    })
    .await?;
    let mut out = Map::new();
    for (id, d) in diff {
        let mut e = Map::new();
        e.insert(
            "missing".into(),
            json!(d.missing.iter().map(Rev::to_string).collect::<Vec<_>>()),
        );
        if !d.possible_ancestors.is_empty() {
            e.insert(
                "possible_ancestors".into(),
                json!(
                    d.possible_ancestors
                        .iter()
                        .map(Rev::to_string)
                        .collect::<Vec<_>>()
                ),
            );
        }
        out.insert(id, Value::Object(e));
    }
    Ok(json(StatusCode::OK, Value::Object(out)))
}

fn doc_error(id: Option<&str>, rev: Option<&Rev>, e: &CouchError) -> Value {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), id.into());
    }
    if let Some(r) = rev {
        m.insert("rev".into(), r.to_string().into());
    }
    m.insert("error".into(), e.error.clone().into());
    m.insert("reason".into(), e.reason.clone().into());
    Value::Object(m)
}

pub(crate) async fn bulk_docs(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let v = json_body(&headers, &body)?;
    drop(body);
    let Value::Object(mut m) = v else {
        return Err(CouchError::bad_request(
            "_bulk_docs takes {\"docs\": [...]}",
        ));
    };
    let new_edits = match m.shift_remove("new_edits") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(CouchError::bad_request("new_edits must be true or false")),
    };
    let Some(Value::Array(docs)) = m.shift_remove("docs") else {
        return Err(CouchError::bad_request(
            "POST body must include `docs` parameter.",
        ));
    };
    // As CouchDB (chttpd_db's `_bulk_docs`): every document is parsed and validated before
    // anything is written, and one that is not a valid document (a bad `_id`, an unknown
    // underscore member, no revision under `new_edits: false`) refuses the whole request.
    // What is decided per document (access, conflicts) is answered per document.
    let mut parsed = Vec::with_capacity(docs.len());
    for mut d in docs {
        let id_hint = d.get("_id").and_then(Value::as_str).map(str::to_owned);
        if new_edits && d.is_object() && d.get("_id").is_none() {
            d["_id"] = Value::String(new_doc_id()?);
        }
        let d = match d {
            Value::Object(m) if id_hint.as_deref().is_some_and(|i| i.starts_with("_local/")) => {
                parsed.push(Parsed::Local(crate::doc::LocalWrite::from_json(m, None)?));
                continue;
            }
            other => other,
        };
        match DocWrite::from_json(d, None) {
            Ok(w) if !new_edits && w.rev.is_none() => {
                return Err(CouchError::bad_request(
                    "When `new_edits: false`, the document needs `_rev` or `_revisions` specified",
                ));
            }
            Ok(w) => parsed.push(Parsed::Doc(w)),
            Err(store::Error::Conflict) => parsed.push(Parsed::Conflict(id_hint)),
            Err(e) => return Err(store_doc_error(&e)),
        }
    }
    blocking(move || {
        let access = gate_p.access(&hub.store, &db)?;
        let mut refused: Vec<String> = Vec::new();
        // Documents named by a revision that cannot exist get `conflict` in place; `_local`
        // documents are written one by one (they have no revision tree); the rest go to the
        // store in one transaction.
        let mut slots: Vec<Result<usize, Value>> = Vec::with_capacity(parsed.len());
        let mut writes = Vec::with_capacity(parsed.len());
        for d in parsed {
            match d {
                Parsed::Conflict(id_hint) => slots.push(Err(doc_error(
                    id_hint.as_deref(),
                    None,
                    &store_doc_error(&store::Error::Conflict),
                ))),
                Parsed::Local(w) => {
                    let id = w.id.as_str().to_owned();
                    match w.write(&hub, &p, &db) {
                        Ok(rev) if new_edits => {
                            slots.push(Err(json!({"ok": true, "id": id, "rev": rev})))
                        }
                        Ok(_) => {}
                        Err(e) => slots.push(Err(doc_error(Some(&id), None, &e))),
                    }
                }
                Parsed::Doc(w) if !access.may_write(w.id.as_str(), w.deleted) => {
                    refused.push(w.id.as_str().to_owned());
                    slots.push(Err(doc_error(
                        Some(w.id.as_str()),
                        w.rev.as_ref().filter(|_| !new_edits),
                        &Access::forbidden(true),
                    )))
                }
                Parsed::Doc(mut w) => match crate::access::check_record(&db, &mut w) {
                    Ok(()) => {
                        slots.push(Ok(writes.len()));
                        writes.push(w);
                    }
                    Err(e) => {
                        hub.denied(
                            &p,
                            &db,
                            w.id.as_str(),
                            "an invalid record through the couchdb api",
                        )?;
                        slots.push(Err(doc_error(
                            Some(w.id.as_str()),
                            w.rev.as_ref().filter(|_| !new_edits),
                            &e,
                        )));
                    }
                },
            }
        }
        hub.denied_all(&p, &db, &refused, &format!("_bulk_docs db={db}"))?;
        let ids: Vec<(DocId, Option<Rev>)> = writes
            .iter()
            .map(|w| (w.id.clone(), w.rev.clone()))
            .collect();
        let n = writes.len();
        let who = p.clone();
        let dbname = db.clone();
        let hub2 = hub.clone();
        let counter = &hub2.metrics.docs_in;
        let results = hub
            .store
            .bulk_docs_audited(&db, writes, new_edits, move |results| {
                let ok = results.iter().filter(|r| r.is_ok()).count();
                counter.fetch_add(ok as u64, std::sync::atomic::Ordering::Relaxed);
                vec![store::AuditEvent {
                    user: who.user().to_owned(),
                    role: who.audit_role().to_owned(),
                    action: if new_edits {
                        "update".into()
                    } else {
                        "sync".into()
                    },
                    outcome: "success".into(),
                    patient: None,
                    resource: None,
                    detail: Some(format!(
                        "_bulk_docs db={dbname} new_edits={new_edits} docs={n} written={ok}"
                    )),
                    break_glass: false,
                }]
            })?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Err(e) => out.push(e),
                Ok(i) => {
                    let (id, rev) = &ids[i];
                    match &results[i] {
                        Ok(r) if new_edits => {
                            out.push(json!({"ok": true, "id": id.as_str(), "rev": r.to_string()}))
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let ce: CouchError = store_doc_error(e);
                            out.push(doc_error(
                                Some(id.as_str()),
                                rev.as_ref().filter(|_| !new_edits),
                                &ce,
                            ))
                        }
                    }
                }
            }
        }
        Ok(json(StatusCode::CREATED, Value::Array(out)))
    })
    .await
}

/// One member of a `_bulk_docs` request, once parsed.
enum Parsed {
    /// A document with a revision tree.
    Doc(DocWrite),
    /// A `_local` document (PouchDB writes checkpoints this way), written like
    /// `PUT /{db}/_local/{id}` and answered in place.
    Local(crate::doc::LocalWrite),
    /// A document naming a revision that cannot exist here: `conflict`, in place.
    Conflict(Option<String>),
}

/// A per-document store error as CouchDB names it.
pub(crate) fn store_doc_error(e: &store::Error) -> CouchError {
    match e {
        store::Error::Conflict => CouchError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Document update conflict.",
        ),
        store::Error::NotFound(r) => CouchError::not_found(*r),
        store::Error::BadDocId(r) => {
            CouchError::new(StatusCode::BAD_REQUEST, "illegal_docid", r.clone())
        }
        store::Error::DocValidation(r) => {
            CouchError::new(StatusCode::BAD_REQUEST, "doc_validation", r.clone())
        }
        store::Error::MissingStub(r) => CouchError::new(
            StatusCode::PRECONDITION_FAILED,
            "missing_stub",
            format!("Invalid attachment stub in {r}"),
        ),
        other => CouchError::bad_request(other.to_string()),
    }
}

pub(crate) async fn bulk_get(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let q = Params(q);
    let revs = q.bool("revs", false)?;
    let latest = q.bool("latest", false)?;
    let attachments = q.bool("attachments", false)?;
    let v = json_body(&headers, &body)?;
    let Some(Value::Array(asked)) = v.get("docs").cloned() else {
        return Err(CouchError::bad_request("Missing JSON list of 'docs'."));
    };
    blocking(move || {
        let access = gate_p.access(&hub.store, &db)?;
        let mut refused: Vec<String> = Vec::new();
        // The response is assembled as bytes: stored bodies are spliced in, never re-parsed.
        let mut out = Vec::with_capacity(asked.len() * 1200 + 16);
        out.extend_from_slice(b"{\"results\":[");
        let mut served = Disclosed::default();
        for (n, a) in asked.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let id_v = a.get("id").cloned().unwrap_or(Value::Null);
            let rev_v = a.get("rev").cloned().unwrap_or(Value::Null);
            let fail = |out: &mut Vec<u8>, rev: Value, error: &str, reason: &str| {
                let e = json!({"id": id_v, "docs": [{"error": {"id": id_v, "rev": rev, "error": error, "reason": reason}}]});
                out.extend_from_slice(&serde_json::to_vec(&e).unwrap_or_default());
            };
            let Some(id) = id_v.as_str().map(str::to_owned) else {
                fail(&mut out, rev_v, "bad_request", "each entry of docs needs a string \"id\"");
                continue;
            };
            if !access.may_read(&id) {
                refused.push(id.clone());
                fail(&mut out, rev_v, "forbidden", "your role may not read documents of this type");
                continue;
            }
            let rev = match &rev_v {
                Value::Null => None,
                Value::String(s) => match s.parse::<Rev>() {
                    Ok(r) => Some(r),
                    Err(_) => {
                        fail(&mut out, rev_v.clone(), "bad_request", "Invalid rev format");
                        continue;
                    }
                },
                _ => {
                    fail(&mut out, rev_v.clone(), "bad_request", "rev must be a string");
                    continue;
                }
            };
            let atts_since = match a.get("atts_since") {
                Some(v) => Some(parse_revs(v, "atts_since")?),
                None => None,
            };
            let docid = match DocId::parse(&id) {
                Ok(d) => d,
                Err(e) => {
                    let ce: CouchError = e.into();
                    fail(&mut out, rev_v.clone(), &ce.error, &ce.reason);
                    continue;
                }
            };
            let which = match &rev {
                Some(r) => OpenRevs::Revs(vec![r.clone()]),
                None => match hub.store.rev_tree(&db, &docid) {
                    Ok(t) => match t.winner() {
                        Some(w) if !w.deleted => OpenRevs::Revs(vec![w.rev]),
                        Some(_) => {
                            fail(&mut out, Value::String("undefined".into()), "not_found", "deleted");
                            continue;
                        }
                        None => OpenRevs::Revs(Vec::new()),
                    },
                    Err(store::Error::NotFound(r)) => {
                        fail(&mut out, Value::String("undefined".into()), "not_found", r);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            out.extend_from_slice(b"{\"id\":");
            out.extend_from_slice(&serde_json::to_vec(&id).unwrap_or_default());
            out.extend_from_slice(b",\"docs\":[");
            let found = hub.store.open_revs_raw(&db, &docid, &which, revs, latest)?;
            for (k, r) in found.into_iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                match r {
                    Ok(raw) => {
                        served.note(raw.id.as_str(), &raw.body);
                        let atts = crate::doc::attachments_json(&hub.store, &db, &raw, attachments, atts_since.as_deref())?;
                        out.extend_from_slice(b"{\"ok\":");
                        out.extend_from_slice(&store::splice_json(&raw.id, &raw.rev, raw.deleted, raw.revisions.as_ref(), atts.as_deref(), &raw.body));
                        out.push(b'}');
                    }
                    Err(m) => {
                        let e = json!({"error": {"id": id, "rev": m.to_string(), "error": "not_found", "reason": "missing"}});
                        out.extend_from_slice(&serde_json::to_vec(&e).unwrap_or_default());
                    }
                }
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        hub.metrics.docs_out.fetch_add(served.docs, std::sync::atomic::Ordering::Relaxed);
        hub.disclosed(&p, "sync", &format!("_bulk_get db={db}"), &served)?;
        hub.denied_all(&p, &db, &refused, &format!("_bulk_get db={db}"))?;
        let mut resp = Response::new(axum::body::Body::from(out));
        resp.headers_mut().insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
        Ok(resp)
    })
    .await
}

pub(crate) async fn all_docs(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    let q = Params(q);
    let include_docs = q.bool("include_docs", false)?;
    let conflicts = q.bool("conflicts", false)?;
    // With include_docs, attachment bodies inline (base64) instead of stubs.
    let attachments = include_docs && q.bool("attachments", false)?;
    let descending = q.bool("descending", false)?;
    let inclusive_end = q.bool("inclusive_end", true)?;
    let limit = q.u64("limit")?;
    let skip = q.u64("skip")?.unwrap_or(0);
    let mut keys: Option<Vec<Value>> = q.json("keys")?;
    if method == Method::POST && !body.is_empty() {
        let v = json_body(&headers, &body)?;
        match v.get("keys") {
            Some(Value::Array(k)) => keys = Some(k.clone()),
            Some(_) => return Err(CouchError::bad_request("`keys` member must be an array.")),
            None => {}
        }
    }
    let mut start_key = q.key(&["startkey", "start_key"])?;
    let mut end_key = q.key(&["endkey", "end_key"])?;
    let single_key = q.key(&["key"])?;
    if keys.is_some() && (single_key.is_some() || start_key.is_some() || end_key.is_some()) {
        // couch_mrview_util's validate_args.
        return Err(CouchError::query_parse(
            "`keys` is incompatible with `key`, `start_key` and `end_key`",
        ));
    }
    let update_seq = if q.bool("update_seq", false)? {
        let db = db.clone();
        let hub = hub.clone();
        Some(blocking(move || Ok(hub.store.update_seq(&db)?)).await?)
    } else {
        None
    };
    // `key` is the range from the key to itself (deleted documents are not in a range, as
    // CouchDB answers; only `keys` lists them).
    if let Some(k) = single_key {
        start_key = Some(k.clone());
        end_key = Some(k);
    }
    let Some(keys) = keys else {
        let q = AllDocsQuery {
            start_key,
            end_key,
            exclusive_end: !inclusive_end,
            limit,
            skip,
            descending,
        };
        let what = Listing {
            include_docs,
            conflicts,
            attachments,
            update_seq,
        };
        return all_docs_stream(hub, gate_p.clone(), db, q, what).await;
    };
    blocking(move || {
        let store = &hub.store;
        let access = gate_p.access(store, &db)?;
        let get_opts = GetOptions { conflicts, ..GetOptions::default() };
        let mut rows = Vec::new();
        let mut sent = Disclosed::default();
        let mut refused: Vec<String> = Vec::new();
        let total;
        {
            total = store.db_info(&db)?.doc_count;
            let mut ks: Vec<Value> = keys;
            if descending {
                ks.reverse();
            }
            for k in ks.into_iter().skip(skip as usize).take(limit.map_or(usize::MAX, |l| l as usize)) {
                let Some(id) = k.as_str() else {
                    rows.push(json!({"key": k, "error": "not_found"}));
                    continue;
                };
                let Ok(docid) = DocId::parse(id) else {
                    rows.push(json!({"key": id, "error": "not_found"}));
                    continue;
                };
                if !access.may_read(id) {
                    refused.push(id.to_owned());
                    rows.push(json!({"key": id, "error": "forbidden"}));
                    continue;
                }
                match store.rev_tree(&db, &docid) {
                    Err(store::Error::NotFound(_)) => rows.push(json!({"key": id, "error": "not_found"})),
                    Err(e) => return Err(e.into()),
                    Ok(tree) => {
                        let Some(w) = tree.winner() else {
                            rows.push(json!({"key": id, "error": "not_found"}));
                            continue;
                        };
                        if w.deleted {
                            let mut row = json!({"id": id, "key": id, "value": {"rev": w.rev.to_string(), "deleted": true}});
                            if include_docs {
                                row["doc"] = Value::Null;
                            }
                            rows.push(row);
                        } else {
                            let mut row = json!({"id": id, "key": id, "value": {"rev": w.rev.to_string()}});
                            if include_docs {
                                let d = store.get(&db, &docid, &get_opts)?;
                                let doc = crate::doc::doc_json(store, &db, &d, attachments, None)?;
                                sent.note_value(docid.as_str(), &doc);
                                row["doc"] = doc;
                            }
                            rows.push(row);
                        }
                    }
                }
            }
        }
        hub.disclosed(&p, "sync", &format!("_all_docs db={db}"), &sent)?;
        hub.denied_all(&p, &db, &refused, &format!("_all_docs db={db}"))?;
        let mut out = json!({"total_rows": total, "offset": skip, "rows": rows});
        if let Some(seq) = update_seq {
            out["update_seq"] = seq.into();
        }
        Ok(json(StatusCode::OK, out))
    })
    .await
}

/// Rows of `_all_docs` read per step when streaming a range.
const ALL_DOCS_PAGE: u64 = 1000;

/// What each row of an `_all_docs` listing carries.
#[derive(Clone, Copy)]
struct Listing {
    include_docs: bool,
    conflicts: bool,
    attachments: bool,
    /// `update_seq=true`: the database's sequence, sent after the rows.
    update_seq: Option<u64>,
}

/// `_all_docs` over a key range, streamed a page at a time (memory stays flat however many
/// documents the range holds).
async fn all_docs_stream(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    q: AllDocsQuery,
    what: Listing,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    let Listing {
        include_docs,
        conflicts,
        attachments,
        update_seq,
    } = what;
    let want = q.limit.unwrap_or(u64::MAX);
    let skip = q.skip;
    // One page: rows as JSON, the last id, whether the range is exhausted.
    let page = move |hub: HubState, q: AllDocsQuery| {
        let p = p.clone();
        let gate = gate_p.clone();
        let db = db.clone();
        blocking(move || {
            let access = gate.access(&hub.store, &db)?;
            let (rows, total) = hub.store.all_docs(&db, &q)?;
            let n = rows.len() as u64;
            let last = rows.last().map(|r| r.id.as_str().to_owned());
            let opts = GetOptions {
                conflicts,
                ..GetOptions::default()
            };
            let mut out = Vec::with_capacity(rows.len());
            let mut sent = Disclosed::default();
            for r in rows.into_iter().filter(|r| access.may_read(r.id.as_str())) {
                let mut row = serde_json::to_vec(&json!({"id": r.id.as_str(), "key": r.id.as_str(), "value": {"rev": r.rev.to_string()}}))
                    .unwrap_or_default();
                if include_docs {
                    let doc = if attachments {
                        match hub.store.get(&db, &r.id, &opts) {
                            Ok(d) => Ok(serde_json::to_vec(&crate::doc::doc_json(
                                &hub.store, &db, &d, true, None,
                            )?)
                            .unwrap_or_default()),
                            Err(e) => Err(e),
                        }
                    } else if conflicts {
                        hub.store
                            .get(&db, &r.id, &opts)
                            .map(|d| serde_json::to_vec(&d.to_json()).unwrap_or_default())
                    } else {
                        hub.store.get_raw(&db, &r.id).map(|d| d.to_json_bytes())
                    };
                    match doc {
                        Ok(d) => {
                            sent.note(r.id.as_str(), &d);
                            row.pop();
                            row.extend_from_slice(b",\"doc\":");
                            row.extend_from_slice(&d);
                            row.push(b'}');
                        }
                        Err(store::Error::NotFound(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                out.push(row);
            }
            hub.disclosed(&p, "sync", &format!("_all_docs db={db}"), &sent)?;
            Ok((out, total, last, n < q.limit.unwrap_or(u64::MAX)))
        })
    };
    let first_q = AllDocsQuery {
        limit: Some(want.min(ALL_DOCS_PAGE)),
        ..q.clone()
    };
    let (rows, total, last, done) = page(hub.clone(), first_q).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let head = format!("{{\"total_rows\":{total},\"offset\":{skip},\"rows\":[\n");
        if tx.send(Ok(Bytes::from(head))).await.is_err() {
            return;
        }
        let (mut rows, mut last, mut done) = (rows, last, done);
        let mut sent = 0u64;
        loop {
            for row in rows.drain(..) {
                let mut chunk = Vec::with_capacity(row.len() + 2);
                if sent > 0 {
                    chunk.extend_from_slice(b",\n");
                }
                chunk.extend_from_slice(&row);
                sent += 1;
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            if done || sent >= want {
                break;
            }
            // The next page starts after the last id (inclusive start key, skip it).
            let next_q = AllDocsQuery {
                start_key: last.clone(),
                skip: 1,
                limit: Some((want - sent).min(ALL_DOCS_PAGE)),
                ..q.clone()
            };
            match page(hub.clone(), next_q).await {
                Ok((r, _, l, d)) => {
                    rows = r;
                    last = l;
                    done = d;
                }
                Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("the listing failed")))
                        .await;
                    return;
                }
            }
        }
        let tail = match update_seq {
            Some(seq) => format!("\n],\"update_seq\":{seq}}}\n"),
            None => "\n]}\n".to_owned(),
        };
        let _ = tx.send(Ok(Bytes::from(tail))).await;
    });
    let stream =
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
