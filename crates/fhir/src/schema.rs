//! The structure of the FHIR R4 resources and datatypes Hearth stores: every element's name,
//! type, cardinality and (for the codes we rely on) its required value set. Transcribed from the
//! R4 specification (<https://hl7.org/fhir/R4/resourcelist.html>); elements of datatypes Hearth
//! does not interpret are typed [`Ty::Any`] and only checked for JSON shape.

use crate::primitives::Prim;

/// How many times an element may appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    /// 0..1
    Opt,
    /// 1..1
    Req,
    /// 0..*
    Many,
    /// 1..*
    ReqMany,
}

impl Card {
    /// Whether the element is an array in JSON.
    pub fn is_many(self) -> bool {
        matches!(self, Card::Many | Card::ReqMany)
    }

    /// Whether it must be present.
    pub fn is_required(self) -> bool {
        matches!(self, Card::Req | Card::ReqMany)
    }
}

/// An element's type.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// A primitive.
    Prim(Prim),
    /// A named complex datatype.
    Complex(&'static str, &'static [El]),
    /// An inline (backbone) element.
    Backbone(&'static [El]),
    /// A Reference, with the resource types it may point to (empty: any).
    Reference(&'static [&'static str]),
    /// A choice `name[x]`: each allowed suffix with its type.
    Choice(&'static [(&'static str, Ty)]),
    /// An Extension (url plus a value of any type).
    Extension,
    /// A contained resource.
    Resource,
    /// A complex element Hearth does not interpret: must be a JSON object.
    Any,
}

/// One element definition.
#[derive(Clone, Copy, Debug)]
pub struct El {
    /// The JSON name (for choices, the stem without `[x]`).
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Its cardinality.
    pub card: Card,
    /// A required value set (codes only).
    pub codes: Option<&'static [&'static str]>,
}

const fn el(name: &'static str, ty: Ty, card: Card) -> El {
    El {
        name,
        ty,
        card,
        codes: None,
    }
}

