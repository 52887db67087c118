//! SQS: partition counters (SPEC 3.13, T130–T137), depth gauges and forget-queue (SPEC 3.14,
//! T138–T149), the depth observer (SPEC 3.15, T150–T156) and the depth accessor half of T9,
//! plus our divergences, concurrency and hostile input.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elastickv_metrics::elastickv::sqs::{
    SqsDepthObserver, SqsDepthSource, SqsMetrics, SqsQueueDepth,
};
use elastickv_metrics::elastickv::DEFAULT_SQS_INTERVAL;
use elastickv_metrics::{encode::Format, Registry};
use exposition::{parse_openmetrics, Exposition};
use node::{registry, scrape, NODE};
use tokio_util::sync::CancellationToken;

const COUNTER: &str = "elastickv_sqs_partition_messages_total";
const DEPTH: &str = "elastickv_sqs_queue_messages";

fn value(expo: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = labels.to_vec();
    all.extend_from_slice(&NODE);
    expo.value(name, &all)
}

fn counter(expo: &Exposition, queue: &str, partition: &str, action: &str) -> Option<f64> {
    value(
        expo,
        COUNTER,
        &[
            ("queue", queue),
            ("partition", partition),
            ("action", action),
        ],
    )
}

/// `[visible, not_visible, delayed]` of `queue`, or `None` if any of the three is missing.
fn depths(expo: &Exposition, queue: &str) -> Option<[f64; 3]> {
    let get = |state| value(expo, DEPTH, &[("queue", queue), ("state", state)]);
    Some([get("visible")?, get("not_visible")?, get("delayed")?])
}

fn count(expo: &Exposition, name: &str) -> usize {
    expo.samples_named(name).count()
}

/// Distinct `queue` labels of `name` other than `_other`.
fn real_queues(expo: &Exposition, name: &str) -> HashSet<String> {
    expo.samples_named(name)
        .filter_map(|s| s.label("queue"))
        .filter(|q| *q != "_other")
        .map(str::to_string)
        .collect()
}

/// Observes depth (1, 1, 1) for `real-0` … `real-<n-1>`.
fn fill_depth(sqs: &SqsMetrics, n: usize) {
    for i in 0..n {
        sqs.observe_queue_depth(&format!("real-{i}"), 1, 1, 1);
    }
}

fn snapshot(queue: &str, visible: i64, not_visible: i64, delayed: i64) -> SqsQueueDepth {
    SqsQueueDepth {
        queue: queue.to_string(),
        visible,
        not_visible,
        delayed,
    }
}

/// A depth source that plays back scripted ticks (repeating the last one) and counts calls.
#[derive(Default)]
struct Scripted {
    ticks: Mutex<VecDeque<(Option<Vec<SqsQueueDepth>>, bool)>>,
    last: Mutex<Option<(Option<Vec<SqsQueueDepth>>, bool)>>,
    calls: AtomicUsize,
    last_token: Mutex<Option<CancellationToken>>,
}

impl Scripted {
    /// Ticks that each produced a snapshot (`ok` says whether it succeeded).
    fn new(ticks: Vec<(Vec<SqsQueueDepth>, bool)>) -> Arc<Scripted> {
        Scripted::with(ticks.into_iter().map(|(s, ok)| (Some(s), ok)).collect())
    }

    /// Ticks in the source's full form: `None` is "not emitting".
    fn with(ticks: Vec<(Option<Vec<SqsQueueDepth>>, bool)>) -> Arc<Scripted> {
        Arc::new(Scripted {
            ticks: Mutex::new(ticks.into()),
            ..Scripted::default()
        })
    }
}

impl SqsDepthSource for Scripted {
    fn snapshot_queue_depths(
        &self,
        cancel: &CancellationToken,
    ) -> (Option<Vec<SqsQueueDepth>>, bool) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last_token.lock().unwrap() = Some(cancel.clone());
        let mut last = self.last.lock().unwrap();
        if let Some(tick) = self.ticks.lock().unwrap().pop_front() {
            *last = Some(tick);
        }
        last.clone().unwrap_or((Some(Vec::new()), true))
    }
}

// --- T9 ------------------------------------------------------------------------------------

/// T9 (SQS half): the depth-observer accessor returns the same instance every call: a queue
/// seen through one handle is forgotten by an empty tick through another.
#[test]
fn t9_sqs_depth_accessor_returns_the_same_instance() {
    let registry = registry();
    let first = registry.sqs_observer();
    let second = registry.sqs_observer();
    first.observe_once(Some(&*Scripted::new(vec![(
        vec![snapshot("orders", 5, 2, 1)],
        true,
    )])));
    assert_eq!(depths(&scrape(&registry), "orders"), Some([5.0, 2.0, 1.0]));
    second.observe_once(Some(&*Scripted::new(vec![(Vec::new(), true)])));
    assert_eq!(
        count(&scrape(&registry), DEPTH),
        0,
        "second handle saw first's last_seen"
    );

    // The partition-observer accessor shares the depth budget state too.
    registry
        .sqs_partition_observer()
        .observe_queue_depth("q", 1, 2, 3);
    registry.sqs_partition_observer().forget_queue("q");
    assert_eq!(count(&scrape(&registry), DEPTH), 0);
}

