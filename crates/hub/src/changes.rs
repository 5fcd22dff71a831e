//! `_changes`: the feed replication reads, as `normal`, `longpoll` or `continuous`, filtered by
//! `_doc_ids`, `_selector` or `_design`. Responses stream a page at a time, so memory stays flat
//! however large the database. See <https://docs.couchdb.org/en/stable/api/database/changes.html>.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use store::{ChangesQuery, DocKind, Store, Style};

use crate::db::{check_db, json_body};
use crate::doc::doc_json;
use crate::error::{CouchError, CouchResult};
use crate::params::{Params, since_param};
use crate::selector::Selector;
use crate::{Disclosed, HubState, NoCompress, Session, blocking};

/// Rows read from the store per step.
const PAGE: u64 = 500;
/// Pages scanned per step when a filter rejects most rows (so one step stays short).
const MAX_PAGES_PER_STEP: usize = 8;
/// CouchDB's default `timeout` for longpoll and continuous feeds without a heartbeat.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Normal,
    /// Server-sent events: `data: {row}` and `id: {seq}` per change.
    EventSource,
    Longpoll,
    Continuous,
}

#[derive(Clone)]
enum Filter {
    None,
    DocIds(Arc<HashSet<String>>),
    Selector(Arc<Selector>),
    Design,
}

#[derive(Clone)]
struct Opts {
    db: String,
    descending: bool,
    style: Style,
    include_docs: bool,
    conflicts: bool,
    attachments: bool,
    filter: Filter,
    /// What the caller may receive: rows of other documents are left out.
    access: Arc<crate::Access>,
}

/// One step of the feed: serialized rows and where the scan stopped.
struct Step {
    /// Serialized rows with their sequences.
    rows: Vec<(u64, String)>,
    cursor: u64,
    exhausted: bool,
    /// The documents the rows carry, for the accounting of disclosures.
    docs: Disclosed,
}

fn step(store: &Store, o: &Opts, since: u64, want: u64) -> CouchResult<Step> {
    // Plain include_docs splices the stored winner into the row without parsing it; selectors,
    // conflicts and inline attachments need the parsed document.
    let raw_docs = o.include_docs
        && !o.conflicts
        && !o.attachments
        && !matches!(o.filter, Filter::Selector(_));
    let need_docs = (o.include_docs && !raw_docs) || matches!(o.filter, Filter::Selector(_));
    let mut rows = Vec::new();
    let mut cursor = since;
    let mut docs = Disclosed::default();
    for _ in 0..MAX_PAGES_PER_STEP {
        let page_limit = if matches!(o.filter, Filter::None) {
            PAGE.min(want - rows.len() as u64)
        } else {
            PAGE
        };
        let page = store.changes(
            &o.db,
            &ChangesQuery {
                since: cursor,
                limit: Some(page_limit),
                descending: o.descending,
                style: o.style,
                include_docs: need_docs,
                conflicts: o.conflicts,
            },
        )?;
        let n = page.results.len() as u64;
        for c in page.results {
            cursor = c.seq;
            let keep = match &o.filter {
                Filter::None => true,
                Filter::DocIds(ids) => ids.contains(c.id.as_str()),
                Filter::Design => c.id.kind() == DocKind::Design,
                Filter::Selector(sel) => {
                    let v = match &c.doc {
                        Some(d) => d.to_json(),
                        None => {
                            json!({"_id": c.id.as_str(), "_rev": c.changes[0].to_string(), "_deleted": true})
                        }
                    };
                    sel.matches(&v)
                }
            };
            if !keep || !o.access.may_read(c.id.as_str()) {
                continue;
            }
            let mut row = json!({
                "seq": c.seq,
                "id": c.id.as_str(),
                "changes": c.changes.iter().map(|r| json!({"rev": r.to_string()})).collect::<Vec<_>>(),
            });
            if c.deleted {
                row["deleted"] = true.into();
            }
            if raw_docs {
                let mut line = serde_json::to_vec(&row).unwrap_or_default();
                let doc = if c.deleted {
                    None
                } else {
                    match store.get_raw(&o.db, &c.id) {
                        Ok(d) => Some(d.to_json_bytes()),
                        Err(store::Error::NotFound(_)) => None,
                        Err(e) => return Err(e.into()),
                    }
                };
                let doc = match doc {
                    Some(d) => {
                        docs.note(c.id.as_str(), &d);
                        d
                    }
                    None => serde_json::to_vec(&json!({"_id": c.id.as_str(), "_rev": c.changes[0].to_string(), "_deleted": true}))
                        .unwrap_or_default(),
                };
                line.pop();
                line.extend_from_slice(b",\"doc\":");
                line.extend_from_slice(&doc);
                line.push(b'}');
                rows.push((c.seq, String::from_utf8(line).unwrap_or_default()));
                if rows.len() as u64 >= want {
                    return Ok(Step {
                        rows,
                        cursor,
                        exhausted: false,
                        docs,
                    });
                }
                continue;
            }
            if o.include_docs {
                row["doc"] = match &c.doc {
                    Some(d) => {
                        let v = doc_json(store, &o.db, d, o.attachments, None)?;
                        docs.note_value(c.id.as_str(), &v);
                        v
                    }
                    None => {
                        json!({"_id": c.id.as_str(), "_rev": c.changes[0].to_string(), "_deleted": true})
                    }
                };
            }
            rows.push((c.seq, serde_json::to_string(&row).unwrap_or_default()));
            if rows.len() as u64 >= want {
                return Ok(Step {
                    rows,
                    cursor,
                    exhausted: false,
                    docs,
                });
            }
        }
        if n < page_limit {
            return Ok(Step {
                rows,
                cursor,
                exhausted: true,
                docs,
            });
        }
        if !rows.is_empty() {
            break;
        }
    }
    Ok(Step {
        rows,
        cursor,
        exhausted: false,
        docs,
    })
}

