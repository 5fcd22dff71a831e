use std::time::Instant;
use store::{DocId, DocWrite, GetOptions, Store};
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let key = vault::Dek::generate().unwrap();
    let s = Store::open(&dir.path().join("x.db"), &key).unwrap();
    s.create_db("b").unwrap();
    let n = 100_000;
    for start in (0..n).step_by(1000) {
        let b: Vec<_> = (start..start + 1000).map(|i| {
            let body = serde_json::json!({
        "resourceType": "Observation",
        "id": format!("obs-{i:08}"),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/p-{:06}", i % 5000)},
        "effectiveDateTime": "2026-11-20T09:30:00Z",
        "valueQuantity": {"value": 60 + (i % 40), "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
        "note": [{"text": "x".repeat(560)}]
    });
            DocWrite::new(DocId::parse(&format!("Observation/obs-{i:08}")).unwrap(), None, body.as_object().cloned().unwrap())
        }).collect();
        s.bulk_docs("b", b, true).unwrap();
    }
    let ids: Vec<DocId> = (0..1_000_000u64).map(|k| DocId::parse(&format!("Observation/obs-{:08}", (k.wrapping_mul(2654435761) % n as u64))).unwrap()).collect();
    let o = GetOptions::default();
    for _ in 0..3 {
        let t = Instant::now();
        for i in &ids { s.get("b", i, &o).unwrap(); }
        eprintln!("{:.0} reads/s", ids.len() as f64 / t.elapsed().as_secs_f64());
    }
}
