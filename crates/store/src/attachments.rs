//! Attachment contents: stored once per database by digest, gzip-compressed when that helps.

use std::io::{Read, Write};

use base64::Engine;
use flate2::Compression;
use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;

/// Attachments at least this large, of a compressible type, are stored gzip-compressed.
pub const COMPRESS_MIN_BYTES: usize = 1024;

const IDENTITY: i64 = 0;
const GZIP: i64 = 1;

/// CouchDB's attachment digest: `md5-` and the base64 MD5 of the bytes.
pub fn digest(data: &[u8]) -> String {
    let sum = Md5::digest(data);
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

/// Content types worth compressing (CouchDB's `compressible_types` default, plus FHIR's).
fn compressible(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.ends_with("+json")
        || ct.ends_with("+xml")
        || matches!(
            ct.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-ndjson"
                | "image/svg+xml"
        )
}

/// Stores the bytes under their digest unless already present; returns the digest.
pub(crate) fn put(
    conn: &Connection,
    db_id: i64,
    content_type: &str,
    data: &[u8],
) -> Result<String, Error> {
    let d = digest(data);
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM attachments WHERE db_id = ?1 AND digest = ?2")?
        .query_row(params![db_id, d], |r| r.get(0))
        .optional()?;
    if exists.is_some() {
        return Ok(d);
    }
    let (encoding, stored) = if data.len() >= COMPRESS_MIN_BYTES && compressible(content_type) {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(data.len() / 2),
            Compression::default(),
        );
        enc.write_all(data)
            .map_err(|e| Error::Io("compressing an attachment", e))?;
        let gz = enc
            .finish()
            .map_err(|e| Error::Io("compressing an attachment", e))?;
        if gz.len() < data.len() {
            (GZIP, gz)
        } else {
            (IDENTITY, data.to_vec())
        }
    } else {
        (IDENTITY, data.to_vec())
    };
    conn.prepare_cached("INSERT INTO attachments (db_id, digest, encoding, length, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![db_id, d, encoding, data.len() as i64, stored])?;
    Ok(d)
}

/// Whether the database holds content with this digest.
pub(crate) fn exists(conn: &Connection, db_id: i64, digest: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM attachments WHERE db_id = ?1 AND digest = ?2")?
        .query_row(params![db_id, digest], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Reads the identity bytes for a digest.
pub(crate) fn get(conn: &Connection, db_id: i64, want: &str) -> Result<Vec<u8>, Error> {
    let row: Option<(i64, i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT encoding, length, data FROM attachments WHERE db_id = ?1 AND digest = ?2",
        )?
        .query_row(params![db_id, want], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (encoding, length, data) = row.ok_or(Error::NotFound("missing"))?;
    let out = match encoding {
        IDENTITY => data,
        GZIP => {
            let mut out = Vec::with_capacity(length as usize);
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .map_err(|_| Error::Corrupt("a stored attachment does not decompress".into()))?;
            out
        }
        _ => {
            return Err(Error::Corrupt(
                "a stored attachment has an unknown encoding".into(),
            ));
        }
    };
    if out.len() as i64 != length || digest(&out) != want {
        return Err(Error::Corrupt(
            "a stored attachment does not match its digest".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_couchdb() {
        // CouchDB's digest for "hello": md5 5d41402abc4b2a76b9719d911017c592, base64.
        assert_eq!(digest(b"hello"), "md5-XUFAKrxLKna5cZ2REBfFkg==");
    }

    #[test]
    fn compresses_large_compressible_content_only_and_reads_it_back() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO dbs (id, name, uuid, created_at) VALUES (1, 'd', 'u', 0)",
            [],
        )
        .unwrap();
        let stored = |d: &str| -> (i64, usize) {
            conn.query_row(
                "SELECT encoding, length(data) FROM attachments WHERE digest = ?1",
                [d],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)),
            )
            .unwrap()
        };
        let note = "Patient reports improved sleep. ".repeat(100).into_bytes();
        let d = put(&conn, 1, "text/plain", &note).unwrap();
        let (enc, len) = stored(&d);
        assert_eq!(enc, GZIP);
        assert!(len < note.len() / 4, "{len} of {}", note.len());
        assert_eq!(get(&conn, 1, &d).unwrap(), note);
        // Small, or not compressible by type: stored as is.
        let small = put(&conn, 1, "text/plain", b"short").unwrap();
        assert_eq!(stored(&small), (IDENTITY, 5));
        let png = vec![7u8; 4096];
        let p = put(&conn, 1, "image/png", &png).unwrap();
        assert_eq!(stored(&p), (IDENTITY, 4096));
        // The same bytes again are stored once.
        assert_eq!(put(&conn, 1, "text/plain", &note).unwrap(), d);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM attachments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        // Corrupted stored bytes are reported, not returned.
        conn.execute(
            "UPDATE attachments SET data = x'00' WHERE digest = ?1",
            [&small],
        )
        .unwrap();
        assert!(matches!(get(&conn, 1, &small), Err(Error::Corrupt(_))));
    }

    #[test]
    fn compressible_types() {
        assert!(compressible("text/plain; charset=utf-8"));
        assert!(compressible("application/fhir+json"));
        assert!(!compressible("image/png"));
        assert!(!compressible("application/octet-stream"));
    }
}
