//! Documents as clients send and receive them: CouchDB JSON with `_id`, `_rev`, `_deleted`,
//! `_attachments`, `_revisions`. See
//! <https://docs.couchdb.org/en/stable/api/document/common.html>.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use revtree::{Rev, Revisions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// A document body: the JSON object without the underscore fields.
pub type Body = Map<String, Value>;

/// Longest document id accepted, in bytes. CouchDB has no limit by default; a bound keeps
/// indexes and error paths sane.
pub const MAX_DOC_ID_BYTES: usize = 4096;

/// A validated document id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId(String);

/// Which namespace a document id is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// An ordinary (replicated) document.
    Normal,
    /// `_design/…`: replicated like any document; Hearth runs no code from it.
    Design,
    /// `_local/…`: never replicated, no revision tree.
    Local,
}

impl DocId {
    /// Checks CouchDB's id rules: non-empty, and an underscore only in `_design/` or `_local/`.
    pub fn parse(s: &str) -> Result<DocId, Error> {
        if s.is_empty() {
            return Err(Error::BadDocId("document id must not be empty".into()));
        }
        if s.len() > MAX_DOC_ID_BYTES {
            return Err(Error::BadDocId(format!(
                "document id is longer than {MAX_DOC_ID_BYTES} bytes"
            )));
        }
        if let Some(rest) = s
            .strip_prefix("_design/")
            .or_else(|| s.strip_prefix("_local/"))
        {
            if rest.is_empty() {
                return Err(Error::BadDocId(
                    "a _design/ or _local/ id needs a name after the slash".into(),
                ));
            }
        } else if s.starts_with('_') {
            return Err(Error::BadDocId(
                "Only reserved document ids may start with underscore.".into(),
            ));
        }
        Ok(DocId(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its namespace.
    pub fn kind(&self) -> DocKind {
        if self.0.starts_with("_local/") {
            DocKind::Local
        } else if self.0.starts_with("_design/") {
            DocKind::Design
        } else {
            DocKind::Normal
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({:?})", self.0)
    }
}

/// Stored description of one attachment of a revision (what a stub shows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// MIME type given by the writer.
    pub content_type: String,
    /// `md5-<base64>` of the attachment's bytes, as CouchDB and PouchDB compute it.
    pub digest: String,
    /// Length in bytes (uncompressed).
    pub length: u64,
    /// Generation of the revision that added this version of the attachment.
    pub revpos: u64,
}

/// An attachment as a writer supplies it.
#[derive(Clone, PartialEq, Eq)]
pub enum AttachmentInput {
    /// Keep the attachment of the parent revision (or, for replicated revisions, the stored
    /// attachment with this digest).
    Stub {
        /// The digest the writer expects, when given.
        digest: Option<String>,
    },
    /// New content.
    Data {
        /// MIME type.
        content_type: String,
        /// The bytes.
        data: Vec<u8>,
        /// `revpos` supplied by a replicating peer (`new_edits=false`).
        revpos: Option<u64>,
    },
}

impl fmt::Debug for AttachmentInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachmentInput::Stub { digest } => {
                f.debug_struct("Stub").field("digest", digest).finish()
            }
            AttachmentInput::Data {
                content_type, data, ..
            } => f
                .debug_struct("Data")
                .field("content_type", content_type)
                .field("len", &data.len())
                .finish(),
        }
    }
}

/// A document to write. `Debug` shows the id and revision, never the body (it is PHI).
#[derive(Clone)]
pub struct DocWrite {
    /// Its id.
    pub id: DocId,
    /// `_rev`: the revision edited (normal writes) or the revision inserted (replication).
    pub rev: Option<Rev>,
    /// `_deleted`.
    pub deleted: bool,
    /// The body without underscore fields.
    pub body: Body,
    /// `_attachments`.
    pub attachments: BTreeMap<String, AttachmentInput>,
    /// `_revisions`: ancestry of `rev`, used when replicating.
    pub revisions: Option<Revisions>,
}

/// Underscore fields CouchDB accepts on input and ignores (they are outputs).
pub const IGNORED_SPECIALS: &[&str] = &[
    "_revs_info",
    "_conflicts",
    "_deleted_conflicts",
    "_local_seq",
];

