//! The CouchDB replication protocol, both ways, between any two endpoints: a database in this
//! node's encrypted store, a Hearth hub, or any CouchDB-compatible server. See
//! <https://docs.couchdb.org/en/stable/replication/protocol.html>.
//!
//! One replication reads the source's changes in batches and, for each batch, asks the target
//! which revisions it lacks (`_revs_diff`), reads those with their history and attachments
//! (`_bulk_get`), and writes them as they are (`_bulk_docs` with `new_edits: false`). The three
//! steps run as a pipeline: while one batch is written, the next is read. After each batch is
//! written a checkpoint goes to `_local/{replication id}` on both ends, so an interrupted
//! replication resumes where it stopped. Transient failures (connection errors, 5xx, 429) are
//! retried with exponential backoff and jitter.
//!
//! ```no_run
//! # async fn f(source: replicate::Endpoint, target: replicate::Endpoint) -> Result<(), replicate::Error> {
//! let stats = replicate::Replication::new(source, target).run_once(|_| {}).await?;
//! println!("{} documents written", stats.docs_written);
//! # Ok(()) }
//! ```

mod endpoint;
mod pinned;
pub mod rpc;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use revtree::Rev;
use serde_json::{Map, Value, json};

pub use endpoint::{
    ChangeRow, ChangesPage, DocError, Endpoint, HttpDb, LocalDb, Seq, doc_with_attachments,
    encode_component,
};

/// Replication errors. Messages name endpoints and operations, never document contents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad endpoint or option.
    #[error("{0}")]
    Config(String),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The server could not be reached or the connection broke.
    #[error("{what}: {reason}")]
    Transport {
        /// The request.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{what}: the server answered {status} {error}: {reason}")]
    Http {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// CouchDB's error name.
        error: String,
        /// CouchDB's reason.
        reason: String,
    },
    /// The peer said something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The replication was stopped.
    #[error("the replication was cancelled")]
    Cancelled,
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// What a replication knows about referenced resources as it goes.
#[derive(Default)]
struct Deps {
    /// Referenced revisions sent ahead of the batch that would have carried them.
    sent: BTreeSet<(String, Rev)>,
    /// Referenced ids already looked up.
    checked: BTreeSet<String>,
}

/// Whether this revision already went out in an earlier batch.
fn was_sent(sent: &BTreeSet<(String, Rev)>, d: &Value) -> bool {
    if sent.is_empty() {
        return false;
    }
    match (
        doc_id(d),
        d.get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok()),
    ) {
        (Some(id), Some(rev)) => sent.contains(&(id.to_owned(), rev)),
        _ => false,
    }
}

/// The document id of CouchDB JSON.
fn doc_id(v: &Value) -> Option<&str> {
    v.get("_id").and_then(Value::as_str)
}