const fn code(name: &'static str, card: Card, codes: &'static [&'static str]) -> El {
    El {
        name,
        ty: Ty::Prim(Prim::Code),
        card,
        codes: Some(codes),
    }
}

const fn p(name: &'static str, prim: Prim, card: Card) -> El {
    el(name, Ty::Prim(prim), card)
}

const fn r(name: &'static str, targets: &'static [&'static str], card: Card) -> El {
    el(name, Ty::Reference(targets), card)
}

const fn c(name: &'static str, ty: Ty, card: Card) -> El {
    el(name, ty, card)
}

use Card::{Many, Opt, Req, ReqMany};
use Prim::*;

// ---- datatypes -------------------------------------------------------------------------

/// The elements of the FHIR R4 `Coding` datatype.
pub const CODING: Ty = Ty::Complex(
    "Coding",
    &[
        p("system", Uri, Opt),
        p("version", String, Opt),
        p("code", Code, Opt),
        p("display", String, Opt),
        p("userSelected", Boolean, Opt),
    ],
);
/// The elements of the FHIR R4 `CodeableConcept` datatype.
pub const CC: Ty = Ty::Complex(
    "CodeableConcept",
    &[c("coding", CODING, Many), p("text", String, Opt)],
);
/// The elements of the FHIR R4 `Period` datatype.
pub const PERIOD: Ty = Ty::Complex(
    "Period",
    &[p("start", DateTime, Opt), p("end", DateTime, Opt)],
);
/// The elements of the FHIR R4 `Quantity` datatype.
pub const QUANTITY: Ty = Ty::Complex(
    "Quantity",
    &[
        p("value", Decimal, Opt),
        code("comparator", Opt, &["<", "<=", ">=", ">"]),
        p("unit", String, Opt),
        p("system", Uri, Opt),
        p("code", Code, Opt),
    ],
);
/// The elements of the FHIR R4 `Range` datatype.
pub const RANGE: Ty = Ty::Complex(
    "Range",
    &[c("low", QUANTITY, Opt), c("high", QUANTITY, Opt)],
);
/// The elements of the FHIR R4 `Ratio` datatype.
pub const RATIO: Ty = Ty::Complex(
    "Ratio",
    &[
        c("numerator", QUANTITY, Opt),
        c("denominator", QUANTITY, Opt),
    ],
);
/// The elements of the FHIR R4 `Identifier` datatype.
pub const IDENTIFIER: Ty = Ty::Complex(
    "Identifier",
    &[
        code(
            "use",
            Opt,
            &["usual", "official", "temp", "secondary", "old"],
        ),
        c("type", CC, Opt),
        p("system", Uri, Opt),
        p("value", String, Opt),
        c("period", PERIOD, Opt),
        c("assigner", Ty::Any, Opt),
    ],
);
/// Reference targets of a `Reference(Any)` element: every resource type.
pub const REFERENCE_ANY: &[&str] = &[];
/// The elements of the FHIR R4 `HumanName` datatype.
pub const HUMAN_NAME: Ty = Ty::Complex(
    "HumanName",
    &[
        code(
            "use",
            Opt,
            &[
                "usual",
                "official",
                "temp",
                "nickname",
                "anonymous",
                "old",
                "maiden",
            ],
        ),
        p("text", String, Opt),
        p("family", String, Opt),
        p("given", String, Many),
        p("prefix", String, Many),
        p("suffix", String, Many),
        c("period", PERIOD, Opt),
    ],
);
/// The elements of the FHIR R4 `ContactPoint` datatype.
pub const CONTACT_POINT: Ty = Ty::Complex(
    "ContactPoint",
    &[
        code(
            "system",
            Opt,
            &["phone", "fax", "email", "pager", "url", "sms", "other"],
        ),
        p("value", String, Opt),
        code("use", Opt, &["home", "work", "temp", "old", "mobile"]),
        p("rank", PositiveInt, Opt),
        c("period", PERIOD, Opt),
    ],
);
/// The elements of the FHIR R4 `Address` datatype.
pub const ADDRESS: Ty = Ty::Complex(
    "Address",
    &[
        code("use", Opt, &["home", "work", "temp", "old", "billing"]),
        code("type", Opt, &["postal", "physical", "both"]),
        p("text", String, Opt),
        p("line", String, Many),
        p("city", String, Opt),
        p("district", String, Opt),
        p("state", String, Opt),
        p("postalCode", String, Opt),
        p("country", String, Opt),
        c("period", PERIOD, Opt),
    ],
);
/// The elements of the FHIR R4 `Attachment` datatype.
pub const ATTACHMENT: Ty = Ty::Complex(
    "Attachment",
    &[
        p("contentType", Code, Opt),
        p("language", Code, Opt),
        p("data", Base64Binary, Opt),
        p("url", Uri, Opt),
        p("size", UnsignedInt, Opt),
        p("hash", Base64Binary, Opt),
        p("title", String, Opt),
        p("creation", DateTime, Opt),
    ],
);
/// The elements of the FHIR R4 `Annotation` datatype.
pub const ANNOTATION: Ty = Ty::Complex(
    "Annotation",
    &[
        c(
            "author",
            Ty::Choice(&[
                ("Reference", Ty::Reference(REFERENCE_ANY)),
                ("String", Ty::Prim(String)),
            ]),
            Opt,
        ),
        p("time", DateTime, Opt),
        p("text", Markdown, Req),
    ],
);
/// The elements of the FHIR R4 `Meta` datatype.
pub const META: Ty = Ty::Complex(
    "Meta",
    &[
        p("versionId", Id, Opt),
        p("lastUpdated", Instant, Opt),
        p("source", Uri, Opt),
        p("profile", Uri, Many),
        c("security", CODING, Many),
        c("tag", CODING, Many),
    ],
);
/// The elements of the FHIR R4 `Narrative` datatype.
pub const NARRATIVE: Ty = Ty::Complex(
    "Narrative",
    &[
        code(
            "status",
            Req,
            &["generated", "extensions", "additional", "empty"],
        ),
        p("div", String, Req),
    ],
);
const UNITS_OF_TIME: &[&str] = &["s", "min", "h", "d", "wk", "mo", "a"];
/// The elements of the FHIR R4 `Timing` datatype.
pub const TIMING: Ty = Ty::Complex(
    "Timing",
    &[
        p("event", DateTime, Many),
        c(
            "repeat",
            Ty::Backbone(&[
                c(
                    "bounds",
                    Ty::Choice(&[("Duration", QUANTITY), ("Range", RANGE), ("Period", PERIOD)]),
                    Opt,
                ),
                p("count", PositiveInt, Opt),
                p("countMax", PositiveInt, Opt),
                p("duration", Decimal, Opt),
                p("durationMax", Decimal, Opt),
                code("durationUnit", Opt, UNITS_OF_TIME),
                p("frequency", PositiveInt, Opt),
                p("frequencyMax", PositiveInt, Opt),
                p("period", Decimal, Opt),
                p("periodMax", Decimal, Opt),
                code("periodUnit", Opt, UNITS_OF_TIME),
                code(
                    "dayOfWeek",
                    Many,
                    &["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                ),
                p("timeOfDay", Time, Many),
                p("when", Code, Many),
                p("offset", UnsignedInt, Opt),
            ]),
            Opt,
        ),
        c("code", CC, Opt),
    ],
);
/// The elements of the FHIR R4 `Dosage` datatype.
pub const DOSAGE: Ty = Ty::Complex(
    "Dosage",
    &[
        p("sequence", Integer, Opt),
        p("text", String, Opt),
        c("additionalInstruction", CC, Many),
        p("patientInstruction", String, Opt),
        c("timing", TIMING, Opt),
        c(
            "asNeeded",
            Ty::Choice(&[("Boolean", Ty::Prim(Boolean)), ("CodeableConcept", CC)]),
            Opt,
        ),
        c("site", CC, Opt),
        c("route", CC, Opt),
        c("method", CC, Opt),
        c(
            "doseAndRate",
            Ty::Backbone(&[
                c("type", CC, Opt),
                c(
                    "dose",
                    Ty::Choice(&[("Range", RANGE), ("Quantity", QUANTITY)]),
                    Opt,
                ),
                c(
                    "rate",
                    Ty::Choice(&[("Ratio", RATIO), ("Range", RANGE), ("Quantity", QUANTITY)]),
                    Opt,
                ),
            ]),
            Many,
        ),
        c("maxDosePerPeriod", RATIO, Opt),
        c("maxDosePerAdministration", QUANTITY, Opt),
        c("maxDosePerLifetime", QUANTITY, Opt),
    ],
);

// ---- resources -------------------------------------------------------------------------

const GENDER: &[&str] = &["male", "female", "other", "unknown"];
const ANY_REF: &[&str] = REFERENCE_ANY;
const PATIENT_REF: &[&str] = &["Patient"];
const SUBJECT_REF: &[&str] = &["Patient", "Group"];
const ENCOUNTER_REF: &[&str] = &["Encounter"];
const WHO_REF: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Patient",
    "RelatedPerson",
    "Device",
    "CareTeam",
];

/// Elements every resource may have (DomainResource).
pub const RESOURCE_BASE: &[El] = &[
    p("id", Id, Opt),
    c("meta", META, Opt),
    p("implicitRules", Uri, Opt),
    p("language", Code, Opt),
    c("text", NARRATIVE, Opt),
    c("contained", Ty::Resource, Many),
];

const PATIENT: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    p("active", Boolean, Opt),
    c("name", HUMAN_NAME, Many),
    c("telecom", CONTACT_POINT, Many),
    code("gender", Opt, GENDER),
    p("birthDate", Date, Opt),
    c(
        "deceased",
        Ty::Choice(&[
            ("Boolean", Ty::Prim(Boolean)),
            ("DateTime", Ty::Prim(DateTime)),
        ]),
        Opt,
    ),
    c("address", ADDRESS, Many),
    c("maritalStatus", CC, Opt),
    c(
        "multipleBirth",
        Ty::Choice(&[
            ("Boolean", Ty::Prim(Boolean)),
            ("Integer", Ty::Prim(Integer)),
        ]),
        Opt,
    ),
    c("photo", ATTACHMENT, Many),
    c(
        "contact",
        Ty::Backbone(&[
            c("relationship", CC, Many),
            c("name", HUMAN_NAME, Opt),
            c("telecom", CONTACT_POINT, Many),
            c("address", ADDRESS, Opt),
            code("gender", Opt, GENDER),
            r("organization", &["Organization"], Opt),
            c("period", PERIOD, Opt),
        ]),
        Many,
    ),
    c(
        "communication",
        Ty::Backbone(&[c("language", CC, Req), p("preferred", Boolean, Opt)]),
        Many,
    ),
    r(
        "generalPractitioner",
        &["Organization", "Practitioner", "PractitionerRole"],
        Many,
    ),
    r("managingOrganization", &["Organization"], Opt),
    c(
        "link",
        Ty::Backbone(&[
            r("other", &["Patient", "RelatedPerson"], Req),
            code(
                "type",
                Req,
                &["replaced-by", "replaces", "refer", "seealso"],
            ),
        ]),
        Many,
    ),
];

const RELATED_PERSON: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    p("active", Boolean, Opt),
    r("patient", PATIENT_REF, Req),
    c("relationship", CC, Many),
    c("name", HUMAN_NAME, Many),
    c("telecom", CONTACT_POINT, Many),
    code("gender", Opt, GENDER),
    p("birthDate", Date, Opt),
    c("address", ADDRESS, Many),
    c("photo", ATTACHMENT, Many),
    c("period", PERIOD, Opt),
    c(
        "communication",
        Ty::Backbone(&[c("language", CC, Req), p("preferred", Boolean, Opt)]),
        Many,
    ),
];

const PRACTITIONER: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    p("active", Boolean, Opt),
    c("name", HUMAN_NAME, Many),
    c("telecom", CONTACT_POINT, Many),
    c("address", ADDRESS, Many),
    code("gender", Opt, GENDER),
    p("birthDate", Date, Opt),
    c("photo", ATTACHMENT, Many),
    c(
        "qualification",
        Ty::Backbone(&[
            c("identifier", IDENTIFIER, Many),
            c("code", CC, Req),
            c("period", PERIOD, Opt),
            r("issuer", &["Organization"], Opt),
        ]),
        Many,
    ),
    c("communication", CC, Many),
];