/// Underscore fields CouchDB keeps in the body as written: the replicator's bookkeeping on
/// `_replicator` documents and `_access` (couch_doc's `transfer_fields`).
const KEPT_SPECIALS: &[&str] = &[
    "_access",
    "_replication_id",
    "_replication_state",
    "_replication_state_time",
    "_replication_state_reason",
    "_replication_stats",
];

/// A `_rev` of the form `N-x` whose `x` is not 32 hex digits: CouchDB parses it (it accepts
/// any revision id that is not exactly 32 characters), finds no such revision and answers
/// `conflict`. Hearth revisions are always 32 hex digits, so no stored document has one.
fn is_foreign_rev(s: &str) -> bool {
    s.split_once('-').is_some_and(|(g, h)| {
        g.parse::<u64>().is_ok_and(|g| g > 0) && !h.is_empty() && h.len() != 32
    })
}

impl DocWrite {
    /// A write of a body with no attachments.
    pub fn new(id: DocId, rev: Option<Rev>, body: Body) -> DocWrite {
        DocWrite {
            id,
            rev,
            deleted: false,
            body,
            attachments: BTreeMap::new(),
            revisions: None,
        }
    }

    /// A deletion of `rev`.
    pub fn deletion(id: DocId, rev: Rev) -> DocWrite {
        DocWrite {
            id,
            rev: Some(rev),
            deleted: true,
            body: Body::new(),
            attachments: BTreeMap::new(),
            revisions: None,
        }
    }

    /// Parses CouchDB document JSON. `path_id` is the id from the URL or command line, which
    /// must agree with `_id` when both are given.
    pub fn from_json(value: Value, path_id: Option<&str>) -> Result<DocWrite, Error> {
        let Value::Object(map) = value else {
            return Err(Error::BadRequest("Document must be a JSON object".into()));
        };
        let mut body = Body::new();
        let mut id = None;
        let mut rev = None;
        let mut deleted = false;
        let mut attachments = BTreeMap::new();
        let mut revisions = None;
        let mut foreign_rev = false;
        for (k, v) in map {
            match k.as_str() {
                "_id" => match v {
                    Value::String(s) => id = Some(s),
                    _ => return Err(Error::BadDocId("document id must be a string".into())),
                },
                "_rev" => match v {
                    Value::String(s) => match s.parse::<Rev>() {
                        Ok(r) => rev = Some(r),
                        Err(_) if is_foreign_rev(&s) => foreign_rev = true,
                        Err(_) => return Err(Error::BadRequest("Invalid rev format".into())),
                    },
                    Value::Null => {}
                    _ => return Err(Error::BadRequest("Invalid rev format".into())),
                },
                "_deleted" => match v {
                    Value::Bool(b) => deleted = b,
                    _ => return Err(Error::BadRequest("_deleted must be true or false".into())),
                },
                "_attachments" => attachments = parse_attachments(v)?,
                "_revisions" => {
                    revisions = Some(serde_json::from_value::<Revisions>(v).map_err(|_| {
                        Error::BadRequest("_revisions must be {\"start\": n, \"ids\": [..]}".into())
                    })?)
                }
                k if IGNORED_SPECIALS.contains(&k) => {}
                k if KEPT_SPECIALS.contains(&k) => {
                    body.insert(k.to_owned(), v);
                }
                k if k.starts_with('_') => {
                    return Err(Error::DocValidation(format!(
                        "Bad special document member: {k}"
                    )));
                }
                _ => {
                    body.insert(k, v);
                }
            }
        }
        let id = match (id, path_id) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::BadRequest(
                    "_id in the body does not match the document id given".into(),
                ));
            }
            (Some(a), _) => a,
            (None, Some(b)) => b.to_owned(),
            (None, None) => return Err(Error::BadDocId("document has no _id".into())),
        };
        // CouchDB lets `_revisions` win over `_rev` (couch_doc's transfer_fields keeps the
        // revisions list, whichever member comes first); PouchDB sends documents whose `_rev`
        // and `_revisions` disagree, and a refusal there ends its whole replication.
        if let Some(revs) = &revisions {
            let path = revs
                .to_path()
                .map_err(|e| Error::BadRequest(e.to_string()))?;
            rev = path.first().cloned().or(rev);
        } else if foreign_rev {
            return Err(Error::Conflict);
        }
        Ok(DocWrite {
            id: DocId::parse(&id)?,
            rev,
            deleted,
            body,
            attachments,
            revisions,
        })
    }
}

