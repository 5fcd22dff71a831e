//! CouchDB query parameters: booleans spelled `true`/`false`, numbers, and JSON-encoded values
//! (`keys`, `startkey`, `open_revs`), each malformed one answered with `query_parse_error`.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{CouchError, CouchResult};

/// The query string of one request.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (absent: `default`).
    pub fn bool(&self, name: &str, default: bool) -> CouchResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(CouchError::query_parse(format!(
                "Invalid boolean parameter: {other:?}"
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub fn u64(&self, name: &str) -> CouchResult<Option<u64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                CouchError::query_parse(format!(
                    "Invalid value for integer parameter {name}: {v:?}"
                ))
            }),
        }
    }

    /// A JSON-encoded parameter.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> CouchResult<Option<T>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str(v).map(Some).map_err(|_| {
                CouchError::bad_request(format!("Parameter {name} is not valid JSON"))
            }),
        }
    }

    /// A JSON-encoded string key (`startkey="a"`); a bare word is taken as the string itself,
    /// as PouchDB's HTTP adapter sometimes sends.
    pub fn key(&self, names: &[&str]) -> CouchResult<Option<String>> {
        for name in names {
            if let Some(v) = self.get(name) {
                return match serde_json::from_str::<Value>(v) {
                    Ok(Value::String(s)) => Ok(Some(s)),
                    Ok(_) => Err(CouchError::query_parse(format!(
                        "{name} must be a JSON string (document ids are strings)"
                    ))),
                    Err(_) => Ok(Some(v.to_owned())),
                };
            }
        }
        Ok(None)
    }
}

/// Parses a `since` value: a sequence number (as CouchDB's replicator and PouchDB send it,
/// numeric or a string starting with the number) or `now` (given the current sequence).
pub fn parse_since(v: &Value, now: u64) -> CouchResult<u64> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| CouchError::bad_request("since must be a non-negative integer")),
        Value::String(s) if s == "now" => Ok(now),
        Value::String(s) => {
            let digits: &str = s.split('-').next().unwrap_or("");
            digits.parse::<u64>().map_err(|_| {
                CouchError::bad_request(format!(
                    "Malformed sequence supplied in 'since' parameter: {s:?}"
                ))
            })
        }
        _ => Err(CouchError::bad_request(
            "since must be a sequence number or \"now\"",
        )),
    }
}

/// Reads a `since` query parameter.
pub fn since_param(raw: Option<&str>, now: u64) -> CouchResult<u64> {
    match raw {
        None => Ok(0),
        Some("now") => Ok(now),
        Some(s) => {
            let v =
                serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_owned()));
            parse_since(&v, now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect(),
        )
    }

    #[test]
    fn parses_couchdb_parameters() {
        let q = p(&[
            ("include_docs", "true"),
            ("limit", "5"),
            ("startkey", "\"a\""),
            ("endkey", "b"),
        ]);
        assert!(q.bool("include_docs", false).unwrap());
        assert!(!q.bool("conflicts", false).unwrap());
        assert_eq!(q.u64("limit").unwrap(), Some(5));
        assert_eq!(q.key(&["startkey"]).unwrap().as_deref(), Some("a"));
        assert_eq!(q.key(&["endkey"]).unwrap().as_deref(), Some("b"));
        let e = p(&[("descending", "yes")])
            .bool("descending", false)
            .unwrap_err();
        assert_eq!(e.error, "query_parse_error");
        assert!(p(&[("limit", "-1")]).u64("limit").is_err());
        assert!(p(&[("startkey", "5")]).key(&["startkey"]).is_err());
    }

    #[test]
    fn parses_since() {
        assert_eq!(since_param(None, 9).unwrap(), 0);
        assert_eq!(since_param(Some("now"), 9).unwrap(), 9);
        assert_eq!(since_param(Some("12"), 9).unwrap(), 12);
        assert_eq!(since_param(Some("\"12-g1AAA\""), 9).unwrap(), 12);
        assert_eq!(parse_since(&json!(3), 9).unwrap(), 3);
        assert!(since_param(Some("abc"), 9).is_err());
        assert!(parse_since(&json!(-1), 9).is_err());
    }
}
