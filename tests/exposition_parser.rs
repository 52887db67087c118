//! Checks of the strict test parser itself: it must accept what the formats allow and reject
//! what our encoder must never emit, or every round-trip test built on it is meaningless.

#[path = "support/exposition.rs"]
mod exposition;

use exposition::{parse_openmetrics, parse_text};

const GOOD_TEXT: &str = r#"# HELP http_requests_total Total "requests" served.\nSecond line \\ done.
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200"} 1027
http_requests_total{method="POST",code="200"} 3 1395066363000
# a free-form comment is fine in text 0.0.4

# HELP latency_seconds Request latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{route="/a",le="0.005"} 1
latency_seconds_bucket{route="/a",le="1"} 3
latency_seconds_bucket{route="/a",le="1e+06"} 4
latency_seconds_bucket{route="/a",le="+Inf"} 4
latency_seconds_sum{route="/a"} 2.5
latency_seconds_count{route="/a"} 4
latency_seconds_bucket{route="/b",le="0.005"} 0
latency_seconds_bucket{route="/b",le="1"} 0
latency_seconds_bucket{route="/b",le="1e+06"} 0
latency_seconds_bucket{route="/b",le="+Inf"} 0
latency_seconds_sum{route="/b"} 0
latency_seconds_count{route="/b"} 0
# TYPE temperature gauge
temperature{path="C:\\dir",quote="say \"hi\"",nl="a\nb",tab="a	b"} -1.5e-07
temperature{path="x"} NaN
temperature -Inf
untyped_thing +Inf
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.25
rpc_seconds{quantile="0.99"} 1
rpc_seconds_sum 3
rpc_seconds_count 2
# TYPE empty_family gauge
"#;

const GOOD_OM: &str = r#"# TYPE http_requests counter
# HELP http_requests Total \"requests\" served.\nSecond line \\ done.
http_requests_total{code="200"} 1027
http_requests_created{code="200"} 1.7e+09
http_requests_total{code="500"} 0.5 # {trace_id="abc"} 1 1.5e+09
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
# HELP latency_seconds Request latency.
latency_seconds_bucket{le="0.005"} 1
latency_seconds_bucket{le="1.0"} 3 # {trace_id="def"} 0.7
latency_seconds_bucket{le="100000.0"} 3
latency_seconds_bucket{le="1e+06"} 4
latency_seconds_bucket{le="+Inf"} 4
latency_seconds_sum 2.5
latency_seconds_count 4
# TYPE up gauge
up{job="x\"y\\z\nw"} 1
# TYPE legacy unknown
legacy 12
# TYPE no_samples_yet gauge
# EOF
"#;

fn text_error(input: &str) -> String {
    match parse_text(input) {
        Ok(e) => panic!("text input was accepted but must be rejected:\n{input}\n{e:#?}"),
        Err(e) => e,
    }
}

fn om_error(input: &str) -> String {
    match parse_openmetrics(input) {
        Ok(e) => panic!("OpenMetrics input was accepted but must be rejected:\n{input}\n{e:#?}"),
        Err(e) => e,
    }
}

fn assert_mentions(error: &str, line: usize, needle: &str) {
    assert!(
        error.starts_with(&format!("line {line}:")),
        "error should name line {line}: {error}"
    );
    assert!(
        error.contains(needle),
        "error should mention {needle:?}: {error}"
    );
}

// ---- good inputs ------------------------------------------------------------------------------

#[test]
fn text_good_input_parses_into_families() {
    let e = parse_text(GOOD_TEXT).unwrap();
    let names: Vec<&str> = e.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "http_requests_total",
            "latency_seconds",
            "temperature",
            "untyped_thing",
            "rpc_seconds",
            "empty_family"
        ]
    );
    let kinds: Vec<&str> = e.families.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "counter",
            "histogram",
            "gauge",
            "untyped",
            "summary",
            "gauge"
        ]
    );
    assert_eq!(e.series_count(), 2 + 12 + 3 + 1 + 4);
}

#[test]
fn text_help_is_unescaped_with_quotes_literal() {
    let e = parse_text(GOOD_TEXT).unwrap();
    assert_eq!(
        e.family("http_requests_total").unwrap().help.as_deref(),
        Some("Total \"requests\" served.\nSecond line \\ done.")
    );
    assert_eq!(e.family("untyped_thing").unwrap().help, None);
}