// --- Partition counters --------------------------------------------------------------------

/// T130: per-(queue, partition, action) counters.
#[test]
fn t130_partition_counters() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_partition_message("q.fifo", 0, "send");
    sqs.observe_partition_message("q.fifo", 0, "send");
    sqs.observe_partition_message("q.fifo", 1, "send");
    sqs.observe_partition_message("q.fifo", 0, "receive");
    sqs.observe_partition_message("q.fifo", 0, "delete");
    sqs.observe_partition_message("other.fifo", 7, "send");
    let expo = scrape(&registry);
    assert_eq!(counter(&expo, "q.fifo", "0", "send"), Some(2.0));
    assert_eq!(counter(&expo, "q.fifo", "1", "send"), Some(1.0));
    assert_eq!(counter(&expo, "q.fifo", "0", "receive"), Some(1.0));
    assert_eq!(counter(&expo, "q.fifo", "0", "delete"), Some(1.0));
    assert_eq!(counter(&expo, "other.fifo", "7", "send"), Some(1.0));
    assert_eq!(count(&expo, COUNTER), 5);
    let om = parse_openmetrics(&registry.render(Format::OpenMetrics)).unwrap();
    assert_eq!(counter(&om, "q.fifo", "0", "send"), Some(2.0));
}

/// T131: actions other than exactly `send`, `receive`, `delete` are dropped.
#[test]
fn t131_invalid_actions_are_dropped() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    for action in ["", "Send", "SEND", "publish", "create", " send", "send\n"] {
        sqs.observe_partition_message("q.fifo", 0, action);
    }
    assert_eq!(count(&scrape(&registry), COUNTER), 0);
    sqs.observe_partition_message("q.fifo", 0, "send");
    let expo = scrape(&registry);
    assert_eq!(count(&expo, COUNTER), 1);
    assert_eq!(counter(&expo, "q.fifo", "0", "send"), Some(1.0));
}

/// T132: an empty queue name is dropped and uses no budget.
#[test]
fn t132_empty_queue_is_dropped() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_partition_message("", 0, "send");
    assert_eq!(count(&scrape(&registry), COUNTER), 0);
    for i in 0..512 {
        sqs.observe_partition_message(&format!("q{i}"), 0, "send");
    }
    assert_eq!(real_queues(&scrape(&registry), COUNTER).len(), 512);
    assert_eq!(counter(&scrape(&registry), "_other", "0", "send"), None);
}

/// T133: invalid actions do not consume counter-budget slots: 600 invalid observations of
/// distinct queues, then 512 valid distinct queues all keep their names.
#[test]
fn t133_invalid_actions_use_no_budget() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    for i in 0..600 {
        sqs.observe_partition_message(&format!("bad{i}"), 0, "publish");
    }
    for i in 0..512 {
        sqs.observe_partition_message(&format!("q{i}"), 0, "send");
    }
    let expo = scrape(&registry);
    assert_eq!(real_queues(&expo, COUNTER).len(), 512);
    assert_eq!(counter(&expo, "_other", "0", "send"), None);
}

/// T134: 512 distinct queues keep their names; the 513th counts under `_other`, again on
/// repetition; already admitted queues keep their own series.
#[test]
fn t134_513th_queue_counts_under_other() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    for i in 0..512 {
        sqs.observe_partition_message(&format!("q{i}"), 0, "send");
    }
    sqs.observe_partition_message("overflow.fifo", 0, "send");
    sqs.observe_partition_message("overflow.fifo", 0, "send");
    sqs.observe_partition_message("q0", 0, "send");
    let expo = scrape(&registry);
    assert_eq!(counter(&expo, "_other", "0", "send"), Some(2.0));
    assert_eq!(counter(&expo, "overflow.fifo", "0", "send"), None);
    assert_eq!(counter(&expo, "q0", "0", "send"), Some(2.0));
    assert_eq!(real_queues(&expo, COUNTER).len(), 512);
}

