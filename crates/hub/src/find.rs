//! Mango queries: `_find`, `_explain` and `_index`, as CouchDB 3.x answers them
//! (<https://docs.couchdb.org/en/stable/api/database/find.html>). No JavaScript is involved.
//!
//! Index definitions are CouchDB's: a design document with `"language": "query"` holding one
//! view per index (`views.{name}.options.def.fields`), so they replicate to and from CouchDB and
//! PouchDB like any design document. The hub answers a query by scanning the database in id
//! order and evaluating the selector ([`crate::selector`]); an index decides, as in CouchDB,
//! whether a `sort` is allowed and which documents are eligible (a JSON index only holds
//! documents that have every indexed field). ADR 26 says why a scan.

use std::cmp::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use store::{AllDocsQuery, DocId, DocWrite, GetOptions};

use crate::db::{check_db, json_body};
use crate::error::{CouchError, CouchResult};
use crate::selector::{Selector, collate};
use crate::{HubState, blocking, json};

/// Rows read from the store per page of the scan.
const PAGE: u64 = 500;

/// One index: `_all_docs` (special) or a JSON index in a design document.
#[derive(Clone, Debug, PartialEq)]
struct Index {
    /// `None` for `_all_docs`.
    ddoc: Option<String>,
    name: String,
    /// Field paths with their direction (`true` = ascending).
    fields: Vec<(String, bool)>,
    partial: Option<Value>,
}

impl Index {
    fn all_docs() -> Index {
        Index {
            ddoc: None,
            name: "_all_docs".into(),
            fields: vec![("_id".into(), true)],
            partial: None,
        }
    }

    fn to_json(&self) -> Value {
        let fields: Vec<Value> = self
            .fields
            .iter()
            .map(|(f, asc)| json!({ f.as_str(): if *asc { "asc" } else { "desc" } }))
            .collect();
        let mut def = json!({ "fields": fields });
        if let Some(p) = &self.partial {
            def["partial_filter_selector"] = p.clone();
        }
        json!({
            "ddoc": self.ddoc,
            "name": self.name,
            "type": if self.ddoc.is_some() { "json" } else { "special" },
            "partitioned": false,
            "def": def,
        })
    }
}

fn missing_key(key: &str) -> CouchError {
    CouchError::new(
        StatusCode::BAD_REQUEST,
        "missing_required_key",
        format!("Missing required key: {key}"),
    )
}

fn invalid_index(reason: impl Into<String>) -> CouchError {
    CouchError::new(StatusCode::BAD_REQUEST, "invalid_index", reason)
}

/// Parses `fields` of an index or `sort` of a query: names, or `{name: "asc"|"desc"}`.
fn parse_fields(v: &Value, what: &str) -> CouchResult<Vec<(String, bool)>> {
    let Value::Array(items) = v else {
        return Err(CouchError::bad_request(format!("{what} must be an array")));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.is_empty() => Ok((s.clone(), true)),
            Value::Object(m) if m.len() == 1 => {
                let (k, dir) = m.iter().next().ok_or_else(|| missing_key(what))?;
                match dir.as_str() {
                    Some("asc") => Ok((k.clone(), true)),
                    Some("desc") => Ok((k.clone(), false)),
                    _ => Err(CouchError::bad_request(format!(
                        "Invalid sort direction in {what}: use \"asc\" or \"desc\""
                    ))),
                }
            }
            _ => Err(CouchError::bad_request(format!(
                "Invalid {what} field: {item}"
            ))),
        })
        .collect()
}

/// The JSON indexes defined in one design document.
fn indexes_of(ddoc: &str, body: &Map<String, Value>) -> Vec<Index> {
    if body.get("language").and_then(Value::as_str) != Some("query") {
        return Vec::new();
    }
    let Some(Value::Object(views)) = body.get("views") else {
        return Vec::new();
    };
    views
        .iter()
        .filter_map(|(name, view)| {
            let def = view.pointer("/options/def")?;
            let fields = parse_fields(def.get("fields")?, "fields").ok()?;
            Some(Index {
                ddoc: Some(ddoc.to_owned()),
                name: name.clone(),
                fields,
                partial: view.pointer("/map/partial_filter_selector").cloned(),
            })
        })
        .collect()
}