#[test]
fn text_label_values_are_unescaped_and_tabs_kept() {
    let e = parse_text(GOOD_TEXT).unwrap();
    let s = e.samples_named("temperature").next().unwrap();
    assert_eq!(s.label("path"), Some("C:\\dir"));
    assert_eq!(s.label("quote"), Some("say \"hi\""));
    assert_eq!(s.label("nl"), Some("a\nb"));
    assert_eq!(s.label("tab"), Some("a\tb"));
    assert_eq!(s.value, -1.5e-7);
    assert_eq!(s.raw_value, "-1.5e-07");
}

#[test]
fn value_needs_the_exact_label_set_in_any_order() {
    let e = parse_text(GOOD_TEXT).unwrap();
    let v = e.value("http_requests_total", &[("code", "200"), ("method", "GET")]);
    assert_eq!(v, Some(1027.0));
    assert_eq!(e.value("http_requests_total", &[("code", "200")]), None);
    assert_eq!(e.value("temperature", &[]), Some(f64::NEG_INFINITY));
    assert_eq!(e.value("untyped_thing", &[]), Some(f64::INFINITY));
    assert!(e.value("temperature", &[("path", "x")]).unwrap().is_nan());
}

#[test]
fn get_matches_a_label_subset_and_refuses_ambiguity() {
    let e = parse_text(GOOD_TEXT).unwrap();
    assert_eq!(
        e.get("http_requests_total", &[("method", "POST")]),
        Some(3.0)
    );
    assert_eq!(e.get("http_requests_total", &[("code", "200")]), None);
    assert_eq!(e.get("http_requests_total", &[("method", "PUT")]), None);
    assert_eq!(
        e.get("latency_seconds_bucket", &[("route", "/a"), ("le", "1")]),
        Some(3.0)
    );
    assert_eq!(
        e.get("latency_seconds_count", &[("route", "/b")]),
        Some(0.0)
    );
}

#[test]
fn samples_named_spans_label_sets() {
    let e = parse_text(GOOD_TEXT).unwrap();
    assert_eq!(e.samples_named("latency_seconds_bucket").count(), 8);
    assert_eq!(e.samples_named("nope").count(), 0);
}

#[test]
fn text_empty_input_is_an_empty_exposition() {
    assert_eq!(parse_text("").unwrap().families.len(), 0);
}

#[test]
fn openmetrics_good_input_parses_into_families() {
    let e = parse_openmetrics(GOOD_OM).unwrap();
    let names: Vec<&str> = e.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "http_requests",
            "latency_seconds",
            "up",
            "legacy",
            "no_samples_yet"
        ]
    );
    let counter = e.family("http_requests").unwrap();
    assert_eq!(counter.kind, "counter");
    assert_eq!(
        counter.help.as_deref(),
        Some("Total \"requests\" served.\nSecond line \\ done.")
    );
    let hist = e.family("latency_seconds").unwrap();
    assert_eq!(hist.unit.as_deref(), Some("seconds"));
    assert_eq!(e.family("legacy").unwrap().kind, "unknown");
    assert_eq!(
        e.value("http_requests_total", &[("code", "500")]),
        Some(0.5)
    );
    assert_eq!(
        e.value("latency_seconds_bucket", &[("le", "1e+06")]),
        Some(4.0)
    );
    assert_eq!(e.value("up", &[("job", "x\"y\\z\nw")]), Some(1.0));
    assert_eq!(e.series_count(), 3 + 7 + 1 + 1);
}

#[test]
fn openmetrics_eof_only_is_an_empty_exposition() {
    assert_eq!(parse_openmetrics("# EOF\n").unwrap().families.len(), 0);
}

#[test]
fn carriage_return_is_literal_in_label_values_and_help() {
    let input = "# HELP a x\ry\na{v=\"1\r2\"} 1\n# EOF\n";
    let e = parse_openmetrics(input).unwrap();
    assert_eq!(e.family("a").unwrap().help.as_deref(), Some("x\ry"));
    assert_eq!(e.get("a", &[("v", "1\r2")]), Some(1.0));
}

#[test]
fn empty_label_value_means_absent() {
    let e = parse_text("x{group=\"\"} 1\n").unwrap();
    assert_eq!(e.value("x", &[]), Some(1.0));
    assert_eq!(e.get("x", &[("group", "")]), Some(1.0));
}

// ---- bad inputs: Prometheus text 0.0.4 ----------------------------------------------------------

#[test]
fn text_rejects_unterminated_last_line() {
    assert_mentions(&text_error("a 1\nb 2"), 2, "not terminated");
}

#[test]
fn text_rejects_duplicate_series() {
    let err = text_error("x{a=\"1\",b=\"2\"} 1\nx{b=\"2\",a=\"1\"} 2\n");
    assert_mentions(&err, 2, "duplicate series");
}

