//! The profiling server (SPEC 3.19): Go's `/debug/pprof/` routes, served with what a Rust
//! process can offer: a CPU profile in pprof protobuf format and the command line. The Go
//! runtime's own profiles (heap, goroutine, trace, …) answer 501 with an explanation, so
//! tooling and operators learn why instead of getting a silent 404.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::body::{method_not_allowed, plain_text, Body, PooledVec};
use super::filter::query_pairs;
use super::profile_proto::{self, Header, StackCount};
use super::sampler::{Sampler, Samples, StartError};
use super::server::{self, Handler, Server, ServerConfig};
use super::symbolize;
use super::ServeError;

const PREFIX: &str = "/debug/pprof/";
/// Go's default for `seconds`.
const DEFAULT_SECONDS: u64 = 30;
/// Beyond five minutes a profile is more likely a typo than a plan, and it pins the one
/// profiler slot of the process for that long.
const MAX_SECONDS: u64 = 300;
/// 99 Hz rather than Go's 100: sampling in lockstep with periodic 100 Hz work would see it
/// always or never.
const FREQUENCY_HZ: u32 = 99;
/// The profiles the Go runtime offers under `/debug/pprof/<name>`.
const GO_PROFILES: [&str; 6] = [
    "allocs",
    "block",
    "goroutine",
    "heap",
    "mutex",
    "threadcreate",
];

/// The CPU profiler is process-wide (one `SIGPROF` timer), so "one profile at a time" must be
/// process-wide too, whichever server asked.
static PROFILING: AtomicBool = AtomicBool::new(false);

/// The profiling server (SPEC 3.19). Cheap to clone: clones share the server.
///
/// Routes: `/debug/pprof/` (HTML index), `/debug/pprof` (301 to it),
/// `/debug/pprof/profile?seconds=N` (CPU profile, gzipped pprof protobuf as Go serves it;
/// `seconds` 1..=300, default 30; 400 outside that range or when not a whole number, 409 while
/// another profile runs), `/debug/pprof/cmdline` (NUL-separated argv, as Go).
/// `/debug/pprof/symbol`, `/debug/pprof/trace` and the Go runtime profiles (`heap`,
/// `goroutine`, `allocs`, `block`, `mutex`, `threadcreate`) answer 501 with the reason; other
/// names under the prefix and every other path answer 404.
///
/// Divergence from Go: an unreadable or zero `seconds` is a 400 rather than a silent 30 s.
#[derive(Clone)]
pub struct PprofServer {
    inner: Server<PprofHandler>,
}

impl std::fmt::Debug for PprofServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PprofServer")
            .field("protected", &self.is_protected())
            .field("config", &self.inner.config())
            .finish_non_exhaustive()
    }
}

impl PprofServer {
    /// Serves with the web-configuration file `web`, as
    /// [`MetricsServer::use_web_config`](super::MetricsServer::use_web_config).
    #[cfg(feature = "tls")]
    pub fn use_web_config(&self, web: super::WebConfig) -> Result<(), ServeError> {
        self.inner.use_web_config(web)
    }

    /// Whether requests must carry the bearer token.
    pub fn is_protected(&self) -> bool {
        self.inner.is_protected()
    }

    /// How long a client may take to send its request headers.
    pub fn header_read_timeout(&self) -> Duration {
        self.inner.config().header_read_timeout
    }
}

/// Builds the profiling server protected by `token` (same rules as the metrics server), with
/// the default [`ServerConfig`]: 1 s header-read timeout, no write timeout, 5 s shutdown.
///
/// Unlike the metrics server there is always a server; the only error is a token with
/// whitespace inside.
pub fn new_pprof_server(token: &str) -> Result<PprofServer, ServeError> {
    new_pprof_server_with(token, ServerConfig::default())
}

/// [`new_pprof_server`] with explicit timeouts.
pub fn new_pprof_server_with(token: &str, config: ServerConfig) -> Result<PprofServer, ServeError> {
    Ok(PprofServer {
        inner: Server::new("pprof", PprofHandler, token, config)?,
    })
}

/// A task serving `server` on `listener`; behaves as
/// [`metrics_serve_task`](super::metrics_serve_task).
pub fn pprof_serve_task(
    server: Option<PprofServer>,
    listener: Option<TcpListener>,
    address: String,
) -> impl Future<Output = Result<(), ServeError>> + Send + 'static {
    server::serve_task(server.map(|s| s.inner), listener, address)
}