/// T135: the partition label is decimal; one observation is exactly one series.
#[test]
fn t135_partition_label_is_decimal() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_partition_message("q.fifo", 3, "receive");
    let expo = scrape(&registry);
    assert_eq!(count(&expo, COUNTER), 1);
    assert_eq!(counter(&expo, "q.fifo", "3", "receive"), Some(1.0));

    for p in [0, 10, 4_294_967_295] {
        sqs.observe_partition_message("q.fifo", p, "send");
    }
    let expo = scrape(&registry);
    for p in ["0", "10", "4294967295"] {
        assert_eq!(counter(&expo, "q.fifo", p, "send"), Some(1.0), "{p}");
    }
}

/// T136: forget-queue never removes counter series nor frees counter slots.
#[test]
fn t136_forget_keeps_counters_and_counter_budget() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    for i in 0..512 {
        let queue = format!("q{i}");
        sqs.observe_partition_message(&queue, 0, "send");
        sqs.observe_queue_depth(&queue, 1, 0, 0);
    }
    for i in 0..512 {
        sqs.forget_queue(&format!("q{i}"));
    }
    sqs.observe_partition_message("new.fifo", 0, "send");
    let expo = scrape(&registry);
    assert_eq!(counter(&expo, "q0", "0", "send"), Some(1.0));
    assert_eq!(real_queues(&expo, COUNTER).len(), 512);
    assert_eq!(counter(&expo, "_other", "0", "send"), Some(1.0));
    assert_eq!(counter(&expo, "new.fifo", "0", "send"), None);
    assert_eq!(count(&expo, DEPTH), 0);
}

/// T137: observing on the no-op metrics object does nothing and does not fail.
#[test]
fn t137_noop_partition_observer() {
    let sqs = SqsMetrics::default();
    sqs.observe_partition_message("q.fifo", 0, "send");
    sqs.observe_partition_message("", 0, "bogus");
}

/// Divergence: the partition label is capped at 64 distinct partition numbers per registry
/// (the reference leaves it uncapped); further partitions count under `partition="_other"`.
#[test]
fn partition_numbers_are_capped_at_64() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    for p in 0..70 {
        sqs.observe_partition_message("q.fifo", p, "send");
    }
    let expo = scrape(&registry);
    let partitions: HashSet<&str> = expo
        .samples_named(COUNTER)
        .filter_map(|s| s.label("partition"))
        .collect();
    assert_eq!(partitions.len(), 65);
    assert_eq!(counter(&expo, "q.fifo", "63", "send"), Some(1.0));
    assert_eq!(counter(&expo, "q.fifo", "_other", "send"), Some(6.0));
}

/// Divergence (SPEC Appendix A.9): a queue literally named `_other` counts under the overflow
/// series on both sides and takes no budget slot on either.
#[test]
fn literal_other_queue_takes_no_slot_on_either_side() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_partition_message("_other", 0, "send");
    sqs.observe_queue_depth("_other", 4, 0, 0);
    for i in 0..512 {
        let queue = format!("q{i}");
        sqs.observe_partition_message(&queue, 0, "send");
        sqs.observe_queue_depth(&queue, 1, 1, 1);
    }
    let expo = scrape(&registry);
    assert_eq!(real_queues(&expo, COUNTER).len(), 512);
    assert_eq!(counter(&expo, "_other", "0", "send"), Some(1.0));
    assert_eq!(real_queues(&expo, DEPTH).len(), 512);
    assert_eq!(depths(&expo, "_other"), Some([4.0, 0.0, 0.0]));

    // On the depth side it is an overflow member: forgetting it (the last one) removes `_other`.
    sqs.forget_queue("_other");
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "_other"), None);
    assert_eq!(count(&expo, DEPTH), 512 * 3);
}

// --- Depth gauges --------------------------------------------------------------------------

/// T138: one depth observation sets the three state series.
#[test]
fn t138_depth_sets_three_states() {
    let registry = registry();
    registry
        .sqs_partition_observer()
        .observe_queue_depth("orders.fifo", 5, 2, 1);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "orders.fifo"), Some([5.0, 2.0, 1.0]));
    assert_eq!(expo.family(DEPTH).unwrap().kind, "gauge");
}

/// T139: negative depths are clamped to 0.
#[test]
fn t139_negative_depths_clamp_to_zero() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_queue_depth("q", -7, -1, -100);
    assert_eq!(depths(&scrape(&registry), "q"), Some([0.0, 0.0, 0.0]));
    sqs.observe_queue_depth("q", i64::MIN, i64::MAX, 3);
    assert_eq!(
        depths(&scrape(&registry), "q"),
        Some([0.0, i64::MAX as f64, 3.0])
    );
}

/// T140: an empty queue name emits nothing.
#[test]
fn t140_empty_queue_emits_nothing() {
    let registry = registry();
    registry
        .sqs_partition_observer()
        .observe_queue_depth("", 5, 2, 1);
    assert_eq!(count(&scrape(&registry), DEPTH), 0);
}

