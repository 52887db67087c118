//! Escaping of label values and HELP text, and validation of legacy metric and label names.
//!
//! Text 0.0.4 and OpenMetrics escape label values the same way but differ on HELP: text 0.0.4
//! leaves `"` literal there, OpenMetrics escapes it. Only ASCII bytes are ever escaped, so the
//! writers work on bytes and multi-byte UTF-8 sequences pass through untouched.
//!
//! This file uses `std` only and names nothing under `crate::`, so `build.rs` can compile it
//! too (via `#[path]`) and validate names at build time with the same rules.

/// Appends a label value escaped for either format: `\` → `\\`, `"` → `\"`, LF → `\n`.
///
/// Other bytes, including CR and tabs, are written as they are.
///
/// ```
/// let mut out = Vec::new();
/// static_metrics::format::escape::write_label_value(&mut out, "a\"b\\c\nd");
/// assert_eq!(out, br#"a\"b\\c\nd"#);
/// ```
pub fn write_label_value(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes(), |b| match b {
        b'\\' => Some(b"\\\\"),
        b'"' => Some(b"\\\""),
        b'\n' => Some(b"\\n"),
        _ => None,
    });
}

/// Appends HELP text escaped for Prometheus text 0.0.4: `\` → `\\`, LF → `\n`; `"` stays literal.
///
/// ```
/// let mut out = Vec::new();
/// static_metrics::format::escape::write_help_text(&mut out, "say \"hi\"\\\n");
/// assert_eq!(out, br#"say "hi"\\\n"#);
/// ```
pub fn write_help_text(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes(), |b| match b {
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        _ => None,
    });
}

/// Appends HELP text escaped for OpenMetrics 1.0, whose single `escaped-string` rule also covers
/// `"`: `\` → `\\`, `"` → `\"`, LF → `\n`.
pub fn write_help_openmetrics(out: &mut Vec<u8>, s: &str) {
    write_label_value(out, s);
}

/// Whether `s` is a legacy metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// ```
/// use static_metrics::format::escape::is_valid_metric_name;
/// assert!(is_valid_metric_name("http_requests_total"));
/// assert!(!is_valid_metric_name("2xx_responses"));
/// ```
#[must_use]
pub fn is_valid_metric_name(s: &str) -> bool {
    is_valid_name(s, true)
}

/// Whether `s` is a legacy label name, `[a-zA-Z_][a-zA-Z0-9_]*` (no colons, unlike metric names).
#[must_use]
pub fn is_valid_label_name(s: &str) -> bool {
    is_valid_name(s, false)
}

fn is_valid_name(s: &str, allow_colon: bool) -> bool {
    let bytes = s.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    let head_ok = |b: u8| b.is_ascii_alphabetic() || b == b'_' || (allow_colon && b == b':');
    head_ok(first) && rest.iter().all(|&b| head_ok(b) || b.is_ascii_digit())
}

/// Copies `bytes`, replacing each byte `escape` maps to a sequence.
///
/// Most label values and HELP strings need no escaping, so the common case is one scan and
/// one `extend_from_slice`; otherwise unescaped runs are still copied in bulk.
#[inline]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8], escape: impl Fn(u8) -> Option<&'static [u8]>) {
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(replacement) = escape(b) {
            out.extend_from_slice(&bytes[run_start..i]);
            out.extend_from_slice(replacement);
            run_start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(s: &str) -> String {
        let mut out = Vec::new();
        write_label_value(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn help_text(s: &str) -> String {
        let mut out = Vec::new();
        write_help_text(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn help_om(s: &str) -> String {
        let mut out = Vec::new();
        write_help_openmetrics(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn label_value_escapes_backslash_quote_and_newline() {
        assert_eq!(label(r"C:\dir"), r"C:\\dir");
        assert_eq!(label(r#"say "x""#), r#"say \"x\""#);
        assert_eq!(label("a\nb"), r"a\nb");
        assert_eq!(label("\\\"\n"), r#"\\\"\n"#);
    }

    #[test]
    fn label_value_leaves_other_bytes_alone() {
        assert_eq!(label(""), "");
        assert_eq!(label("plain_value-1.2"), "plain_value-1.2");
        assert_eq!(label("a\rb"), "a\rb");
        assert_eq!(label("a\tb"), "a\tb");
        assert_eq!(label("héllo ✓ 日本"), "héllo ✓ 日本");
        assert_eq!(label("日\n本\""), "日\\n本\\\"");
    }

    #[test]
    fn label_value_appends_to_existing_buffer() {
        let mut out = b"k=\"".to_vec();
        write_label_value(&mut out, "v\"");
        out.push(b'"');
        assert_eq!(out, br#"k="v\"""#);
    }

    #[test]
    fn text_help_keeps_quotes_literal() {
        assert_eq!(help_text(r#"the "fast" path"#), r#"the "fast" path"#);
        assert_eq!(help_text(r"a\b"), r"a\\b");
        assert_eq!(help_text("line1\nline2"), r"line1\nline2");
        assert_eq!(help_text(""), "");
        assert_eq!(help_text("tab\there\rcr"), "tab\there\rcr");
        assert_eq!(help_text("Größe \\ ✓"), r"Größe \\ ✓");
    }

    #[test]
    fn openmetrics_help_escapes_quotes_too() {
        assert_eq!(help_om(r#"the "fast" path"#), r#"the \"fast\" path"#);
        assert_eq!(help_om(r"a\b"), r"a\\b");
        assert_eq!(help_om("line1\nline2"), r"line1\nline2");
        assert_eq!(help_om(""), "");
        assert_eq!(help_om("tab\there\rcr"), "tab\there\rcr");
        assert_eq!(help_om("Größe \" ✓"), "Größe \\\" ✓");
    }

    #[test]
    fn metric_names() {
        for ok in [
            "a",
            "_",
            ":",
            "abc_total",
            "ns:rule:rate5m",
            "A9_:x",
            "__name",
        ] {
            assert!(is_valid_metric_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            "9a",
            "a-b",
            "a.b",
            "a b",
            "métrique",
            "a\n",
            "\ta",
            "a{b}",
        ] {
            assert!(!is_valid_metric_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn label_names() {
        for ok in ["a", "_", "le", "quantile", "A9_x", "__meta"] {
            assert!(is_valid_label_name(ok), "{ok:?}");
        }
        for bad in ["", "9a", "a:b", ":", "a-b", "a.b", "ünï", "a b", "a\t"] {
            assert!(!is_valid_label_name(bad), "{bad:?}");
        }
    }
}
