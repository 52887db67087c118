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
    /// Histogram bounds as written in the manifest (seconds or integers).
    pub buckets: Vec<f64>,
}

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

    let buckets = parse_buckets(cx, table, kind, &what, &span, &mut ok);

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
            },
            span,
        )
    })
}

fn parse_buckets(
    cx: &mut Cx<'_>,
    table: &DeTable<'_>,
    kind: Kind,
    what: &str,
    span: &Range<usize>,
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
        cx.error(
            span.clone(),
            format!("{what}: a histogram needs `buckets = [...]`"),
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