const ENCOUNTER: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    code(
        "status",
        Req,
        &[
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    ),
    c("statusHistory", Ty::Any, Many),
    c("class", CODING, Req),
    c("classHistory", Ty::Any, Many),
    c("type", CC, Many),
    c("serviceType", CC, Opt),
    c("priority", CC, Opt),
    r("subject", SUBJECT_REF, Opt),
    r("episodeOfCare", &["EpisodeOfCare"], Many),
    r("basedOn", &["ServiceRequest"], Many),
    c(
        "participant",
        Ty::Backbone(&[
            c("type", CC, Many),
            c("period", PERIOD, Opt),
            r(
                "individual",
                &["Practitioner", "PractitionerRole", "RelatedPerson"],
                Opt,
            ),
        ]),
        Many,
    ),
    r("appointment", &["Appointment"], Many),
    c("period", PERIOD, Opt),
    c("length", QUANTITY, Opt),
    c("reasonCode", CC, Many),
    r("reasonReference", ANY_REF, Many),
    c("diagnosis", Ty::Any, Many),
    r("account", &["Account"], Many),
    c("hospitalization", Ty::Any, Opt),
    c("location", Ty::Any, Many),
    r("serviceProvider", &["Organization"], Opt),
    r("partOf", ENCOUNTER_REF, Opt),
];

