//! The two kinds of replication endpoint: a database in this node's store, and a database on a
//! CouchDB-compatible server over HTTP (a Hearth hub, CouchDB, PouchDB Server). Both speak the
//! same operations of the protocol; documents travel as CouchDB JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use revtree::Rev;
use serde_json::{Map, Value, json};
use store::{AuditEvent, ChangesQuery, DocId, DocWrite, OpenRev, OpenRevs, Session, Store, Style};

use crate::Error;

/// A sequence as an endpoint gives it: a number (Hearth, PouchDB) or an opaque string (CouchDB).
pub type Seq = Value;

/// One row of a changes page.
#[derive(Clone, Debug)]
pub struct ChangeRow {
    /// Sequence of the change.
    pub seq: Seq,
    /// Document id.
    pub id: String,
    /// Leaf revisions.
    pub revs: Vec<Rev>,
}

/// A page of changes.
#[derive(Clone, Debug)]
pub struct ChangesPage {
    /// Rows.
    pub rows: Vec<ChangeRow>,
    /// Where to continue.
    pub last_seq: Seq,
}

/// A per-document write failure on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocError {
    /// Document id.
    pub id: String,
    /// CouchDB's error name.
    pub error: String,
    /// The reason.
    pub reason: String,
}

/// A database in this node's own store.
#[derive(Clone)]
pub struct LocalDb {
    /// The store.
    pub store: Arc<Store>,
    /// Database name.
    pub db: String,
    /// Who replicates (audited): a person's session, or the hub's relay.
    pub actor: Session,
}

/// A database on a CouchDB-compatible server.
#[derive(Clone)]
pub struct HttpDb {
    client: reqwest::Client,
    /// `http://host:port/db` without credentials.
    url: String,
    auth: Option<String>,
    observer: Option<Arc<dyn Fn(Duration) + Send + Sync>>,
    /// Set when the database is reached through the hub's encrypted RPC transport: the
    /// client and the database's path on the hub (`/{db}`).
    rpc: Option<(Arc<crate::rpc::RpcClient>, String)>,
}

impl std::fmt::Debug for HttpDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDb")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Either endpoint.
#[derive(Clone)]
pub enum Endpoint {
    /// This node.
    Local(LocalDb),
    /// A server.
    Http(HttpDb),
}

/// Percent-encodes a path segment like JavaScript's `encodeURIComponent`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn doc_path(id: &str) -> String {
    match id.strip_prefix("_design/") {
        Some(rest) => format!("_design/{}", encode_component(rest)),
        None => match id.strip_prefix("_local/") {
            Some(rest) => format!("_local/{}", encode_component(rest)),
            None => encode_component(id),
        },
    }
}

impl HttpDb {
    /// A database at `url` (`http://host:port/db`). Credentials may be in the URL's userinfo or
    /// given as `user` and `password`.
    pub fn new(url: &str, user: Option<&str>, password: Option<&str>) -> Result<HttpDb, Error> {
        HttpDb::new_pinned(url, user, password, None)
    }