/// Every index of the database, `_all_docs` first, then by design document and name.
fn list_indexes(hub: &HubState, db: &str) -> CouchResult<Vec<Index>> {
    let q = AllDocsQuery {
        start_key: Some("_design/".into()),
        end_key: Some("_design0".into()),
        exclusive_end: true,
        limit: None,
        skip: 0,
        descending: false,
    };
    let (rows, _) = hub.store.all_docs(db, &q)?;
    let mut out = vec![Index::all_docs()];
    for row in rows {
        match hub.store.get(db, &row.id, &GetOptions::default()) {
            Ok(d) => out.extend(indexes_of(row.id.as_str(), &d.body)),
            Err(store::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The value at a dotted field path (`a.b.c`; `\.` escapes a dot).
fn field<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = doc;
    let mut part = String::new();
    let mut chars = path.chars().peekable();
    loop {
        match chars.next() {
            Some('\\') if chars.peek() == Some(&'.') => {
                part.push('.');
                chars.next();
            }
            Some('.') => {
                cur = cur.as_object()?.get(&part)?;
                part.clear();
            }
            Some(c) => part.push(c),
            None => return cur.as_object()?.get(&part),
        }
    }
}

/// Sets a dotted field path in `out`, creating the objects on the way.
fn set_field(out: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            out.insert(path.to_owned(), v);
        }
        Some((head, rest)) => {
            let entry = out
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                set_field(m, rest, v);
            }
        }
    }
}

/// The field names a selector constrains at its top level (and inside `$and`), which an index
/// may serve (CouchDB's rule: every indexed field must be in the selector).
fn selector_fields(sel: &Value, out: &mut Vec<String>) {
    let Value::Object(m) = sel else { return };
    for (k, v) in m {
        if k == "$and" {
            for s in v.as_array().into_iter().flatten() {
                selector_fields(s, out);
            }
        } else if !k.starts_with('$') {
            // `{"a": {"b": 1}}` names `a.b`, `{"a": {"$gt": 1}}` names `a`.
            match v {
                Value::Object(inner) if inner.keys().all(|ik| !ik.starts_with('$')) => {
                    let mut sub = Vec::new();
                    selector_fields(v, &mut sub);
                    out.extend(sub.into_iter().map(|s| format!("{k}.{s}")));
                }
                Value::Object(inner) if inner.get("$exists") == Some(&Value::Bool(false)) => {}
                _ => out.push(k.clone()),
            }
        }
    }
}

/// A parsed `_find` request.
struct Query {
    selector: Value,
    checked: Selector,
    fields: Option<Vec<String>>,
    sort: Vec<(String, bool)>,
    limit: usize,
    skip: usize,
    offset: usize,
    use_index: Option<(Option<String>, Option<String>)>,
    conflicts: bool,
    execution_stats: bool,
}

fn parse_query(v: &Value) -> CouchResult<Query> {
    let Value::Object(m) = v else {
        return Err(CouchError::bad_request(
            "Request body must be a JSON object",
        ));
    };
    let selector = m
        .get("selector")
        .cloned()
        .ok_or_else(|| missing_key("selector"))?;
    if !selector.is_object() {
        return Err(CouchError::bad_request(
            "Selector error: expected a JSON object",
        ));
    }
    let checked = Selector::parse(&selector)?;
    let fields = match m.get("fields") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|f| {
                    f.as_str().map(str::to_owned).ok_or_else(|| {
                        CouchError::bad_request("fields must be an array of strings")
                    })
                })
                .collect::<CouchResult<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(CouchError::bad_request(
                "fields must be an array of strings",
            ));
        }
    };
    let sort = match m.get("sort") {
        None => Vec::new(),
        Some(s) => parse_fields(s, "sort")?,
    };
    if sort.iter().any(|(_, a)| *a) && sort.iter().any(|(_, a)| !*a) {
        return Err(CouchError::bad_request(
            "Sorts currently only support a single direction for all fields.",
        ));
    }
    let count = |key: &str, default: usize| -> CouchResult<usize> {
        match m.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
                CouchError::bad_request(format!("{key} must be a non-negative integer"))
            }),
        }
    };
    let limit = count("limit", 25)?;
    let skip = count("skip", 0)?;
    let offset = match m.get("bookmark") {
        None | Some(Value::Null) => 0,
        Some(Value::String(b)) if b == "nil" => 0,
        Some(Value::String(b)) => decode_bookmark(b)?,
        Some(other) => {
            return Err(CouchError::new(
                StatusCode::BAD_REQUEST,
                "invalid_bookmark",
                format!("Invalid bookmark value: {other}"),
            ));
        }
    };
    let use_index = match m.get("use_index") {
        None => None,
        Some(Value::String(s)) => Some((Some(normalize_ddoc(s)), None)),
        Some(Value::Array(a)) if a.len() == 1 || a.len() == 2 => {
            let s = |i: usize| a.get(i).and_then(Value::as_str).map(str::to_owned);
            Some((s(0).map(|d| normalize_ddoc(&d)), s(1)))
        }
        Some(_) => {
            return Err(CouchError::bad_request(
                "use_index must be a design document name or [ddoc, index]",
            ));
        }
    };
    let flag = |key: &str| m.get(key).and_then(Value::as_bool).unwrap_or(false);
    Ok(Query {
        selector,
        checked,
        fields,
        sort,
        limit,
        skip,
        offset,
        use_index,
        conflicts: flag("conflicts"),
        execution_stats: flag("execution_stats"),
    })
}