/// T141: forgetting a tracked queue deletes its three series and frees its slot, keeps its
/// partition counter, and a later observation re-emits it under its real name.
#[test]
fn t141_forget_tracked_queue() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_partition_message("orders", 2, "send");
    sqs.observe_queue_depth("orders", 5, 2, 1);
    sqs.forget_queue("orders");
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 0);
    assert_eq!(counter(&expo, "orders", "2", "send"), Some(1.0));

    // The slot is free: 512 other queues all get real names.
    fill_depth(&sqs, 512);
    assert_eq!(real_queues(&scrape(&registry), DEPTH).len(), 512);
    sqs.forget_queue("real-0");
    sqs.observe_queue_depth("orders", 7, 0, 0);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "orders"), Some([7.0, 0.0, 0.0]));
    assert_eq!(depths(&expo, "_other"), None);
}

/// T142: with 512 tracked queues, overflow-a (100) then overflow-b (200) both report into
/// `_other`. Diverges from the reference: `_other` is the SUM of the overflowed queues
/// (300), not the last write (200), so `sum(elastickv_sqs_queue_messages)` stays right.
#[test]
fn t142_overflow_queues_report_their_sum() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    fill_depth(&sqs, 512);
    sqs.observe_queue_depth("overflow-a", 100, 10, 1);
    assert_eq!(
        depths(&scrape(&registry), "_other"),
        Some([100.0, 10.0, 1.0])
    );
    sqs.observe_queue_depth("overflow-b", 200, 20, 2);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "_other"), Some([300.0, 30.0, 3.0]));
    assert_eq!(depths(&expo, "overflow-a"), None);
    // A new value of an overflowed queue replaces its contribution.
    sqs.observe_queue_depth("overflow-a", 50, 0, 0);
    assert_eq!(
        depths(&scrape(&registry), "_other"),
        Some([250.0, 20.0, 2.0])
    );
}

/// T143: forgetting one of two overflow queues keeps `_other` (200, overflow-b's value) and
/// the tracked queues. Diverges from the reference in why it is 200: `_other` is now the sum
/// of the remaining overflow queues, i.e. overflow-b alone.
#[test]
fn t143_forget_one_overflow_queue_keeps_other() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    fill_depth(&sqs, 512);
    sqs.observe_queue_depth("overflow-a", 100, 0, 0);
    sqs.observe_queue_depth("overflow-b", 200, 0, 0);
    sqs.forget_queue("overflow-a");
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "_other"), Some([200.0, 0.0, 0.0]));
    assert_eq!(real_queues(&expo, DEPTH).len(), 512);
    assert_eq!(count(&expo, DEPTH), 513 * 3);
}

/// T144: forgetting the last overflow queue deletes the three `_other` series.
#[test]
fn t144_forget_last_overflow_queue_deletes_other() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    fill_depth(&sqs, 512);
    sqs.observe_queue_depth("overflow-a", 100, 0, 0);
    sqs.observe_queue_depth("overflow-b", 200, 0, 0);
    sqs.forget_queue("overflow-a");
    sqs.forget_queue("overflow-b");
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "_other"), None);
    assert_eq!(count(&expo, DEPTH), 512 * 3);
}

/// T145: promotion: 512 tracked, overflow-x (100) on `_other`, forget real-0, observe
/// overflow-x (200) → overflow-x reports 200 under its own name and `_other` is gone
/// (1536 series).
#[test]
fn t145_overflow_queue_is_promoted_when_a_slot_frees() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    fill_depth(&sqs, 512);
    sqs.observe_queue_depth("overflow-x", 100, 0, 0);
    assert_eq!(
        depths(&scrape(&registry), "_other"),
        Some([100.0, 0.0, 0.0])
    );
    sqs.forget_queue("real-0");
    sqs.observe_queue_depth("overflow-x", 200, 0, 0);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "overflow-x"), Some([200.0, 0.0, 0.0]));
    assert_eq!(depths(&expo, "_other"), None);
    assert_eq!(expo.samples_named(DEPTH).count(), 1536);

    // With two overflow queues, promoting one leaves the other's value alone in the sum.
    let registry = Registry::new(NODE[0].1, NODE[1].1);
    let sqs = registry.sqs_partition_observer();
    fill_depth(&sqs, 512);
    sqs.observe_queue_depth("x", 100, 0, 0);
    sqs.observe_queue_depth("y", 40, 0, 0);
    sqs.forget_queue("real-0");
    sqs.observe_queue_depth("x", 100, 0, 0);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "x"), Some([100.0, 0.0, 0.0]));
    assert_eq!(depths(&expo, "_other"), Some([40.0, 0.0, 0.0]));
}

