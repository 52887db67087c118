//! The Prometheus exporter web-configuration file (`--web.config.file`, the format of
//! prometheus/exporter-toolkit): TLS, client certificates, bcrypt basic-auth users and extra
//! response headers, re-read when it changes.
//!
//! The file is parsed strictly: an unknown key or a bad value is a [`WebConfigError`] naming
//! it. All five `client_auth_type` values are implemented, and `client_allowed_sans` (see
//! `client_auth.rs`). Divergences from the toolkit, each refused with a clear error rather
//! than ignored: TLS 1.0/1.1 (rustls implements 1.2 and 1.3 only), CBC cipher suites,
//! `CurveP521`, `rate_limit`, and `client_allowed_sans` with `NoClientCert` or an empty list
//! (the toolkit silently checks nothing, or refuses every client). `http_server_config.http2`
//! (default true) decides whether TLS ports offer `h2` next to `http/1.1` over ALPN; plain
//! ports speak HTTP/1.1 only, as Go's server does without TLS.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::ring as provider;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::basic_auth::BasicAuth;
use super::client_auth::{AllowedSans, AnyClientCert};
use super::self_metrics::TlsFailure;

/// Why a web-configuration file could not be used. The message names the file and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    message: String,
}

impl WebConfigError {
    fn new(path: &Path, message: impl fmt::Display) -> Self {
        WebConfigError {
            message: format!("web config {}: {message}", path.display()),
        }
    }
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WebConfigError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers `http_server_config.headers` may set, as the toolkit allows.
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// One loaded configuration; connections take a snapshot of it when they are accepted.
pub(crate) struct Layer {
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) basic: Option<Arc<BasicAuth>>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The files read, with what they looked like, so the watcher sees a change.
    files: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

/// A loaded web-configuration file, shared by a server and its reloader. Cheap to clone.
///
/// ```no_run
/// use static_metrics::serve::WebConfig;
/// let web = WebConfig::load("web-config.yml").expect("valid web config");
/// assert!(web.is_tls());
/// ```
#[derive(Clone)]
pub struct WebConfig {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    current: ArcSwap<Layer>,
    handshake_timeout: Duration,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layer = self.inner.current.load();
        f.debug_struct("WebConfig")
            .field("path", &self.inner.path)
            .field("tls", &layer.tls.is_some())
            .field("basic_auth", &layer.basic.is_some())
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// Reads and validates the file at `path` (and the certificates it names).
    pub fn load(path: impl Into<PathBuf>) -> Result<WebConfig, WebConfigError> {
        Self::load_with(path, Duration::from_secs(10))
    }

    /// [`load`](WebConfig::load) with the bound on a TLS handshake (default 10 s): a client
    /// that has not finished its handshake by then is disconnected, so slow handshakes hold
    /// no resources for long.
    pub fn load_with(
        path: impl Into<PathBuf>,
        handshake_timeout: Duration,
    ) -> Result<WebConfig, WebConfigError> {
        let path = path.into();
        let layer = read_layer(&path)?;
        Ok(WebConfig {
            inner: Arc::new(Inner {
                path,
                current: ArcSwap::from_pointee(layer),
                handshake_timeout,
            }),
        })
    }

    /// The file this configuration is read from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the current configuration serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.inner.current.load().tls.is_some()
    }

    /// Whether the current configuration requires basic-auth credentials.
    pub fn has_basic_auth(&self) -> bool {
        self.inner.current.load().basic.is_some()
    }

    /// Re-reads the file. On success new connections use it (open ones keep theirs); on error
    /// the last good configuration stays and the error is returned.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let layer = read_layer(&self.inner.path)?;
        self.inner.current.store(Arc::new(layer));
        Ok(())
    }

    /// Polls the file and the files it names every `interval` until `cancel`, reloading (and
    /// logging) when any of them changed. A broken new file is logged; the last good
    /// configuration stays.
    ///
    /// The files' state is taken when `watch` is called, not when the returned future first
    /// runs: a change made between spawning the watcher and its first poll (a busy runtime
    /// can delay that) is still seen.
    pub fn watch(
        self,
        interval: Duration,
        cancel: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut seen = self.fingerprint();
        async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let now = self.fingerprint();
                if now != seen {
                    seen = now;
                    self.reload_logged("file changed");
                }
            }
        }
    }

    /// [`reload`](WebConfig::reload) with the outcome logged (for SIGHUP handlers).
    pub fn reload_logged(&self, reason: &str) -> bool {
        match self.reload() {
            Ok(()) => {
                info!(path = %self.inner.path.display(), reason, "web config reloaded");
                true
            }
            Err(e) => {
                error!(reason, error = %e, "web config reload failed; keeping the last good configuration");
                false
            }
        }
    }

    fn fingerprint(&self) -> Vec<Option<(SystemTime, u64)>> {
        let layer = self.inner.current.load();
        std::iter::once(stamp(&self.inner.path))
            .chain(layer.files.iter().map(|(p, _)| stamp(p)))
            .collect()
    }

    pub(crate) fn snapshot(&self) -> Arc<Layer> {
        self.inner.current.load_full()
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.inner.handshake_timeout
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_layer(path: &Path) -> Result<Layer, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::new(path, e))?;
    parse_layer(path, &text)
}

