//! The "Process families (opt-in)" section of METRICS.md, rendered from what
//! `static_metrics::process` itself writes: the families are not in the manifest (the
//! generator never sees them), so tests/codegen.rs appends this to the generator's output
//! before comparing with METRICS.md, and the section can only say what a scrape says.
//!
//! Included by path (`#[path = "support/process_doc.rs"] mod process_doc;`).

use static_metrics::encode::Format;
use static_metrics::process::{encode, ProcessStats};

/// The section, from the `# HELP` and `# TYPE` lines the process families are encoded with
/// (every figure present, so every family is written).
pub fn process_section() -> String {
    let stats = ProcessStats {
        cpu_seconds: Some(1.0),
        open_fds: Some(1),
        max_fds: Some(1),
        virtual_memory_bytes: Some(1),
        resident_memory_bytes: Some(1),
        start_time_seconds: Some(1.0),
    };
    let mut text = Vec::new();
    encode(&stats, Format::Text, "", |_| true, &mut text);
    let text = String::from_utf8(text).expect("the text exposition is UTF-8");
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            rows.push((name.to_string(), String::new(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            let row = rows
                .last_mut()
                .expect("# HELP comes first in the text format");
            assert_eq!(row.0, name, "TYPE after the HELP of its own family");
            row.1 = kind.to_string();
        }
    }
    assert_eq!(rows.len(), 6, "six process families:\n{text}");
    let mut out = String::from(
        "\n## Process families (opt-in)\n\n\
         Not in the manifest: written by `static_metrics::process` when a registry opts in \
         (`Registry::set_process_metrics(true)`; the elastickv registry: \
         `registry.metrics().set_process_metrics(true)`; the demo node: `--process-metrics`), \
         after the registry's own families and with its constant labels. Names, types and help \
         texts are those of Prometheus's process collector (client_golang), so dashboards for \
         Go services work unchanged; read from `/proc` at scrape time, Linux only. This \
         section is rendered from the families' own `# HELP` and `# TYPE` lines \
         (tests/support/process_doc.rs). A list rather than a table: the tables above are \
         the manifest's families, which tests count.\n\n",
    );
    for (name, kind, help) in rows {
        out.push_str(&format!("- `{name}` ({kind}): {help}\n"));
    }
    out
}
