//! De-identification for analytics and AI: HIPAA Safe Harbor (45 CFR §164.514(b)(2)).
//!
//! What it does to every resource:
//! - **Ids** become stable pseudonyms: HMAC-SHA256 of `Type/id` under a per-export key, so links
//!   between resources survive within one export and cannot be reversed without the key.
//!   Every literal reference is rewritten the same way.
//! - **Removed**: names (of patients, related persons and practitioners), all `identifier`s
//!   (MRN, SSN, plan, account, licence, device and other numbers), `telecom` (phone, fax, email,
//!   URLs), `photo`, narrative `text`, `meta`, Reference `display` and `identifier`, attachment
//!   `url`, attachment data that is not text (images such as signatures: biometric), and
//!   `contained` resources.
//! - **Generalized**: every date and time to its year (instants to January 1st of the year);
//!   birth dates of patients over 89 are removed and marked "90 or older"; addresses keep state
//!   and country, and the ZIP code is cut to its first 3 digits, or `000` for the 3-digit areas
//!   of fewer than 20,000 people.
//! - **Redacted in free text** (notes, annotations, descriptions, message payloads, text
//!   attachments): the names, identifiers, phone numbers and email addresses of the patients
//!   and related persons in the export, plus anything shaped like a phone number, SSN, email
//!   address or URL, and dates (cut to the year).
//!
//! What it cannot guarantee (see docs/deidentification.md): free text can name people or places
//! it has no list for (nicknames, neighbours, street names), rare conditions or combinations can
//! still single a person out, and Safe Harbor also requires that the clinic has no actual
//! knowledge that the rest could identify someone. The output is for analysis under a data-use
//! agreement, not for publication.

use std::collections::BTreeSet;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::primitives::Prim;
use crate::schema::{self, El, RESOURCE_BASE, Ty};

/// Marks a patient whose age is aggregated into "90 or older".
pub const AGE_90_PLUS_URL: &str =
    "https://hearth.invalid/fhir/StructureDefinition/deid-age-90-or-older";

