//! Basic-auth users with bcrypt hashes (`basic_auth_users` of the web-configuration file).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Verified credentials kept so that a scraper presenting the same good credentials every
/// scrape does not pay a bcrypt verification (tens of milliseconds) each time; bounded.
const CACHE_LIMIT: usize = 256;

/// The configured users. Checking an unknown user runs bcrypt against a decoy hash of the
/// same cost, so the response time does not tell which users exist.
pub(crate) struct BasicAuth {
    users: BTreeMap<String, String>,
    decoy: String,
    cache: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    pub(crate) fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, String> {
        let mut cost = 4;
        for (user, hash) in &users {
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| format!("user `{user}`: not a bcrypt hash ({e})"))?;
            cost = cost.max(parts.get_cost());
        }
        let decoy = bcrypt::hash("decoy password never matches", cost)
            .map_err(|e| format!("cannot build the decoy hash: {e}"))?;
        Ok(BasicAuth {
            users,
            decoy,
            cache: Mutex::new(HashSet::new()),
        })
    }

    /// Whether an `Authorization` value carries the credentials of a configured user.
    /// CPU-heavy (bcrypt): call it off the async workers.
    pub(crate) fn authorizes(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let hash = self.users.get(&user);
        let key: [u8; 32] = {
            let mut d = Sha256::new();
            d.update(user.as_bytes());
            d.update([0]);
            d.update(&password);
            d.update([0]);
            d.update(hash.map_or("", String::as_str).as_bytes());
            d.finalize().into()
        };
        if hash.is_some() && self.cache.lock().is_ok_and(|c| c.contains(&key)) {
            return true;
        }
        let verified = bcrypt::verify(&password, hash.unwrap_or(&self.decoy)).unwrap_or(false);
        let ok = verified && hash.is_some();
        if ok {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(key);
            }
        }
        ok
    }
}

/// `Basic base64(user:password)`, scheme case-insensitive.
fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = decode_base64(rest.trim())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding (what RFC 7617 clients send).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&got[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> BasicAuth {
        let mut users = BTreeMap::new();
        users.insert("prom".to_string(), bcrypt::hash("s3cret", 4).unwrap());
        BasicAuth::new(users).unwrap()
    }

    #[test]
    fn base64_round_trips_the_rfc_examples() {
        assert_eq!(
            decode_base64("QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            b"Aladdin:open sesame"
        );
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert!(decode_base64("YQ=").is_none());
        assert!(decode_base64("Y===").is_none());
        assert!(decode_base64("YQ==YQ==").is_none());
        assert!(decode_base64("!!!!").is_none());
    }

    #[test]
    fn right_wrong_and_unknown_users() {
        let a = auth();
        // prom:s3cret
        assert!(a.authorizes(Some(b"Basic cHJvbTpzM2NyZXQ=")));
        assert!(a.authorizes(Some(b"basic cHJvbTpzM2NyZXQ="))); // cached path
        assert!(!a.authorizes(Some(b"Basic cHJvbTp3cm9uZw=="))); // prom:wrong
        assert!(!a.authorizes(Some(b"Basic b3RoZXI6czNjcmV0"))); // other:s3cret
        assert!(!a.authorizes(Some(b"Bearer cHJvbTpzM2NyZXQ=")));
        assert!(!a.authorizes(None));
    }

    #[test]
    fn a_non_bcrypt_hash_is_refused_naming_the_user() {
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), "plaintext".to_string());
        let e = BasicAuth::new(users).err().unwrap();
        assert!(e.contains("alice"), "{e}");
    }
}