fn parse_attachments(v: Value) -> Result<BTreeMap<String, AttachmentInput>, Error> {
    let Value::Object(map) = v else {
        return Err(Error::BadRequest("_attachments must be an object".into()));
    };
    let mut out = BTreeMap::new();
    for (name, att) in map {
        if name.is_empty() || name.starts_with('_') {
            return Err(Error::BadRequest(
                "attachment names must not be empty or start with '_'".into(),
            ));
        }
        let Value::Object(att) = att else {
            return Err(Error::BadRequest(
                "each attachment must be an object".into(),
            ));
        };
        let input = if att.get("stub").and_then(Value::as_bool) == Some(true) {
            AttachmentInput::Stub {
                digest: att.get("digest").and_then(Value::as_str).map(str::to_owned),
            }
        } else {
            let data = att.get("data").and_then(Value::as_str).ok_or_else(|| {
                Error::BadRequest("an attachment needs \"data\" (base64) or \"stub\": true".into())
            })?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| Error::BadRequest("attachment data is not valid base64".into()))?;
            AttachmentInput::Data {
                content_type: att
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                data,
                revpos: att.get("revpos").and_then(Value::as_u64),
            }
        };
        out.insert(name, input);
    }
    Ok(out)
}

/// A revision of a document as read from the store. `Debug` shows the id and revision, never
/// the body (it is PHI).
#[derive(Clone, PartialEq)]
pub struct Document {
    /// Its id.
    pub id: DocId,
    /// The revision read.
    pub rev: Rev,
    /// Whether this revision is a deletion.
    pub deleted: bool,
    /// The body without underscore fields.
    pub body: Body,
    /// Attachment stubs by name.
    pub attachments: BTreeMap<String, AttachmentInfo>,
    /// `_conflicts`, when asked for.
    pub conflicts: Option<Vec<Rev>>,
    /// `_deleted_conflicts`, when asked for.
    pub deleted_conflicts: Option<Vec<Rev>>,
    /// `_revisions`, when asked for.
    pub revisions: Option<Revisions>,
}

impl fmt::Debug for DocWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocWrite")
            .field("id", &self.id)
            .field("rev", &self.rev)
            .field("deleted", &self.deleted)
            .field(
                "body",
                &format_args!("<{} fields redacted>", self.body.len()),
            )
            .field("attachments", &self.attachments.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("id", &self.id)
            .field("rev", &self.rev)
            .field("deleted", &self.deleted)
            .field(
                "body",
                &format_args!("<{} fields redacted>", self.body.len()),
            )
            .field("attachments", &self.attachments.keys().collect::<Vec<_>>())
            .field("conflicts", &self.conflicts)
            .finish()
    }
}

