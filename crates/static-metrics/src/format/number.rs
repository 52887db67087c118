//! Numbers rendered exactly as the Go reference exposer renders them.
//!
//! Sample values and text-format `le` labels follow Go's `strconv.FormatFloat(v, 'g', -1, 64)`;
//! OpenMetrics `le` labels follow the OpenMetrics "canonical number" rule (the same, plus `.0`
//! on bare integers). Every writer appends to a caller-owned buffer and formats through stack
//! buffers, so encoding a scrape allocates nothing once the output buffer has grown.
//!
//! This file uses `std` only and names nothing under `crate::`, because `build.rs` compiles it
//! too (via `#[path]`) to pre-render `le` labels at build time.

use std::io::Write as _;

// Decimal exponents in `[-4, 6)` print in positional form; anything else uses `d.ddde±XX`.
// Go applies precision 6 to this decision whenever it formats the shortest digits, regardless
// of how many digits there are, which is why `1048576` prints as `1.048576e+06`.
const FIXED_MIN_EXP: i32 = -4;
const FIXED_MAX_EXP_EXCLUSIVE: i32 = 6;

/// Appends `v` in decimal.
///
/// ```
/// let mut out = Vec::new();
/// static_metrics::format::number::write_u64(&mut out, 18_446_744_073_709_551_615);
/// assert_eq!(out, b"18446744073709551615");
/// ```
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    // u64::MAX has 20 digits.
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let mut rest = v;
    loop {
        pos -= 1;
        buf[pos] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Appends `v` in decimal, with a leading `-` when negative.
///
/// `i64::MIN` is handled: its magnitude is taken as a `u64`, which cannot overflow.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Appends `v` exactly as Go's `strconv.FormatFloat(v, 'g', -1, 64)` would, with the
/// exposition-format spellings `+Inf`, `-Inf` and `NaN` for the special values.
///
/// The digits are the shortest that parse back to the same `f64`. Positional form is used for
/// decimal exponents in `[-4, 6)`, exponent form otherwise, with a signed exponent of at
/// least two digits.
///
/// ```
/// use static_metrics::format::number::write_f64;
/// let mut out = Vec::new();
/// for v in [0.005, 1.0, 1e6, 1048576.0, f64::INFINITY] {
///     write_f64(&mut out, v);
///     out.push(b' ');
/// }
/// assert_eq!(out, b"0.005 1 1e+06 1.048576e+06 +Inf ");
/// ```
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    if v == 0.0 {
        out.push(b'0');
        return;
    }

    let mut digits_buf = [0u8; 17];
    let (digits, exp) = shortest_digits(v.abs(), &mut digits_buf);
    if (FIXED_MIN_EXP..FIXED_MAX_EXP_EXCLUSIVE).contains(&exp) {
        write_positional(out, digits, exp);
    } else {
        write_exponential(out, digits, exp);
    }
}

/// Appends `v` as an OpenMetrics canonical number, the form required for `le` and `quantile`
/// label values: [`write_f64`]'s output, plus `.0` when that output is a bare integer.
///
/// Exponent forms stay as they are (`1e+06`, never `1e+06.0`).
///
/// ```
/// use static_metrics::format::number::write_f64_openmetrics;
/// let mut out = Vec::new();
/// for v in [1.0, 100000.0, 1e6, 0.005, f64::INFINITY] {
///     write_f64_openmetrics(&mut out, v);
///     out.push(b' ');
/// }
/// assert_eq!(out, b"1.0 100000.0 1e+06 0.005 +Inf ");
/// ```
pub fn write_f64_openmetrics(out: &mut Vec<u8>, v: f64) {
    let start = out.len();
    write_f64(out, v);
    if v.is_finite() && !out[start..].iter().any(|&b| b == b'.' || b == b'e') {
        out.extend_from_slice(b".0");
    }
}

/// [`write_f64`] into a new `String`; meant for build-time rendering, not the scrape path.
#[must_use]
pub fn format_f64(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_f64(&mut out, v);
    ascii_to_string(out)
}

