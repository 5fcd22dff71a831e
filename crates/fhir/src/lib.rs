//! The FHIR R4 resources Hearth stores: typed models, structural validation with
//! `OperationOutcome` errors, search-index terms and medication reminders. Pure: no I/O.
//!
//! ```
//! use serde_json::json;
//!
//! let bad = json!({"resourceType": "Patient", "gender": "F", "birthDate": "1948-13-01"});
//! let report = fhir::validate(&bad);
//! let paths: Vec<&str> = report.issues.iter().map(|i| i.expression.as_str()).collect();
//! assert_eq!(paths, ["Patient.gender", "Patient.birthDate"]);
//! let outcome = fhir::operation_outcome(&report.issues);
//! assert_eq!(outcome["resourceType"], "OperationOutcome");
//! ```

pub mod deid;
pub mod demo;
pub mod index;
// Model fields are the FHIR R4 elements of the same name (the spec documents each); the
// structs say which resource or datatype they model.
#[allow(missing_docs)]
pub mod models;
mod outcome;
pub mod primitives;
pub mod reminders;
pub mod schema;
pub mod time;
mod validate;

pub use models::Resource;
pub use outcome::{Issue, IssueCode, Severity, operation_outcome};
pub use validate::{Report, validate};
