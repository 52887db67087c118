//! `METRICS.md`: the reference of every family, generated from the manifest so it cannot
//! drift from what is exported.

use std::fmt::Write;

use super::model::{DomainKind, Kind, Manifest};
use super::number::format_f64;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Generates `METRICS.md`.
pub fn markdown(m: &Manifest) -> String {
    let mut o = String::new();
    o.push_str("<!-- @generated from metrics.toml by the build; `BLESS=1 cargo test --test codegen` rewrites it. -->\n\n");
    o.push_str("# Metrics reference\n\n");
    let _ = writeln!(
        o,
        "Every family below also carries the constant labels {} on every series.\n",
        m.const_labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let _ = writeln!(o, "{} families.\n", m.families.len());
    let mut subsystems: Vec<&str> = Vec::new();
    for f in &m.families {
        if !subsystems.contains(&f.subsystem.as_str()) {
            subsystems.push(&f.subsystem);
        }
    }
    for subsystem in subsystems {
        let _ = writeln!(o, "## {subsystem}\n");
        o.push_str("| Name | Type | Labels | Buckets | Help |\n|---|---|---|---|---|\n");
        for f in m.families.iter().filter(|f| f.subsystem == subsystem) {
            let labels: Vec<String> = f
                .dims
                .iter()
                .map(|&d| {
                    let d = &m.domains[d];
                    let names = d
                        .labels
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    match &d.kind {
                        DomainKind::Closed(values) => format!(
                            "{names} ∈ {{{}}}",
                            values
                                .iter()
                                .map(|v| format!("`{}`", cell(v)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        DomainKind::Open {
                            max,
                            overflow,
                            removable,
                        } => format!(
                            "{names}: open, at most {max} values, then `{}`{}",
                            overflow.join("`, `"),
                            if *removable {
                                " (slots are freed when series are removed)"
                            } else {
                                ""
                            }
                        ),
                    }
                })
                .collect();
            let buckets = if f.kind.is_histogram() {
                let unit = if f.kind == Kind::HistogramDuration {
                    " (s)"
                } else {
                    ""
                };
                format!(
                    "{}{unit}",
                    f.buckets
                        .iter()
                        .map(|b| format_f64(*b))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} |",
                f.name,
                f.kind.type_name(),
                if labels.is_empty() {
                    "(none)".to_string()
                } else {
                    labels.join("<br>")
                },
                buckets,
                cell(&f.help)
            );
        }
        o.push('\n');
    }
    let documented: Vec<_> = m.domains.iter().filter(|d| d.doc.is_some()).collect();
    if !documented.is_empty() {
        o.push_str("## Notes on label domains\n\n");
        for d in documented {
            let _ = writeln!(
                o,
                "- `{}`: {}",
                d.id,
                cell(d.doc.as_deref().unwrap_or_default())
            );
        }
    }
    o
}
