//! Hostile users (issue 15): every path a front-desk clerk, a nurse and an auditor can reach —
//! the device's CLI, the Patient Explorer's pages, the local FHIR API, the hub's CouchDB API
//! over HTTP and TLS, the RPC channel a paired device uses, the relay to an upstream — tried for
//! every kind of record,
//! each answer compared with what the permission matrix says, and each refusal and each access
//! looked up in the audit trail with its patient.
//!
//! The expectations come from `records::Permissions::default()`, not from a list written here:
//! if a gate is removed, or the matrix and a path disagree, a case fails and names the user,
//! the path and the record.
//!
//! `cargo test -p hearth --test hostile`

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::hub::*;
use common::{Running, ok};
use records::{Action, Permissions};
use serde_json::{Value, json};
use store::Role;

/// One record of each kind in the demo patient `p-000000`'s chart.
const PROBES: &[(&str, &str)] = &[
    ("Patient", "p-000000"),
    ("AllergyIntolerance", "p-000000-allergy-1"),
    ("Communication", "p-000000-comm-1"),
    ("Condition", "p-000000-cond-1"),
    ("Consent", "p-000000-consent-1"),
    ("DocumentReference", "p-000000-note-1"),
    ("Encounter", "p-000000-enc-1"),
    ("MedicationAdministration", "p-000000-dose-0"),
    ("MedicationRequest", "p-000000-med-0"),
    ("Observation", "p-000000-obs-0-bp"),
    ("RelatedPerson", "p-000000-ec"),
    ("Task", "p-000000-task-1"),
];

const PATIENT: &str = "Patient/p-000000";

/// The device users: name, role, PIN.
const PEOPLE: &[(&str, Role, &str)] = &[
    ("fd", Role::FrontDesk, "fd-pin-11"),
    ("rn", Role::Nurse, "rn-pin-22"),
    ("au", Role::Auditor, "au-pin-33"),
];

fn may(role: Role, rt: &str, action: Action) -> bool {
    Permissions::default().allows(role, rt, action)
}

fn as_user(dir: &Path, user: &str, pin: &str, args: &[&str]) -> std::process::Output {
    let mut a = vec!["--user", user];
    a.extend_from_slice(args);
    hearth(dir, &a, &format!("{pin}\n"))
}

/// The audit entries of `user` on a device, as `(action, outcome, patient, resource, detail)`.
fn trail(dir: &Path, user: &str) -> Vec<[String; 5]> {
    let out = ok(&as_user(
        dir,
        "nurse1",
        PIN,
        &["audit", "list", "--by", user],
    ));
    out.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            [c[5], c[6], c[7], c[8], c[9]].map(str::to_owned)
        })
        .collect()
}

fn a_device_with_users(dir: &Path) {
    init_device(dir);
    ok(&as_user(
        dir,
        "nurse1",
        PIN,
        &["demo-data", "--patients", "2"],
    ));
    for (user, role, pin) in PEOPLE {
        ok(&hearth(
            dir,
            &[
                "--user",
                "nurse1",
                "user",
                "add",
                user,
                "--role",
                role.as_str(),
            ],
            &format!("{PIN}\n{pin}\n"),
        ));
    }
}