/// The documents a FHIR resource references: relative references `Type/id`, which are Hearth
/// document ids. Contained (`#…`), absolute and `urn:` references name no document here.
pub fn references(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("reference", Value::String(r)) => {
                            let mut parts = r.splitn(2, '/');
                            let (Some(t), Some(id)) = (parts.next(), parts.next()) else {
                                continue;
                            };
                            let type_ok = t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                                && t.chars().all(|c| c.is_ascii_alphabetic());
                            let id_ok = !id.is_empty()
                                && id.len() <= 64
                                && id
                                    .chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                            if type_ok && id_ok {
                                out.push(r.clone());
                            }
                        }
                        (k, x) if !k.starts_with('_') => walk(x, out),
                        _ => {}
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// Orders documents so that each comes after the documents of the batch it references
/// (a stable topological order; reference cycles keep their original order).
pub fn order_by_references(docs: Vec<Value>) -> Vec<Value> {
    let index: BTreeMap<String, usize> = docs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| doc_id(d).map(|id| (id.to_owned(), i)))
        .collect();
    let deps: Vec<Vec<usize>> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            references(d)
                .iter()
                .filter_map(|r| index.get(r).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    // 0 = not visited, 1 = in progress, 2 = placed.
    let mut state = vec![0u8; docs.len()];
    let mut order = Vec::with_capacity(docs.len());
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for &j in &deps[i] {
            visit(j, deps, state, order);
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..docs.len() {
        visit(i, &deps, &mut state, &mut order);
    }
    let mut slots: Vec<Option<Value>> = docs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// How often a running replication records its checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What a replication did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Changes read from the source.
    pub changes_read: u64,
    /// Revisions the target lacked.
    pub missing_found: u64,
    /// Revisions read from the source.
    pub docs_read: u64,
    /// Revisions written to the target.
    pub docs_written: u64,
    /// Revisions the target refused.
    pub doc_write_failures: u64,
    /// The first per-document errors (up to 100).
    pub errors: Vec<DocError>,
    /// Batches written.
    pub batches: u64,
    /// Requests retried after a transient failure.
    pub retries: u64,
    /// Where the source's changes were read up to.
    pub last_seq: Seq,
    /// Source sequence the replication started from (0 for a first replication).
    pub start_seq: Seq,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// Progress, reported after each batch.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Counts so far.
    pub stats: &'a Stats,
    /// The source's update sequence when the replication started (a number for Hearth and
    /// PouchDB sources), for a progress bar.
    pub source_seq: Option<u64>,
}

/// Retry policy: exponential backoff with jitter.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts after the first.
    pub max_retries: u32,
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_retries: 8,
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Retry {
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        // Full jitter in [base/2, base].
        let r = vault::random_bytes::<2>()
            .map(u16::from_le_bytes)
            .unwrap_or(0);
        base / 2 + base / 2 * u32::from(r) / u32::from(u16::MAX)
    }
}

/// Ends a spawned task when the replication future is dropped (an interrupted replication
/// leaves nothing running behind it).
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    fn take(mut self) -> Option<tokio::task::JoinHandle<T>> {
        self.0.take()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// A replication from `source` to `target`.
#[derive(Clone)]
pub struct Replication {
    /// Where documents come from.
    pub source: Endpoint,
    /// Where they go.
    pub target: Endpoint,
    /// Changes per batch.
    pub batch_size: u64,
    /// Create the target database when missing.
    pub create_target: bool,
    /// Retry policy.
    pub retry: Retry,
    /// Least time between checkpoints while the source is not yet drained.
    pub checkpoint_every: Duration,
}

fn session_id() -> String {
    vault::random_bytes::<16>()
        .map(hex::encode)
        .unwrap_or_else(|_| "0".repeat(32))
}

struct Batch {
    rows: Vec<ChangeRow>,
    last_seq: Seq,
}

/// A batch ready for the target: converted for a local store, or serialized for a server.
enum Payload {
    Local(endpoint::Prepared),
    Remote(bytes::Bytes, usize),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Local(p) => p.len(),
            Payload::Remote(_, n) => *n,
        }
    }
}

/// A batch after `_revs_diff`: what the target lacks.
struct Diffed {
    missing: BTreeMap<String, Vec<Rev>>,
    changes: u64,
    last_seq: Seq,
}

/// A batch's missing revisions, read from the source.
struct Got {
    docs: Vec<Value>,
    missing: u64,
    changes: u64,
    last_seq: Seq,
}

struct Fetched {
    docs: Payload,
    changes: u64,
    missing: u64,
    last_seq: Seq,
}

impl Replication {
    /// A one-shot replication with default batching (500) and retries.
    pub fn new(source: Endpoint, target: Endpoint) -> Replication {
        Replication {
            source,
            target,
            batch_size: 500,
            create_target: true,
            retry: Retry::default(),
            checkpoint_every: CHECKPOINT_EVERY,
        }
    }

