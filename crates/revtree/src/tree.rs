//! The revision tree of one document.
//!
//! Stored as a set of nodes, each knowing its parent's hash (its parent has generation one less).
//! A node keeps its parent link even after the parent is stemmed away, so merging is a plain set
//! union of nodes and links: commutative, associative and idempotent, whatever the order in which
//! replicas deliver revisions. Semantics follow CouchDB
//! (<https://docs.couchdb.org/en/stable/replication/conflicts.html>): the winner is the leaf that
//! is not deleted, then has the highest generation, then the highest hash as a string; the other
//! leaves are conflicts (or deleted conflicts).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::{Error, Rev};

/// What the tree knows of one revision besides its id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    /// The parent's hash (generation is ours minus one); `None` for a first edit.
    parent: Option<String>,
    /// Whether this revision is a deletion (a tombstone when it is a leaf).
    deleted: bool,
}

/// The revision tree (strictly a forest, once stemmed or merged from disjoint histories).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevTree {
    nodes: BTreeMap<Rev, Node>,
}

/// A leaf of the tree with its deleted flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf revision.
    pub rev: Rev,
    /// Whether it is a tombstone.
    pub deleted: bool,
}

/// What merging a path changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Revisions that were not in the tree before.
    pub added: Vec<Rev>,
}

impl RevTree {
    /// An empty tree (a document that does not exist yet).
    pub fn new() -> RevTree {
        RevTree::default()
    }

    /// Number of revisions the tree holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the tree holds no revision.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether the tree holds this revision.
    pub fn contains(&self, rev: &Rev) -> bool {
        self.nodes.contains_key(rev)
    }

    /// Whether this revision is a deletion, if the tree holds it.
    pub fn is_deleted(&self, rev: &Rev) -> Option<bool> {
        self.nodes.get(rev).map(|n| n.deleted)
    }

    /// The parent of a revision, if the tree knows it (it may have been stemmed away).
    pub fn parent_of(&self, rev: &Rev) -> Option<Rev> {
        let node = self.nodes.get(rev)?;
        let hash = node.parent.as_ref()?;
        let parent = Rev::new(rev.generation() - 1, hash.clone()).ok()?;
        self.nodes.contains_key(&parent).then_some(parent)
    }

    /// Merges a path of revisions, newest first, each the parent of the one before.
    ///
    /// `deleted` is the state of the newest revision. Ancestors the tree does not know are added
    /// as non-deleted. The path must be contiguous in generation.
    pub fn merge_path(&mut self, path: &[Rev], deleted: bool) -> Result<MergeOutcome, Error> {
        let Some(newest) = path.first() else {
            return Err(Error::InvalidRev(
                "an empty revision path cannot be merged".into(),
            ));
        };
        for pair in path.windows(2) {
            if pair[1].generation() + 1 != pair[0].generation() {
                return Err(Error::InvalidRev(format!(
                    "revision path is not contiguous: {} does not follow {}",
                    pair[0], pair[1]
                )));
            }
        }
        let mut added = Vec::new();
        for (i, rev) in path.iter().enumerate() {
            let parent = match path.get(i + 1) {
                Some(p) => Some(p.hash().to_owned()),
                None if rev.generation() == 1 => None,
                // The path is truncated here; keep any link we already knew.
                None => self.nodes.get(rev).and_then(|n| n.parent.clone()),
            };
            match self.nodes.get_mut(rev) {
                Some(node) => {
                    if node.parent.is_none() {
                        node.parent = parent;
                    }
                    // A revision's deleted flag is part of its content; only the newest
                    // revision of a path carries it, ancestors arrive as placeholders.
                    if i == 0 {
                        node.deleted |= deleted;
                    }
                }
                None => {
                    self.nodes.insert(
                        rev.clone(),
                        Node {
                            parent,
                            deleted: i == 0 && deleted,
                        },
                    );
                    added.push(rev.clone());
                }
            }
        }
        debug_assert!(self.nodes.contains_key(newest));
        Ok(MergeOutcome { added })
    }

    /// Merges every revision of another tree into this one.
    pub fn merge_tree(&mut self, other: &RevTree) {
        for (rev, node) in &other.nodes {
            match self.nodes.get_mut(rev) {
                Some(mine) => {
                    if mine.parent.is_none() {
                        mine.parent = node.parent.clone();
                    }
                    mine.deleted |= node.deleted;
                }
                None => {
                    self.nodes.insert(rev.clone(), node.clone());
                }
            }
        }
    }

    /// The set of revisions that some node names as its parent (present or stemmed).
    fn parent_set(&self) -> HashSet<(u64, &str)> {
        self.nodes
            .iter()
            .filter_map(|(rev, n)| n.parent.as_deref().map(|p| (rev.generation() - 1, p)))
            .collect()
    }

    /// The leaves: revisions with no child in the tree, in ascending revision order.
    pub fn leaves(&self) -> Vec<Leaf> {
        let parents = self.parent_set();
        self.nodes
            .iter()
            .filter(|(rev, _)| !parents.contains(&(rev.generation(), rev.hash())))
            .map(|(rev, n)| Leaf {
                rev: rev.clone(),
                deleted: n.deleted,
            })
            .collect()
    }