/// [`write_f64_openmetrics`] into a new `String`; meant for build-time rendering.
#[must_use]
pub fn format_f64_openmetrics(v: f64) -> String {
    let mut out = Vec::with_capacity(26);
    write_f64_openmetrics(&mut out, v);
    ascii_to_string(out)
}

fn ascii_to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("number formatting emits ASCII only")
}

/// Splits a finite, positive `v` into its shortest round-trip significant digits and the
/// decimal exponent of the first digit (`v == 0.d1d2d3… × 10^(exp+1)`).
///
/// Rust's `{:e}` already computes the shortest round-trip digits (the same criterion Go uses),
/// so this only reshapes `d.ddde-N` into a digit string and an integer.
fn shortest_digits(v: f64, digits: &mut [u8; 17]) -> (&[u8], i32) {
    // Longest `{:e}` output for an f64 is 17 digits, a '.', and "e-324": 24 bytes.
    let mut sci = [0u8; 32];
    let len = {
        let mut cursor: &mut [u8] = &mut sci;
        write!(cursor, "{v:e}").expect("32 bytes hold any f64 in {:e} form");
        32 - cursor.len()
    };
    let sci = &sci[..len];

    let mut nd = 0;
    let mut i = 0;
    while i < sci.len() && sci[i] != b'e' {
        if sci[i] != b'.' {
            digits[nd] = sci[i];
            nd += 1;
        }
        i += 1;
    }
    let mut exp: i32 = 0;
    let mut negative = false;
    for &b in &sci[i + 1..] {
        if b == b'-' {
            negative = true;
        } else {
            exp = exp * 10 + i32::from(b - b'0');
        }
    }
    (&digits[..nd], if negative { -exp } else { exp })
}

/// Writes `digits` with the decimal point placed for exponent `exp`, zero-padding on either
/// side as needed (`exp` is small here, so the padding is at most a handful of zeros).
fn write_positional(out: &mut Vec<u8>, digits: &[u8], exp: i32) {
    // Number of digits before the decimal point.
    let int_len = exp + 1;
    if int_len <= 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..-int_len {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
        return;
    }
    let int_len = int_len as usize;
    if digits.len() <= int_len {
        out.extend_from_slice(digits);
        for _ in digits.len()..int_len {
            out.push(b'0');
        }
    } else {
        out.extend_from_slice(&digits[..int_len]);
        out.push(b'.');
        out.extend_from_slice(&digits[int_len..]);
    }
}