/// Parses `text` (read from `path`; relative file names resolve against its directory, as in
/// the toolkit).
pub(crate) fn parse_layer(path: &Path, text: &str) -> Result<Layer, WebConfigError> {
    let err = |m: String| WebConfigError::new(path, m);
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?
    };
    if file.rate_limit.is_some() {
        return Err(err(
            "`rate_limit` is not supported (use the server's max_concurrent_scrapes)".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    // The toolkit's default: HTTP/2 on, offered over ALPN.
    let http2 = file
        .http_server_config
        .as_ref()
        .and_then(|h| h.http2)
        .unwrap_or(true);
    let tls = match file.tls_server_config {
        Some(tls) => build_tls(base, tls, http2, &mut files).map_err(err)?,
        None => None,
    };
    let basic = match file.basic_auth_users {
        Some(users) if !users.is_empty() => Some(Arc::new(
            BasicAuth::new(users).map_err(|m| err(format!("basic_auth_users: {m}")))?,
        )),
        _ => None,
    };
    let mut headers = Vec::new();
    if let Some(http) = file.http_server_config {
        for (name, value) in http.headers.unwrap_or_default() {
            let Some(allowed) = ALLOWED_HEADERS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&name))
            else {
                return Err(err(format!(
                    "http_server_config.headers: `{name}` is not one of {}",
                    ALLOWED_HEADERS.join(", ")
                )));
            };
            if value.is_empty() {
                continue;
            }
            if *allowed == "X-Content-Type-Options" && value != "nosniff" {
                return Err(err(format!(
                    "http_server_config.headers.X-Content-Type-Options: `{value}` (only `nosniff`)"
                )));
            }
            if *allowed == "X-Frame-Options"
                && !["deny", "sameorigin"].contains(&value.to_ascii_lowercase().as_str())
            {
                return Err(err(format!(
                    "http_server_config.headers.X-Frame-Options: `{value}` (deny or sameorigin)"
                )));
            }
            let value = HeaderValue::from_str(&value).map_err(|_| {
                err(format!(
                    "http_server_config.headers.{allowed}: not a valid header value"
                ))
            })?;
            let name = HeaderName::from_bytes(allowed.to_ascii_lowercase().as_bytes())
                .map_err(|_| err(format!("http_server_config.headers: `{allowed}`")))?;
            headers.push((name, value));
        }
    }
    Ok(Layer {
        tls,
        basic,
        headers,
        files,
    })
}

fn read_pem(
    base: &Path,
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    files: &mut Vec<(PathBuf, Option<(SystemTime, u64)>)>,
) -> Result<Option<Vec<u8>>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "tls_server_config: both `{key}` and `{key}_file` are set; use one"
        )),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(file)) => {
            let full = base.join(&file);
            let bytes = std::fs::read(&full)
                .map_err(|e| format!("tls_server_config.{key}_file {}: {e}", full.display()))?;
            files.push((full.clone(), stamp(&full)));
            Ok(Some(bytes))
        }
        (None, None) => Ok(None),
    }
}

fn version(key: &str, value: Option<&str>, default: u8) -> Result<u8, String> {
    match value {
        None => Ok(default),
        Some("TLS12") => Ok(2),
        Some("TLS13") => Ok(3),
        Some(v @ ("TLS10" | "TLS11")) => Err(format!(
            "tls_server_config.{key}: `{v}` is not supported (TLS 1.2 and 1.3 only)"
        )),
        Some(v) => Err(format!(
            "tls_server_config.{key}: unknown version `{v}` (TLS12 or TLS13)"
        )),
    }
}

