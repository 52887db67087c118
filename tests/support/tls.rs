//! Shared helpers of the TLS tests and bench: certificates generated on the spot (rcgen), a
//! web-configuration file in a temporary directory, a rustls client, a keep-alive HTTP/1.1
//! client over any stream.
//!
//! Included with `#[path = "support/tls.rs"]` by the TLS tests and the HTTP bench.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rcgen::SanType;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A signed certificate and its key, both PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Leaf {
        self.leaf(&["127.0.0.1", "localhost"], false)
    }

    /// A server certificate whose validity ended in 2001.
    pub fn expired_server(&self) -> Leaf {
        self.leaf(&["127.0.0.1", "localhost"], true)
    }

    pub fn client(&self) -> Leaf {
        self.leaf(&["prometheus"], false)
    }

    pub fn expired_client(&self) -> Leaf {
        self.leaf(&["prometheus"], true)
    }

    /// A client certificate with exactly these subject alternative names.
    pub fn client_with_sans(&self, sans: Vec<SanType>) -> Leaf {
        self.signed(sans, false)
    }

    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        // rcgen's string form: IP literals become iPAddress SANs, the rest dNSName.
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let sans = CertificateParams::new(names).unwrap().subject_alt_names;
        self.signed(sans, expired)
    }

    fn signed(&self, sans: Vec<SanType>, expired: bool) -> Leaf {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, "leaf");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ekv-tls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        // Write-then-rename, as an operator's tooling does, so a reader never sees half a file.
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `server.crt`/`server.key` (and `ca.crt` when given) plus `web.yml` with `extra`
/// lines appended under `tls_server_config`; returns the path of `web.yml`.
pub fn write_web_config(dir: &TempDir, leaf: &Leaf, tls_extra: &str, rest: &str) -> PathBuf {
    dir.write("server.crt", &leaf.cert_pem);
    dir.write("server.key", &leaf.key_pem);
    dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_extra}{rest}"
        ),
    )
}

/// [`write_web_config`] asking for client certificates: `client_ca` (if given) is written to
/// `client-ca.crt` and named as `client_ca_file`, `auth_type` is the `client_auth_type`, and
/// `tls_extra` more lines under `tls_server_config`.
pub fn write_client_auth_config(
    dir: &TempDir,
    server: &Leaf,
    auth_type: &str,
    client_ca: Option<&Ca>,
    tls_extra: &str,
) -> PathBuf {
    let mut tls = format!("  client_auth_type: {auth_type}\n");
    if let Some(ca) = client_ca {
        dir.write("client-ca.crt", &ca.pem());
        tls.push_str("  client_ca_file: client-ca.crt\n");
    }
    tls.push_str(tls_extra);
    write_web_config(dir, server, &tls, "")
}

/// A rustls client configuration trusting `ca_pem`, presenting `client` if given, limited to
/// `versions` (both by default).
pub fn client_config(
    ca_pem: &str,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let versions = if versions.is_empty() {
        rustls::ALL_VERSIONS
    } else {
        versions
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Presents one fixed certificate and signing key, whatever the server asks.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client that presents `cert`'s certificate but signs the handshake with `key`'s private
/// key: a stolen certificate without its key. Every server that asks for a certificate must
/// refuse it, even the modes that do not chain it to a CA.
pub fn forged_client_config(
    ca_pem: &str,
    cert: &Leaf,
    key: &Leaf,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
    let der = PrivateKeyDer::from_pem_slice(key.key_pem.as_bytes()).unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
    let versions = if versions.is_empty() {
        rustls::ALL_VERSIONS
    } else {
        versions
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(Arc::new(FixedClientCert(certified)));
    Arc::new(config)
}

/// Connects and completes a TLS handshake (the error is the client's view of a failure).
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// A parsed response read off a keep-alive connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One GET on a keep-alive connection; the body is read by its Content-Length.
pub async fn get_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    stream.write_all(raw.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = Vec::new();
    let split = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[split + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