/// The 3-digit ZIP areas with fewer than 20,000 people (2000 Census, per HHS guidance), which
/// Safe Harbor turns into `000`.
const RESTRICTED_ZIP3: &[&str] = &[
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// Elements removed wherever they appear.
const REMOVE_ALWAYS: &[&str] = &[
    "identifier",
    "telecom",
    "photo",
    "text",
    "meta",
    "contained",
    "masterIdentifier",
    "groupIdentifier",
];

/// What to redact from free text: gathered from the export's patients and related persons.
#[derive(Clone, Debug, Default)]
pub struct Redactions {
    words: BTreeSet<String>,
    numbers: BTreeSet<String>,
}

impl Redactions {
    /// Learns the identifiers of a Patient or RelatedPerson (names, identifier values, phone
    /// numbers, emails). Other resources add nothing.
    pub fn learn(&mut self, resource: &Value) {
        let rt = resource.get("resourceType").and_then(Value::as_str);
        if !matches!(rt, Some("Patient" | "RelatedPerson")) {
            return;
        }
        for n in resource
            .get("name")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut parts: Vec<&str> = Vec::new();
            parts.extend(n.get("family").and_then(Value::as_str));
            parts.extend(n.get("text").and_then(Value::as_str));
            for k in ["given", "prefix", "suffix"] {
                parts.extend(
                    n.get(k)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                );
            }
            for p in parts {
                for w in words(p) {
                    if w.chars().count() >= 2 {
                        self.words.insert(w.to_lowercase());
                    }
                }
            }
        }
        for id in resource
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(v) = id.get("value").and_then(Value::as_str) {
                self.words.insert(v.to_lowercase());
                let d = digits(v);
                if d.len() >= 4 {
                    self.numbers.insert(d);
                }
            }
        }
        for t in resource
            .get("telecom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(v) = t.get("value").and_then(Value::as_str) {
                self.words.insert(v.to_lowercase());
                let d = digits(v);
                if d.len() >= 4 {
                    self.numbers.insert(d);
                }
            }
        }
    }

    /// Redacts free text.
    pub fn redact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            // A run of digits and separators: a phone, SSN, MRN digits, a date.
            if c.is_ascii_digit()
                || (c == '(' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            {
                let start = i;
                let mut j = i;
                while j < chars.len()
                    && (chars[j].is_ascii_digit()
                        || matches!(chars[j], '-' | '.' | ' ' | '(' | ')' | '/'))
                {
                    j += 1;
                }
                // Do not swallow a trailing separator.
                while j > start && !chars[j - 1].is_ascii_digit() {
                    j -= 1;
                }
                let run: String = chars[start..j].iter().collect();
                out.push_str(&self.redact_number(&run));
                i = j.max(start + 1);
                continue;
            }
            if c.is_alphanumeric() {
                let start = i;
                let mut j = i;
                while j < chars.len()
                    && (chars[j].is_alphanumeric()
                        || matches!(chars[j], '@' | '.' | '_' | '-' | '\'' | ':' | '/'))
                {
                    j += 1;
                }
                while j > start && matches!(chars[j - 1], '.' | '-' | '\'' | ':' | '/') {
                    j -= 1;
                }
                let token: String = chars[start..j].iter().collect();
                out.push_str(&self.redact_token(&token));
                i = j.max(start + 1);
                continue;
            }
            out.push(c);
            i += 1;
        }
        out
    }

    fn redact_number(&self, run: &str) -> String {
        let d = digits(run);
        // A date: keep the year.
        if crate::primitives::is_date(run) && run.len() == 10 {
            return run[..4].to_owned();
        }
        if d.len() >= 7
            || self.numbers.contains(&d)
            || run.matches('-').count() == 2 && d.len() == 9
        {
            return "[REDACTED]".into();
        }
        run.to_owned()
    }

    fn redact_token(&self, token: &str) -> String {
        let lower = token.to_lowercase();
        if token.contains('@')
            || lower.starts_with("http:")
            || lower.starts_with("https:")
            || lower.starts_with("www.")
        {
            return "[REDACTED]".into();
        }
        if self.words.contains(&lower) {
            return "[REDACTED]".into();
        }
        // Words inside a hyphenated or possessive token ("Okafor's").
        let parts: Vec<&str> = token.split(['-', '\'']).collect();
        if parts.len() > 1 && parts.iter().any(|p| self.words.contains(&p.to_lowercase())) {
            return "[REDACTED]".into();
        }
        token.to_owned()
    }
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// De-identifies resources under one export key.
pub struct Deidentifier {
    key: Vec<u8>,
    redactions: Redactions,
    /// "Today" as a year, for the over-89 rule.
    this_year: i64,
}

impl Deidentifier {
    /// A de-identifier with a pseudonym key (keep it secret; a new key per export unlinks
    /// exports from each other), the free-text redactions, and the current year.
    pub fn new(key: &[u8], redactions: Redactions, this_year: i64) -> Deidentifier {
        Deidentifier {
            key: key.to_vec(),
            redactions,
            this_year,
        }
    }

