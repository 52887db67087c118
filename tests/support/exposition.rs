//! A strict parser for Prometheus text 0.0.4 and OpenMetrics 1.0 expositions, for tests.
//!
//! Integration tests include it with `#[path = "support/exposition.rs"] mod exposition;`.
//! It is deliberately stricter than Prometheus: anything our encoder should never emit
//! (stray escapes, `inf` instead of `+Inf`, trailing commas, tabs, interleaved families, a
//! histogram whose `+Inf` bucket disagrees with `_count`) is an error, so that a round-trip
//! through this parser is a meaningful check of every scrape. It uses `std` only, and shares
//! no code with the crate under test so that it cannot inherit the encoder's bugs.
//!
//! Errors are `String`s of the form `line N: what is wrong`.

// Each test crate uses a different subset of this module.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

/// A parsed exposition: its families in the order they appeared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    /// Families in exposition order.
    pub families: Vec<Family>,
}

/// One metric family: its metadata and its samples in exposition order.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name as written on its metadata lines (OpenMetrics counters: without
    /// `_total`), or the sample name for a family that has no metadata.
    pub name: String,
    /// Unescaped HELP text; `Some("")` for a HELP line with empty text.
    pub help: Option<String>,
    /// `counter`, `gauge`, `histogram`, `summary`, `untyped` (text default) or `unknown`
    /// (OpenMetrics default).
    pub kind: String,
    /// The OpenMetrics UNIT, if a non-empty one was given.
    pub unit: Option<String>,
    /// The family's samples in exposition order.
    pub samples: Vec<Sample>,
}

/// One sample line (timestamps and exemplars are validated, then dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The full sample name, e.g. `x_bucket`.
    pub name: String,
    /// Labels as written (unescaped), in line order.
    pub labels: Vec<(String, String)>,
    /// The parsed value.
    pub value: f64,
    /// The value token exactly as written.
    pub raw_value: String,
}

impl Sample {
    /// The value of label `name`, if the sample carries it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a Prometheus text format 0.0.4 exposition.
pub fn parse_text(input: &str) -> Result<Exposition, String> {
    let lines: Vec<&str> = input.split('\n').collect();
    let (last, body) = lines.split_last().expect("split yields at least one item");
    if !last.is_empty() {
        return Err(format!(
            "line {}: last line is not terminated by \\n",
            lines.len()
        ));
    }
    Parser::new(Dialect::Text).run(body)
}

/// Parses an OpenMetrics 1.0 exposition, which must end with exactly `# EOF\n`.
pub fn parse_openmetrics(input: &str) -> Result<Exposition, String> {
    let lines: Vec<&str> = input.split('\n').collect();
    let Some(eof) = lines.iter().position(|l| *l == "# EOF") else {
        return Err(format!(
            "line {}: missing the final `# EOF` line",
            lines.len()
        ));
    };
    if eof + 1 == lines.len() {
        return Err(format!(
            "line {}: `# EOF` must be followed by a final \\n",
            eof + 1
        ));
    }
    if eof + 2 != lines.len() || !lines[eof + 1].is_empty() {
        return Err(format!("line {}: content after `# EOF`", eof + 2));
    }
    Parser::new(Dialect::OpenMetrics).run(&lines[..eof])
}

/// Parses an OpenMetrics 1.0 exposition if `openmetrics`, else a text 0.0.4 one (callers
/// pass `format == Format::OpenMetrics`; this file stays free of the crate under test).
pub fn parse_as(openmetrics: bool, input: &str) -> Result<Exposition, String> {
    if openmetrics {
        parse_openmetrics(input)
    } else {
        parse_text(input)
    }
}

impl Exposition {
    /// The family with this name (OpenMetrics counters: the name without `_total`).
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample with exactly this name and label set.
    ///
    /// Label order does not matter and every label of the sample must be given, constant
    /// labels included. As in Prometheus, an empty label value means "label absent" on both
    /// sides, so `x{group=""}` is the same series as `x`.
    pub fn value(&self, sample_name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let owned: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want = normalized(&owned, None);
        self.samples_named(sample_name)
            .find(|s| normalized(&s.labels, None) == want)
            .map(|s| s.value)
    }

