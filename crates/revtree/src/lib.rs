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

/// Serializes a JSON object canonically: keys sorted (serde_json's default map is ordered),
/// no whitespace. Used for content-derived revision hashes, so every replica hashes the same
/// bytes for the same body.
pub fn canonical_json(body: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    // serde_json::Map is a BTreeMap unless the `preserve_order` feature is enabled anywhere in
    // the build; the test below fails if that ever happens.
    serde_json::to_vec(body).unwrap_or_default()
}

#[cfg(test)]
mod tests;
