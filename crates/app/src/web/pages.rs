//! Login and lock, the patient list, the conflict inbox and the audit view.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{Viewer, enc, error_page, esc, html, page, redirect, same_origin, with_records};
use crate::AppState;

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    user: String,
    pin: String,
    #[serde(default)]
    code: String,
}

fn login_page(status: StatusCode, error: Option<&str>, user: &str) -> Response {
    let err = error
        .map(|e| {
            format!(
                r#"<div class="alert" role="alert" id="login-error">{}</div>"#,
                esc(e)
            )
        })
        .unwrap_or_default();
    html(
        status,
        page(
            "Sign in",
            None,
            &format!(
                r#"<div class="login card"><h1>Hearth</h1><p class="muted">Patient Explorer on this device. Works offline.</p>{err}
<form method="post" action="/login">
<label for="user">User</label><input id="user" name="user" autocomplete="username" required value="{}">
<label for="pin">PIN</label><input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password" required>
<label for="code">Authenticator code <span class="muted">(if your role needs one)</span></label><input id="code" name="code" inputmode="numeric" autocomplete="one-time-code">
<p><button type="submit">Sign in</button></p></form></div>"#,
                esc(user)
            ),
        ),
    )
}

pub(crate) async fn login_form() -> Response {
    login_page(StatusCode::OK, None, "")
}

fn session_cookie(value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/",
        super::COOKIE
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    let guard = s.guard.clone();
    let user = f.user.trim().to_owned();
    let u = user.clone();
    let result = tokio::task::spawn_blocking(move || {
        let pin = vault::Pin::from(f.pin.as_str());
        let code = (!f.code.trim().is_empty()).then(|| f.code.trim().to_owned());
        guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .login(&u, &pin, code.as_deref())
    })
    .await
    .unwrap_or_else(|_| Err("the login failed".into()));
    // The API token is the signed-in user's: a new user gets a new one (the last user's stops
    // working); the same user signing in again keeps theirs.
    let result = result.and_then(|()| {
        s.token
            .issue(&user)
            .map_err(|_| "cannot write the API token file".to_owned())
    });
    match result {
        Ok(()) => {
            let Some(c) = s.web.issue() else {
                return login_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("no randomness"),
                    &user,
                );
            };
            let mut r = redirect("/patients");
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&c));
            r
        }
        Err(e) => login_page(StatusCode::UNAUTHORIZED, Some(&e), &user),
    }
}

pub(crate) async fn locked_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (user, has) = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        g.expire();
        (g.user().to_owned(), g.has_user())
    };
    if !has || !s.web.valid(&headers) {
        return redirect("/login");
    }
    locked_page(StatusCode::OK, None, &user)
}