fn normalize_ddoc(s: &str) -> String {
    if s.starts_with("_design/") {
        s.to_owned()
    } else {
        format!("_design/{s}")
    }
}

fn encode_bookmark(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("hearth-offset:{offset}"))
}

fn decode_bookmark(b: &str) -> CouchResult<usize> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix("hearth-offset:")?.parse().ok())
        .ok_or_else(|| {
            CouchError::new(
                StatusCode::BAD_REQUEST,
                "invalid_bookmark",
                format!("Invalid bookmark value: \"{b}\""),
            )
        })
}

/// Chooses the index for a query as CouchDB does: the one named by `use_index` (an error if
/// it cannot serve the query), else a JSON index whose fields are all in the selector and which
/// covers the sort, else `_all_docs` (which serves only a sort on `_id`).
fn choose(q: &Query, indexes: &[Index]) -> CouchResult<(Index, Option<String>)> {
    let mut named = Vec::new();
    selector_fields(&q.selector, &mut named);
    let sort_fits = |ix: &Index| {
        q.sort.is_empty()
            || (q.sort.len() <= ix.fields.len()
                && q.sort.iter().zip(&ix.fields).all(|((a, _), (b, _))| a == b))
    };
    let usable = |ix: &Index| {
        sort_fits(ix) && (ix.ddoc.is_none() || ix.fields.iter().all(|(f, _)| named.contains(f)))
    };
    if let Some((ddoc, name)) = &q.use_index {
        let found = indexes
            .iter()
            .find(|ix| ix.ddoc == *ddoc && name.as_ref().is_none_or(|n| *n == ix.name));
        match found {
            Some(ix) if usable(ix) => return Ok((ix.clone(), None)),
            _ => {
                let warning = format!(
                    "{} was not used because it does not contain a valid index for this query.",
                    ddoc.clone().unwrap_or_default()
                );
                return pick(indexes, &usable, &sort_fits).map(|ix| (ix, Some(warning)));
            }
        }
    }
    pick(indexes, &usable, &sort_fits).map(|ix| (ix, None))
}

fn pick(
    indexes: &[Index],
    usable: &dyn Fn(&Index) -> bool,
    sort_fits: &dyn Fn(&Index) -> bool,
) -> CouchResult<Index> {
    let best = indexes
        .iter()
        .filter(|ix| ix.ddoc.is_some() && usable(ix))
        .max_by(|a, b| {
            a.fields
                .len()
                .cmp(&b.fields.len())
                .then_with(|| b.name.cmp(&a.name))
        });
    if let Some(ix) = best {
        return Ok(ix.clone());
    }
    let all = Index::all_docs();
    if sort_fits(&all) {
        return Ok(all);
    }
    Err(CouchError::new(
        StatusCode::BAD_REQUEST,
        "no_usable_index",
        "No index exists for this sort, try indexing by the sort fields.",
    ))
}

/// The answer of `_find`: matching documents, in order, and what the scan cost.
struct Found {
    docs: Vec<Value>,
    next_offset: usize,
    examined: usize,
    /// What the documents disclose, for the audit trail.
    sent: crate::Disclosed,
}