const OBSERVATION_VALUE: Ty = Ty::Choice(&[
    ("Quantity", QUANTITY),
    ("CodeableConcept", CC),
    ("String", Ty::Prim(String)),
    ("Boolean", Ty::Prim(Boolean)),
    ("Integer", Ty::Prim(Integer)),
    ("Range", RANGE),
    ("Ratio", RATIO),
    ("SampledData", Ty::Any),
    ("Time", Ty::Prim(Time)),
    ("DateTime", Ty::Prim(DateTime)),
    ("Period", PERIOD),
]);
const REFERENCE_RANGE: Ty = Ty::Backbone(&[
    c("low", QUANTITY, Opt),
    c("high", QUANTITY, Opt),
    c("type", CC, Opt),
    c("appliesTo", CC, Many),
    c("age", RANGE, Opt),
    p("text", String, Opt),
]);
const OBSERVATION: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    r("basedOn", ANY_REF, Many),
    r("partOf", ANY_REF, Many),
    code(
        "status",
        Req,
        &[
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    ),
    c("category", CC, Many),
    c("code", CC, Req),
    r("subject", &["Patient", "Group", "Device", "Location"], Opt),
    r("focus", ANY_REF, Many),
    r("encounter", ENCOUNTER_REF, Opt),
    c(
        "effective",
        Ty::Choice(&[
            ("DateTime", Ty::Prim(DateTime)),
            ("Period", PERIOD),
            ("Timing", TIMING),
            ("Instant", Ty::Prim(Instant)),
        ]),
        Opt,
    ),
    p("issued", Instant, Opt),
    r("performer", WHO_REF, Many),
    c("value", OBSERVATION_VALUE, Opt),
    c("dataAbsentReason", CC, Opt),
    c("interpretation", CC, Many),
    c("note", ANNOTATION, Many),
    c("bodySite", CC, Opt),
    c("method", CC, Opt),
    r("specimen", &["Specimen"], Opt),
    r("device", &["Device", "DeviceMetric"], Opt),
    c("referenceRange", REFERENCE_RANGE, Many),
    r(
        "hasMember",
        &["Observation", "QuestionnaireResponse", "MolecularSequence"],
        Many,
    ),
    r("derivedFrom", ANY_REF, Many),
    c(
        "component",
        Ty::Backbone(&[
            c("code", CC, Req),
            c("value", OBSERVATION_VALUE, Opt),
            c("dataAbsentReason", CC, Opt),
            c("interpretation", CC, Many),
            c("referenceRange", REFERENCE_RANGE, Many),
        ]),
        Many,
    ),
];