#[test]
fn on_a_device_the_cli_the_app_and_the_fhir_api_follow_the_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("device");
    a_device_with_users(&dev);

    // The CLI.
    for (user, role, pin) in PEOPLE {
        let run = |args: &[&str]| as_user(&dev, user, pin, args);
        for (rt, id) in PROBES {
            let out = run(&["fhir", "read", rt, id]);
            let want = may(*role, rt, Action::Read);
            assert_eq!(
                out.status.success(),
                want,
                "{user} ({role}) `fhir read {rt} {id}`: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !want {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("403") && err.contains(role.as_str()), "{err}");
            }
            let out = run(&["fhir", "search", rt]);
            assert_eq!(
                out.status.success(),
                may(*role, rt, Action::Search),
                "{user} `fhir search {rt}`"
            );
        }
        // Writing: a new observation, a deletion.
        let obs = r#"{"resourceType":"Observation","status":"final","code":{"text":"pulse"},"subject":{"reference":"Patient/p-000000"},"valueQuantity":{"value":71,"unit":"/min"}}"#;
        assert_eq!(
            run(&["fhir", "create", obs]).status.success(),
            may(*role, "Observation", Action::Create),
            "{user} creates an Observation"
        );
        assert_eq!(
            run(&["fhir", "delete", "Task", "p-000000-task-1"])
                .status
                .success(),
            may(*role, "Task", Action::Delete),
            "{user} deletes a Task"
        );
        // Raw document tools are an administrator's, whatever the matrix says.
        for args in [
            &["doc", "get", "Observation/p-000000-obs-0-bp"][..],
            &["changes", "--include-docs"],
            &["db", "delete", "records", "--yes"],
            &["sync", "--remote", "local:copy"],
        ] {
            let err = fails(&run(args));
            assert!(err.contains("administrator tool"), "{user} {args:?}: {err}");
        }
        // The matrix is changed by an administrator only; the trail is for auditors.
        let err = fails(&run(&[
            "roles",
            "grant",
            "front_desk",
            "Observation",
            "read",
        ]));
        assert!(err.contains("403"), "{user}: {err}");
        assert_eq!(
            run(&["audit", "list"]).status.success(),
            role.reads_audit(),
            "{user} reads the audit trail"
        );
        // The export off the device.
        assert_eq!(
            run(&[
                "export",
                "--out",
                tmp.path().join(format!("{user}.ndjson")).to_str().unwrap()
            ])
            .status
            .success(),
            may(*role, "Patient", Action::Export),
            "{user} exports"
        );
    }
    // Every refusal is in the trail, naming the record and its patient; every read too.
    for (user, role, _) in PEOPLE {
        let t = trail(&dev, user);
        for (rt, id) in PROBES {
            let resource = format!("{rt}/{id}");
            let (action, outcome) = if may(*role, rt, Action::Read) {
                ("read", "success")
            } else {
                ("denied", "denied")
            };
            assert!(
                t.iter().any(|[a, o, p, r, _]| a == action
                    && o == outcome
                    && p == PATIENT
                    && r == &resource),
                "{user}: no `{action}` entry for {resource} of {PATIENT} in {t:#?}"
            );
        }
        assert!(
            t.iter()
                .any(|[a, o, _, _, d]| a == "denied" && o == "denied" && d.contains("hearth doc")),
            "{user}: the refused raw command is not in the trail"
        );
    }

    // The app's pages and its FHIR API, signed in as each user in turn.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(&dev)
        .args(["app", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = common::url_from(&mut child);
    let _app = Running(child);
    // No one has signed in: no token yet.
    assert!(!dev.join("app-token").exists());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    rt.block_on(async {
        let mut last_token: Option<String> = None;
        for (user, role, pin) in PEOPLE {
            let resp = client
                .post(format!("{url}/login"))
                .form(&[("user", *user), ("pin", *pin), ("code", "")])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303, "{user} signs in");
            let cookie = resp.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            // The API token is this user's: the last user's token stops working.
            let token = std::fs::read_to_string(dev.join("app-token")).unwrap();
            let token = token.trim().to_owned();
            if let Some(old) = last_token.replace(token.clone()) {
                assert_ne!(old, token, "{user} got the last user's token");
                let (status, _) =
                    get_api(&client, &url, &old, "/fhir/Patient/p-000000".to_owned()).await;
                assert_eq!(status, 401, "the last user's token still works for {user}");
            }
            let page = |path: &'static str| get_page(&client, &url, &cookie, path);
            let api = |path: String| get_api(&client, &url, &token, path);
            for (rt, id) in PROBES {
                let (status, body) = api(format!("/fhir/{rt}/{id}")).await;
                if may(*role, rt, Action::Read) {
                    assert_eq!(status, 200, "{user} API read {rt}: {body}");
                    assert_eq!(body["id"], *id);
                } else {
                    assert_eq!(status, 403, "{user} API read {rt}: {body}");
                    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
                }
            }
            // $everything: only readable types, and the hidden ones named, never silently absent.
            let (status, b) = api("/fhir/Patient/p-000000/$everything".into()).await;
            if may(*role, "Patient", Action::Read) {
                assert_eq!(status, 200, "{user}: {b}");
                let entries = b["entry"].as_array().unwrap();
                let mut hidden = BTreeSet::new();
                for e in entries {
                    let r = &e["resource"];
                    if e["search"]["mode"] == "outcome" {
                        for i in r["issue"].as_array().unwrap() {
                            hidden.insert(i["expression"][0].as_str().unwrap().to_owned());
                        }
                        continue;
                    }
                    let t = r["resourceType"].as_str().unwrap();
                    assert!(may(*role, t, Action::Read), "{user} received a {t}");
                }
                for (t, _) in PROBES {
                    assert_eq!(
                        hidden.contains(*t),
                        !may(*role, t, Action::Read),
                        "{user}: {t} hidden? {hidden:?}"
                    );
                }
            } else {
                assert_eq!(status, 403, "{user}: {b}");
            }
            // The chart says what is hidden; the audit page and the export follow the matrix.
            let (status, chart) = page("/patients/p-000000").await;
            if may(*role, "Patient", Action::Read) {
                assert_eq!(status, 200, "{user} chart");
                assert_eq!(
                    chart.contains("Hidden for your role"),
                    !may(*role, "AllergyIntolerance", Action::Read),
                    "{user} chart"
                );
            } else {
                assert_ne!(status, 200, "{user} chart");
            }
            let (status, _) = page("/audit").await;
            assert_eq!(status == 200, role.reads_audit(), "{user} /audit: {status}");
            let (status, _) = page("/patients/p-000000/export").await;
            assert_eq!(
                status == 200,
                may(*role, "Patient", Action::Export),
                "{user} export: {status}"
            );
        }
    });
}

