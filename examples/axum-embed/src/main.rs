//! Serves the example application on 127.0.0.1:3000 (or the address given as the first
//! argument) until Ctrl-C; `curl http://127.0.0.1:3000/metrics` shows its metrics.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let app = axum_embed_example::app(axum_embed_example::registry(), "")?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!(
        "serving on http://{}/ (metrics at /metrics)",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
