//! The chart: summary header, demographics, contacts and proxies, medications with today's
//! reminders, vitals with trend charts and entry, progress notes (write, sign), consents signed
//! on screen, the communications log, tasks — and the break-glass form when the role may not
//! open it.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::{mrn, patient_name, phone};
use super::{Viewer, enc, error_page, esc, html, page, redirect, with_records};
use crate::AppState;

const LOINC: &str = "http://loinc.org";
const SIGNED_BY: &str = "https://hearth.invalid/fhir/StructureDefinition/signed-by";

/// The vitals the entry form records: (LOINC code, label, unit, UCUM code, form field).
const VITALS: &[(&str, &str, &str, &str, &str)] = &[
    ("8867-4", "Heart rate", "beats/minute", "/min", "hr"),
    ("8310-5", "Body temperature", "°C", "Cel", "temp"),
    ("59408-5", "Oxygen saturation", "%", "%", "spo2"),
    ("29463-7", "Body weight", "kg", "kg", "weight"),
];

fn text(v: &Value) -> String {
    v["text"]
        .as_str()
        .or_else(|| v["coding"][0]["display"].as_str())
        .or_else(|| v["coding"][0]["code"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn code_of(o: &Value) -> &str {
    o["code"]["coding"][0]["code"].as_str().unwrap_or("")
}

fn note_text(d: &Value) -> String {
    d["content"][0]["attachment"]["data"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// An inline SVG line chart of one vital over time (oldest left), labelled for screen readers.
fn trend(label: &str, points: &[(String, f64)]) -> String {
    if points.len() < 2 {
        return String::new();
    }
    let (w, h, pad) = (600.0, 120.0, 10.0);
    let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span = if max > min { max - min } else { 1.0 };
    let n = points.len() as f64 - 1.0;
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let x = pad + (w - 2.0 * pad) * i as f64 / n;
            let y = h - pad - (h - 2.0 * pad) * (v - min) / span;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let dots: String = coords
        .iter()
        .map(|c| {
            let (x, y) = c.split_once(',').unwrap_or(("0", "0"));
            format!(r##"<circle cx="{x}" cy="{y}" r="3" fill="#0b5cad"/>"##)
        })
        .collect();
    let last = points.last().map(|p| p.1).unwrap_or_default();
    format!(
        r##"<svg class="trend" viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-label="{} trend: {} readings from {min} to {max}, latest {last}" data-points="{}"><polyline fill="none" stroke="#0b5cad" stroke-width="2" points="{}"/>{dots}</svg>"##,
        esc(label),
        points.len(),
        points.len(),
        coords.join(" ")
    )
}

pub(crate) async fn chart(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let v = Viewer::of(&s);
    let pid = id.clone();
    let now = fhir::time::now();
    let result = with_records(&s, move |r| {
        let b = r.everything(&pid, "/fhir")?;
        let reminders = r.reminders(&pid, now, 3, 0).unwrap_or_default();
        Ok((b, reminders))
    })
    .await;
    let (bundle, reminders) = match result {
        Ok(x) => x,
        Err((403, msg)) => {
            let form = format!(
                r#"<div class="card"><h2>Break the glass</h2><p>In an emergency you may open this chart read-only for a limited time. Your reason is recorded and reviewed.</p>
<form method="post" action="/patients/{}/break-glass"><label for="reason">Reason (at least 10 characters)</label><textarea id="reason" name="reason" required minlength="10"></textarea>
<p><button type="submit">Open chart in an emergency</button></p></form></div>"#,
                enc(&id)
            );
            return error_page(&v, 403, &msg, &form);
        }
        Err((status, msg)) => return error_page(&v, status, &msg, ""),
    };
    let all: Vec<Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect();
    let of = |rt: &'static str| all.iter().filter(move |r| r["resourceType"] == rt);
    let Some(p) = of("Patient").next().cloned() else {
        return error_page(&v, 404, "no such patient", "");
    };
    // Types the role may not read, named by the API in an outcome entry: shown as hidden,
    // never as absent (an allergy list that is hidden is not an empty one).
    let hidden: Vec<String> = of("OperationOutcome")
        .flat_map(|o| o["issue"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["code"] == "suppressed")
        .filter_map(|i| i["expression"][0].as_str().map(str::to_owned))
        .collect();
    let is_hidden = |rt: &str| hidden.iter().any(|h| h == rt);
    let hidden_note = |rt: &str| {
        format!(
            r##"<span class="pill warn hidden-for-role" data-hidden="{rt}">Hidden for your role — <a href="#break-glass">break the glass to view</a></span>"##
        )
    };
    let mut body = String::new();
    // Summary header.
    let allergies: Vec<String> = of("AllergyIntolerance")
        .map(|a| esc(&text(&a["code"])))
        .collect();
    let meds: Vec<&Value> = of("MedicationRequest")
        .filter(|m| m["status"] == "active")
        .collect();
    let proxies: Vec<String> = of("RelatedPerson")
        .filter(|rp| {
            rp["relationship"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["coding"][0]["code"] == "HPOWATT")
        })
        .map(|rp| esc(&patient_name(rp)))
        .collect();
    // Alerts: what needs attention before anything else.
    let now_s = fhir::time::instant(fhir::time::now());
    let mut alerts = Vec::new();
    if of("AllergyIntolerance").any(|a| a["criticality"] == "high") {
        alerts.push(r#"<span class="pill bad">High-risk allergy</span>"#.to_owned());
    }
    let overdue = of("Task")
        .filter(|t| {
            matches!(
                t["status"].as_str(),
                Some("requested" | "accepted" | "in-progress")
            )
        })
        .filter(|t| {
            t["restriction"]["period"]["end"]
                .as_str()
                .is_some_and(|d| d < now_s.as_str())
        })
        .count();
    if overdue > 0 {
        alerts.push(format!(
            r#"<span class="pill warn">{overdue} overdue task(s)</span>"#
        ));
    }
    if of("DocumentReference").any(|d| d["docStatus"] == "preliminary") {
        alerts.push(r#"<span class="pill warn">Unsigned note</span>"#.to_owned());
    }
    if !proxies.is_empty() {
        alerts.push(r#"<span class="pill">Has a healthcare proxy</span>"#.to_owned());
    }
    let alerts_html = if alerts.is_empty() {
        String::new()
    } else {
        format!(
            r#"<p id="alerts" aria-label="Alerts">{}</p>"#,
            alerts.join(" ")
        )
    };
    body.push_str(&format!(
        r#"<h1 id="patient-name">{}</h1>{alerts_html}
<section class="card" aria-label="Summary"><div class="row">
<div><strong>Born</strong><br>{}</div><div><strong>MRN</strong><br>{}</div><div><strong>Phone</strong><br>{}</div>
<div><strong>Allergies</strong><br>{}</div><div><strong>Active medications</strong><br>{}</div><div><strong>Healthcare proxy</strong><br>{}</div>
</div>
<details><summary>Edit demographics</summary><form method="post" action="/patients/{pid}/demographics" class="row" aria-label="Demographics">
<input type="hidden" name="version" value="{version}">
<div><label for="d-given">Given names</label><input id="d-given" name="given" value="{given}"></div>
<div><label for="d-family">Family name</label><input id="d-family" name="family" value="{family}"></div>
<div><label for="d-birth">Born (YYYY-MM-DD)</label><input id="d-birth" name="birth_date" value="{birth}"></div>
<div><label for="d-phone">Phone</label><input id="d-phone" name="phone" inputmode="tel" value="{phone_v}"></div>
<button type="submit">Save demographics</button></form></details>
<p><a class="button secondary" href="/patients/{pid}/export" download>Export chart (FHIR Bundle)</a>
<a class="button secondary" href="/patients/{pid}/export?deidentified=1" download>Export de-identified</a></p></section>"#,
        esc(&patient_name(&p)),
        esc(p["birthDate"].as_str().unwrap_or("")),
        esc(&mrn(&p)),
        esc(&phone(&p)),
        if is_hidden("AllergyIntolerance") {
            hidden_note("AllergyIntolerance")
        } else if allergies.is_empty() {
            "None recorded".into()
        } else {
            format!(r#"<span class="pill bad">{}</span>"#, allergies.join(", "))
        },
        if is_hidden("MedicationRequest") {
            hidden_note("MedicationRequest")
        } else {
            meds.len().to_string()
        },
        if proxies.is_empty() {
            "—".into()
        } else {
            proxies.join(", ")
        },
        pid = enc(&id),
        version = esc(p["meta"]["versionId"].as_str().unwrap_or("")),
        given = esc(&p["name"][0]["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")),
        family = esc(p["name"][0]["family"].as_str().unwrap_or("")),
        birth = esc(p["birthDate"].as_str().unwrap_or("")),
        phone_v = esc(&phone(&p)),
    ));
    // Vitals: entry form and a trend per vital.
    let mut obs: Vec<&Value> = of("Observation").collect();
    obs.sort_by_key(|o| o["effectiveDateTime"].as_str().unwrap_or("").to_owned());
    let mut trends = String::new();
    for (code, label, unit, _, _) in VITALS {
        let pts: Vec<(String, f64)> = obs
            .iter()
            .filter(|o| code_of(o) == *code)
            .filter_map(|o| {
                Some((
                    o["effectiveDateTime"].as_str()?.to_owned(),
                    o["valueQuantity"]["value"].as_f64()?,
                ))
            })
            .collect();
        if let Some(last) = pts.last() {
            trends.push_str(&format!(
                r#"<div class="vital" data-code="{code}"><h3>{label}: <span class="latest">{}</span> {}</h3>{}</div>"#,
                last.1,
                esc(unit),
                trend(label, &pts)
            ));
        }
    }
    let bp: Vec<(String, f64)> = obs
        .iter()
        .filter(|o| code_of(o) == "85354-9")
        .filter_map(|o| {
            let sys = o["component"]
                .as_array()?
                .iter()
                .find(|c| c["code"]["coding"][0]["code"] == "8480-6")?;
            Some((
                o["effectiveDateTime"].as_str()?.to_owned(),
                sys["valueQuantity"]["value"].as_f64()?,
            ))
        })
        .collect();
    if let Some(last) = bp.last() {
        trends.push_str(&format!(
            r#"<div class="vital" data-code="85354-9"><h3>Systolic blood pressure: <span class="latest">{}</span> mmHg</h3>{}</div>"#,
            last.1,
            trend("Systolic blood pressure", &bp)
        ));
    }
    let fields: String = VITALS
        .iter()
        .map(|(_, label, unit, _, name)| {
            format!(
                r#"<div><label for="v-{name}">{label} ({})</label><input id="v-{name}" name="{name}" inputmode="decimal"></div>"#,
                esc(unit)
            )
        })
        .collect();
    if is_hidden("Observation") {
        trends = format!("<p>{}</p>", hidden_note("Observation"));
    }
    body.push_str(&format!(
        r#"<section class="card" aria-labelledby="vitals-h"><h2 id="vitals-h">Vitals</h2>{trends}
<form method="post" action="/patients/{pid}/vitals" class="row" aria-label="Record vitals">
<div><label for="v-sys">Systolic (mmHg)</label><input id="v-sys" name="sys" inputmode="numeric"></div>
<div><label for="v-dia">Diastolic (mmHg)</label><input id="v-dia" name="dia" inputmode="numeric"></div>{fields}
<button type="submit">Record vitals</button></form></section>"#,
        pid = enc(&id)
    ));
    // Medications with today's reminders.
    let mut med_rows = String::new();
    for m in &meds {
        let mid = m["id"].as_str().unwrap_or("");
        let due: Vec<i64> = reminders
            .iter()
            .filter(|(r, _)| r == mid || r.ends_with(&format!("/{mid}")))
            .map(|(_, t)| *t)
            .collect();
        let next = due.first().map(|t| {
            format!(
                r#"<form method="post" action="/patients/{pid}/medications/{m}/administer" class="row" aria-label="Dose of {name}">
<input type="hidden" name="due" value="{due}"><button type="submit" name="outcome" value="given">Given</button>
<button type="submit" name="outcome" value="skipped" class="secondary">Skipped</button></form>"#,
                pid = enc(&id),
                m = enc(mid),
                name = esc(&text(&m["medicationCodeableConcept"])),
                due = esc(&fhir::time::instant(*t)),
            )
        });
        med_rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&m["medicationCodeableConcept"])),
            esc(m["dosageInstruction"][0]["text"].as_str().unwrap_or("")),
            esc(&due
                .iter()
                .map(|t| fhir::time::instant(*t))
                .collect::<Vec<_>>()
                .join(", ")),
            next.unwrap_or_default()
        ));
    }
    let mut given: Vec<&Value> = of("MedicationAdministration").collect();
    given.sort_by_key(|a| {
        std::cmp::Reverse(a["effectiveDateTime"].as_str().unwrap_or("").to_owned())
    });
    let given_rows: String = given
        .iter()
        .take(10)
        .map(|a| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(a["effectiveDateTime"].as_str().unwrap_or("")),
                esc(&text(&a["medicationCodeableConcept"])),
                if a["status"] == "completed" {
                    r#"<span class="pill ok">given</span>"#
                } else {
                    r#"<span class="pill warn">skipped</span>"#
                }
            )
        })
        .collect();
    if is_hidden("MedicationRequest") {
        med_rows = format!(
            r#"<tr><td colspan="4">{}</td></tr>"#,
            hidden_note("MedicationRequest")
        );
    }
    body.push_str(&format!(
        r#"<div class="grid"><section class="card"><h2>Medications</h2><table><thead><tr><th>Medication</th><th>Dosage</th><th>Next doses (UTC)</th><th>Next dose</th></tr></thead><tbody>{med_rows}</tbody></table>
<h3>Recorded doses</h3><table id="doses"><tbody>{given_rows}</tbody></table></section>"#
    ));
    // Contacts and proxies.
    let contacts: String = of("RelatedPerson")
        .map(|rp| {
            format!(
                "<li>{} — {} {}</li>",
                esc(&patient_name(rp)),
                esc(&text(&rp["relationship"][0])),
                esc(&phone(rp))
            )
        })
        .collect();
    body.push_str(&format!(
        r#"<section class="card"><h2>Contacts and proxies</h2><ul>{contacts}</ul></section></div>"#
    ));
    // Notes.
    let mut notes = String::new();
    let mut docs: Vec<&Value> = of("DocumentReference").collect();
    docs.sort_by_key(|d| std::cmp::Reverse(d["date"].as_str().unwrap_or("").to_owned()));
    for d in docs {
        let nid = d["id"].as_str().unwrap_or("");
        let signed = d["docStatus"] == "final";
        let signer = d["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == SIGNED_BY)
            .and_then(|e| e["valueString"].as_str())
            .unwrap_or("");
        let status = if signed {
            format!(
                r#"<span class="pill ok">signed{}</span>"#,
                if signer.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", esc(signer))
                }
            )
        } else {
            format!(
                r#"<span class="pill warn">draft</span> <form method="post" action="/patients/{pid}/notes/{n}/sign" style="display:inline"><button type="submit" class="secondary">Sign</button></form>
<details><summary>Edit draft</summary><form method="post" action="/patients/{pid}/notes/{n}"><input type="hidden" name="version" value="{ver}">
<label for="edit-{n}">Note</label><textarea id="edit-{n}" name="text" required>{text}</textarea><button type="submit">Save changes</button></form></details>"#,
                pid = enc(&id),
                n = enc(nid),
                ver = esc(d["meta"]["versionId"].as_str().unwrap_or("")),
                text = esc(&note_text(d))
            )
        };
        notes.push_str(&format!(
            r#"<article class="note" data-id="{}"><p><strong>{}</strong> {status}</p><pre>{}</pre></article>"#,
            esc(nid),
            esc(d["date"].as_str().unwrap_or("")),
            esc(&note_text(d))
        ));
    }
    if is_hidden("DocumentReference") {
        notes = format!("<p>{}</p>", hidden_note("DocumentReference"));
    }
    body.push_str(&format!(
        r#"<section class="card" aria-labelledby="notes-h"><h2 id="notes-h">Progress notes</h2>
<form method="post" action="/patients/{}/notes"><label for="note">New note</label><textarea id="note" name="text" required></textarea>
<div class="row"><label><input type="checkbox" name="sign" value="1"> Sign now</label><button type="submit">Save note</button></div></form>{notes}</section>"#,
        enc(&id)
    ));
    // Consents with the signature pad.
    let consents: String = of("Consent")
        .map(|c| {
            format!(
                "<li>{} — {} ({})</li>",
                esc(c["dateTime"].as_str().unwrap_or("")),
                esc(&text(&c["category"][0])),
                esc(c["status"].as_str().unwrap_or(""))
            )
        })
        .collect();
    body.push_str(&format!(
        r#"<section class="card" aria-labelledby="consent-h"><h2 id="consent-h">Consents</h2><ul id="consents">{consents}</ul>
<form method="post" action="/patients/{}/consents"><label for="ctext">Consent to</label>
<select id="ctext" name="scope"><option value="treatment">Treatment</option><option value="patient-privacy">Sharing of records</option></select>
<label for="sigpad">Patient signature</label><canvas id="sigpad" class="sigpad" aria-label="Signature pad: sign with a finger, pen or mouse"></canvas>
<input type="hidden" id="signature" name="signature">
<div class="row"><button type="button" id="sigclear" class="secondary">Clear</button><button type="submit">Save signed consent</button></div></form></section>"#,
        enc(&id)
    ));
    // Communications and tasks.
    let mut comms: Vec<&Value> = of("Communication").collect();
    comms.sort_by_key(|c| std::cmp::Reverse(c["sent"].as_str().unwrap_or("").to_owned()));
    let comm_rows: String = comms
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(c["sent"].as_str().unwrap_or("")),
                esc(&text(&c["medium"][0])),
                esc(c["payload"][0]["contentString"].as_str().unwrap_or(""))
            )
        })
        .collect();
    let tasks: String = of("Task")
        .map(|t| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(t["description"].as_str().unwrap_or("")),
                esc(t["status"].as_str().unwrap_or("")),
                esc(t["restriction"]["period"]["end"].as_str().unwrap_or(""))
            )
        })
        .collect();
    body.push_str(&format!(
        r#"<div class="grid"><section class="card"><h2>Communications</h2>
<form method="post" action="/patients/{}/communications" class="row"><div><label for="medium">How</label><select id="medium" name="medium"><option value="PHONE">Call</option><option value="WRITTEN">Message</option><option value="FACE">Visit</option></select></div>
<div><label for="ctextarea">What</label><input id="ctextarea" name="text" required></div><button type="submit">Log</button></form>
<table><thead><tr><th>When</th><th>How</th><th>What</th></tr></thead><tbody>{comm_rows}</tbody></table></section>
<section class="card"><h2>Tasks and maintenance</h2><table><thead><tr><th>Task</th><th>Status</th><th>Due</th></tr></thead><tbody>{tasks}</tbody></table></section></div>"#,
        enc(&id)
    ));
    if !hidden.is_empty() {
        body.push_str(&format!(
            r#"<section class="card" id="break-glass" aria-labelledby="bg-h"><h2 id="bg-h">Parts of this chart are hidden for your role</h2>
<p>Not shown: {}. In an emergency you may open the whole chart read-only for a limited time; your reason is recorded and reviewed.</p>
<form method="post" action="/patients/{}/break-glass"><label for="reason">Reason (at least 10 characters)</label><textarea id="reason" name="reason" required minlength="10"></textarea>
<p><button type="submit">Open chart in an emergency</button></p></form></section>"#,
            esc(&hidden.join(", ")),
            enc(&id)
        ));
    }
    html(StatusCode::OK, page(&patient_name(&p), Some(&v), &body))
}

