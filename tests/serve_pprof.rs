//! The profiling server over loopback (T174–T178 and the Rust-specific answers).

#[path = "serve_support.rs"]
mod support;

#[path = "support/pprof_proto.rs"]
mod pprof_proto;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_metrics::serve::{
    new_pprof_server, pprof_serve_task, pprof_shutdown_task, ServeError,
};
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The CPU profiler is process-wide, and tests in this file run in parallel: every test that
/// collects a profile holds this lock so none sees another's profile as a conflict.
static PROFILER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Pprof {
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: JoinSet<Result<(), ServeError>>,
}

async fn start(token: &str) -> Pprof {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = new_pprof_server(token).expect("valid token");
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(pprof_serve_task(
        Some(server.clone()),
        Some(listener),
        addr.to_string(),
    ));
    tasks.spawn(pprof_shutdown_task(
        cancel.clone(),
        Some(server),
        addr.to_string(),
    ));
    Pprof {
        addr,
        cancel,
        tasks,
    }
}

impl Pprof {
    async fn stop(mut self) {
        self.cancel.cancel();
        tokio::time::timeout(IO_LIMIT, async {
            while let Some(done) = self.tasks.join_next().await {
                done.unwrap().expect("task succeeded");
            }
        })
        .await
        .expect("stopped within the limit");
    }
}

