//! The local FHIR API through the router (`oneshot`), and once over a real socket on port 0.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use app::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const PIN: &str = "pin-135790";

/// A node unlocked by dr.kim behind the app's session guard, on a clock the test moves.
fn state() -> (tempfile::TempDir, AppState, Arc<AtomicI64>) {
    let dir = tempfile::tempdir().unwrap();
    let pin = vault::Pin::from(PIN);
    let kdf = vault::KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    let opts = store::InitOptions {
        kdf,
        policy: vault::PinPolicy::default(),
    };
    store::DataDir::init(dir.path(), "dr.kim", &pin, &opts).unwrap();
    let node = store::DataDir::open(dir.path())
        .unwrap()
        .unlock("dr.kim", &pin)
        .unwrap();
    let now = Arc::new(AtomicI64::new(1_900_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst)) as Arc<dyn Fn() -> i64 + Send + Sync>
    };
    let guard = app::Guard::new(dir.path().to_owned(), "records", node, 900, clock).unwrap();
    let state = AppState {
        guard: Arc::new(std::sync::Mutex::new(guard)),
        token: Arc::new(app::ApiToken::fixed("dr.kim", TOKEN)),
        web: Default::default(),
    };
    (dir, state, now)
}

fn store_of(st: &AppState) -> Arc<store::Store> {
    st.guard.lock().unwrap().replica().unwrap()
}

fn records_of(st: &AppState) -> Arc<records::Records> {
    st.guard.lock().unwrap().records().unwrap()
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:9");
    req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, v)
}