fn locked_page(status: StatusCode, error: Option<&str>, user: &str) -> Response {
    let err = error
        .map(|e| format!(r#"<div class="alert" role="alert">{}</div>"#, esc(e)))
        .unwrap_or_default();
    html(
        status,
        page(
            "Locked",
            None,
            &format!(
                r#"<div class="login card"><h1>Locked</h1><p>The session of <strong>{}</strong> is locked; the data key was dropped. Enter your PIN to continue where you were.</p>{err}
<form method="post" action="/unlock"><label for="pin">PIN</label><input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password" required autofocus>
<label for="code">Authenticator code <span class="muted">(if needed)</span></label><input id="code" name="code" inputmode="numeric">
<p><button type="submit">Unlock</button></p></form>
<form method="post" action="/logout"><button class="link" type="submit">Sign in as someone else</button></form></div>"#,
                esc(user)
            ),
        ),
    )
}

#[derive(Deserialize)]
pub(crate) struct UnlockForm {
    pin: String,
    #[serde(default)]
    code: String,
}

pub(crate) async fn unlock(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<UnlockForm>,
) -> Response {
    if !same_origin(&headers) || !s.web.valid(&headers) {
        return redirect("/login");
    }
    let guard = s.guard.clone();
    let r = tokio::task::spawn_blocking(move || {
        let pin = vault::Pin::from(f.pin.as_str());
        let code = (!f.code.trim().is_empty()).then(|| f.code.trim().to_owned());
        let mut g = guard.lock().unwrap_or_else(|p| p.into_inner());
        g.unlock(&pin, code.as_deref())
            .map_err(|e| (e, g.user().to_owned()))
    })
    .await
    .unwrap_or_else(|_| Err(("the unlock failed".into(), String::new())));
    match r {
        Ok(()) => redirect("/patients"),
        Err((e, user)) => locked_page(StatusCode::UNAUTHORIZED, Some(&e), &user),
    }
}

pub(crate) async fn lock(State(s): State<AppState>) -> Response {
    s.guard.lock().unwrap_or_else(|p| p.into_inner()).lock();
    redirect("/locked")
}

pub(crate) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if same_origin(&headers) && s.web.valid(&headers) {
        s.guard.lock().unwrap_or_else(|p| p.into_inner()).lock();
        s.web.clear();
        // Signing out withdraws the user's API token too.
        s.token.withdraw();
    }
    let mut r = redirect("/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("hearth_session=; Max-Age=0; Path=/"),
    );
    r
}

pub(crate) async fn keepalive(State(s): State<AppState>) -> Response {
    let left = {
        let mut g = s.guard.lock().unwrap_or_else(|p| p.into_inner());
        let _ = g.records();
        g.seconds_left()
    };
    axum::Json(serde_json::json!({"seconds_left": left})).into_response()
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: usize,
}

const PAGE: usize = 25;

/// What the search box means: a birth date, a phone number, an MRN, or a name.
fn search_params(q: &str) -> Vec<(String, String)> {
    let q = q.trim();
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    if q.is_empty() {
        Vec::new()
    } else if q.len() == 10 && q.as_bytes()[4] == b'-' && q.as_bytes()[7] == b'-' {
        vec![("birthdate".into(), q.into())]
    } else if q.len() > 3 && q.is_char_boundary(3) && q[..3].eq_ignore_ascii_case("mrn") {
        // Medical record numbers are stored as written on the chart: "MRN0100001".
        let digits = q[3..].trim_start_matches([':', ' ', '-']);
        vec![("identifier".into(), format!("MRN{digits}"))]
    } else if digits.len() >= 4 && digits.len() * 2 >= q.len() {
        vec![("phone".into(), digits)]
    } else {
        vec![("name".into(), q.into())]
    }
}

fn display_name(p: &Value) -> String {
    let n = &p["name"][0];
    if let Some(t) = n["text"].as_str() {
        return t.to_owned();
    }
    let given: Vec<&str> = n["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or(""))
        .trim()
        .to_owned()
}

pub(crate) fn mrn(p: &Value) -> String {
    p["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["type"]["coding"][0]["code"] == "MR")
        .or_else(|| p["identifier"].get(0))
        .and_then(|i| i["value"].as_str())
        .unwrap_or("")
        .to_owned()
}

pub(crate) fn phone(p: &Value) -> String {
    p["telecom"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["system"] == "phone")
        .and_then(|t| t["value"].as_str())
        .unwrap_or("")
        .to_owned()
}

pub(crate) fn patient_name(p: &Value) -> String {
    display_name(p)
}

pub(crate) async fn patients(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let v = Viewer::of(&s);
    let filter = q.filter.clone();
    let page_no = q.page;
    let mut params = search_params(&q.q);
    params.push(("_count".into(), PAGE.to_string()));
    params.push(("_offset".into(), (page_no * PAGE).to_string()));
    // Browsing is in record-number order unless a sort is chosen; the store walks the sort
    // key's index, so a sorted page costs about what an unsorted one does (docs/benchmarks.md).
    if matches!(q.sort.as_str(), "birthdate" | "-birthdate" | "name") {
        params.push(("_sort".into(), q.sort.clone()));
    }
    let result = with_records(&s, move |r| {
        // Which patients' records have conflicts takes a scan of the database: only for that
        // filter. The rows shown are flagged by their own Patient record, cheaply.
        let conflicted = || r.patients_with_conflicts();
        let flagged = |rows: &[Value]| -> std::collections::BTreeSet<String> {
            rows.iter()
                .filter_map(|p| p["id"].as_str())
                .filter(|id| r.in_conflict("Patient", id))
                .map(|id| format!("Patient/{id}"))
                .collect()
        };
        // Filters by what needs doing: patients of requested tasks, or of medications due in
        // the next 24 hours, or with unresolved conflicts.
        let wanted: Option<std::collections::BTreeSet<String>> = match filter.as_str() {
            "conflicts" => Some(conflicted()?),
            // The patients this user wrote or signed something for, from this device's trail.
            "mine" => Some(r.patients_i_changed(5_000)?),
            "tasks" => Some(patients_of(r, "Task", &[("status", "requested")], "for")?),
            "due" => {
                let until = fhir::time::instant(fhir::time::now() + 86_400);
                // Soonest first: the store walks the next-due index up to the bound.
                Some(patients_of(
                    r,
                    "MedicationRequest",
                    &[
                        ("status", "active"),
                        ("next-due", &format!("le{until}")),
                        ("_sort", "next-due"),
                    ],
                    "subject",
                )?)
            }
            _ => None,
        };
        if let Some(wanted) = wanted {
            let mut rows = Vec::new();
            for p in wanted.iter().skip(page_no * PAGE).take(PAGE) {
                let id = p.trim_start_matches("Patient/");
                if let Ok(st) = r.read("Patient", id) {
                    rows.push(st.resource);
                }
            }
            let more = wanted.len() > (page_no + 1) * PAGE;
            let flags = flagged(&rows);
            return Ok((rows, more, flags));
        }
        let b = r.search("Patient", &params, "/fhir")?;
        let more = b["link"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["relation"] == "next");
        let rows = b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect();
        let rows: Vec<Value> = rows;
        let flags = flagged(&rows);
        Ok((rows, more, flags))
    })
    .await;
    let (rows, more, conflicted) = match result {
        Ok(x) => x,
        Err((status, msg)) => return error_page(&v, status, &msg, ""),
    };
    let mut trs = String::new();
    for p in &rows {
        let id = p["id"].as_str().unwrap_or("");
        let flag = if conflicted.contains(&format!("Patient/{id}")) {
            r#" <span class="pill warn">conflict</span>"#
        } else {
            ""
        };
        trs.push_str(&format!(
            r#"<tr><td><a href="/patients/{}">{}</a>{flag}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            enc(id),
            esc(&display_name(p)),
            esc(p["birthDate"].as_str().unwrap_or("")),
            esc(&mrn(p)),
            esc(&phone(p))
        ));
    }
    if rows.is_empty() {
        trs.push_str(r#"<tr><td colspan="4" class="muted">No patients match.</td></tr>"#);
    }
    let link = |n: usize| {
        format!(
            "/patients?q={}&filter={}&sort={}&page={n}",
            enc(&q.q),
            enc(&q.filter),
            enc(&q.sort)
        )
    };
    let mut pager = String::new();
    if page_no > 0 {
        pager.push_str(&format!(
            r#"<a href="{}">← Previous</a>"#,
            link(page_no - 1)
        ));
    }
    pager.push_str(&format!(
        r#"<span class="muted">Page {}</span>"#,
        page_no + 1
    ));
    if more {
        pager.push_str(&format!(r#"<a href="{}">Next →</a>"#, link(page_no + 1)));
    }
    let opt = |val: &str, label: &str| {
        format!(
            r#"<option value="{val}"{}>{label}</option>"#,
            if q.filter == val { " selected" } else { "" }
        )
    };
    let body = format!(
        r#"<h1>Patients</h1>
<form class="card row" method="get" action="/patients" role="search">
<div><label for="q">Search</label><input id="q" name="q" value="{}" placeholder="Name, MRN, phone or YYYY-MM-DD" autofocus></div>
<div><label for="filter">Show</label><select id="filter" name="filter">{}{}</select></div>
<div><label for="sort">Sort</label><select id="sort" name="sort">{sorts}</select></div>
<button type="submit">Search</button></form>
<div class="card"><table><caption class="sr-only">Patients</caption><thead><tr><th scope="col">Name</th><th scope="col">Born</th><th scope="col">MRN</th><th scope="col">Phone</th></tr></thead>
<tbody id="patient-rows">{trs}</tbody></table><div class="pager">{pager}</div></div>"#,
        esc(&q.q),
        opt("", "All patients") + &opt("mine", "My patients (I recorded for)"),
        opt("conflicts", "With conflicts")
            + &opt("tasks", "With open tasks")
            + &opt("due", "Medications due in 24 h"),
        sorts = [
            ("", "Record number"),
            ("name", "Name"),
            ("birthdate", "Oldest first"),
            ("-birthdate", "Youngest first")
        ]
        .iter()
        .map(|(val, label)| format!(
            r#"<option value="{val}"{}>{label}</option>"#,
            if q.sort == *val { " selected" } else { "" }
        ))
        .collect::<String>(),
    );
    html(StatusCode::OK, page("Patients", Some(&v), &body))
}

/// The patients referenced (by `field`) from resources of `rt` matching `params`.
fn patients_of(
    r: &records::Records,
    rt: &str,
    params: &[(&str, &str)],
    field: &str,
) -> Result<std::collections::BTreeSet<String>, records::FhirError> {
    // The first 1,000 matches (soonest first where the type has a due date): a worklist,
    // not a census, so the page stays fast in a clinic of 100,000 patients.
    let mut q: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    q.push(("_count".into(), "1000".into()));
    let b = r.search(rt, &q, "/fhir")?;
    Ok(b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"][field]["reference"].as_str())
        .map(str::to_owned)
        .collect())
}

pub(crate) async fn conflicts(State(s): State<AppState>) -> Response {
    let v = Viewer::of(&s);
    let list = match with_records(&s, |r| r.conflicts(None, None)).await {
        Ok(l) => l,
        Err((status, msg)) => return error_page(&v, status, &msg, ""),
    };
    let mut trs = String::new();
    for c in &list {
        let (rt, id) = c.id.split_once('/').unwrap_or(("", ""));
        trs.push_str(&format!(
            r#"<tr><td><a href="/inbox/{}/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            enc(rt),
            enc(id),
            esc(&c.id),
            esc(c.patient.as_deref().unwrap_or("")),
            esc(c.policy.name()),
            esc(&c
                .diff
                .iter()
                .map(|d| d.field.clone())
                .collect::<Vec<_>>()
                .join(", "))
        ));
    }
    if list.is_empty() {
        trs.push_str(
            r#"<tr><td colspan="4" class="muted">No conflicts wait for a person.</td></tr>"#,
        );
    }
    let body = format!(
        r#"<h1>Conflict inbox</h1><p class="muted">Versions made on different devices that the merge policies leave to a person. Nothing is lost: every version stays until you choose.</p>
<div class="card"><table><thead><tr><th scope="col">Record</th><th scope="col">Patient</th><th scope="col">Policy</th><th scope="col">Differs in</th></tr></thead><tbody>{trs}</tbody></table></div>"#
    );
    html(StatusCode::OK, page("Conflicts", Some(&v), &body))
}

pub(crate) async fn conflict(
    State(s): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
) -> Response {
    let v = Viewer::of(&s);
    let reference = format!("{rt}/{id}");
    let r2 = reference.clone();
    let c = match with_records(&s, move |r| r.conflict(&r2)).await {
        Ok(c) => c,
        Err((status, msg)) => return error_page(&v, status, &msg, ""),
    };
    let pretty = |v: &Value| esc(&serde_json::to_string_pretty(v).unwrap_or_default());
    let mut cols = String::new();
    for ver in &c.versions {
        cols.push_str(&format!(
            r#"<section class="card" aria-label="Version {rev}"><h2>{label} <span class="pill">{rev}</span></h2><pre>{}</pre>
<form method="post" action="/inbox/{}/{}/resolve"><input type="hidden" name="keep" value="{rev}"><button type="submit">Keep this version</button></form></section>"#,
            pretty(&ver.resource),
            enc(&rt),
            enc(&id),
            label = if ver.winner { "Current" } else { "Other" },
            rev = esc(&ver.rev),
        ));
    }
    let ancestor = c
        .ancestor
        .as_ref()
        .map(|a| {
            format!(
                r#"<section class="card"><h2>Common ancestor</h2><pre>{}</pre></section>"#,
                pretty(a)
            )
        })
        .unwrap_or_else(|| {
            r#"<p class="muted">The common ancestor is no longer stored.</p>"#.into()
        });
    let mut diff = String::new();
    for d in &c.diff {
        let vals: String = d
            .versions
            .iter()
            .map(|(rev, val)| {
                format!(
                    "<td><pre>{}</pre><span class=\"muted\">{}</span></td>",
                    pretty(val),
                    esc(rev)
                )
            })
            .collect();
        diff.push_str(&format!(
            r#"<tr class="diff-field"><th scope="row">{}</th><td><pre>{}</pre></td>{vals}</tr>"#,
            esc(&d.field),
            pretty(&d.ancestor)
        ));
    }
    let body = format!(
        r#"<h1>Conflict: {}</h1><p>Policy: <span class="pill">{}</span></p>
<div class="card"><h2>Fields that differ</h2><table><thead><tr><th scope="col">Field</th><th scope="col">Ancestor</th><th scope="col" colspan="{}">Versions</th></tr></thead><tbody id="diff">{diff}</tbody></table></div>
<div class="versions">{cols}</div>{ancestor}
<section class="card"><h2>Or merge by hand</h2><form method="post" action="/inbox/{}/{}/resolve">
<label for="merged">The resource as it should be (starts from the current version)</label><textarea id="merged" name="merged" rows="16">{}</textarea>
<p><button type="submit">Save the merged version</button></p></form></section>"#,
        esc(&reference),
        esc(c.policy.name()),
        c.versions.len(),
        enc(&rt),
        enc(&id),
        c.versions
            .first()
            .map(|v| pretty(&v.resource))
            .unwrap_or_default()
    );
    html(StatusCode::OK, page("Conflict", Some(&v), &body))
}

#[derive(Deserialize)]
pub(crate) struct ResolveForm {
    #[serde(default)]
    keep: String,
    #[serde(default)]
    merged: String,
}

pub(crate) async fn resolve(
    State(s): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    Form(f): Form<ResolveForm>,
) -> Response {
    let v = Viewer::of(&s);
    let reference = format!("{rt}/{id}");
    let r2 = reference.clone();
    let merged = if f.keep.is_empty() {
        match serde_json::from_str::<Value>(&f.merged) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => return error_page(&v, 400, "the merged version is not a JSON object", ""),
        }
    } else {
        None
    };
    let keep = (!f.keep.is_empty()).then_some(f.keep);
    match with_records(&s, move |r| {
        r.resolve_conflict(&r2, keep.as_deref(), merged)
    })
    .await
    {
        Ok(_) => redirect("/inbox"),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    patient: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    break_glass: String,
}

pub(crate) async fn audit(State(s): State<AppState>, Query(q): Query<AuditQuery>) -> Response {
    let v = Viewer::of(&s);
    let filter = store::AuditFilter {
        patient: (!q.patient.is_empty()).then(|| {
            if q.patient.starts_with("Patient/") {
                q.patient.clone()
            } else {
                format!("Patient/{}", q.patient)
            }
        }),
        user: (!q.user.is_empty()).then(|| q.user.clone()),
        break_glass: q.break_glass == "on",
        newest: Some(500),
    };
    // The records layer lets administrators and auditors read the trail, and audits it.
    let entries = with_records(&s, move |r| r.audit_list(&filter)).await;
    let entries = match entries {
        Ok(e) => e,
        Err((status, msg)) => return error_page(&v, status, &msg, ""),
    };
    let mut trs = String::new();
    for e in entries.iter().rev().take(500) {
        trs.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fhir::time::instant(e.time),
            esc(&e.event.user),
            esc(&e.event.action),
            esc(&e.event.outcome),
            esc(e.event.patient.as_deref().unwrap_or("")),
            esc(e.event.resource.as_deref().unwrap_or("")),
            if e.event.break_glass { r#"<span class="pill bad">break-glass</span>"# } else { "" }
        ));
    }
    let body = format!(
        r#"<h1>Audit trail</h1><form class="card row" method="get" action="/audit">
<div><label for="patient">Patient</label><input id="patient" name="patient" value="{}"></div>
<div><label for="auser">User</label><input id="auser" name="user" value="{}"></div>
<div><label><input type="checkbox" name="break_glass" {}> Break-glass only</label></div>
<button type="submit">Filter</button></form>
<p class="muted">Newest first, at most 500. {} entries match. Export: <code>hearth audit export</code>, <code>hearth export --deidentify</code>.</p>
<div class="card"><table><thead><tr><th>When (UTC)</th><th>User</th><th>Action</th><th>Outcome</th><th>Patient</th><th>Record</th><th></th></tr></thead><tbody>{trs}</tbody></table></div>"#,
        esc(&q.patient),
        esc(&q.user),
        if q.break_glass == "on" { "checked" } else { "" },
        entries.len()
    );
    html(StatusCode::OK, page("Audit", Some(&v), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_understands_dates_phones_mrns_and_names() {
        assert_eq!(
            search_params("1950-03-02"),
            vec![("birthdate".into(), "1950-03-02".into())]
        );
        assert_eq!(
            search_params("555-0134"),
            vec![("phone".into(), "5550134".into())]
        );
        assert_eq!(
            search_params("MRN 00123"),
            vec![("identifier".into(), "MRN00123".into())]
        );
        assert_eq!(
            search_params("mrn0100001"),
            vec![("identifier".into(), "MRN0100001".into())]
        );
        assert_eq!(search_params("zoë"), vec![("name".into(), "zoë".into())]);
        assert!(search_params("  ").is_empty());
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
