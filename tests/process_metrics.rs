//! The `process_*` families (Prometheus's process collector names): off by default on the
//! elastickv registry (the reference exports none, SPEC 3.16), opt-in per registry, strictly
//! parseable in both formats with the registry's constant labels, filterable by `name[]`, and
//! read at scrape time without allocating once warmed up (a counting global allocator, per
//! thread, in this test binary).

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;
#[path = "support/proto.rs"]
mod proto;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

use elastickv_metrics::encode::Format;
use static_metrics::process::{self, FAMILIES};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts the allocations of the threads that opted in (`count_allocations`).
struct CountingAllocator;

thread_local! {
    // Const-initialised and without a destructor: safe to touch from inside the allocator.
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note_allocation() {
    let _ = ALLOCATIONS.try_with(|a| {
        if let Some(n) = a.get() {
            a.set(Some(n + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns how many allocations this thread made meanwhile.
fn count_allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(Some(0)));
    f();
    ALLOCATIONS.with(|a| a.replace(None)).unwrap_or(0)
}

#[test]
fn the_elastickv_registry_exports_no_process_family_unless_asked() {
    let registry = node::registry();
    assert!(!registry.metrics().process_metrics());
    for format in [Format::Text, Format::OpenMetrics] {
        assert!(!registry.render(format).contains("process_"), "{format:?}");
    }
    let other = node::registry();
    other.metrics().set_process_metrics(true);
    // Per registry: turning it on for one leaves the other as it was.
    assert!(!registry.render(Format::Text).contains("process_"));
    assert!(other
        .render(Format::Text)
        .contains("process_cpu_seconds_total"));
    other.metrics().set_process_metrics(false);
    assert!(!other.render(Format::Text).contains("process_"));
}

#[cfg(target_os = "linux")]
#[test]
fn opted_in_the_six_families_parse_strictly_with_the_constant_labels() {
    let registry = node::registry();
    registry.metrics().set_process_metrics(true);
    let text = registry.render(Format::Text);
    let parsed = exposition::parse_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let om = registry.render(Format::OpenMetrics);
    let parsed_om = exposition::parse_openmetrics(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    for (name, help, counter) in FAMILIES {
        let family = parsed
            .family(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.help.as_deref(), Some(help), "{name}");
        let kind = if counter { "counter" } else { "gauge" };
        assert_eq!(family.kind, kind, "{name}");
        let om_name = if counter {
            name.trim_end_matches("_total")
        } else {
            name
        };
        assert_eq!(parsed_om.family(om_name).unwrap().kind, kind, "{name}");
        let value = parsed
            .value(name, &node::NODE)
            .unwrap_or_else(|| panic!("{name} labels"));
        assert!(value.is_finite() && value >= 0.0, "{name} = {value}");
    }
    let resident = parsed
        .value("process_resident_memory_bytes", &node::NODE)
        .unwrap();
    let virtual_ = parsed
        .value("process_virtual_memory_bytes", &node::NODE)
        .unwrap();
    assert!(resident > 0.0 && resident <= virtual_);
    let open = parsed.value("process_open_fds", &node::NODE).unwrap();
    let max = parsed.value("process_max_fds", &node::NODE).unwrap();
    assert!(open >= 3.0 && open <= max, "{open} of {max}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = parsed
        .value("process_start_time_seconds", &node::NODE)
        .unwrap();
    // Clock ticks round the start time to 10 ms; the boot time to a second.
    assert!(
        start <= now + 2.0 && start > now - 3600.0,
        "started {start}, now {now}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn name_filters_select_process_families_too() {
    let registry = node::registry();
    registry.metrics().set_process_metrics(true);
    let mut out = Vec::new();
    registry.encode_where(Format::Text, |n| n == "process_open_fds", &mut out);
    let text = String::from_utf8(out).unwrap();
    let parsed = exposition::parse_text(&text).unwrap();
    assert_eq!(parsed.families.len(), 1, "{text}");
    assert_eq!(parsed.families[0].name, "process_open_fds");
}

#[cfg(target_os = "linux")]
#[test]
fn open_fds_follow_files_opened_and_closed() {
    let _serial = serial();
    let before = process::read().unwrap().open_fds.unwrap();
    let files: Vec<std::fs::File> = (0..5)
        .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
        .collect();
    let during = process::read().unwrap().open_fds.unwrap();
    drop(files);
    let after = process::read().unwrap().open_fds.unwrap();
    // Other tests of this binary run meanwhile and may hold a descriptor or two briefly.
    assert!(during >= before + 5, "{before} then {during}");
    assert!(after + 5 <= during + 2, "{during} then {after}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_warm_scrape_with_process_families_allocates_nothing() {
    let _serial = serial();
    let registry = node::registry();
    registry
        .redis_observer()
        .observe(&elastickv_metrics::elastickv::redis::RedisRequestReport {
            command: b"get",
            is_error: false,
            duration: std::time::Duration::from_micros(100),
            unsupported: false,
        });
    registry.metrics().set_process_metrics(true);
    let mut out = Vec::new();
    for format in [Format::Text, Format::OpenMetrics] {
        // Warm up: the start time is computed once, buffers grow to size.
        for _ in 0..3 {
            out.clear();
            registry.encode(format, &mut out);
        }
        let allocations = count_allocations(|| {
            for _ in 0..10 {
                out.clear();
                registry.encode(format, &mut out);
            }
        });
        assert_eq!(allocations, 0, "{format:?}");
        assert!(String::from_utf8_lossy(&out).contains("process_resident_memory_bytes{"));
    }
    // The reading on its own, as another `Exposition` would use it.
    let mut buffer = Vec::with_capacity(4096);
    let allocations = count_allocations(|| {
        for _ in 0..10 {
            buffer.clear();
            let stats = process::read().unwrap();
            process::encode(&stats, Format::Text, "", |_| true, &mut buffer);
        }
    });
    assert_eq!(allocations, 0);
}

/// Over protobuf the six families come as counter/gauge `MetricFamily` messages that the
/// reference decoder reads, carrying the constant labels unescaped, with the text's values.
#[cfg(target_os = "linux")]
#[test]
fn opted_in_the_six_families_decode_from_protobuf() {
    let _serial = serial();
    let registry = node::registry();
    registry.metrics().set_process_metrics(true);
    let bytes = registry.metrics().render_bytes(Format::Protobuf);
    let families = proto::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    for (name, help, counter) in FAMILIES {
        let family = families
            .iter()
            .find(|f| f.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from the protobuf exposition"));
        assert_eq!(family.help.as_deref(), Some(help), "{name}");
        assert_eq!(family.r#type, Some(if counter { 0 } else { 1 }), "{name}");
        assert_eq!(family.metric.len(), 1, "{name}");
        let metric = &family.metric[0];
        let mut want: Vec<(String, String)> = node::NODE
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        assert_eq!(proto::labels(metric), want, "{name}");
        let value = if counter {
            metric.counter.as_ref().and_then(|c| c.value)
        } else {
            metric.gauge.as_ref().and_then(|g| g.value)
        };
        let value = value.unwrap_or_else(|| panic!("{name} has no value"));
        assert!(value.is_finite() && value >= 0.0, "{name} = {value}");
    }
    let max_fds = families
        .iter()
        .find(|f| f.name.as_deref() == Some("process_max_fds"))
        .and_then(|f| f.metric[0].gauge.as_ref()?.value)
        .unwrap();
    assert_eq!(
        Some(max_fds),
        process::read().unwrap().max_fds.map(|v| v as f64)
    );
}