fn run(
    hub: &HubState,
    db: &str,
    gate: &crate::access::Gate,
    q: &Query,
    ix: &Index,
) -> CouchResult<Found> {
    let access = gate.access(&hub.store, db)?;
    let opts = GetOptions {
        conflicts: q.conflicts,
        ..GetOptions::default()
    };
    let partial = match &ix.partial {
        Some(sel) => Some(Selector::parse(sel)?),
        None => None,
    };
    let start = q.offset + q.skip;
    // Without a sort other than by id the scan stops once the page is full.
    let by_id = q.sort.is_empty() || ix.ddoc.is_none();
    let wanted = start.saturating_add(q.limit);
    let mut matched: Vec<Value> = Vec::new();
    let mut examined = 0;
    let mut after: Option<String> = None;
    'scan: loop {
        let page = AllDocsQuery {
            start_key: after.clone(),
            end_key: None,
            exclusive_end: false,
            limit: Some(PAGE + 1),
            skip: 0,
            descending: false,
        };
        let (rows, _) = hub.store.all_docs(db, &page)?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| after.as_deref() != Some(r.id.as_str()))
            .collect();
        let Some(last) = rows.last() else { break };
        after = Some(last.id.as_str().to_owned());
        for r in rows {
            let id = r.id.as_str();
            if id.starts_with("_design/") || !access.may_read(id) {
                continue;
            }
            let doc = match hub.store.get(db, &r.id, &opts) {
                Ok(d) => d.to_json(),
                Err(store::Error::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            examined += 1;
            // A JSON index holds only documents with every indexed field (and passing its
            // partial filter).
            if ix.ddoc.is_some()
                && (ix.fields.iter().any(|(f, _)| field(&doc, f).is_none())
                    || partial.as_ref().is_some_and(|s| !s.matches(&doc)))
            {
                continue;
            }
            if q.checked.matches(&doc) {
                matched.push(doc);
                if by_id && matched.len() >= wanted {
                    break 'scan;
                }
            }
        }
    }
    if !q.sort.is_empty() {
        let descending = !q.sort[0].1;
        matched.sort_by(|a, b| {
            let mut o = Ordering::Equal;
            for (f, _) in &q.sort {
                o = match (field(a, f), field(b, f)) {
                    (Some(x), Some(y)) => collate(x, y),
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                if o != Ordering::Equal {
                    break;
                }
            }
            if descending { o.reverse() } else { o }
        });
    }
    let mut sent = crate::Disclosed::default();
    let docs: Vec<Value> = matched
        .into_iter()
        .skip(start)
        .take(q.limit)
        .map(|d| {
            // Counted before the projection, which may leave out what names the patient.
            sent.note_value(d["_id"].as_str().unwrap_or(""), &d);
            project(d, q.fields.as_deref())
        })
        .collect();
    Ok(Found {
        next_offset: start + docs.len(),
        docs,
        examined,
        sent,
    })
}

/// Keeps only the named fields (all when `None`), in the order the query names them.
fn project(doc: Value, fields: Option<&[String]>) -> Value {
    let Some(fields) = fields else { return doc };
    let mut out = Map::new();
    for f in fields {
        if let Some(v) = field(&doc, f) {
            set_field(&mut out, f, v.clone());
        }
    }
    Value::Object(out)
}

/// The query of a `_find` or `_explain` request: POST only, a JSON body.
fn query_of(db: &str, method: &Method, headers: &HeaderMap, body: &Bytes) -> CouchResult<Query> {
    check_db(db)?;
    if method != Method::POST {
        return Err(crate::db::method_not_allowed_error("POST"));
    }
    parse_query(&json_body(headers, body)?)
}

/// `POST /{db}/_find`.
pub(crate) async fn find(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    let q = query_of(&db, &method, &headers, &body)?;
    blocking(move || {
        let started = Instant::now();
        let indexes = list_indexes(&hub, &db)?;
        let (ix, warning) = choose(&q, &indexes)?;
        let found = run(&hub, &db, &gate_p, &q, &ix)?;
        hub.disclosed(&p, "sync", &format!("_find db={db}"), &found.sent)?;
        let returned = found.docs.len();
        let mut out = json!({
            "docs": found.docs,
            "bookmark": encode_bookmark(found.next_offset),
        });
        let warning = warning.or_else(|| {
            ix.ddoc.is_none().then(|| {
                "No matching index found, create an index to optimize query time.".to_owned()
            })
        });
        if let Some(w) = warning {
            out["warning"] = Value::String(w);
        }
        if q.execution_stats {
            out["execution_stats"] = json!({
                "total_keys_examined": 0,
                "total_docs_examined": found.examined,
                "total_quorum_docs_examined": 0,
                "results_returned": returned,
                "execution_time_ms": started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        Ok(json(StatusCode::OK, out))
    })
    .await
}

/// `POST /{db}/_explain`: the index a query would use, and its options.
pub(crate) async fn explain(
    State(hub): State<HubState>,
    Path(db): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let q = query_of(&db, &method, &headers, &body)?;
    // It answers with index definitions (design documents every account may read) and the
    // query itself, never a document.
    blocking(move || {
        let indexes = list_indexes(&hub, &db)?;
        let (ix, _) = choose(&q, &indexes)?;
        let sort: Vec<Value> = q
            .sort
            .iter()
            .map(|(f, asc)| json!({ f.as_str(): if *asc { "asc" } else { "desc" } }))
            .collect();
        Ok(json(
            StatusCode::OK,
            json!({
                "dbname": db,
                "index": ix.to_json(),
                "partitioned": false,
                "selector": q.selector,
                "opts": {
                    "use_index": [],
                    "bookmark": if q.offset == 0 { "nil".to_owned() } else { encode_bookmark(q.offset) },
                    "limit": q.limit,
                    "skip": q.skip,
                    "sort": sort,
                    "fields": q.fields.clone().map_or(json!("all_fields"), |f| json!(f)),
                    "conflicts": q.conflicts,
                    "execution_stats": q.execution_stats,
                },
                "limit": q.limit,
                "skip": q.skip,
                "fields": q.fields.map_or(json!("all_fields"), |f| json!(f)),
            }),
        ))
    })
    .await
}

/// `GET|POST /{db}/_index`: list indexes, or create one.
pub(crate) async fn index(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path(db): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    check_db(&db)?;
    match method {
        Method::GET => {
            blocking(move || {
                let list: Vec<Value> = list_indexes(&hub, &db)?
                    .iter()
                    .map(Index::to_json)
                    .collect();
                Ok(json(
                    StatusCode::OK,
                    json!({"total_rows": list.len(), "indexes": list}),
                ))
            })
            .await
        }
        Method::POST => {
            let v = json_body(&headers, &body)?;
            create_index(hub, gate_p.clone(), db, v).await
        }
        _ => Err(crate::db::method_not_allowed_error("GET,POST")),
    }
}

async fn create_index(
    hub: HubState,
    gate_p: crate::access::Gate,
    db: String,
    v: Value,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    let Value::Object(m) = v else {
        return Err(CouchError::bad_request(
            "Request body must be a JSON object",
        ));
    };
    match m.get("type").and_then(Value::as_str) {
        None | Some("json") => {}
        Some(other) => {
            return Err(invalid_index(format!(
                "Index type {other:?} is not supported: the hub serves JSON indexes only (text and nouveau indexes need a search service it does not run)"
            )));
        }
    }
    let index = m.get("index").ok_or_else(|| missing_key("index"))?;
    let fields = parse_fields(
        index.get("fields").ok_or_else(|| missing_key("fields"))?,
        "fields",
    )?;
    if fields.is_empty() {
        return Err(invalid_index("An index needs at least one field."));
    }
    let given_fields = index.get("fields").cloned().unwrap_or(Value::Null);
    let partial = index.get("partial_filter_selector").cloned();
    if let Some(sel) = &partial {
        Selector::parse(sel)?;
    }
    let def_fields: Vec<Value> = fields
        .iter()
        .map(|(f, asc)| json!({ f.as_str(): if *asc { "asc" } else { "desc" } }))
        .collect();
    let hash = hex::encode(Md5::digest(
        serde_json::to_vec(&json!({"fields": def_fields, "partial": partial})).unwrap_or_default(),
    ));
    let name_of = |k: &str| -> CouchResult<Option<String>> {
        match m.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(invalid_index(format!("{k} must be a non-empty string"))),
        }
    };
    let ddoc = normalize_ddoc(&name_of("ddoc")?.unwrap_or_else(|| hash.clone()));
    let name = name_of("name")?.unwrap_or(hash);
    let ddoc_id = DocId::parse(&ddoc).map_err(|_| invalid_index("Invalid design document name"))?;
    blocking(move || {
        if !gate_p.access(&hub.store, &db)?.may_write(&ddoc, false) {
            hub.denied(&p, &db, &ddoc, "create an index through the couchdb api")?;
            return Err(CouchError::unauthorized("You are not a db or server admin."));
        }
        let (mut body, rev) = match hub.store.get(&db, &ddoc_id, &GetOptions::default()) {
            Ok(d) => (d.body, Some(d.rev)),
            Err(store::Error::NotFound(_)) => (Map::new(), None),
            Err(e) => return Err(e.into()),
        };
        let wanted = Index {
            ddoc: Some(ddoc.clone()),
            name: name.clone(),
            fields: fields.clone(),
            partial: partial.clone(),
        };
        if indexes_of(&ddoc, &body).contains(&wanted) {
            return Ok(json(
                StatusCode::OK,
                json!({"result": "exists", "id": ddoc, "name": name}),
            ));
        }
        if rev.is_some() && body.get("language").and_then(Value::as_str) != Some("query") {
            return Err(invalid_index(format!(
                "{ddoc} is not a query design document (its language is not \"query\")"
            )));
        }
        body.insert("language".into(), json!("query"));
        let views = body
            .entry("views")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(views) = views else {
            return Err(invalid_index(format!("{ddoc} has views that are not an object")));
        };
        let mut map = json!({ "fields": fields.iter().map(|(f, asc)| (f.clone(), json!(if *asc { "asc" } else { "desc" }))).collect::<Map<String, Value>>() });
        if let Some(pf) = &partial {
            map["partial_filter_selector"] = pf.clone();
        }
        views.insert(
            name.clone(),
            json!({
                "map": map,
                "reduce": "_count",
                // The definition as given, as CouchDB keeps it.
                "options": {"def": {"fields": given_fields}},
            }),
        );
        let w = DocWrite::new(ddoc_id, rev, body);
        crate::doc::write_one(&hub, &gate_p, &db, w, true)?;
        Ok(json(
            StatusCode::OK,
            json!({"result": "created", "id": ddoc, "name": name}),
        ))
    })
    .await
}

/// `DELETE /{db}/_index/{ddoc}/json/{name}`.
pub(crate) async fn delete_index(
    State(hub): State<HubState>,
    gate_p: crate::access::Gate,
    Path((db, ddoc, kind, name)): Path<(String, String, String, String)>,
    method: Method,
) -> CouchResult<Response> {
    let p = gate_p.session().clone();
    check_db(&db)?;
    if method != Method::DELETE {
        return Err(crate::db::method_not_allowed_error("DELETE"));
    }
    if kind != "json" {
        return Err(CouchError::not_found("Index not found"));
    }
    let ddoc = normalize_ddoc(&ddoc);
    blocking(move || {
        let ddoc_id = DocId::parse(&ddoc).map_err(|_| CouchError::not_found("Index not found"))?;
        if !gate_p.access(&hub.store, &db)?.may_write(&ddoc, false) {
            hub.denied(&p, &db, &ddoc, "delete an index through the couchdb api")?;
            return Err(CouchError::unauthorized(
                "You are not a db or server admin.",
            ));
        }
        let d = match hub.store.get(&db, &ddoc_id, &GetOptions::default()) {
            Ok(d) => d,
            Err(store::Error::NotFound(_)) => return Err(CouchError::not_found("Index not found")),
            Err(e) => return Err(e.into()),
        };
        if !indexes_of(&ddoc, &d.body).iter().any(|ix| ix.name == name) {
            return Err(CouchError::not_found("Index not found"));
        }
        let mut body = d.body;
        let empty = match body.get_mut("views") {
            Some(Value::Object(views)) => {
                views.shift_remove(&name);
                views.is_empty()
            }
            _ => true,
        };
        // The last index of a design document takes the document with it, as CouchDB does.
        let mut w = DocWrite::new(ddoc_id, Some(d.rev), if empty { Map::new() } else { body });
        w.deleted = empty;
        crate::doc::write_one(&hub, &gate_p, &db, w, true)?;
        Ok(json(StatusCode::OK, json!({"ok": true})))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_read_and_write_nested_members() {
        let doc = json!({"a": {"b": {"c": 1}}, "x.y": 2});
        assert_eq!(field(&doc, "a.b.c"), Some(&json!(1)));
        assert_eq!(field(&doc, "x\\.y"), Some(&json!(2)));
        assert_eq!(field(&doc, "a.z"), None);
        let mut out = Map::new();
        set_field(&mut out, "a.b.c", json!(1));
        assert_eq!(Value::Object(out), json!({"a": {"b": {"c": 1}}}));
    }

    #[test]
    fn bookmarks_round_trip_and_refuse_garbage() {
        assert_eq!(decode_bookmark(&encode_bookmark(42)).unwrap(), 42);
        assert_eq!(
            decode_bookmark("not a bookmark").unwrap_err().error,
            "invalid_bookmark"
        );
    }

    #[test]
    fn selector_fields_follow_and_and_nesting() {
        let mut f = Vec::new();
        selector_fields(
            &json!({"a": 1, "b": {"$gt": 2}, "c": {"d": 3}, "$and": [{"e": 4}], "g": {"$exists": false}}),
            &mut f,
        );
        assert_eq!(f, ["a", "b", "c.d", "e"]);
    }
}
