fn main() -> Result<(), static_metrics_build::Error> {
    static_metrics_build::Config::new()
        .reference("METRICS.md")
        .compile("metrics.toml")
}