    /// As [`HttpDb::new`]; with `fingerprint`, an `https://` server must present exactly the
    /// certificate with that SHA-256 (hex) instead of one a certificate authority signed.
    pub fn new_pinned(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
        fingerprint: Option<&str>,
    ) -> Result<HttpDb, Error> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!("{url:?} is not an http:// URL")));
        }
        let url_user = (!parsed.username().is_empty()).then(|| decode(parsed.username()));
        let url_pw = parsed.password().map(decode);
        let mut clean = parsed.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        let user = user.map(str::to_owned).or(url_user);
        let password = password.map(str::to_owned).or(url_pw);
        let auth = user.map(|u| {
            let raw = format!("{u}:{}", password.unwrap_or_default());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        // Compression pays on a network link (FHIR JSON shrinks several times), not on
        // loopback, where it only costs CPU on both ends.
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        let mut builder = reqwest::Client::builder();
        if let Some(fp) = fingerprint {
            if parsed.scheme() != "https" {
                return Err(Error::Config(
                    "a pinned certificate needs an https:// URL".into(),
                ));
            }
            builder = builder
                .use_preconfigured_tls(crate::pinned::client_config(fp).map_err(Error::Config)?);
        }
        let client = builder
            .gzip(!loopback)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| Error::Config(format!("cannot make an HTTP client: {e}")))?;
        Ok(HttpDb {
            client,
            url: clean.as_str().trim_end_matches('/').to_owned(),
            auth,
            observer: None,
            rpc: None,
        })
    }

    /// Database `db` on the paired hub, through the encrypted RPC transport.
    pub fn over_rpc(client: Arc<crate::rpc::RpcClient>, db: &str) -> Result<HttpDb, Error> {
        store::validate_db_name(db)?;
        Ok(HttpDb {
            client: reqwest::Client::new(),
            url: format!("{}/{db}", client.addr()),
            auth: None,
            observer: None,
            rpc: Some((client, format!("/{}", encode_component(db)))),
        })
    }

    /// Calls `f` with the duration of every request (benchmarks report latency percentiles).
    pub fn observe(mut self, f: Arc<dyn Fn(Duration) + Send + Sync>) -> HttpDb {
        self.observer = Some(f);
        self
    }

    /// The URL, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        let body = body.map(|b| bytes::Bytes::from(serde_json::to_vec(b).unwrap_or_default()));
        self.request_bytes(method, path, body).await
    }

    async fn request_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<(u16, Value), Error> {
        if let Some((rpc, db)) = &self.rpc {
            let full = if path.is_empty() {
                db.clone()
            } else {
                format!("{db}/{path}")
            };
            let started = std::time::Instant::now();
            // Calls on one channel take turns (envelope counters must arrive in order). Run
            // each in its own task, so a call that holds the turn always finishes even if the
            // pipeline stage that asked for it is waiting on something else before polling it
            // again (otherwise the other stages would wait for the turn forever).
            let (rpc, m) = (rpc.clone(), method.as_str().to_owned());
            let r = tokio::spawn(async move { rpc.couch(&m, &full, body).await })
                .await
                .map_err(|_| Error::Protocol("an RPC call task failed".into()))??;
            if let Some(f) = &self.observer {
                f(started.elapsed());
            }
            let v: Value = if r.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&r.body).map_err(|_| Error::Transport {
                    what: format!("{method} {}", redact_path(path)),
                    reason: format!("the hub answered {} with a body that is not JSON", r.status),
                })?
            };
            return Ok((r.status, v));
        }
        let url = if path.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{path}", self.url)
        };
        let mut req = self
            .client
            .request(method.clone(), &url)
            .header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|e| Error::Transport {
            what: format!("{method} {}", redact_path(path)),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| Error::Transport {
            what: format!("{method} {}", redact_path(path)),
            reason: format!("reading the response: {e}"),
        })?;
        if let Some(f) = &self.observer {
            f(started.elapsed());
        }
        let v: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| Error::Transport {
                what: format!("{method} {}", redact_path(path)),
                reason: format!("the server answered {status} with a body that is not JSON"),
            })?
        };
        Ok((status, v))
    }

    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let body = body.map(|b| bytes::Bytes::from(serde_json::to_vec(b).unwrap_or_default()));
        self.ok_bytes(method, path, body).await
    }

    async fn ok_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<Value, Error> {
        let (status, v) = self.request_bytes(method.clone(), path, body).await?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(Error::Http {
                what: format!("{method} {}", redact_path(path)),
                status,
                error: v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                reason: v
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })
        }
    }
}

