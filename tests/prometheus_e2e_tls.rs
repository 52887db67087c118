//! End to end under a real Prometheus, over HTTPS: the demo node started with
//! `--web.config.file` (TLS, client certificates verified if given, a bcrypt basic-auth user)
//! and scraped by the `prometheus` binary on loopback in four jobs, all with `basic_auth`:
//! `tls_config` with the CA file, the same plus a client certificate, a client certificate
//! from an unknown CA, a good certificate with the wrong password, and the client certificate
//! with `enable_http2` (Go's HTTP/2 client over ALPN). The first two and the last must be
//! `up`, the others down; the series must arrive through the good jobs.
//!
//! Needs `prometheus` on the PATH (Debian: `apt-get install prometheus`; or `PROMETHEUS_BIN`).
//! Without it the test passes with a printed SKIPPED notice, except under CI (`CI` set).

#[path = "support/tls.rs"]
mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tls::{Ca, TempDir};

const PASSWORD: &str = "e2e-password";

/// A child process killed (and reaped) when dropped, so failures never leak processes.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str, env_var: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env_var).map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "`{name}` is required under CI for the end-to-end test: apt-get install prometheus"
            );
        }
        println!("SKIPPED: `{name}` is not installed; install it (apt-get install prometheus) or set {env_var}");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the demo node with `web_config`; returns it and its `host:port`.
fn start_node(web_config: &Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elastickv-metrics"))
        .args(["--metrics-address", "127.0.0.1:0", "--pprof-address", ""])
        .args(["--node-id", "e2e-tls", "--poll-interval", "1s"])
        .arg("--web.config.file")
        .arg(web_config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the demo node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("the node prints its address").unwrap();
        if let Some(rest) = line.trim().strip_prefix("metrics: https://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Process(child), address)
}

/// The HTTP GET of Prometheus's own API (plain HTTP on loopback).
fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let response = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The numbers of an instant query's result (`None` while Prometheus is not ready).
fn query(prometheus: &str, q: &str) -> Option<Vec<f64>> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode_query(q)),
    )?;
    if status != 200 || !body.contains("\"status\":\"success\"") {
        return None;
    }
    Some(
        body.split("\"value\":[")
            .skip(1)
            .filter_map(|rest| {
                let v = rest.split(',').nth(1)?.trim().trim_start_matches('"');
                v[..v.find('"')?].parse().ok()
            })
            .collect(),
    )
}

fn wait_for(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !probe() {
        assert!(
            Instant::now() < deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_the_demo_node_over_https_with_client_certificates_and_basic_auth() {
    let Some(prometheus_bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    let dir = TempDir::new("e2e");
    let ca = Ca::new("e2e-ca");
    let stranger = Ca::new("stranger");
    let server = ca.server();
    let client = ca.client();
    let bad_client = stranger.client();
    dir.write("ca.crt", &ca.pem());
    dir.write("server.crt", &server.cert_pem);
    dir.write("server.key", &server.key_pem);
    dir.write("client.crt", &client.cert_pem);
    dir.write("client.key", &client.key_pem);
    dir.write("bad.crt", &bad_client.cert_pem);
    dir.write("bad.key", &bad_client.key_pem);
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let web = dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    );
    let (_node, target) = start_node(&web);

    let d = dir.0.display();
    let job = |name: &str, password: &str, cert: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    basic_auth:\n      username: prometheus\n      password: {password}\n    tls_config:\n      ca_file: {d}/ca.crt\n{cert}    static_configs:\n      - targets: ['{target}']\n"
        )
    };
    let client_cert = format!("      cert_file: {d}/client.crt\n      key_file: {d}/client.key\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}{}{}",
        job("tls_ca", PASSWORD, ""),
        job("tls_client_cert", PASSWORD, &client_cert),
        job(
            "tls_stranger_cert",
            PASSWORD,
            &format!("      cert_file: {d}/bad.crt\n      key_file: {d}/bad.key\n")
        ),
        // A good certificate but the wrong password: basic auth is enforced on its own.
        job("tls_wrong_password", "not-the-password", &client_cert),
        // Go's HTTP/2 client over ALPN against our h2 server.
        job("tls_http2", PASSWORD, &client_cert).replace(
            "    scheme: https\n",
            "    scheme: https\n    enable_http2: true\n"
        ),
    );
    let config_path = dir.write("prometheus.yml", &config);
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path("prometheus.log")).unwrap();
    let _prometheus = Process(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    );

    let up = |job: &str| query(&listen, &format!("up{{job=\"{job}\"}}"));
    let log_tail = || std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default();
    for job in ["tls_ca", "tls_client_cert", "tls_http2"] {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            last = up(job);
            if last.as_deref() == Some(&[1.0][..]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(
            last.as_deref(),
            Some(&[1.0][..]),
            "job {job} up; log:\n{}",
            log_tail()
        );
    }
    for (job, why) in [
        (
            "tls_stranger_cert",
            "the stranger's certificate to be refused",
        ),
        ("tls_wrong_password", "the wrong password to be refused"),
    ] {
        wait_for(&format!("{why} (up 0)"), Duration::from_secs(60), || {
            up(job).as_deref() == Some(&[0.0][..])
        });
    }
    // The node's own series arrived over TLS, with its node_id.
    wait_for(
        "node series scraped over TLS",
        Duration::from_secs(60),
        || {
            query(
                &listen,
                "count({job=\"tls_client_cert\",node_id=\"e2e-tls\"})",
            )
            .is_some_and(|v| v.first().is_some_and(|&n| n > 10.0))
        },
    );
}