    /// The value of the single sample with this name whose labels include every given pair;
    /// `None` if no sample or several samples match.
    ///
    /// A pair with an empty value requires the label to be absent (or empty).
    pub fn get(&self, sample_name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self
            .samples_named(sample_name)
            .filter(|s| labels.iter().all(|(k, v)| s.label(k).unwrap_or("") == *v));
        let first = matching.next()?;
        match matching.next() {
            Some(_) => None,
            None => Some(first.value),
        }
    }

    /// All samples with this exact sample name, in exposition order.
    pub fn samples_named<'a>(
        &'a self,
        sample_name: &'a str,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| f.samples.iter())
            .filter(move |s| s.name == sample_name)
    }

    /// The number of samples (series) in the exposition.
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dialect {
    Text,
    OpenMetrics,
}

type Labels = Vec<(String, String)>;

/// Bookkeeping kept beside each [`Family`] while parsing.
#[derive(Default)]
struct FamilyState {
    first_line: usize,
    has_help: bool,
    has_type: bool,
    has_unit: bool,
    /// Line number of each sample, parallel to `Family::samples`.
    lines: Vec<usize>,
    /// OpenMetrics: the metrics (label sets minus `le`/`quantile`) seen so far, to reject
    /// interleaved metric points.
    metrics_seen: HashSet<Labels>,
    last_metric: Option<Labels>,
}

struct Parser {
    dialect: Dialect,
    families: Vec<Family>,
    states: Vec<FamilyState>,
    family_by_name: HashMap<String, usize>,
    family_of_sample_name: HashMap<String, usize>,
    series: HashMap<(String, Labels), usize>,
    current: Option<usize>,
}

impl Parser {
    fn new(dialect: Dialect) -> Self {
        Parser {
            dialect,
            families: Vec::new(),
            states: Vec::new(),
            family_by_name: HashMap::new(),
            family_of_sample_name: HashMap::new(),
            series: HashMap::new(),
            current: None,
        }
    }

    fn run(mut self, lines: &[&str]) -> Result<Exposition, String> {
        for (i, line) in lines.iter().enumerate() {
            let n = i + 1;
            self.line(n, line).map_err(|e| format!("line {n}: {e}"))?;
        }
        for idx in 0..self.families.len() {
            match self.families[idx].kind.as_str() {
                "histogram" => self.check_histogram(idx)?,
                "summary" => self.check_summary(idx)?,
                _ => {}
            }
        }
        Ok(Exposition {
            families: self.families,
        })
    }

    fn om(&self) -> bool {
        self.dialect == Dialect::OpenMetrics
    }

    fn line(&mut self, n: usize, line: &str) -> Result<(), String> {
        if line.is_empty() {
            return if self.om() {
                Err("blank lines are not allowed in OpenMetrics".into())
            } else {
                Ok(())
            };
        }
        if let Some(rest) = line.strip_prefix('#') {
            for keyword in ["HELP", "TYPE", "UNIT"] {
                if keyword == "UNIT" && !self.om() {
                    // Text 0.0.4 has no UNIT; such a line is an ordinary comment.
                    continue;
                }
                let Some(after) = rest.strip_prefix(' ').and_then(|r| r.strip_prefix(keyword))
                else {
                    continue;
                };
                if after.is_empty() {
                    return Err(format!("`# {keyword}` without a metric name"));
                }
                if let Some(args) = after.strip_prefix(' ') {
                    return self.metadata(n, keyword, args);
                }
            }
            return if self.om() {
                Err(format!(
                    "OpenMetrics allows no comment lines other than HELP, TYPE, UNIT and EOF: {line:?}"
                ))
            } else {
                Ok(())
            };
        }
        self.sample(n, line)
    }

