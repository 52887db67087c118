//! HTTPS and the exporter web-configuration file, over loopback with certificates generated
//! in each test: every `client_auth_type` with no, good, wrong-CA, expired and forged client
//! certificates, `client_allowed_sans`, wrong CA and expired server certificates, TLS 1.1,
//! plain HTTP on the TLS port, basic auth, HTTP/2 and HTTP/1.1 over ALPN, rotation under
//! running scrape loops, slow and failed handshakes (memory, self metrics), the clear-text
//! warning, the README's file, and the start-up errors of bad files.

#[path = "serve_support.rs"]
mod support;
#[path = "support/tls.rs"]
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use elastickv_metrics::serve::{
    check_exposure_web, exposure_warning, metrics_serve_task, metrics_shutdown_task,
    new_metrics_server_with, MetricsConfig, ServeError, WebConfig,
};
use support::{Fixed, IO_LIMIT};
use tls::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const PATH: &str = "/metrics?name[]=test_up&name[]=test_events_total";

struct Node {
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: JoinSet<Result<(), ServeError>>,
}

impl Node {
    async fn start(web: &WebConfig, token: &str) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            new_metrics_server_with(Some(Arc::new(Fixed)), token, MetricsConfig::default())
                .unwrap()
                .unwrap();
        server.use_web_config(web.clone()).unwrap();
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(metrics_serve_task(
            Some(server.clone()),
            Some(listener),
            addr.to_string(),
        ));
        tasks.spawn(metrics_shutdown_task(
            cancel.clone(),
            Some(server),
            addr.to_string(),
        ));
        Node {
            addr,
            cancel,
            tasks,
        }
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        tokio::time::timeout(IO_LIMIT, async {
            while let Some(done) = self.tasks.join_next().await {
                done.unwrap().unwrap();
            }
        })
        .await
        .expect("stopped within the limit");
    }
}

/// One scrape over a fresh TLS connection; `Err` is the handshake's or the read's failure.
async fn scrape(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    tokio::time::timeout(IO_LIMIT, async {
        let mut s = connect_tls(addr, config).await?;
        get_on(&mut s, PATH, headers).await
    })
    .await
    .expect("answered within the limit")
}

fn assert_fixed_body(r: &Response) {
    assert_eq!(r.status, 200, "{r:?}");
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(body.contains("test_up 1"), "{body}");
}

fn tls_only(dir: &TempDir, ca: &Ca, tls_extra: &str, rest: &str) -> WebConfig {
    let path = write_web_config(dir, &ca.server(), tls_extra, rest);
    WebConfig::load(path).expect("valid web config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_without_client_certificate_serves_the_scrape_and_headers() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("plain");
    let web = tls_only(
        &dir,
        &ca,
        "",
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
    );
    assert!(web.is_tls());
    let node = Node::start(&web, "").await;
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        let r = scrape(node.addr, client_config(&ca.pem(), None, versions), &[])
            .await
            .expect("TLS scrape");
        assert_fixed_body(&r);
        assert_eq!(
            r.header("Strict-Transport-Security"),
            Some("max-age=31536000")
        );
    }
    node.stop().await;
}

/// The clients every client-certificate mode is tried with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    NoCert,
    Good,
    WrongCa,
    Expired,
    /// A good certificate with another key's handshake signature.
    Forged,
}

const CLIENTS: [Client; 5] = [
    Client::NoCert,
    Client::Good,
    Client::WrongCa,
    Client::Expired,
    Client::Forged,
];

/// The client configurations for [`Client`], all trusting `ca` for the server.
struct Clients {
    ca: Ca,
    other: Ca,
    good: Leaf,
}

impl Clients {
    fn new() -> Clients {
        let ca = Ca::new("ca");
        let good = ca.client();
        Clients {
            ca,
            other: Ca::new("other"),
            good,
        }
    }

    fn config(&self, client: Client) -> Arc<rustls::ClientConfig> {
        self.config_with(client, &[])
    }

    /// [`config`](Clients::config) limited to `versions` (both when empty).
    fn config_with(
        &self,
        client: Client,
        v: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let pem = self.ca.pem();
        match client {
            Client::NoCert => client_config(&pem, None, v),
            Client::Good => client_config(&pem, Some(&self.good), v),
            Client::WrongCa => client_config(&pem, Some(&self.other.client()), v),
            Client::Expired => client_config(&pem, Some(&self.ca.expired_client()), v),
            Client::Forged => forged_client_config(&pem, &self.good, &self.ca.client(), v),
        }
    }