/// Document ids can be PHI-adjacent; errors name the endpoint, not the id.
fn redact_path(path: &str) -> String {
    let head = path.split('?').next().unwrap_or("");
    if head.starts_with('_') || head.is_empty() {
        format!("/{head}")
    } else {
        "/{docid}".to_owned()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = (b[i + 1] as char).to_digit(16);
            let l = (b[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn seq_param(s: &Seq) -> String {
    match s {
        Value::String(x) => encode_component(x),
        Value::Null => "0".into(),
        other => encode_component(&other.to_string()),
    }
}

fn seq_u64(s: &Seq) -> Result<u64, Error> {
    match s {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| Error::Protocol("a sequence is not a non-negative integer".into())),
        Value::String(x) => x
            .split('-')
            .next()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| Error::Protocol(format!("{x:?} is not a sequence of this store"))),
        _ => Err(Error::Protocol("a sequence is not a number".into())),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::Protocol("a store task failed".into()))?
}

/// A revision with its attachments inline (base64), as `_bulk_get?attachments=true` sends it.
pub fn doc_with_attachments(store: &Store, db: &str, d: &store::Document) -> Result<Value, Error> {
    let mut v = d.to_json();
    if let Some(Value::Object(atts)) = v.get_mut("_attachments") {
        for (name, info) in &d.attachments {
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

/// The `_bulk_docs` request body for replicated revisions.
pub fn bulk_docs_body(docs: &[Value]) -> bytes::Bytes {
    bytes::Bytes::from(
        serde_json::to_vec(&json!({"docs": docs, "new_edits": false})).unwrap_or_default(),
    )
}

impl HttpDb {
    /// Posts a serialized `_bulk_docs` body (see `bulk_docs_body`); returns per-document
    /// errors. The body is cheap to clone, so a retry does not re-serialize.
    pub async fn bulk_docs_bytes(&self, body: bytes::Bytes) -> Result<Vec<DocError>, Error> {
        let v = self
            .ok_bytes(reqwest::Method::POST, "_bulk_docs", Some(body))
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r.get("error").is_some())
            .map(|r| DocError {
                id: r.get("id").and_then(Value::as_str).unwrap_or("").into(),
                error: r.get("error").and_then(Value::as_str).unwrap_or("").into(),
                reason: r.get("reason").and_then(Value::as_str).unwrap_or("").into(),
            })
            .collect())
    }
}

/// Replicated revisions checked and converted for a local store, ready to write. Converting
/// is separate from writing so the replicator can do it while the previous batch is written.
pub struct Prepared {
    writes: Vec<DocWrite>,
    errors: Vec<DocError>,
}

impl Prepared {
    /// Documents in the batch (good and refused).
    pub fn len(&self) -> usize {
        self.writes.len() + self.errors.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn doc_error(id: String, e: &store::Error) -> DocError {
    let (_, name) = e.couch_status();
    DocError {
        id,
        error: name.into(),
        reason: e.to_string(),
    }
}

/// Checks and converts replicated revisions (CouchDB JSON with `_rev` and `_revisions`).
pub fn prepare(docs: Vec<Value>) -> Prepared {
    let mut errors = Vec::new();
    let mut writes = Vec::with_capacity(docs.len());
    for d in docs {
        let id = d
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match DocWrite::from_json(d, None) {
            Ok(w) if w.rev.is_some() => writes.push(w),
            Ok(_) => errors.push(DocError {
                id,
                error: "bad_request".into(),
                reason: "a replicated document has no _rev".into(),
            }),
            Err(e) => errors.push(doc_error(id, &e)),
        }
    }
    Prepared { writes, errors }
}

impl LocalDb {
    /// Writes prepared revisions in one transaction, with one audit entry; returns the
    /// per-document errors.
    pub async fn write(&self, batch: Prepared, source: &str) -> Result<Vec<DocError>, Error> {
        let l = self.clone();
        let source = source.to_owned();
        blocking(move || {
            let Prepared { writes, mut errors } = batch;
            let ids: Vec<String> = writes.iter().map(|w| w.id.as_str().to_owned()).collect();
            let n = writes.len();
            let event = l.audit(format!("replicated in db={} docs={n} from {source}", l.db));
            let results = l
                .store
                .bulk_docs_audited(&l.db, writes, false, move |_| vec![event])?;
            for (id, r) in ids.into_iter().zip(results) {
                if let Err(e) = r {
                    errors.push(doc_error(id, &e));
                }
            }
            Ok(errors)
        })
        .await
    }

    fn audit(&self, detail: String) -> AuditEvent {
        AuditEvent {
            user: self.actor.user().to_owned(),
            role: self.actor.audit_role().to_owned(),
            action: "sync".into(),
            outcome: "success".into(),
            patient: None,
            resource: None,
            detail: Some(detail),
            break_glass: false,
        }
    }
}

impl Endpoint {
    /// A stable name for the replication id and messages (no credentials).
    pub async fn identity(&self) -> Result<String, Error> {
        match self {
            Endpoint::Local(l) => {
                let store = l.store.clone();
                let (device, _) = blocking(move || Ok(store.device_identity()?)).await?;
                Ok(format!("hearth-local:{device}/{}", l.db))
            }
            Endpoint::Http(h) => Ok(h.url.clone()),
        }
    }

    /// Makes sure the database exists (creating it when `create`); returns its update sequence.
    pub async fn open(&self, create: bool) -> Result<Seq, Error> {
        match self {
            Endpoint::Local(l) => {
                let l = l.clone();
                blocking(move || {
                    if create {
                        l.store.ensure_db(&l.db)?;
                    }
                    Ok(json!(l.store.update_seq(&l.db)?))
                })
                .await
            }
            Endpoint::Http(h) => {
                let (status, v) = h.request(reqwest::Method::GET, "", None).await?;
                if status == 404 && create {
                    let (s, v) = h.request(reqwest::Method::PUT, "", None).await?;
                    if !(200..300).contains(&s) && s != 412 {
                        return Err(Error::Http {
                            what: "PUT /{db}".into(),
                            status: s,
                            error: v.get("error").and_then(Value::as_str).unwrap_or("").into(),
                            reason: v.get("reason").and_then(Value::as_str).unwrap_or("").into(),
                        });
                    }
                    return Ok(json!(0));
                }
                if !(200..300).contains(&status) {
                    return Err(Error::Http {
                        what: "GET /{db}".into(),
                        status,
                        error: v.get("error").and_then(Value::as_str).unwrap_or("").into(),
                        reason: v.get("reason").and_then(Value::as_str).unwrap_or("").into(),
                    });
                }
                Ok(v.get("update_seq").cloned().unwrap_or(Value::Null))
            }
        }
    }

    /// A page of changes after `since` (every leaf of each document). With `wait`, a server
    /// holds the request up to that long when there is nothing new (longpoll).
    pub async fn changes(
        &self,
        since: &Seq,
        limit: u64,
        wait: Option<Duration>,
    ) -> Result<ChangesPage, Error> {
        match self {
            Endpoint::Local(l) => {
                let since_n = seq_u64(since)?;
                if let Some(w) = wait {
                    let current = {
                        let l = l.clone();
                        blocking(move || Ok(l.store.update_seq(&l.db)?)).await?
                    };
                    if current <= since_n {
                        let _ =
                            tokio::time::timeout(w, l.store.wait_for_change(&l.db, since_n)).await;
                    }
                }
                let l = l.clone();
                blocking(move || {
                    let c = l.store.changes(
                        &l.db,
                        &ChangesQuery {
                            since: since_n,
                            limit: Some(limit),
                            style: Style::AllDocs,
                            ..ChangesQuery::default()
                        },
                    )?;
                    Ok(ChangesPage {
                        last_seq: json!(c.last_seq),
                        rows: c
                            .results
                            .into_iter()
                            .map(|r| ChangeRow {
                                seq: json!(r.seq),
                                id: r.id.as_str().to_owned(),
                                revs: r.changes,
                            })
                            .collect(),
                    })
                })
                .await
            }
            Endpoint::Http(h) => {
                let mut path = format!(
                    "_changes?style=all_docs&since={}&limit={limit}",
                    seq_param(since)
                );
                if let Some(w) = wait {
                    path.push_str(&format!("&feed=longpoll&timeout={}", w.as_millis()));
                }
                let v = h.ok(reqwest::Method::GET, &path, None).await?;
                let mut rows = Vec::new();
                for r in v
                    .get("results")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = r
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::Protocol("a change without an id".into()))?;
                    let revs = r
                        .get("changes")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.get("rev").and_then(Value::as_str)?.parse::<Rev>().ok())
                        .collect();
                    rows.push(ChangeRow {
                        seq: r.get("seq").cloned().unwrap_or(Value::Null),
                        id: id.to_owned(),
                        revs,
                    });
                }
                let last_seq = v
                    .get("last_seq")
                    .cloned()
                    .or_else(|| rows.last().map(|r| r.seq.clone()))
                    .unwrap_or_else(|| since.clone());
                Ok(ChangesPage { rows, last_seq })
            }
        }
    }

    /// Which of these revisions the endpoint lacks.
    pub async fn revs_diff(
        &self,
        asked: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, Vec<Rev>>, Error> {
        match self {
            Endpoint::Local(l) => {
                let l = l.clone();
                blocking(move || {
                    Ok(l.store
                        .revs_diff(&l.db, &asked)?
                        .into_iter()
                        .map(|(id, d)| (id, d.missing))
                        .collect())
                })
                .await
            }
            Endpoint::Http(h) => {
                let body: Map<String, Value> = asked
                    .into_iter()
                    .map(|(id, revs)| {
                        (
                            id,
                            json!(revs.iter().map(Rev::to_string).collect::<Vec<_>>()),
                        )
                    })
                    .collect();
                let v = h
                    .ok(
                        reqwest::Method::POST,
                        "_revs_diff",
                        Some(&Value::Object(body)),
                    )
                    .await?;
                let mut out = BTreeMap::new();
                for (id, d) in v.as_object().into_iter().flatten() {
                    let missing: Vec<Rev> = d
                        .get("missing")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str()?.parse().ok())
                        .collect();
                    if !missing.is_empty() {
                        out.insert(id.clone(), missing);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Reads these revisions with their history and attachments (`_bulk_get`, falling back to
    /// `open_revs` on servers without it). Revisions the endpoint does not have are skipped.
    pub async fn bulk_get(&self, wanted: Vec<(String, Vec<Rev>)>) -> Result<Vec<Value>, Error> {
        match self {
            Endpoint::Local(l) => {
                let l = l.clone();
                blocking(move || {
                    let mut out = Vec::new();
                    for (id, revs) in wanted {
                        let docid = DocId::parse(&id)?;
                        for o in
                            l.store
                                .open_revs(&l.db, &docid, &OpenRevs::Revs(revs), true, true)?
                        {
                            if let OpenRev::Ok(d) = o {
                                out.push(doc_with_attachments(&l.store, &l.db, &d)?);
                            }
                        }
                    }
                    if !out.is_empty() {
                        l.store.audit_append(&[l.audit(format!(
                            "read for replication db={} docs={}",
                            l.db,
                            out.len()
                        ))])?;
                    }
                    Ok(out)
                })
                .await
            }
            Endpoint::Http(h) => {
                let docs: Vec<Value> = wanted
                    .iter()
                    .flat_map(|(id, revs)| {
                        revs.iter()
                            .map(move |r| json!({"id": id, "rev": r.to_string()}))
                    })
                    .collect();
                let (status, v) = h
                    .request(
                        reqwest::Method::POST,
                        "_bulk_get?revs=true&attachments=true&latest=true",
                        Some(&json!({"docs": docs})),
                    )
                    .await?;
                if matches!(status, 400 | 404 | 405 | 501) && v.get("results").is_none() {
                    return self.open_revs_each(h, wanted).await;
                }
                if !(200..300).contains(&status) {
                    return Err(Error::Http {
                        what: "POST /_bulk_get".into(),
                        status,
                        error: v.get("error").and_then(Value::as_str).unwrap_or("").into(),
                        reason: v.get("reason").and_then(Value::as_str).unwrap_or("").into(),
                    });
                }
                let mut v = v;
                let mut out = Vec::new();
                if let Some(Value::Array(results)) = v.get_mut("results").map(Value::take) {
                    for mut r in results {
                        if let Some(Value::Array(docs)) = r.get_mut("docs").map(Value::take) {
                            for mut d in docs {
                                if let Some(doc) = d.get_mut("ok").map(Value::take) {
                                    out.push(doc);
                                }
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    async fn open_revs_each(
        &self,
        h: &HttpDb,
        wanted: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        for (id, revs) in wanted {
            let list = serde_json::to_string(&revs.iter().map(Rev::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            let path = format!(
                "{}?revs=true&latest=true&attachments=true&open_revs={}",
                doc_path(&id),
                encode_component(&list)
            );
            let v = h.ok(reqwest::Method::GET, &path, None).await?;
            for item in v.as_array().into_iter().flatten() {
                if let Some(doc) = item.get("ok") {
                    out.push(doc.clone());
                }
            }
        }
        Ok(out)
    }

    /// Stores replicated revisions as they are (`new_edits=false`); returns per-document errors.
    pub async fn bulk_docs(&self, docs: Vec<Value>, source: &str) -> Result<Vec<DocError>, Error> {
        match self {
            Endpoint::Local(l) => l.write(prepare(docs), source).await,
            Endpoint::Http(h) => h.bulk_docs_bytes(bulk_docs_body(&docs)).await,
        }
    }

    /// The winning revisions of these documents, for those that exist and are not deleted.
    pub async fn winners(&self, ids: BTreeSet<String>) -> Result<BTreeMap<String, Rev>, Error> {
        match self {
            Endpoint::Local(l) => {
                let l = l.clone();
                blocking(move || {
                    let mut out = BTreeMap::new();
                    for id in ids {
                        let Ok(docid) = DocId::parse(&id) else {
                            continue;
                        };
                        match l.store.rev_tree(&l.db, &docid) {
                            Ok(t) => {
                                if let Some(w) = t.winner().filter(|w| !w.deleted) {
                                    out.insert(id, w.rev);
                                }
                            }
                            Err(store::Error::NotFound(_)) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Ok(out)
                })
                .await
            }
            Endpoint::Http(h) => {
                let v = h
                    .ok(
                        reqwest::Method::POST,
                        "_all_docs",
                        Some(&json!({"keys": ids})),
                    )
                    .await?;
                let mut out = BTreeMap::new();
                for row in v
                    .get("rows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (Some(id), Some(rev)) = (
                        row.get("id").and_then(Value::as_str),
                        row.pointer("/value/rev").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    if row.pointer("/value/deleted") == Some(&Value::Bool(true)) {
                        continue;
                    }
                    if let Ok(r) = rev.parse() {
                        out.insert(id.to_owned(), r);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Reads a `_local` document: its body (with `_rev`), or `None`.
    pub async fn get_local(&self, id: &str) -> Result<Option<Value>, Error> {
        match self {
            Endpoint::Local(l) => {
                let l = l.clone();
                let id = id.to_owned();
                blocking(
                    move || match l.store.get_local(&l.db, &DocId::parse(&id)?) {
                        Ok((rev, body)) => {
                            let mut m = body;
                            m.insert("_rev".into(), rev.into());
                            Ok(Some(Value::Object(m)))
                        }
                        Err(store::Error::NotFound(_)) => Ok(None),
                        Err(e) => Err(e.into()),
                    },
                )
                .await
            }
            Endpoint::Http(h) => {
                let (status, v) = h.request(reqwest::Method::GET, &doc_path(id), None).await?;
                match status {
                    200 => Ok(Some(v)),
                    404 => Ok(None),
                    s => Err(Error::Http {
                        what: "GET /_local".into(),
                        status: s,
                        error: v.get("error").and_then(Value::as_str).unwrap_or("").into(),
                        reason: v.get("reason").and_then(Value::as_str).unwrap_or("").into(),
                    }),
                }
            }
        }
    }

    /// Writes a `_local` document over whatever is there.
    pub async fn put_local(&self, id: &str, mut body: Map<String, Value>) -> Result<(), Error> {
        let current = self.get_local(id).await?;
        let rev = current
            .as_ref()
            .and_then(|c| c.get("_rev"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match self {
            Endpoint::Local(l) => {
                let l = l.clone();
                let id = id.to_owned();
                blocking(move || {
                    body.shift_remove("_rev");
                    body.shift_remove("_id");
                    l.store
                        .put_local(&l.db, &DocId::parse(&id)?, rev.as_deref(), false, &body)?;
                    Ok(())
                })
                .await
            }
            Endpoint::Http(h) => {
                body.insert("_id".into(), id.into());
                if let Some(r) = rev {
                    body.insert("_rev".into(), r.into());
                }
                h.ok(
                    reqwest::Method::PUT,
                    &doc_path(id),
                    Some(&Value::Object(body)),
                )
                .await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert_eq!(encode_component("Patient/p 1"), "Patient%2Fp%201");
        assert_eq!(doc_path("_design/app"), "_design/app");
        assert_eq!(doc_path("_local/a/b"), "_local/a%2Fb");
        let h = HttpDb::new("http://sync:p%40ss@127.0.0.1:5984/records", None, None).unwrap();
        assert_eq!(h.url(), "http://127.0.0.1:5984/records");
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("sync:p@ss")
        );
        assert_eq!(h.auth.as_deref(), Some(expected.as_str()));
        assert!(HttpDb::new("ftp://x/y", None, None).is_err());
        assert_eq!(redact_path("Patient%2Fp1?x"), "/{docid}");
        assert_eq!(seq_u64(&json!("12-abc")).unwrap(), 12);
    }
}
