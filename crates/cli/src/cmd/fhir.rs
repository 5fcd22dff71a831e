//! `hearth fhir …`: FHIR R4 operations on the node's records, `hearth import`, `hearth export`
//! and `hearth demo-data`.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use records::Records;
use serde_json::{Value, json};

use super::{Context, DEFAULT_DB, print_json};

/// The base URL printed in bundles made on the command line.
const CLI_BASE: &str = "urn:hearth:local";

#[derive(clap::Subcommand, Debug)]
pub enum FhirCommand {
    /// Create a resource (JSON inline, @FILE, or - for stdin after the PIN line).
    Create { json: String },
    /// Read a resource.
    Read { resource_type: String, id: String },
    /// Update (or create with this id) a resource; --if-match guards against lost updates.
    Update {
        resource_type: String,
        id: String,
        json: String,
        /// The version read before editing (meta.versionId).
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete a resource (a tombstone that replicates).
    Delete { resource_type: String, id: String },
    /// Search: `hearth fhir search Patient name=oka birthdate=ge1940 _sort=-birthdate`.
    Search {
        resource_type: String,
        /// name=value pairs, as in a FHIR search URL.
        params: Vec<String>,
    },
    /// The versions of a resource.
    History { resource_type: String, id: String },
    /// A patient and everything in their record, as a Bundle.
    Everything { patient: String },
    /// Upcoming medication reminders of a patient.
    Reminders {
        patient: String,
        /// Doses to show per medication.
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// The clinic's offset from UTC in hours, for clock times in dosage timing.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        utc_offset_hours: i64,
    },
    /// Rebuild the search index.
    Reindex,
}

/// Unlocks the node and opens its records as the unlocking user.
pub fn open(ctx: &mut Context) -> Result<(store::Unlocked, Records)> {
    let node = ctx.unlock()?;
    let records = Records::new(node.replica().clone(), DEFAULT_DB, &node.session()?)?;
    Ok((node, records))
}

fn read_json(ctx: &mut Context, arg: &str) -> Result<Value> {
    let text = match arg {
        "-" => ctx.input.rest_of_stdin()?,
        s if s.starts_with('@') => {
            std::fs::read_to_string(&s[1..]).with_context(|| format!("cannot read {}", &s[1..]))?
        }
        s => s.to_owned(),
    };
    serde_json::from_str(&text).context("the resource is not valid JSON")
}

/// Prints an OperationOutcome on stdout and fails with its summary.
fn fhir_fail(e: records::FhirError) -> anyhow::Error {
    let _ = print_json(&e.outcome());
    anyhow::anyhow!("FHIR error {}: {e}", e.status)
}

pub fn run(ctx: &mut Context, cmd: FhirCommand) -> Result<()> {
    let (_node, r) = open(ctx)?;
    let out = match cmd {
        FhirCommand::Create { json } => {
            let v = read_json(ctx, &json)?;
            r.create(v).map_err(fhir_fail)?.resource
        }
        FhirCommand::Read { resource_type, id } => {
            r.read(&resource_type, &id).map_err(fhir_fail)?.resource
        }
        FhirCommand::Update {
            resource_type,
            id,
            json,
            if_match,
        } => {
            let v = read_json(ctx, &json)?;
            r.update(&resource_type, &id, v, if_match.as_deref())
                .map_err(fhir_fail)?
                .resource
        }
        FhirCommand::Delete { resource_type, id } => {
            r.delete(&resource_type, &id).map_err(fhir_fail)?;
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": "deleted"}]})
        }
        FhirCommand::Search {
            resource_type,
            params,
        } => {
            let mut pairs = Vec::new();
            for p in params {
                let (k, v) = p.split_once('=').with_context(|| {
                    format!("search parameters look like name=value, not '{p}'")
                })?;
                pairs.push((k.to_owned(), v.to_owned()));
            }
            r.search(&resource_type, &pairs, CLI_BASE)
                .map_err(fhir_fail)?
        }
        FhirCommand::History { resource_type, id } => r
            .history(&resource_type, &id, CLI_BASE)
            .map_err(fhir_fail)?,
        FhirCommand::Everything { patient } => {
            r.everything(&patient, CLI_BASE).map_err(fhir_fail)?
        }
        FhirCommand::Reminders {
            patient,
            count,
            utc_offset_hours,
        } => {
            let due = r
                .reminders(&patient, fhir::time::now(), count, utc_offset_hours * 3600)
                .map_err(fhir_fail)?;
            let rows: Vec<Value> = due
                .into_iter()
                .map(|(id, t)| json!({"medicationRequest": format!("MedicationRequest/{id}"), "due": fhir::time::instant(t)}))
                .collect();
            Value::Array(rows)
        }
        FhirCommand::Reindex => json!({"reindexed": r.reindex().map_err(fhir_fail)?}),
    };
    print_json(&out)
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// NDJSON files (Bulk Data layout, one resource per line) or JSON Bundles.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Resources per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
}

/// Import progress: resources waiting for the next transaction, with where each came from.
struct Importer<'a> {
    records: &'a Records,
    batch: Vec<(String, Value)>,
    batch_size: usize,
    imported: u64,
    rejected: u64,
    progress: bool,
}