/// T146: the depth budget is reclaimable: 512 observed and all forgotten → a new queue gets
/// its real name.
#[test]
fn t146_depth_budget_is_reclaimable() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    fill_depth(&sqs, 512);
    for i in 0..512 {
        sqs.forget_queue(&format!("real-{i}"));
    }
    sqs.observe_queue_depth("fresh", 9, 0, 0);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "fresh"), Some([9.0, 0.0, 0.0]));
    assert_eq!(count(&expo, DEPTH), 3);
}

/// T147: forgetting a never-observed or empty name is a no-op.
#[test]
fn t147_forget_unknown_is_noop() {
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    sqs.observe_queue_depth("q", 1, 2, 3);
    sqs.forget_queue("never-seen");
    sqs.forget_queue("");
    assert_eq!(depths(&scrape(&registry), "q"), Some([1.0, 2.0, 3.0]));
    assert_eq!(count(&scrape(&registry), DEPTH), 3);
}

/// T148: depth observations and forgets on the no-op metrics object do nothing.
#[test]
fn t148_noop_depth_operations() {
    let sqs = SqsMetrics::default();
    sqs.observe_queue_depth("q", 1, 2, 3);
    sqs.forget_queue("q");
    sqs.forget_queue("");
}

/// T149: registry wiring: one depth observation yields exactly three series.
#[test]
fn t149_one_observation_three_series() {
    let registry = registry();
    registry
        .sqs_partition_observer()
        .observe_queue_depth("q", 1, 2, 3);
    let expo = scrape(&registry);
    assert_eq!(expo.samples_named(DEPTH).count(), 3);
    let om = parse_openmetrics(&registry.render(Format::OpenMetrics)).unwrap();
    assert_eq!(om.samples_named(DEPTH).count(), 3);
}

// --- Depth observer ------------------------------------------------------------------------

/// T150: tick 1 {orders, audio}, tick 2 {audio} → only audio remains, with its new values.
#[test]
fn t150_disappeared_queue_is_forgotten() {
    let registry = registry();
    let observer = registry.sqs_observer();
    let source = Scripted::new(vec![
        (
            vec![snapshot("orders", 5, 2, 1), snapshot("audio", 1, 1, 1)],
            true,
        ),
        (vec![snapshot("audio", 8, 0, 4)], true),
    ]);
    observer.observe_once(Some(&*source));
    observer.observe_once(Some(&*source));
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 3);
    assert_eq!(depths(&expo, "audio"), Some([8.0, 0.0, 4.0]));
}

/// T151: an `ok = true` empty tick clears every gauge (leader step-down).
#[test]
fn t151_empty_ok_tick_clears_everything() {
    let registry = registry();
    let observer = registry.sqs_observer();
    let source = Scripted::new(vec![
        (vec![snapshot("a", 1, 2, 3), snapshot("b", 4, 5, 6)], true),
        (Vec::new(), true),
    ]);
    observer.observe_once(Some(&*source));
    assert_eq!(count(&scrape(&registry), DEPTH), 6);
    observer.observe_once(Some(&*source));
    assert_eq!(count(&scrape(&registry), DEPTH), 0);
}

/// T152: an `ok = false` tick changes nothing; the next good tick updates values and forgets
/// nothing.
#[test]
fn t152_failed_tick_changes_nothing() {
    let registry = registry();
    let observer = registry.sqs_observer();
    let source = Scripted::new(vec![
        (vec![snapshot("a", 1, 2, 3), snapshot("b", 4, 5, 6)], true),
        // The slice of a failed tick is ignored, even if it has data.
        (vec![snapshot("c", 9, 9, 9)], false),
        (
            vec![snapshot("a", 10, 20, 30), snapshot("b", 40, 50, 60)],
            true,
        ),
    ]);
    observer.observe_once(Some(&*source));
    observer.observe_once(Some(&*source));
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 6);
    assert_eq!(depths(&expo, "a"), Some([1.0, 2.0, 3.0]));
    assert_eq!(depths(&expo, "b"), Some([4.0, 5.0, 6.0]));
    observer.observe_once(Some(&*source));
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 6);
    assert_eq!(depths(&expo, "a"), Some([10.0, 20.0, 30.0]));
    assert_eq!(depths(&expo, "b"), Some([40.0, 50.0, 60.0]));
}

/// T153: after an `ok = false` tick, a good tick missing a queue forgets it (the diff is
/// against the last good tick).
#[test]
fn t153_diff_is_against_last_good_tick() {
    let registry = registry();
    let observer = registry.sqs_observer();
    let source = Scripted::new(vec![
        (vec![snapshot("a", 1, 1, 1), snapshot("b", 2, 2, 2)], true),
        (Vec::new(), false),
        (vec![snapshot("b", 3, 3, 3)], true),
    ]);
    for _ in 0..3 {
        observer.observe_once(Some(&*source));
    }
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 3);
    assert_eq!(depths(&expo, "a"), None);
    assert_eq!(depths(&expo, "b"), Some([3.0, 3.0, 3.0]));
}

