//! Start timestamps: off by default; on, every counter and histogram series carries its
//! first-touch time as `_created` in OpenMetrics (strictly parsed) and `created_timestamp` in
//! protobuf (reference decoder), gauges never do, and text 0.0.4 never does.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/proto.rs"]
mod proto;

use std::time::{SystemTime, UNIX_EPOCH};

use elastickv_metrics::encode::{EncodeOptions, Format};
use elastickv_metrics::manifest::domain::{LuaOutcome, RedisCommand, RedisOutcome};
use elastickv_metrics::manifest::family;
use elastickv_metrics::Registry;

const ON: EncodeOptions = EncodeOptions {
    created_timestamps: true,
};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn registry() -> Registry {
    let r = Registry::new("n1", "10.0.0.1:50051");
    let m = r.metrics();
    m.counter(family::elastickv_redis_requests_total(
        RedisCommand::Get,
        RedisOutcome::Success,
    ))
    .inc();
    m.histogram(family::elastickv_lua_exec_duration_seconds(
        LuaOutcome::Error,
    ))
    .observe(5_000_000);
    m.gauge(family::elastickv_raft_term(
        m.resolve(elastickv_metrics::manifest::domain::RAFT_GROUP, "1"),
    ))
    .set(3);
    r
}

fn render(r: &Registry, format: Format, options: EncodeOptions) -> Vec<u8> {
    let mut out = Vec::new();
    r.metrics().encode_with(format, options, |_| true, &mut out);
    elastickv_metrics::encode::finish(format, &mut out);
    out
}

#[test]
fn off_by_default_and_never_in_text() {
    let r = registry();
    for options in [EncodeOptions::default(), ON] {
        let text = String::from_utf8(render(&r, Format::Text, options)).unwrap();
        assert!(!text.contains("_created"), "text 0.0.4 has no _created");
    }
    let om = String::from_utf8(render(&r, Format::OpenMetrics, EncodeOptions::default())).unwrap();
    assert!(!om.contains("_created"));
    for f in proto::decode(&render(&r, Format::Protobuf, EncodeOptions::default())).unwrap() {
        for m in &f.metric {
            assert!(m
                .counter
                .as_ref()
                .is_none_or(|c| c.created_timestamp.is_none()));
            assert!(m
                .histogram
                .as_ref()
                .is_none_or(|h| h.created_timestamp.is_none()));
        }
    }
}

#[test]
fn openmetrics_created_series_are_the_first_touch_time() {
    let before = now();
    let r = registry();
    let after = now();
    let om = String::from_utf8(render(&r, Format::OpenMetrics, ON)).unwrap();
    let parsed = exposition::parse_openmetrics(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    let labels = [
        ("command", "GET"),
        ("outcome", "success"),
        ("node_id", "n1"),
        ("node_address", "10.0.0.1:50051"),
    ];
    let counter = parsed
        .value("elastickv_redis_requests_created", &labels)
        .expect("the counter's _created");
    assert!(
        counter >= before - 1e-3 && counter <= after + 1e-3,
        "{counter}"
    );
    let h = parsed
        .value(
            "elastickv_lua_exec_duration_seconds_created",
            &[
                ("outcome", "error"),
                ("node_id", "n1"),
                ("node_address", "10.0.0.1:50051"),
            ],
        )
        .expect("the histogram's _created");
    assert!(h >= before - 1e-3 && h <= after + 1e-3, "{h}");
    assert!(
        !om.contains("elastickv_raft_term_created"),
        "gauges have none"
    );
    // Observing again later does not move it: it is the first touch.
    r.metrics()
        .counter(family::elastickv_redis_requests_total(
            RedisCommand::Get,
            RedisOutcome::Success,
        ))
        .inc();
    let again = String::from_utf8(render(&r, Format::OpenMetrics, ON)).unwrap();
    let again = exposition::parse_openmetrics(&again).unwrap();
    assert_eq!(
        again.value("elastickv_redis_requests_created", &labels),
        Some(counter)
    );
}

#[test]
fn protobuf_created_timestamps_on_counters_and_histograms() {
    let before = now();
    let r = registry();
    let after = now();
    let families = proto::decode(&render(&r, Format::Protobuf, ON)).unwrap();
    let ts =
        |t: &proto::Timestamp| t.seconds.unwrap() as f64 + f64::from(t.nanos.unwrap_or(0)) * 1e-9;
    let (mut counters, mut histograms) = (0, 0);
    for f in &families {
        for m in &f.metric {
            if let Some(c) = &m.counter {
                let t = ts(c
                    .created_timestamp
                    .as_ref()
                    .expect("counter created_timestamp"));
                assert!(t >= before - 1e-3 && t <= after + 1e-3, "{t}");
                counters += 1;
            }
            if let Some(h) = &m.histogram {
                let t = ts(h
                    .created_timestamp
                    .as_ref()
                    .expect("histogram created_timestamp"));
                assert!(t >= before - 1e-3 && t <= after + 1e-3, "{t}");
                histograms += 1;
            }
        }
    }
    assert!(counters >= 1 && histograms >= 1);
}