#[derive(Deserialize)]
pub(crate) struct DoseForm {
    outcome: String,
    due: String,
}

pub(crate) async fn administer(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
    Form(f): Form<DoseForm>,
) -> Response {
    let v = Viewer::of(&s);
    let given = match f.outcome.as_str() {
        "given" => true,
        "skipped" => false,
        _ => return error_page(&v, 400, "a dose is given or skipped", ""),
    };
    if fhir::time::parse(&f.due).is_none() {
        return error_page(&v, 400, "the scheduled time is not a date-time", "");
    }
    let pid = id.clone();
    let r = with_records(&s, move |r| {
        let m = r.read("MedicationRequest", &mid)?.resource;
        let mut a = json!({
            "resourceType": "MedicationAdministration",
            "status": if given { "completed" } else { "not-done" },
            "medicationCodeableConcept": m["medicationCodeableConcept"].clone(),
            "subject": {"reference": format!("Patient/{pid}")},
            "effectiveDateTime": now_instant(),
            "request": {"reference": format!("MedicationRequest/{mid}")},
            "note": [{"text": format!("dose scheduled for {}", f.due)}]
        });
        if !given {
            a["statusReason"] = json!([{"text": "skipped"}]);
        }
        r.create(a)
    })
    .await;
    match r {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize)]
