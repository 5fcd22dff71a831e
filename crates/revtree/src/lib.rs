//! Revision identifiers and revision trees with CouchDB semantics. Pure: no I/O.
//!
//! This crate owns what a `_rev` is, how revisions of one document form a tree, which leaf wins,
//! which leaves are conflicts, and how old history is stemmed. The store persists trees with
//! [`RevTree::encode`]; replication merges foreign paths with [`RevTree::merge_path`].
//!
//! ```
//! use revtree::{Rev, RevTree};
//!
//! let first = Rev::derive(None, false, br#"{"name":"Ada"}"#, &[]);
//! let a = Rev::derive(Some(&first), false, br#"{"name":"Ada L."}"#, &[]);
//! let b = Rev::derive(Some(&first), false, br#"{"name":"Ada K."}"#, &[]);
//! let mut tree = RevTree::new();
//! tree.merge_path(&[a.clone(), first.clone()], false).unwrap();
//! tree.merge_path(&[b.clone(), first.clone()], false).unwrap();
//! let winner = tree.winner().unwrap().rev;
//! assert_eq!(winner, a.clone().max(b.clone()));
//! assert_eq!(tree.conflicts(), vec![a.min(b)]);
//! ```

mod rev;
mod tree;

pub use rev::{Rev, Revisions};
pub use tree::{Leaf, MergeOutcome, RevTree};

/// Errors from parsing revisions or decoding stored trees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A `_rev` or `_revisions` value that is not well formed.
    #[error("invalid revision: {0}")]
    InvalidRev(String),
    /// A stored tree that cannot be decoded.
    #[error("stored revision tree is corrupt: {0}")]
    Corrupt(String),
}

/// Serializes a JSON object canonically, for content-derived revision hashes: object keys
/// sorted by their UTF-8 bytes at every depth, no whitespace, strings escaped as `serde_json`
/// escapes them, numbers exactly as written (the workspace builds `serde_json` with
/// `arbitrary_precision`, so `1.00` stays `1.00`). Every replica hashes the same bytes for the
/// same body whatever order its keys were written in. The body itself is stored and served as
/// written ([`body_json`]); this form is only ever hashed. See docs/adr/0025-bodies-as-written.md.
pub fn canonical_json(body: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_object(&mut out, body);
    out
}

/// Serializes a body as written: keys in the order they were written (the workspace builds
/// `serde_json` with `preserve_order`), numbers in their written form, no whitespace.
pub fn body_json(body: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    // Serializing a map of JSON values to a Vec cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}

fn write_object(out: &mut Vec<u8>, map: &serde_json::Map<String, serde_json::Value>) {
    let mut members: Vec<(&String, &serde_json::Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_scalar(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => write_object(out, m),
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        scalar => write_scalar(out, scalar),
    }
}

fn write_scalar<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // A string, number, bool or null serializes into a Vec without error.
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests;