    fn metadata(&mut self, n: usize, keyword: &str, args: &str) -> Result<(), String> {
        let (name, value) = match args.split_once(' ') {
            Some((name, value)) => (name, value),
            None => (args, ""),
        };
        if !valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?} in # {keyword}"));
        }
        let idx = self.family_for_metadata(n, keyword, name)?;
        let om = self.om();
        let state = &mut self.states[idx];
        let family = &mut self.families[idx];
        match keyword {
            "HELP" => {
                if state.has_help {
                    return Err(format!("second # HELP for family `{name}`"));
                }
                state.has_help = true;
                family.help = Some(unescape_help(value, om)?);
            }
            "TYPE" => {
                if state.has_type {
                    return Err(format!("second # TYPE for family `{name}`"));
                }
                state.has_type = true;
                family.kind = match (value, om) {
                    ("counter" | "gauge" | "histogram" | "summary", _) => value.to_string(),
                    ("untyped", false) | ("unknown", true) => value.to_string(),
                    ("info" | "stateset" | "gaugehistogram", true) => {
                        return Err(format!(
                        "TYPE {value} is valid OpenMetrics but not supported by this test parser"
                    ))
                    }
                    _ => return Err(format!("invalid TYPE {value:?} for family `{name}`")),
                };
            }
            "UNIT" => {
                if state.has_unit {
                    return Err(format!("second # UNIT for family `{name}`"));
                }
                state.has_unit = true;
                let unit = unescape_escaped_string(value, true, "UNIT")?;
                if !unit.is_empty() {
                    if !name.ends_with(&format!("_{unit}")) {
                        return Err(format!(
                            "UNIT {unit:?} is not a suffix of the family name `{name}` (OpenMetrics requires `{name}` to end in `_{unit}`)"
                        ));
                    }
                    family.unit = Some(unit);
                }
            }
            _ => unreachable!("only HELP, TYPE and UNIT reach here"),
        }
        Ok(())
    }

    fn family_for_metadata(
        &mut self,
        n: usize,
        keyword: &str,
        name: &str,
    ) -> Result<usize, String> {
        if let Some(cur) = self.current {
            if self.families[cur].name == name {
                if let Some(first) = self.states[cur].lines.first() {
                    return Err(format!(
                        "# {keyword} for `{name}` after the family's first sample (line {first}); metadata must come first"
                    ));
                }
                return Ok(cur);
            }
        }
        if let Some(&idx) = self.family_by_name.get(name) {
            return Err(format!(
                "family `{name}` appears again (first seen on line {}); a family's lines must be contiguous",
                self.states[idx].first_line
            ));
        }
        let owner = self
            .family_of_sample_name
            .get(name)
            .copied()
            .or_else(|| self.earlier_family_owning(name));
        if let Some(idx) = owner {
            return Err(format!(
                "`{name}` names samples of the earlier family `{}` and cannot start a new family",
                self.families[idx].name
            ));
        }
        Ok(self.new_family(n, name))
    }

    fn new_family(&mut self, n: usize, name: &str) -> usize {
        let idx = self.families.len();
        self.families.push(Family {
            name: name.to_string(),
            help: None,
            kind: if self.om() { "unknown" } else { "untyped" }.to_string(),
            unit: None,
            samples: Vec::new(),
        });
        self.states.push(FamilyState {
            first_line: n,
            ..FamilyState::default()
        });
        self.family_by_name.insert(name.to_string(), idx);
        self.current = Some(idx);
        idx
    }

    fn sample(&mut self, n: usize, line: &str) -> Result<(), String> {
        let parsed = parse_sample_line(line, self.dialect)?;
        let idx = self.family_for_sample(n, &parsed.name)?;
        let family = &self.families[idx];
        let suffix = parsed.name[family.name.len()..].to_string();
        self.check_sample_for_kind(&family.kind, &suffix, &parsed)?;

        let key = (parsed.name.clone(), normalized(&parsed.labels, None));
        if let Some(first) = self.series.insert(key, n) {
            return Err(format!(
                "duplicate series `{}` with labels {:?} (first on line {first})",
                parsed.name, parsed.labels
            ));
        }

        if self.om() {
            let per_metric = match family.kind.as_str() {
                "histogram" => Some("le"),
                "summary" => Some("quantile"),
                _ => None,
            };
            let metric = normalized(&parsed.labels, per_metric);
            let state = &mut self.states[idx];
            if state.last_metric.as_ref() != Some(&metric) {
                if !state.metrics_seen.insert(metric.clone()) {
                    return Err(format!(
                        "metric {metric:?} of family `{}` is interleaved with another metric; its points must be contiguous",
                        family.name
                    ));
                }
                state.last_metric = Some(metric);
            }
        }

        self.family_of_sample_name.insert(parsed.name.clone(), idx);
        self.states[idx].lines.push(n);
        self.families[idx].samples.push(Sample {
            name: parsed.name,
            labels: parsed.labels,
            value: parsed.value,
            raw_value: parsed.raw_value,
        });
        Ok(())
    }

    fn family_for_sample(&mut self, n: usize, name: &str) -> Result<usize, String> {
        if let Some(cur) = self.current {
            let family = &self.families[cur];
            let allowed = sample_suffixes(&family.kind, self.dialect);
            if let Some(suffix) = name.strip_prefix(family.name.as_str()) {
                if allowed.contains(&suffix) {
                    return Ok(cur);
                }
                if suffix.is_empty() {
                    let expected: Vec<String> = allowed
                        .iter()
                        .map(|s| format!("`{}{s}`", family.name))
                        .collect();
                    return Err(format!(
                        "sample `{name}` does not fit {} family `{}`; its samples are named {}",
                        family.kind,
                        family.name,
                        expected.join(" or ")
                    ));
                }
            }
        }
        if let Some(&idx) = self.family_of_sample_name.get(name) {
            return Err(format!(
                "sample `{name}` of family `{}` (first seen on line {}) appears again after another family; a family's lines must be contiguous",
                self.families[idx].name, self.states[idx].first_line
            ));
        }
        if let Some(&idx) = self.family_by_name.get(name) {
            return Err(format!(
                "family `{name}` appears again (first seen on line {}); a family's lines must be contiguous",
                self.states[idx].first_line
            ));
        }
        if let Some(idx) = self.earlier_family_owning(name) {
            return Err(format!(
                "sample `{name}` belongs to family `{}` (first seen on line {}), which ended earlier; a family's lines must be contiguous",
                self.families[idx].name, self.states[idx].first_line
            ));
        }
        Ok(self.new_family(n, name))
    }

    /// The already-seen family that a sample named `name` would belong to, if any.
    fn earlier_family_owning(&self, name: &str) -> Option<usize> {
        ["", "_total", "_created", "_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                let &idx = self.family_by_name.get(base)?;
                sample_suffixes(&self.families[idx].kind, self.dialect)
                    .contains(suffix)
                    .then_some(idx)
            })
            .next()
    }

    fn check_sample_for_kind(
        &self,
        kind: &str,
        suffix: &str,
        s: &ParsedSample,
    ) -> Result<(), String> {
        let om = self.om();
        let has = |label: &str| s.labels.iter().any(|(k, _)| k == label);
        if s.exemplar
            && !matches!(
                (kind, suffix),
                ("counter", "_total") | ("histogram", "_bucket")
            )
        {
            return Err(format!(
                "exemplar on `{}`; OpenMetrics allows exemplars only on counter `_total` and histogram `_bucket` samples",
                s.name
            ));
        }
        match (kind, suffix) {
            ("histogram", "_bucket") => {
                let le = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| format!("histogram bucket `{}` has no `le` label", s.name))?;
                let bound = parse_go_float(le)
                    .ok_or_else(|| format!("`le` value {le:?} is not a number"))?;
                if bound.is_nan() {
                    return Err("`le` must not be NaN".into());
                }
                if om {
                    let canonical = canonical_openmetrics(bound);
                    if le != canonical {
                        return Err(format!(
                            "`le` value {le:?} is not an OpenMetrics canonical number; expected {canonical:?}"
                        ));
                    }
                }
                check_count(om, s)
            }
            ("histogram", "_count") | ("summary", "_count") => {
                if has("le") || has("quantile") {
                    return Err(format!("`{}` must not carry `le` or `quantile`", s.name));
                }
                check_count(om, s)
            }
            ("histogram", "_sum") | ("summary", "_sum") => {
                if has("le") || has("quantile") {
                    return Err(format!("`{}` must not carry `le` or `quantile`", s.name));
                }
                Ok(())
            }
            ("summary", "") => {
                let q = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "quantile")
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| {
                        format!("summary sample `{}` has no `quantile` label", s.name)
                    })?;
                let quantile = parse_go_float(q)
                    .ok_or_else(|| format!("`quantile` value {q:?} is not a number"))?;
                if om && q != canonical_openmetrics(quantile) {
                    return Err(format!(
                        "`quantile` value {q:?} is not an OpenMetrics canonical number"
                    ));
                }
                Ok(())
            }
            ("counter", "_total") if om => {
                if s.value.is_nan() || s.value < 0.0 {
                    return Err(format!(
                        "counter `{}` has value {}; OpenMetrics counters must be non-negative and not NaN",
                        s.name, s.raw_value
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_histogram(&self, idx: usize) -> Result<(), String> {
        #[derive(Default)]
        struct Group {
            first_line: usize,
            buckets: Vec<(f64, f64, usize)>,
            sum: bool,
            count: Option<(f64, usize)>,
        }
        let family = &self.families[idx];
        let lines = &self.states[idx].lines;
        let mut order: Vec<Labels> = Vec::new();
        let mut groups: HashMap<Labels, Group> = HashMap::new();
        for (s, &n) in family.samples.iter().zip(lines) {
            let key = normalized(&s.labels, Some("le"));
            let group = groups.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Group {
                    first_line: n,
                    ..Group::default()
                }
            });
            match &s.name[family.name.len()..] {
                "_bucket" => {
                    let le = parse_go_float(s.label("le").unwrap_or_default()).unwrap_or(f64::NAN);
                    if s.value.is_nan() || s.value < 0.0 {
                        return Err(format!(
                            "line {n}: bucket count {} must be a non-negative number",
                            s.raw_value
                        ));
                    }
                    if let Some(&(prev_le, prev_count, prev_line)) = group.buckets.last() {
                        if le <= prev_le {
                            return Err(format!(
                                "line {n}: bucket le={le} is not greater than the previous bucket's le={prev_le} (line {prev_line}); buckets must be sorted by increasing le"
                            ));
                        }
                        if s.value < prev_count {
                            return Err(format!(
                                "line {n}: bucket count {} is below the previous bucket's {prev_count} (line {prev_line}); buckets must be cumulative",
                                s.raw_value
                            ));
                        }
                    }
                    group.buckets.push((le, s.value, n));
                }
                "_sum" => group.sum = true,
                "_count" => group.count = Some((s.value, n)),
                _ => {}
            }
        }
        for key in &order {
            let g = &groups[key];
            let what = format!("histogram `{}` series {key:?}", family.name);
            let Some(&(le, inf_count, inf_line)) = g.buckets.last() else {
                return Err(format!("line {}: {what} has no buckets", g.first_line));
            };
            if le != f64::INFINITY {
                return Err(format!(
                    "line {inf_line}: {what} has no le=\"+Inf\" bucket (last bucket le={le})"
                ));
            }
            let Some((count, count_line)) = g.count else {
                return Err(format!(
                    "line {}: {what} has no `_count` sample",
                    g.first_line
                ));
            };
            if !g.sum {
                return Err(format!(
                    "line {}: {what} has no `_sum` sample",
                    g.first_line
                ));
            }
            if count != inf_count {
                return Err(format!(
                    "line {count_line}: {what} has _count {count} but its +Inf bucket (line {inf_line}) is {inf_count}"
                ));
            }
        }
        Ok(())
    }

    fn check_summary(&self, idx: usize) -> Result<(), String> {
        let family = &self.families[idx];
        let lines = &self.states[idx].lines;
        let mut sums = HashSet::new();
        let mut counts = HashSet::new();
        let mut metrics: Vec<(Labels, usize)> = Vec::new();
        for (s, &n) in family.samples.iter().zip(lines) {
            let key = normalized(&s.labels, Some("quantile"));
            match &s.name[family.name.len()..] {
                "_sum" => {
                    sums.insert(key.clone());
                }
                "_count" => {
                    counts.insert(key.clone());
                }
                _ => {}
            }
            if !metrics.iter().any(|(k, _)| *k == key) {
                metrics.push((key, n));
            }
        }
        for (key, n) in metrics {
            if sums.contains(&key) != counts.contains(&key) {
                return Err(format!(
                    "line {n}: summary `{}` series {key:?} must have both `_sum` and `_count` or neither",
                    family.name
                ));
            }
        }
        Ok(())
    }
}

/// The sample-name suffixes that belong to a family of `kind`.
fn sample_suffixes(kind: &str, dialect: Dialect) -> &'static [&'static str] {
    match (kind, dialect) {
        ("counter", Dialect::OpenMetrics) => &["_total", "_created"],
        ("histogram", Dialect::OpenMetrics) => &["_bucket", "_sum", "_count", "_created"],
        ("histogram", Dialect::Text) => &["_bucket", "_sum", "_count"],
        ("summary", Dialect::OpenMetrics) => &["", "_sum", "_count", "_created"],
        ("summary", Dialect::Text) => &["", "_sum", "_count"],
        _ => &[""],
    }
}