pub(crate) struct DemographicsForm {
    version: String,
    given: String,
    family: String,
    birth_date: String,
    phone: String,
}

pub(crate) async fn edit_demographics(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<DemographicsForm>,
) -> Response {
    let v = Viewer::of(&s);
    let pid = id.clone();
    let r = with_records(&s, move |r| {
        let mut p = r.read("Patient", &pid)?.resource;
        let given: Vec<&str> = f.given.split_whitespace().collect();
        p["name"][0]["given"] = json!(given);
        p["name"][0]["family"] = json!(f.family.trim());
        if let Some(n) = p["name"][0].as_object_mut() {
            n.shift_remove("text");
        }
        if f.birth_date.trim().is_empty() {
            if let Some(o) = p.as_object_mut() {
                o.shift_remove("birthDate");
            }
        } else {
            p["birthDate"] = json!(f.birth_date.trim());
        }
        let phone = f.phone.trim();
        let mut telecom: Vec<Value> = p["telecom"].as_array().cloned().unwrap_or_default();
        match telecom.iter_mut().find(|t| t["system"] == "phone") {
            Some(t) if phone.is_empty() => t["value"] = Value::Null,
            Some(t) => t["value"] = json!(phone),
            None if !phone.is_empty() => telecom.push(json!({"system": "phone", "value": phone})),
            None => {}
        }
        telecom.retain(|t| !t["value"].is_null());
        p["telecom"] = json!(telecom);
        // If-Match: someone else's change since the form was shown is a 412, not overwritten.
        r.update("Patient", &pid, p, Some(&f.version))
    })
    .await;
    match r {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ExportQuery {
    #[serde(default)]
    deidentified: String,
}

pub(crate) async fn export(
    State(s): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ExportQuery>,
) -> Response {
    let v = Viewer::of(&s);
    let deid = q.deidentified == "1";
    let pid = id.clone();
    let r = with_records(&s, move |r| {
        // The records layer decides what may leave the device, and audits it.
        let entries = r.export_chart(
            &pid,
            if deid {
                "web app: de-identified chart"
            } else {
                "web app: chart as a Bundle"
            },
        )?;
        let mut b = json!({"resourceType": "Bundle", "type": "collection",
            "entry": entries.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
        if deid {
            // A fresh pseudonym key per download: exports cannot be linked to each other.
            let mut red = fhir::deid::Redactions::default();
            for r in &entries {
                red.learn(r);
            }
            let key = crate::new_token().map_err(|_| {
                records::FhirError::one(500, fhir::IssueCode::Exception, "key", "no randomness")
            })?;
            let (year, _, _) = fhir::time::civil_from_days(fhir::time::now().div_euclid(86_400));
            let d = fhir::deid::Deidentifier::new(key.as_bytes(), red, year);
            let out: Vec<Value> = entries
                .iter()
                .filter_map(|r| d.apply(r))
                .map(|r| json!({"resource": r}))
                .collect();
            b = json!({"resourceType": "Bundle", "type": "collection", "entry": out});
        }
        Ok(b)
    })
    .await;
    match r {
        Ok(b) => {
            let mut resp = axum::response::IntoResponse::into_response(
                serde_json::to_vec_pretty(&b).unwrap_or_default(),
            );
            let h = resp.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/fhir+json"),
            );
            if let Ok(d) = axum::http::HeaderValue::from_str(&format!(
                "attachment; filename=\"patient-{}.json\"",
                id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
            )) {
                h.insert(axum::http::header::CONTENT_DISPOSITION, d);
            }
            h.insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

fn now_instant() -> String {
    fhir::time::instant(fhir::time::now())
}

fn vital(pid: &str, code: &str, label: &str, value: Value) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": label}], "text": label},
        "subject": {"reference": format!("Patient/{pid}")},
        "effectiveDateTime": now_instant(),
    });
    if let Value::Object(m) = value {
        for (k, v) in m {
            o[k] = v;
        }
    }
    o
}

fn qty(v: f64, unit: &str, code: &str) -> Value {
    json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": code})
}

pub(crate) async fn add_vitals(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<std::collections::HashMap<String, String>>,
) -> Response {
    let v = Viewer::of(&s);
    let num = |k: &str| -> Result<Option<f64>, String> {
        match f.get(k).map(|x| x.trim()).filter(|x| !x.is_empty()) {
            None => Ok(None),
            Some(x) => x
                .replace(',', ".")
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("{k}: {x:?} is not a number")),
        }
    };
    let mut resources = Vec::new();
    let parsed = (|| -> Result<(), String> {
        match (num("sys")?, num("dia")?) {
            (Some(sys), Some(dia)) => resources.push(vital(
                &id,
                "85354-9",
                "Blood pressure panel",
                json!({"component": [
                    {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": qty(sys, "mmHg", "mm[Hg]")},
                    {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": qty(dia, "mmHg", "mm[Hg]")}
                ]}),
            )),
            (None, None) => {}
            _ => return Err("blood pressure needs both systolic and diastolic".into()),
        }
        for (code, label, unit, ucum, name) in VITALS {
            if let Some(x) = num(name)? {
                resources.push(vital(
                    &id,
                    code,
                    label,
                    json!({"valueQuantity": qty(x, unit, ucum)}),
                ));
            }
        }
        if resources.is_empty() {
            return Err("enter at least one vital sign".into());
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        return error_page(&v, 400, &e, "");
    }
    match with_records(&s, move |r| {
        for res in resources {
            r.create(res)?;
        }
        Ok(())
    })
    .await
    {
        Ok(()) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize)]
pub(crate) struct NoteForm {
    text: String,
    #[serde(default)]
    sign: String,
}

fn signature_ext(user: &str) -> Value {
    json!([{"url": SIGNED_BY, "valueString": user}])
}

pub(crate) async fn add_note(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    let v = Viewer::of(&s);
    if f.text.trim().is_empty() {
        return error_page(&v, 400, "the note is empty", "");
    }
    let sign = f.sign == "1";
    let mut note = json!({
        "resourceType": "DocumentReference", "status": "current",
        "docStatus": if sign { "final" } else { "preliminary" },
        "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": format!("Patient/{id}")},
        "date": now_instant(),
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": "Progress note",
            "data": base64::engine::general_purpose::STANDARD.encode(f.text.as_bytes())}}]
    });
    if sign {
        note["extension"] = signature_ext(&v.user);
    }
    match with_records(&s, move |r| r.create(note)).await {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize)]
pub(crate) struct EditNoteForm {
    version: String,
    text: String,
}

pub(crate) async fn edit_note(
    State(s): State<AppState>,
    Path((id, nid)): Path<(String, String)>,
    Form(f): Form<EditNoteForm>,
) -> Response {
    let v = Viewer::of(&s);
    let r = with_records(&s, move |r| {
        let st = r.read("DocumentReference", &nid)?;
        if st.resource["docStatus"] == "final" {
            return Err(records::FhirError::one(
                409,
                fhir::IssueCode::Conflict,
                "DocumentReference.docStatus",
                "a signed note cannot be edited; write an addendum",
            ));
        }
        let mut note = st.resource;
        note["content"][0]["attachment"]["data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(f.text.as_bytes()));
        note["date"] = json!(now_instant());
        r.update("DocumentReference", &nid, note, Some(&f.version))
    })
    .await;
    match r {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

pub(crate) async fn sign_note(
    State(s): State<AppState>,
    Path((id, nid)): Path<(String, String)>,
) -> Response {
    let v = Viewer::of(&s);
    let user = v.user.clone();
    let r = with_records(&s, move |r| {
        let st = r.read("DocumentReference", &nid)?;
        let mut note = st.resource;
        note["docStatus"] = json!("final");
        note["extension"] = signature_ext(&user);
        r.update("DocumentReference", &nid, note, Some(&st.version))
    })
    .await;
    match r {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize)]
pub(crate) struct ConsentForm {
    scope: String,
    signature: String,
}

pub(crate) async fn add_consent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<ConsentForm>,
) -> Response {
    let v = Viewer::of(&s);
    let Some(png) = f.signature.strip_prefix("data:image/png;base64,") else {
        return error_page(
            &v,
            400,
            "the consent needs the patient's signature on the pad",
            "",
        );
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png)
        .unwrap_or_default();
    if bytes.len() < 100 || !bytes.starts_with(b"\x89PNG") || bytes.len() > 2 << 20 {
        return error_page(&v, 400, "the signature image is not a PNG drawing", "");
    }
    let scope = if f.scope == "patient-privacy" {
        "patient-privacy"
    } else {
        "treatment"
    };
    let when = now_instant();
    let cid = format!(
        "{id}-consent-{}",
        crate::new_token()
            .unwrap_or_default()
            .get(..8)
            .unwrap_or("0")
    );
    let consent = json!({
        "resourceType": "Consent", "id": cid, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{id}")},
        "dateTime": when,
        "performer": [{"reference": format!("Patient/{id}")}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "sourceAttachment": {"contentType": "image/png", "title": "Patient signature", "data": png, "creation": when}
    });
    let provenance = json!({
        "resourceType": "Provenance", "id": format!("{cid}-signature"),
        "target": [{"reference": format!("Consent/{cid}")}],
        "recorded": when,
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                   "who": {"reference": format!("Patient/{id}")}}],
        "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.7", "display": "Consent Signature"}],
                       "when": when, "who": {"reference": format!("Patient/{id}")}, "sigFormat": "image/png", "data": png}]
    });
    match with_records(&s, move |r| {
        r.create(consent)?;
        r.create(provenance)
    })
    .await
    {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize)]
