//! Parsing and validating `metrics.toml` into a [`Manifest`].
//!
//! Validation never stops at the first problem: every check records a [`Diagnostic`] and goes
//! on, so one build shows everything that is wrong with the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::emit::camel;
use static_metrics::format::escape::{is_valid_label_name, is_valid_metric_name};

/// Largest `max` an open domain may declare.
const MAX_OPEN_SLOTS: i64 = 1 << 20;
/// Largest number of series slots one family may span (memory is fixed by the manifest).
const MAX_FAMILY_SERIES: u64 = 1 << 22;

/// One problem in the manifest, located by line and column (both 1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metrics.toml:{}:{}: error: {}",
            self.line, self.col, self.message
        )
    }
}

/// A validated manifest.
#[derive(Debug)]
pub struct Manifest {
    /// Constant labels carried by every series.
    pub const_labels: Vec<String>,
    /// Label domains, sorted by id.
    pub domains: Vec<Domain>,
    /// Families in manifest order.
    pub families: Vec<Family>,
}

/// A validated label domain.
#[derive(Debug)]
pub struct Domain {
    /// Manifest id (snake_case).
    pub id: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Closed values or open budget.
    pub kind: DomainKind,
    /// Free text for the reference documentation.
    pub doc: Option<String>,
}

/// Closed or open.
#[derive(Debug)]
pub enum DomainKind {
    /// Values fixed at build time.
    Closed(Vec<String>),
    /// Values admitted at run time.
    Open {
        /// Admissible slots.
        max: u32,
        /// Overflow value per label.
        overflow: Vec<String>,
        /// Whether slots can be freed.
        removable: bool,
    },
}

impl Domain {
    /// Number of indexes a family dimension over this domain spans.
    pub fn cardinality(&self) -> u64 {
        match &self.kind {
            DomainKind::Closed(values) => values.len() as u64,
            DomainKind::Open { max, .. } => u64::from(*max) + 1,
        }
    }
}

/// Family kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// u64 counter.
    Counter,
    /// i64 gauge.
    GaugeInteger,
    /// f64 gauge.
    GaugeFloat,
    /// Histogram of durations (nanoseconds in storage, seconds exported).
    HistogramDuration,
    /// Histogram of durations (nanoseconds in storage, milliseconds exported).
    HistogramDurationMillis,
    /// Histogram of integers.
    HistogramInteger,
}

impl Kind {
    /// The exposition TYPE.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::GaugeInteger | Kind::GaugeFloat => "gauge",
            Kind::HistogramDuration | Kind::HistogramDurationMillis | Kind::HistogramInteger => {
                "histogram"
            }
        }
    }

    /// Whether this is a histogram kind.
    pub fn is_histogram(self) -> bool {
        matches!(
            self,
            Kind::HistogramDuration | Kind::HistogramDurationMillis | Kind::HistogramInteger
        )
    }
}

/// A validated family.
#[derive(Debug)]
pub struct Family {
    /// Exported name.
    pub name: String,
    /// Kind and value type.
    pub kind: Kind,
    /// METRICS.md heading.
    pub subsystem: String,
    /// HELP text.
    pub help: String,
    /// Indexes into [`Manifest::domains`], in label order.
    pub dims: Vec<usize>,
    /// Histogram bounds as written in the manifest (seconds or integers); empty for a
    /// native-only histogram.
    pub buckets: Vec<f64>,
    /// Native (sparse, exponential) buckets, if declared.
    pub native: Option<Native>,
    /// `exemplars = true`: the family keeps a latest-wins exemplar per series (counters) or
    /// per bucket (histograms). Only counters and histograms may declare it.
    pub exemplars: bool,
}

/// The `native = { … }` table of a histogram family.
#[derive(Clone, Debug, PartialEq)]
pub struct Native {
    /// `-4..=8`: `2^schema` buckets per power of two.
    pub schema: i8,
    /// Width of the zero bucket in exported units (seconds or integers).
    pub zero_threshold: f64,
    /// Populated buckets one exposition may carry before resolution is halved (0: no cap).
    pub max_buckets: u32,
}

/// client_golang's `DefNativeHistogramZeroThreshold` (2^-128): only exact zeros fall in it.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938735877055719e-39;
/// Largest number of native cells one series may take (each is a `u64` per shard).
pub const MAX_NATIVE_CELLS: u64 = 4096;
/// Largest number of exemplar slots one family may keep (288 bytes each, not sharded).
const MAX_FAMILY_EXEMPLARS: u64 = 1 << 20;
/// Largest number of cells one family may take in a shard.
const MAX_FAMILY_CELLS: u64 = 1 << 28;

