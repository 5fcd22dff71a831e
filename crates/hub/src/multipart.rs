//! The two MIME forms CouchDB uses for documents with attachments: `multipart/related` to write
//! a document with its attachment bodies (as CouchDB's replicator pushes them), and
//! `multipart/mixed` to answer `open_revs` for clients that ask for it. See
//! <https://docs.couchdb.org/en/stable/api/document/common.html#creating-multiple-attachments>.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde_json::Value;

use crate::error::{CouchError, CouchResult};

fn boundary_of(content_type: &str) -> CouchResult<String> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| CouchError::bad_request("multipart request without a boundary"))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// Splits a multipart body into parts (headers, body).
fn parts<'a>(body: &'a [u8], boundary: &str) -> CouchResult<Vec<(&'a [u8], &'a [u8])>> {
    let delim = format!("--{boundary}");
    let bad = || CouchError::bad_request("malformed multipart body");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or_else(bad)? + delim.len();
    let mut out = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(out);
        }
        // Skip the line break after the delimiter.
        if body.get(pos..pos + 2) == Some(b"\r\n") {
            pos += 2;
        } else if body.get(pos..pos + 1) == Some(b"\n") {
            pos += 1;
        }
        let next = find(body, delim.as_bytes(), pos).ok_or_else(bad)?;
        let mut part = &body[pos..next];
        // The line break before the next delimiter belongs to it.
        if part.ends_with(b"\r\n") {
            part = &part[..part.len() - 2];
        } else if part.ends_with(b"\n") {
            part = &part[..part.len() - 1];
        }
        let (head, content) = match find(part, b"\r\n\r\n", 0) {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => match find(part, b"\n\n", 0) {
                Some(i) => (&part[..i], &part[i + 2..]),
                None if part.starts_with(b"\r\n") => (&part[..0], &part[2..]),
                None => return Err(bad()),
            },
        };
        out.push((head, content));
        pos = next + delim.len();
    }
}

/// Reads a `multipart/related` document write: the first part is the JSON document, whose
/// attachments marked `"follows": true` take the following parts in order. Returns the
/// document with those attachments inline.
pub fn parse_related(content_type: &str, body: &[u8]) -> CouchResult<Value> {
    let boundary = boundary_of(content_type)?;
    let parts = parts(body, &boundary)?;
    let Some(((_, first), rest)) = parts.split_first() else {
        return Err(CouchError::bad_request(
            "multipart body has no document part",
        ));
    };
    let mut doc: Value = serde_json::from_slice(first)
        .map_err(|_| CouchError::bad_request("the first multipart part is not a JSON document"))?;
    let mut bodies = rest.iter();
    if let Some(Value::Object(atts)) = doc.get_mut("_attachments") {
        for (_, att) in atts.iter_mut() {
            let Some(obj) = att.as_object_mut() else {
                continue;
            };
            if obj.get("follows").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let (_, data) = bodies.next().ok_or_else(|| {
                CouchError::bad_request("an attachment marked follows has no multipart part")
            })?;
            obj.shift_remove("follows");
            obj.shift_remove("length");
            obj.shift_remove("encoding");
            obj.insert(
                "data".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(data)
                    .into(),
            );
        }
    }
    Ok(doc)
}

/// An `open_revs` answer as `multipart/mixed`, one JSON part per revision (attachments
/// inline).
pub fn mixed_response(items: &[Value]) -> Response {
    let boundary = format!("hearth-{:016x}", {
        let b = vault::random_bytes::<8>().unwrap_or([7; 8]);
        u64::from_le_bytes(b)
    });
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/json").as_bytes());
        let body = match item.get("ok") {
            Some(doc) => doc.clone(),
            None => item.clone(),
        };
        if item.get("missing").is_some() {
            out.extend_from_slice(b"; error=\"true\"");
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--").as_bytes());
    let mut resp = Response::new(Body::from(out));
    *resp.status_mut() = StatusCode::OK;
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary=\"{boundary}\"")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_related_write() {
        let body = b"--abc\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"d\",\"_attachments\":{\"a.txt\":{\"follows\":true,\"content_type\":\"text/plain\",\"length\":5}}}\r\n--abc\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nhello\r\n--abc--";
        let v = parse_related("multipart/related; boundary=\"abc\"", body).unwrap();
        assert_eq!(v["_attachments"]["a.txt"]["data"], "aGVsbG8=");
        assert!(v["_attachments"]["a.txt"].get("follows").is_none());
        assert!(parse_related("multipart/related", body).is_err());
        assert!(parse_related("multipart/related; boundary=zzz", body).is_err());
        let short =
            b"--abc\r\n\r\n{\"_id\":\"d\",\"_attachments\":{\"a\":{\"follows\":true}}}\r\n--abc--";
        assert!(parse_related("multipart/related; boundary=abc", short).is_err());
    }
}