    /// The pseudonym of `Type/id`.
    pub fn pseudonym(&self, rt: &str, id: &str) -> String {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(rt.as_bytes());
        mac.update(b"/");
        mac.update(id.as_bytes());
        let out = mac.finalize().into_bytes();
        out[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// De-identifies one resource. `None` for resource types that are identifying as a whole
    /// and have nothing to analyse once stripped (none today; all supported types are kept).
    pub fn apply(&self, resource: &Value) -> Option<Value> {
        let rt = resource.get("resourceType")?.as_str()?.to_owned();
        let elements = schema::resource(&rt)?;
        let mut out = resource.clone();
        let obj = out.as_object_mut()?;
        if let Some(id) = obj.get("id").and_then(Value::as_str).map(str::to_owned) {
            obj.insert("id".into(), Value::String(self.pseudonym(&rt, &id)));
        }
        // Age over 89: no birth date at all, and a marker instead.
        if rt == "Patient"
            && let Some(year) = obj
                .get("birthDate")
                .and_then(Value::as_str)
                .and_then(|b| b.get(..4))
                .and_then(|y| y.parse::<i64>().ok())
            && self.this_year - year > 89
        {
            obj.shift_remove("birthDate");
            obj.shift_remove("_birthDate");
            let ext = obj.entry("extension").or_insert_with(|| json!([]));
            if let Some(a) = ext.as_array_mut() {
                a.push(json!({"url": AGE_90_PLUS_URL, "valueBoolean": true}));
            }
        }
        if matches!(rt.as_str(), "Patient" | "RelatedPerson" | "Practitioner") {
            obj.shift_remove("name");
            obj.shift_remove("_name");
        }
        self.walk_object(obj, &[RESOURCE_BASE, elements]);
        Some(out)
    }

    fn walk_object(&self, obj: &mut Map<String, Value>, sets: &[&'static [El]]) {
        for k in REMOVE_ALWAYS {
            obj.shift_remove(*k);
        }
        obj.retain(|k, _| !k.starts_with('_') || !REMOVE_ALWAYS.contains(&&k[1..]));
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            let ty = lookup(sets, &key);
            let Some(value) = obj.get_mut(&key) else {
                continue;
            };
            match ty {
                Some(ty) => self.walk_value(value, ty),
                None if key == "extension" || key == "modifierExtension" => {
                    self.walk_extensions(value)
                }
                None => self.scrub_unknown(value),
            }
        }
    }

    fn walk_value(&self, value: &mut Value, ty: Ty) {
        if let Value::Array(items) = value {
            for item in items.iter_mut() {
                self.walk_value(item, ty);
            }
            return;
        }
        match ty {
            Ty::Prim(p) => self.primitive(value, p),
            Ty::Complex(name, els) => {
                if let Some(obj) = value.as_object_mut() {
                    match name {
                        "Address" => address(obj),
                        "HumanName" => obj.clear(),
                        "Attachment" => self.attachment(obj),
                        _ => {}
                    }
                    self.walk_object(obj, &[els]);
                }
            }
            Ty::Backbone(els) => {
                if let Some(obj) = value.as_object_mut() {
                    self.walk_object(obj, &[els]);
                }
            }
            Ty::Reference(_) => {
                if let Some(obj) = value.as_object_mut() {
                    obj.shift_remove("display");
                    obj.shift_remove("identifier");
                    if let Some(Value::String(r)) = obj.get_mut("reference") {
                        *r = self.reference(r);
                    }
                }
            }
            Ty::Choice(_) | Ty::Resource => {}
            Ty::Extension => self.walk_extensions(value),
            Ty::Any => self.scrub_unknown(value),
        }
    }

    fn reference(&self, r: &str) -> String {
        match r.split_once('/') {
            Some((rt, id)) if !r.contains("://") && !id.contains('/') => {
                format!("{rt}/{}", self.pseudonym(rt, id))
            }
            _ => "#redacted".into(),
        }
    }

    fn primitive(&self, value: &mut Value, p: Prim) {
        let Value::String(s) = value else { return };
        match p {
            Prim::Date | Prim::DateTime if s.len() > 4 => s.truncate(4),
            Prim::Instant => {
                if let Some(y) = s.get(..4) {
                    *s = format!("{y}-01-01T00:00:00Z");
                }
            }
            Prim::String | Prim::Markdown => *s = self.redactions.redact(s),
            // Terminology systems are kept; a URL pointing at a record on a server is not.
            Prim::Uri if s.starts_with("http") && s.contains("/fhir/") => {
                *s = self.redactions.redact(s)
            }
            _ => {}
        }
    }

    fn attachment(&self, obj: &mut Map<String, Value>) {
        obj.shift_remove("url");
        obj.shift_remove("hash");
        obj.shift_remove("size");
        let text = obj
            .get("contentType")
            .and_then(Value::as_str)
            .is_some_and(|c| c.starts_with("text/"));
        match obj.get("data").and_then(Value::as_str) {
            Some(data) if text => {
                let plain = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                match plain {
                    Some(p) => {
                        let red = self.redactions.redact(&p);
                        obj.insert(
                            "data".into(),
                            Value::String(base64::engine::general_purpose::STANDARD.encode(red)),
                        );
                    }
                    None => {
                        obj.shift_remove("data");
                    }
                }
            }
            Some(_) => {
                // Images (signatures, photos) and other binaries: biometric or unreadable.
                obj.shift_remove("data");
            }
            None => {}
        }
        if obj.get("title").is_some() {
            obj.insert("title".into(), Value::String("attachment".into()));
        }
        if obj.keys().all(|k| k == "title" || k == "contentType") {
            obj.insert(
                "title".into(),
                Value::String("attachment removed by de-identification".into()),
            );
        }
    }

    fn walk_extensions(&self, value: &mut Value) {
        for ext in value.as_array_mut().into_iter().flatten() {
            if let Some(obj) = ext.as_object_mut() {
                let keys: Vec<String> = obj
                    .keys()
                    .filter(|k| k.starts_with("value") || *k == "extension")
                    .cloned()
                    .collect();
                for k in keys {
                    if let Some(v) = obj.get_mut(&k) {
                        if k == "extension" {
                            self.walk_extensions(v);
                        } else {
                            self.scrub_unknown(v);
                        }
                    }
                }
            }
        }
    }

    /// Content Hearth does not interpret: strings are redacted and date-like strings cut to
    /// the year; identifying keys are dropped.
    fn scrub_unknown(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if crate::primitives::is_date_time(s, false) && s.len() > 4 {
                    s.truncate(4);
                } else {
                    *s = self.redactions.redact(s);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| self.scrub_unknown(v)),
            Value::Object(o) => {
                for k in REMOVE_ALWAYS.iter().chain(&["name", "display", "url"]) {
                    o.shift_remove(*k);
                }
                if let Some(Value::String(r)) = o.get_mut("reference") {
                    *r = self.reference(r);
                }
                for (k, v) in o.iter_mut() {
                    if k != "reference" {
                        self.scrub_unknown(v);
                    }
                }
            }
            _ => {}
        }
    }
}

fn lookup(sets: &[&'static [El]], key: &str) -> Option<Ty> {
    for set in sets {
        for el in set.iter() {
            if el.name == key {
                return Some(el.ty);
            }
            if let Ty::Choice(variants) = el.ty
                && let Some(suffix) = key.strip_prefix(el.name)
                && let Some((_, ty)) = variants.iter().find(|(s, _)| *s == suffix)
            {
                return Some(*ty);
            }
        }
    }
    None
}

fn address(obj: &mut Map<String, Value>) {
    for k in [
        "line", "city", "district", "text", "period", "_line", "_city",
    ] {
        obj.shift_remove(k);
    }
    if let Some(zip) = obj.get("postalCode").and_then(Value::as_str) {
        let d = digits(zip);
        let zip3 = if d.len() >= 3 {
            let z = &d[..3];
            if RESTRICTED_ZIP3.contains(&z) {
                "000".to_owned()
            } else {
                z.to_owned()
            }
        } else {
            "000".to_owned()
        };
        obj.insert("postalCode".into(), Value::String(zip3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(resources: &[Value]) -> Deidentifier {
        let mut r = Redactions::default();
        for res in resources {
            r.learn(res);
        }
        Deidentifier::new(b"export-key", r, 2026)
    }

    #[test]
    fn patient_is_stripped_and_generalized() {
        let p = json!({"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2026-11-20T09:30:00Z"},
            "identifier": [{"system": "urn:mrn", "value": "MRN0012345"}],
            "name": [{"family": "Okafor", "given": ["Adaeze"]}], "telecom": [{"system": "phone", "value": "555-0101"}],
            "gender": "female", "birthDate": "1948-03-12",
            "address": [{"line": ["12 Oak St"], "city": "Bangor", "state": "ME", "postalCode": "04401", "country": "US"}],
            "generalPractitioner": [{"reference": "Practitioner/pr-1", "display": "Dr Reyes"}],
            "text": {"status": "generated", "div": "<div>Adaeze Okafor</div>"}});
        let d = setup(std::slice::from_ref(&p));
        let out = d.apply(&p).unwrap();
        for gone in ["identifier", "name", "telecom", "meta", "text"] {
            assert!(out.get(gone).is_none(), "{gone} kept: {out}");
        }
        assert_eq!(out["birthDate"], "1948");
        assert_eq!(
            out["address"][0],
            json!({"state": "ME", "postalCode": "044", "country": "US"})
        );
        assert_eq!(out["id"], d.pseudonym("Patient", "p1"));
        assert_eq!(
            out["generalPractitioner"][0],
            json!({"reference": format!("Practitioner/{}", d.pseudonym("Practitioner", "pr-1"))})
        );
        assert!(
            crate::validate(&out).issues.is_empty(),
            "{:?}",
            crate::validate(&out).issues
        );
        let text = out.to_string();
        for leak in [
            "Okafor", "Adaeze", "555", "0101", "12 Oak", "Bangor", "04401", "03-12", "MRN", "Reyes",
        ] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
    }

    #[test]
    fn ages_over_89_and_small_zip_areas() {
        let p = json!({"resourceType": "Patient", "id": "old", "birthDate": "1930-01-01",
            "address": [{"postalCode": "89012", "state": "NV"}]});
        let d = setup(&[]);
        let out = d.apply(&p).unwrap();
        assert!(out.get("birthDate").is_none());
        assert_eq!(out["extension"][0]["url"], AGE_90_PLUS_URL);
        assert_eq!(out["address"][0]["postalCode"], "000");
    }

    #[test]
    fn free_text_loses_identifiers_and_links_survive() {
        let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Lindqvist", "given": ["Henrik"]}],
            "identifier": [{"value": "MRN0100042"}], "telecom": [{"system": "phone", "value": "(555) 010-1234"}]});
        let rp = json!({"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": "Patient/p1"}, "name": [{"given": ["Ingrid"]}]});
        let note = "Henrik Lindqvist (MRN0100042) seen 2026-11-20 with daughter Ingrid. Call 555-010-1234 or ingrid@example.org. BP stable.";
        let doc = json!({"resourceType": "DocumentReference", "id": "n1", "status": "current",
            "subject": {"reference": "Patient/p1"}, "date": "2026-11-20T10:30:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64::engine::general_purpose::STANDARD.encode(note)}},
                        {"attachment": {"contentType": "image/png", "data": "iVBORw0KGgo="}}]});
        let d = setup(&[p.clone(), rp.clone()]);
        let out = d.apply(&doc).unwrap();
        let text = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(out["content"][0]["attachment"]["data"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        for leak in [
            "Henrik",
            "Lindqvist",
            "MRN0100042",
            "Ingrid",
            "555",
            "example.org",
            "11-20",
        ] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
        assert!(
            text.contains("BP stable") && text.contains("2026"),
            "{text}"
        );
        assert!(out["content"][1]["attachment"].get("data").is_none());
        assert_eq!(out["date"], "2026-01-01T00:00:00Z");
        assert_eq!(
            out["subject"]["reference"],
            format!("Patient/{}", d.pseudonym("Patient", "p1"))
        );
        assert_eq!(
            d.apply(&rp).unwrap()["patient"]["reference"],
            out["subject"]["reference"]
        );
        assert!(
            crate::validate(&out).issues.is_empty(),
            "{:?}",
            crate::validate(&out).issues
        );
        // Another key gives other pseudonyms: exports are unlinkable.
        let other = Deidentifier::new(b"another-key", Redactions::default(), 2026);
        assert_ne!(
            other.pseudonym("Patient", "p1"),
            d.pseudonym("Patient", "p1")
        );
    }
}