#[tokio::test]
async fn crud_with_versions_and_operation_outcomes() {
    let (_d, st, _now) = state();
    let app = router(st);
    let (s, h, created) = call(
        &app,
        "POST",
        "/fhir/Patient",
        Some(json!({"resourceType": "Patient", "name": [{"family": "Okafor"}]})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        h[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with(&format!("http://127.0.0.1:9/fhir/Patient/{id}/_history/"))
    );
    assert_eq!(
        h[header::CONTENT_TYPE],
        "application/fhir+json; charset=utf-8"
    );
    let (s, _, read) = call(&app, "GET", &format!("/fhir/Patient/{id}"), None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read["name"][0]["family"], "Okafor");
    // Update with If-Match; the stale version is then refused with 412.
    let mut changed = read.clone();
    changed["gender"] = json!("female");
    let (s, _, _) = call(
        &app,
        "PUT",
        &format!("/fhir/Patient/{id}"),
        Some(changed.clone()),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, oo) = call(
        &app,
        "PUT",
        &format!("/fhir/Patient/{id}"),
        Some(changed),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    // Invalid resources: 422 naming each path; bad JSON: 400; unknown type: 404.
    let (s, _, oo) = call(
        &app,
        "POST",
        "/fhir/Observation",
        Some(json!({"resourceType": "Observation", "status": "x"})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"Observation.status") && paths.contains(&"Observation.code"),
        "{paths:?}"
    );
    let req = Request::builder()
        .method("POST")
        .uri("/fhir/Patient")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("{oops"))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (s, _, _) = call(&app, "GET", "/fhir/Medication/x", None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        &app,
        "POST",
        "/fhir/Patient",
        Some(json!({"resourceType": "Observation"})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // History, delete, gone.
    let (_, _, h) = call(
        &app,
        "GET",
        &format!("/fhir/Patient/{id}/_history"),
        None,
        &[],
    )
    .await;
    assert_eq!(h["total"], 2);
    let (s, _, _) = call(&app, "DELETE", &format!("/fhir/Patient/{id}"), None, &[]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = call(&app, "GET", &format!("/fhir/Patient/{id}"), None, &[]).await;
    assert_eq!(s, StatusCode::GONE);
    let (s, _, oo) = call(&app, "GET", "/nowhere", None, &[]).await;
    assert_eq!(
        (s, oo["resourceType"].as_str()),
        (StatusCode::NOT_FOUND, Some("OperationOutcome"))
    );
}

#[tokio::test]
async fn search_and_everything_return_bundles() {
    let (_d, st, _now) = state();
    for r in fhir::demo::practitioners() {
        records_of(&st).create(r).unwrap();
    }
    for n in 0..5 {
        records_of(&st)
            .create_batch(fhir::demo::patient_bundle(n, 3, 1))
            .unwrap();
    }
    let app = router(st);
    let (s, _, b) = call(
        &app,
        "GET",
        "/fhir/Patient?_count=2&_sort=birthdate",
        None,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["entry"].as_array().unwrap().len(), 2);
    let next = b["link"][1]["url"].as_str().unwrap();
    assert!(
        next.starts_with("http://127.0.0.1:9/fhir/Patient?") && next.contains("_offset=2"),
        "{next}"
    );
    let (_, _, e) = call(&app, "GET", "/fhir/Patient/p-000001/$everything", None, &[]).await;
    assert_eq!(e["entry"][0]["resource"]["id"], "p-000001");
    assert_eq!(
        e["entry"].as_array().unwrap().len(),
        20,
        "the patient, proxies, vitals, medications, the dose given, …"
    );
    let (s, _, oo) = call(&app, "GET", "/fhir/Patient?shoe=9", None, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("not a search parameter")
    );
}

#[tokio::test]
async fn the_token_is_required_except_for_metadata() {
    let (_d, st, _now) = state();
    let app = router(st);
    for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let mut req = Request::builder().uri("/fhir/Patient");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/fhir/metadata")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[test]
fn serves_on_a_real_loopback_socket() {
    let (_d, st, _now) = state();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(app::serve(listener, router(st), async {
        let _ = rx.await;
    }));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"searchset\""));
    // DNS rebinding and cross-site posts (issue 16, ADR 30): a page that rebinds its name to
    // 127.0.0.1 sends that name as Host; a form on another site sends its Origin.
    let port = addr.port();
    let ask = |request: String| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let rebound = ask(format!(
        "GET /fhir/Patient HTTP/1.1\r\nHost: rebind.example:{port}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    ));
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    let login = "user=dr.kim&pin=wrong";
    let cross = ask(format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{login}",
        login.len()
    ));
    assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let fine = ask(format!(
            "GET /fhir/metadata HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nConnection: close\r\n\r\n"
        ));
        assert!(fine.starts_with("HTTP/1.1 200"), "{host}: {fine}");
        assert!(
            fine.to_ascii_lowercase()
                .contains("x-content-type-options: nosniff"),
            "{fine}"
        );
    }
    tx.send(()).unwrap();
    rt.block_on(server).unwrap().unwrap();
    assert!(app::check_loopback(&"0.0.0.0:8080".parse().unwrap()).is_err());
    assert!(app::check_loopback(&"[::1]:8080".parse().unwrap()).is_ok());
}

#[tokio::test]
async fn the_session_locks_after_inactivity_and_the_same_user_resumes() {
    let (_d, st, now) = state();
    records_of(&st)
        .create(json!({"resourceType": "Patient", "id": "p1"}))
        .unwrap();
    let app = router(st.clone());
    let (s, _, _) = call(&app, "GET", "/fhir/Patient/p1", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, status) = call(&app, "GET", "/session", None, &[]).await;
    assert_eq!(
        (status["locked"].as_bool(), status["seconds_left"].as_i64()),
        (Some(false), Some(900))
    );
    // 15 minutes and a second later: locked, keys dropped.
    now.fetch_add(901, Ordering::SeqCst);
    let (s, _, oo) = call(&app, "GET", "/fhir/Patient/p1", None, &[]).await;
    assert_eq!(s.as_u16(), 423);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("locked")
    );
    // A wrong PIN does not unlock; the right one resumes the same user's work.
    let (s, _, _) = call(
        &app,
        "POST",
        "/session/unlock",
        Some(json!({"pin": "not-the-pin"})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(
        &app,
        "POST",
        "/session/unlock",
        Some(json!({"pin": PIN})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = call(&app, "GET", "/fhir/Patient/p1", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    // Activity keeps it open; an explicit lock closes it at once.
    now.fetch_add(600, Ordering::SeqCst);
    assert_eq!(
        call(&app, "GET", "/fhir/Patient/p1", None, &[]).await.0,
        StatusCode::OK
    );
    now.fetch_add(600, Ordering::SeqCst);
    assert_eq!(
        call(&app, "GET", "/fhir/Patient/p1", None, &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", "/session/lock", None, &[]).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, "GET", "/fhir/Patient/p1", None, &[])
            .await
            .0
            .as_u16(),
        423
    );
    // Logout: no way back in this run.
    call(
        &app,
        "POST",
        "/session/unlock",
        Some(json!({"pin": PIN})),
        &[],
    )
    .await;
    assert_eq!(
        call(&app, "POST", "/session/logout", None, &[]).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/session/unlock",
            Some(json!({"pin": PIN})),
            &[]
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "GET", "/fhir/Patient/p1", None, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The trail tells the story: reopen the (now closed) node and read it.
    drop(app);
    drop(st);
    let node = store::DataDir::open(_d.path())
        .unwrap()
        .unlock("dr.kim", &vault::Pin::from(PIN))
        .unwrap();
    let actions: Vec<String> = node
        .replica()
        .audit_list(&store::AuditFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.event.action)
        .filter(|a| ["timeout", "unlock", "lock", "logout", "login_failed"].contains(&a.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            "timeout",
            "login_failed",
            "unlock",
            "lock",
            "unlock",
            "logout"
        ]
    );
}

#[tokio::test]
async fn conflict_inbox_lists_shows_and_resolves() {
    let (_d, st, _now) = state();
    let store = store_of(&st);
    let app = router(st);
    let (s, _, created) = call(
        &app,
        "POST",
        "/fhir/Consent",
        Some(json!({"resourceType": "Consent", "id": "c1", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}]})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    // Another device's concurrent edit arrives by replication.
    let id = store::DocId::parse("Consent/c1").unwrap();
    let current = store
        .get("records", &id, &store::GetOptions::default())
        .unwrap();
    let mut other = current.to_json();
    other["status"] = json!("inactive");
    // A sibling of the first version: created on another device with the same id.
    other["_rev"] = json!(format!("1-{}", "b".repeat(32)));
    other["_revisions"] = json!({"start": 1, "ids": ["b".repeat(32)]});
    store
        .bulk_docs(
            "records",
            vec![store::DocWrite::from_json(other, None).unwrap()],
            false,
        )
        .unwrap();
    let (s, _, list) = call(&app, "GET", "/conflicts", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["conflicts"][0]["id"], "Consent/c1");
    assert_eq!(list["conflicts"][0]["policy"], "manual");
    let (_, _, auto) = call(&app, "POST", "/conflicts/auto", None, &[]).await;
    assert!(
        auto["resolutions"][0]["rev"].is_null(),
        "consents are never resolved automatically"
    );
    let (_, _, shown) = call(&app, "GET", "/conflicts/Consent/c1", None, &[]).await;
    assert!(
        shown["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["field"] == "status")
    );
    let (s, _, bad) = call(
        &app,
        "POST",
        "/conflicts/Consent/c1/resolve",
        Some(json!({"keep": "9-zzz"})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(bad["resourceType"], "OperationOutcome");
    let keep = format!("1-{}", "b".repeat(32));
    let (s, _, res) = call(
        &app,
        "POST",
        "/conflicts/Consent/c1/resolve",
        Some(json!({"keep": keep})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{res}");
    let (_, _, list) = call(&app, "GET", "/conflicts", None, &[]).await;
    assert_eq!(list["conflicts"], json!([]));
    let (_, _, c) = call(&app, "GET", "/fhir/Consent/c1", None, &[]).await;
    assert_eq!(c["status"], "inactive");
}

/// Hostile input on the FHIR API: each a 4xx with an OperationOutcome, never a 5xx or a panic,
/// and nothing written.
#[tokio::test]
async fn bad_input_gets_an_operation_outcome_and_writes_nothing() {
    let (_d, st, _now) = state();
    let app = router(st.clone());
    let before = store_of(&st).db_info("records").unwrap().update_seq;
    let deep = format!(
        r#"{{"resourceType":"Patient","extension":{}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let long_id = format!("/fhir/Patient/{}", "a".repeat(300));
    let cases: Vec<(&str, &str, &str, &str, Vec<u8>)> = vec![
        (
            "oversized body",
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            vec![b' '; 17 << 20],
        ),
        (
            "invalid UTF-8",
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            vec![b'{', 0xff, b'}'],
        ),
        (
            "deep nesting",
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            deep.into_bytes(),
        ),
        (
            "not JSON",
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            b"<Patient/>".to_vec(),
        ),
        (
            "a JSON array",
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            b"[]".to_vec(),
        ),
        (
            "wrong type in body",
            "PUT",
            "/fhir/Patient/p1",
            "application/fhir+json",
            br#"{"resourceType":"Observation","id":"p1"}"#.to_vec(),
        ),
        (
            "id mismatch",
            "PUT",
            "/fhir/Patient/p1",
            "application/fhir+json",
            br#"{"resourceType":"Patient","id":"p2"}"#.to_vec(),
        ),
        (
            "path trick in id",
            "PUT",
            "/fhir/Patient/..%2F..%2Fetc",
            "application/fhir+json",
            br#"{"resourceType":"Patient","id":"../../etc"}"#.to_vec(),
        ),
        ("id too long", "GET", &long_id, "", vec![]),
        ("unknown type", "GET", "/fhir/Spaceship?name=x", "", vec![]),
        (
            "unknown search parameter",
            "GET",
            "/fhir/Patient?colour=blue",
            "",
            vec![],
        ),
        (
            "bad date",
            "GET",
            "/fhir/Patient?birthdate=yesterday",
            "",
            vec![],
        ),
        ("bad _count", "GET", "/fhir/Patient?_count=-5", "", vec![]),
        ("bad sort", "GET", "/fhir/Patient?_sort=phone", "", vec![]),
        (
            "empty text",
            "GET",
            "/fhir/Patient?name=%20--%20",
            "",
            vec![],
        ),
    ];
    for (what, method, uri, ctype, body) in cases {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "127.0.0.1:9")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if !ctype.is_empty() {
            req = req.header(header::CONTENT_TYPE, ctype);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_client_error(),
            "{what}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{what}: not JSON: {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(v["resourceType"], "OperationOutcome", "{what}: {v}");
        assert!(v["issue"][0]["diagnostics"].is_string(), "{what}: {v}");
    }
    let after = store_of(&st).db_info("records").unwrap().update_seq;
    assert_eq!(before, after, "nothing was written");
}

/// FHIR decimals keep their written precision through create, read, version read and search
/// (R4 `decimal`: "the precision of the decimal value has significance"; ADR 25).
#[tokio::test]
async fn decimals_keep_their_written_precision() {
    let (_d, st, _now) = state();
    let app = router(st);
    let (s, _, p) = call(
        &app,
        "POST",
        "/fhir/Patient",
        Some(json!({"resourceType": "Patient", "name": [{"family": "Ngata"}]})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let pid = p["id"].as_str().unwrap();
    let text = format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"lab panel"}},"subject":{{"reference":"Patient/{pid}"}},"valueQuantity":{{"value":1.00,"unit":"mg"}},"component":[{{"code":{{"text":"a"}},"valueQuantity":{{"value":0.010,"unit":"g"}}}},{{"code":{{"text":"b"}},"valueQuantity":{{"value":120.0,"unit":"mmHg"}}}},{{"code":{{"text":"c"}},"valueQuantity":{{"value":1.50e-3,"unit":"mol"}}}},{{"code":{{"text":"d"}},"valueQuantity":{{"value":123456789012345678,"unit":"1"}}}}]}}"#
    );
    let written: Value = serde_json::from_str(&text).unwrap();
    let (s, h, created) = call(&app, "POST", "/fhir/Observation", Some(written), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let version = h[header::ETAG]
        .to_str()
        .unwrap()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_owned();
    let values = |o: &Value| -> Vec<String> {
        std::iter::once(&o["valueQuantity"]["value"])
            .chain(
                o["component"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| &c["valueQuantity"]["value"]),
            )
            .map(Value::to_string)
            .collect()
    };
    let expected = ["1.00", "0.010", "120.0", "1.50e-3", "123456789012345678"];
    assert_eq!(values(&created), expected);
    let (_, _, read) = call(&app, "GET", &format!("/fhir/Observation/{id}"), None, &[]).await;
    assert_eq!(values(&read), expected);
    let (s, _, old) = call(
        &app,
        "GET",
        &format!("/fhir/Observation/{id}/_history/{version}"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{old}");
    assert_eq!(values(&old), expected);
    let (s, _, oo) = call(
        &app,
        "GET",
        &format!("/fhir/Observation/{id}/_history/9-{}", "0".repeat(32)),
        None,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (_, _, found) = call(
        &app,
        "GET",
        &format!("/fhir/Observation?subject=Patient/{pid}"),
        None,
        &[],
    )
    .await;
    assert_eq!(values(&found["entry"][0]["resource"]), expected, "{found}");
}