/// A task that shuts `server` down after `cancel`; behaves as
/// [`metrics_shutdown_task`](super::metrics_shutdown_task). A profile still running at the
/// deadline is cut off with its connection.
pub fn pprof_shutdown_task(
    cancel: CancellationToken,
    server: Option<PprofServer>,
    address: String,
) -> impl Future<Output = Result<(), ServeError>> + Send + 'static {
    server::shutdown_task(cancel, server.map(|s| s.inner), address)
}

pub(crate) struct PprofHandler;

/// What a path under the prefix names.
enum Route<'a> {
    Redirect,
    Index,
    Cmdline,
    Profile,
    Unavailable(&'static str, &'a str),
    UnknownProfile,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    if path == "/debug/pprof" {
        return Route::Redirect;
    }
    let Some(name) = path.strip_prefix(PREFIX) else {
        return Route::NotFound;
    };
    match name {
        "" => Route::Index,
        "cmdline" => Route::Cmdline,
        "profile" => Route::Profile,
        "symbol" => Route::Unavailable(SYMBOL_UNAVAILABLE, name),
        "trace" => Route::Unavailable(TRACE_UNAVAILABLE, name),
        _ if GO_PROFILES.contains(&name) => Route::Unavailable(GO_PROFILE_UNAVAILABLE, name),
        _ => Route::UnknownProfile,
    }
}

const SYMBOL_UNAVAILABLE: &str = "symbol lookup is not available in this Rust process: \
/debug/pprof/profile already returns symbolized profiles (function names are resolved \
in-process), so pprof tools never need to look addresses up here.\n";
const TRACE_UNAVAILABLE: &str = "execution traces are not available: they come from the Go \
runtime's execution tracer, which a Rust process does not have. Use /debug/pprof/profile for \
CPU time.\n";
const GO_PROFILE_UNAVAILABLE: &str = "is a Go runtime profile; this Rust process has no \
equivalent. Only the CPU profile (/debug/pprof/profile) and the command line \
(/debug/pprof/cmdline) are available.\n";

impl Handler for PprofHandler {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let route = route(req.uri().path());
        // The 501s answer any method: pprof tools POST to `symbol`, and the explanation is
        // what they need to see.
        match route {
            Route::NotFound => {
                return plain_text(
                    StatusCode::NOT_FOUND,
                    Body::from_static(b"404 page not found\n"),
                )
            }
            Route::UnknownProfile => {
                return plain_text(
                    StatusCode::NOT_FOUND,
                    Body::from_static(b"Unknown profile\n"),
                )
            }
            Route::Unavailable(why, name) => {
                let text = if why == GO_PROFILE_UNAVAILABLE {
                    format!("the {name:?} profile {why}")
                } else {
                    why.to_string()
                };
                return plain_text(StatusCode::NOT_IMPLEMENTED, Body::from_string(text));
            }
            _ => {}
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return method_not_allowed("GET, HEAD");
        }
        match route {
            Route::Redirect => redirect(req.uri().query()),
            Route::Index => index(),
            Route::Cmdline => cmdline(),
            Route::Profile => profile(req.uri().query()).await,
            Route::Unavailable(..) | Route::UnknownProfile | Route::NotFound => {
                unreachable!("answered above")
            }
        }
    }
}

