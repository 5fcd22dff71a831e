//! `OperationOutcome`: how FHIR reports errors (<https://hl7.org/fhir/R4/operationoutcome.html>).

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The request failed.
    Error,
    /// Worth knowing; the request went ahead.
    Warning,
    /// Information.
    Information,
}

/// `OperationOutcome.issue.code` (the IssueType value set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueCode {
    /// Content is not well-formed.
    Structure,
    /// A required element is missing.
    Required,
    /// A value is not valid for its type.
    Value,
    /// A code is not in its required value set.
    CodeInvalid,
    /// A constraint (invariant) failed.
    Invariant,
    /// Something referenced does not exist.
    NotFound,
    /// Not supported by this server.
    NotSupported,
    /// A version conflict.
    Conflict,
    /// Content is invalid otherwise.
    Invalid,
    /// The caller may not do this.
    Forbidden,
    /// Processing failed on the server side.
    Exception,
    /// Information exists that was not returned (for example, hidden from the caller's role).
    Suppressed,
}

impl IssueCode {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::Invariant => "invariant",
            IssueCode::NotFound => "not-found",
            IssueCode::NotSupported => "not-supported",
            IssueCode::Conflict => "conflict",
            IssueCode::Invalid => "invalid",
            IssueCode::Forbidden => "forbidden",
            IssueCode::Exception => "exception",
            IssueCode::Suppressed => "suppressed",
        }
    }
}

/// One issue: what, where, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// How bad.
    pub severity: Severity,
    /// What kind.
    pub code: IssueCode,
    /// Why, in words (never contains element values that could be PHI, except codes).
    pub diagnostics: String,
    /// Where, as a FHIRPath expression.
    pub expression: String,
}

impl Issue {
    /// A warning issue: the request went ahead.
    pub fn warning(code: IssueCode, expression: &str, diagnostics: &str) -> Issue {
        Issue {
            severity: Severity::Warning,
            code,
            diagnostics: diagnostics.to_owned(),
            expression: expression.to_owned(),
        }
    }

    /// An error issue.
    pub fn error(code: IssueCode, expression: &str, diagnostics: &str) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.to_owned(),
            expression: expression.to_owned(),
        }
    }
}

/// Builds an `OperationOutcome` resource from issues.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            json!({
                "severity": match i.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Information => "information",
                },
                "code": i.code.as_str(),
                "diagnostics": i.diagnostics,
                "expression": [i.expression],
            })
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}
