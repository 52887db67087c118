//! SPEC 3.9, the FSM apply sync-mode gauge: T95–T99, plus no-registry, repeated and
//! concurrent setters, hostile labels.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::thread;

use elastickv_metrics::{encode::Format, Registry};
use node::{registry, scrape, NODE};

const FAMILY: &str = "elastickv_fsm_apply_sync_mode";

/// `(sync, nosync)`, after checking that these are the only two rows.
fn rows(registry: &Registry) -> (f64, f64) {
    let exp = scrape(registry);
    assert_eq!(exp.samples_named(FAMILY).count(), 2, "{exp:?}");
    let row = |mode| {
        let mut labels = vec![("mode", mode)];
        labels.extend(NODE);
        exp.value(FAMILY, &labels).expect(mode)
    };
    (row("sync"), row("nosync"))
}

#[test]
fn t95_sync_sets_sync_to_1() {
    let registry = registry();
    registry.set_fsm_apply_sync_mode("sync");
    assert_eq!(rows(&registry), (1.0, 0.0));
}

#[test]
fn t96_then_nosync_switches_the_rows() {
    let registry = registry();
    registry.set_fsm_apply_sync_mode("sync");
    registry.set_fsm_apply_sync_mode("nosync");
    assert_eq!(rows(&registry), (0.0, 1.0));
}

#[test]
fn t97_an_unknown_label_counts_as_sync_and_adds_no_row() {
    let registry = registry();
    registry.set_fsm_apply_sync_mode("nosync");
    registry.set_fsm_apply_sync_mode("batch");
    assert_eq!(rows(&registry), (1.0, 0.0));
    let exp = scrape(&registry);
    assert!(exp
        .samples_named(FAMILY)
        .all(|s| matches!(s.label("mode"), Some("sync" | "nosync"))));
}

#[test]
fn t98_matching_is_case_sensitive() {
    let registry = registry();
    registry.set_fsm_apply_sync_mode("NOSYNC");
    assert_eq!(rows(&registry), (1.0, 0.0));
    registry.set_fsm_apply_sync_mode("nosync");
    registry.set_fsm_apply_sync_mode(" nosync");
    assert_eq!(rows(&registry), (1.0, 0.0));
}

#[test]
fn t99_no_rows_before_the_first_call() {
    let registry = registry();
    registry.lease_read_observer().observe(true);
    let exp = scrape(&registry);
    assert!(exp.family(FAMILY).is_none());
    assert_eq!(exp.samples_named(FAMILY).count(), 0);
}

#[test]
fn repeated_calls_are_idempotent() {
    let registry = registry();
    for _ in 0..3 {
        registry.set_fsm_apply_sync_mode("nosync");
    }
    assert_eq!(rows(&registry), (0.0, 1.0));
    let exp =
        exposition::parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics");
    assert_eq!(exp.family(FAMILY).map(|f| f.kind.as_str()), Some("gauge"));
}

#[test]
fn registries_are_independent() {
    let a = registry();
    let b = registry();
    a.set_fsm_apply_sync_mode("nosync");
    b.set_fsm_apply_sync_mode("sync");
    assert_eq!(rows(&a), (0.0, 1.0));
    assert_eq!(rows(&b), (1.0, 0.0));
}

#[test]
fn hostile_labels_count_as_sync() {
    let registry = registry();
    let huge = "nosync".repeat(10_000);
    for label in [
        "",
        "\"",
        "\\",
        "\n",
        "nosync\n",
        "nosync\0",
        "ñosync",
        huge.as_str(),
    ] {
        registry.set_fsm_apply_sync_mode("nosync");
        registry.set_fsm_apply_sync_mode(label);
        assert_eq!(rows(&registry), (1.0, 0.0), "{label:?}");
    }
}

/// Racing setters always end with exactly one row at 1, and scrapes taken meanwhile parse and
/// never show a third row. (A scrape is not atomic across series, so one taken during a switch
/// can see the switch half done; the final state is what this asserts.)
#[test]
fn concurrent_setters_end_with_exactly_one_row_at_1() {
    let registry = registry();
    registry.set_fsm_apply_sync_mode("sync");
    thread::scope(|s| {
        for t in 0..4 {
            let registry = registry.clone();
            s.spawn(move || {
                for i in 0..2_000 {
                    let mode = if (i + t) % 2 == 0 { "sync" } else { "nosync" };
                    registry.set_fsm_apply_sync_mode(mode);
                }
            });
        }
        let registry = registry.clone();
        s.spawn(move || {
            for _ in 0..200 {
                assert_eq!(scrape(&registry).samples_named(FAMILY).count(), 2);
            }
        });
    });
    let (sync, nosync) = rows(&registry);
    assert_eq!(sync + nosync, 1.0);
}