impl Document {
    /// The CouchDB JSON form, with attachments as stubs, in CouchDB's order: `_id`, `_rev`,
    /// the body's members as written, then `_deleted`, `_revisions`, `_conflicts`,
    /// `_deleted_conflicts` and `_attachments`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::with_capacity(self.body.len() + 4);
        m.insert("_id".into(), Value::String(self.id.0.clone()));
        m.insert("_rev".into(), Value::String(self.rev.to_string()));
        for (k, v) in &self.body {
            m.insert(k.clone(), v.clone());
        }
        if self.deleted {
            m.insert("_deleted".into(), Value::Bool(true));
        }
        if let Some(r) = &self.revisions {
            m.insert(
                "_revisions".into(),
                serde_json::to_value(r).unwrap_or(Value::Null),
            );
        }
        let revs =
            |v: &Vec<Rev>| Value::Array(v.iter().map(|r| Value::String(r.to_string())).collect());
        if let Some(c) = self.conflicts.as_ref().filter(|c| !c.is_empty()) {
            m.insert("_conflicts".into(), revs(c));
        }
        if let Some(c) = self.deleted_conflicts.as_ref().filter(|c| !c.is_empty()) {
            m.insert("_deleted_conflicts".into(), revs(c));
        }
        if !self.attachments.is_empty() {
            let atts: Map<String, Value> = self
                .attachments
                .iter()
                .map(|(name, a)| {
                    let mut o = Map::new();
                    o.insert("content_type".into(), a.content_type.clone().into());
                    o.insert("digest".into(), a.digest.clone().into());
                    o.insert("length".into(), a.length.into());
                    o.insert("revpos".into(), a.revpos.into());
                    o.insert("stub".into(), true.into());
                    (name.clone(), Value::Object(o))
                })
                .collect();
            m.insert("_attachments".into(), Value::Object(atts));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_rules_follow_couchdb() {
        assert_eq!(DocId::parse("Patient/p1").unwrap().kind(), DocKind::Normal);
        assert_eq!(DocId::parse("_design/app").unwrap().kind(), DocKind::Design);
        assert_eq!(DocId::parse("_local/ckpt").unwrap().kind(), DocKind::Local);
        for bad in ["", "_foo", "_design/", "_local/", "_users"] {
            assert!(
                matches!(DocId::parse(bad), Err(Error::BadDocId(_))),
                "{bad:?}"
            );
        }
        assert!(DocId::parse(&"x".repeat(MAX_DOC_ID_BYTES + 1)).is_err());
    }

    #[test]
    fn parses_specials_and_rejects_unknown_ones() {
        let w = DocWrite::from_json(
            json!({"_id":"a","_rev":"1-abc","_deleted":true,"_conflicts":["1-x"],"name":"x"}),
            None,
        )
        .unwrap();
        assert!(w.deleted);
        assert_eq!(w.rev.unwrap().to_string(), "1-abc");
        assert_eq!(w.body.len(), 1);
        let e = DocWrite::from_json(json!({"_id":"a","_foo":1}), None).unwrap_err();
        assert!(e.to_string().contains("Bad special document member: _foo"));
        assert!(DocWrite::from_json(json!([1]), None).is_err());
        assert!(DocWrite::from_json(json!({"_id":"a"}), Some("b")).is_err());
        assert!(DocWrite::from_json(json!({"_id": 5}), None).is_err());
        // `_revisions` wins over a `_rev` that disagrees with it, in either member order.
        for v in [
            json!({"_rev":"1-a","_revisions":{"start":2,"ids":["b","a"]}}),
            json!({"_revisions":{"start":2,"ids":["b","a"]},"_rev":"1-a"}),
        ] {
            let w = DocWrite::from_json(v, Some("x")).unwrap();
            assert_eq!(w.rev.unwrap().to_string(), "2-b");
        }
        assert!(matches!(
            DocWrite::from_json(json!({"_rev":"bogus"}), Some("x")),
            Err(Error::BadRequest(r)) if r == "Invalid rev format"
        ));
        // A well-formed revision that cannot be one of ours names no revision: a conflict.
        assert!(matches!(
            DocWrite::from_json(json!({"_rev":"3-totally_fake_rev"}), Some("x")),
            Err(Error::Conflict)
        ));
        // The replicator's bookkeeping fields stay in the body, in the order written.
        let w = DocWrite::from_json(
            json!({"_id":"r","_replication_state":"completed","_replication_id":"abc","a":1}),
            None,
        )
        .unwrap();
        let keys: Vec<&str> = w.body.keys().map(String::as_str).collect();
        assert!(keys.contains(&"_replication_state") && keys.contains(&"_replication_id"));
    }

    #[test]
    fn debug_never_shows_the_body() {
        let w =
            DocWrite::from_json(json!({"_id":"Patient/p1","name":"Zebediah Quux"}), None).unwrap();
        let shown = format!("{w:?}");
        assert!(
            shown.contains("Patient/p1") && !shown.contains("Zebediah"),
            "{shown}"
        );
    }

    #[test]
    fn parses_attachments() {
        let w = DocWrite::from_json(
            json!({"_id":"a","_attachments":{
                "sig.png":{"content_type":"image/png","data":"aGVsbG8="},
                "old.txt":{"stub":true,"digest":"md5-x"}}}),
            None,
        )
        .unwrap();
        assert_eq!(
            w.attachments["sig.png"],
            AttachmentInput::Data {
                content_type: "image/png".into(),
                data: b"hello".to_vec(),
                revpos: None
            }
        );
        assert!(matches!(
            w.attachments["old.txt"],
            AttachmentInput::Stub { .. }
        ));
        assert!(
            DocWrite::from_json(json!({"_id":"a","_attachments":{"x":{"data":"%%%"}}}), None)
                .is_err()
        );
        assert!(DocWrite::from_json(json!({"_id":"a","_attachments":{"x":{}}}), None).is_err());
    }
}