fn pending(store: &Store, o: &Opts, after: u64) -> CouchResult<u64> {
    if o.descending {
        return Ok(0);
    }
    let c = store.changes(
        &o.db,
        &ChangesQuery {
            since: after,
            limit: Some(0),
            ..ChangesQuery::default()
        },
    )?;
    Ok(c.pending)
}

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, s: impl Into<Bytes>) -> Result<(), ()> {
    tx.send(Ok(s.into())).await.map_err(|_| ())
}

/// Waits for a change after `since`, sending heartbeats; `Ok(true)` when there is one,
/// `Ok(false)` at the deadline, `Err` when the client went away.
async fn wait(
    store: &Arc<Store>,
    db: &str,
    since: u64,
    deadline: Option<Instant>,
    heartbeat: Option<Duration>,
    tx: &Tx,
) -> Result<bool, ()> {
    let change = store.wait_for_change(db, since);
    tokio::pin!(change);
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        let until_deadline = deadline.map(|d| d - now);
        let nap = match (heartbeat, until_deadline) {
            (Some(h), Some(d)) => h.min(d),
            (Some(h), None) => h,
            (None, Some(d)) => d,
            (None, None) => Duration::from_secs(3600),
        };
        tokio::select! {
            r = &mut change => return Ok(r.is_ok()),
            () = tx.closed() => return Err(()),
            () = tokio::time::sleep(nap) => {
                if heartbeat.is_some() && deadline.is_none_or(|d| Instant::now() < d) {
                    send(tx, "\n").await?;
                }
            }
        }
    }
}

struct Feeder {
    hub: HubState,
    who: Session,
    o: Opts,
    feed: Feed,
    limit: u64,
    heartbeat: Option<Duration>,
    deadline: Option<Instant>,
}

impl Feeder {
    async fn step(&self, since: u64, want: u64) -> CouchResult<Step> {
        let hub = self.hub.clone();
        let o = self.o.clone();
        let who = self.who.clone();
        blocking(move || {
            let s = step(&hub.store, &o, since, want)?;
            hub.disclosed(
                &who,
                "sync",
                &format!("_changes include_docs db={}", o.db),
                &s.docs,
            )?;
            Ok(s)
        })
        .await
    }