#[test]
fn text_rejects_duplicate_series_differing_only_by_empty_label() {
    assert_mentions(&text_error("x 1\nx{group=\"\"} 2\n"), 2, "duplicate series");
}

#[test]
fn text_rejects_non_contiguous_family() {
    let err = text_error("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"y\"} 2\n");
    assert_mentions(&err, 5, "contiguous");
}

#[test]
fn text_rejects_non_contiguous_histogram_samples() {
    let input = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nother 1\nh_count 1\n";
    assert_mentions(&text_error(input), 5, "contiguous");
}

#[test]
fn text_rejects_family_named_like_an_earlier_histograms_samples() {
    let input =
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# TYPE h_count gauge\n";
    assert_mentions(&text_error(input), 5, "earlier family `h`");
}

#[test]
fn om_rejects_family_seen_again() {
    let input = "# TYPE c counter\nc_total 1\n# TYPE g gauge\ng 1\nc 2\n# EOF\n";
    assert_mentions(&om_error(input), 5, "appears again");
}

#[test]
fn text_rejects_type_after_sample() {
    assert_mentions(
        &text_error("a 1\n# TYPE a gauge\n"),
        2,
        "after the family's first sample",
    );
}

#[test]
fn text_rejects_second_type_line() {
    assert_mentions(
        &text_error("# TYPE a gauge\n# TYPE a counter\na 1\n"),
        2,
        "second # TYPE",
    );
}

#[test]
fn text_rejects_second_help_line() {
    assert_mentions(
        &text_error("# HELP a one\n# HELP a two\na 1\n"),
        2,
        "second # HELP",
    );
}

#[test]
fn text_rejects_unknown_escape_in_label_value() {
    assert_mentions(&text_error("a{x=\"tab\\there\"} 1\n"), 1, "invalid escape");
}

#[test]
fn text_rejects_escaped_quote_in_help() {
    assert_mentions(
        &text_error("# HELP a say \\\"hi\\\"\na 1\n"),
        1,
        "invalid escape",
    );
}

#[test]
fn text_rejects_duplicate_label_name() {
    assert_mentions(
        &text_error("a{x=\"1\",x=\"2\"} 1\n"),
        1,
        "duplicate label name",
    );
}

#[test]
fn text_rejects_invalid_metric_name() {
    assert_mentions(&text_error("9lives 1\n"), 1, "invalid metric name");
}

#[test]
fn text_rejects_invalid_label_name() {
    assert_mentions(
        &text_error("a{my-label=\"1\"} 1\n"),
        1,
        "invalid label name",
    );
}

#[test]
fn text_rejects_trailing_comma_in_labels() {
    assert_mentions(&text_error("a{x=\"1\",} 1\n"), 1, "trailing comma");
}

#[test]
fn text_rejects_rust_spelling_of_infinity() {
    assert_mentions(&text_error("a inf\n"), 1, "invalid value");
}

#[test]
fn text_rejects_count_different_from_inf_bucket() {
    let input =
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n";
    assert_mentions(&text_error(input), 5, "_count 3");
}

#[test]
fn text_rejects_non_cumulative_buckets() {
    let input = "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 4\nh_bucket{le=\"+Inf\"} 5\nh_sum 1\nh_count 5\n";
    assert_mentions(&text_error(input), 3, "cumulative");
}

#[test]
fn text_rejects_unsorted_buckets() {
    let input = "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
    assert_mentions(&text_error(input), 3, "sorted");
}

#[test]
fn text_rejects_histogram_without_inf_bucket() {
    let input = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n";
    assert_mentions(&text_error(input), 2, "+Inf");
}

#[test]
fn text_rejects_histogram_without_sum() {
    let input = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n";
    assert_mentions(&text_error(input), 2, "_sum");
}

#[test]
fn text_rejects_bare_sample_in_histogram_family() {
    assert_mentions(
        &text_error("# TYPE h histogram\nh 1\n"),
        2,
        "does not fit histogram family",
    );
}

// ---- bad inputs: OpenMetrics 1.0 ----------------------------------------------------------------

#[test]
fn om_rejects_blank_line() {
    assert_mentions(&om_error("a 1\n\nb 1\n# EOF\n"), 2, "blank line");
}

#[test]
fn om_rejects_missing_eof() {
    assert!(om_error("a 1\n").contains("missing the final `# EOF`"));
}

#[test]
fn om_rejects_eof_without_final_newline() {
    assert_mentions(&om_error("a 1\n# EOF"), 2, "followed by a final");
}

#[test]
fn om_rejects_content_after_eof() {
    assert_mentions(&om_error("a 1\n# EOF\nb 1\n"), 3, "after `# EOF`");
}