    /// A server asking for client certificates with `auth_type` (the CA given to it as
    /// `client_ca_file` when `with_ca`), with `tls_extra` more lines.
    fn web(&self, dir: &TempDir, auth_type: &str, with_ca: bool, tls_extra: &str) -> WebConfig {
        let path = write_client_auth_config(
            dir,
            &self.ca.server(),
            auth_type,
            with_ca.then_some(&self.ca),
            tls_extra,
        );
        WebConfig::load(path).expect("valid web config")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_auth_type_with_none_good_wrong_ca_expired_and_forged_certificates() {
    use Client::*;
    let clients = Clients::new();
    // What each exporter-toolkit mode accepts, in the order of CLIENTS. The unverified modes
    // take a certificate from any CA (expired too: Go does not check it there) but never a
    // handshake signed with another key.
    let table: [(&str, bool, [bool; 5]); 6] = [
        ("NoClientCert", false, [true, true, true, true, true]),
        ("RequestClientCert", false, [true, true, true, true, false]),
        ("RequestClientCert", true, [true, true, true, true, false]),
        (
            "RequireAnyClientCert",
            false,
            [false, true, true, true, false],
        ),
        (
            "VerifyClientCertIfGiven",
            true,
            [true, true, false, false, false],
        ),
        (
            "RequireAndVerifyClientCert",
            true,
            [false, true, false, false, false],
        ),
    ];
    for (auth_type, with_ca, expected) in table {
        let dir = TempDir::new("clientauth");
        let web = clients.web(&dir, auth_type, with_ca, "");
        let node = Node::start(&web, "").await;
        // Both versions: the client's certificate and signature travel differently in each.
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            for (client, accepted) in CLIENTS.into_iter().zip(expected) {
                let r = scrape(node.addr, clients.config_with(client, &[version]), &[]).await;
                match (&r, accepted) {
                    (Ok(r), true) => assert_fixed_body(r),
                    (Err(_), false) => {}
                    _ => panic!(
                        "{auth_type} (CA given: {with_ca}) with {client:?} over {:?}: {r:?}",
                        version.version
                    ),
                }
            }
        }
        // Refusals do not disturb the port.
        assert_fixed_body(&scrape(node.addr, clients.config(Good), &[]).await.unwrap());
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_allowed_sans_needs_one_listed_san_of_any_kind() {
    let clients = Clients::new();
    let ia5 = |s: &str| rcgen::Ia5String::try_from(s).unwrap();
    let ca = &clients.ca;
    let dns = ca.client_with_sans(vec![SanType::DnsName(ia5("scraper.example"))]);
    let email = ca.client_with_sans(vec![SanType::Rfc822Name(ia5("prom@example.org"))]);
    let uri = ca.client_with_sans(vec![SanType::URI(ia5("spiffe://example.org/prometheus"))]);
    let ip = ca.client_with_sans(vec![SanType::IpAddress("10.0.0.7".parse().unwrap())]);
    let mixed = ca.client_with_sans(vec![
        SanType::DnsName(ia5("other.example")),
        SanType::IpAddress("2001:db8::7".parse().unwrap()),
    ]);
    let unlisted = ca.client_with_sans(vec![
        SanType::DnsName(ia5("Scraper.example")), // the match is case-sensitive, as in Go
        SanType::IpAddress("10.0.0.8".parse().unwrap()),
    ]);
    let stranger = clients
        .other
        .client_with_sans(vec![SanType::DnsName(ia5("scraper.example"))]);
    let sans = "  client_allowed_sans:\n    - scraper.example\n    - prom@example.org\n    - spiffe://example.org/prometheus\n    - 10.0.0.7\n    - 2001:db8::7\n";
    let pem = ca.pem();
    for (auth_type, verified) in [
        ("RequireAndVerifyClientCert", true),
        ("VerifyClientCertIfGiven", true),
        ("RequestClientCert", false),
    ] {
        let dir = TempDir::new("sans");
        let web = clients.web(&dir, auth_type, true, sans);
        let node = Node::start(&web, "").await;
        for leaf in [&dns, &email, &uri, &ip, &mixed] {
            let r = scrape(node.addr, client_config(&pem, Some(leaf), &[]), &[]).await;
            assert_fixed_body(&r.unwrap_or_else(|e| panic!("{auth_type}: listed SAN: {e}")));
        }
        for refused in [Some(&unlisted), None] {
            let r = scrape(node.addr, client_config(&pem, refused, &[]), &[]).await;
            assert!(r.is_err(), "{auth_type}: unlisted or no SAN refused: {r:?}");
        }
        // A listed SAN does not make another CA's certificate acceptable where chains count.
        let r = scrape(node.addr, client_config(&pem, Some(&stranger), &[]), &[]).await;
        assert_eq!(
            r.is_ok(),
            !verified,
            "{auth_type} with a stranger's cert: {r:?}"
        );
        node.stop().await;
    }
}

/// A client configuration offering `alpn` (most preferred first).
fn with_alpn(config: Arc<rustls::ClientConfig>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = (*config).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// An HTTP/2 client on one connection (hyper's), and the task driving that connection; the
/// task ends when the server closes the connection.
async fn h2_client<S>(
    io: S,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 handshake");
    (sender, tokio::spawn(conn))
}

/// One GET over HTTP/2: status, the header `header`, and the body.
async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    authorization: Option<&str>,
    header: &str,
) -> hyper::Result<(u16, Option<String>, String)> {
    use http_body_util::BodyExt;
    let mut req = hyper::Request::get(format!("https://127.0.0.1{PATH}"));
    if let Some(value) = authorization {
        req = req.header("Authorization", value);
    }
    let req = req.body(http_body_util::Empty::new()).unwrap();
    let response = tokio::time::timeout(IO_LIMIT, sender.send_request(req))
        .await
        .expect("answered within the limit")?;
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let status = response.status().as_u16();
    let value = response
        .headers()
        .get(header)
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, value, String::from_utf8(body.to_vec()).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_serves_http2_and_http11_on_the_same_tls_port_with_the_same_auth_and_headers() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("h2");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = tls_only(
        &dir,
        &ca,
        "",
        &format!("basic_auth_users:\n  prom: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"),
    );
    let node = Node::start(&web, "").await;
    let right = basic("prom", "s3cret");
    let cfg = || client_config(&ca.pem(), None, &[]);

    // HTTP/2: chosen by ALPN when offered, several requests (two at once) on one connection.
    let s = connect_tls(node.addr, with_alpn(cfg(), &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, driver) = h2_client(s).await;
    let mut second = sender.clone();
    let (a, b) = tokio::join!(
        h2_get(&mut sender, Some(&right), "x-frame-options"),
        h2_get(&mut second, Some(&right), "x-frame-options"),
    );
    for (status, frame, body) in [a.unwrap(), b.unwrap()] {
        assert_eq!(status, 200);
        assert_eq!(frame.as_deref(), Some("deny"));
        assert!(body.contains("test_up 1"), "{body}");
    }
    let (status, _, _) = h2_get(&mut sender, Some(&basic("prom", "wrong")), "")
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, _, _) = h2_get(&mut sender, None, "").await.unwrap();
    assert_eq!(status, 401);
    drop((sender, second));
    let _ = tokio::time::timeout(IO_LIMIT, driver)
        .await
        .expect("closed");

    // HTTP/1.1 on the same port: when it is the only offer, and without ALPN at all.
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut s = connect_tls(node.addr, with_alpn(cfg(), alpn))
            .await
            .unwrap();
        let expected = (!alpn.is_empty()).then_some(&b"http/1.1"[..]);
        assert_eq!(s.get_ref().1.alpn_protocol(), expected);
        let r = get_on(&mut s, PATH, &[("Authorization", &right)])
            .await
            .unwrap();
        assert_fixed_body(&r);
        assert_eq!(r.header("X-Frame-Options"), Some("deny"));
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_by_the_server() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("h2idle");
    let web = tls_only(&dir, &ca, "", "");
    let node = Node::start(&web, "").await;
    let s = connect_tls(
        node.addr,
        with_alpn(client_config(&ca.pem(), None, &[]), &[b"h2"]),
    )
    .await
    .unwrap();
    let (mut sender, driver) = h2_client(s).await;
    let (status, _, _) = h2_get(&mut sender, None, "").await.unwrap();
    assert_eq!(status, 200);
    // The client keeps its handle (it would reuse the connection); the server's idle bound
    // (the header-read timeout, 1 s by default) sends GOAWAY and closes it.
    let closed = tokio::time::timeout(IO_LIMIT, driver).await;
    assert!(
        closed.is_ok(),
        "the server closed the idle HTTP/2 connection"
    );
    assert!(sender.is_closed() || sender.ready().await.is_err());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_false_offers_only_http11_and_plain_ports_do_not_speak_http2() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("noh2");
    let web = tls_only(&dir, &ca, "", "http_server_config:\n  http2: false\n");
    let node = Node::start(&web, "").await;
    let mut s = connect_tls(
        node.addr,
        with_alpn(client_config(&ca.pem(), None, &[]), &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_fixed_body(&get_on(&mut s, PATH, &[]).await.unwrap());
    drop(s);
    node.stop().await;

    // A plain port (a web config without TLS): HTTP/2 with prior knowledge is not served.
    let plain = WebConfig::load(dir.write("plain.yml", "")).unwrap();
    assert!(!plain.is_tls());
    let node = Node::start(&plain, "").await;
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("the client side of the handshake is local");
    let driver = tokio::spawn(conn);
    let mut sender = sender;
    let r = tokio::time::timeout(IO_LIMIT, h2_get(&mut sender, None, ""))
        .await
        .expect("answered or refused within the limit");
    assert!(r.is_err(), "a plain port answered HTTP/2: {r:?}");
    let _ = tokio::time::timeout(IO_LIMIT, driver).await;
    // ...and still serves HTTP/1.1.
    let reply = support::get(node.addr, PATH, &[]).await;
    assert_eq!(reply.status, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_and_expired_server_certificate_fail_the_client_handshake() {
    let ca = Ca::new("ca");
    let other = Ca::new("other");
    let dir = TempDir::new("wrongca");
    let web = tls_only(&dir, &ca, "", "");
    let node = Node::start(&web, "").await;
    let e = scrape(node.addr, client_config(&other.pem(), None, &[]), &[])
        .await
        .expect_err("a client trusting another CA refuses the server");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    node.stop().await;

    let dir = TempDir::new("expired");
    let path = write_web_config(&dir, &ca.expired_server(), "", "");
    let web = WebConfig::load(path).unwrap();
    let node = Node::start(&web, "").await;
    let e = scrape(node.addr, client_config(&ca.pem(), None, &[]), &[])
        .await
        .expect_err("an expired server certificate is refused");
    assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
    node.stop().await;
}

/// A ClientHello with legacy version `minor` (0x02: TLS 1.1, 0x03: TLS 1.2), no
/// supported_versions extension, and what a TLS 1.2 ECDHE-ECDSA handshake needs otherwise.
fn client_hello(minor: u8) -> Vec<u8> {
    let mut body = vec![0x03, minor];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2c]); // ECDHE-ECDSA-AES-GCM
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let ext: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms
    ];
    body.extend_from_slice(&[0, ext.len() as u8]);
    body.extend_from_slice(ext);
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

fn tls11_client_hello() -> Vec<u8> {
    client_hello(0x02)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls11_is_refused_with_a_protocol_version_alert_and_the_port_keeps_serving() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("tls11");
    // Short: the control handshake below is left unfinished until the server cuts it off.
    let path = write_web_config(&dir, &ca.server(), "", "");
    let web = WebConfig::load_with(path, Duration::from_secs(1)).unwrap();
    let node = Node::start(&web, "").await;
    // Control: the same hello as TLS 1.2 gets a ServerHello (a handshake record).
    let reply = support::exchange(node.addr, &client_hello(0x03)).await;
    assert_eq!(reply.first(), Some(&0x16), "ServerHello: {reply:?}");
    let reply = support::exchange(node.addr, &tls11_client_hello()).await;
    assert!(reply.len() >= 7, "an alert record: {reply:?}");
    assert_eq!(reply[0], 0x15, "alert record: {reply:?}");
    assert_eq!(reply[6], 70, "protocol_version alert: {reply:?}");
    assert_fixed_body(
        &scrape(node.addr, client_config(&ca.pem(), None, &[]), &[])
            .await
            .unwrap(),
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_400_and_the_port_keeps_serving() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("plainhttp");
    let web = tls_only(&dir, &ca, "", "");
    let node = Node::start(&web, "").await;
    let reply = support::get(node.addr, PATH, &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.text(),
        "Client sent an HTTP request to an HTTPS server.\n"
    );
    assert_fixed_body(
        &scrape(node.addr, client_config(&ca.pem(), None, &[]), &[])
            .await
            .unwrap(),
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_right_wrong_and_unknown_user_and_the_bearer_token_still_works() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("basic");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = tls_only(
        &dir,
        &ca,
        "",
        &format!("basic_auth_users:\n  prom: {hash}\n"),
    );
    assert!(web.has_basic_auth());
    let node = Node::start(&web, "bearer-token").await;
    let cfg = || client_config(&ca.pem(), None, &[]);
    let right = basic("prom", "s3cret");
    assert_fixed_body(
        &scrape(node.addr, cfg(), &[("Authorization", &right)])
            .await
            .unwrap(),
    );
    for bad in [
        basic("prom", "wrong"),
        basic("nobody", "s3cret"),
        "Bearer nope".into(),
    ] {
        let r = scrape(node.addr, cfg(), &[("Authorization", &bad)])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(r.header("WWW-Authenticate"), Some("Basic"));
    }
    let r = scrape(node.addr, cfg(), &[]).await.unwrap();
    assert_eq!(r.status, 401);
    let r = scrape(
        node.addr,
        cfg(),
        &[("Authorization", "Bearer bearer-token")],
    )
    .await
    .unwrap();
    assert_fixed_body(&r);
    node.stop().await;
}

/// What the scrape loops of the rotation test saw.
#[derive(Default)]
struct LoopLog {
    keep_alive_ok: std::sync::atomic::AtomicUsize,
    fresh_ok: std::sync::atomic::AtomicUsize,
    served_by_old: std::sync::atomic::AtomicUsize,
    served_by_new: std::sync::atomic::AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
    stop: std::sync::atomic::AtomicBool,
}

impl LoopLog {
    fn get(counter: &std::sync::atomic::AtomicUsize) -> usize {
        counter.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn bump(counter: &std::sync::atomic::AtomicUsize) {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (bounded by the I/O limit) until `done` holds.
    async fn until(&self, what: &str, done: impl Fn(&LoopLog) -> bool) {
        tokio::time::timeout(IO_LIMIT, async {
            while !done(self) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "waiting for {what}; failures: {:?}",
                self.failures.lock().unwrap()
            )
        });
    }
}

fn der(leaf: &Leaf) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_a_running_scrape_loop_fails_no_scrape() {
    use std::sync::atomic::Ordering::SeqCst;
    let old_ca = Ca::new("old");
    let new_ca = Ca::new("new");
    let (old_leaf, new_leaf) = (old_ca.server(), new_ca.server());
    let (old_der, new_der) = (der(&old_leaf), der(&new_leaf));
    let dir = TempDir::new("rotate");
    let web = WebConfig::load(write_web_config(&dir, &old_leaf, "", "")).unwrap();
    let node = Node::start(&web, "").await;
    let addr = node.addr;
    let log = Arc::new(LoopLog::default());
    // Prometheus trusting both CAs across the rotation, as an operator rolls a CA.
    let both = client_config(&format!("{}{}", old_ca.pem(), new_ca.pem()), None, &[]);

    // A keep-alive scraper on a connection opened before the rotation...
    let mut conn = connect_tls(addr, Arc::clone(&both)).await.unwrap();
    let keep_alive = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            for i in 0..100_000 {
                if log.stopped() {
                    return;
                }
                match tokio::time::timeout(IO_LIMIT, get_on(&mut conn, PATH, &[])).await {
                    Ok(Ok(r)) if r.status == 200 => LoopLog::bump(&log.keep_alive_ok),
                    other => return log.fail(format!("keep-alive scrape {i}: {other:?}")),
                }
            }
        })
    };
    // ...and one that opens a connection per scrape, noting which certificate served it.
    let fresh = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            for i in 0..100_000 {
                if log.stopped() {
                    return;
                }
                let r = tokio::time::timeout(IO_LIMIT, async {
                    let mut s = connect_tls(addr, Arc::clone(&both)).await?;
                    let served = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                    get_on(&mut s, PATH, &[]).await.map(|r| (served, r))
                })
                .await;
                match r {
                    Ok(Ok((served, r))) if r.status == 200 => {
                        LoopLog::bump(&log.fresh_ok);
                        if served == old_der {
                            LoopLog::bump(&log.served_by_old);
                        } else if served == new_der {
                            LoopLog::bump(&log.served_by_new);
                        }
                    }
                    other => log.fail(format!("fresh scrape {i}: {other:?}")),
                }
            }
        })
    };
    log.until("scrapes on the old certificate", |l| {
        LoopLog::get(&l.keep_alive_ok) >= 3 && LoopLog::get(&l.served_by_old) >= 3
    })
    .await;

    // Rotate to a certificate from another CA while both loops run.
    dir.write("server.crt", &new_leaf.cert_pem);
    dir.write("server.key", &new_leaf.key_pem);
    web.reload().expect("the rotated files load");
    let kept = LoopLog::get(&log.keep_alive_ok);
    log.until("new connections on the new certificate", |l| {
        LoopLog::get(&l.served_by_new) >= 3 && LoopLog::get(&l.keep_alive_ok) >= kept + 3
    })
    .await;
    // A client trusting only the old CA is now refused.
    assert!(scrape(addr, client_config(&old_ca.pem(), None, &[]), &[])
        .await
        .is_err());

    // A broken file is refused, the last good configuration stays, the loops go on.
    let good = std::fs::read_to_string(dir.path("web.yml")).unwrap();
    dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  bogus: 1\n",
    );
    let e = web.reload().expect_err("broken file");
    assert!(e.to_string().contains("bogus"), "{e}");
    let seen = LoopLog::get(&log.served_by_new);
    log.until("scrapes after the broken file", |l| {
        LoopLog::get(&l.served_by_new) >= seen + 3
    })
    .await;
    dir.write("web.yml", &good);

    log.stop.store(true, SeqCst);
    tokio::time::timeout(IO_LIMIT, async {
        keep_alive.await.unwrap();
        fresh.await.unwrap();
    })
    .await
    .expect("the loops stop");
    let failures = log.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed scrapes: {failures:?}");
    // Every fresh connection was served by one of the two certificates, none by another.
    assert_eq!(
        LoopLog::get(&log.fresh_ok),
        LoopLog::get(&log.served_by_old) + LoopLog::get(&log.served_by_new)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_picks_up_a_changed_certificate() {
    let old_ca = Ca::new("old");
    let new_ca = Ca::new("new");
    let dir = TempDir::new("watch");
    let web = tls_only(&dir, &old_ca, "", "");
    let node = Node::start(&web, "").await;
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(web.clone().watch(Duration::from_millis(20), cancel.clone()));
    let leaf = new_ca.server();
    // A different size too, so the change is seen even within one mtime tick.
    dir.write("server.key", &format!("{}\n\n", leaf.key_pem));
    dir.write("server.crt", &format!("{}\n\n", leaf.cert_pem));
    let picked_up = tokio::time::timeout(IO_LIMIT, async {
        loop {
            if scrape(node.addr, client_config(&new_ca.pem(), None, &[]), &[])
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        picked_up.is_ok(),
        "the watcher reloaded the rotated certificate"
    );
    cancel.cancel();
    watcher.await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshakes_do_not_starve_other_scrapers_and_are_cut_off() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("slowloris");
    let path = write_web_config(&dir, &ca.server(), "", "");
    let web = WebConfig::load_with(path, Duration::from_secs(1)).unwrap();
    let node = Node::start(&web, "").await;
    // Slowloris: connections that send half a record header and then nothing...
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(node.addr).await.unwrap();
        s.write_all(&[0x16, 0x03]).await.unwrap();
        slow.push(s);
    }
    // ...and ones that trickle a ClientHello a byte at a time, so they are never idle: the
    // timeout bounds the whole handshake, not the gaps between bytes.
    let hello = client_hello(0x03);
    let mut tricklers = JoinSet::new();
    for _ in 0..8 {
        let hello = hello.clone();
        let addr = node.addr;
        tricklers.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for &b in &hello {
                if s.write_all(&[b]).await.is_err() {
                    return true; // cut off mid-hello
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            let mut buf = [0u8; 4096];
            // Completed the hello: the server may answer, but must close soon after.
            loop {
                match tokio::time::timeout(IO_LIMIT, s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => continue,
                    Err(_) => return false,
                }
            }
        });
    }
    for _ in 0..5 {
        assert_fixed_body(
            &scrape(node.addr, client_config(&ca.pem(), None, &[]), &[])
                .await
                .unwrap(),
        );
    }
    // The server drops every one of them by itself (the handshake timeout).
    for mut s in slow {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(IO_LIMIT, s.read(&mut buf))
            .await
            .expect("the server closed the slow connection")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    while let Some(closed) = tricklers.join_next().await {
        assert!(
            closed.unwrap(),
            "the server closed the trickling connection"
        );
    }
    node.stop().await;
}

/// Resident set size from `/proc/self/statm` (its second field, in pages).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_failed_handshakes_do_not_grow_memory() {
    let ca = Ca::new("ca");
    let other = Ca::new("other");
    let dir = TempDir::new("failed");
    let web = tls_only(&dir, &ca, "", "");
    let node = Node::start(&web, "").await;
    let bad = client_config(&other.pem(), None, &[]);
    let round = |n: usize| {
        let bad = Arc::clone(&bad);
        let addr = node.addr;
        async move {
            for i in 0..n {
                if i % 2 == 0 {
                    assert!(connect_tls(addr, Arc::clone(&bad)).await.is_err());
                } else {
                    let _ = support::exchange(addr, &tls11_client_hello()).await;
                }
            }
        }
    };
    round(500).await; // warm up allocator pools
    let before = rss_kib();
    round(3000).await;
    let after = rss_kib();
    // Leaking even 1 KiB per handshake would add 3 MiB; allocator noise stays well under.
    assert!(
        after < before + 2048,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert_fixed_body(
        &scrape(node.addr, client_config(&ca.pem(), None, &[]), &[])
            .await
            .unwrap(),
    );
    node.stop().await;
}

fn load_error(text: &str) -> String {
    let ca = Ca::new("ca");
    let dir = TempDir::new("bad");
    let leaf = ca.server();
    dir.write("server.crt", &leaf.cert_pem);
    dir.write("server.key", &leaf.key_pem);
    dir.write("ca.crt", &ca.pem());
    let path = dir.write("web.yml", text);
    WebConfig::load(path).expect_err("a bad file").to_string()
}

#[test]
fn unknown_keys_and_bad_values_are_start_up_errors_naming_the_key() {
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let cases: &[(String, &str)] = &[
        (
            "tls_server_config:\n  cert_fil: server.crt\n".into(),
            "cert_fil",
        ),
        ("tls_config:\n  cert_file: a\n".into(), "tls_config"),
        (format!("{tls}  min_version: TLS11\n"), "min_version"),
        (format!("{tls}  max_version: TLS14\n"), "max_version"),
        (
            format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            "min_version",
        ),
        (
            format!("{tls}  client_auth_type: Sometimes\n"),
            "client_auth_type",
        ),
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "client_ca_file",
        ),
        (format!("{tls}  client_ca_file: ca.crt\n"), "client_ca_file"),
        (
            format!("{tls}  client_allowed_sans: [prometheus]\n"),
            "client_allowed_sans",
        ),
        (
            format!("{tls}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: []\n"),
            "client_allowed_sans",
        ),
        (
            "tls_server_config:\n  client_auth_type: RequestClientCert\n".into(),
            "cert_file",
        ),
        (
            format!("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            "cipher_suites",
        ),
        (
            format!("{tls}  curve_preferences: [CurveP521]\n"),
            "curve_preferences",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            "cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            "key_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n".into(),
            "cert_file",
        ),
        ("basic_auth_users:\n  alice: plain\n".into(), "alice"),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n".into(),
            "X-Powered-By",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            "X-Frame-Options",
        ),
        ("rate_limit:\n  interval: 1s\n".into(), "rate_limit"),
        ("- not a map\n".into(), "web config"),
    ];
    for (text, key) in cases {
        let e = load_error(text);
        assert!(e.contains(key), "error for {text:?} names {key}: {e}");
    }
}

#[test]
fn the_toolkit_defaults_and_suites_load() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("good");
    let path = write_web_config(
        &dir,
        &ca.server(),
        "  min_version: TLS12\n  max_version: TLS13\n  prefer_server_cipher_suites: true\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\n  curve_preferences: [X25519, CurveP256]\n",
        "http_server_config:\n  http2: true\n",
    );
    assert!(WebConfig::load(path).unwrap().is_tls());
    // An empty file or an empty tls_server_config serves plain HTTP, as the toolkit does.
    let empty = dir.write("empty.yml", "");
    assert!(!WebConfig::load(empty).unwrap().is_tls());
    let bare = dir.write("bare.yml", "tls_server_config: {}\n");
    assert!(!WebConfig::load(bare).unwrap().is_tls());
}

#[test]
fn exposure_needs_tls_or_a_credential_beyond_loopback() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("exposure");
    let web = tls_only(&dir, &ca, "", "");
    assert!(matches!(
        check_exposure_web("0.0.0.0:9090", "", None),
        Err(ServeError::TokenRequired { .. })
    ));
    check_exposure_web("0.0.0.0:9090", "", Some(&web)).expect("TLS alone is allowed");
    check_exposure_web("0.0.0.0:9090", "token", None).expect("a token alone warns but serves");
    check_exposure_web("127.0.0.1:9090", "", None).expect("loopback is always allowed");
    let plain = dir.write(
        "plain.yml",
        &format!(
            "basic_auth_users:\n  u: {}\n",
            bcrypt::hash("p", 4).unwrap()
        ),
    );
    let plain = WebConfig::load(plain).unwrap();
    check_exposure_web("0.0.0.0:9090", "", Some(&plain))
        .expect("basic auth counts as a credential");
}

/// Collects the WARN events emitted while it is the default subscriber.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text<'a>(&'a mut String);
        impl tracing::field::Visit for Text<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = String::new();
            event.record(&mut Text(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_token_without_tls_beyond_loopback_warns_that_it_crosses_the_network_in_clear_text() {
    let ca = Ca::new("ca");
    let dir = TempDir::new("warning");
    let tls = tls_only(&dir, &ca, "", "");
    let basic_only = WebConfig::load(dir.write(
        "basic.yml",
        &format!(
            "basic_auth_users:\n  u: {}\n",
            bcrypt::hash("p", 4).unwrap()
        ),
    ))
    .unwrap();

    let warning = exposure_warning("0.0.0.0:9090", "token", None).expect("a warning");
    for why in [
        "0.0.0.0:9090",
        "without TLS",
        "bearer token",
        "clear text",
        "tls_server_config",
    ] {
        assert!(warning.contains(why), "{why:?} in {warning}");
    }
    let warning = exposure_warning("[2001:db8::1]:9090", "", Some(&basic_only)).unwrap();
    assert!(warning.contains("basic-auth passwords"), "{warning}");
    assert!(!warning.contains("bearer"), "{warning}");
    // Nothing to warn about: loopback, TLS, or no credential at all (refused instead).
    assert_eq!(exposure_warning("127.0.0.1:9090", "token", None), None);
    assert_eq!(exposure_warning("[::1]:9090", "token", None), None);
    assert_eq!(exposure_warning("0.0.0.0:9090", "token", Some(&tls)), None);
    assert_eq!(exposure_warning("0.0.0.0:9090", " ", None), None);

    // check_exposure_web logs exactly that text, once, at WARN; and nothing when under TLS.
    let logged = Arc::new(Warnings::default());
    tracing::subscriber::with_default(Arc::clone(&logged), || {
        check_exposure_web("0.0.0.0:9090", "token", None).unwrap();
        check_exposure_web("0.0.0.0:9090", "token", Some(&tls)).unwrap();
        check_exposure_web("127.0.0.1:9090", "token", None).unwrap();
    });
    let logged = logged.0.lock().unwrap();
    assert_eq!(logged.len(), 1, "{logged:?}");
    let expected = exposure_warning("0.0.0.0:9090", "token", None).unwrap();
    assert!(logged[0].contains(&expected), "{logged:?}");
    assert!(logged[0].contains("address=\"0.0.0.0:9090\""), "{logged:?}");
}

/// The first YAML block after `marker` in the README.
fn readme_yaml(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = &readme[readme.find(marker).expect("the README section")..];
    let start = after.find("```yaml\n").unwrap() + "```yaml\n".len();
    after[start..start + after[start..].find("```").unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_web_config_loads_and_serves_its_scraper() {
    let text = readme_yaml("A complete file (`web-config.yml`");
    let ca = Ca::new("ca");
    let dir = TempDir::new("readme");
    let server = ca.server();
    dir.write("node.crt", &server.cert_pem);
    dir.write("node.key", &server.key_pem);
    dir.write("clients-ca.crt", &ca.pem());
    let web = WebConfig::load(dir.write("web-config.yml", &text)).expect("the README file loads");
    assert!(web.is_tls() && web.has_basic_auth());
    let node = Node::start(&web, "").await;
    // The scraper of the README: a client certificate with SAN "prometheus", user prometheus.
    let prometheus = ca.client();
    let cfg = client_config(&ca.pem(), Some(&prometheus), &[]);
    let auth = basic("prometheus", "changeme");
    let r = scrape(node.addr, Arc::clone(&cfg), &[("Authorization", &auth)])
        .await
        .unwrap();
    assert_fixed_body(&r);
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    // Another SAN is refused by client_allowed_sans.
    let other = ca.client_with_sans(vec![SanType::DnsName("grafana".try_into().unwrap())]);
    let r = scrape(
        node.addr,
        client_config(&ca.pem(), Some(&other), &[]),
        &[("Authorization", &auth)],
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    node.stop().await;
}

/// The failed-handshake counters as `reason -> value`, scraped over TLS with `config`.
async fn tls_failures(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::collections::BTreeMap<String, u64> {
    let mut s = connect_tls(addr, config).await.unwrap();
    let r = get_on(
        &mut s,
        "/metrics?name[]=promhttp_metric_handler_tls_handshake_failures_total",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    String::from_utf8(r.body)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let rest =
                l.strip_prefix("promhttp_metric_handler_tls_handshake_failures_total{reason=\"")?;
            let (reason, value) = rest.split_once("\"} ")?;
            Some((reason.to_string(), value.parse().unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_reason() {
    let clients = Clients::new();
    let dir = TempDir::new("failcount");
    let path = write_client_auth_config(
        &dir,
        &clients.ca.server(),
        "RequireAndVerifyClientCert",
        Some(&clients.ca),
        "",
    );
    let web = WebConfig::load_with(path, Duration::from_secs(1)).unwrap();
    let node = Node::start(&web, "").await;
    let good = clients.config(Client::Good);
    let zero: std::collections::BTreeMap<String, u64> = [
        "plain_http",
        "timeout",
        "incompatible",
        "client_certificate",
        "client_alert",
        "closed",
        "other",
    ]
    .into_iter()
    .map(|r| (r.to_string(), 0))
    .collect();
    assert_eq!(tls_failures(node.addr, Arc::clone(&good)).await, zero);

    // One of each reason (two refused client certificates).
    assert_eq!(support::get(node.addr, PATH, &[]).await.status, 400);
    let reply = support::exchange(node.addr, &tls11_client_hello()).await;
    assert_eq!(reply.first(), Some(&0x15), "an alert: {reply:?}");
    let stranger = client_config(&clients.other.pem(), Some(&clients.good), &[]);
    assert!(scrape(node.addr, stranger, &[]).await.is_err());
    for client in [Client::NoCert, Client::WrongCa] {
        assert!(scrape(node.addr, clients.config(client), &[])
            .await
            .is_err());
    }
    drop(TcpStream::connect(node.addr).await.unwrap());
    let _ = support::exchange(
        node.addr,
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef],
    )
    .await;
    let mut silent = TcpStream::connect(node.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(IO_LIMIT, silent.read(&mut buf))
        .await
        .expect("the server cut the silent connection off")
        .unwrap_or(0);
    assert_eq!(n, 0);

    let mut expected = zero.clone();
    for (reason, n) in [
        ("plain_http", 1),
        ("incompatible", 1),
        ("client_alert", 1),
        ("client_certificate", 2),
        ("closed", 1),
        ("other", 1),
        ("timeout", 1),
    ] {
        expected.insert(reason.to_string(), n);
    }
    // The server counts after the client has seen the failure: wait (bounded) for it.
    let mut seen = tls_failures(node.addr, Arc::clone(&good)).await;
    let deadline = tokio::time::Instant::now() + IO_LIMIT;
    while seen != expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = tls_failures(node.addr, Arc::clone(&good)).await;
    }
    assert_eq!(seen, expected);
    node.stop().await;
}