/// A page of the app, with the session cookie.
async fn get_page(client: &reqwest::Client, url: &str, cookie: &str, path: &str) -> (u16, String) {
    let r = client
        .get(format!("{url}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A call to the app's FHIR API, with its token.
async fn get_api(client: &reqwest::Client, url: &str, token: &str, path: String) -> (u16, Value) {
    let r = client
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// A hub account's view, over the CouchDB API (`base` is HTTP or TLS).
async fn couch(
    client: &reqwest::Client,
    base: &str,
    who: (&str, &str),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client
        .request(method, format!("{base}{path}"))
        .basic_auth(who.0, Some(who.1));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An administrator's device loads `patients` demo patients and syncs them to its hub.
fn fill_the_hub(device: &Path, patients: u32) {
    ok(&as_user(
        device,
        "nurse1",
        PIN,
        &["demo-data", "--patients", &patients.to_string()],
    ));
    ok(&hearth(
        device,
        &[
            "--user",
            "nurse1",
            "sync",
            "--hub",
            "--remote-user",
            "admin@clinic",
        ],
        &format!("{PIN}\n{ADMIN_PW}\n"),
    ));
}

/// A runtime and a client for the hubs' CouchDB API over TLS (their self-signed certificates).
fn tls_client() -> (tokio::runtime::Runtime, reqwest::Client) {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    (tokio::runtime::Runtime::new().unwrap(), client)
}

/// Hub accounts: name, role, password.
const ACCOUNTS: &[(&str, Role, &str)] = &[
    ("fd@clinic", Role::FrontDesk, "fd-password-1"),
    ("nurse@clinic", Role::Nurse, NURSE_PW),
    ("au@clinic", Role::Auditor, "au-password-1"),
];

#[test]
fn on_the_hub_the_couchdb_api_and_the_rpc_channel_follow_the_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    init_hub(&hub_dir);
    for (name, role, pw) in ACCOUNTS {
        add_account(&hub_dir, name, role.as_str(), pw);
    }
    let tls = format!("127.0.0.1:{}", free_port());
    let (_hub, urls) = start_hub(
        &hub_dir,
        &["--couch-listen", "127.0.0.1:0", "--couch-tls-listen", &tls],
    );
    let admin = admin_url(&urls);
    let bases = [urls["CouchDB API"].clone(), format!("https://{tls}")];

    // An administrator's device fills the hub.
    let a = tmp.path().join("a");
    device(&a, &admin, &hub_dir, "tablet A");
    fill_the_hub(&a, 2);
    let (rt, client) = tls_client();
    rt.block_on(async {
        for base in &bases {
            for (name, role, pw) in ACCOUNTS {
                let who = (*name, *pw);
                let get = |path: String| {
                    let client = client.clone();
                    async move { couch(&client, base, who, reqwest::Method::GET, &path, None).await }
                };
                for (rt, id) in PROBES {
                    let (status, v) = get(format!("/records/{rt}%2F{id}")).await;
                    let want = if may(*role, rt, Action::Read) { 200 } else { 403 };
                    assert_eq!(status, want, "{name} GET {rt}/{id} on {base}: {v}");
                    if want == 403 {
                        assert_eq!(v["error"], "forbidden", "{v}");
                    }
                }
                // Listings and the feed carry only what the role may read.
                for path in [
                    "/records/_all_docs?include_docs=true",
                    "/records/_changes?include_docs=true",
                ] {
                    let (status, v) = get(path.into()).await;
                    assert_eq!(status, 200, "{name} {path}: {v}");
                    let rows = v["rows"].as_array().or(v["results"].as_array()).unwrap();
                    let types: BTreeSet<&str> = rows
                        .iter()
                        .filter_map(|r| r["id"].as_str()?.split('/').next())
                        .collect();
                    for (t, _) in PROBES {
                        assert_eq!(
                            types.contains(t),
                            may(*role, t, Action::Read),
                            "{name} {path} on {base}: {types:?}"
                        );
                    }
                }
                let asked: Vec<Value> = PROBES
                    .iter()
                    .map(|(t, id)| json!({"id": format!("{t}/{id}")}))
                    .collect();
                let (status, v) = couch(
                    &client,
                    base,
                    who,
                    reqwest::Method::POST,
                    "/records/_bulk_get",
                    Some(json!({"docs": asked})),
                )
                .await;
                assert_eq!(status, 200, "{v}");
                for (r, (t, _)) in v["results"].as_array().unwrap().iter().zip(PROBES) {
                    let refused = r["docs"][0]["error"]["error"] == "forbidden";
                    assert_eq!(refused, !may(*role, t, Action::Read), "{name} _bulk_get {t}: {r}");
                }
                // Writes: per document, as the matrix says; deletions likewise.
                let obs = json!({"resourceType": "Observation", "status": "final",
                    "code": {"text": "pulse"}, "subject": {"reference": PATIENT},
                    "valueQuantity": {"value": 70, "unit": "/min"}});
                let id = format!("hostile-{}-{}", name.replace('@', "-"), base.len());
                let mut doc = obs.clone();
                doc["_id"] = json!(format!("Observation/{id}"));
                doc["id"] = json!(id);
                let (status, v) = couch(
                    &client,
                    base,
                    who,
                    reqwest::Method::POST,
                    "/records/_bulk_docs",
                    Some(json!({"docs": [doc]})),
                )
                .await;
                assert_eq!(status, 201, "{v}");
                let written = v[0]["ok"] == true;
                assert_eq!(
                    written,
                    may(*role, "Observation", Action::Create) && may(*role, "Observation", Action::Update),
                    "{name} writes an Observation on {base}: {v}"
                );
                let (_, cur) = couch(&client, &bases[0], ("admin@clinic", ADMIN_PW), reqwest::Method::GET, "/records/Task%2Fp-000001-task-1", None).await;
                let (status, v) = couch(
                    &client,
                    base,
                    who,
                    reqwest::Method::DELETE,
                    &format!("/records/Task%2Fp-000001-task-1?rev={}", cur["_rev"].as_str().unwrap()),
                    None,
                )
                .await;
                assert_eq!(
                    status == 200,
                    may(*role, "Task", Action::Delete),
                    "{name} deletes a Task on {base}: {v}"
                );
                // No account changes the node's policy through a document, on any route.
                for path in [
                    "/records/_local/hearth-permissions",
                    "/records/_local%2Fhearth-permissions",
                ] {
                    let (status, v) = couch(
                        &client,
                        base,
                        who,
                        reqwest::Method::PUT,
                        path,
                        Some(json!({"roles": {"front_desk": {"Observation": ["read"]}}})),
                    )
                    .await;
                    assert_eq!(status, 403, "{name} PUT {path}: {v}");
                }
                let (status, _) = couch(
                    &client,
                    base,
                    who,
                    reqwest::Method::PUT,
                    "/records/_security",
                    Some(json!({"members": {"roles": ["front_desk"]}})),
                )
                .await;
                assert!(status >= 400, "{name} PUT _security: {status}");
            }
        }
    });
    // The policy is unchanged: the front desk still cannot read an observation.
    rt.block_on(async {
        let (status, _) = couch(
            &client,
            &bases[0],
            ("fd@clinic", "fd-password-1"),
            reqwest::Method::GET,
            "/records/Observation%2Fp-000000-obs-0-bp",
            None,
        )
        .await;
        assert_eq!(status, 403);
    });

    // The RPC channel: a device paired with the hub pulls as the front desk and receives only
    // what the front desk may read; what it may not write is refused at the hub.
    let b = tmp.path().join("b");
    device(&b, &admin, &hub_dir, "desk tablet");
    let out = ok(&hearth(
        &b,
        &[
            "--user",
            "nurse1",
            "sync",
            "--hub",
            "--remote-user",
            "fd@clinic",
        ],
        &format!("{PIN}\nfd-password-1\n"),
    ));
    assert!(out.contains("pull: ") && out.contains(" written"), "{out}");
    let changes = ok(&as_user(&b, "nurse1", PIN, &["changes"]));
    let changes: Value = serde_json::from_str(&changes).unwrap();
    let types: BTreeSet<String> = changes["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some(r["id"].as_str()?.split('/').next()?.to_owned()))
        .collect();
    assert!(!types.is_empty(), "{changes}");
    for t in &types {
        assert!(
            may(Role::FrontDesk, t, Action::Read),
            "the desk tablet received a {t}"
        );
    }
    ok(&as_user(
        &b,
        "nurse1",
        PIN,
        &[
            "fhir",
            "create",
            r#"{"resourceType":"Observation","status":"final","code":{"text":"pulse"},"subject":{"reference":"Patient/p-000000"}}"#,
        ],
    ));
    let out = hearth(
        &b,
        &[
            "--user",
            "nurse1",
            "sync",
            "--hub",
            "--remote-user",
            "fd@clinic",
        ],
        &format!("{PIN}\nfd-password-1\n"),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let push = text.lines().find(|l| l.starts_with("push: ")).unwrap_or("");
    assert!(
        push.contains(", 1 failed"),
        "the front desk's observation was not refused: {text}"
    );

    // The hub's report names, for the patient, who was refused what and who received it.
    let report = ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "audit",
            "report",
            "--patient",
            "p-000000",
            "--json",
            "--admin-url",
            &admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    let report: Value = serde_json::from_str(&report).unwrap();
    let entries = report["entries"].as_array().unwrap();
    let has = |user: &str, action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["user"] == user && e["action"] == action && e["outcome"] == outcome)
    };
    for (name, role, _) in ACCOUNTS {
        assert_eq!(
            has(name, "sync", "success") && has(name, "read", "success"),
            may(*role, "Patient", Action::Read),
            "{name}: what it received of {PATIENT}"
        );
    }
    assert!(
        has("fd@clinic", "denied", "denied"),
        "no denial of the front desk for {PATIENT}"
    );
    assert!(
        has("au@clinic", "denied", "denied"),
        "no denial of the auditor for {PATIENT}"
    );
    assert!(
        has("fd@clinic", "sync", "success"),
        "the desk tablet's pull is not accounted for"
    );
}

/// The relay: the clinic hub replicates its own copy upstream as its own principal (no role);
/// what reaches the upstream is what the *upstream's* account may write, under the upstream's
/// matrix, and each refusal is in the upstream's trail.
#[test]
fn the_relay_carries_only_what_the_upstream_account_may_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (up_dir, hub_dir) = (tmp.path().join("upstream"), tmp.path().join("hub"));
    let up_fp = init_hub(&up_dir);
    add_account(&up_dir, "desk@up", "front_desk", "desk-password-1");
    let up_tls = format!("127.0.0.1:{}", free_port());
    let (_up, up_urls) = start_hub(
        &up_dir,
        &["--couch-listen", "", "--couch-tls-listen", &up_tls],
    );
    let up_admin = admin_url(&up_urls);
    init_hub(&hub_dir);
    ok(&hearth(
        &hub_dir,
        &[
            "hub",
            "upstream",
            "set",
            &format!("https://{up_tls}"),
            "--upstream-user",
            "desk@up",
            "--tls-fingerprint",
            &up_fp,
        ],
        &format!("{PASS}\ndesk-password-1\n"),
    ));
    let (_hub, urls) = start_hub(
        &hub_dir,
        &[
            "--couch-listen",
            "",
            "--couch-tls-listen",
            "",
            "--set",
            "relay_interval_secs=1",
        ],
    );
    let admin = admin_url(&urls);
    let a = tmp.path().join("a");
    device(&a, &admin, &hub_dir, "tablet A");
    fill_the_hub(&a, 1);
    let (rt, client) = tls_client();
    let base = format!("https://{up_tls}");
    let upstream_types = || {
        rt.block_on(async {
            let (status, v) = couch(
                &client,
                &base,
                ("admin@clinic", ADMIN_PW),
                reqwest::Method::GET,
                "/records/_all_docs",
                None,
            )
            .await;
            assert_eq!(status, 200, "{v}");
            v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| Some(r["id"].as_str()?.split('/').next()?.to_owned()))
                .collect::<BTreeSet<String>>()
        })
    };
    wait_for(
        "the relay to carry the patient upstream",
        std::time::Duration::from_secs(60),
        || upstream_types().contains("Patient"),
    );
    let writable = |t: &str| {
        may(Role::FrontDesk, t, Action::Create) && may(Role::FrontDesk, t, Action::Update)
    };
    let types = upstream_types();
    for t in &types {
        assert!(
            writable(t),
            "the relay put a {t} upstream through a front-desk account"
        );
    }
    for (t, _) in PROBES {
        if writable(t) {
            assert!(
                types.contains(*t),
                "{t} did not reach the upstream: {types:?}"
            );
        }
    }
    // The upstream refused the rest, each refusal in its trail under the relay's account.
    let report = ok(&hearth(
        &up_dir,
        &[
            "hub",
            "audit",
            "report",
            "--json",
            "--admin-url",
            &up_admin,
            "--account",
            "admin@clinic",
        ],
        &format!("{ADMIN_PW}\n"),
    ));
    let report: Value = serde_json::from_str(&report).unwrap();
    let refused: BTreeSet<String> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == "desk@up" && e["action"] == "denied")
        .filter_map(|e| Some(e["resource"].as_str()?.split('/').next()?.to_owned()))
        .collect();
    for (t, _) in PROBES {
        assert_eq!(
            refused.contains(*t),
            !writable(t),
            "{t}: refused {refused:?}"
        );
    }
}
