//! The demo node: an elastickv-shaped process that drives every observer and collector with a
//! synthetic workload and serves the metrics (and pprof) over HTTP.
//!
//! `cargo run --release` starts it on `127.0.0.1:9090`; `--help` lists the knobs.

mod node;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use elastickv_metrics::serve::{self, Exposition, MetricsConfig};
use elastickv_metrics::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A synthetic elastickv node exporting the full elastickv monitoring surface.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The `node_id` label on every series.
    #[arg(long, default_value = "demo-1")]
    node_id: String,
    /// The `node_address` label on every series.
    #[arg(long, default_value = "127.0.0.1:50051")]
    node_address: String,
    /// Where the metrics server listens (serving `/metrics`).
    #[arg(long, default_value = "127.0.0.1:9090")]
    metrics_address: String,
    /// Bearer token required by the metrics server (required off loopback).
    #[arg(long, default_value = "", hide_default_value = true)]
    metrics_token: String,
    /// Read the metrics bearer token from this file (trailing whitespace ignored).
    #[arg(long, conflicts_with = "metrics_token")]
    metrics_token_file: Option<PathBuf>,
    /// Where the pprof server listens; empty disables it.
    #[arg(long, default_value = "127.0.0.1:6060")]
    pprof_address: String,
    /// Bearer token required by the pprof server (required off loopback).
    #[arg(long, default_value = "", hide_default_value = true)]
    pprof_token: String,
    /// Prometheus exporter web-configuration file (TLS, client certificates, basic auth,
    /// headers) for the metrics and pprof servers; re-read when it changes or on SIGHUP.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Synthetic requests per second, over all workload threads.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Workload threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Interval of every poller (dispatch, Pebble, write conflicts, raft, SQS depth).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Serve text 0.0.4 only, even to scrapers that prefer OpenMetrics (as the reference does).
    #[arg(long)]
    no_openmetrics: bool,
    /// Also export the `process_*` families (CPU, memory, file descriptors, start time), as
    /// Prometheus's process collector names them. Off by default, as in the reference.
    #[arg(long)]
    process_metrics: bool,
    /// Serve the exposition at every path, as the reference handler does, instead of only at
    /// `/metrics` (other paths 404).
    #[arg(long)]
    metrics_every_path: bool,
    /// Serve start timestamps (`_created` in OpenMetrics, `created_timestamp` in protobuf).
    #[arg(long)]
    created_timestamps: bool,
    /// Test hook: once this file exists, record a known set of Redis `BZPOPMIN` latencies.
    #[arg(long)]
    known_observations_trigger: Option<PathBuf>,
    /// Local cluster (node ids `n1`, `n2`, `n3`): how long each raft leadership epoch lasts.
    /// Every member must be given the same value (and the same --poll-interval).
    #[arg(long, default_value = "30s", value_parser = parse_epoch)]
    cluster_epoch: Duration,
    /// Local cluster: seed of the leader rotation, the same on every member.
    #[arg(long, default_value_t = 1)]
    cluster_seed: u64,
    /// Stop by itself after this long (e.g. `30s`); runs until Ctrl-C / SIGTERM otherwise.
    #[arg(long, value_parser = parse_duration)]
    run_for: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 2s or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}` (use ms, s or m)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

fn parse_epoch(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        epoch if epoch < Duration::from_millis(1) => {
            Err(format!("`{text}`: a leadership epoch lasts at least 1ms"))
        }
        epoch => Ok(epoch),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let metrics_token = match &args.metrics_token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --metrics-token-file {}: {e}", path.display()))?
            .trim_end()
            .to_string(),
        None => args.metrics_token.clone(),
    };
    let registry = Registry::new(&args.node_id, &args.node_address);
    registry.metrics().set_process_metrics(args.process_metrics);
    let cancel = CancellationToken::new();
    let web = match &args.web_config_file {
        Some(path) => Some(serve::WebConfig::load(path).map_err(|e| e.to_string())?),
        None => None,
    };

    // Bind first: a bad address or a missing token fails before any work starts.
    let metrics_listener =
        serve::bind_listener_web(&args.metrics_address, &metrics_token, web.as_ref())
            .await
            .map_err(|e| e.to_string())?;
    let metrics_address = metrics_listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.metrics_address.clone());
    let simulation = node::Simulation::new(
        registry.clone(),
        node::ClusterSchedule {
            seed: args.cluster_seed,
            epoch: args.cluster_epoch,
        },
    );
    let exposition: Arc<dyn Exposition> = simulation.exposition();
    let config = MetricsConfig {
        enable_openmetrics: !args.no_openmetrics,
        serve_every_path: args.metrics_every_path,
        created_timestamps: args.created_timestamps,
        ..MetricsConfig::default()
    };
    let metrics_server = serve::new_metrics_server_with(Some(exposition), &metrics_token, config)
        .map_err(|e| e.to_string())?;
    if let (Some(server), Some(web)) = (&metrics_server, &web) {
        server
            .use_web_config(web.clone())
            .map_err(|e| e.to_string())?;
    }

    let mut tasks = JoinSet::new();
    if let Some(web) = &web {
        tokio::spawn(web.clone().watch(Duration::from_secs(1), cancel.clone()));
        spawn_sighup_reload(web.clone(), cancel.clone());
    }
    tasks.spawn(serve::metrics_serve_task(
        metrics_server.clone(),
        Some(metrics_listener),
        metrics_address.clone(),
    ));
    tasks.spawn(serve::metrics_shutdown_task(
        cancel.clone(),
        metrics_server,
        metrics_address.clone(),
    ));

    let mut pprof_address = None;
    if !args.pprof_address.trim().is_empty() {
        let listener =
            serve::bind_listener_web(&args.pprof_address, &args.pprof_token, web.as_ref())
                .await
                .map_err(|e| e.to_string())?;
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| args.pprof_address.clone());
        let server = serve::new_pprof_server(&args.pprof_token).map_err(|e| e.to_string())?;
        if let Some(web) = &web {
            server
                .use_web_config(web.clone())
                .map_err(|e| e.to_string())?;
        }
        tasks.spawn(serve::pprof_serve_task(
            Some(server.clone()),
            Some(listener),
            address.clone(),
        ));
        tasks.spawn(serve::pprof_shutdown_task(
            cancel.clone(),
            Some(server),
            address.clone(),
        ));
        pprof_address = Some(address);
    }

    if let Some(trigger) = args.known_observations_trigger.clone() {
        tokio::spawn(node::observe_known_on(
            registry.clone(),
            trigger,
            cancel.clone(),
        ));
    }
    simulation.start_collectors(cancel.clone(), args.poll_interval);
    let workers = node::start_workload(
        registry.clone(),
        cancel.clone(),
        args.workers.max(1),
        args.rate.max(0.0),
    );

    info!(
        metrics = %metrics_address,
        pprof = pprof_address.as_deref().unwrap_or("off"),
        node_id = %args.node_id,
        "demo node running"
    );
    println!("elastickv-metrics demo node `{}` is running.", args.node_id);
    let scheme = if web.as_ref().is_some_and(serve::WebConfig::is_tls) {
        "https"
    } else {
        "http"
    };
    println!("  metrics: {scheme}://{metrics_address}/metrics");
    let auth = if metrics_token.is_empty() {
        String::new()
    } else {
        " -H 'Authorization: Bearer <token>'".to_string()
    };
    println!("  try:     curl -s{auth} {scheme}://{metrics_address}/metrics | head");
    if let Some(address) = &pprof_address {
        println!("  pprof:   {scheme}://{address}/debug/pprof/");
    }
    if simulation.is_cluster_member() {
        println!(
            "  raft:    member `{}` of the local cluster n1, n2, n3 (leadership epoch {:?}, seed {})",
            args.node_id, args.cluster_epoch, args.cluster_seed
        );
    }
    println!("Stop with Ctrl-C.");

    wait_for_stop(args.run_for).await;
    info!("stopping");
    cancel.cancel();

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e.to_string()),
            Err(e) => result = Err(format!("a server task failed: {e}")),
        }
    }
    for worker in workers {
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    }
    info!("stopped");
    result
}

/// Re-reads the web configuration on every SIGHUP until `cancel`.
fn spawn_sighup_reload(web: serve::WebConfig, cancel: CancellationToken) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    web.reload_logged("SIGHUP");
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (web, cancel);
}

/// Resolves on Ctrl-C, SIGTERM, or after `run_for`.
async fn wait_for_stop(run_for: Option<Duration>) {
    let deadline = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm => {}
            _ = deadline => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = deadline => {}
    }
}
