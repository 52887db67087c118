//! The client-certificate policies of the web-configuration file that rustls does not ship:
//! Go's `RequestClientCert` and `RequireAnyClientCert` (a certificate is asked for, or
//! required, but not chained to a CA), and `client_allowed_sans` (the certificate's subject
//! alternative names must contain one of the listed values).
//!
//! "Not chained" never means "not checked": the certificate must parse, and the handshake
//! signature made with its key is verified with the provider's algorithms, so a client still
//! proves it holds the private key of the certificate it presents.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// Accepts any well-formed certificate chain (Go's `RequestClientCert` when `mandatory` is
/// false, `RequireAnyClientCert` when it is true).
pub(crate) struct AnyClientCert {
    mandatory: bool,
    /// The client CA's subjects, if a `client_ca_file` was given: Go sends them in the
    /// certificate request as hints in these modes too.
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    pub(crate) fn new(
        mandatory: bool,
        hints: Vec<DistinguishedName>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> AnyClientCert {
        AnyClientCert {
            mandatory,
            hints,
            algorithms,
        }
    }
}

impl fmt::Debug for AnyClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyClientCert")
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Go parses every certificate of the chain in these modes and refuses a malformed one.
        for cert in std::iter::once(end_entity).chain(intermediates) {
            ParsedCertificate::try_from(cert)?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Wraps the policy's verifier: after it accepted the chain, the end-entity certificate's SANs
/// must contain one of `allowed` (exact, case-sensitive string comparison, as the toolkit's
/// `VerifyPeerCertificate` does over DNS names, e-mail addresses, IP addresses and URIs).
///
/// A client without a certificate is refused: the toolkit's check fails such a handshake too
/// (it reads the first certificate unconditionally), so the certificate is mandatory here.
pub(crate) struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>, allowed: Vec<String>) -> AllowedSans {
        AllowedSans { inner, allowed }
    }
}

impl fmt::Debug for AllowedSans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowedSans")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// Why a client certificate's SANs were refused (carried in rustls' `CertificateError::Other`).
#[derive(Debug)]
struct SanRefused(String);

impl fmt::Display for SanRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SanRefused {}

fn refuse(message: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        SanRefused(message),
    ))))
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity.as_ref()).map_err(|e| {
            refuse(format!(
                "client certificate: cannot read its subject alternative names: {e}"
            ))
        })?;
        if sans.iter().any(|san| self.allowed.contains(san)) {
            return Ok(verified);
        }
        Err(refuse(format!(
            "client certificate SANs {sans:?} contain none of client_allowed_sans {:?}",
            self.allowed
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element: its tag and contents; `input` advances past it. Only what X.509 uses:
/// single-byte tags, definite lengths of up to four bytes.
fn element<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8]), &'static str> {
    let data: &'a [u8] = input;
    let (tag, first, rest) = match data {
        [tag, first, rest @ ..] => (*tag, *first, rest),
        _ => return Err("truncated element"),
    };
    if tag & 0x1f == 0x1f {
        return Err("multi-byte tag");
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("element longer than its container");
    }
    let (contents, after) = rest.split_at(len);
    *input = after;
    Ok((tag, contents))
}

fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<&'a [u8], &'static str> {
    match element(input)? {
        (t, contents) if t == tag => Ok(contents),
        _ => Err(what),
    }
}

