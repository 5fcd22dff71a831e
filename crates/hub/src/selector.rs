//! Mango selectors, as `_changes?filter=_selector` uses them: a JSON query evaluated in Rust
//! against each document. See <https://docs.couchdb.org/en/stable/api/database/find.html>.
//!
//! Supported: implicit equality, nested fields (`"a.b"` and `{"a": {"b": …}}`), `$eq`, `$ne`,
//! `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`, `$exists`, `$type`, `$size`, `$mod`, `$all`,
//! `$elemMatch`, `$allMatch`, `$and`, `$or`, `$nor`, `$not`. Values compare in CouchDB's
//! collation order across types (null < false < true < numbers < strings < arrays < objects);
//! strings compare by code point, not ICU. `$regex` is refused (no regex engine is shipped).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::{CouchError, CouchResult};

/// A checked selector.
#[derive(Debug, Clone)]
pub struct Selector(Cond);

#[derive(Debug, Clone)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Nor(Vec<Cond>),
    Not(Box<Cond>),
    Field(Vec<String>, Op),
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, bool, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(String),
    Size(u64),
    Mod(i64, i64),
    All(Vec<Value>),
    ElemMatch(Box<Cond>),
    AllMatch(Box<Cond>),
    Not(Box<Op>),
    Sub(Box<Cond>),
}

fn invalid(reason: impl Into<String>) -> CouchError {
    CouchError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_selector",
        reason,
    )
}

impl Selector {
    /// Checks a selector; a malformed one is a 400 naming what is wrong.
    pub fn parse(v: &Value) -> CouchResult<Selector> {
        match v {
            Value::Object(m) => Ok(Selector(parse_object(m, &[])?)),
            _ => Err(invalid("a selector must be a JSON object")),
        }
    }

    /// Whether a document (its full JSON, `_id` and `_rev` included) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        eval(&self.0, doc)
    }
}

