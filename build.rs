//! Compiles `metrics.toml` into the registry's static tables with `static-metrics-build`:
//! every problem in the manifest fails the build as `metrics.toml:LINE:COL: error: …`.

fn main() -> Result<(), static_metrics_build::Error> {
    static_metrics_build::Config::new().compile("metrics.toml")
}
