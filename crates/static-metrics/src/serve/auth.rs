//! Bearer-token protection (SPEC 3.17).

use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::body::Body;
use super::ServeError;

/// A configured bearer token, kept only as its SHA-256 digest.
///
/// Requests are checked as SPEC 3.17 describes: the first `Authorization` value is trimmed and
/// split on runs of Unicode whitespace; it must have exactly two parts, the first `Bearer` in
/// any case, the second the token. The check compares SHA-256 digests in constant time, so
/// neither the position of the first differing byte nor the length of the presented token shows
/// in the response time.
///
/// Divergence from the reference: a token with whitespace inside it could never match a header
/// split on whitespace, so [`from_token`](BearerAuth::from_token) rejects it instead of building
/// a server that locks everyone out.
///
/// ```
/// use static_metrics::serve::BearerAuth;
/// let auth = BearerAuth::from_token(" s3cret ").unwrap().expect("protected");
/// assert!(auth.authorizes(Some(b"bearer s3cret")));
/// assert!(!auth.authorizes(Some(b"Bearer other")));
/// assert!(BearerAuth::from_token("   ").unwrap().is_none()); // unprotected
/// assert!(BearerAuth::from_token("two words").is_err());
/// ```
#[derive(Clone)]
pub struct BearerAuth {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the digest: it would let anyone with the logs test guesses offline.
        f.write_str("BearerAuth(..)")
    }
}

impl BearerAuth {
    /// The protection for `token`: `Ok(None)` when it trims to empty (protection disabled, as
    /// in the reference), an error when it has whitespace inside.
    pub fn from_token(token: &str) -> Result<Option<BearerAuth>, ServeError> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(None);
        }
        if token.chars().any(char::is_whitespace) {
            return Err(ServeError::TokenContainsWhitespace);
        }
        Ok(Some(BearerAuth {
            digest: Sha256::digest(token.as_bytes()).into(),
        }))
    }

    /// A protection no token passes: its digest is of no string anyone knows (the refusal
    /// response of basic auth reuses the bearer one).
    #[cfg(feature = "tls")]
    pub(crate) fn refuse_all() -> BearerAuth {
        BearerAuth { digest: [0; 32] }
    }

    /// Whether an `Authorization` header value (`None` when absent) carries this token.
    pub fn authorizes(&self, authorization: Option<&[u8]>) -> bool {
        // A non-UTF-8 byte can never be whitespace nor part of the (UTF-8) token or the ASCII
        // scheme, so such a header could never pass the reference's check either.
        let Ok(value) = std::str::from_utf8(authorization.unwrap_or_default()) else {
            return false;
        };
        let mut parts = value.split_whitespace();
        let (Some(scheme), Some(presented), None) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("Bearer") {
            return false;
        }
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        constant_time_eq(&presented, &self.digest)
    }
}

/// Compares two digests touching every byte whatever the data, so timing reveals nothing.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Applies `auth` to one request: `None` lets it through, `Some` is the 401 to send instead.
pub(super) fn check(
    auth: Option<&BearerAuth>,
    authorization: Option<&HeaderValue>,
) -> Option<Response<Body>> {
    let auth = auth?;
    if auth.authorizes(authorization.map(HeaderValue::as_bytes)) {
        return None;
    }
    let mut response = Response::new(Body::from_static(b"Unauthorized\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: &str) -> BearerAuth {
        BearerAuth::from_token(token).unwrap().unwrap()
    }

    #[test]
    fn t160_absent_header_is_refused() {
        assert!(!auth("secret-token").authorizes(None));
    }

    #[test]
    fn t161_exact_bearer_token_is_accepted() {
        assert!(auth("secret-token").authorizes(Some(b"Bearer secret-token")));
    }

    #[test]
    fn t162_scheme_is_case_insensitive() {
        let a = auth("secret-token");
        assert!(a.authorizes(Some(b"bearer secret-token")));
        assert!(a.authorizes(Some(b"BEARER secret-token")));
        assert!(a.authorizes(Some(b"BeArEr secret-token")));
    }

    #[test]
    fn t163_wrong_token_other_scheme_or_wrong_part_count_is_refused() {
        let a = auth("secret-token");
        for header in [
            &b"Bearer wrong"[..],
            b"Bearer Secret-Token",
            b"Basic c2VjcmV0LXRva2Vu",
            b"Bearer",
            b"Bearer a b",
            b"Bearer secret-token extra",
            b"secret-token",
            b"",
            b"Bearer secret-token\xff",
        ] {
            assert!(
                !a.authorizes(Some(header)),
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn t165_whitespace_runs_around_and_between_parts_are_accepted() {
        let a = auth("secret-token");
        assert!(a.authorizes(Some(b"  Bearer \t  secret-token \t")));
        assert!(a.authorizes(Some("Bearer\u{3000}secret-token".as_bytes())));
    }

    #[test]
    fn t166_configured_token_is_trimmed() {
        assert!(auth(" secret ").authorizes(Some(b"Bearer secret")));
        assert!(auth("\u{a0}secret\t").authorizes(Some(b"Bearer secret")));
    }

    #[test]
    fn t167_empty_or_whitespace_token_disables_protection() {
        for token in ["", " ", "\t\n", "\u{2003}"] {
            assert!(
                BearerAuth::from_token(token).unwrap().is_none(),
                "{token:?}"
            );
        }
        assert!(check(None, None).is_none());
    }

    #[test]
    fn token_with_inner_whitespace_is_rejected_at_build_time() {
        for token in ["two words", "a\tb", "a\u{a0}b"] {
            assert!(matches!(
                BearerAuth::from_token(token),
                Err(ServeError::TokenContainsWhitespace)
            ));
        }
    }

    #[test]
    fn t164_refusal_is_401_with_challenge_and_plain_body() {
        let a = auth("secret-token");
        let response = check(Some(&a), None).expect("refused");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let h = response.headers();
        assert_eq!(h[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(h[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(response.body().bytes(), b"Unauthorized\n");
    }

    #[test]
    fn constant_time_eq_detects_any_single_byte_difference() {
        let a = [7u8; 32];
        assert!(constant_time_eq(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!constant_time_eq(&a, &b), "byte {i}");
        }
    }

    #[test]
    fn debug_output_reveals_nothing() {
        assert_eq!(format!("{:?}", auth("secret")), "BearerAuth(..)");
    }
}
