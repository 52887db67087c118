//! Whether a listen address is reachable beyond loopback (SPEC 3.16), and the refusal to expose
//! an unprotected server there.

use std::net::IpAddr;

use tokio::net::TcpListener;

use super::ServeError;

/// Whether a server listening on `addr` is exposed beyond loopback and so must be protected
/// with a bearer token (SPEC 3.16).
///
/// Anything that is not provably loopback answers `true`: an address without a port, an empty
/// host or a wildcard (`0.0.0.0`, `::`), a hostname other than `localhost` (it could resolve
/// anywhere), a zoned IPv6 literal, or an IPv4 literal with leading zeros.
///
/// `localhost` is matched ASCII case-insensitively. The reference uses Unicode case folding,
/// which would also accept `localhoſt` (long s); such a host cannot resolve, so erring towards
/// "needs a token" is the safe reading.
///
/// ```
/// use static_metrics::serve::address_requires_token;
/// assert!(!address_requires_token("127.0.0.1:9090"));
/// assert!(!address_requires_token("[::1]:9090"));
/// assert!(address_requires_token("0.0.0.0:9090"));
/// assert!(address_requires_token("127.0.0.1")); // no port
/// ```
pub fn address_requires_token(addr: &str) -> bool {
    let Some((host, _port)) = split_host_port(addr.trim()) else {
        return true;
    };
    let host = host.trim();
    if host.is_empty() || host == "0.0.0.0" || host == "::" {
        return true;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    // std's parsers reject leading zeros in IPv4 octets and IPv6 zones, exactly the inputs the
    // spec wants treated as "not an IP".
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => !v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            let mapped_loopback = v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
            !(v6.is_loopback() || mapped_loopback)
        }
        Err(_) => true,
    }
}

/// Refuses to serve on an address reachable beyond loopback without a token.
///
/// A token that trims to empty counts as no token, as it disables protection (SPEC 3.17). Call
/// this before binding; [`bind_listener`] does.
pub fn check_exposure(address: &str, token: &str) -> Result<(), ServeError> {
    if address_requires_token(address) && token.trim().is_empty() {
        return Err(ServeError::TokenRequired {
            address: address.to_string(),
        });
    }
    Ok(())
}

/// Checks the exposure rule for `address` and `token`, then binds a listener on it.
///
/// The address is trimmed first, as [`address_requires_token`] does, so the socket bound is the
/// one that was judged.
pub async fn bind_listener(address: &str, token: &str) -> Result<TcpListener, ServeError> {
    check_exposure(address, token)?;
    TcpListener::bind(address.trim())
        .await
        .map_err(|source| ServeError::Bind {
            address: address.to_string(),
            source,
        })
}

/// [`check_exposure`] knowing the web configuration: beyond loopback, TLS or a credential
/// (bearer token, basic-auth users) is required, and a credential without TLS is allowed with
/// the warning of [`exposure_warning`] logged.
#[cfg(feature = "tls")]
pub fn check_exposure_web(
    address: &str,
    token: &str,
    web: Option<&super::WebConfig>,
) -> Result<(), ServeError> {
    if !address_requires_token(address) {
        return Ok(());
    }
    let tls = web.is_some_and(super::WebConfig::is_tls);
    let credential = !token.trim().is_empty() || web.is_some_and(super::WebConfig::has_basic_auth);
    if !tls && !credential {
        return Err(ServeError::TokenRequired {
            address: address.to_string(),
        });
    }
    if let Some(warning) = exposure_warning(address, token, web) {
        tracing::warn!(address, "{warning}");
    }
    Ok(())
}