const ONSET: Ty = Ty::Choice(&[
    ("DateTime", Ty::Prim(DateTime)),
    ("Age", QUANTITY),
    ("Period", PERIOD),
    ("Range", RANGE),
    ("String", Ty::Prim(String)),
]);
const CONDITION: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    c("clinicalStatus", CC, Opt),
    c("verificationStatus", CC, Opt),
    c("category", CC, Many),
    c("severity", CC, Opt),
    c("code", CC, Opt),
    c("bodySite", CC, Many),
    r("subject", SUBJECT_REF, Req),
    r("encounter", ENCOUNTER_REF, Opt),
    c("onset", ONSET, Opt),
    c("abatement", ONSET, Opt),
    p("recordedDate", DateTime, Opt),
    r("recorder", WHO_REF, Opt),
    r("asserter", WHO_REF, Opt),
    c("stage", Ty::Any, Many),
    c("evidence", Ty::Any, Many),
    c("note", ANNOTATION, Many),
];

const ALLERGY_INTOLERANCE: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    c("clinicalStatus", CC, Opt),
    c("verificationStatus", CC, Opt),
    code("type", Opt, &["allergy", "intolerance"]),
    code(
        "category",
        Many,
        &["food", "medication", "environment", "biologic"],
    ),
    code("criticality", Opt, &["low", "high", "unable-to-assess"]),
    c("code", CC, Opt),
    r("patient", PATIENT_REF, Req),
    r("encounter", ENCOUNTER_REF, Opt),
    c("onset", ONSET, Opt),
    p("recordedDate", DateTime, Opt),
    r("recorder", WHO_REF, Opt),
    r("asserter", WHO_REF, Opt),
    p("lastOccurrence", DateTime, Opt),
    c("note", ANNOTATION, Many),
    c(
        "reaction",
        Ty::Backbone(&[
            c("substance", CC, Opt),
            c("manifestation", CC, ReqMany),
            p("description", String, Opt),
            p("onset", DateTime, Opt),
            code("severity", Opt, &["mild", "moderate", "severe"]),
            c("exposureRoute", CC, Opt),
            c("note", ANNOTATION, Many),
        ]),
        Many,
    ),
];