impl Importer<'_> {
    fn reject(&mut self, at: &str, why: &str) {
        self.rejected += 1;
        if self.progress {
            eprint!("\r\x1b[K");
        }
        eprintln!("{at}: rejected: {why}");
    }

    fn push(&mut self, at: String, resource: Value) -> Result<()> {
        self.batch.push((at, resource));
        if self.batch.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the waiting resources in one transaction; references among them resolve.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (labels, resources): (Vec<String>, Vec<Value>) =
            std::mem::take(&mut self.batch).into_iter().unzip();
        for (res, at) in self
            .records
            .import_batch(resources)?
            .into_iter()
            .zip(labels)
        {
            match res {
                Ok(_) => self.imported += 1,
                Err(e) => self.reject(&at, &e.to_string()),
            }
        }
        if self.progress {
            eprint!("\rimported {}, rejected {}", self.imported, self.rejected);
            let _ = std::io::stderr().flush();
        }
        Ok(())
    }

    /// One file: NDJSON (a resource or a Bundle per line), or one JSON Bundle, resource or
    /// array of resources.
    fn file(&mut self, path: &Path) -> Result<()> {
        let source = path.display().to_string();
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {source}"))?;
        let mut reader = BufReader::new(f);
        let mut first = String::new();
        reader
            .read_line(&mut first)
            .with_context(|| format!("cannot read {source}"))?;
        if !first.trim().is_empty() && serde_json::from_str::<Value>(first.trim()).is_err() {
            // Not one JSON value per line: a pretty-printed Bundle, resource or array.
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut reader, &mut rest)
                .with_context(|| format!("cannot read {source}"))?;
            match serde_json::from_str::<Value>(&(first + &rest)) {
                Ok(v) => self.value(&source, None, v)?,
                Err(e) => self.reject(&source, &format!("not valid JSON ({e})")),
            }
            return Ok(());
        }
        let mut line = first;
        let mut n = 1;
        loop {
            if !line.trim().is_empty() {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => self.value(&source, Some(n), v)?,
                    Err(e) => {
                        self.reject(&format!("{source}:{n}"), &format!("not valid JSON ({e})"))
                    }
                }
            }
            line.clear();
            if reader
                .read_line(&mut line)
                .with_context(|| format!("cannot read {source}"))?
                == 0
            {
                return Ok(());
            }
            n += 1;
        }
    }

    fn value(&mut self, source: &str, line: Option<usize>, v: Value) -> Result<()> {
        let at = |entry: Option<usize>| match (line, entry) {
            (Some(l), Some(e)) => format!("{source}:{l} entry {e}"),
            (Some(l), None) => format!("{source}:{l}"),
            (None, Some(e)) => format!("{source} entry {e}"),
            (None, None) => source.to_owned(),
        };
        match v {
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.push(at(Some(i + 1)), item)?;
                }
            }
            v if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
                match records::resources_of_bundle(&v) {
                    Ok(resources) => {
                        for (i, r) in resources {
                            self.push(at(Some(i + 1)), r)?;
                        }
                    }
                    Err(e) => self.reject(&at(None), &e.to_string()),
                }
            }
            v => self.push(at(None), v)?,
        }
        Ok(())
    }
}

fn file_rank(path: &Path) -> usize {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // Bulk Data names files `Patient.ndjson`; examples often `Patient-example.json`.
    records::import_rank(stem.split(['.', '-', '_']).next().unwrap_or(stem))
}