/// OpenMetrics requires integer counts (bucket counts, `_count`) to be written without `.` or
/// an exponent.
fn check_count(om: bool, s: &ParsedSample) -> Result<(), String> {
    if s.value.is_nan() || s.value < 0.0 {
        return Err(format!(
            "`{}` is a count and must be non-negative, got {}",
            s.name, s.raw_value
        ));
    }
    if om && !s.raw_value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is a count and OpenMetrics requires an integer, got {}",
            s.name, s.raw_value
        ));
    }
    Ok(())
}

/// Labels without empty values (Prometheus treats those as absent), without `drop`, sorted.
fn normalized(labels: &[(String, String)], drop: Option<&str>) -> Labels {
    let mut out: Labels = labels
        .iter()
        .filter(|(k, v)| !v.is_empty() && Some(k.as_str()) != drop)
        .cloned()
        .collect();
    out.sort();
    out
}

fn valid_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn valid_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// HELP text: text 0.0.4 knows only `\\` and `\n` (a `"` is literal); OpenMetrics uses its
/// `escaped-string`, where `"` must be escaped too.
fn unescape_help(s: &str, om: bool) -> Result<String, String> {
    if om {
        return unescape_escaped_string(s, true, "HELP");
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                return Err(format!(
                    "invalid escape `\\{other}` in HELP; text 0.0.4 HELP allows only \\\\ and \\n"
                ))
            }
            None => return Err("HELP ends with a lone backslash".into()),
        }
    }
    Ok(out)
}