const MEDICATION_REQUEST: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    code(
        "status",
        Req,
        &[
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        ],
    ),
    c("statusReason", CC, Opt),
    code(
        "intent",
        Req,
        &[
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    ),
    c("category", CC, Many),
    code("priority", Opt, &["routine", "urgent", "asap", "stat"]),
    p("doNotPerform", Boolean, Opt),
    c(
        "reported",
        Ty::Choice(&[
            ("Boolean", Ty::Prim(Boolean)),
            ("Reference", Ty::Reference(ANY_REF)),
        ]),
        Opt,
    ),
    c(
        "medication",
        Ty::Choice(&[
            ("CodeableConcept", CC),
            ("Reference", Ty::Reference(&["Medication"])),
        ]),
        Req,
    ),
    r("subject", SUBJECT_REF, Req),
    r("encounter", ENCOUNTER_REF, Opt),
    r("supportingInformation", ANY_REF, Many),
    p("authoredOn", DateTime, Opt),
    r("requester", WHO_REF, Opt),
    r("performer", WHO_REF, Opt),
    c("performerType", CC, Opt),
    r("recorder", &["Practitioner", "PractitionerRole"], Opt),
    c("reasonCode", CC, Many),
    r("reasonReference", &["Condition", "Observation"], Many),
    p("instantiatesCanonical", Uri, Many),
    p("instantiatesUri", Uri, Many),
    r("basedOn", ANY_REF, Many),
    c("groupIdentifier", IDENTIFIER, Opt),
    c("courseOfTherapyType", CC, Opt),
    r("insurance", &["Coverage", "ClaimResponse"], Many),
    c("note", ANNOTATION, Many),
    c("dosageInstruction", DOSAGE, Many),
    c("dispenseRequest", Ty::Any, Opt),
    c("substitution", Ty::Any, Opt),
    r("priorPrescription", &["MedicationRequest"], Opt),
    r("detectedIssue", &["DetectedIssue"], Many),
    r("eventHistory", &["Provenance"], Many),
];

/// A dose given, or not given (`not-done` with a reason): what the medication reminders record.
const MEDICATION_ADMINISTRATION: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    p("instantiates", Uri, Many),
    r("partOf", ANY_REF, Many),
    code(
        "status",
        Req,
        &[
            "in-progress",
            "not-done",
            "on-hold",
            "completed",
            "entered-in-error",
            "stopped",
            "unknown",
        ],
    ),
    c("statusReason", CC, Many),
    c("category", CC, Opt),
    c(
        "medication",
        Ty::Choice(&[
            ("CodeableConcept", CC),
            ("Reference", Ty::Reference(&["Medication"])),
        ]),
        Req,
    ),
    r("subject", SUBJECT_REF, Req),
    r("context", &["Encounter", "EpisodeOfCare"], Opt),
    r("supportingInformation", ANY_REF, Many),
    c(
        "effective",
        Ty::Choice(&[("DateTime", Ty::Prim(DateTime)), ("Period", PERIOD)]),
        Req,
    ),
    c(
        "performer",
        Ty::Backbone(&[c("function", CC, Opt), r("actor", WHO_REF, Req)]),
        Many,
    ),
    c("reasonCode", CC, Many),
    r(
        "reasonReference",
        &["Condition", "Observation", "DiagnosticReport"],
        Many,
    ),
    r("request", &["MedicationRequest"], Opt),
    r("device", &["Device"], Many),
    c("note", ANNOTATION, Many),
    c("dosage", Ty::Any, Opt),
    r("eventHistory", &["Provenance"], Many),
];

