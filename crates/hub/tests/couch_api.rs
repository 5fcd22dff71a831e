//! The hub's CouchDB API over real HTTP (a server on 127.0.0.1 port 0) and a real SQLCipher
//! file: status codes and error bodies as CouchDB gives them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use store::Role;

struct TestHub {
    url: String,
    client: Client,
    hub: Arc<hub::Hub>,
    store: Arc<store::Store>,
    _dir: tempfile::TempDir,
}

async fn start() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        store::Store::open(&dir.path().join("hub.db"), &vault::Dek::generate().unwrap()).unwrap(),
    );
    let hub = Arc::new(hub::Hub::new(store.clone()).unwrap());
    hub.set_account("admin", "admin-password", true).unwrap();
    hub.set_account("nurse", "nurse-password", false).unwrap();
    hub.set_account_role("front", "front-password", Role::FrontDesk)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hub::serve(
        listener,
        hub::router(hub.clone(), 1024 * 1024),
        std::future::pending(),
    ));
    TestHub {
        url: format!("http://{addr}"),
        client: Client::new(),
        hub,
        store,
        _dir: dir,
    }
}

impl TestHub {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(("admin", "admin-password")), method, path, body)
            .await
    }

    async fn call_as(
        &self,
        who: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some((u, p)) = who {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn err(v: &Value) -> (&str, &str) {
    (
        v["error"].as_str().unwrap_or("<none>"),
        v["reason"].as_str().unwrap_or("<none>"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_auth_and_databases() {
    let h = start().await;
    let (s, v) = h.call_as(None, Method::GET, "/", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["couchdb"], "Welcome");
    assert_eq!(v["vendor"]["name"], "Hearth");
    assert_eq!(v["uuid"].as_str().unwrap().len(), 32);

    // Anonymous and wrong credentials are refused.
    let (s, v) = h.call_as(None, Method::GET, "/_all_dbs", None).await;
    assert_eq!((s, err(&v).0), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, v) = h
        .call_as(
            Some(("admin", "wrong-password")),
            Method::GET,
            "/_all_dbs",
            None,
        )
        .await;
    assert_eq!(
        (s, err(&v)),
        (
            StatusCode::UNAUTHORIZED,
            ("unauthorized", "Name or password is incorrect.")
        )
    );
    let (s, _) = h
        .call_as(
            Some(("nobody", "whatever1")),
            Method::GET,
            "/_all_dbs",
            None,
        )
        .await;
    assert_eq!(s, 401);

    // Database rules.
    assert_eq!(h.call(Method::PUT, "/records", None).await.0, 201);
    let (s, v) = h.call(Method::PUT, "/records", None).await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::PRECONDITION_FAILED, "file_exists")
    );
    let (s, v) = h.call(Method::PUT, "/Records", None).await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::BAD_REQUEST, "illegal_database_name")
    );
    let (s, v) = h.call(Method::GET, "/missing", None).await;
    assert_eq!(
        (s, err(&v)),
        (
            StatusCode::NOT_FOUND,
            ("not_found", "Database does not exist.")
        )
    );
    let (s, v) = h.call(Method::DELETE, "/records?rev=1-abc", None).await;
    assert_eq!((s, err(&v).0), (StatusCode::BAD_REQUEST, "bad_request"));
    // A member account replicates but cannot create or delete databases.
    let nurse = Some(("nurse", "nurse-password"));
    let (s, v) = h.call_as(nurse, Method::PUT, "/other", None).await;
    assert_eq!((s, err(&v).0), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert_eq!(h.call_as(nurse, Method::GET, "/records", None).await.0, 200);
    assert_eq!(
        h.call(Method::GET, "/_all_dbs", None).await.1,
        json!(["records"])
    );

    // Cookie sessions.
    let resp = h
        .client
        .post(format!("{}/_session", h.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("name=nurse&password=nurse-password")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("AuthSession="));
    let v: Value = h
        .client
        .get(format!("{}/_session", h.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["userCtx"]["name"], "nurse");
    assert_eq!(v["info"]["authenticated"], "cookie");
    let s = h
        .client
        .get(format!("{}/records", h.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 200);
    let s = h
        .client
        .get(format!("{}/records", h.url))
        .header("Cookie", "AuthSession=Zm9yZ2Vk")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 401);

    assert_eq!(h.call(Method::DELETE, "/records", None).await.0, 200);
    assert_eq!(h.call(Method::GET, "/records", None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_revisions_and_errors() {
    let h = start().await;
    h.call(Method::PUT, "/db", None).await;
    let (s, v) = h
        .call(
            Method::PUT,
            "/db/Patient%2Fp1",
            Some(json!({"resourceType": "Patient", "n": 1})),
        )
        .await;
    assert_eq!(s, 201);
    let rev1 = v["rev"].as_str().unwrap().to_owned();
    assert_eq!(v["id"], "Patient/p1");
    // Stale edit: 409.
    let (s, _) = h
        .call(Method::PUT, "/db/Patient%2Fp1", Some(json!({"n": 2})))
        .await;
    assert_eq!(s, 409);
    let (s, v) = h
        .call(
            Method::PUT,
            "/db/Patient%2Fp1",
            Some(json!({"_rev": rev1, "n": 2})),
        )
        .await;
    assert_eq!(s, 201);
    let rev2 = v["rev"].as_str().unwrap().to_owned();
    let (_, v) = h
        .call(
            Method::GET,
            "/db/Patient%2Fp1?revs_info=true&revs=true",
            None,
        )
        .await;
    assert_eq!(v["n"], 2);
    assert_eq!(v["_revisions"]["start"], 2);
    assert_eq!(v["_revs_info"][0]["status"], "available");
    // Bad input.
    let (s, v) = h.call(Method::PUT, "/db/_bad", Some(json!({}))).await;
    assert_eq!((s, err(&v).0), (StatusCode::BAD_REQUEST, "illegal_docid"));
    let (s, v) = h.call(Method::PUT, "/db/x", Some(json!({"_foo": 1}))).await;
    assert_eq!((s, err(&v).0), (StatusCode::BAD_REQUEST, "doc_validation"));
    let resp = h
        .client
        .put(format!("{}/db/x", h.url))
        .basic_auth("admin", Some("admin-password"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(err(&v).0, "bad_request");
    let (s, v) = h
        .call(Method::GET, "/db/Patient%2Fp1?rev=9-zzz", None)
        .await;
    assert_eq!(
        (s, err(&v)),
        (StatusCode::NOT_FOUND, ("not_found", "missing"))
    );
    let (s, v) = h
        .call(Method::GET, "/db/Patient%2Fp1?rev=bogus", None)
        .await;
    assert_eq!((s, err(&v).0), (StatusCode::BAD_REQUEST, "bad_request"));
    // Deleted vs missing.
    let (s, v) = h
        .call(
            Method::DELETE,
            &format!("/db/Patient%2Fp1?rev={rev2}"),
            None,
        )
        .await;
    assert_eq!((s, v["ok"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, v) = h.call(Method::GET, "/db/Patient%2Fp1", None).await;
    assert_eq!(
        (s, err(&v)),
        (StatusCode::NOT_FOUND, ("not_found", "deleted"))
    );
    let (s, v) = h.call(Method::GET, "/db/nothing", None).await;
    assert_eq!(
        (s, err(&v)),
        (StatusCode::NOT_FOUND, ("not_found", "missing"))
    );
    let (_, info) = h.call(Method::GET, "/db", None).await;
    assert_eq!(
        (info["doc_count"].as_u64(), info["doc_del_count"].as_u64()),
        (Some(0), Some(1))
    );
    // POST /db makes an id.
    let (s, v) = h.call(Method::POST, "/db", Some(json!({"a": 1}))).await;
    assert_eq!(s, 201);
    assert_eq!(v["id"].as_str().unwrap().len(), 32);
    // Wrong content type on JSON endpoints.
    let resp = h
        .client
        .post(format!("{}/db/_bulk_docs", h.url))
        .basic_auth("admin", Some("admin-password"))
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // Body limit (1 MiB in this hub).
    // The hub answers 413 as soon as the limit is passed and closes the connection without
    // reading the rest, so on a loaded machine the client can still be writing when the
    // connection closes and never see the answer: a few tries, until one sees it.
    let big = json!({"docs": [{"_id": "big", "x": "a".repeat(2 * 1024 * 1024)}]}).to_string();
    let mut status = None;
    for _ in 0..5 {
        let sent = h
            .client
            .post(format!("{}/db/_bulk_docs", h.url))
            .basic_auth("admin", Some("admin-password"))
            .header("Content-Type", "application/json")
            .body(big.clone())
            .send()
            .await;
        if let Ok(resp) = sent {
            status = Some(resp.status());
            break;
        }
    }
    assert_eq!(status, Some(StatusCode::PAYLOAD_TOO_LARGE));
    let (_, v) = h.call(Method::GET, "/db/big", None).await;
    assert_eq!(err(&v).1, "missing", "nothing of a refused body is written");
    // No JavaScript runs.
    h.call(
        Method::PUT,
        "/db/_design/app",
        Some(json!({"views": {"v": {"map": "function(d){emit(d._id)}"}}})),
    )
    .await;
    let (s, v) = h.call(Method::GET, "/db/_design/app/_view/v", None).await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::NOT_IMPLEMENTED, "not_implemented")
    );
    let (s, v) = h.call(Method::GET, "/db/_design/app", None).await;
    assert_eq!(
        s, 200,
        "design documents are stored and served as documents"
    );
    assert!(v["views"].is_object());
    let (s, _) = h.call(Method::GET, "/db/_changes?filter=app/f", None).await;
    assert_eq!(s, 501);
    let (s, v) = h.call(Method::PATCH, "/db", None).await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_endpoints() {
    let h = start().await;
    h.call(Method::PUT, "/db", None).await;
    // new_edits=false: a branch and a conflict, stored as given.
    let docs = json!({"new_edits": false, "docs": [
        {"_id": "a", "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "aaa"]}, "v": "b"},
        {"_id": "a", "_rev": "2-ccc", "_revisions": {"start": 2, "ids": ["ccc", "aaa"]}, "v": "c"},
        {"_id": "_local/x", "_rev": "0-4"},
        {"_id": "_local/y", "n": 1}
    ]});
    let (s, v) = h.call(Method::POST, "/db/_bulk_docs", Some(docs)).await;
    assert_eq!(s, 201);
    let errors = v.as_array().unwrap();
    assert_eq!(
        errors.len(),
        1,
        "only failures are listed with new_edits=false: {v}"
    );
    assert_eq!(
        (errors[0]["id"].as_str(), errors[0]["error"].as_str()),
        (Some("_local/x"), Some("conflict")),
        "a _local revision that is not there: {v}"
    );
    let (s, _) = h.call(Method::GET, "/db/_local/y", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = h.call(Method::GET, "/db/a?conflicts=true", None).await;
    assert_eq!(v["_rev"], "2-ccc");
    assert_eq!(v["_conflicts"], json!(["2-bbb"]));
    // _revs_diff with possible ancestors.
    let (_, v) = h
        .call(
            Method::POST,
            "/db/_revs_diff",
            Some(json!({"a": ["2-bbb", "3-ddd", "1-aaa"], "z": ["1-x"]})),
        )
        .await;
    assert_eq!(v["a"]["missing"], json!(["3-ddd"]));
    assert_eq!(v["a"]["possible_ancestors"], json!(["2-bbb", "2-ccc"]));
    assert_eq!(v["z"], json!({"missing": ["1-x"]}));
    let (s, _) = h
        .call(
            Method::POST,
            "/db/_revs_diff",
            Some(json!({"a": ["bogus"]})),
        )
        .await;
    assert_eq!(s, 400);
    // _bulk_get: found, missing revision, missing document.
    let (s, v) = h
        .call(
            Method::POST,
            "/db/_bulk_get?revs=true",
            Some(json!({"docs": [
                {"id": "a", "rev": "2-bbb"}, {"id": "a", "rev": "9-nope"}, {"id": "nope"}
            ]})),
        )
        .await;
    assert_eq!(s, 200);
    let r = &v["results"];
    assert_eq!(r[0]["docs"][0]["ok"]["v"], "b");
    assert_eq!(
        r[0]["docs"][0]["ok"]["_revisions"]["ids"],
        json!(["bbb", "aaa"])
    );
    assert_eq!(
        r[1]["docs"][0]["error"],
        json!({"id": "a", "rev": "9-nope", "error": "not_found", "reason": "missing"})
    );
    assert_eq!(r[2]["docs"][0]["error"]["error"], "not_found");
    // open_revs=all.
    let (_, v) = h.call(Method::GET, "/db/a?open_revs=all", None).await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = h
        .call(
            Method::GET,
            "/db/a?open_revs=%5B%222-bbb%22%2C%225-x%22%5D",
            None,
        )
        .await;
    assert_eq!(v[1], json!({"missing": "5-x"}));
    // _local documents.
    let (s, v) = h
        .call(Method::PUT, "/db/_local/ckpt", Some(json!({"last_seq": 3})))
        .await;
    assert_eq!((s, v["rev"].as_str()), (StatusCode::CREATED, Some("0-1")));
    let (s, _) = h
        .call(Method::PUT, "/db/_local/ckpt", Some(json!({"last_seq": 4})))
        .await;
    assert_eq!(s, 409);
    let (s, _) = h
        .call(
            Method::PUT,
            "/db/_local/ckpt",
            Some(json!({"_rev": "0-1", "last_seq": 4})),
        )
        .await;
    assert_eq!(s, 201);
    let (_, v) = h.call(Method::GET, "/db/_local/ckpt", None).await;
    assert_eq!(
        (v["last_seq"].as_u64(), v["_rev"].as_str()),
        (Some(4), Some("0-2"))
    );
    let (_, v) = h.call(Method::GET, "/db/_changes", None).await;
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "_local/ckpt")
    );
    // _all_docs with keys, ranges, paging.
    for i in 0..5 {
        h.call(Method::PUT, &format!("/db/k{i}"), Some(json!({"i": i})))
            .await;
    }
    let (_, v) = h
        .call(
            Method::GET,
            "/db/_all_docs?startkey=%22k1%22&endkey=%22k3%22&include_docs=true",
            None,
        )
        .await;
    let ids: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k1", "k2", "k3"]);
    assert_eq!(v["rows"][0]["doc"]["i"], 1);
    let (_, v) = h
        .call(
            Method::GET,
            "/db/_all_docs?descending=true&limit=2&skip=1",
            None,
        )
        .await;
    let ids: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k3", "k2"]);
    let (_, v) = h
        .call(
            Method::POST,
            "/db/_all_docs",
            Some(json!({"keys": ["k0", "zz"]})),
        )
        .await;
    assert_eq!(v["rows"][1], json!({"key": "zz", "error": "not_found"}));
    let (s, v) = h.call(Method::GET, "/db/_all_docs?limit=x", None).await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::BAD_REQUEST, "query_parse_error")
    );
    assert_eq!(
        h.call(Method::POST, "/db/_ensure_full_commit", Some(json!({})))
            .await
            .0,
        201
    );
    assert_eq!(
        h.call(Method::POST, "/db/_compact", Some(json!({})))
            .await
            .0,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_feeds_and_filters() {
    let h = start().await;
    h.call(Method::PUT, "/db", None).await;
    for (id, kind) in [("p1", "Patient"), ("o1", "Observation"), ("p2", "Patient")] {
        h.call(
            Method::PUT,
            &format!("/db/{id}"),
            Some(json!({"resourceType": kind})),
        )
        .await;
    }
    let (_, v) = h
        .call(Method::GET, "/db/_changes?since=1&limit=1", None)
        .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        (v["last_seq"].as_u64(), v["pending"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, v) = h
        .call(
            Method::POST,
            "/db/_changes?filter=_doc_ids",
            Some(json!({"doc_ids": ["p2"]})),
        )
        .await;
    assert_eq!(v["results"][0]["id"], "p2");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    let (_, v) = h
        .call(
            Method::POST,
            "/db/_changes?filter=_selector&include_docs=true",
            Some(json!({"selector": {"resourceType": "Patient"}})),
        )
        .await;
    let ids: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
    let (s, v) = h
        .call(
            Method::POST,
            "/db/_changes?filter=_selector",
            Some(json!({"selector": {"a": {"$regex": "x"}}})),
        )
        .await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::BAD_REQUEST, "invalid_selector")
    );
    let (s, _) = h.call(Method::GET, "/db/_changes?feed=bogus", None).await;
    assert_eq!(s, 400);

    // Longpoll: held open until a write arrives.
    let url = format!("{}/db/_changes?feed=longpoll&since=3&timeout=10000", h.url);
    let c = h.client.clone();
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        c.get(url)
            .basic_auth("admin", Some("admin-password"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "longpoll answered before any change");
    h.call(Method::PUT, "/db/late", Some(json!({}))).await;
    let v = waiter.await.unwrap();
    assert_eq!(v["results"][0]["id"], "late");
    assert!(started.elapsed() < Duration::from_secs(9));
    // Longpoll with nothing new ends at its timeout with no results.
    let (_, v) = h
        .call(
            Method::GET,
            "/db/_changes?feed=longpoll&since=4&timeout=200",
            None,
        )
        .await;
    assert_eq!(v["results"], json!([]));
    assert_eq!(v["last_seq"], 4);

    // Continuous: one line per change, heartbeats, a final last_seq at the timeout.
    let url = format!(
        "{}/db/_changes?feed=continuous&since=2&timeout=1500&heartbeat=200",
        h.url
    );
    let c = h.client.clone();
    let reader = tokio::spawn(async move {
        c.get(url)
            .basic_auth("admin", Some("admin-password"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.call(Method::PUT, "/db/live", Some(json!({}))).await;
    let text = reader.await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(ids, ["p2", "late", "live"]);
    assert_eq!(lines.last().unwrap()["last_seq"], 5);
    assert!(text.contains("\n\n"), "heartbeat newlines while idle");

    // Server-sent events: one event per change, its sequence as the event id.
    let resp = h
        .client
        .get(format!(
            "{}/db/_changes?feed=eventsource&since=3&timeout=300",
            h.url
        ))
        .basic_auth("admin", Some("admin-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| e.starts_with("data: "))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert!(
        events[0].contains("\"id\":\"late\"") && events[0].ends_with("id: 4"),
        "{text}"
    );
    assert!(events[1].ends_with("id: 5"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_multipart_and_gzip() {
    let h = start().await;
    h.call(Method::PUT, "/db", None).await;
    let auth = |r: reqwest::RequestBuilder| r.basic_auth("admin", Some("admin-password"));
    // Standalone attachment PUT creates the document.
    let resp = auth(h.client.put(format!("{}/db/consent/signature.png", h.url)))
        .header("Content-Type", "image/png")
        .body(vec![1u8, 2, 3, 4])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let rev: Value = resp.json().await.unwrap();
    let resp = auth(h.client.get(format!("{}/db/consent/signature.png", h.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &[1, 2, 3, 4]);
    let (_, v) = h
        .call(Method::GET, "/db/consent?attachments=true", None)
        .await;
    assert_eq!(v["_attachments"]["signature.png"]["data"], "AQIDBA==");
    let (_, v) = h
        .call(
            Method::GET,
            &format!(
                "/db/consent?attachments=true&atts_since=%5B%22{}%22%5D",
                rev["rev"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        v["_attachments"]["signature.png"]["stub"], true,
        "unchanged since the given revision"
    );
    let (s, _) = h
        .call(
            Method::DELETE,
            &format!(
                "/db/consent/signature.png?rev={}",
                rev["rev"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h.call(Method::GET, "/db/consent/signature.png", None).await;
    assert_eq!(s, 404);
    // multipart/related, as CouchDB's replicator writes documents with attachments.
    let body = "--xyz\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"note\",\"_rev\":\"1-abc\",\"_revisions\":{\"start\":1,\"ids\":[\"abc\"]},\"_attachments\":{\"n.txt\":{\"follows\":true,\"content_type\":\"text/plain\",\"length\":5,\"revpos\":1}}}\r\n--xyz\r\n\r\nhello\r\n--xyz--";
    let resp = auth(h.client.put(format!("{}/db/note?new_edits=false", h.url)))
        .header("Content-Type", "multipart/related; boundary=\"xyz\"")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = auth(h.client.get(format!("{}/db/note/n.txt", h.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello");
    // open_revs as multipart/mixed for clients that ask for it.
    let resp = auth(h.client.get(format!("{}/db/note?open_revs=all", h.url)))
        .header("Accept", "multipart/mixed")
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/mixed")
    );
    assert!(resp.text().await.unwrap().contains("\"_id\":\"note\""));

    // gzip both ways: a compressed request body, a compressed response.
    let raw = Client::builder().no_gzip().build().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut enc,
        json!({"docs": [{"_id": "gz", "v": "x".repeat(4000)}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let resp = raw
        .post(format!("{}/db/_bulk_docs", h.url))
        .basic_auth("admin", Some("admin-password"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(enc.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = raw
        .get(format!("{}/db/_changes?include_docs=true", h.url))
        .basic_auth("admin", Some("admin-password"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let bytes = resp.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "gz")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_listings_stream_across_pages() {
    let h = start().await;
    h.call(Method::PUT, "/db", None).await;
    let docs: Vec<Value> = (0..2500)
        .map(|i| json!({"_id": format!("d{i:05}"), "i": i}))
        .collect();
    let (s, _) = h
        .call(Method::POST, "/db/_bulk_docs", Some(json!({"docs": docs})))
        .await;
    assert_eq!(s, 201);
    let (_, v) = h.call(Method::GET, "/db/_all_docs", None).await;
    let rows = v["rows"].as_array().unwrap();
    assert_eq!((v["total_rows"].as_u64(), rows.len()), (Some(2500), 2500));
    assert!(
        rows.windows(2)
            .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str())
    );
    let (_, v) = h
        .call(
            Method::GET,
            "/db/_all_docs?skip=1200&limit=1500&include_docs=true",
            None,
        )
        .await;
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1300);
    assert_eq!(
        (rows[0]["id"].as_str(), rows[0]["doc"]["i"].as_u64()),
        (Some("d01200"), Some(1200))
    );
    let (_, v) = h
        .call(
            Method::GET,
            "/db/_all_docs?descending=true&limit=1001",
            None,
        )
        .await;
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(
        (rows.len(), rows[1000]["id"].as_str()),
        (1001, Some("d01499"))
    );
    let (_, v) = h
        .call(Method::GET, "/db/_changes?include_docs=true", None)
        .await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2500);
    assert_eq!(results[2499]["doc"]["i"], 2499);
    assert_eq!(v["pending"], 0);
}

/// Hostile input on the CouchDB API: every answer is a 4xx with CouchDB's `{"error","reason"}`,
/// never a 5xx, and nothing is partly written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let h = start().await;
    assert_eq!(
        h.call(Method::PUT, "/bad", None).await.0,
        StatusCode::CREATED
    );
    // None when the server closed the connection before the client finished sending (what a
    // server may do once it has answered 413 to an oversized body).
    // No connection reuse: the server may close one after refusing a body.
    let fresh = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let raw = |method: Method, path: &str, ctype: &str, body: Vec<u8>| {
        let req = fresh
            .request(method, format!("{}{path}", h.url))
            .basic_auth("admin", Some("admin-password"))
            .header("Content-Type", ctype.to_owned())
            .body(body);
        async move {
            let resp = req.send().await.ok()?;
            let status = resp.status();
            let text = resp.text().await.ok()?;
            Some((
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            ))
        }
    };
    let cases: Vec<(&str, Method, &str, &str, Vec<u8>)> = vec![
        (
            "oversized body",
            Method::POST,
            "/bad/_bulk_docs",
            "application/json",
            {
                let mut b = br#"{"docs":[{"_id":"big","x":""#.to_vec();
                b.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
                b.extend_from_slice(br#""}]}"#);
                b
            },
        ),
        (
            "deep nesting",
            Method::PUT,
            "/bad/deep",
            "application/json",
            {
                let mut b = br#"{"x":"#.to_vec();
                b.extend(std::iter::repeat_n(b'[', 100_000));
                b.extend(std::iter::repeat_n(b']', 100_000));
                b.push(b'}');
                b
            },
        ),
        (
            "invalid UTF-8",
            Method::PUT,
            "/bad/utf",
            "application/json",
            b"{\"x\":\"\xff\xfe\"}".to_vec(),
        ),
        (
            "not JSON",
            Method::POST,
            "/bad/_bulk_docs",
            "application/json",
            b"{docs:".to_vec(),
        ),
        (
            "wrong content type",
            Method::POST,
            "/bad/_bulk_docs",
            "text/plain",
            br#"{"docs":[]}"#.to_vec(),
        ),
        (
            "docs not a list",
            Method::POST,
            "/bad/_bulk_docs",
            "application/json",
            br#"{"docs":{}}"#.to_vec(),
        ),
        (
            "reserved id",
            Method::PUT,
            "/bad/_bogus",
            "application/json",
            b"{}".to_vec(),
        ),
        (
            "bad rev",
            Method::PUT,
            "/bad/x?rev=zz",
            "application/json",
            b"{}".to_vec(),
        ),
        (
            "bad attachment name",
            Method::PUT,
            "/bad/x/_evil",
            "application/octet-stream",
            b"data".to_vec(),
        ),
        (
            "bad database name",
            Method::PUT,
            "/BAD..",
            "application/json",
            Vec::new(),
        ),
        (
            "huge limit",
            Method::GET,
            "/bad/_changes?limit=-1",
            "application/json",
            Vec::new(),
        ),
        (
            "bad since",
            Method::GET,
            "/bad/_changes?since=%00",
            "application/json",
            Vec::new(),
        ),
        (
            "bad selector",
            Method::POST,
            "/bad/_changes?filter=_selector",
            "application/json",
            br#"{"selector":{"$nope":1}}"#.to_vec(),
        ),
        (
            "revs_diff not an object",
            Method::POST,
            "/bad/_revs_diff",
            "application/json",
            b"[1,2]".to_vec(),
        ),
    ];
    for (what, method, path, ctype, body) in cases {
        let Some((status, v)) = raw(method, path, ctype, body).await else {
            assert_eq!(what, "oversized body", "{what}: the connection failed");
            continue;
        };
        assert!(
            status.is_client_error(),
            "{what}: expected a 4xx, got {status} {v}"
        );
        let (error, reason) = err(&v);
        assert!(error != "<none>" && reason != "<none>", "{what}: {v}");
    }
    // _bulk_get answers a bad entry in place, as CouchDB does.
    let (s, v) = raw(
        Method::POST,
        "/bad/_bulk_get",
        "application/json",
        br#"{"docs":[{"id":"a","rev":7}]}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["results"][0]["docs"][0]["error"]["error"], "bad_request",
        "{v}"
    );
    // Ids are opaque strings, never file paths: a "path trick" is just an odd id, stored and
    // read back as itself.
    let (s, _) = h
        .call(Method::PUT, "/bad/..%2F..%2Fetc", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = h.call(Method::GET, "/bad/..%2F..%2Fetc", None).await;
    assert_eq!((s, v["_id"].as_str()), (StatusCode::OK, Some("../../etc")));
    // A _bulk_docs batch with one document that is not a document is refused as a whole and
    // writes nothing (as CouchDB: every document is validated before any is written).
    for bad in [json!({"_id": "_nope"}), json!("not an object")] {
        let (s, v) = h
            .call(
                Method::POST,
                "/bad/_bulk_docs",
                Some(json!({"docs": [{"_id": "good", "a": 1}, bad]})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (_, info) = h.call(Method::GET, "/bad", None).await;
    assert_eq!(info["doc_count"], 1, "only the odd id: {info}");
}

/// Details where a real client notices a difference from CouchDB 3.x (issue 17), each as
/// CouchDB answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb_parity_details() {
    let h = start().await;
    h.call(Method::PUT, "/p", None).await;

    // _bulk_docs refuses the whole request when one document is not a document.
    for (bad, error) in [
        (json!({"_id": "_bad"}), "illegal_docid"),
        (json!({"_id": "x", "_foo": 1}), "doc_validation"),
    ] {
        let (s, v) = h
            .call(
                Method::POST,
                "/p/_bulk_docs",
                Some(json!({"docs": [{"_id": "good", "a": 1}, bad]})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(err(&v).0, error, "{v}");
    }
    let (s, v) = h
        .call(
            Method::POST,
            "/p/_bulk_docs",
            Some(json!({"new_edits": false, "docs": [
                {"_id": "good", "_rev": "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, {"_id": "norev"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(err(&v).1.contains("needs `_rev` or `_revisions`"), "{v}");
    let (s, _) = h.call(Method::GET, "/p/good", None).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "nothing of a refused request is written"
    );

    // _revisions wins over a _rev that disagrees with it (PouchDB sends such documents).
    let (s, v) = h
        .call(
            Method::POST,
            "/p/_bulk_docs",
            Some(json!({"new_edits": false, "docs": [{
                "_id": "r", "_rev": "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "_revisions": {"start": 2, "ids": ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
                "v": 2}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = h.call(Method::GET, "/p/r", None).await;
    assert_eq!(v["_rev"], "2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "{v}");

    // The replicator's bookkeeping fields are kept in the body.
    let (s, v) = h
        .call(
            Method::PUT,
            "/p/job",
            Some(json!({"source": "a", "_replication_id": "abc", "_replication_state": "completed",
                "_replication_state_time": "2026-12-07T00:00:00Z", "_replication_stats": {"docs_written": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = h.call(Method::GET, "/p/job", None).await;
    assert_eq!(v["_replication_state"], "completed", "{v}");
    assert_eq!(v["_replication_stats"]["docs_written"], 1, "{v}");

    // A revision id that cannot exist here is a conflict, not a bad request.
    let (_, v) = h.call(Method::PUT, "/p/c", Some(json!({"a": 1}))).await;
    let rev1 = v["rev"].as_str().unwrap().to_owned();
    let (s, v) = h
        .call(
            Method::PUT,
            "/p/c",
            Some(json!({"_rev": "3-totally_fake_rev", "a": 2})),
        )
        .await;
    assert_eq!((s, err(&v).0), (StatusCode::CONFLICT, "conflict"), "{v}");
    let (_, v) = h
        .call(
            Method::POST,
            "/p/_bulk_docs",
            Some(json!({"docs": [{"_id": "c", "_rev": "3-totally_fake_rev"}]})),
        )
        .await;
    assert_eq!(v[0]["error"], "conflict", "{v}");

    // latest=true with an old revision answers the leaf that descends from it.
    let (_, v) = h
        .call(Method::PUT, "/p/c", Some(json!({"_rev": rev1, "a": 3})))
        .await;
    let rev2 = v["rev"].as_str().unwrap().to_owned();
    let (_, v) = h
        .call(Method::GET, &format!("/p/c?rev={rev1}&latest=true"), None)
        .await;
    assert_eq!(v["_rev"], rev2.as_str(), "{v}");
    let (_, v) = h.call(Method::GET, &format!("/p/c?rev={rev1}"), None).await;
    assert_eq!(v["_rev"], rev1.as_str(), "{v}");

    // _local documents: written in _bulk_docs, no _revisions or _attachments kept, a
    // deletion answers 0-0, no attachments under them.
    let (s, v) = h
        .call(
            Method::POST,
            "/p/_bulk_docs",
            Some(json!({"docs": [{"_id": "_local/ck", "last_seq": 5,
                "_revisions": {"start": 1, "ids": ["x"]}}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v[0]["rev"], "0-1", "{v}");
    let (_, v) = h.call(Method::GET, "/p/_local/ck", None).await;
    assert_eq!(v["last_seq"], 5, "{v}");
    assert!(v.get("_revisions").is_none(), "{v}");
    let (s, v) = h
        .call(
            Method::PUT,
            "/p/_local/ck",
            Some(json!({"_rev": "0-1", "last_seq": 6,
                "_attachments": {"a.txt": {"content_type": "text/plain", "data": "aGk="}}})),
        )
        .await;
    assert_eq!(
        (s, v["rev"].as_str()),
        (StatusCode::CREATED, Some("0-2")),
        "{v}"
    );
    let (_, v) = h.call(Method::GET, "/p/_local/ck", None).await;
    assert!(v.get("_attachments").is_none(), "{v}");
    let (s, v) = h.call(Method::GET, "/p/_local/ck/a.txt", None).await;
    assert_eq!(
        (s, err(&v)),
        (
            StatusCode::BAD_REQUEST,
            ("bad_request", "_local documents do not accept attachments.")
        )
    );
    let (_, v) = h
        .call(
            Method::POST,
            "/p/_bulk_docs",
            Some(json!({"docs": [{"_id": "_local/ck", "_rev": "0-2", "_deleted": true}]})),
        )
        .await;
    assert_eq!(v[0]["rev"], "0-0", "{v}");
    let (s, _) = h.call(Method::GET, "/p/_local/ck", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The node's own policy is not a document: no account, administrators included, reads or
    // writes it through the CouchDB API, in _bulk_docs or not.
    for who in [("admin", "admin-password"), ("nurse", "nurse-password")] {
        let (s, v) = h
            .call_as(
                Some(who),
                Method::PUT,
                "/p/_local/hearth-permissions",
                Some(json!({"grants": {}})),
            )
            .await;
        assert_eq!((s, err(&v).0), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
        let (s, _) = h
            .call_as(Some(who), Method::GET, "/p/_local/hearth-permissions", None)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (_, v) = h
            .call_as(
                Some(who),
                Method::POST,
                "/p/_bulk_docs",
                Some(json!({"docs": [{"_id": "_local/hearth-permissions", "grants": {}}]})),
            )
            .await;
        assert_eq!(v[0]["error"], "forbidden", "{v}");
        // Nor with the slash escaped, through the document route.
        let (s, v) = h
            .call_as(
                Some(who),
                Method::PUT,
                "/p/_local%2Fhearth-permissions",
                Some(json!({"grants": {}})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = h
            .call_as(
                Some(who),
                Method::GET,
                "/p/_local%2Fhearth-permissions",
                None,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }

    // _all_docs: key and keys together are refused; a deleted document is not in a key
    // range; update_seq is answered; attachments inline with include_docs.
    let (s, v) = h
        .call(
            Method::GET,
            "/p/_all_docs?key=%22c%22&keys=%5B%22c%22%5D",
            None,
        )
        .await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::BAD_REQUEST, "query_parse_error"),
        "{v}"
    );
    let (_, v) = h.call(Method::GET, "/p/c", None).await;
    let cur = v["_rev"].as_str().unwrap().to_owned();
    h.call(Method::DELETE, &format!("/p/c?rev={cur}"), None)
        .await;
    let (_, v) = h.call(Method::GET, "/p/_all_docs?key=%22c%22", None).await;
    assert_eq!(v["rows"], json!([]), "{v}");
    let (_, v) = h
        .call(Method::GET, "/p/_all_docs?keys=%5B%22c%22%5D", None)
        .await;
    assert_eq!(v["rows"][0]["value"]["deleted"], true, "{v}");
    let (_, info) = h.call(Method::GET, "/p", None).await;
    for path in [
        "/p/_all_docs?update_seq=true",
        "/p/_all_docs?keys=%5B%22r%22%5D&update_seq=true",
    ] {
        let (_, v) = h.call(Method::GET, path, None).await;
        assert_eq!(v["update_seq"], info["update_seq"], "{path}: {v}");
    }
    h.call(
        Method::PUT,
        "/p/withatt",
        Some(
            json!({"_attachments": {"n.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}}),
        ),
    )
    .await;
    let (_, v) = h
        .call(
            Method::GET,
            "/p/_all_docs?include_docs=true&attachments=true&key=%22withatt%22",
            None,
        )
        .await;
    assert_eq!(
        v["rows"][0]["doc"]["_attachments"]["n.txt"]["data"], "aGVsbG8=",
        "{v}"
    );
    let (_, v) = h
        .call(
            Method::GET,
            "/p/_all_docs?include_docs=true&key=%22withatt%22",
            None,
        )
        .await;
    assert_eq!(
        v["rows"][0]["doc"]["_attachments"]["n.txt"]["stub"], true,
        "{v}"
    );

    // A selector that is not an object, on _changes.
    let (s, v) = h
        .call(
            Method::POST,
            "/p/_changes?filter=_selector",
            Some(json!({"selector": [1]})),
        )
        .await;
    assert_eq!(
        (s, err(&v)),
        (
            StatusCode::BAD_REQUEST,
            ("bad_request", "Selector error: expected a JSON object")
        )
    );

    // An Authorization header that does not parse is ignored on the public routes.
    let resp = h
        .client
        .get(format!("{}/", h.url))
        .header("Authorization", "Bearer what-is-this")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = h
        .client
        .get(format!("{}/p", h.url))
        .header("Authorization", "Bearer what-is-this")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mango_find_index_explain_and_their_siblings() {
    let h = start().await;
    h.call(Method::PUT, "/m", None).await;
    let mut docs: Vec<Value> = (0..60)
        .map(|i| json!({"_id": format!("Observation/o{i:02}"), "resourceType": "Observation", "n": i % 7, "v": {"q": 60 - i}, "status": if i % 2 == 0 { "final" } else { "preliminary" }}))
        .collect();
    docs.push(
        json!({"_id": "Observation/nofield", "resourceType": "Observation", "status": "final"}),
    );
    // Written as text: a Rust literal 1.50 would be the double 1.5.
    docs.push(
        serde_json::from_str(
            r#"{"_id": "Patient/p1", "resourceType": "Patient", "n": 3, "value": 1.50}"#,
        )
        .unwrap(),
    );
    let (s, _) = h
        .call(Method::POST, "/m/_bulk_docs", Some(json!({ "docs": docs })))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // A selector without an index: a scan, CouchDB's warning, 25 documents by default, bookmark
    // paging.
    let (s, v) = h
        .call(
            Method::POST,
            "/m/_find",
            Some(json!({"selector": {"status": "final"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["docs"].as_array().unwrap().len(), 25);
    assert_eq!(
        v["warning"],
        "No matching index found, create an index to optimize query time."
    );
    let (_, next) = h
        .call(
            Method::POST,
            "/m/_find",
            Some(json!({"selector": {"status": "final"}, "bookmark": v["bookmark"], "limit": 100})),
        )
        .await;
    assert_eq!(next["docs"].as_array().unwrap().len(), 6, "{next}");
    // Numbers come back as written, fields projected in the order asked.
    let (_, v) = h
        .call(
            Method::POST,
            "/m/_find",
            Some(json!({"selector": {"value": {"$gt": 1}}, "fields": ["value", "_id"]})),
        )
        .await;
    assert_eq!(
        serde_json::to_string(&v["docs"][0]).unwrap(),
        r#"{"value":1.50,"_id":"Patient/p1"}"#
    );

    // A sort needs an index, as in CouchDB.
    let sorted = json!({"selector": {"n": {"$gte": 5}}, "sort": [{"n": "desc"}], "fields": ["_id", "n"], "limit": 3});
    let (s, v) = h.call(Method::POST, "/m/_find", Some(sorted.clone())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err(&v).0, "no_usable_index");
    // Creating an index: admins only; the same definition twice exists once.
    let def = json!({"index": {"fields": ["n"]}, "name": "by-n", "ddoc": "obs"});
    let (s, v) = h
        .call_as(
            Some(("nurse", "nurse-password")),
            Method::POST,
            "/m/_index",
            Some(def.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = h.call(Method::POST, "/m/_index", Some(def.clone())).await;
    assert_eq!(
        (s, &v["result"]),
        (StatusCode::OK, &json!("created")),
        "{v}"
    );
    assert_eq!(v["id"], "_design/obs");
    let (_, v) = h.call(Method::POST, "/m/_index", Some(def)).await;
    assert_eq!(v["result"], "exists");
    let (_, v) = h.call(Method::GET, "/m/_index", None).await;
    assert_eq!(v["total_rows"], 2, "{v}");
    assert_eq!(v["indexes"][0]["name"], "_all_docs");
    assert_eq!(
        v["indexes"][1],
        json!({"ddoc": "_design/obs", "name": "by-n", "type": "json", "partitioned": false, "def": {"fields": [{"n": "asc"}]}})
    );
    // The index is a CouchDB design document, replicated like one.
    let (_, ddoc) = h.call(Method::GET, "/m/_design/obs", None).await;
    assert_eq!(ddoc["language"], "query");
    assert_eq!(
        ddoc["views"]["by-n"]["options"]["def"]["fields"],
        json!(["n"])
    );
    // Now the sort works, descending, and only documents that have the field are eligible.
    let (s, v) = h.call(Method::POST, "/m/_find", Some(sorted.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["docs"].as_array().unwrap().len(), 3);
    assert!(
        v["docs"].as_array().unwrap().iter().all(|d| d["n"] == 6),
        "{v}"
    );
    assert!(v.get("warning").is_none(), "{v}");
    let (_, v) = h.call(Method::POST, "/m/_explain", Some(sorted)).await;
    assert_eq!(v["index"]["name"], "by-n", "{v}");
    assert_eq!(v["dbname"], "m");
    assert_eq!(v["limit"], 3);
    // Each role finds only what the matrix lets it read: front desk sees the patient, not the
    // observations with the same value.
    let q = json!({"selector": {"n": 3}, "fields": ["_id"], "limit": 100});
    let (_, all) = h.call(Method::POST, "/m/_find", Some(q.clone())).await;
    assert_eq!(all["docs"].as_array().unwrap().len(), 10, "{all}");
    let (s, v) = h
        .call_as(
            Some(("front", "front-password")),
            Method::POST,
            "/m/_find",
            Some(q),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["docs"], json!([{"_id": "Patient/p1"}]));
    // Bad requests get CouchDB's errors.
    for (body, error) in [
        (json!({}), "missing_required_key"),
        (json!({"selector": []}), "bad_request"),
        (
            json!({"selector": {}, "sort": ["n", {"v": "desc"}]}),
            "bad_request",
        ),
        (
            json!({"selector": {}, "bookmark": "garbage"}),
            "invalid_bookmark",
        ),
        (json!({"selector": {}, "limit": -1}), "bad_request"),
    ] {
        let (s, v) = h.call(Method::POST, "/m/_find", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(err(&v).0, error, "{body}: {v}");
    }
    let (s, v) = h.call(Method::GET, "/m/_find", None).await;
    assert_eq!(
        (s, err(&v).0),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (s, v) = h
        .call(
            Method::POST,
            "/m/_index",
            Some(json!({"index": {"fields": ["x"]}, "type": "text"})),
        )
        .await;
    assert_eq!((s, err(&v).0), (StatusCode::BAD_REQUEST, "invalid_index"));
    // Deleting the last index of a design document deletes the document.
    let (s, _) = h
        .call(Method::DELETE, "/m/_index/_design/obs/json/nope", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = h
        .call(Method::DELETE, "/m/_index/obs/json/by-n", None)
        .await;
    assert_eq!((s, &v), (StatusCode::OK, &json!({"ok": true})));
    let (s, _) = h.call(Method::GET, "/m/_design/obs", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The siblings.
    let (s, v) = h.call(Method::GET, "/m/_revs_limit", None).await;
    assert_eq!((s, v), (StatusCode::OK, json!(1000)));
    let (s, v) = h.call(Method::PUT, "/m/_revs_limit", Some(json!(50))).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"ok": true})));
    let (_, v) = h.call(Method::GET, "/m/_revs_limit", None).await;
    assert_eq!(v, json!(50));
    let (s, v) = h
        .call(Method::PUT, "/m/_revs_limit", Some(json!("many")))
        .await;
    assert_eq!((s, err(&v).0), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, _) = h
        .call_as(
            Some(("nurse", "nurse-password")),
            Method::PUT,
            "/m/_revs_limit",
            Some(json!(5)),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = h.call(Method::GET, "/m/_security", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["admins"]["roles"], json!(["_admin"]));
    let (s, v) = h
        .call(
            Method::PUT,
            "/m/_security",
            Some(json!({"members": {"names": []}})),
        )
        .await;
    assert_eq!((s, err(&v).0), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = h
        .call(
            Method::POST,
            "/m/_purge",
            Some(json!({"Patient/p1": ["1-x"]})),
        )
        .await;
    assert_eq!((s, err(&v).0), (StatusCode::FORBIDDEN, "forbidden"));
    let (_, still) = h.call(Method::GET, "/m/Patient%2Fp1", None).await;
    assert_eq!(still["value"].to_string(), "1.50");
    for path in ["/m/_view_cleanup", "/m/_compact/obs"] {
        let (s, v) = h.call(Method::POST, path, Some(json!({}))).await;
        assert_eq!(
            (s, v),
            (StatusCode::ACCEPTED, json!({"ok": true})),
            "{path}"
        );
    }
    let (s, _) = h
        .call_as(
            Some(("nurse", "nurse-password")),
            Method::POST,
            "/m/_view_cleanup",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Issue 15 item 5 (ADR 28): what enters the clinical database is a valid record of the type
/// its id names, on every write path; other databases hold any JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clinical_database_takes_only_valid_records_of_the_named_type() {
    let h = start().await;
    assert_eq!(
        h.call(Method::PUT, "/records", None).await.0,
        StatusCode::CREATED
    );
    let note = json!({"resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]});
    // A note stored under a Patient id: refused on PUT, for every account.
    for who in [("admin", "admin-password"), ("nurse", "nurse-password")] {
        let (s, v) = h
            .call_as(
                Some(who),
                Method::PUT,
                "/records/Patient%2Fx",
                Some(note.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(err(&v).0, "forbidden");
        assert!(
            err(&v)
                .1
                .contains("does not match the document id Patient/x"),
            "{v}"
        );
    }
    let (s, v) = h
        .call(
            Method::POST,
            "/records/_bulk_docs",
            Some(json!({"docs": [
                {"_id": "Patient/ok", "resourceType": "Patient", "id": "ok", "gender": "female"},
                {"_id": "Observation/o1", "resourceType": "Patient", "id": "o1"},
                {"_id": "Patient/bare", "id": "bare"},
                {"_id": "note-1", "resourceType": "DocumentReference", "status": "current"},
                {"_id": "Patient/bad", "resourceType": "Patient", "id": "bad", "gender": "F"},
                {"_id": "app-setting", "theme": "dark"},
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rows = v.as_array().unwrap();
    assert_eq!(rows[0]["ok"], true, "{v}");
    for (i, why) in [
        (
            1,
            "resourceType Patient does not match the document id Observation/o1",
        ),
        (2, "Patient/bare needs \"resourceType\": \"Patient\""),
        (
            3,
            "a DocumentReference record's document id is DocumentReference/<id>",
        ),
        (4, "Patient/bad is not a valid FHIR record: Patient.gender"),
    ] {
        assert_eq!(rows[i]["error"], "forbidden", "{v}");
        assert!(
            rows[i]["reason"].as_str().unwrap().contains(why),
            "{i}: {v}"
        );
    }
    assert_eq!(rows[5]["ok"], true, "{v}");
    // Replicated documents (new_edits=false) are checked the same way.
    let (_, v) = h
        .call(
            Method::POST,
            "/records/_bulk_docs",
            Some(json!({"new_edits": false, "docs": [
                {"_id": "Patient/r1", "_rev": "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "resourceType": "DocumentReference"}]})),
        )
        .await;
    assert_eq!(v[0]["error"], "forbidden", "{v}");
    for id in [
        "Patient%2Fx",
        "Observation%2Fo1",
        "Patient%2Fbare",
        "note-1",
        "Patient%2Fbad",
        "Patient%2Fr1",
    ] {
        assert_eq!(
            h.call(Method::GET, &format!("/records/{id}"), None).await.0,
            StatusCode::NOT_FOUND,
            "{id}"
        );
    }
    // A deletion needs no body; another database takes any JSON.
    let (_, ok) = h.call(Method::GET, "/records/Patient%2Fok", None).await;
    let rev = ok["_rev"].as_str().unwrap();
    let (s, _) = h
        .call(
            Method::DELETE,
            &format!("/records/Patient%2Fok?rev={rev}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    h.call(Method::PUT, "/appdata", None).await;
    let (s, _) = h
        .call(Method::PUT, "/appdata/Patient%2Fx", Some(note))
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

/// Issue 16: a session ends when its account's password or role changes or the account is
/// removed; parallel wrong guesses are each counted before the next is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_with_their_credentials_and_parallel_guesses_are_throttled() {
    let h = start().await;
    h.call(Method::PUT, "/p", None).await;
    let login = |name: &'static str, pw: &'static str| {
        let client = h.client.clone();
        let url = format!("{}/_session", h.url);
        async move {
            let resp = client
                .post(url)
                .json(&json!({"name": name, "password": pw}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let c = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
            c.split(';').next().unwrap().to_owned()
        }
    };
    let with_cookie = |cookie: String| {
        let client = h.client.clone();
        let url = format!("{}/p", h.url);
        async move {
            client
                .get(url)
                .header("Cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let c1 = login("nurse", "nurse-password").await;
    assert_eq!(with_cookie(c1.clone()).await, StatusCode::OK);
    // A new password ends the old session at once.
    h.hub.set_account("nurse", "new-password-1", false).unwrap();
    assert_eq!(with_cookie(c1).await, StatusCode::UNAUTHORIZED);
    // So does a new role.
    let c2 = login("nurse", "new-password-1").await;
    assert_eq!(with_cookie(c2.clone()).await, StatusCode::OK);
    h.hub
        .set_account_role("nurse", "new-password-1", Role::FrontDesk)
        .unwrap();
    assert_eq!(with_cookie(c2).await, StatusCode::UNAUTHORIZED);
    // And removing the account.
    let c3 = login("nurse", "new-password-1").await;
    assert_eq!(with_cookie(c3.clone()).await, StatusCode::OK);
    assert!(h.store.delete_account("nurse").unwrap());
    assert_eq!(with_cookie(c3).await, StatusCode::UNAUTHORIZED);

    // Thirty wrong guesses at once: only the first five are checked, the rest wait their turn
    // and find the account in its back-off.
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            let client = h.client.clone();
            let url = format!("{}/p", h.url);
            tokio::spawn(async move {
                client
                    .get(url)
                    .basic_auth("front", Some(format!("guess-{i}")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut checked = 0;
    let mut throttled = 0;
    for g in guesses {
        match g.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((checked, throttled), (5, 25));

    // The back-off is per source: the guesser (127.0.0.1) waits, and the owner signing in
    // from another address (127.0.0.2, also loopback) is not locked out by the stranger.
    h.hub
        .set_account_role("front", "front-password", Role::FrontDesk)
        .unwrap();
    let from = |ip: [u8; 4]| {
        Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let owner = from([127, 0, 0, 2]);
    let status = owner
        .get(format!("{}/p", h.url))
        .basic_auth("front", Some("front-password"))
        .send()
        .await
        .unwrap()
        .status();
    assert_ne!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the owner was locked out"
    );
    assert_ne!(status, StatusCode::UNAUTHORIZED);
    let status = h
        .client
        .get(format!("{}/p", h.url))
        .basic_auth("front", Some("front-password"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser's source still waits"
    );
}

/// Issue 16 (ADR 30): on loopback the hub answers only its own names, and takes writes only
/// from its own origin; a rebound page or a cross-site form gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_listeners_refuse_rebound_hosts_and_cross_site_writes() {
    let h = start().await;
    let port = h.url.rsplit(':').next().unwrap().to_owned();
    let (s, v) = {
        let resp = h
            .client
            .get(format!("{}/_all_dbs", h.url))
            .basic_auth("admin", Some("admin-password"))
            .header("Host", format!("rebind.example:{port}"))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "{v}");
    assert_eq!(err(&v).0, "misdirected_request");
    let resp = h
        .client
        .put(format!("{}/evil", h.url))
        .basic_auth("admin", Some("admin-password"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        h.call(Method::GET, "/evil", None).await.0,
        StatusCode::NOT_FOUND
    );
    let resp = h
        .client
        .put(format!("{}/fine", h.url))
        .basic_auth("admin", Some("admin-password"))
        .header("Host", format!("localhost:{port}"))
        .header("Origin", format!("http://localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // No response is sniffed into a page.
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
}

/// Every read that sends records records which patients' records went to whom (issue 15 item
/// 7): `_changes?include_docs`, `_bulk_get`, `_all_docs?include_docs` (keys and ranges),
/// `_find`, a document GET and `open_revs`; refusals name the patient where the id reveals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_record_which_patients_records_were_sent() {
    let h = start().await;
    assert_eq!(
        h.call(Method::PUT, "/records", None).await.0,
        StatusCode::CREATED
    );
    let (s, v) = h
        .call(
            Method::POST,
            "/records/_bulk_docs",
            Some(json!({"docs": [
                {"_id": "Patient/p1", "resourceType": "Patient", "id": "p1"},
                {"_id": "Patient/p2", "resourceType": "Patient", "id": "p2"},
                {"_id": "Observation/o1", "resourceType": "Observation", "id": "o1", "status": "final",
                 "code": {"text": "pulse"}, "subject": {"reference": "Patient/p1"}},
                {"_id": "Observation/o2", "resourceType": "Observation", "id": "o2", "status": "final",
                 "code": {"text": "pulse"}, "subject": {"reference": "Patient/p2"}},
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let nurse = Some(("nurse", "nurse-password"));
    let front = Some(("front", "front-password"));
    let entries = |patient: &str| {
        h.store
            .audit_list(&store::AuditFilter {
                patient: Some(patient.to_owned()),
                ..Default::default()
            })
            .unwrap()
    };
    let sent_to = |patient: &str, user: &str, what: &str| {
        entries(patient).iter().any(|e| {
            e.event.user == user
                && e.event.outcome == "success"
                && e.event
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(what))
        })
    };
    let reads: [(Method, &str, Option<Value>, &str); 6] = [
        (
            Method::GET,
            "/records/_changes?include_docs=true",
            None,
            "_changes include_docs",
        ),
        (
            Method::POST,
            "/records/_bulk_get",
            Some(json!({"docs": [{"id": "Observation/o2"}]})),
            "_bulk_get",
        ),
        (
            Method::GET,
            "/records/_all_docs?include_docs=true",
            None,
            "_all_docs",
        ),
        (
            Method::POST,
            "/records/_find",
            Some(json!({"selector": {"subject.reference": "Patient/p2"}, "fields": ["_id"]})),
            "_find",
        ),
        (
            Method::GET,
            "/records/Observation%2Fo2",
            None,
            "couchdb api",
        ),
        (
            Method::GET,
            "/records/Observation%2Fo2?open_revs=all",
            None,
            "open_revs",
        ),
    ];
    for (method, path, body, what) in reads {
        let before = entries("Patient/p2").len();
        let (s, v) = h.call_as(nurse, method, path, body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        assert!(
            sent_to("Patient/p2", "nurse", what),
            "{path}: {:?}",
            entries("Patient/p2")
        );
        assert!(entries("Patient/p2").len() > before, "{path}");
    }
    // A single document read names the document too.
    assert!(
        entries("Patient/p2")
            .iter()
            .any(|e| e.event.resource.as_deref() == Some("Observation/o2"))
    );
    // `_all_docs` by keys, for the front desk: the patient it may read is sent and recorded,
    // the observation it may not read is refused and recorded.
    let (s, v) = h
        .call_as(
            front,
            Method::POST,
            "/records/_all_docs?include_docs=true",
            Some(json!({"keys": ["Patient/p1", "Observation/o1"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rows"][1]["error"], "forbidden", "{v}");
    assert!(sent_to("Patient/p1", "front", "_all_docs"));
    let denials = |user: &str| {
        h.store
            .audit_list(&store::AuditFilter {
                user: Some(user.to_owned()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .filter(|e| e.event.outcome == "denied")
            .map(|e| (e.event.resource.unwrap_or_default(), e.event.patient))
            .collect::<Vec<_>>()
    };
    // Refusals name the patient whose record it is, from the id or the stored document.
    assert_eq!(
        denials("front"),
        [("Observation/o1".to_owned(), Some("Patient/p1".to_owned()))]
    );
    // `_revs_diff` tells the front desk nothing about observations: the revision it names is
    // answered missing although the hub holds it; a patient's is answered as held.
    let rev_of = |id: &str| {
        let d = h
            .store
            .get(
                "records",
                &store::DocId::parse(id).unwrap(),
                &Default::default(),
            )
            .unwrap();
        d.rev.to_string()
    };
    let (o1, p1) = (rev_of("Observation/o1"), rev_of("Patient/p1"));
    let (s, v) = h
        .call_as(
            front,
            Method::POST,
            "/records/_revs_diff",
            Some(json!({"Observation/o1": [o1], "Patient/p1": [p1]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Observation/o1"]["missing"], json!([o1]), "{v}");
    assert!(v.get("Patient/p1").is_none(), "{v}");
    // A refused read of a patient names the patient.
    h.hub
        .set_account_role("clerk", "clerk-password", Role::Auditor)
        .unwrap();
    let (s, v) = h
        .call_as(
            Some(("clerk", "clerk-password")),
            Method::POST,
            "/records/_bulk_get",
            Some(json!({"docs": [{"id": "Patient/p1"}, {"id": "Observation/o1"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        denials("clerk"),
        [
            ("Patient/p1".to_owned(), Some("Patient/p1".to_owned())),
            ("Observation/o1".to_owned(), Some("Patient/p1".to_owned()))
        ]
    );
    assert!(!sent_to("Patient/p1", "clerk", ""));
}