    async fn retrying<T, F, Fut>(&self, retries: &mut u64, mut f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < self.retry.max_retries => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                    *retries += 1;
                }
                other => return other,
            }
        }
    }

    /// The replication id: the same source, target and protocol version give the same id, so
    /// checkpoints are found again.
    pub async fn id(&self) -> Result<String, Error> {
        let s = self.source.identity().await?;
        let t = self.target.identity().await?;
        Ok(hex::encode(Md5::digest(format!(
            "hearth-replication-v1\n{s}\n{t}"
        ))))
    }

    /// Finds where a previous replication between the same ends stopped.
    async fn start_seq(&self, rep_id: &str) -> Result<(Seq, Vec<Value>), Error> {
        let id = format!("_local/{rep_id}");
        let mut retries = 0;
        let src = self
            .retrying(&mut retries, || self.source.get_local(&id))
            .await?;
        let tgt = self
            .retrying(&mut retries, || self.target.get_local(&id))
            .await?;
        let (Some(src), Some(tgt)) = (src, tgt) else {
            return Ok((json!(0), Vec::new()));
        };
        let history = |v: &Value| -> Vec<Value> {
            v.get("history")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (sh, th) = (history(&src), history(&tgt));
        if src.get("session_id").is_some() && src.get("session_id") == tgt.get("session_id") {
            return Ok((tgt.get("last_seq").cloned().unwrap_or(json!(0)), th));
        }
        // The newest session both ends recorded.
        for t in &th {
            if sh
                .iter()
                .any(|s| s.get("session_id") == t.get("session_id"))
            {
                return Ok((t.get("last_seq").cloned().unwrap_or(json!(0)), th));
            }
        }
        Ok((json!(0), Vec::new()))
    }

    async fn checkpoint(
        &self,
        rep_id: &str,
        session: &str,
        seq: &Seq,
        history: &[Value],
    ) -> Result<(), Error> {
        let mut hist = vec![json!({"session_id": session, "last_seq": seq})];
        hist.extend(
            history
                .iter()
                .filter(|h| h.get("session_id").and_then(Value::as_str) != Some(session))
                .take(4)
                .cloned(),
        );
        let mut body = Map::new();
        body.insert("session_id".into(), session.into());
        body.insert("last_seq".into(), seq.clone());
        body.insert("history".into(), Value::Array(hist));
        body.insert("replicator".into(), "hearth".into());
        body.insert("version".into(), 1.into());
        let id = format!("_local/{rep_id}");
        let mut retries = 0;
        self.retrying(&mut retries, || self.target.put_local(&id, body.clone()))
            .await?;
        // A read-only source (no write permission) only costs a re-check of the last batch
        // next time; the target's checkpoint is the one that must be there.
        let _ = self.source.put_local(&id, body.clone()).await;
        Ok(())
    }

    /// Adds to a batch the resources its documents reference that the target lacks (a Patient
    /// edited after its Encounter was created is later in the changes feed), and orders the
    /// batch so that referenced resources come first. Referenced documents found this way are
    /// not sent again when the feed reaches them: `_revs_diff` then says the target has them.
    async fn with_references(
        &self,
        docs: Vec<Value>,
        checked: &mut BTreeSet<String>,
        retries: &mut u64,
    ) -> Result<Vec<Value>, Error> {
        let mut have: BTreeSet<String> =
            docs.iter().filter_map(doc_id).map(str::to_owned).collect();
        let mut all = docs;
        // Chains are short in FHIR (Observation -> Encounter -> Patient); three rounds cover them.
        for _ in 0..3 {
            let wanted: BTreeSet<String> = all
                .iter()
                .flat_map(references)
                .filter(|r| !have.contains(r) && !checked.contains(r))
                .collect();
            if wanted.is_empty() {
                break;
            }
            have.extend(wanted.iter().cloned());
            // Each referenced id is looked up once per replication (a Patient referenced by
            // thousands of Observations costs one lookup).
            checked.extend(wanted.iter().cloned());
            let winners = self
                .retrying(retries, || self.source.winners(wanted.clone()))
                .await?;
            if winners.is_empty() {
                break;
            }
            let asked: BTreeMap<String, Vec<Rev>> =
                winners.into_iter().map(|(id, r)| (id, vec![r])).collect();
            let missing = self
                .retrying(retries, || self.target.revs_diff(asked.clone()))
                .await?;
            if missing.is_empty() {
                break;
            }
            let wanted: Vec<(String, Vec<Rev>)> = missing.into_iter().collect();
            let extra = self
                .retrying(retries, || self.source.bulk_get(wanted.clone()))
                .await?;
            all.extend(extra);
        }
        Ok(order_by_references(all))
    }

    /// Stage 2a for one batch: which revisions the target lacks. Returns the retries it needed.
    async fn diff(&self, batch: Batch) -> Result<(Diffed, u64), Error> {
        let mut retries = 0;
        let n = batch.rows.len() as u64;
        let mut asked: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
        for r in batch.rows {
            asked.entry(r.id).or_default().extend(r.revs);
        }
        let missing = if asked.is_empty() {
            BTreeMap::new()
        } else {
            self.retrying(&mut retries, || self.target.revs_diff(asked.clone()))
                .await?
        };
        Ok((
            Diffed {
                missing,
                changes: n,
                last_seq: batch.last_seq,
            },
            retries,
        ))
    }

    /// Stage 2b for one batch: the missing revisions from the source.
    async fn get_docs(&self, d: Diffed) -> Result<(Got, u64), Error> {
        let mut retries = 0;
        let Diffed {
            missing,
            changes,
            last_seq,
        } = d;
        let count = missing.values().map(|v| v.len() as u64).sum();
        let docs = if missing.is_empty() {
            Vec::new()
        } else {
            let wanted: Vec<(String, Vec<Rev>)> = missing.into_iter().collect();
            self.retrying(&mut retries, || self.source.bulk_get(wanted.clone()))
                .await?
        };
        Ok((
            Got {
                docs,
                missing: count,
                changes,
                last_seq,
            },
            retries,
        ))
    }

    /// Stage 2c, in order: the resources the batch references that the target lacks, then the
    /// batch converted or serialized for the target.
    async fn finish(&self, g: Got, deps: &mut Deps) -> Result<(Fetched, u64), Error> {
        let mut retries = 0;
        let Got {
            docs,
            missing: count,
            changes: n,
            last_seq,
        } = g;
        // Revisions an earlier batch already sent as a referenced resource are not sent again
        // (that batch may not be written yet, so `_revs_diff` still lists them).
        let mut docs: Vec<Value> = docs
            .into_iter()
            .filter(|d| !was_sent(&deps.sent, d))
            .collect();
        if !docs.is_empty() {
            let own: BTreeSet<String> = docs.iter().filter_map(doc_id).map(str::to_owned).collect();
            docs = self
                .with_references(docs, &mut deps.checked, &mut retries)
                .await?;
            // Remember only the referenced resources pulled in (bounded by how many there are).
            for d in &docs {
                let rev = d
                    .get("_rev")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok());
                if let (Some(id), Some(rev)) = (doc_id(d), rev)
                    && !own.contains(id)
                {
                    deps.sent.insert((id.to_owned(), rev));
                }
            }
        }
        // Converted or serialized here, while the previous batch is written.
        let payload = match &self.target {
            Endpoint::Local(_) => Payload::Local(
                tokio::task::spawn_blocking(move || endpoint::prepare(docs))
                    .await
                    .map_err(|_| Error::Protocol("a conversion task failed".into()))?,
            ),
            Endpoint::Http(_) => {
                let n = docs.len();
                Payload::Remote(endpoint::bulk_docs_body(&docs), n)
            }
        };
        Ok((
            Fetched {
                docs: payload,
                changes: n,
                missing: count,
                last_seq,
            },
            retries,
        ))
    }

    /// Replicates everything the source has now, then returns.
    pub async fn run_once(
        &self,
        mut progress: impl FnMut(&Progress<'_>) + Send,
    ) -> Result<Stats, Error> {
        self.run(&mut progress, None, false).await
    }

    /// [`Replication::run_once`] that stops early, between batches, once `stop` turns true: the
    /// batch being written is finished and checkpointed first.
    pub async fn run_once_until(
        &self,
        mut progress: impl FnMut(&Progress<'_>) + Send,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Stats, Error> {
        self.run(&mut progress, Some(stop), false).await
    }

    /// Replicates, then keeps following the source's changes (longpoll) until `stop` resolves.
    /// Transient failures are retried for as long as it runs.
    pub async fn run_continuous(
        &self,
        mut progress: impl FnMut(&Progress<'_>) + Send,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Stats, Error> {
        self.run(&mut progress, Some(stop), true).await
    }

    async fn run(
        &self,
        progress: &mut (dyn FnMut(&Progress<'_>) + Send),
        stop: Option<tokio::sync::watch::Receiver<bool>>,
        continuous: bool,
    ) -> Result<Stats, Error> {
        let started = Instant::now();
        let mut stats = Stats::default();
        let mut retries = 0;
        let src_seq = self
            .retrying(&mut retries, || self.source.open(false))
            .await?;
        self.retrying(&mut retries, || self.target.open(self.create_target))
            .await?;
        let source_name = self.source.identity().await?;
        let rep_id = self.id().await?;
        let (mut since, history) = self.start_seq(&rep_id).await?;
        let session = session_id();
        stats.start_seq = since.clone();
        stats.last_seq = since.clone();
        let source_seq = match &src_seq {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.split('-').next().and_then(|d| d.parse().ok()),
            _ => None,
        };
        let stopped = |stop: &Option<tokio::sync::watch::Receiver<bool>>| {
            stop.as_ref().is_some_and(|s| *s.borrow())
        };

        // Stage 1 (changes) and stage 2 (revs_diff + bulk_get) run ahead of stage 3 (write and
        // checkpoint), one batch each.
        let (fetch_tx, mut fetch_rx) = tokio::sync::mpsc::channel::<Result<Fetched, Error>>(2);
        let this = self.clone();
        let stop2 = stop.clone();
        let mut since2 = since.clone();
        let reader = AbortOnDrop(Some(tokio::spawn(async move {
            let mut retries = 0u64;
            let (batch_tx, batch_rx) = tokio::sync::mpsc::channel::<Result<Batch, Error>>(2);
            let this2 = this.clone();
            let changes = tokio::spawn(async move {
                let mut retries = 0u64;
                loop {
                    if stop2.as_ref().is_some_and(|s| *s.borrow()) {
                        return;
                    }
                    let wait = continuous.then_some(Duration::from_secs(25));
                    let page = this2
                        .retrying(&mut retries, || {
                            this2.source.changes(&since2, this2.batch_size, wait)
                        })
                        .await;
                    let page = match page {
                        Ok(p) => p,
                        Err(e) if continuous && e.is_transient() => {
                            tokio::time::sleep(this2.retry.max_delay).await;
                            continue;
                        }
                        Err(e) => {
                            let _ = batch_tx.send(Err(e)).await;
                            return;
                        }
                    };
                    let done = page.rows.is_empty();
                    since2 = page.last_seq.clone();
                    if done && !continuous {
                        let _ = batch_tx
                            .send(Ok(Batch {
                                rows: Vec::new(),
                                last_seq: page.last_seq,
                            }))
                            .await;
                        return;
                    }
                    if !done
                        && batch_tx
                            .send(Ok(Batch {
                                rows: page.rows,
                                last_seq: page.last_seq,
                            }))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
            // One batch at a time: which documents a batch sends (its own and the resources
            // they reference) is decided knowing what the batches before it send.
            // Stage 2a (which revisions the target lacks) runs ahead of stage 2b (reading them),
            // so a local target's lock, held while a batch is written, never stalls a read
            // from the source.
            let mut batch_rx = batch_rx;
            let (diff_tx, diff_rx) = tokio::sync::mpsc::channel::<Result<(Diffed, u64), Error>>(2);
            let this3 = this.clone();
            let differ = AbortOnDrop(Some(tokio::spawn(async move {
                while let Some(batch) = batch_rx.recv().await {
                    let r = match batch {
                        Ok(b) => this3.diff(b).await,
                        Err(e) => Err(e),
                    };
                    let stop = r.as_ref().map_or(true, |(d, _)| d.changes == 0);
                    if diff_tx.send(r).await.is_err() || stop {
                        break;
                    }
                }
            })));
            // Stage 2b reads two batches' revisions at once (the source serves one while this
            // node parses the other); stage 2c takes them in order.
            let diffs = futures_util::stream::unfold(diff_rx, |mut rx| async move {
                rx.recv().await.map(|d| (d, rx))
            });
            let got = futures_util::StreamExt::buffered(
                futures_util::StreamExt::map(diffs, |d| {
                    let this = this.clone();
                    async move {
                        match d {
                            Ok((d, r)) => this.get_docs(d).await.map(|(g, r2)| (g, r + r2)),
                            Err(e) => Err(e),
                        }
                    }
                }),
                2,
            );
            futures_util::pin_mut!(got);
            let mut deps = Deps::default();
            while let Some(g) = futures_util::StreamExt::next(&mut got).await {
                let result = match g {
                    Ok((g, r)) => {
                        retries += r;
                        this.finish(g, &mut deps).await
                    }
                    Err(e) => Err(e),
                };
                let (result, drained) = match result {
                    Ok((f, r)) => {
                        retries += r;
                        let drained = f.changes == 0;
                        (Ok(f), drained)
                    }
                    Err(e) => (Err(e), true),
                };
                let failed = result.is_err();
                if fetch_tx.send(result).await.is_err() || failed || drained {
                    break;
                }
            }
            changes.abort();
            drop(differ);
            retries
        })));

        let mut outcome = Ok(());
        let mut stop_rx = stop.clone();
        let mut last_checkpoint = Instant::now();
        let mut unsaved: Option<Seq> = None;
        loop {
            let next = match stop_rx.as_mut() {
                Some(s) => tokio::select! {
                    f = fetch_rx.recv() => f,
                    _ = s.wait_for(|v| *v) => None,
                },
                None => fetch_rx.recv().await,
            };
            let Some(f) = next else {
                break;
            };
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            stats.changes_read += f.changes;
            stats.missing_found += f.missing;
            stats.docs_read += f.docs.len() as u64;
            if f.docs.len() > 0 {
                let n = f.docs.len() as u64;
                // A remote target gets the batch serialized once (a retry re-sends the same
                // bytes); a local one's failures are not transient.
                let written = match (&self.target, f.docs) {
                    (Endpoint::Http(h), Payload::Remote(body, _)) => {
                        self.retrying(&mut retries, || h.bulk_docs_bytes(body.clone()))
                            .await
                    }
                    (Endpoint::Local(l), Payload::Local(p)) => l.write(p, &source_name).await,
                    _ => Err(Error::Protocol(
                        "a batch was prepared for the other kind of target".into(),
                    )),
                };
                match written {
                    Ok(errors) => {
                        stats.docs_written += n - errors.len() as u64;
                        stats.doc_write_failures += errors.len() as u64;
                        let room = 100usize.saturating_sub(stats.errors.len());
                        stats.errors.extend(errors.into_iter().take(room));
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            if f.last_seq != since {
                since = f.last_seq;
                unsaved = Some(since.clone());
            }
            // Checkpoint at most once a second, and whenever the source is drained: after an
            // interruption at most a second of work is checked again (and not re-sent).
            let drained = f.changes < self.batch_size;
            if let Some(seq) = unsaved
                .as_ref()
                .filter(|_| drained || last_checkpoint.elapsed() >= self.checkpoint_every)
            {
                if let Err(e) = self.checkpoint(&rep_id, &session, seq, &history).await {
                    outcome = Err(e);
                    break;
                }
                unsaved = None;
                last_checkpoint = Instant::now();
            }
            stats.batches += 1;
            stats.last_seq = since.clone();
            stats.elapsed_ms = started.elapsed().as_millis() as u64;
            stats.retries = retries;
            progress(&Progress {
                stats: &stats,
                source_seq,
            });
            if f.changes == 0 && !continuous {
                break;
            }
            if stopped(&stop) {
                break;
            }
        }
        if outcome.is_ok()
            && let Some(seq) = unsaved
        {
            outcome = self.checkpoint(&rep_id, &session, &seq, &history).await;
        }
        drop(fetch_rx);
        let reader_retries = match reader.take() {
            Some(h) if !stopped(&stop) && outcome.is_ok() => h.await.unwrap_or(0),
            Some(h) => {
                h.abort();
                0
            }
            None => 0,
        };
        stats.retries = retries + reader_retries;
        stats.elapsed_ms = started.elapsed().as_millis() as u64;
        outcome.map(|()| stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_relative_references_only() {
        let v = json!({"_id": "Observation/o", "subject": {"reference": "Patient/p-1"},
            "performer": [{"reference": "Practitioner/pr.2"}], "hasMember": [{"reference": "#contained"}],
            "basedOn": [{"reference": "http://example.org/fhir/ServiceRequest/1"}],
            "focus": [{"reference": "urn:uuid:1234"}], "_revisions": {"reference": "Patient/x"}});
        assert_eq!(references(&v), ["Patient/p-1", "Practitioner/pr.2"]);
    }

    #[test]
    fn orders_referenced_documents_first() {
        let docs = vec![
            json!({"_id": "Observation/o", "subject": {"reference": "Patient/p"}, "encounter": {"reference": "Encounter/e"}}),
            json!({"_id": "Encounter/e", "subject": {"reference": "Patient/p"}}),
            json!({"_id": "Task/t"}),
            json!({"_id": "Patient/p", "link": [{"other": {"reference": "Patient/q"}}]}),
        ];
        let ids: Vec<String> = order_by_references(docs)
            .iter()
            .map(|d| d["_id"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(ids, ["Patient/p", "Encounter/e", "Observation/o", "Task/t"]);
        // A cycle keeps every document.
        let cyc = vec![
            json!({"_id": "A/a", "x": {"reference": "B/b"}}),
            json!({"_id": "B/b", "x": {"reference": "A/a"}}),
        ];
        assert_eq!(order_by_references(cyc).len(), 2);
    }
}