/// OpenMetrics `escaped-string` (HELP, UNIT): `\\`, `\"`, `\n`; a raw `"` is not allowed.
fn unescape_escaped_string(s: &str, reject_raw_quote: bool, what: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                Some(other) => {
                    return Err(format!(
                        "invalid escape `\\{other}` in {what}; only \\\\, \\\" and \\n are allowed"
                    ))
                }
                None => return Err(format!("{what} ends with a lone backslash")),
            },
            '"' if reject_raw_quote => {
                return Err(format!(
                    "unescaped `\"` in {what}; OpenMetrics requires \\\""
                ))
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

struct ParsedSample {
    name: String,
    labels: Labels,
    value: f64,
    raw_value: String,
    exemplar: bool,
}

/// A cursor over one line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, context: &str) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!(
                "expected `{}` {context} at column {}, found {:?}",
                b as char,
                self.pos + 1,
                self.rest()
            ))
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A space-free token ending at a single space or the end of the line.
    fn token(&mut self, what: &str) -> Result<&'a str, String> {
        let tok = self.take_while(|b| b != b' ');
        if tok.is_empty() {
            return Err(format!(
                "expected {what} at column {} (exactly one space separates fields)",
                self.pos + 1
            ));
        }
        if tok.contains('\t') {
            return Err(format!(
                "tab in {what} {tok:?}; fields are separated by one space"
            ));
        }
        Ok(tok)
    }

    /// `{name="value",...}`: no trailing comma, no spaces, no duplicate names.
    fn labels(&mut self) -> Result<Labels, String> {
        let mut labels: Labels = Vec::new();
        self.expect(b'{', "to open the label set")?;
        if self.eat(b'}') {
            return Ok(labels);
        }
        loop {
            let name = self.take_while(|b| !matches!(b, b'=' | b',' | b'}' | b'"' | b' '));
            if !valid_label_name(name) {
                return Err(format!(
                    "invalid label name {name:?} at column {} (must match [a-zA-Z_][a-zA-Z0-9_]*)",
                    self.pos + 1 - name.len(),
                ));
            }
            self.expect(b'=', "after a label name")?;
            self.expect(b'"', "to open a label value")?;
            let value = self.label_value()?;
            if labels.iter().any(|(k, _)| k == name) {
                return Err(format!("duplicate label name `{name}`"));
            }
            labels.push((name.to_string(), value));
            if self.eat(b'}') {
                return Ok(labels);
            }
            self.expect(b',', "between labels")?;
            if self.peek() == Some(b'}') {
                return Err("trailing comma in label set".into());
            }
        }
    }

    fn label_value(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => {
                        return Err(format!(
                            "invalid escape `\\{other}` in label value; only \\\\, \\\" and \\n are allowed"
                        ))
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        Err("unterminated label value".into())
    }
}