/// T154: full churn at the cap (512 old, then 256 old + 256 new) → exactly 1536 series, all
/// real names, new queues with their values (forgetting precedes emission).
#[test]
fn t154_full_churn_at_the_cap() {
    let registry = registry();
    let observer = registry.sqs_observer();
    let old: Vec<SqsQueueDepth> = (0..512)
        .map(|i| snapshot(&format!("old-{i}"), 1, 1, 1))
        .collect();
    let mut churned: Vec<SqsQueueDepth> = old[..256].to_vec();
    churned.extend((0..256).map(|i| snapshot(&format!("new-{i}"), i, 2, 3)));
    let source = Scripted::new(vec![(old, true), (churned, true)]);
    observer.observe_once(Some(&*source));
    observer.observe_once(Some(&*source));
    let expo = scrape(&registry);
    assert_eq!(expo.samples_named(DEPTH).count(), 1536);
    assert_eq!(real_queues(&expo, DEPTH).len(), 512);
    assert_eq!(depths(&expo, "_other"), None);
    assert_eq!(depths(&expo, "new-255"), Some([255.0, 2.0, 3.0]));
    assert_eq!(depths(&expo, "old-255"), Some([1.0, 1.0, 1.0]));
    assert_eq!(depths(&expo, "old-256"), None);
}

/// T155: start and observe-once with no observer or no source do nothing and do not fail;
/// start performs no poll in those cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t155_no_observer_or_no_source() {
    let source = Scripted::new(vec![(vec![snapshot("q", 1, 1, 1)], true)]);
    let cancel = CancellationToken::new();
    let noop = SqsDepthObserver::default();
    noop.observe_once(Some(&*source));
    noop.observe_once(None);
    noop.start(
        cancel.clone(),
        Some(source.clone() as Arc<dyn SqsDepthSource>),
        Duration::from_millis(5),
    );
    noop.start(cancel.clone(), None, Duration::ZERO);

    let registry = registry();
    let observer = registry.sqs_observer();
    observer.observe_once(None);
    observer.start(cancel.clone(), None, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    assert_eq!(source.calls.load(Ordering::SeqCst), 0);
    assert_eq!(count(&scrape(&registry), DEPTH), 0);
}

/// T156: start polls once synchronously before returning, with the start's cancellation
/// token; the default interval is 30 s.
///
/// tokio's paused clock needs the `test-util` feature, which the crate's dev-dependencies do
/// not enable, so the 30 s default is checked on the real clock as far as a short test can:
/// no second poll within 5.5 s (so neither an immediate re-poll nor the 5 s default of the
/// other pollers), the constant is 30 s, and an explicit interval is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t156_start_polls_synchronously_default_30s() {
    assert_eq!(DEFAULT_SQS_INTERVAL, Duration::from_secs(30));
    let registry = registry();
    let source = Scripted::new(vec![(vec![snapshot("q", 1, 2, 3)], true)]);
    let cancel = CancellationToken::new();
    registry.sqs_observer().start(
        cancel.clone(),
        Some(source.clone() as Arc<dyn SqsDepthSource>),
        Duration::ZERO,
    );
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    assert_eq!(depths(&scrape(&registry), "q"), Some([1.0, 2.0, 3.0]));
    let token = source.last_token.lock().unwrap().clone().unwrap();
    assert!(!token.is_cancelled());

    // An explicit interval is honoured meanwhile by a second observer of another registry.
    let fast_registry = Registry::new("n2", "x");
    let fast = Scripted::new(Vec::new());
    let fast_cancel = CancellationToken::new();
    fast_registry.sqs_observer().start(
        fast_cancel.clone(),
        Some(fast.clone() as Arc<dyn SqsDepthSource>),
        Duration::from_millis(50),
    );

    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        1,
        "no background poll before 30 s"
    );
    assert!(fast.calls.load(Ordering::SeqCst) >= 5);
    cancel.cancel();
    fast_cancel.cancel();
    assert!(token.is_cancelled(), "the source got the start's token");
}

/// observe-once hands the source a token that is never cancelled.
#[test]
fn observe_once_uses_an_uncancelled_token() {
    let registry = registry();
    let source = Scripted::new(Vec::new());
    registry.sqs_observer().observe_once(Some(&*source));
    let token = source.last_token.lock().unwrap().clone().unwrap();
    assert!(!token.is_cancelled());
}

