//! The example service: the API on 127.0.0.1:8080 (with its own `/metrics`), and the runtime's
//! ready-made metrics server on 127.0.0.1:9100. Ctrl-C stops both.

use std::sync::Arc;

use http_service_example::{metrics, serve, Service};
use static_metrics::serve as metrics_server;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = metrics::registry("example", "127.0.0.1:8080");
    let service = Service::new(registry.clone());
    let cancel = CancellationToken::new();

    let api = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    let api_task = tokio::spawn(serve(api, service, cancel.clone()));

    // The runtime's server adds negotiation of OpenMetrics, gzip, `name[]` filters, a bearer
    // token (required beyond loopback), a scrape cap and its own `promhttp_*` self metrics.
    let address = "127.0.0.1:9100".to_string();
    let listener = metrics_server::bind_listener(&address, "").await?;
    let server = metrics_server::new_metrics_server(Some(Arc::new(registry)), "")?;
    let serve_task = tokio::spawn(metrics_server::metrics_serve_task(
        server.clone(),
        Some(listener),
        address.clone(),
    ));
    println!("API on http://127.0.0.1:8080/ (its own /metrics), metrics server on http://{address}/metrics");

    tokio::signal::ctrl_c().await?;
    cancel.cancel();
    metrics_server::metrics_shutdown_task(cancel, server, address).await?;
    api_task.await?;
    serve_task.await??;
    Ok(())
}
