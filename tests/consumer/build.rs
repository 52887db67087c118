fn main() -> Result<(), static_metrics_build::Error> {
    static_metrics_build::Config::new().compile("all_kinds.toml")
}