/// Go's names for the TLS 1.2 suites rustls implements.
fn suite_by_go_name(name: &str) -> Option<SupportedCipherSuite> {
    use provider::cipher_suite::*;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

fn build_tls(
    base: &Path,
    tls: TlsFile,
    http2: bool,
    files: &mut Vec<(PathBuf, Option<(SystemTime, u64)>)>,
) -> Result<Option<TlsAcceptor>, String> {
    let cert = read_pem(base, "cert", tls.cert, tls.cert_file, files)?;
    let key = read_pem(base, "key", tls.key, tls.key_file, files)?;
    let client_ca = read_pem(base, "client_ca", tls.client_ca, tls.client_ca_file, files)?;
    let (cert, key) = match (cert, key) {
        // The toolkit serves plain HTTP for an empty `tls_server_config`.
        (None, None)
            if client_ca.is_none()
                && tls.client_auth_type.as_deref().is_none_or(str::is_empty)
                && tls.client_allowed_sans.is_none() =>
        {
            return Ok(None)
        }
        (Some(c), Some(k)) => (c, k),
        (None, _) => return Err("tls_server_config: missing cert_file (or cert)".into()),
        (_, None) => return Err("tls_server_config: missing key_file (or key)".into()),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.cert_file: not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err("tls_server_config.cert_file: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| format!("tls_server_config.key_file: no PEM private key: {e}"))?;

    let min = version("min_version", tls.min_version.as_deref(), 2)?;
    let max = version("max_version", tls.max_version.as_deref(), 3)?;
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let mut crypto: CryptoProvider = provider::default_provider();
    if let Some(names) = tls.cipher_suites.filter(|n| !n.is_empty()) {
        // As in Go, the list governs TLS 1.2; the TLS 1.3 suites are always on.
        let mut suites: Vec<SupportedCipherSuite> = crypto
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_some())
            .collect();
        for name in &names {
            let suite = suite_by_go_name(name).ok_or_else(|| {
                format!("tls_server_config.cipher_suites: `{name}` is unknown or not supported (AEAD ECDHE suites only)")
            })?;
            suites.push(suite);
        }
        crypto.cipher_suites = suites;
    }
    if let Some(curves) = tls.curve_preferences.filter(|c| !c.is_empty()) {
        let mut groups = Vec::new();
        for curve in &curves {
            let group: &'static dyn rustls::crypto::SupportedKxGroup = match curve.as_str() {
                "X25519" => provider::kx_group::X25519,
                "CurveP256" => provider::kx_group::SECP256R1,
                "CurveP384" => provider::kx_group::SECP384R1,
                other => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: `{other}` is unknown or not supported (X25519, CurveP256, CurveP384)"
                    ))
                }
            };
            groups.push(group);
        }
        crypto.kx_groups = groups;
    }
    let allowed_sans = match tls.client_allowed_sans {
        Some(sans) if sans.is_empty() => {
            return Err(
                "tls_server_config.client_allowed_sans is empty: no client certificate could match; remove the key or list the SANs to accept"
                    .into(),
            )
        }
        other => other,
    };
    let crypto = Arc::new(crypto);
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&crypto))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let auth_type = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = match &client_ca {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem) {
                let ca = ca.map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
                roots
                    .add(ca)
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("tls_server_config.client_ca_file: no certificate in the file".into());
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifying = |allow_none: bool| -> Result<Arc<dyn ClientCertVerifier>, String> {
        let roots = roots.clone().ok_or_else(|| {
            format!("tls_server_config: client_auth_type {auth_type} needs client_ca_file")
        })?;
        let mut v = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&crypto));
        if allow_none {
            v = v.allow_unauthenticated();
        }
        v.build()
            .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))
    };
    // Go's RequestClientCert / RequireAnyClientCert: no chain check, the CA (if any) only
    // hints which certificate to send.
    let any = |mandatory: bool| -> Arc<dyn ClientCertVerifier> {
        let hints = roots.as_ref().map(|r| r.subjects()).unwrap_or_default();
        Arc::new(AnyClientCert::new(
            mandatory,
            hints,
            crypto.signature_verification_algorithms,
        ))
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth_type {
        "NoClientCert" | "" => {
            if roots.is_some() {
                return Err(
                    "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert"
                        .into(),
                );
            }
            if allowed_sans.is_some() {
                return Err(
                    "tls_server_config: client_allowed_sans is set but client_auth_type is NoClientCert (no certificate is asked for, so nothing would be checked)"
                        .into(),
                );
            }
            None
        }
        "RequestClientCert" => Some(any(false)),
        // `RequireClientCert` is the toolkit's older spelling, still accepted there.
        "RequireAnyClientCert" | "RequireClientCert" => Some(any(true)),
        "VerifyClientCertIfGiven" => Some(verifying(true)?),
        "RequireAndVerifyClientCert" => Some(verifying(false)?),
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: unknown value `{other}` (NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ))
        }
    };
    let verifier = match (verifier, allowed_sans) {
        (Some(v), Some(sans)) => {
            Some(Arc::new(AllowedSans::new(v, sans)) as Arc<dyn ClientCertVerifier>)
        }
        (v, _) => v,
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls_server_config: certificate and key: {e}"))?;
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    // Ours in order of preference; rustls picks the first the client also offers.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

impl Layer {
    /// The credential check of one request: `None` lets it through, `Some` is the 401.
    ///
    /// With basic-auth users, either a configured bearer token or a user's credentials pass;
    /// without, the bearer rule applies alone (SPEC 3.17).
    pub(crate) async fn check(
        &self,
        bearer: Option<&super::BearerAuth>,
        authorization: Option<HeaderValue>,
    ) -> Option<hyper::Response<super::body::Body>> {
        let Some(basic) = &self.basic else {
            return super::auth::check(bearer, authorization.as_ref());
        };
        let bytes = authorization.as_ref().map(HeaderValue::as_bytes);
        if bearer.is_some_and(|b| b.authorizes(bytes)) {
            return None;
        }
        let basic = Arc::clone(basic);
        // bcrypt is deliberately slow; keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            basic.authorizes(authorization.as_ref().map(HeaderValue::as_bytes))
        })
        .await
        .unwrap_or(false);
        if ok {
            return None;
        }
        let mut refusal = super::auth::check(Some(&super::BearerAuth::refuse_all()), None)?;
        refusal.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic"),
        );
        Some(refusal)
    }

    /// Adds the configured `http_server_config.headers`.
    pub(crate) fn decorate<B>(&self, response: &mut hyper::Response<B>) {
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
}