/// Go's router sends `/debug/pprof` to `/debug/pprof/`, keeping the query.
fn redirect(query: Option<&str>) -> Response<Body> {
    let location = match query {
        Some(q) => format!("{PREFIX}?{q}"),
        None => PREFIX.to_string(),
    };
    let mut response = plain_text(
        StatusCode::MOVED_PERMANENTLY,
        Body::from_static(b"Moved Permanently\n"),
    );
    match HeaderValue::try_from(location) {
        Ok(location) => {
            response.headers_mut().insert(LOCATION, location);
        }
        // The query came from a parsed request line, so it is always a valid header value.
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

const INDEX: &str = r#"<!DOCTYPE html>
<html>
<head><title>/debug/pprof/</title></head>
<body>
<h1>/debug/pprof/</h1>
<p>Profiles of this process (a Rust program; Go runtime profiles are not available).</p>
<table>
<tr><th align="left">Profile</th><th align="left">Description</th></tr>
<tr><td><a href="profile?seconds=30">profile</a></td><td>CPU profile in pprof protobuf format (gzipped), sampled at 99 Hz for <code>seconds</code> (1 to 300, default 30). One profile at a time: a concurrent request gets 409.</td></tr>
<tr><td><a href="cmdline">cmdline</a></td><td>The command line of this process, arguments separated by NUL bytes.</td></tr>
<tr><td>symbol</td><td>501: profiles are symbolized in-process, no lookup is needed.</td></tr>
<tr><td>trace</td><td>501: execution traces come from the Go runtime's tracer, absent in Rust.</td></tr>
<tr><td>allocs, block, goroutine, heap, mutex, threadcreate</td><td>501: Go runtime profiles with no equivalent here.</td></tr>
</table>
<p>Example: <code>go tool pprof -http=: http://HOST:PORT/debug/pprof/profile?seconds=30</code>
(with a token, fetch it first: <code>curl -H "Authorization: Bearer $TOKEN" -o cpu.pb.gz 'http://HOST:PORT/debug/pprof/profile?seconds=30'</code>).</p>
</body>
</html>
"#;

fn index() -> Response<Body> {
    let mut response = Response::new(Body::from_static(INDEX.as_bytes()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The arguments joined by NUL, as Go's handler writes them (no trailing NUL).
fn cmdline() -> Response<Body> {
    let mut out = Vec::new();
    for (i, arg) in std::env::args_os().enumerate() {
        if i > 0 {
            out.push(0);
        }
        // Exact bytes on Unix; elsewhere a lossy rendering is the best there is.
        #[cfg(unix)]
        out.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(arg.as_os_str()));
        #[cfg(not(unix))]
        out.extend_from_slice(arg.to_string_lossy().as_bytes());
    }
    plain_text(StatusCode::OK, Body::from_vec(PooledVec::unpooled(out)))
}

/// `seconds` from the query: default when absent or empty, an error message otherwise.
fn profile_seconds(query: Option<&str>) -> Result<u64, String> {
    let value = query_pairs(query.unwrap_or_default())
        .find(|(key, _)| key == "seconds")
        .map(|(_, value)| value);
    let value = match value.as_deref().map(str::trim) {
        None | Some("") => return Ok(DEFAULT_SECONDS),
        Some(v) => v,
    };
    match value.parse::<u64>() {
        Ok(s) if (1..=MAX_SECONDS).contains(&s) => Ok(s),
        _ => Err(format!(
            "invalid seconds {value:?}: must be a whole number from 1 to {MAX_SECONDS} \
             (default {DEFAULT_SECONDS})\n"
        )),
    }
}

/// Holds the process-wide profiler slot; released on drop, including when the client hangs up
/// and the request future is dropped mid-profile.
struct ProfilingSlot;

impl ProfilingSlot {
    fn acquire() -> Option<ProfilingSlot> {
        // Acquire/Release pair the slot's hand-overs, so one profile's teardown happens before
        // the next one's start even across threads.
        PROFILING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ProfilingSlot)
    }
}

impl Drop for ProfilingSlot {
    fn drop(&mut self) {
        PROFILING.store(false, Ordering::Release);
    }
}

async fn profile(query: Option<&str>) -> Response<Body> {
    let seconds = match profile_seconds(query) {
        Ok(s) => s,
        Err(message) => return plain_text(StatusCode::BAD_REQUEST, Body::from_string(message)),
    };
    let Some(slot) = ProfilingSlot::acquire() else {
        return busy();
    };
    // Room for every sample the process can take: one per period of CPU time on each CPU.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let expected = (FREQUENCY_HZ as usize * seconds as usize * cpus).saturating_add(64);
    let started_at = std::time::SystemTime::now();
    let started = std::time::Instant::now();
    let sampler = match Sampler::start(FREQUENCY_HZ, expected) {
        Ok(sampler) => sampler,
        // Another profiler of the process holds the CPU-time timer.
        Err(StartError::Busy) => return busy(),
        Err(StartError::Failed(e)) => {
            return profile_failed(&format!("could not start the CPU profiler: {e}"))
        }
    };
    info!(server = "pprof", seconds, "collecting a CPU profile");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let samples = sampler.stop();
    let duration = started.elapsed();
    // Symbolizing and compressing take real CPU time, so not on the async workers; and not on
    // tokio's blocking pool either: glibc gives every thread an arena and keeps a few MiB of
    // each arena's top after the symbolizer's tens of MiB are freed (`malloc_trim` does not
    // shrink a thread arena's top), so profiles built on a rotating set of pool threads kept
    // growing (9.8 → 24.6 MB over 20 profiles on the release node). A thread of its own per
    // profile hands its arena back to glibc's free list when it exits, and the next profile's
    // thread takes that same arena again.
    let (done, encoded) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("pprof-encode".into())
        .spawn(move || {
            let result = encode_profile(&samples, started_at, duration);
            // Everything the profile used is dropped by now; give the pages back.
            drop(samples);
            release_profile_memory();
            drop(slot);
            // The request may be gone (client hung up); the profile then has no reader.
            let _ = done.send(result);
        });
    if let Err(e) = spawned {
        return profile_failed(&format!("could not start the thread that builds it: {e}"));
    }
    let encoded = encoded.await;
    match encoded {
        Ok(Ok(profile)) => {
            let mut response = Response::new(Body::from_vec(PooledVec::unpooled(profile.gzipped)));
            let headers = response.headers_mut();
            if profile.samples == 0 {
                headers.insert(
                    HeaderName::from_static("x-profile-note"),
                    HeaderValue::from_static(EMPTY_PROFILE_NOTE),
                );
            }
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"profile\""),
            );
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        Ok(Err(message)) => profile_failed(&message),
        Err(_) => profile_failed("building the profile panicked"),
    }
}

fn busy() -> Response<Body> {
    plain_text(
        StatusCode::CONFLICT,
        Body::from_static(
            b"a CPU profile is already being collected in this process; retry when it finishes\n",
        ),
    )
}

fn profile_failed(message: &str) -> Response<Body> {
    error!(server = "pprof", error = message, "CPU profile failed");
    plain_text(
        StatusCode::INTERNAL_SERVER_ERROR,
        Body::from_string(format!("Could not produce a CPU profile: {message}\n")),
    )
}

/// A built profile: the gzipped bytes and how many samples went into it.
struct EncodedProfile {
    gzipped: Vec<u8>,
    samples: usize,
}

/// Why a profile with no samples is empty, written into it as a comment (`go tool pprof`
/// shows comments) and into the `X-Profile-Note` response header.
const EMPTY_PROFILE_NOTE: &str = "no CPU samples: no thread of this process was running on a CPU while the profile was collected (an idle process is never sampled; samples are taken at 99 Hz of CPU time, not wall time). Profile while the process is busy, or for longer.";

/// The comments of a profile: why it is empty, and how many samples did not fit.
fn profile_comments(samples: usize, dropped: u64) -> Vec<String> {
    let mut comments = Vec::new();
    if samples == 0 && dropped == 0 {
        comments.push(EMPTY_PROFILE_NOTE.to_string());
    }
    if dropped > 0 {
        comments.push(format!(
            "{dropped} samples dropped: the profile's sample buffer ({samples} samples) was full; \
             profile for less time"
        ));
    }
    comments
}

/// The profile as `go tool pprof` expects it: a gzipped `perftools.profiles.Profile`,
/// symbolized in-process, Rust symbols demangled and, when it has no samples, a comment saying
/// why. Identical stacks of one thread are one sample with a count, as in Go.
fn encode_profile(
    samples: &Samples,
    started_at: std::time::SystemTime,
    duration: Duration,
) -> Result<EncodedProfile, String> {
    let mut stacks: HashMap<(u32, Vec<u64>), u64> = HashMap::new();
    samples.for_each(|tid, stack| *stacks.entry((tid, stack.to_vec())).or_insert(0) += 1);
    let symbols = symbolize::symbolize(stacks.keys().flat_map(|(_, s)| s.iter().copied()));
    let names: HashMap<u32, String> = stacks
        .keys()
        .map(|&(tid, _)| tid)
        .filter_map(|tid| thread_name(tid).map(|name| (tid, name)))
        .collect();
    let mut aggregated: Vec<StackCount<'_>> = stacks
        .iter()
        .map(|((tid, stack), &count)| StackCount {
            stack,
            thread_id: *tid,
            thread_name: names.get(tid).map(String::as_str),
            count,
        })
        .collect();
    // Heaviest first: a stable, readable order for anyone reading the raw profile.
    aggregated.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.stack.cmp(b.stack)));
    let comments = profile_comments(samples.len(), samples.dropped());
    let header = Header {
        time_nanos: started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        duration_nanos: duration.as_nanos() as i64,
        period_nanos: 1_000_000_000 / i64::from(FREQUENCY_HZ),
        comments: &comments,
    };
    let raw = profile_proto::encode(&header, &aggregated, &symbols);
    drop(aggregated);
    drop(symbols);
    drop(stacks);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let gzipped = gz
        .write_all(&raw)
        .and_then(|()| gz.finish())
        .map_err(|e| format!("could not compress the profile: {e}"))?;
    Ok(EncodedProfile {
        gzipped,
        samples: samples.len(),
    })
}