fn parse_sample_line(line: &str, dialect: Dialect) -> Result<ParsedSample, String> {
    let mut cur = Cursor { s: line, pos: 0 };
    let name = cur.take_while(|b| b != b'{' && b != b' ');
    if !valid_metric_name(name) {
        return Err(format!(
            "invalid metric name {name:?} (must match [a-zA-Z_:][a-zA-Z0-9_:]*)"
        ));
    }
    let labels = if cur.peek() == Some(b'{') {
        cur.labels()?
    } else {
        Vec::new()
    };
    cur.expect(b' ', "before the value")?;
    let raw_value = cur.token("a value")?;
    let value = parse_go_float(raw_value).ok_or_else(|| {
        format!(
            "invalid value {raw_value:?} (expected a Go float such as 1, 2.5e-07, +Inf, -Inf, NaN)"
        )
    })?;

    let mut exemplar = false;
    let om = dialect == Dialect::OpenMetrics;
    if cur.eat(b' ') {
        if om && cur.rest().starts_with("# ") {
            parse_exemplar(&mut cur)?;
            exemplar = true;
        } else {
            let ts = cur.token("a timestamp")?;
            check_timestamp(ts, om)?;
            if cur.eat(b' ') {
                if !(om && cur.rest().starts_with("# ")) {
                    return Err(format!(
                        "unexpected text after the timestamp: {:?}",
                        cur.rest()
                    ));
                }
                parse_exemplar(&mut cur)?;
                exemplar = true;
            }
        }
    }
    if cur.peek().is_some() {
        return Err(format!("unexpected trailing text {:?}", cur.rest()));
    }
    Ok(ParsedSample {
        name: name.to_string(),
        labels,
        value,
        raw_value: raw_value.to_string(),
        exemplar,
    })
}