const SEQUENCE: u8 = 0x30;
/// 2.5.29.17, id-ce-subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The DNS names, e-mail addresses, IP addresses and URIs of a certificate's subject
/// alternative names, as strings in the form Go's `x509` package gives them (an IPv4 address
/// carried in 16 bytes prints dotted, as Go's `net.IP` does). Other name kinds are skipped.
pub(crate) fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, &'static str> {
    let mut input = der;
    let mut cert = expect(&mut input, SEQUENCE, "not a certificate")?;
    let mut tbs = expect(&mut cert, SEQUENCE, "no tbsCertificate")?;
    let mut names = Vec::new();
    while !tbs.is_empty() {
        // extensions: [3] EXPLICIT SEQUENCE OF Extension
        let (tag, contents) = element(&mut tbs)?;
        if tag != 0xa3 {
            continue;
        }
        let mut inner = contents;
        let mut extensions = expect(&mut inner, SEQUENCE, "bad extensions")?;
        while !extensions.is_empty() {
            let mut ext = expect(&mut extensions, SEQUENCE, "bad extension")?;
            let oid = expect(&mut ext, 0x06, "extension without an OID")?;
            let (mut tag, mut value) = element(&mut ext)?;
            if tag == 0x01 {
                (tag, value) = element(&mut ext)?; // the optional `critical` flag
            }
            if tag != 0x04 {
                return Err("extension value is not an OCTET STRING");
            }
            if oid != SUBJECT_ALT_NAME {
                continue;
            }
            let mut general = expect(&mut value, SEQUENCE, "bad GeneralNames")?;
            while !general.is_empty() {
                let (tag, name) = element(&mut general)?;
                let text = |name: &[u8]| {
                    std::str::from_utf8(name)
                        .map(str::to_string)
                        .map_err(|_| "a SAN is not text")
                };
                match tag {
                    // rfc822Name, dNSName, uniformResourceIdentifier (IA5String, implicit)
                    0x81 | 0x82 | 0x86 => names.push(text(name)?),
                    // iPAddress (OCTET STRING, implicit)
                    0x87 => names.push(match name.len() {
                        4 => Ipv4Addr::new(name[0], name[1], name[2], name[3]).to_string(),
                        16 => {
                            let mut octets = [0u8; 16];
                            octets.copy_from_slice(name);
                            let v6 = Ipv6Addr::from(octets);
                            match v6.to_ipv4_mapped() {
                                Some(v4) => v4.to_string(),
                                None => v6.to_string(),
                            }
                        }
                        _ => return Err("an IP address SAN of a bad length"),
                    }),
                    _ => {}
                }
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        assert!(subject_alt_names(&[]).is_err());
        assert!(subject_alt_names(&[0x30]).is_err());
        assert!(subject_alt_names(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(subject_alt_names(&[0x30, 0x80]).is_err());
        assert!(subject_alt_names(&[0x1f, 0x01, 0x00]).is_err());
        // A certificate-shaped value with a SAN extension cut short at every length.
        let san = [
            0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x11, 0x04, 0x03, 0x30, 0x01, 0x82,
        ];
        let mut ext = vec![0xa3, san.len() as u8 + 2, 0x30, san.len() as u8];
        ext.extend_from_slice(&san);
        let mut tbs = vec![0x30, ext.len() as u8];
        tbs.extend_from_slice(&ext);
        let mut cert = vec![0x30, tbs.len() as u8];
        cert.extend_from_slice(&tbs);
        for n in 0..cert.len() {
            let _ = subject_alt_names(&cert[..n]);
        }
        assert!(subject_alt_names(&cert).is_err());
    }

    #[test]
    fn an_ipv4_mapped_address_prints_as_go_prints_it() {
        let mapped: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1];
        let general = [&[0x87, 16][..], &mapped].concat();
        let names = [&[0x30, general.len() as u8][..], &general].concat();
        let value = [&[0x04, names.len() as u8][..], &names].concat();
        let ext = [&[0x06, 0x03, 0x55, 0x1d, 0x11][..], &value].concat();
        let ext = [&[0x30, ext.len() as u8][..], &ext].concat();
        let exts = [&[0x30, ext.len() as u8][..], &ext].concat();
        let tagged = [&[0xa3, exts.len() as u8][..], &exts].concat();
        let tbs = [&[0x02, 0x01, 0x01][..], &tagged].concat();
        let tbs = [&[0x30, tbs.len() as u8][..], &tbs].concat();
        let cert = [&[0x30, tbs.len() as u8][..], &tbs].concat();
        assert_eq!(subject_alt_names(&cert).unwrap(), vec!["10.0.0.1"]);
    }
}