pub(crate) struct CommForm {
    medium: String,
    text: String,
}

pub(crate) async fn add_communication(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<CommForm>,
) -> Response {
    let v = Viewer::of(&s);
    let (code, display) = match f.medium.as_str() {
        "WRITTEN" => ("WRITTEN", "written"),
        "FACE" => ("FACE", "face-to-face"),
        _ => ("PHONE", "telephone"),
    };
    let c = json!({
        "resourceType": "Communication", "status": "completed",
        "medium": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": code, "display": display}]}],
        "subject": {"reference": format!("Patient/{id}")},
        "sent": now_instant(),
        "payload": [{"contentString": f.text}]
    });
    match with_records(&s, move |r| r.create(c)).await {
        Ok(_) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}

#[derive(Deserialize)]
pub(crate) struct GlassForm {
    reason: String,
}

pub(crate) async fn break_glass(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<GlassForm>,
) -> Response {
    let v = Viewer::of(&s);
    let guard = s.guard.clone();
    let pid = id.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<(), (u16, String)> {
        let mut g = guard.lock().unwrap_or_else(|p| p.into_inner());
        let node = g
            .node()
            .ok_or((423u16, "the session is locked".to_owned()))?;
        let session = node.session().map_err(|e| (500u16, e.to_string()))?;
        let mut recs = records::Records::new(node.replica().clone(), "records", &session)
            .map_err(|e| (e.status, super::reason(&e)))?;
        recs.break_glass(&pid, &f.reason)
            .map_err(|e| (e.status, super::reason(&e)))?;
        g.reload().map_err(|e| (500u16, e))
    })
    .await
    .unwrap_or_else(|_| Err((500, "the request failed".into())));
    match r {
        Ok(()) => redirect(&format!("/patients/{}", enc(&id))),
        Err((status, msg)) => error_page(&v, status, &msg, ""),
    }
}