/// Collects diagnostics with positions computed from byte offsets.
struct Cx<'s> {
    source: &'s str,
    diags: Vec<Diagnostic>,
    /// Every domain id declared, valid or not, so a broken domain is reported once (where it
    /// is declared) and not again as unknown in every family that uses it.
    declared: BTreeSet<String>,
}

impl Cx<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = span.start.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.source[line_start..offset].chars().count() + 1;
        self.diags.push(Diagnostic {
            line,
            col,
            message: message.into(),
        });
    }

    /// Reports keys of `table` that are not in `allowed`.
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                self.error(
                    key.span(),
                    format!(
                        "unknown key `{name}` in {what} (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn string(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    value.span(),
                    format!("{what} must be a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn string_array(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        what: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        match value.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items.iter() {
                    match self.string(item, &format!("each item of {what}")) {
                        Some(s) => out.push((s, item.span())),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            other => {
                self.error(
                    value.span(),
                    format!(
                        "{what} must be an array of strings, found {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }
}

fn get<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

fn key_span(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .keys()
        .find(|k| k.get_ref().as_ref() == key)
        .map(|k| k.span())
}

/// Reads a TOML integer or float as f64.
fn number(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            i64::from_str_radix(&digits, i.radix())
                .ok()
                .map(|v| v as f64)
        }
        DeValue::Float(f) => {
            let text: String = f.as_str().chars().filter(|c| *c != '_').collect();
            match text.as_str() {
                "inf" | "+inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                "nan" | "+nan" | "-nan" => Some(f64::NAN),
                t => t.parse().ok(),
            }
        }
        _ => None,
    }
}

fn is_snake_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Checks a label name declared by a domain or the registry.
fn label_name_problem(name: &str) -> Option<String> {
    if !is_valid_label_name(name) {
        Some(format!(
            "`{name}` is not a valid label name (it must match [a-zA-Z_][a-zA-Z0-9_]*)"
        ))
    } else if name.starts_with("__") {
        Some(format!(
            "label name `{name}` is reserved: names starting with `__` belong to Prometheus"
        ))
    } else if name == "le" || name == "quantile" {
        Some(format!(
            "label name `{name}` is reserved: Prometheus adds it to histogram and summary samples"
        ))
    } else {
        None
    }
}

/// A domain as read, with the spans later checks need.
struct RawDomain {
    domain: Domain,
    span: Range<usize>,
    used: bool,
}

impl Manifest {
    /// Parses and validates a manifest, returning every problem found.
    pub fn parse(source: &str) -> Result<Manifest, Vec<Diagnostic>> {
        let mut cx = Cx {
            source,
            diags: Vec::new(),
            declared: BTreeSet::new(),
        };
        let root = match DeTable::parse(source) {
            Ok(root) => root,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim().to_string();
                cx.error(span, format!("invalid TOML: {message}"));
                return Err(cx.diags);
            }
        };
        let root = root.get_ref();
        cx.check_keys(root, &["registry", "domain", "family"], "the manifest");

        let const_labels = parse_registry(&mut cx, root);
        let mut domains = parse_domains(&mut cx, root, &const_labels);
        let families = parse_families(&mut cx, root, &mut domains);

        for raw in &domains {
            if !raw.used {
                cx.error(
                    raw.span.clone(),
                    format!(
                        "domain `{}` is not used by any family (remove it or reference it in a family's `labels`)",
                        raw.domain.id
                    ),
                );
            }
        }
        check_overflow_collisions(&mut cx, &domains);

        if cx.diags.is_empty() {
            Ok(Manifest {
                const_labels: const_labels.into_iter().map(|(name, _)| name).collect(),
                domains: domains.into_iter().map(|raw| raw.domain).collect(),
                families,
            })
        } else {
            cx.diags.sort_by_key(|d| (d.line, d.col));
            Err(cx.diags)
        }
    }
}

fn parse_registry(cx: &mut Cx<'_>, root: &DeTable<'_>) -> Vec<(String, Range<usize>)> {
    let Some(registry) = get(root, "registry") else {
        cx.error(
            0..0,
            "missing `[registry]` table (it declares `const_labels`)",
        );
        return Vec::new();
    };
    let DeValue::Table(table) = registry.get_ref() else {
        cx.error(registry.span(), "`registry` must be a table");
        return Vec::new();
    };
    cx.check_keys(table, &["const_labels"], "[registry]");
    let Some(value) = get(table, "const_labels") else {
        return Vec::new();
    };
    let labels = cx.string_array(value, "`const_labels`").unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (name, span) in &labels {
        if let Some(problem) = label_name_problem(name) {
            cx.error(span.clone(), problem);
        }
        if !seen.insert(name.clone()) {
            cx.error(
                span.clone(),
                format!("constant label `{name}` is declared twice"),
            );
        }
    }
    labels
}

fn parse_domains(
    cx: &mut Cx<'_>,
    root: &DeTable<'_>,
    const_labels: &[(String, Range<usize>)],
) -> Vec<RawDomain> {
    let Some(value) = get(root, "domain") else {
        return Vec::new();
    };
    let DeValue::Table(table) = value.get_ref() else {
        cx.error(
            value.span(),
            "`domain` must be a table of `[domain.<id>]` tables",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        cx.declared.insert(key.get_ref().to_string());
        let id: &str = key.get_ref();
        if !is_snake_ident(id) {
            cx.error(
                key.span(),
                format!(
                    "domain id `{id}` must be snake_case ([a-z][a-z0-9_]*): it becomes a Rust name"
                ),
            );
        }
        let DeValue::Table(body) = value.get_ref() else {
            cx.error(value.span(), format!("`domain.{id}` must be a table"));
            continue;
        };
        if let Some(domain) = parse_domain(cx, id, key.span(), body, const_labels) {
            out.push(RawDomain {
                domain,
                span: key.span(),
                used: false,
            });
        }
    }
    out
}

fn parse_domain(
    cx: &mut Cx<'_>,
    id: &str,
    span: Range<usize>,
    body: &DeTable<'_>,
    const_labels: &[(String, Range<usize>)],
) -> Option<Domain> {
    let what = format!("[domain.{id}]");
    cx.check_keys(
        body,
        &[
            "label",
            "labels",
            "values",
            "max",
            "overflow",
            "removable",
            "doc",
        ],
        &what,
    );
    let doc = get(body, "doc").and_then(|v| cx.string(v, "`doc`"));

    let labels: Vec<(String, Range<usize>)> = match (get(body, "label"), get(body, "labels")) {
        (Some(_), Some(_)) => {
            cx.error(
                span,
                format!("{what} has both `label` and `labels`: use `label` for one label, `labels` for a tuple"),
            );
            return None;
        }
        (Some(v), None) => vec![(cx.string(v, "`label`")?, v.span())],
        (None, Some(v)) => {
            let labels = cx.string_array(v, "`labels`")?;
            if labels.is_empty() {
                cx.error(
                    v.span(),
                    format!("{what}: `labels` must name at least one label"),
                );
                return None;
            }
            labels
        }
        (None, None) => {
            cx.error(
                span,
                format!("{what} needs `label = \"name\"` (or `labels = [...]` for a tuple)"),
            );
            return None;
        }
    };
    let mut ok = true;
    let mut seen = BTreeSet::new();
    for (name, lspan) in &labels {
        if let Some(problem) = label_name_problem(name) {
            cx.error(lspan.clone(), problem);
            ok = false;
        }
        if const_labels.iter().any(|(c, _)| c == name) {
            cx.error(
                lspan.clone(),
                format!("label `{name}` is a constant label of the registry; a family cannot declare it again"),
            );
            ok = false;
        }
        if !seen.insert(name.as_str()) {
            cx.error(
                lspan.clone(),
                format!("label `{name}` appears twice in {what}"),
            );
            ok = false;
        }
    }

    let values = get(body, "values");
    let max = get(body, "max");
    let overflow = get(body, "overflow");
    let removable = get(body, "removable");
    let kind = match values {
        Some(values) => {
            for (key, present) in [
                ("max", &max),
                ("overflow", &overflow),
                ("removable", &removable),
            ] {
                if present.is_some() {
                    let kspan = key_span(body, key).unwrap_or(span.clone());
                    cx.error(
                        kspan,
                        format!("{what} is closed (it lists `values`), so `{key}` does not apply; remove one or the other"),
                    );
                    ok = false;
                }
            }
            if labels.len() != 1 {
                cx.error(
                    span.clone(),
                    format!("{what}: a closed domain has exactly one label (use `label`)"),
                );
                ok = false;
            }
            let list = cx.string_array(values, "`values`")?;
            if list.is_empty() {
                cx.error(
                    values.span(),
                    format!("{what}: `values` is empty; a closed label needs at least one value"),
                );
                return None;
            }
            let mut seen = BTreeSet::new();
            let mut variants: BTreeMap<String, String> = BTreeMap::new();
            for (value, vspan) in &list {
                if value.is_empty() {
                    cx.error(
                        vspan.clone(),
                        format!("{what}: an empty label value is the same as an absent label; give it a name"),
                    );
                    ok = false;
                }
                if !seen.insert(value.as_str()) {
                    cx.error(
                        vspan.clone(),
                        format!("{what}: value `{value}` is listed twice"),
                    );
                    ok = false;
                    continue;
                }
                let variant = camel(value);
                if let Some(other) = variants.insert(variant.clone(), value.clone()) {
                    cx.error(
                        vspan.clone(),
                        format!("{what}: values `{other}` and `{value}` both become the Rust variant `{variant}`; rename one"),
                    );
                    ok = false;
                }
            }
            DomainKind::Closed(list.into_iter().map(|(v, _)| v).collect())
        }
        None => {
            let Some(max_value) = max else {
                cx.error(
                    span,
                    format!("{what} is open (no `values`) but has no cap: add `max = N` and `overflow = \"...\"` (memory is fixed by the manifest)"),
                );
                return None;
            };
            let max = match max_value.get_ref() {
                DeValue::Integer(_) => match number(max_value.get_ref()) {
                    Some(m) if m >= 1.0 && m <= MAX_OPEN_SLOTS as f64 => m as u32,
                    _ => {
                        cx.error(
                            max_value.span(),
                            format!("{what}: `max` must be between 1 and {MAX_OPEN_SLOTS}"),
                        );
                        return None;
                    }
                },
                other => {
                    cx.error(
                        max_value.span(),
                        format!(
                            "{what}: `max` must be an integer, found {}",
                            other.type_str()
                        ),
                    );
                    return None;
                }
            };
            let Some(overflow_value) = overflow else {
                cx.error(
                    span,
                    format!("{what} has `max` but no `overflow`: name the value that values beyond the cap are counted under"),
                );
                return None;
            };
            let overflow: Vec<(String, Range<usize>)> = match overflow_value.get_ref() {
                DeValue::String(s) => vec![(s.to_string(), overflow_value.span())],
                DeValue::Array(_) => cx.string_array(overflow_value, "`overflow`")?,
                other => {
                    cx.error(
                        overflow_value.span(),
                        format!("{what}: `overflow` must be a string (or an array, one per label), found {}", other.type_str()),
                    );
                    return None;
                }
            };
            if overflow.len() != labels.len() {
                cx.error(
                    overflow_value.span(),
                    format!(
                        "{what}: `overflow` gives {} value(s) for {} label(s)",
                        overflow.len(),
                        labels.len()
                    ),
                );
                return None;
            }
            for (value, vspan) in &overflow {
                if value.is_empty() {
                    cx.error(
                        vspan.clone(),
                        format!("{what}: the overflow value must not be empty (an empty label value is an absent label)"),
                    );
                    ok = false;
                }
            }
            let removable = match removable {
                None => false,
                Some(v) => match v.get_ref() {
                    DeValue::Boolean(b) => *b,
                    other => {
                        cx.error(
                            v.span(),
                            format!(
                                "{what}: `removable` must be true or false, found {}",
                                other.type_str()
                            ),
                        );
                        false
                    }
                },
            };
            DomainKind::Open {
                max,
                overflow: overflow.into_iter().map(|(v, _)| v).collect(),
                removable,
            }
        }
    };
    ok.then(|| Domain {
        id: id.to_string(),
        labels: labels.into_iter().map(|(l, _)| l).collect(),
        kind,
        doc,
    })
}

/// An open domain's overflow value must not also be a closed value of the same label
/// elsewhere: the two series would be indistinguishable in a query.
fn check_overflow_collisions(cx: &mut Cx<'_>, domains: &[RawDomain]) {
    for open in domains {
        let DomainKind::Open { overflow, .. } = &open.domain.kind else {
            continue;
        };
        for (label, value) in open.domain.labels.iter().zip(overflow) {
            for closed in domains {
                if let DomainKind::Closed(values) = &closed.domain.kind {
                    if closed.domain.labels[0] == *label && values.contains(value) {
                        cx.error(
                            open.span.clone(),
                            format!(
                                "overflow value `{value}` of domain `{}` is also a declared value of `{label}` in domain `{}`",
                                open.domain.id, closed.domain.id
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn parse_families(cx: &mut Cx<'_>, root: &DeTable<'_>, domains: &mut [RawDomain]) -> Vec<Family> {
    let Some(value) = get(root, "family") else {
        cx.error(0..0, "no `[[family]]` declared");
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        cx.error(
            value.span(),
            "`family` must be an array of tables (`[[family]]`)",
        );
        return Vec::new();
    };
    let mut families = Vec::new();
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut names: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for item in items.iter() {
        let DeValue::Table(table) = item.get_ref() else {
            cx.error(item.span(), "each `family` entry must be a table");
            continue;
        };
        if let Some((family, span)) = parse_family(cx, item.span(), table, domains) {
            if let Some(first) = names.get(&family.name) {
                let first_line = cx.source[..first.start].matches('\n').count() + 1;
                cx.error(
                    span.clone(),
                    format!(
                        "family `{}` is declared twice (first at line {first_line})",
                        family.name
                    ),
                );
            } else {
                names.insert(family.name.clone(), span.clone());
            }
            families.push(family);
            spans.push(span);
        }
    }
    // Names a histogram or counter exposes besides its own must not belong to another family.
    for (family, span) in families.iter().zip(&spans) {
        let derived: Vec<String> = if family.kind.is_histogram() {
            ["_bucket", "_count", "_sum"]
                .iter()
                .map(|s| format!("{}{s}", family.name))
                .collect()
        } else if family.kind == Kind::Counter {
            // OpenMetrics names a counter's family without `_total`.
            vec![family.name.trim_end_matches("_total").to_string()]
        } else {
            Vec::new()
        };
        for name in derived {
            if let Some(other) = names.get(&name) {
                if other != span {
                    cx.error(
                        span.clone(),
                        format!(
                            "{} `{}` exposes `{name}`, which collides with the family of that name",
                            family.kind.type_name(),
                            family.name
                        ),
                    );
                }
            }
        }
    }
    families
}

fn parse_family(
    cx: &mut Cx<'_>,
    span: Range<usize>,
    table: &DeTable<'_>,
    domains: &mut [RawDomain],
) -> Option<(Family, Range<usize>)> {
    cx.check_keys(
        table,
        &[
            "name",
            "kind",
            "subsystem",
            "help",
            "labels",
            "value",
            "buckets",
            "native",
            "exemplars",
        ],
        "[[family]]",
    );
    let Some(name_value) = get(table, "name") else {
        cx.error(span, "[[family]] has no `name`");
        return None;
    };
    let name = cx.string(name_value, "`name`")?;
    let name_span = name_value.span();
    let what = format!("family `{name}`");
    let mut ok = true;
    if !is_valid_metric_name(&name) {
        cx.error(
            name_span.clone(),
            format!("`{name}` is not a valid metric name (it must match [a-zA-Z_:][a-zA-Z0-9_:]*)"),
        );
        ok = false;
    } else if name.starts_with("__") {
        cx.error(
            name_span.clone(),
            format!("metric name `{name}` is reserved (`__` prefix)"),
        );
        ok = false;
    }

    let required = |cx: &mut Cx<'_>, key: &str| -> Option<String> {
        match get(table, key) {
            Some(v) => {
                let s = cx.string(v, &format!("`{key}`"))?;
                if s.trim().is_empty() {
                    cx.error(v.span(), format!("{what}: `{key}` must not be empty"));
                    None
                } else {
                    Some(s)
                }
            }
            None => {
                cx.error(span.clone(), format!("{what} has no `{key}`"));
                None
            }
        }
    };
    let kind_text = required(cx, "kind");
    let help = required(cx, "help");
    let subsystem = required(cx, "subsystem");
    let kind_text = kind_text?;

    let value = get(table, "value");
    let value_text = match value {
        Some(v) => Some((cx.string(v, "`value`")?, v.span())),
        None => None,
    };
    let kind = match kind_text.as_str() {
        "counter" => {
            if let Some((_, vspan)) = &value_text {
                cx.error(
                    vspan.clone(),
                    format!("{what}: counters are always unsigned integers; remove `value`"),
                );
                ok = false;
            }
            if !name.ends_with("_total") {
                cx.error(
                    name_span.clone(),
                    format!("counter `{name}` must end in `_total` (OpenMetrics requires it)"),
                );
                ok = false;
            }
            Kind::Counter
        }
        "gauge" => {
            match value_text.as_ref().map(|(v, s)| (v.as_str(), s.clone())) {
                Some(("integer", _)) => Kind::GaugeInteger,
                Some(("float", _)) => Kind::GaugeFloat,
                Some((other, vspan)) => {
                    cx.error(vspan, format!("{what}: gauge `value` must be \"integer\" or \"float\", not \"{other}\""));
                    return None;
                }
                None => {
                    cx.error(
                        span.clone(),
                        format!(
                            "{what}: a gauge needs `value = \"integer\"` or `value = \"float\"`"
                        ),
                    );
                    return None;
                }
            }
        }
        "histogram" => {
            match value_text.as_ref().map(|(v, s)| (v.as_str(), s.clone())) {
                Some(("duration", _)) => Kind::HistogramDuration,
                Some(("duration_ms", _)) => Kind::HistogramDurationMillis,
                Some(("integer", _)) => Kind::HistogramInteger,
                Some((other, vspan)) => {
                    cx.error(vspan, format!("{what}: histogram `value` must be \"duration\", \"duration_ms\" or \"integer\", not \"{other}\""));
                    return None;
                }
                None => {
                    cx.error(span.clone(), format!("{what}: a histogram needs `value = \"duration\"` or `value = \"integer\"`"));
                    return None;
                }
            }
        }
        other => {
            let kspan = get(table, "kind").map_or(span.clone(), |v| v.span());
            cx.error(
                kspan,
                format!("{what}: unknown kind `{other}` (expected counter, gauge or histogram)"),
            );
            return None;
        }
    };

    let native = parse_native(cx, table, kind, &what, &mut ok);
    let exemplars = parse_exemplars(cx, table, kind, &what, &mut ok);
    // A broken `native` table is reported once, not again as "no buckets at all".
    let declares_native = get(table, "native").is_some();
    let buckets = parse_buckets(cx, table, kind, &what, &span, declares_native, &mut ok);

    let mut dims = Vec::new();
    if let Some(labels_value) = get(table, "labels") {
        let list = cx.string_array(labels_value, "`labels`")?;
        let mut seen_labels: BTreeSet<String> = BTreeSet::new();
        for (domain_id, dspan) in list {
            let Some(index) = domains.iter().position(|d| d.domain.id == domain_id) else {
                ok = false;
                if cx.declared.contains(&domain_id) {
                    continue;
                }
                cx.error(
                    dspan,
                    format!("{what}: unknown domain `{domain_id}` (declare it as `[domain.{domain_id}]`)"),
                );
                ok = false;
                continue;
            };
            let raw = &mut domains[index];
            raw.used = true;
            if let DomainKind::Open {
                removable: true, ..
            } = raw.domain.kind
            {
                if !matches!(kind, Kind::GaugeInteger | Kind::GaugeFloat) {
                    cx.error(
                        dspan.clone(),
                        format!("{what}: domain `{domain_id}` is removable, which only gauge families may use (a counter's series must never go back)"),
                    );
                    ok = false;
                }
            }
            for label in &raw.domain.labels {
                if !seen_labels.insert(label.clone()) {
                    cx.error(
                        dspan.clone(),
                        format!("{what}: label `{label}` appears twice"),
                    );
                    ok = false;
                }
            }
            dims.push(index);
        }
        let slots: u64 = dims
            .iter()
            .map(|&d| domains[d].domain.cardinality())
            .try_fold(1u64, |acc, c| acc.checked_mul(c))
            .unwrap_or(u64::MAX);
        if ok && slots > MAX_FAMILY_SERIES {
            cx.error(
                labels_value.span(),
                format!("{what} spans {slots} series slots; the limit is {MAX_FAMILY_SERIES} (lower an open domain's `max`)"),
            );
            ok = false;
        }
        if ok && kind.is_histogram() {
            let per = histogram_cells(kind, &buckets, native.as_ref());
            let cells = slots.saturating_mul(per);
            if cells > MAX_FAMILY_CELLS {
                cx.error(
                    labels_value.span(),
                    format!("{what} takes {cells} cells per thread ({slots} series of {per}); the limit is {MAX_FAMILY_CELLS} (lower an open domain's `max`, the native `schema`, or raise `zero_threshold`)"),
                );
                ok = false;
            }
        }
        if ok && exemplars {
            let per = exemplars_per_series(kind, &buckets, native.as_ref());
            let total = slots.saturating_mul(per);
            if total > MAX_FAMILY_EXEMPLARS {
                let espan = get(table, "exemplars").map_or(labels_value.span(), |v| v.span());
                cx.error(
                    espan,
                    format!("{what} would keep {total} exemplar slots ({slots} series of {per}, 288 bytes each); the limit is {MAX_FAMILY_EXEMPLARS} (lower an open domain's `max` or drop `exemplars`)"),
                );
                ok = false;
            }
        }
    }

    (ok && help.is_some() && subsystem.is_some()).then(|| {
        (
            Family {
                name,
                kind,
                subsystem: subsystem.unwrap_or_default(),
                help: help.unwrap_or_default(),
                dims,
                buckets,
                native,
                exemplars,
            },
            span,
        )
    })
}

/// Storage units per exported unit of a histogram kind.
fn scale(kind: Kind) -> f64 {
    match kind {
        Kind::HistogramDuration => 1e9,
        Kind::HistogramDurationMillis => 1e6,
        _ => 1.0,
    }
}

/// Exported units per storage unit (the inverse of [`scale`]), as the literal the generated
/// `NativeDesc::unit` carries, so that build and run time compute the same keys.
pub fn unit(kind: Kind) -> f64 {
    match kind {
        Kind::HistogramDuration => 1e-9,
        Kind::HistogramDurationMillis => 1e-6,
        _ => 1.0,
    }
}

/// The native layout of `native` for `kind`: the zero threshold in storage units, the first
/// key and the number of keys (see `static_metrics::schema::NativeDesc`).
pub fn native_layout(kind: Kind, native: &Native) -> (u64, i32, u32, Vec<u64>) {
    let scale = scale(kind);
    // The literal the generated `NativeDesc::unit` carries, so build and run time agree.
    let unit = unit(kind);
    // `as` saturates: a threshold above every storable value puts everything in the zero bucket.
    let zero_units = (native.zero_threshold * scale).floor() as u64;
    let mantissas = native_mantissas(native.schema);
    let key =
        |v: u64| static_metrics::schema::native_key(native.schema, &mantissas, v as f64 * unit);
    let min_key = key(zero_units.saturating_add(1));
    let max_key = key(u64::MAX);
    let keys = (i64::from(max_key) - i64::from(min_key) + 1).max(1) as u32;
    (zero_units, min_key, keys, mantissas)
}

/// The in-octave boundaries `2^(k/2^schema)`, `k` in `1..2^schema`, as mantissa bits.
pub fn native_mantissas(schema: i8) -> Vec<u64> {
    if schema <= 0 {
        return Vec::new();
    }
    let n = 1u32 << schema;
    (1..n)
        .map(|k| (2f64).powf(f64::from(k) / f64::from(n)).to_bits() & ((1 << 52) - 1))
        .collect()
}

/// Cells one series of a histogram takes (see `static_metrics::schema::HistogramDesc`).
pub fn histogram_cells(kind: Kind, buckets: &[f64], native: Option<&Native>) -> u64 {
    let classic = if native.is_some() && buckets.is_empty() {
        0
    } else {
        buckets.len() as u64 + 1
    };
    let native = native.map_or(0, |n| 1 + u64::from(native_layout(kind, n).2));
    classic + native + 2
}

/// The `exemplars = true|false` key: a boolean, on a counter or histogram (OpenMetrics has
/// exemplars only on counter `_total` and histogram `_bucket` samples).
fn parse_exemplars(
    cx: &mut Cx<'_>,
    table: &DeTable<'_>,
    kind: Kind,
    what: &str,
    ok: &mut bool,
) -> bool {
    let Some(value) = get(table, "exemplars") else {
        return false;
    };
    let DeValue::Boolean(on) = value.get_ref() else {
        cx.error(
            value.span(),
            format!("{what}: `exemplars` must be `true` or `false`"),
        );
        *ok = false;
        return false;
    };
    if *on && !(kind == Kind::Counter || kind.is_histogram()) {
        cx.error(
            value.span(),
            format!("{what}: only counters and histograms have exemplars (OpenMetrics allows them on `_total` and `_bucket` samples only)"),
        );
        *ok = false;
        return false;
    }
    *on
}

/// Exemplar slots one series of a family with `exemplars = true` keeps: one for a counter or a
/// native-only histogram, one per classic bucket (`+Inf` included) otherwise.
pub fn exemplars_per_series(kind: Kind, buckets: &[f64], native: Option<&Native>) -> u64 {
    if !kind.is_histogram() || (native.is_some() && buckets.is_empty()) {
        1
    } else {
        buckets.len() as u64 + 1
    }
}

fn parse_native(
    cx: &mut Cx<'_>,
    table: &DeTable<'_>,
    kind: Kind,
    what: &str,
    ok: &mut bool,
) -> Option<Native> {
    let value = get(table, "native")?;
    if !kind.is_histogram() {
        cx.error(
            value.span(),
            format!("{what}: only histograms have `native` buckets"),
        );
        *ok = false;
        return None;
    }
    let DeValue::Table(body) = value.get_ref() else {
        cx.error(
            value.span(),
            format!("{what}: `native` must be a table, e.g. `native = {{ schema = 3 }}`"),
        );
        *ok = false;
        return None;
    };
    cx.check_keys(
        body,
        &["schema", "zero_threshold", "max_buckets"],
        &format!("the `native` table of {what}"),
    );
    let mut good = true;
    let integer = |v: &Spanned<DeValue<'_>>| match v.get_ref() {
        DeValue::Integer(_) => number(v.get_ref()),
        _ => None,
    };
    let schema = match get(body, "schema") {
        None => {
            cx.error(
                value.span(),
                format!(
                    "{what}: `native` needs `schema` (-4 to 8: 2^schema buckets per power of two)"
                ),
            );
            good = false;
            0
        }
        Some(v) => match integer(v) {
            Some(s) if (-4.0..=8.0).contains(&s) => s as i8,
            _ => {
                cx.error(
                    v.span(),
                    format!("{what}: native `schema` must be an integer from -4 to 8 (2^schema buckets per power of two)"),
                );
                good = false;
                0
            }
        },
    };
    let zero_threshold = match get(body, "zero_threshold") {
        None => DEFAULT_ZERO_THRESHOLD,
        Some(v) => match number(v.get_ref()) {
            Some(z) if z.is_finite() && z >= 0.0 => {
                if z == 0.0 {
                    // Prometheus reads a zero threshold of 0 with no zero count as a classic
                    // histogram; the smallest default keeps it native and changes nothing here.
                    DEFAULT_ZERO_THRESHOLD
                } else {
                    z
                }
            }
            _ => {
                cx.error(
                    v.span(),
                    format!("{what}: native `zero_threshold` must be a finite number >= 0"),
                );
                good = false;
                DEFAULT_ZERO_THRESHOLD
            }
        },
    };
    let max_buckets = match get(body, "max_buckets") {
        None => 0,
        Some(v) => match integer(v) {
            Some(m) if (0.0..=f64::from(u32::MAX)).contains(&m) => m as u32,
            _ => {
                cx.error(
                    v.span(),
                    format!("{what}: native `max_buckets` must be an integer >= 0 (0: no cap)"),
                );
                good = false;
                0
            }
        },
    };
    if !good {
        *ok = false;
        return None;
    }
    let native = Native {
        schema,
        zero_threshold,
        max_buckets,
    };
    let cells = 1 + u64::from(native_layout(kind, &native).2);
    if cells > MAX_NATIVE_CELLS {
        let at = get(body, "schema").map_or(value.span(), |v| v.span());
        cx.error(
            at,
            format!("{what}: native buckets at schema {schema} take {cells} cells per series (limit {MAX_NATIVE_CELLS}); lower `schema` or raise `zero_threshold`"),
        );
        *ok = false;
        return None;
    }
    Some(native)
}

fn parse_buckets(
    cx: &mut Cx<'_>,
    table: &DeTable<'_>,
    kind: Kind,
    what: &str,
    span: &Range<usize>,
    has_native: bool,
    ok: &mut bool,
) -> Vec<f64> {
    let value = get(table, "buckets");
    if !kind.is_histogram() {
        if let Some(v) = value {
            cx.error(v.span(), format!("{what}: only histograms have `buckets`"));
            *ok = false;
        }
        return Vec::new();
    }
    let Some(value) = value else {
        if has_native {
            return Vec::new();
        }
        cx.error(
            span.clone(),
            format!("{what}: a histogram needs `buckets = [...]` (classic) or `native = {{ schema = N }}`, or both"),
        );
        *ok = false;
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        cx.error(
            value.span(),
            format!("{what}: `buckets` must be an array of numbers"),
        );
        *ok = false;
        return Vec::new();
    };
    if items.is_empty() {
        cx.error(
            value.span(),
            format!(
                "{what}: `buckets` is empty; give at least one upper bound (`+Inf` is implicit)"
            ),
        );
        *ok = false;
        return Vec::new();
    }
    let mut out: Vec<f64> = Vec::with_capacity(items.len());
    for item in items.iter() {
        let Some(bound) = number(item.get_ref()) else {
            cx.error(
                item.span(),
                format!(
                    "{what}: bucket bounds must be numbers, found {}",
                    item.get_ref().type_str()
                ),
            );
            *ok = false;
            continue;
        };
        if !bound.is_finite() {
            cx.error(item.span(), format!("{what}: bucket bound {bound} is not finite (`+Inf` is implicit; NaN is never a bound)"));
            *ok = false;
            continue;
        }
        if bound < 0.0 {
            cx.error(
                item.span(),
                format!("{what}: bucket bound {bound} is negative; observations are non-negative"),
            );
            *ok = false;
            continue;
        }
        match kind {
            Kind::HistogramInteger if bound.fract() != 0.0 || bound > 9.0e15 => {
                cx.error(item.span(), format!("{what}: bucket bound {bound} is not an integer, but this histogram observes integers"));
                *ok = false;
                continue;
            }
            Kind::HistogramDurationMillis => {
                let nanos = bound * 1e6;
                if nanos > 1.8e19 || (nanos - nanos.round()).abs() > 1e-6 * nanos.max(1.0) {
                    cx.error(item.span(), format!("{what}: bucket bound {bound} ms is not a whole number of nanoseconds below 584 years"));
                    *ok = false;
                    continue;
                }
            }
            Kind::HistogramDuration => {
                let nanos = bound * 1e9;
                if nanos > 1.8e19 || (nanos - nanos.round()).abs() > 1e-6 * nanos.max(1.0) {
                    cx.error(item.span(), format!("{what}: bucket bound {bound} s is not a whole number of nanoseconds below 584 years"));
                    *ok = false;
                    continue;
                }
            }
            _ => {}
        }
        if let Some(&last) = out.last() {
            if bound == last {
                cx.error(
                    item.span(),
                    format!("{what}: bucket bound {bound} is listed twice"),
                );
                *ok = false;
                continue;
            }
            if bound < last {
                cx.error(
                    item.span(),
                    format!(
                        "{what}: buckets must be sorted ascending ({bound} comes after {last})"
                    ),
                );
                *ok = false;
                continue;
            }
        }
        out.push(bound);
    }
    out
}