    async fn run(self, first: Step, tx: Tx) -> Result<(), ()> {
        let store = self.hub.store.clone();
        let mut sent = 0u64;
        let mut step = first;
        let mut any = false;
        if matches!(self.feed, Feed::Normal | Feed::Longpoll) {
            send(&tx, "{\"results\":[\n").await?;
        }
        loop {
            for (seq, row) in step.rows.drain(..) {
                let chunk = match self.feed {
                    Feed::Continuous => format!("{row}\n"),
                    Feed::EventSource => format!("data: {row}\nid: {seq}\n\n"),
                    _ if any => format!(",\n{row}"),
                    _ => row,
                };
                any = true;
                sent += 1;
                send(&tx, chunk).await?;
            }
            let cursor = step.cursor;
            if sent >= self.limit {
                break;
            }
            if step.exhausted {
                let waiting = match self.feed {
                    Feed::Normal => false,
                    Feed::Longpoll => !any,
                    Feed::Continuous | Feed::EventSource => true,
                };
                if !waiting
                    || !wait(
                        &store,
                        &self.o.db,
                        cursor,
                        self.deadline,
                        self.heartbeat,
                        &tx,
                    )
                    .await?
                {
                    break;
                }
            }
            step = match self.step(cursor, self.limit - sent).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("the changes feed failed")))
                        .await;
                    return Err(());
                }
            };
            if step.rows.is_empty() && step.cursor == cursor && !step.exhausted {
                break;
            }
        }
        let last = step.cursor;
        let hub = self.hub.clone();
        let o = self.o.clone();
        let pend = blocking(move || pending(&hub.store, &o, last))
            .await
            .unwrap_or(0);
        let tail = match self.feed {
            Feed::Continuous => format!("{{\"last_seq\":{last},\"pending\":{pend}}}\n"),
            // The event stream just ends; each event carried its sequence as its id.
            Feed::EventSource => return Ok(()),
            _ => format!("\n],\n\"last_seq\":{last},\"pending\":{pend}}}\n"),
        };
        send(&tx, tail).await
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn changes(
    State(hub): State<HubState>,
    gate_who: crate::access::Gate,
    Path(db): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<Response> {
    let who = gate_who.session().clone();
    check_db(&db)?;
    let q = Params(q);
    let posted = if method == Method::POST && !body.is_empty() {
        json_body(&headers, &body)?
    } else {
        Value::Null
    };
    let feed = match q.get("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        other => {
            return Err(CouchError::bad_request(format!(
                "Supported `feed` types: normal, continuous, longpoll, eventsource (not {other:?})"
            )));
        }
    };
    let style = match q.get("style").unwrap_or("main_only") {
        "main_only" => Style::MainOnly,
        "all_docs" => Style::AllDocs,
        _ => {
            return Err(CouchError::bad_request(
                "Supported `style` values: main_only, all_docs",
            ));
        }
    };
    let filter = match q.get("filter") {
        None => Filter::None,
        Some("_doc_ids") => {
            let ids: Vec<String> = match posted.get("doc_ids") {
                Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                    CouchError::bad_request("`doc_ids` must be an array of strings")
                })?,
                None => q.json("doc_ids")?.ok_or_else(|| {
                    CouchError::bad_request("filter=_doc_ids needs a `doc_ids` list")
                })?,
            };
            Filter::DocIds(Arc::new(ids.into_iter().collect()))
        }
        Some("_selector") => {
            let sel = posted
                .get("selector")
                .cloned()
                .or(q.json::<Value>("selector")?)
                .ok_or_else(|| {
                    CouchError::bad_request("Selector must be specified in POST payload")
                })?;
            if !sel.is_object() {
                // couch_changes' answer to a selector that is not an object.
                return Err(CouchError::bad_request(
                    "Selector error: expected a JSON object",
                ));
            }
            Filter::Selector(Arc::new(Selector::parse(&sel)?))
        }
        Some("_design") => Filter::Design,
        Some("_view") => return Err(CouchError::no_javascript("filter=_view")),
        Some(other) if other.contains('/') => {
            return Err(CouchError::no_javascript(&format!(
                "the filter function {other}"
            )));
        }
        Some(other) => {
            return Err(CouchError::bad_request(format!(
                "`filter` parameter is not correctly formatted: {other:?}"
            )));
        }
    };
    let limit = q.u64("limit")?.unwrap_or(u64::MAX);
    let heartbeat = match q.get("heartbeat") {
        None => None,
        Some("true") => Some(Duration::from_millis(DEFAULT_TIMEOUT_MS)),
        Some(_) => Some(Duration::from_millis(
            q.u64("heartbeat")?.unwrap_or(0).max(100),
        )),
    };
    let timeout = q.u64("timeout")?;
    let deadline = match (timeout, heartbeat) {
        (Some(t), _) => Some(Instant::now() + Duration::from_millis(t)),
        (None, Some(_)) => None,
        (None, None) => Some(Instant::now() + Duration::from_millis(DEFAULT_TIMEOUT_MS)),
    };
    let access = {
        let (hub, db, gate) = (hub.clone(), db.clone(), gate_who.clone());
        blocking(move || gate.access(&hub.store, &db)).await?
    };
    let o = Opts {
        db: db.clone(),
        descending: q.bool("descending", false)?,
        style,
        include_docs: q.bool("include_docs", false)?,
        conflicts: q.bool("conflicts", false)?,
        attachments: q.bool("attachments", false)?,
        filter,
        access: Arc::new(access),
    };
    let since_raw = q.get("since").map(str::to_owned).or_else(|| {
        posted.get("since").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    });
    let feeder = Feeder {
        hub: hub.clone(),
        who,
        o,
        feed,
        limit,
        heartbeat,
        deadline,
    };
    // The first step runs before the response starts, so a missing database is a 404.
    let since = {
        let hub = hub.clone();
        let db = db.clone();
        blocking(move || {
            let now = hub.store.update_seq(&db)?;
            since_param(since_raw.as_deref(), now)
        })
        .await?
    };
    let first = if limit == 0 {
        Step {
            rows: Vec::new(),
            cursor: since,
            exhausted: true,
            docs: Disclosed::default(),
        }
    } else {
        feeder.step(since, limit).await?
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let _ = feeder.run(first, tx).await;
    });
    // Fused: the compression layer may poll again after the end (tower-http issue 732).
    let stream =
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if feed == Feed::EventSource {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    if feed != Feed::Normal {
        resp.extensions_mut().insert(NoCompress);
    }
    Ok(resp)
}