pub fn import(ctx: &mut Context, args: ImportArgs) -> Result<()> {
    let (_node, r) = open(ctx)?;
    let mut imp = Importer {
        records: &r,
        batch: Vec::new(),
        batch_size: args.batch_size.clamp(1, 10_000),
        imported: 0,
        rejected: 0,
        progress: std::io::stderr().is_terminal(),
    };
    // Referenced types first; files of one kind share transactions, so references among them
    // (even circular ones) resolve.
    let mut files = args.files.clone();
    files.sort_by_key(|p| file_rank(p));
    let mut rank = None;
    for path in &files {
        let this = file_rank(path);
        if rank.is_some_and(|r| r != this) {
            imp.flush()?;
        }
        rank = Some(this);
        imp.file(path)?;
    }
    imp.flush()?;
    if imp.progress {
        eprintln!();
    }
    outln!(
        "Imported {} resources; rejected {}.",
        imp.imported,
        imp.rejected
    );
    if imp.imported == 0 && imp.rejected > 0 {
        bail!("nothing was imported");
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Folder for NDJSON files, one per resource type (Bulk Data layout).
    #[arg(long, conflicts_with = "patient")]
    pub out: Option<PathBuf>,
    /// Export one patient's record as a Bundle on stdout instead.
    #[arg(long)]
    pub patient: Option<String>,
    /// De-identify (HIPAA Safe Harbor) for analytics: see docs/deidentification.md.
    #[arg(long, requires = "out")]
    pub deidentify: bool,
    /// With --deidentify: a 0600 file holding the pseudonym key, created if missing. The same
    /// key gives the same pseudonyms, so exports can be linked; without it every export gets a
    /// fresh key that is thrown away.
    #[arg(long, requires = "deidentify")]
    pub deid_key_file: Option<PathBuf>,
}

pub fn export(ctx: &mut Context, args: ExportArgs) -> Result<()> {
    let (_node, r) = open(ctx)?;
    if let Some(p) = args.patient {
        // The records layer decides what may leave the device (export rights per type) and
        // audits it; `fhir everything` is the command that reads a chart.
        let entries = r
            .export_chart(&p, "hearth export --patient")
            .map_err(fhir_fail)?;
        return print_json(&serde_json::json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": entries
                .into_iter()
                .map(|r| serde_json::json!({"resource": r}))
                .collect::<Vec<_>>(),
        }));
    }
    let Some(out) = args.out else {
        bail!("say where to export: --out FOLDER (NDJSON per type) or --patient ID (a Bundle)");
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let deid = if args.deidentify {
        // First pass: who is in the export, so free text can be scrubbed of them.
        let mut redactions = fhir::deid::Redactions::default();
        r.export_each("read", |_, res| {
            redactions.learn(res);
            Ok(())
        })
        .map_err(fhir_fail)?;
        let key = match &args.deid_key_file {
            Some(path) => deid_key(path)?,
            None => app::new_token()
                .context("cannot make a pseudonym key")?
                .into_bytes(),
        };
        let (year, _, _) = fhir::time::civil_from_days(fhir::time::now().div_euclid(86_400));
        Some(fhir::deid::Deidentifier::new(&key, redactions, year))
    } else {
        None
    };
    let mut files: std::collections::BTreeMap<String, std::io::BufWriter<std::fs::File>> =
        Default::default();
    let n = r
        .export_each("export", |rt, res| {
            let deidentified;
            let res = match &deid {
                Some(d) => match d.apply(res) {
                    Some(v) => {
                        deidentified = v;
                        &deidentified
                    }
                    None => return Ok(()),
                },
                None => res,
            };
            let w = match files.get_mut(rt) {
                Some(w) => w,
                None => {
                    let path = out.join(format!("{rt}.ndjson"));
                    let f = std::fs::File::create(&path).map_err(|e| io_fail(&path, &e))?;
                    files
                        .entry(rt.to_owned())
                        .or_insert(std::io::BufWriter::new(f))
                }
            };
            serde_json::to_writer(&mut *w, res)
                .map_err(|e| io_fail(&out, &std::io::Error::other(e)))?;
            w.write_all(b"\n").map_err(|e| io_fail(&out, &e))
        })
        .map_err(fhir_fail)?;
    for (rt, mut w) in files {
        w.flush()
            .with_context(|| format!("cannot write {rt}.ndjson"))?;
    }
    let what = if deid.is_some() { " de-identified" } else { "" };
    outln!(
        "Exported {n}{what} resources to {} (one NDJSON file per type).",
        out.display()
    );
    Ok(())
}