#[tokio::test]
async fn t174_index_is_200_html() {
    let s = start("").await;
    let reply = get(s.addr, "/debug/pprof/", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(reply.text().contains("href=\"profile?seconds=30\""));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t175_one_second_profile_is_200_after_about_a_second() {
    let _exclusive = PROFILER.lock().await;
    let s = start("").await;
    // Burn CPU meanwhile, so the profile has samples to show.
    let burner = Burner::start(&[spin_main]);
    let started = Instant::now();
    let reply = get(s.addr, "/debug/pprof/profile?seconds=1", &[]).await;
    let elapsed = started.elapsed();
    burner.stop();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        reply.header("X-Profile-Note"),
        None,
        "a busy profile is not empty"
    );
    // A gzipped perftools.profiles.Profile, as `go tool pprof` reads it.
    let profile = pprof_proto::decode_gzipped(&reply.body);
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (profile.str(t.r#type), profile.str(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let period = profile.period_type.as_ref().expect("period type");
    assert_eq!(
        (profile.str(period.r#type), profile.str(period.unit)),
        ("cpu", "nanoseconds")
    );
    assert_eq!(profile.period, 1_000_000_000 / 99);
    for sample in &profile.sample {
        assert!(sample.value[0] >= 1);
        assert_eq!(sample.value[1], sample.value[0] * profile.period);
    }
    assert!(
        profile.duration_nanos >= 900_000_000,
        "{}",
        profile.duration_nanos
    );
    assert!(profile.time_nanos > 0);
    assert!(
        spinning_samples(&profile, "spin_main") > 0,
        "no sample of the spinning function in a second of its busy work: {:?}",
        profile.stacks()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_profile_is_409() {
    let _exclusive = PROFILER.lock().await;
    let s = start("").await;
    let addr = s.addr;
    let first = tokio::spawn(async move { get(addr, "/debug/pprof/profile?seconds=1", &[]).await });
    // The first request takes the profiler within a few milliseconds of arriving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = get(addr, "/debug/pprof/profile?seconds=1", &[]).await;
    assert_eq!(second.status, 409);
    assert!(second.text().contains("already"), "{}", second.text());
    assert_eq!(first.await.unwrap().status, 200);
    s.stop().await;
}

/// Overlapping requests: while one profile runs, every other gets 409 at once; the one
/// running is unaffected, and once it is done the next one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_profiles_one_at_a_time_and_the_slot_is_released() {
    let _exclusive = PROFILER.lock().await;
    let s = start("").await;
    let addr = s.addr;
    let first = tokio::spawn(async move { get(addr, "/debug/pprof/profile?seconds=2", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut others = JoinSet::new();
    for _ in 0..3 {
        others.spawn(async move { get(addr, "/debug/pprof/profile?seconds=1", &[]).await });
    }
    while let Some(reply) = others.join_next().await {
        assert_eq!(reply.unwrap().status, 409);
    }
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    pprof_proto::decode_gzipped(&first.body);
    let next = get(addr, "/debug/pprof/profile?seconds=1", &[]).await;
    assert_eq!(next.status, 200, "{}", String::from_utf8_lossy(&next.body));
    s.stop().await;
}

/// A client that hangs up mid-profile stops it: the request future is dropped, the sampler with
/// it (timer disarmed, buffer unmapped), and the next request can profile long before the
/// abandoned 60 s would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_profile_frees_the_profiler() {
    use tokio::io::AsyncWriteExt;
    let _exclusive = PROFILER.lock().await;
    let s = start("").await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /debug/pprof/profile?seconds=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The request takes the profiler within a few milliseconds of arriving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(s.addr, "/debug/pprof/profile?seconds=1", &[])
            .await
            .status,
        409,
        "the 60 s profile runs"
    );
    drop(stream);
    // Far below the 60 s the abandoned profile would hold the profiler for.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = get(s.addr, "/debug/pprof/profile?seconds=1", &[]).await;
        if reply.status == 200 {
            pprof_proto::decode_gzipped(&reply.body);
            break;
        }
        assert_eq!(reply.status, 409);
        assert!(
            Instant::now() < deadline,
            "the profiler stayed taken after the client hung up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// A profile taken while several threads spin has samples of each, from as many threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_under_load_from_several_threads_has_samples_from_each() {
    let _exclusive = PROFILER.lock().await;
    let s = start("").await;
    let burner = Burner::start(&[spin_a, spin_b, spin_c]);
    let reply = get(s.addr, "/debug/pprof/profile?seconds=2", &[]).await;
    burner.stop();
    assert_eq!(reply.status, 200);
    let profile = pprof_proto::decode_gzipped(&reply.body);
    let mut threads = std::collections::HashSet::new();
    for name in ["spin_a", "spin_b", "spin_c"] {
        assert!(
            spinning_samples(&profile, name) > 0,
            "no sample of {name}: {:?}",
            profile.stacks()
        );
        for (i, stack) in profile.stacks().iter().enumerate() {
            if stack.iter().any(|f| f.ends_with(name)) {
                threads.insert(profile.num_label(i, "thread_id").expect("thread_id label"));
            }
        }
    }
    assert!(threads.len() >= 3, "spinning threads seen: {threads:?}");
    s.stop().await;
}

#[tokio::test]
async fn out_of_range_or_unreadable_seconds_are_400_at_once() {
    let s = start("").await;
    for seconds in ["0", "abc", "100000", "-5", "301"] {
        let started = Instant::now();
        let reply = get(
            s.addr,
            &format!("/debug/pprof/profile?seconds={seconds}"),
            &[],
        )
        .await;
        assert_eq!(reply.status, 400, "{seconds}");
        assert!(reply.text().contains("1 to 300"), "{}", reply.text());
        // Far below the 30 s a wrongly started default profile would take; loose enough for
        // a loaded CI machine.
        assert!(started.elapsed() < Duration::from_secs(10), "{seconds}");
    }
    s.stop().await;
}

#[tokio::test]
async fn t176_token_protects_every_pprof_path() {
    let s = start("pprof-token").await;
    for path in [
        "/debug/pprof/",
        "/debug/pprof/profile?seconds=abc",
        "/debug/pprof/nope",
        "/x",
    ] {
        let reply = get(s.addr, path, &[]).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(reply.body, b"Unauthorized\n");
    }
    let ok = get(
        s.addr,
        "/debug/pprof/",
        &[("Authorization", "Bearer pprof-token")],
    )
    .await;
    assert_eq!(ok.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn t177_empty_token_leaves_pprof_open() {
    let s = start("").await;
    assert_eq!(get(s.addr, "/debug/pprof/", &[]).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn t178_cmdline_symbol_trace_exist_and_outside_paths_are_404() {
    let s = start("").await;
    let cmdline = get(s.addr, "/debug/pprof/cmdline", &[]).await;
    assert_eq!(cmdline.status, 200);
    assert_eq!(
        cmdline.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    let expected: Vec<String> = std::env::args().collect();
    assert_eq!(cmdline.text(), expected.join("\0"));
    for path in ["/debug/pprof/symbol", "/debug/pprof/trace"] {
        let reply = get(s.addr, path, &[]).await;
        assert_eq!(reply.status, 501, "{path}");
        assert!(reply.text().contains("not available"), "{}", reply.text());
    }
    for path in ["/", "/metrics", "/debug/pprofx", "/debug/"] {
        assert_eq!(get(s.addr, path, &[]).await.status, 404, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn go_runtime_profiles_are_501_and_unknown_names_404() {
    let s = start("").await;
    for name in [
        "heap",
        "goroutine",
        "allocs",
        "block",
        "mutex",
        "threadcreate",
    ] {
        let reply = get(s.addr, &format!("/debug/pprof/{name}"), &[]).await;
        assert_eq!(reply.status, 501, "{name}");
        assert!(
            reply.text().contains("Go runtime profile"),
            "{}",
            reply.text()
        );
    }
    assert_eq!(get(s.addr, "/debug/pprof/unknown", &[]).await.status, 404);
    assert_eq!(get(s.addr, "/debug/pprof/profile/", &[]).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn symbol_post_from_pprof_tools_gets_the_explanation() {
    let s = start("").await;
    let reply = request(
        s.addr,
        "POST",
        "/debug/pprof/symbol",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(reply.status, 501);
    s.stop().await;
}

#[tokio::test]
async fn bare_prefix_redirects_to_the_index() {
    let s = start("").await;
    let reply = get(s.addr, "/debug/pprof", &[]).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("Location"), Some("/debug/pprof/"));
    let with_query = get(s.addr, "/debug/pprof?debug=1", &[]).await;
    assert_eq!(with_query.header("Location"), Some("/debug/pprof/?debug=1"));
    s.stop().await;
}

#[tokio::test]
async fn write_methods_on_pprof_pages_get_405() {
    let s = start("").await;
    let reply = request(s.addr, "POST", "/debug/pprof/", &[("Content-Length", "0")]).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
    s.stop().await;
}

#[tokio::test]
async fn pprof_tasks_short_cut_without_server_or_listener() {
    let quick = Duration::from_secs(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::time::timeout(quick, pprof_serve_task(None, Some(listener), "a".into()))
        .await
        .unwrap()
        .unwrap();
    let server = new_pprof_server("").unwrap();
    tokio::time::timeout(quick, pprof_serve_task(Some(server), None, "a".into()))
        .await
        .unwrap()
        .unwrap();
    let never = CancellationToken::new();
    tokio::time::timeout(quick, pprof_shutdown_task(never, None, "a".into()))
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn pprof_server_is_always_built_with_the_1s_header_timeout() {
    let open = new_pprof_server("").unwrap();
    assert!(!open.is_protected());
    assert_eq!(open.header_read_timeout(), Duration::from_secs(1));
    assert!(new_pprof_server("pprof-token").unwrap().is_protected());
    assert!(matches!(
        new_pprof_server("a b"),
        Err(ServeError::TokenContainsWhitespace)
    ));
}

#[tokio::test]
async fn slow_header_client_is_dropped_by_pprof_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start("").await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /debug/pprof/ HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("closed by the server");
    assert!(started.elapsed() >= Duration::from_millis(900));
    s.stop().await;
}

/// Resident memory of this process, from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm has a resident field");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

/// Functions that burn CPU until told to stop, each under its own name so a profile shows
/// which ran. Never inlined, so each is a frame of its own.
macro_rules! spinners {
    ($($name:ident),*) => {$(
        #[inline(never)]
        fn $name(stop: &AtomicBool) -> u64 {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            x
        }
    )*};
}
spinners!(spin_main, spin_a, spin_b, spin_c);

/// Threads running spinners until [`Burner::stop`] (or at most 30 s, so a failed test cannot
/// leave them running).
struct Burner {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Burner {
    fn start(spinners: &[fn(&AtomicBool) -> u64]) -> Burner {
        let stop = Arc::new(AtomicBool::new(false));
        let watchdog = Arc::clone(&stop);
        let mut threads: Vec<_> = spinners
            .iter()
            .map(|&spin| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    std::hint::black_box(spin(&stop));
                })
            })
            .collect();
        threads.push(std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(30);
            while !watchdog.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            watchdog.store(true, Ordering::Relaxed);
        }));
        Burner { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Samples (counted) whose stack has the function of this file named `name`, by its demangled
/// path (`serve_pprof::spin_a`).
fn spinning_samples(profile: &pprof_proto::Profile, name: &str) -> i64 {
    let full = format!("serve_pprof::{name}");
    profile
        .stacks()
        .iter()
        .zip(&profile.sample)
        .filter(|(stack, _)| stack.iter().any(|f| *f == full))
        .map(|(_, s)| s.value[0])
        .sum()
}

/// Fetches a 1 s profile (while spinning) and decodes it.
async fn profile_once(addr: SocketAddr) -> pprof_proto::Profile {
    let burner = Burner::start(&[spin_main]);
    let reply = get(addr, "/debug/pprof/profile?seconds=1", &[]).await;
    burner.stop();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    pprof_proto::decode_gzipped(&reply.body)
}

/// Whether `s` is a legacy-mangled (`_ZN…17h<hash>E`) or v0-mangled (`_R…`) Rust symbol.
fn is_mangled(s: &str) -> bool {
    let legacy = s.starts_with("_ZN") && s.ends_with('E') && s.contains("17h");
    let v0 =
        s.starts_with("_R") && s.len() > 4 && s[2..].starts_with(|c: char| c.is_ascii_uppercase());
    legacy || v0
}

/// Issue #14's criterion: twenty profiles in a row leave resident memory within a few MiB of
/// where it was before the first. The sampler maps its buffer per profile and the symbolizer
/// maps the executable and parses its DWARF per profile; both are gone when the response is
/// built (README, "Profiling memory"). Every profile is symbolized and demangled: the spinning
/// function appears by its readable name, so samples really land and really resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_profiles_in_a_row_keep_resident_memory_flat_and_symbols_readable() {
    let _exclusive = PROFILER.lock().await;
    let s = start("").await;
    let before = resident_bytes();
    let mut peak = before;
    let mut with_spinner = 0;
    for _ in 0..20 {
        let profile = profile_once(s.addr).await;
        peak = peak.max(resident_bytes());
        with_spinner += usize::from(spinning_samples(&profile, "spin_main") > 0);
        let mangled: Vec<&String> = profile
            .string_table
            .iter()
            .filter(|s| is_mangled(s))
            .collect();
        assert!(mangled.is_empty(), "mangled symbols left: {mangled:?}");
    }
    let after = resident_bytes();
    const MIB: u64 = 1 << 20;
    eprintln!(
        "resident: {:.1} MiB before, {:.1} MiB at most between profiles, {:.1} MiB after twenty",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        with_spinner > 0,
        "no profile had a sample of the spinning function in 20 s of its busy work"
    );
    assert!(
        after <= before + 8 * MIB,
        "resident memory grew from {:.1} MiB to {:.1} MiB over 20 profiles",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    s.stop().await;
}