const COMMUNICATION: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    p("instantiatesCanonical", Uri, Many),
    p("instantiatesUri", Uri, Many),
    r("basedOn", ANY_REF, Many),
    r("partOf", ANY_REF, Many),
    r("inResponseTo", &["Communication"], Many),
    code(
        "status",
        Req,
        &[
            "preparation",
            "in-progress",
            "not-done",
            "on-hold",
            "stopped",
            "completed",
            "entered-in-error",
            "unknown",
        ],
    ),
    c("statusReason", CC, Opt),
    c("category", CC, Many),
    code("priority", Opt, &["routine", "urgent", "asap", "stat"]),
    c("medium", CC, Many),
    r("subject", SUBJECT_REF, Opt),
    c("topic", CC, Opt),
    r("about", ANY_REF, Many),
    r("encounter", ENCOUNTER_REF, Opt),
    p("sent", DateTime, Opt),
    p("received", DateTime, Opt),
    r("recipient", ANY_REF, Many),
    r("sender", ANY_REF, Opt),
    c("reasonCode", CC, Many),
    r("reasonReference", ANY_REF, Many),
    c(
        "payload",
        Ty::Backbone(&[c(
            "content",
            Ty::Choice(&[
                ("String", Ty::Prim(String)),
                ("Attachment", ATTACHMENT),
                ("Reference", Ty::Reference(ANY_REF)),
            ]),
            Req,
        )]),
        Many,
    ),
    c("note", ANNOTATION, Many),
];

const TASK: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    p("instantiatesCanonical", Uri, Opt),
    p("instantiatesUri", Uri, Opt),
    r("basedOn", ANY_REF, Many),
    c("groupIdentifier", IDENTIFIER, Opt),
    r("partOf", &["Task"], Many),
    code(
        "status",
        Req,
        &[
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ],
    ),
    c("statusReason", CC, Opt),
    c("businessStatus", CC, Opt),
    code(
        "intent",
        Req,
        &[
            "unknown",
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    ),
    code("priority", Opt, &["routine", "urgent", "asap", "stat"]),
    c("code", CC, Opt),
    p("description", String, Opt),
    r("focus", ANY_REF, Opt),
    r("for", ANY_REF, Opt),
    r("encounter", ENCOUNTER_REF, Opt),
    c("executionPeriod", PERIOD, Opt),
    p("authoredOn", DateTime, Opt),
    p("lastModified", DateTime, Opt),
    r("requester", WHO_REF, Opt),
    c("performerType", CC, Many),
    r("owner", WHO_REF, Opt),
    r("location", &["Location"], Opt),
    c("reasonCode", CC, Opt),
    r("reasonReference", ANY_REF, Opt),
    r("insurance", &["Coverage", "ClaimResponse"], Many),
    c("note", ANNOTATION, Many),
    r("relevantHistory", &["Provenance"], Many),
    c(
        "restriction",
        Ty::Backbone(&[
            p("repetitions", PositiveInt, Opt),
            c("period", PERIOD, Opt),
            r("recipient", ANY_REF, Many),
        ]),
        Opt,
    ),
    c("input", Ty::Any, Many),
    c("output", Ty::Any, Many),
];

const DOCUMENT_REFERENCE: &[El] = &[
    c("masterIdentifier", IDENTIFIER, Opt),
    c("identifier", IDENTIFIER, Many),
    code(
        "status",
        Req,
        &["current", "superseded", "entered-in-error"],
    ),
    code(
        "docStatus",
        Opt,
        &["preliminary", "final", "amended", "entered-in-error"],
    ),
    c("type", CC, Opt),
    c("category", CC, Many),
    r(
        "subject",
        &["Patient", "Practitioner", "Group", "Device"],
        Opt,
    ),
    p("date", Instant, Opt),
    r("author", WHO_REF, Many),
    r(
        "authenticator",
        &["Practitioner", "PractitionerRole", "Organization"],
        Opt,
    ),
    r("custodian", &["Organization"], Opt),
    c(
        "relatesTo",
        Ty::Backbone(&[
            code("code", Req, &["replaces", "transforms", "signs", "appends"]),
            r("target", &["DocumentReference"], Req),
        ]),
        Many,
    ),
    p("description", String, Opt),
    c("securityLabel", CC, Many),
    c(
        "content",
        Ty::Backbone(&[c("attachment", ATTACHMENT, Req), c("format", CODING, Opt)]),
        ReqMany,
    ),
    c("context", Ty::Any, Opt),
];