/// Reads the pseudonym key file, creating it (mode 0600) with a random key if missing.
fn deid_key(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(k) if k.trim().len() >= 32 => Ok(k.trim().as_bytes().to_vec()),
        Ok(_) => bail!(
            "{} does not hold a pseudonym key (32+ characters)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = app::new_token().context("cannot make a pseudonym key")?;
            super::write_new(path, key.as_bytes())?;
            Ok(key.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn io_fail(path: &Path, e: &std::io::Error) -> records::FhirError {
    records::FhirError {
        status: 500,
        issues: vec![fhir::Issue::error(
            fhir::IssueCode::Exception,
            "Export",
            &format!("cannot write {}: {e}", path.display()),
        )],
    }
}

#[derive(clap::Args, Debug)]
pub struct DemoDataArgs {
    /// How many patients (each with proxies, vitals, medications, notes, tasks, consents).
    #[arg(long, default_value_t = 100)]
    pub patients: u64,
    /// Seed: the same seed gives the same clinic.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Weekly vitals sets per patient (6 observations each).
    #[arg(long, default_value_t = 2)]
    pub vitals: u64,
    /// Number the patients from here (to add more to an existing clinic).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
}

pub fn demo_data(ctx: &mut Context, a: DemoDataArgs) -> Result<()> {
    let (_node, r) = open(ctx)?;
    let progress = std::io::stderr().is_terminal();
    let mut ok = 0u64;
    let mut failed = 0u64;
    let practitioners: Vec<Value> = fhir::demo::practitioners()
        .into_iter()
        .filter(|p| {
            !r.exists("Practitioner", p["id"].as_str().unwrap_or(""))
                .unwrap_or(false)
        })
        .collect();
    let mut batch = practitioners;
    let start = std::time::Instant::now();
    for n in a.first..a.first + a.patients {
        batch.extend(fhir::demo::patient_bundle(n, a.seed, a.vitals));
        if batch.len() >= 500 || n + 1 == a.first + a.patients {
            for res in r.create_batch(std::mem::take(&mut batch))? {
                match res {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        if failed <= 5 {
                            eprintln!("rejected: {e}");
                        }
                    }
                }
            }
            if progress {
                eprint!(
                    "\r{} of {} patients, {ok} resources",
                    n + 1 - a.first,
                    a.patients
                );
            }
        }
    }
    if progress {
        eprintln!();
    }
    outln!(
        "Created {ok} resources for {} patients in {:.1} s (seed {}); {failed} rejected.",
        a.patients,
        start.elapsed().as_secs_f64(),
        a.seed
    );
    if failed > 0 {
        bail!(
            "{failed} demo resources were rejected (already present? use --first to add new patients)"
        );
    }
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum RolesCommand {
    /// Show the permission matrix: role, resource type, allowed actions.
    Show,
    /// Allow a role an action on a resource type (admins only).
    Grant {
        /// admin, clinician, nurse, front_desk or auditor.
        role: store::Role,
        resource_type: String,
        action: String,
    },
    /// Take an action on a resource type away from a role (admins only).
    Revoke {
        /// admin, clinician, nurse, front_desk or auditor.
        role: store::Role,
        resource_type: String,
        action: String,
    },
}

pub fn roles(ctx: &mut Context, cmd: RolesCommand) -> Result<()> {
    let (_node, mut r) = open(ctx)?;
    let (role, rt, action, allow) = match cmd {
        RolesCommand::Show => {
            for (role, types) in &r.permissions().roles {
                for (rt, actions) in types {
                    let list: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                    outln!("{role}\t{rt}\t{}", list.join(","));
                }
            }
            return Ok(());
        }
        RolesCommand::Grant {
            role,
            resource_type,
            action,
        } => (role, resource_type, action, true),
        RolesCommand::Revoke {
            role,
            resource_type,
            action,
        } => (role, resource_type, action, false),
    };
    let a = records::Action::parse(&action).with_context(|| {
        format!("actions are read, search, create, update, delete, export; not '{action}'")
    })?;
    r.set_permission(role, &rt, a, allow).map_err(fhir_fail)?;
    outln!(
        "{} {role} {action} on {rt}.",
        if allow { "Granted" } else { "Revoked" }
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct BreakGlassArgs {
    /// The patient whose chart you need in an emergency.
    pub patient: String,
    /// Why (at least 10 characters; reviewed later).
    #[arg(long)]
    pub reason: String,
}

pub fn break_glass(ctx: &mut Context, a: BreakGlassArgs) -> Result<()> {
    let (_node, mut r) = open(ctx)?;
    let g = r.break_glass(&a.patient, &a.reason).map_err(fhir_fail)?;
    outln!(
        "Break-glass: {} may read {} until {} (read-only). Every access is flagged for review.",
        g.user,
        g.patient,
        fhir::time::instant(g.until)
    );
    Ok(())
}