#[test]
fn om_rejects_free_comment_line() {
    assert_mentions(&om_error("# hello\na 1\n# EOF\n"), 1, "no comment lines");
}

#[test]
fn om_rejects_counter_sample_without_total_suffix() {
    assert_mentions(&om_error("# TYPE c counter\nc 1\n# EOF\n"), 2, "`c_total`");
}

#[test]
fn om_rejects_le_that_is_not_canonical() {
    let input = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# EOF\n";
    assert_mentions(&om_error(input), 2, "expected \"1.0\"");
}

#[test]
fn om_rejects_le_with_dot_zero_after_exponent() {
    let input = "# TYPE h histogram\nh_bucket{le=\"1e+06.0\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# EOF\n";
    assert_mentions(&om_error(input), 2, "`le` value");
}

#[test]
fn om_rejects_non_integer_bucket_count() {
    let input = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1.0\nh_sum 1\nh_count 1\n# EOF\n";
    assert_mentions(&om_error(input), 2, "integer");
}

#[test]
fn om_rejects_non_integer_count() {
    let input = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1e0\n# EOF\n";
    assert_mentions(&om_error(input), 4, "integer");
}

#[test]
fn om_rejects_unit_that_is_not_a_suffix() {
    let input = "# TYPE latency gauge\n# UNIT latency seconds\nlatency 1\n# EOF\n";
    assert_mentions(&om_error(input), 2, "not a suffix");
}

#[test]
fn om_rejects_untyped_type_name() {
    assert_mentions(
        &om_error("# TYPE a untyped\na 1\n# EOF\n"),
        1,
        "invalid TYPE",
    );
}

#[test]
fn om_rejects_unescaped_quote_in_help() {
    assert_mentions(
        &om_error("# HELP a say \"hi\"\na 1\n# EOF\n"),
        1,
        "unescaped",
    );
}

#[test]
fn om_rejects_interleaved_metric_points() {
    let input = "# TYPE h histogram\n\
        h_bucket{x=\"1\",le=\"+Inf\"} 1\n\
        h_bucket{x=\"2\",le=\"+Inf\"} 1\n\
        h_sum{x=\"1\"} 1\n\
        h_count{x=\"1\"} 1\n\
        h_sum{x=\"2\"} 1\n\
        h_count{x=\"2\"} 1\n\
        # EOF\n";
    assert_mentions(&om_error(input), 4, "interleaved");
}

#[test]
fn om_rejects_negative_counter() {
    assert_mentions(
        &om_error("# TYPE c counter\nc_total -1\n# EOF\n"),
        2,
        "non-negative",
    );
}

#[test]
fn om_rejects_duplicate_type_metadata() {
    assert_mentions(
        &om_error("# TYPE a gauge\n# TYPE a gauge\na 1\n# EOF\n"),
        2,
        "second # TYPE",
    );
}

#[test]
fn om_rejects_exemplar_on_gauge() {
    assert_mentions(
        &om_error("# TYPE g gauge\ng 1 # {a=\"b\"} 1\n# EOF\n"),
        2,
        "exemplar",
    );
}

// ---- agreement with the crate's number formatter ------------------------------------------------

#[test]
fn crate_rendered_le_values_are_canonical_openmetrics() {
    use elastickv_metrics::format::number::{format_f64, format_f64_openmetrics};
    let bounds = [
        1e-9, 0.0001, 0.005, 0.25, 1.0, 2.5, 10.0, 524288.0, 999999.0, 1e6, 1048576.0, 1e21,
    ];
    let mut om = String::from("# TYPE h histogram\n");
    let mut text = String::from("# TYPE h histogram\n");
    for (i, b) in bounds.iter().enumerate() {
        om.push_str(&format!(
            "h_bucket{{le=\"{}\"}} {i}\n",
            format_f64_openmetrics(*b)
        ));
        text.push_str(&format!("h_bucket{{le=\"{}\"}} {i}\n", format_f64(*b)));
    }
    let n = bounds.len();
    om.push_str(&format!(
        "h_bucket{{le=\"+Inf\"}} {n}\nh_sum 1.5\nh_count {n}\n# EOF\n"
    ));
    text.push_str(&format!(
        "h_bucket{{le=\"+Inf\"}} {n}\nh_sum 1.5\nh_count {n}\n"
    ));
    let om = parse_openmetrics(&om).unwrap();
    let text = parse_text(&text).unwrap();
    assert_eq!(om.samples_named("h_bucket").count(), n + 1);
    assert_eq!(text.get("h_bucket", &[("le", "1e+06")]), Some(9.0));
    assert_eq!(om.get("h_bucket", &[("le", "1.0")]), Some(4.0));
}