fn split_path(field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '.' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_object(m: &Map<String, Value>, prefix: &[String]) -> CouchResult<Cond> {
    let mut all = Vec::with_capacity(m.len());
    for (k, v) in m {
        all.push(parse_entry(k, v, prefix)?);
    }
    Ok(if all.len() == 1 {
        all.remove(0)
    } else {
        Cond::And(all)
    })
}

fn parse_list(v: &Value, op: &str) -> CouchResult<Vec<Cond>> {
    let Value::Array(items) = v else {
        return Err(invalid(format!("{op} takes an array of selectors")));
    };
    items
        .iter()
        .map(|i| match i {
            Value::Object(m) => parse_object(m, &[]),
            _ => Err(invalid(format!("{op} takes an array of selectors"))),
        })
        .collect()
}

fn parse_entry(k: &str, v: &Value, prefix: &[String]) -> CouchResult<Cond> {
    match k {
        "$and" => Ok(Cond::And(parse_list(v, k)?)),
        "$or" => Ok(Cond::Or(parse_list(v, k)?)),
        "$nor" => Ok(Cond::Nor(parse_list(v, k)?)),
        "$not" => match v {
            Value::Object(m) => Ok(Cond::Not(Box::new(parse_object(m, prefix)?))),
            _ => Err(invalid("$not takes a selector")),
        },
        k if k.starts_with('$') => Err(invalid(format!("Invalid operator: {k}"))),
        field => {
            let mut path = prefix.to_vec();
            path.extend(split_path(field));
            Ok(Cond::Field(path.clone(), parse_ops(v, &path)?))
        }
    }
}

fn parse_ops(v: &Value, path: &[String]) -> CouchResult<Op> {
    let Value::Object(m) = v else {
        return Ok(Op::Eq(v.clone()));
    };
    if !m.keys().any(|k| k.starts_with('$')) {
        // {"a": {"b": 1}}: a sub-selector on the field's fields.
        return Ok(Op::Sub(Box::new(parse_object(m, &[])?)));
    }
    let mut ops = Vec::with_capacity(m.len());
    for (op, arg) in m {
        ops.push(parse_op(op, arg, path)?);
    }
    Ok(if ops.len() == 1 {
        ops.remove(0)
    } else {
        Op::Sub(Box::new(Cond::And(
            ops.into_iter()
                .map(|o| Cond::Field(Vec::new(), o))
                .collect(),
        )))
    })
}

fn array_arg(arg: &Value, op: &str) -> CouchResult<Vec<Value>> {
    match arg {
        Value::Array(a) => Ok(a.clone()),
        _ => Err(invalid(format!("{op} takes an array"))),
    }
}

fn parse_op(op: &str, arg: &Value, path: &[String]) -> CouchResult<Op> {
    Ok(match op {
        "$eq" => Op::Eq(arg.clone()),
        "$ne" => Op::Ne(arg.clone()),
        "$gt" => Op::Cmp(Ordering::Greater, false, arg.clone()),
        "$gte" => Op::Cmp(Ordering::Greater, true, arg.clone()),
        "$lt" => Op::Cmp(Ordering::Less, false, arg.clone()),
        "$lte" => Op::Cmp(Ordering::Less, true, arg.clone()),
        "$in" => Op::In(array_arg(arg, op)?),
        "$nin" => Op::Nin(array_arg(arg, op)?),
        "$all" => Op::All(array_arg(arg, op)?),
        "$exists" => Op::Exists(
            arg.as_bool()
                .ok_or_else(|| invalid("$exists takes true or false"))?,
        ),
        "$type" => {
            let t = arg.as_str().unwrap_or("");
            if !matches!(
                t,
                "null" | "boolean" | "number" | "string" | "array" | "object"
            ) {
                return Err(invalid(
                    "$type takes one of null, boolean, number, string, array, object",
                ));
            }
            Op::Type(t.to_owned())
        }
        "$size" => Op::Size(
            arg.as_u64()
                .ok_or_else(|| invalid("$size takes a non-negative integer"))?,
        ),
        "$mod" => match arg.as_array().map(Vec::as_slice) {
            Some([d, r]) => match (d.as_i64(), r.as_i64()) {
                (Some(d), Some(r)) if d != 0 => Op::Mod(d, r),
                _ => {
                    return Err(invalid(
                        "$mod takes [divisor, remainder], integers, divisor not 0",
                    ));
                }
            },
            _ => return Err(invalid("$mod takes [divisor, remainder]")),
        },
        "$elemMatch" | "$allMatch" => {
            let Value::Object(m) = arg else {
                return Err(invalid(format!("{op} takes a selector")));
            };
            // Elements may be scalars: {"$elemMatch": {"$eq": 1}} applies to the element.
            let cond = if m.keys().all(|k| {
                k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$not")
            }) {
                Cond::Field(Vec::new(), parse_ops(arg, path)?)
            } else {
                parse_object(m, &[])?
            };
            if op == "$elemMatch" {
                Op::ElemMatch(Box::new(cond))
            } else {
                Op::AllMatch(Box::new(cond))
            }
        }
        "$not" => Op::Not(Box::new(parse_ops(arg, path)?)),
        "$regex" => {
            return Err(invalid(
                "$regex is not supported by the Hearth hub; filter with $eq, $in or ranges",
            ));
        }
        other => return Err(invalid(format!("Invalid operator: {other}"))),
    })
}

fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for p in path {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn eval(c: &Cond, doc: &Value) -> bool {
    match c {
        Cond::And(all) => all.iter().all(|c| eval(c, doc)),
        Cond::Or(any) => any.iter().any(|c| eval(c, doc)),
        Cond::Nor(any) => !any.iter().any(|c| eval(c, doc)),
        Cond::Not(c) => !eval(c, doc),
        Cond::Field(path, op) => apply(op, lookup(doc, path)),
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// CouchDB's collation of JSON values (strings by code point).
pub fn collate(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = collate(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((k1, v1), (k2, v2)) in x.iter().zip(y) {
                let o = k1.cmp(k2).then_with(|| collate(v1, v2));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn eq(a: &Value, b: &Value) -> bool {
    collate(a, b) == Ordering::Equal
}

fn apply(op: &Op, v: Option<&Value>) -> bool {
    match op {
        Op::Exists(want) => v.is_some() == *want,
        Op::Not(inner) => v.is_some() && !apply(inner, v),
        _ => {
            let Some(v) = v else {
                return false;
            };
            match op {
                Op::Eq(x) => eq(v, x),
                Op::Ne(x) => !eq(v, x),
                Op::Cmp(dir, or_eq, x) => {
                    let o = collate(v, x);
                    o == *dir || (*or_eq && o == Ordering::Equal)
                }
                Op::In(xs) => xs.iter().any(|x| eq(v, x)),
                Op::Nin(xs) => !xs.iter().any(|x| eq(v, x)),
                Op::Type(t) => {
                    let actual = match v {
                        Value::Null => "null",
                        Value::Bool(_) => "boolean",
                        Value::Number(_) => "number",
                        Value::String(_) => "string",
                        Value::Array(_) => "array",
                        Value::Object(_) => "object",
                    };
                    actual == t
                }
                Op::Size(n) => v.as_array().is_some_and(|a| a.len() as u64 == *n),
                Op::Mod(d, r) => v.as_i64().is_some_and(|x| x % d == *r),
                Op::All(xs) => v
                    .as_array()
                    .is_some_and(|a| xs.iter().all(|x| a.iter().any(|e| eq(e, x)))),
                Op::ElemMatch(c) => v.as_array().is_some_and(|a| a.iter().any(|e| eval(c, e))),
                Op::AllMatch(c) => v.as_array().is_some_and(|a| a.iter().all(|e| eval(c, e))),
                Op::Sub(c) => eval(c, v),
                Op::Exists(_) | Op::Not(_) => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(sel: Value, doc: Value) -> bool {
        Selector::parse(&sel).unwrap().matches(&doc)
    }

    #[test]
    fn matches_like_couchdb() {
        let doc = json!({"_id":"Patient/1","resourceType":"Patient","age":42,
            "name":{"family":"Okafor"},"tags":["a","b"],"vitals":[{"code":"bp","v":120}]});
        assert!(m(json!({"resourceType":"Patient"}), doc.clone()));
        assert!(!m(json!({"resourceType":"Observation"}), doc.clone()));
        assert!(m(json!({"age":{"$gt":40,"$lte":42}}), doc.clone()));
        assert!(!m(json!({"age":{"$gt":42}}), doc.clone()));
        assert!(m(json!({"name.family":"Okafor"}), doc.clone()));
        assert!(m(json!({"name":{"family":"Okafor"}}), doc.clone()));
        assert!(m(json!({"tags":{"$all":["b","a"]}}), doc.clone()));
        assert!(m(json!({"tags":{"$size":2}}), doc.clone()));
        assert!(m(
            json!({"vitals":{"$elemMatch":{"code":"bp","v":{"$gte":100}}}}),
            doc.clone()
        ));
        assert!(m(json!({"tags":{"$elemMatch":{"$eq":"a"}}}), doc.clone()));
        assert!(m(json!({"$or":[{"age":1},{"age":42}]}), doc.clone()));
        assert!(m(json!({"$nor":[{"age":1},{"age":2}]}), doc.clone()));
        assert!(m(json!({"missing":{"$exists":false}}), doc.clone()));
        assert!(!m(json!({"missing":{"$ne":1}}), doc.clone()));
        assert!(m(
            json!({"age":{"$in":[1,42]},"_id":{"$gte":"Patient/"}}),
            doc.clone()
        ));
        assert!(m(json!({"age":{"$mod":[5,2]}}), doc.clone()));
        assert!(m(json!({"age":{"$type":"number"}}), doc.clone()));
        assert!(m(json!({"age":{"$not":{"$eq":1}}}), doc.clone()));
        // Numbers sort before strings.
        assert!(m(json!({"age":{"$lt":"a"}}), doc));
    }

    #[test]
    fn rejects_bad_selectors() {
        for bad in [
            json!([1]),
            json!({"$foo":1}),
            json!({"a":{"$regex":"x"}}),
            json!({"a":{"$in":5}}),
            json!({"$or":{"a":1}}),
            json!({"a":{"$mod":[0,1]}}),
        ] {
            let e = Selector::parse(&bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
    }
}