/// The name a thread of this process has now (`/proc/self/task/<tid>/comm`), if it still runs.
fn thread_name(tid: u32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
    let name = name.trim_end_matches('\n');
    (!name.is_empty()).then(|| name.to_string())
}

/// Gives back the memory a profile used, once it is built.
///
/// The sample buffer and `/proc/self/exe` were mapped for the profile and are unmapped by
/// now; what the symbolizer and encoder allocated (parsed DWARF, tables, the protobuf) is
/// freed, but glibc keeps freed pages in the arena of the blocking thread that built the
/// profile. Trimming every arena returns them (README, "Profiling memory").
fn release_profile_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_go_paths_exactly() {
        assert!(matches!(route("/debug/pprof"), Route::Redirect));
        assert!(matches!(route("/debug/pprof/"), Route::Index));
        assert!(matches!(route("/debug/pprof/cmdline"), Route::Cmdline));
        assert!(matches!(route("/debug/pprof/profile"), Route::Profile));
        assert!(matches!(
            route("/debug/pprof/symbol"),
            Route::Unavailable(SYMBOL_UNAVAILABLE, _)
        ));
        assert!(matches!(
            route("/debug/pprof/trace"),
            Route::Unavailable(TRACE_UNAVAILABLE, _)
        ));
        for name in GO_PROFILES {
            assert!(matches!(
                route(&format!("/debug/pprof/{name}")),
                Route::Unavailable(GO_PROFILE_UNAVAILABLE, n) if n == name
            ));
        }
        assert!(matches!(route("/debug/pprof/nope"), Route::UnknownProfile));
        assert!(matches!(
            route("/debug/pprof/profile/"),
            Route::UnknownProfile
        ));
        assert!(matches!(route("/metrics"), Route::NotFound));
        assert!(matches!(route("/debug/pprofx"), Route::NotFound));
        assert!(matches!(route("/"), Route::NotFound));
    }

    #[test]
    fn seconds_default_bounds_and_errors() {
        assert_eq!(profile_seconds(None), Ok(30));
        assert_eq!(profile_seconds(Some("seconds=")), Ok(30));
        assert_eq!(profile_seconds(Some("debug=1")), Ok(30));
        assert_eq!(profile_seconds(Some("seconds=1")), Ok(1));
        assert_eq!(profile_seconds(Some("seconds=300")), Ok(300));
        assert_eq!(profile_seconds(Some("seconds=5&seconds=abc")), Ok(5));
        for bad in [
            "0",
            "301",
            "abc",
            "-1",
            "1.5",
            "100000",
            "99999999999999999999999",
        ] {
            let err = profile_seconds(Some(&format!("seconds={bad}"))).unwrap_err();
            assert!(err.contains("1 to 300"), "{bad}: {err}");
        }
    }

    #[test]
    fn profiling_slot_is_exclusive_and_released_on_drop() {
        // The only unit test touching the process-wide slot, so it cannot race another.
        let slot = ProfilingSlot::acquire().expect("free");
        assert!(ProfilingSlot::acquire().is_none());
        drop(slot);
        assert!(ProfilingSlot::acquire().is_some());
    }

    #[test]
    fn an_empty_profile_says_why_in_a_comment_and_drops_are_counted() {
        let empty = profile_comments(0, 0);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].starts_with("no CPU samples"), "{empty:?}");
        // A header value must be visible ASCII.
        assert!(HeaderValue::from_str(EMPTY_PROFILE_NOTE).is_ok());
        assert!(profile_comments(5, 0).is_empty());
        let full = profile_comments(5, 7);
        assert_eq!(full.len(), 1);
        assert!(full[0].starts_with("7 samples dropped"), "{full:?}");
    }

    #[test]
    fn an_empty_profile_is_a_valid_gzipped_profile_carrying_the_note() {
        use std::io::Read as _;
        let built = encode_profile(
            &Samples::empty(),
            std::time::SystemTime::now(),
            Duration::from_secs(1),
        )
        .expect("builds");
        assert_eq!(built.samples, 0);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&built.gzipped[..])
            .read_to_end(&mut raw)
            .expect("gzip");
        let note = EMPTY_PROFILE_NOTE.as_bytes();
        assert!(
            raw.windows(note.len()).any(|w| w == note),
            "the note is in the string table"
        );
    }

    #[test]
    fn index_links_every_available_endpoint() {
        assert!(INDEX.contains("href=\"profile?seconds=30\""));
        assert!(INDEX.contains("href=\"cmdline\""));
    }
}