    /// Whether the revision is a leaf of the tree.
    pub fn is_leaf(&self, rev: &Rev) -> bool {
        self.nodes.contains_key(rev)
            && !self.nodes.iter().any(|(r, n)| {
                r.generation() == rev.generation() + 1 && n.parent.as_deref() == Some(rev.hash())
            })
    }

    /// The winning leaf: not deleted beats deleted, then highest generation, then highest hash.
    pub fn winner(&self) -> Option<Leaf> {
        self.leaves()
            .into_iter()
            .max_by(|a, b| (!a.deleted, &a.rev).cmp(&(!b.deleted, &b.rev)))
    }

    /// Non-deleted leaves other than the winner, highest first (CouchDB's `_conflicts`).
    pub fn conflicts(&self) -> Vec<Rev> {
        self.losing_leaves(false)
    }

    /// Deleted leaves other than the winner, highest first (CouchDB's `_deleted_conflicts`).
    pub fn deleted_conflicts(&self) -> Vec<Rev> {
        self.losing_leaves(true)
    }

    fn losing_leaves(&self, deleted: bool) -> Vec<Rev> {
        let winner = self.winner().map(|w| w.rev);
        let mut out: Vec<Rev> = self
            .leaves()
            .into_iter()
            .filter(|l| l.deleted == deleted && Some(&l.rev) != winner.as_ref())
            .map(|l| l.rev)
            .collect();
        out.reverse();
        out
    }

    /// The ancestry of a revision, newest first, as far back as the tree holds it.
    pub fn path_to(&self, rev: &Rev) -> Option<Vec<Rev>> {
        if !self.nodes.contains_key(rev) {
            return None;
        }
        let mut path = vec![rev.clone()];
        let mut current = rev.clone();
        while let Some(parent) = self.parent_of(&current) {
            path.push(parent.clone());
            current = parent;
        }
        Some(path)
    }

    /// Every revision in ascending order, with its deleted flag.
    pub fn revisions(&self) -> impl Iterator<Item = (&Rev, bool)> {
        self.nodes.iter().map(|(r, n)| (r, n.deleted))
    }

    /// Drops revisions more than `limit` edits behind every leaf (CouchDB's `_revs_limit`).
    ///
    /// Returns the revisions removed, so their stored bodies can be removed too. Leaves are never
    /// removed.
    pub fn stem(&mut self, limit: usize) -> Vec<Rev> {
        let limit = limit.max(1);
        let mut keep: BTreeSet<Rev> = BTreeSet::new();
        for leaf in self.leaves() {
            let mut current = Some(leaf.rev);
            let mut depth = 0;
            while let Some(rev) = current {
                if depth == limit {
                    break;
                }
                depth += 1;
                current = self.parent_of(&rev);
                keep.insert(rev);
            }
        }
        let removed: Vec<Rev> = self
            .nodes
            .keys()
            .filter(|r| !keep.contains(*r))
            .cloned()
            .collect();
        for r in &removed {
            self.nodes.remove(r);
        }
        removed
    }

    /// Serializes to a compact binary form for storage.
    ///
    /// Layout: node count, then per node: generation, hash, parent hash (empty when none), flags.
    /// Integers are LEB128; strings are length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.nodes.len() * 40 + 4);
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.nodes.len() as u64);
        for (rev, node) in &self.nodes {
            put_varint(&mut out, rev.generation());
            put_str(&mut out, rev.hash());
            put_str(&mut out, node.parent.as_deref().unwrap_or(""));
            out.push(u8::from(node.deleted));
        }
        out
    }

    /// Reads the form written by [`RevTree::encode`].
    pub fn decode(bytes: &[u8]) -> Result<RevTree, Error> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != FORMAT_VERSION {
            return Err(Error::Corrupt("unknown revision tree format".into()));
        }
        let count = r.varint()?;
        let mut nodes = BTreeMap::new();
        for _ in 0..count {
            let generation = r.varint()?;
            let hash = r.string()?;
            let parent = r.string()?;
            let deleted = r.byte()? != 0;
            let rev = Rev::new(generation, hash).map_err(|e| Error::Corrupt(e.to_string()))?;
            let parent = (!parent.is_empty()).then_some(parent);
            nodes.insert(rev, Node { parent, deleted });
        }
        if r.pos != bytes.len() {
            return Err(Error::Corrupt("trailing bytes after revision tree".into()));
        }
        Ok(RevTree { nodes })
    }
}

const FORMAT_VERSION: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| Error::Corrupt("revision tree is truncated".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Corrupt("revision tree integer overflows".into()))
    }

    fn string(&mut self) -> Result<String, Error> {
        let len = usize::try_from(self.varint()?)
            .map_err(|_| Error::Corrupt("length overflows".into()))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| Error::Corrupt("revision tree is truncated".into()))?;
        let s = std::str::from_utf8(&self.bytes[self.pos..end])
            .map_err(|_| Error::Corrupt("revision hash is not UTF-8".into()))?
            .to_owned();
        self.pos = end;
        Ok(s)
    }
}