/// A panicking source is a skipped tick: gauges and last_seen are kept.
#[test]
fn panicking_source_is_a_skipped_tick() {
    struct Boom;
    impl SqsDepthSource for Boom {
        fn snapshot_queue_depths(
            &self,
            _: &CancellationToken,
        ) -> (Option<Vec<SqsQueueDepth>>, bool) {
            panic!("catalog exploded")
        }
    }
    let registry = registry();
    let observer = registry.sqs_observer();
    let source = Scripted::new(vec![
        (vec![snapshot("a", 1, 1, 1)], true),
        (Vec::new(), true),
    ]);
    observer.observe_once(Some(&*source));
    observer.observe_once(Some(&Boom));
    assert_eq!(depths(&scrape(&registry), "a"), Some([1.0, 1.0, 1.0]));
    // The observer still works, and still remembers `a` to forget it.
    observer.observe_once(Some(&*source));
    assert_eq!(count(&scrape(&registry), DEPTH), 0);
}

/// Duplicate names in one snapshot: last wins, one set of series.
#[test]
fn duplicate_snapshot_names_last_wins() {
    let registry = registry();
    let source = Scripted::new(vec![(
        vec![
            snapshot("a", 1, 1, 1),
            snapshot("", 5, 5, 5),
            snapshot("a", 2, 2, 2),
        ],
        true,
    )]);
    registry.sqs_observer().observe_once(Some(&*source));
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 3);
    assert_eq!(depths(&expo, "a"), Some([2.0, 2.0, 2.0]));
}

// --- Concurrency and hostile input ----------------------------------------------------------

