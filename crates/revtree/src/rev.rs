//! Revision identifiers: `"{generation}-{hash}"`, as in CouchDB.
//!
//! See <https://docs.couchdb.org/en/stable/replication/conflicts.html> and
//! <https://docs.couchdb.org/en/stable/api/document/common.html> for the `_rev` format.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// One revision of a document: its generation (1 for the first edit) and a hash.
///
/// Ordering is CouchDB's: generation as a number first, then the hash as a string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Rev {
    generation: u64,
    hash: String,
}

impl Rev {
    /// Builds a revision from its parts, checking the hash is a usable token.
    pub fn new(generation: u64, hash: impl Into<String>) -> Result<Rev, Error> {
        let hash = hash.into();
        if generation == 0 {
            return Err(Error::InvalidRev("generation must be at least 1".into()));
        }
        validate_hash(&hash)?;
        Ok(Rev { generation, hash })
    }

    /// The generation: how many edits lead to this revision.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The hash part after the dash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The content-derived revision that follows `parent` for this edit.
    ///
    /// The hash is MD5 over the parent revision, the deleted flag, the canonical JSON of the body
    /// (keys sorted, no whitespace) and the attachment digests sorted by name, so two replicas that
    /// make the identical edit produce the identical revision (CouchDB does the same with Erlang
    /// terms; our bytes differ, which only matters for edits made on both sides, where we agree).
    pub fn derive(
        parent: Option<&Rev>,
        deleted: bool,
        canonical_body: &[u8],
        attachments: &[(&str, &str)],
    ) -> Rev {
        let mut h = Md5::new();
        match parent {
            Some(p) => {
                h.update(p.to_string().as_bytes());
            }
            None => h.update(b"-"),
        }
        h.update([0u8, u8::from(deleted)]);
        h.update((canonical_body.len() as u64).to_le_bytes());
        h.update(canonical_body);
        let mut atts: Vec<&(&str, &str)> = attachments.iter().collect();
        atts.sort();
        for (name, digest) in atts {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((digest.len() as u64).to_le_bytes());
            h.update(digest.as_bytes());
        }
        Rev {
            generation: parent.map_or(1, |p| p.generation + 1),
            hash: hex::encode(h.finalize()),
        }
    }
}

fn validate_hash(hash: &str) -> Result<(), Error> {
    if hash.is_empty() || hash.len() > 128 {
        return Err(Error::InvalidRev(
            "the hash part must be 1 to 128 characters".into(),
        ));
    }
    if !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::InvalidRev(
            "the hash part must be letters and digits".into(),
        ));
    }
    Ok(())
}

impl Ord for Rev {
    fn cmp(&self, other: &Self) -> Ordering {
        self.generation
            .cmp(&other.generation)
            .then_with(|| self.hash.cmp(&other.hash))
    }
}

impl PartialOrd for Rev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.generation, self.hash)
    }
}

impl fmt::Debug for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rev({self})")
    }
}

impl FromStr for Rev {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rev, Error> {
        let (generation, hash) = s
            .split_once('-')
            .ok_or_else(|| Error::InvalidRev("expected \"{generation}-{hash}\"".into()))?;
        let generation: u64 = generation
            .parse()
            .map_err(|_| Error::InvalidRev("the generation must be a positive integer".into()))?;
        Rev::new(generation, hash)
    }
}

impl Serialize for Rev {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rev {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rev, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `_revisions` field of CouchDB: a revision's ancestry, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revisions {
    /// Generation of the first (newest) id.
    pub start: u64,
    /// Hashes, newest first; each is the parent of the one before it.
    pub ids: Vec<String>,
}

impl Revisions {
    /// Expands to full revisions, newest first, checking the generations stay positive.
    pub fn to_path(&self) -> Result<Vec<Rev>, Error> {
        if self.ids.is_empty() {
            return Err(Error::InvalidRev("_revisions.ids must not be empty".into()));
        }
        if (self.ids.len() as u64) > self.start {
            return Err(Error::InvalidRev(
                "_revisions lists more ancestors than its start generation allows".into(),
            ));
        }
        self.ids
            .iter()
            .enumerate()
            .map(|(i, h)| Rev::new(self.start - i as u64, h.clone()))
            .collect()
    }

    /// Builds from a path of revisions, newest first.
    pub fn from_path(path: &[Rev]) -> Option<Revisions> {
        let first = path.first()?;
        Some(Revisions {
            start: first.generation,
            ids: path.iter().map(|r| r.hash.clone()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let r: Rev = "12-abcdef0123".parse().unwrap();
        assert_eq!(r.generation(), 12);
        assert_eq!(r.hash(), "abcdef0123");
        assert_eq!(r.to_string(), "12-abcdef0123");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "abc", "0-abc", "-abc", "1-", "x-abc", "1-ab/c", "1-a b"] {
            assert!(bad.parse::<Rev>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn orders_generation_numerically_then_hash() {
        let a: Rev = "9-fff".parse().unwrap();
        let b: Rev = "10-000".parse().unwrap();
        let c: Rev = "10-001".parse().unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn derive_is_deterministic_and_sensitive() {
        let p: Rev = "1-aaaa".parse().unwrap();
        let x = Rev::derive(Some(&p), false, br#"{"a":1}"#, &[]);
        let y = Rev::derive(Some(&p), false, br#"{"a":1}"#, &[]);
        assert_eq!(x, y);
        assert_eq!(x.generation(), 2);
        assert_eq!(x.hash().len(), 32);
        assert_ne!(x, Rev::derive(Some(&p), true, br#"{"a":1}"#, &[]));
        assert_ne!(x, Rev::derive(Some(&p), false, br#"{"a":2}"#, &[]));
        assert_ne!(x, Rev::derive(None, false, br#"{"a":1}"#, &[]));
        let with_att = Rev::derive(Some(&p), false, br#"{"a":1}"#, &[("f", "md5-x")]);
        assert_ne!(x, with_att);
        assert_eq!(
            with_att,
            Rev::derive(Some(&p), false, br#"{"a":1}"#, &[("f", "md5-x")])
        );
    }

    #[test]
    fn revisions_round_trip() {
        let r = Revisions {
            start: 3,
            ids: vec!["c".into(), "b".into(), "a".into()],
        };
        let path = r.to_path().unwrap();
        assert_eq!(path[2].to_string(), "1-a");
        assert_eq!(Revisions::from_path(&path).unwrap(), r);
        assert!(
            Revisions {
                start: 1,
                ids: vec!["b".into(), "a".into()]
            }
            .to_path()
            .is_err()
        );
        assert!(
            Revisions {
                start: 1,
                ids: vec![]
            }
            .to_path()
            .is_err()
        );
    }
}