const CONSENT: &[El] = &[
    c("identifier", IDENTIFIER, Many),
    code(
        "status",
        Req,
        &[
            "draft",
            "proposed",
            "active",
            "rejected",
            "inactive",
            "entered-in-error",
        ],
    ),
    c("scope", CC, Req),
    c("category", CC, ReqMany),
    r("patient", PATIENT_REF, Opt),
    p("dateTime", DateTime, Opt),
    r(
        "performer",
        &[
            "Organization",
            "Patient",
            "Practitioner",
            "RelatedPerson",
            "PractitionerRole",
        ],
        Many,
    ),
    r("organization", &["Organization"], Many),
    c(
        "source",
        Ty::Choice(&[
            ("Attachment", ATTACHMENT),
            (
                "Reference",
                Ty::Reference(&[
                    "Consent",
                    "DocumentReference",
                    "Contract",
                    "QuestionnaireResponse",
                ]),
            ),
        ]),
        Opt,
    ),
    c(
        "policy",
        Ty::Backbone(&[p("authority", Uri, Opt), p("uri", Uri, Opt)]),
        Many,
    ),
    c("policyRule", CC, Opt),
    c(
        "verification",
        Ty::Backbone(&[
            p("verified", Boolean, Req),
            r("verifiedWith", &["Patient", "RelatedPerson"], Opt),
            p("verificationDate", DateTime, Opt),
        ]),
        Many,
    ),
    c("provision", Ty::Any, Opt),
];

const PROVENANCE: &[El] = &[
    r("target", ANY_REF, ReqMany),
    c(
        "occurred",
        Ty::Choice(&[("Period", PERIOD), ("DateTime", Ty::Prim(DateTime))]),
        Opt,
    ),
    p("recorded", Instant, Req),
    p("policy", Uri, Many),
    r("location", &["Location"], Opt),
    c("reason", CC, Many),
    c("activity", CC, Opt),
    c(
        "agent",
        Ty::Backbone(&[
            c("type", CC, Opt),
            c("role", CC, Many),
            r("who", WHO_REF, Req),
            r("onBehalfOf", WHO_REF, Opt),
        ]),
        ReqMany,
    ),
    c(
        "entity",
        Ty::Backbone(&[
            code(
                "role",
                Req,
                &["derivation", "revision", "quotation", "source", "removal"],
            ),
            r("what", ANY_REF, Req),
            c("agent", Ty::Any, Many),
        ]),
        Many,
    ),
    c(
        "signature",
        Ty::Backbone(&[
            c("type", CODING, ReqMany),
            p("when", Instant, Req),
            r("who", WHO_REF, Req),
            r("onBehalfOf", WHO_REF, Opt),
            p("targetFormat", Code, Opt),
            p("sigFormat", Code, Opt),
            p("data", Base64Binary, Opt),
        ]),
        Many,
    ),
];

/// The resource types Hearth stores, with their elements (besides [`RESOURCE_BASE`]).
pub const RESOURCES: &[(&str, &[El])] = &[
    ("Patient", PATIENT),
    ("RelatedPerson", RELATED_PERSON),
    ("Practitioner", PRACTITIONER),
    ("Encounter", ENCOUNTER),
    ("Observation", OBSERVATION),
    ("Condition", CONDITION),
    ("AllergyIntolerance", ALLERGY_INTOLERANCE),
    ("MedicationRequest", MEDICATION_REQUEST),
    ("MedicationAdministration", MEDICATION_ADMINISTRATION),
    ("Communication", COMMUNICATION),
    ("Task", TASK),
    ("DocumentReference", DOCUMENT_REFERENCE),
    ("Consent", CONSENT),
    ("Provenance", PROVENANCE),
];

/// The elements of a supported resource type.
pub fn resource(name: &str) -> Option<&'static [El]> {
    RESOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, els)| *els)
}