/// Both queue caps hold under concurrency, and concurrent observe/forget on the depth side
/// never leaves a stale value: afterwards every real-name series holds its own queue's value
/// and `_other` holds the sum of the remaining overflowed queues, so the grand total equals
/// the sum over all live queues.
#[test]
fn caps_and_consistency_under_concurrency() {
    let registry = registry();
    let value_of = |t: usize, i: usize| (t * 1000 + i) as i64;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sqs = registry.sqs_partition_observer();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let queue = format!("t{t}-q{i}");
                    sqs.observe_partition_message(&queue, (i % 3) as u32, "send");
                    sqs.observe_queue_depth(&queue, value_of(t, i), 1, 0);
                    if i % 2 == 1 {
                        sqs.forget_queue(&format!("t{t}-q{}", i - 1));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let expo = scrape(&registry);

    assert_eq!(real_queues(&expo, COUNTER).len(), 512);
    let counted: f64 = expo.samples_named(COUNTER).map(|s| s.value).sum();
    assert_eq!(counted, (8 * 300) as f64);

    let live: HashMap<String, i64> = (0..8)
        .flat_map(|t| (0..300).filter(|i| i % 2 == 1).map(move |i| (t, i)))
        .map(|(t, i)| (format!("t{t}-q{i}"), value_of(t, i)))
        .collect();
    let mut visible_total = 0.0;
    let mut real = 0;
    for sample in expo.samples_named(DEPTH) {
        let queue = sample.label("queue").unwrap();
        if sample.label("state") != Some("visible") {
            continue;
        }
        visible_total += sample.value;
        if queue != "_other" {
            real += 1;
            assert_eq!(
                Some(&(sample.value as i64)),
                live.get(queue),
                "{queue} holds its own value"
            );
        }
    }
    assert!(real <= 512);
    assert_eq!(visible_total, live.values().sum::<i64>() as f64);
}

/// Hostile queue names never panic and the exposition still parses in both formats.
#[test]
fn hostile_queue_names_render_and_parse() {
    let huge = "q".repeat(200_000);
    let lossy = String::from_utf8_lossy(b"\xc3\x28\xa0\xa1").into_owned();
    let names = [
        "\"",
        "\\",
        "a\nb",
        "\r",
        "\t",
        "x\"}y{z=\"",
        "é漢字🦀",
        "\u{2028}\u{FEFF}",
        "\0",
        "_other",
        " ",
        &huge,
        &lossy,
    ];
    let registry = registry();
    let sqs = registry.sqs_partition_observer();
    let observer = registry.sqs_observer();
    for (i, name) in names.iter().enumerate() {
        for action in ["send", "receive", "delete", name] {
            sqs.observe_partition_message(name, i as u32, action);
        }
        sqs.observe_queue_depth(name, i64::MAX, i64::MIN, i as i64);
    }
    let source = Scripted::new(vec![(
        names.iter().map(|n| snapshot(n, i64::MAX, -1, 0)).collect(),
        true,
    )]);
    observer.observe_once(Some(&*source));
    let expo = scrape(&registry);
    assert_eq!(count(&expo, COUNTER), names.len() * 3);
    assert!(depths(&expo, "a\nb").is_some());
    parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics parses");
    for name in names {
        sqs.forget_queue(name);
    }
    assert_eq!(count(&scrape(&registry), DEPTH), 0);
}

/// A depth slot freed and re-admitted while scrapes run: every exported depth belongs to the
/// queue named in its labels. Queue `q{k}` always reports depth `k` in every state, and the
/// writer keeps 64 queues, forgetting the oldest before admitting the next into the slot it
/// freed, so a value under another
/// queue's name is a value carried across a re-admission (the window the snapshot's
/// before/after view check closes). 0 is allowed: a queue just admitted, its depth not yet set.
#[test]
fn depth_values_never_cross_a_slot_reuse_during_scrapes() {
    use std::sync::atomic::AtomicBool;

    let registry = registry();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let sqs = registry.sqs_partition_observer();
        let stop = stop.clone();
        std::thread::spawn(move || {
            // 64 queues live at a time: each step forgets the oldest and admits a new one
            // into the slot it freed.
            let mut k = 1i64;
            while !stop.load(Ordering::Relaxed) && k < 50_000_000 {
                if k > 64 {
                    sqs.forget_queue(&format!("q{}", k - 64));
                }
                sqs.observe_queue_depth(&format!("q{k}"), k, k, k);
                k += 1;
            }
            k
        })
    };
    let mut exported = 0;
    for _ in 0..400 {
        let expo = scrape(&registry);
        for sample in expo.samples_named(DEPTH) {
            let queue = sample.label("queue").expect("a queue label");
            let k: f64 = queue[1..].parse().expect("only q<k> queues are written");
            assert!(
                sample.value == k || sample.value == 0.0,
                "queue {queue} exported depth {} ({:?})",
                sample.value,
                sample.labels
            );
            exported += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 1, "the writer never ran");
    // Not asserted (scheduling decides): how many scrapes caught a queue between its
    // admission and its removal.
    eprintln!("{written} queues written, {exported} depth samples checked");
}

// --- upstream d9a031d: a source that is not emitting ----------------------------------------

/// A missing snapshot (`None`, a follower or a leader that stepped down) clears every depth
/// gauge and every throttle token gauge, leaving the throttled-request counters; an empty
/// snapshot is the usual diff (depth gauges of omitted queues go, token gauges stay, since an
/// omitted queue may be a scan miss); a failed tick changes nothing; and after clearing, the
/// next snapshot starts from nothing.
#[test]
fn a_source_that_stops_emitting_clears_depth_and_token_gauges() {
    const TOKENS: &str = "elastickv_sqs_throttle_tokens_remaining";
    const THROTTLED: &str = "elastickv_sqs_throttled_requests_total";
    let registry = registry();
    let depth = registry.sqs_observer();
    let throttle = registry.sqs_throttle_observer();
    let orders = || vec![snapshot("orders", 5, 2, 1), snapshot("audio", 1, 0, 0)];
    depth.observe_once(Some(&*Scripted::new(vec![(orders(), true)])));
    throttle.observe_throttle_decision("orders", "send", 3.0, true);
    throttle.observe_throttle_decision("billing", "receive", 7.0, false);
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "orders"), Some([5.0, 2.0, 1.0]));
    assert_eq!(count(&expo, TOKENS), 2);
    assert_eq!(count(&expo, THROTTLED), 1);

    // An empty snapshot: depth gauges forgotten, token gauges kept.
    depth.observe_once(Some(&*Scripted::new(vec![(Vec::new(), true)])));
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "orders"), None);
    assert_eq!(count(&expo, DEPTH), 0);
    assert_eq!(
        count(&expo, TOKENS),
        2,
        "an empty snapshot keeps token gauges"
    );

    // A leader again, then a failed tick: nothing changes.
    depth.observe_once(Some(&*Scripted::new(vec![(orders(), true)])));
    depth.observe_once(Some(&*Scripted::with(vec![(None, false)])));
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "audio"), Some([1.0, 0.0, 0.0]));
    assert_eq!(count(&expo, TOKENS), 2);

    // Not emitting: every depth and token gauge goes; the counter stays.
    depth.observe_once(Some(&*Scripted::with(vec![(None, true)])));
    let expo = scrape(&registry);
    assert_eq!(count(&expo, DEPTH), 0, "depth gauges cleared");
    assert_eq!(count(&expo, TOKENS), 0, "token gauges cleared");
    assert_eq!(count(&expo, THROTTLED), 1, "counters are never removed");

    // Nothing is remembered: the next snapshot emits from scratch, and a queue omitted from it
    // is not "forgotten" twice.
    depth.observe_once(Some(&*Scripted::new(vec![(
        vec![snapshot("audio", 4, 0, 0)],
        true,
    )])));
    let expo = scrape(&registry);
    assert_eq!(depths(&expo, "audio"), Some([4.0, 0.0, 0.0]));
    assert_eq!(depths(&expo, "orders"), None);
    assert_eq!(count(&expo, DEPTH), 3);
}