/// Writes `d[.ddd]e±XX` with Go's exponent spelling: always signed, at least two digits.
fn write_exponential(out: &mut Vec<u8>, digits: &[u8], exp: i32) {
    out.push(digits[0]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend_from_slice(&digits[1..]);
    }
    out.push(b'e');
    out.push(if exp < 0 { b'-' } else { b'+' });
    let magnitude = exp.unsigned_abs();
    if magnitude < 10 {
        out.push(b'0');
    }
    write_u64(out, u64::from(magnitude));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        format_f64(v)
    }

    fn om(v: f64) -> String {
        format_f64_openmetrics(v)
    }

    #[test]
    fn u64_decimal() {
        for (v, want) in [
            (0u64, "0"),
            (7, "7"),
            (10, "10"),
            (1_000_000, "1000000"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, want.as_bytes(), "{v}");
        }
    }

    #[test]
    fn i64_decimal_including_min() {
        for (v, want) in [
            (0i64, "0"),
            (-1, "-1"),
            (42, "42"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let mut out = Vec::new();
            write_i64(&mut out, v);
            assert_eq!(out, want.as_bytes(), "{v}");
        }
    }

    #[test]
    fn writers_append_without_clearing() {
        let mut out = b"x ".to_vec();
        write_u64(&mut out, 12);
        out.push(b' ');
        write_f64(&mut out, 2.5);
        assert_eq!(out, b"x 12 2.5");
    }

    #[test]
    fn go_examples_from_the_brief() {
        for (v, want) in [
            (0.005, "0.005"),
            (1.0, "1"),
            (2.5, "2.5"),
            (1e6, "1e+06"),
            (1048576.0, "1.048576e+06"),
            (524288.0, "524288"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789.0, "1.23456789e+08"),
            (268435456.0, "2.68435456e+08"),
            (0.0, "0"),
            (-0.0, "-0"),
            (0.25, "0.25"),
            (1e21, "1e+21"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1.0, "-1"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(f(v), want, "formatting {v:e}");
        }
    }

    #[test]
    fn more_go_renderings() {
        for (v, want) in [
            (0.1, "0.1"),
            (0.3, "0.3"),
            (100000.0, "100000"),
            (999999.0, "999999"),
            (1e100, "1e+100"),
            (1e-100, "1e-100"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (0.000123, "0.000123"),
            (1.5e300, "1.5e+300"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (f64::EPSILON, "2.220446049250313e-16"),
            (9007199254740993.0, "9.007199254740992e+15"),
        ] {
            assert_eq!(f(v), want, "formatting {v:e}");
        }
    }

    #[test]
    fn openmetrics_canonical_numbers() {
        for (v, want) in [
            (1.0, "1.0"),
            (10.0, "10.0"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-3.0, "-3.0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(om(v), want, "formatting {v:e}");
        }
    }

    /// The decimal exponent of `v`'s first significant digit, computed independently of the
    /// code under test (from the std formatter's exponent).
    fn decimal_exponent(v: f64) -> i32 {
        let s = format!("{:e}", v.abs());
        s[s.find('e').unwrap() + 1..].parse().unwrap()
    }

    fn check_round_trip(v: f64) {
        let s = f(v);
        let parsed: f64 = match s.as_str() {
            "+Inf" => f64::INFINITY,
            other => other.parse().unwrap_or_else(|e| panic!("{other:?}: {e}")),
        };
        if v.is_nan() {
            assert!(parsed.is_nan(), "{s}");
            return;
        }
        assert_eq!(
            parsed.to_bits(),
            v.to_bits(),
            "{s} does not round-trip {v:e}"
        );
        if v.is_finite() && v != 0.0 {
            let exp = decimal_exponent(v);
            let want_exponent_form = !(-4..6).contains(&exp);
            assert_eq!(
                s.contains('e'),
                want_exponent_form,
                "{s}: exponent form must be used iff exp {exp} < -4 or >= 6"
            );
            if let Some(pos) = s.find('e') {
                let e = &s[pos + 1..];
                assert!(e.starts_with('+') || e.starts_with('-'), "{s}");
                assert!(e.len() >= 3, "{s}: exponent needs two digits");
            }
        }
        let o = om(v);
        assert!(o.starts_with(&s), "{o} extends {s}");
        assert!(o == s || o == format!("{s}.0"), "{o} vs {s}");
        assert!(!o.contains("e") || o == s, "{o}: no .0 after an exponent");
    }

    #[test]
    fn powers_of_ten_round_trip() {
        for exp in -320..=308 {
            let v: f64 = format!("1e{exp}").parse().unwrap();
            check_round_trip(v);
            check_round_trip(-v);
            check_round_trip(v * 3.0);
        }
    }

    #[test]
    fn integers_up_to_2_pow_53_round_trip() {
        let mut v: u64 = 1;
        while v <= 1 << 53 {
            for delta in [0, 1, 7] {
                check_round_trip((v + delta) as f64);
            }
            v = v * 3 / 2 + 1;
        }
        check_round_trip((1u64 << 53) as f64);
        for i in 0..10_000u64 {
            check_round_trip(i as f64);
        }
    }

    #[test]
    fn random_bit_patterns_round_trip() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            // xorshift64: cheap, deterministic, covers every exponent and subnormals.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            check_round_trip(f64::from_bits(state));
        }
    }

    #[test]
    fn exponent_boundaries() {
        assert_eq!(f(999999.9), "999999.9");
        assert_eq!(f(1000000.0), "1e+06");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.000099), "9.9e-05");
        assert_eq!(f(1e-10), "1e-10");
    }
}
