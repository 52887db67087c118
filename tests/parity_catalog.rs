//! The generated schema against upstream's catalog: `tests/parity/catalog.txt` lists every
//! family bootjp/elastickv's `monitoring/` package registers at `d9a031d` (name, type, label
//! names, bucket bounds), derived from its Go source. Ours must match it exactly, plus our one
//! self-monitoring family.

use elastickv_metrics::manifest::schema::{DomainKind, FamilyKind};
use elastickv_metrics::manifest::SCHEMA;
use std::collections::BTreeMap;

/// Families we export that upstream does not (documented in the README's divergences).
const OURS_ONLY: &[&str] = &["elastickv_monitoring_source_failures_total"];

/// Bucket bounds compared as numbers (`le` text is Go `%g`, e.g. `1.048576e+06`).
fn numeric<'a>(bounds: impl Iterator<Item = &'a str>) -> String {
    bounds
        .map(|b| {
            let v: f64 = b.parse().unwrap_or_else(|_| panic!("bucket bound {b:?}"));
            format!("{v}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn upstream() -> BTreeMap<String, String> {
    let text = include_str!("parity/catalog.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            assert_eq!(fields.len(), 4, "malformed catalog line {l:?}");
            let buckets = if fields[3] == "-" {
                "-".to_string()
            } else {
                numeric(fields[3].split(','))
            };
            (
                fields[0].to_string(),
                format!("{} {} {} {buckets}", fields[0], fields[1], fields[2]),
            )
        })
        .collect()
}

fn ours() -> BTreeMap<String, String> {
    SCHEMA
        .families
        .iter()
        .filter(|f| !OURS_ONLY.contains(&f.name))
        .map(|f| {
            let labels: Vec<&str> = f
                .dims
                .iter()
                .flat_map(|d| SCHEMA.domains[d.0 as usize].labels.iter().copied())
                .collect();
            let (kind, buckets) = match &f.kind {
                FamilyKind::Counter => ("counter", "-".to_string()),
                FamilyKind::Gauge(_) => ("gauge", "-".to_string()),
                FamilyKind::Histogram(h) => ("histogram", numeric(h.le_text.iter().copied())),
            };
            let labels = if labels.is_empty() {
                "-".to_string()
            } else {
                labels.join(",")
            };
            (
                f.name.to_string(),
                format!("{} {kind} {labels} {buckets}", f.name),
            )
        })
        .collect()
}

#[test]
fn catalog_has_the_97_upstream_families() {
    assert_eq!(upstream().len(), 97);
}

#[test]
fn schema_matches_upstream_catalog_exactly() {
    let up = upstream();
    let ours = ours();
    let missing: Vec<&String> = up.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<&String> = ours.keys().filter(|k| !up.contains_key(*k)).collect();
    let differ: Vec<(&String, &String)> = up
        .iter()
        .filter_map(|(k, v)| ours.get(k).filter(|o| *o != v).map(|o| (v, o)))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "missing: {missing:#?}\nextra: {extra:#?}\ndiffer (upstream, ours): {differ:#?}"
    );
}

#[test]
fn self_monitoring_family_is_the_only_addition() {
    for name in OURS_ONLY {
        assert!(SCHEMA.families.iter().any(|f| f.name == *name), "{name}");
    }
    assert_eq!(SCHEMA.families.len(), 97 + OURS_ONLY.len());
    // Open domains the catalog cannot express (caps) at least exist with an overflow value.
    for d in SCHEMA.domains {
        if let DomainKind::Open { max, overflow, .. } = &d.kind {
            assert!(*max > 0 && !overflow.is_empty(), "{}", d.id);
        }
    }
}