/// What a client that speaks plain HTTP to the TLS port gets, as Go's server answers it.
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The TLS handshake of one accepted connection, bounded by `timeout`. A connection whose
/// first byte is not a TLS handshake record is answered [`PLAIN_HTTP_REFUSAL`] and closed.
/// A failure comes with its reason for the self metrics.
pub(crate) async fn handshake(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, (TlsFailure, std::io::Error)> {
    use std::io::{Error, ErrorKind};
    use tokio::io::AsyncWriteExt;
    let work = async {
        let mut first = [0u8; 1];
        let mut stream = stream;
        let peeked = stream.peek(&mut first).await;
        if peeked.as_ref().is_ok_and(|&n| n == 0) {
            return Err((
                TlsFailure::Closed,
                Error::new(ErrorKind::UnexpectedEof, "closed before the handshake"),
            ));
        }
        peeked.map_err(|e| (TlsFailure::Closed, e))?;
        // 0x16: a TLS handshake record, which every ClientHello starts with.
        if first[0] != 0x16 {
            let _ = stream.write_all(PLAIN_HTTP_REFUSAL).await;
            let _ = stream.shutdown().await;
            return Err((
                TlsFailure::PlainHttp,
                Error::new(ErrorKind::InvalidData, "plain HTTP on the TLS port"),
            ));
        }
        acceptor.accept(stream).await.map_err(|e| (classify(&e), e))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        (
            TlsFailure::Timeout,
            Error::new(ErrorKind::TimedOut, "TLS handshake timed out"),
        )
    })?
}

/// The reason of a failed `accept`: tokio-rustls carries rustls' error inside the I/O error.
fn classify(e: &std::io::Error) -> TlsFailure {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => TlsFailure::Closed,
            _ => TlsFailure::Other,
        };
    };
    match tls {
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
            TlsFailure::Incompatible
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsFailure::ClientCertificate
        }
        rustls::Error::AlertReceived(_) => TlsFailure::ClientAlert,
        _ => TlsFailure::Other,
    }
}