/// `# {labels} value [timestamp]`, with at most 128 code points of label names and values.
fn parse_exemplar(cur: &mut Cursor<'_>) -> Result<(), String> {
    cur.pos += 2;
    let labels = cur.labels()?;
    let chars: usize = labels
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum();
    if chars > 128 {
        return Err(format!(
            "exemplar labels have {chars} code points; at most 128 are allowed"
        ));
    }
    cur.expect(b' ', "before the exemplar value")?;
    let v = cur.token("an exemplar value")?;
    parse_go_float(v).ok_or_else(|| format!("invalid exemplar value {v:?}"))?;
    if cur.eat(b' ') {
        let ts = cur.token("an exemplar timestamp")?;
        check_timestamp(ts, true)?;
    }
    Ok(())
}

/// Text 0.0.4 timestamps are int64 milliseconds; OpenMetrics ones are (float) seconds.
fn check_timestamp(ts: &str, om: bool) -> Result<(), String> {
    let ok = if om {
        parse_go_float(ts).is_some_and(f64::is_finite)
    } else {
        ts.parse::<i64>().is_ok() && !ts.starts_with('+')
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid timestamp {ts:?}"))
    }
}

/// Go `ParseFloat` decimal syntax plus the exposition spellings `+Inf`, `-Inf`, `NaN`.
///
/// Rust's own `parse` also takes `inf`, `infinity` and `nan` in any case; those are the
/// pitfalls an encoder must avoid, so they are rejected here.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" => return Some(f64::INFINITY),
        "-Inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != b.len() {
        return None;
    }
    s.parse().ok()
}

/// The OpenMetrics canonical spelling of `v` (Go `FormatFloat(v, 'g', -1, 64)`, plus `.0` on
/// bare integers), built independently of the crate's encoder from std's shortest digits.
fn canonical_openmetrics(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if v == 0.0 {
        return format!("{sign}0.0");
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = (exp + 1) as usize;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}