/// The warning for serving a credential beyond loopback without TLS, saying why it matters:
/// the bearer token (or basic-auth password) crosses the network in clear text on every
/// scrape. `None` on loopback, under TLS, and without a credential (which
/// [`check_exposure_web`] refuses instead).
///
/// ```
/// use static_metrics::serve::exposure_warning;
/// let w = exposure_warning("0.0.0.0:9090", "secret", None).unwrap();
/// assert!(w.contains("clear text"));
/// assert!(exposure_warning("127.0.0.1:9090", "secret", None).is_none());
/// ```
#[cfg(feature = "tls")]
pub fn exposure_warning(
    address: &str,
    token: &str,
    web: Option<&super::WebConfig>,
) -> Option<String> {
    if !address_requires_token(address) || web.is_some_and(super::WebConfig::is_tls) {
        return None;
    }
    let token = !token.trim().is_empty();
    let basic = web.is_some_and(super::WebConfig::has_basic_auth);
    let what = match (token, basic) {
        (true, true) => "the bearer token and the basic-auth passwords cross",
        (true, false) => "the bearer token crosses",
        (false, true) => "the basic-auth passwords cross",
        (false, false) => return None,
    };
    Some(format!(
        "serving {} beyond loopback without TLS: {what} the network in clear text on every \
         scrape, where anyone on the path can read and replay them; configure \
         tls_server_config in the web configuration file (--web.config.file)",
        address.trim()
    ))
}

/// [`bind_listener`] applying [`check_exposure_web`] instead of [`check_exposure`].
#[cfg(feature = "tls")]
pub async fn bind_listener_web(
    address: &str,
    token: &str,
    web: Option<&super::WebConfig>,
) -> Result<TcpListener, ServeError> {
    check_exposure_web(address, token, web)?;
    TcpListener::bind(address.trim())
        .await
        .map_err(|source| ServeError::Bind {
            address: address.to_string(),
            source,
        })
}

/// `host:port` splitting with the standard rules (those of Go's `net.SplitHostPort`): IPv6
/// literals in brackets, an empty port accepted, the port not validated.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let colon = hostport.rfind(':')?;
    let (host, after_host) = if let Some(rest) = hostport.strip_prefix('[') {
        let close = rest.find(']')? + 1;
        // The bracketed literal must be followed directly by the last colon: `[::1]` has no
        // port, `[::1]x:80` and `[a]:b:c` are malformed.
        if close + 1 != colon {
            return None;
        }
        (&hostport[1..close], close + 1)
    } else {
        let host = &hostport[..colon];
        if host.contains(':') {
            return None; // an unbracketed IPv6 literal: too many colons
        }
        (host, 0)
    };
    let host_start = usize::from(hostport.starts_with('['));
    if hostport[host_start..].contains('[') || hostport[after_host..].contains(']') {
        return None;
    }
    Some((host, &hostport[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_in_brackets_is_still_judged_by_its_address() {
        assert!(!address_requires_token("[127.0.0.1]:80"));
        assert!(address_requires_token("[10.1.2.3]:80"));
    }

    #[test]
    fn padded_host_inside_the_split_is_trimmed() {
        assert!(!address_requires_token("[ ::1 ]:80"));
    }

    #[test]
    fn non_loopback_ipv6_and_compat_forms_need_a_token() {
        assert!(address_requires_token("[2001:db8::1]:80"));
        // IPv4-compatible (not mapped) addresses are not loopback, as in the reference.
        assert!(address_requires_token("[::127.0.0.1]:80"));
    }

    #[test]
    fn localhost_match_is_exact_word_only() {
        assert!(address_requires_token("localhost.localdomain:80"));
        assert!(address_requires_token("my-localhost:80"));
        assert!(address_requires_token("localhoſt:80"));
    }

    #[test]
    fn split_follows_the_standard_rules() {
        assert_eq!(split_host_port("a:1"), Some(("a", "1")));
        assert_eq!(split_host_port("[::1]:"), Some(("::1", "")));
        assert_eq!(split_host_port(":80"), Some(("", "80")));
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("[::1]x:80"), None);
        assert_eq!(split_host_port("[a]:b:c"), None);
        assert_eq!(split_host_port("a]:80"), None);
        assert_eq!(split_host_port("[a[b]:80"), None);
        assert_eq!(split_host_port(""), None);
    }

    #[test]
    fn exposure_without_token_is_refused_with_the_address_in_the_message() {
        let err = check_exposure("0.0.0.0:9090", "  ").unwrap_err();
        assert!(matches!(err, ServeError::TokenRequired { .. }));
        assert!(err.to_string().contains("0.0.0.0:9090"), "{err}");
    }

    #[test]
    fn exposure_with_token_or_on_loopback_is_allowed() {
        assert!(check_exposure("0.0.0.0:9090", "secret").is_ok());
        assert!(check_exposure("127.0.0.1:9090", "").is_ok());
    }
}
