//! Fuzz target `http_headers`: `Accept`, `Accept-Encoding` and `Authorization` handling.
//!
//! `negotiate_format` and `gzip_accepted` get arbitrary header lines and must not panic; they
//! can only choose OpenMetrics or gzip when some clause could ask for it. A bearer token built
//! with `BearerAuth::from_token` must accept exactly the headers a simple model accepts: after
//! trimming, `Bearer` in any ASCII case, at least one whitespace character, then exactly the
//! trimmed token (the header is built around the token half the time, so that acceptance is
//! actually reached).
//!
//! Input: a mode byte, the `Accept` bytes, the `Accept-Encoding` bytes, the token, and the
//! `Authorization` bytes (mode bit 0: the header is those bytes, the trimmed token, then a
//! suffix, instead of the bytes alone). Header bytes are split into lines on `\n`; a line that
//! is not UTF-8 is skipped, as the server skips values it cannot read as text.

use elastickv_metrics::encode::Format;
use elastickv_metrics::serve::{gzip_accepted, negotiate_format, BearerAuth};

use crate::input::Input;

/// Runs one input; panics if a check fails.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();

    let accept = lines(input.bytes());
    let format = negotiate_format(accept.iter().copied());
    if !could_ask(&accept, &["application", "*"]) {
        assert_eq!(format, Format::Text, "OpenMetrics chosen for {accept:?}");
    }
    assert_eq!(negotiate_format(None), Format::Text);

    let accept_encoding = lines(input.bytes());
    let gzip = gzip_accepted(accept_encoding.iter().copied());
    if !could_ask(&accept_encoding, &["gzip", "*"]) {
        assert!(!gzip, "gzip accepted for {accept_encoding:?}");
    }
    assert!(!gzip_accepted(None));

    let token = input.text();
    let built = BearerAuth::from_token(&token);
    let trimmed = token.trim();
    let auth = match built {
        Ok(None) => {
            assert!(trimmed.is_empty(), "token {token:?} disabled protection");
            return;
        }
        Err(_) => {
            assert!(
                trimmed.chars().any(char::is_whitespace),
                "token {token:?} refused"
            );
            return;
        }
        Ok(Some(auth)) => {
            assert!(
                !trimmed.is_empty() && !trimmed.chars().any(char::is_whitespace),
                "token {token:?} accepted"
            );
            auth
        }
    };

    let mut header = input.bytes().to_vec();
    if mode & 1 != 0 {
        header.extend_from_slice(trimmed.as_bytes());
        header.extend_from_slice(input.bytes());
    }
    assert!(!auth.authorizes(None), "absent header accepted");
    assert_eq!(
        auth.authorizes(Some(&header)),
        model_authorizes(&header, trimmed),
        "token {trimmed:?}, header {:?}",
        String::from_utf8_lossy(&header)
    );
}

/// The UTF-8 lines of a header's bytes.
fn lines(bytes: &[u8]) -> Vec<&str> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect()
}

/// Whether any line mentions one of `needles` (ASCII case-insensitively): a header that
/// mentions none of them cannot ask for the non-default choice.
fn could_ask(lines: &[&str], needles: &[&str]) -> bool {
    lines.iter().any(|line| {
        let line = line.to_ascii_lowercase();
        needles.iter().any(|n| line.contains(n))
    })
}

/// The rule, stated directly: the trimmed header is `Bearer` (ASCII case-insensitive), then
/// at least one whitespace character, then exactly `token` (which has no whitespace).
fn model_authorizes(header: &[u8], token: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    let header = header.trim();
    let Some((scheme, rest)) = header.split_at_checked(6) else {
        return false;
    };
    let credentials = rest.trim_start();
    scheme.eq_ignore_ascii_case("bearer") && credentials.len() < rest.len() && credentials == token
}
