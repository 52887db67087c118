//! Shared harness of the loom models (the models themselves are the files under `tests/`).
//!
//! Every model is a minimal re-statement of one lock-free protocol of `elastickv-metrics`
//! with loom's types, so loom can run it under every interleaving (and every weak-memory
//! outcome it models) up to a preemption bound. The crate under test is not linked: its
//! storage uses `std` atomics, which loom cannot see.
//!
//! Build with `RUSTFLAGS="--cfg loom"` (loom's documented switch); without it the models are
//! not compiled and a single test fails saying so, so a plain `cargo test` never passes
//! vacuously.

#[cfg(loom)]
mod harness {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    /// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set.
    ///
    /// Loom's default is unbounded; every model here is small enough for an exhaustive search
    /// except where a model passes a tighter bound and says why.
    pub struct Bound(pub Option<usize>);

    /// Runs `model` under loom, counting the executions explored, and prints one summary line:
    /// `loom model NAME: N executions in T s (preemption bound B)`.
    ///
    /// `LOOM_MAX_PREEMPTIONS` in the environment overrides `bound`.
    pub fn check<F>(name: &str, bound: Bound, model: F) -> usize
    where
        F: Fn() + Sync + Send + 'static,
    {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = bound.0;
        }
        let executions = Arc::new(AtomicUsize::new(0));
        let counted = executions.clone();
        let started = Instant::now();
        builder.check(move || {
            // A plain std atomic: invisible to loom and read only after the check, so it does
            // not add nondeterminism to the model.
            counted.fetch_add(1, Ordering::Relaxed);
            model();
        });
        let n = executions.load(Ordering::Relaxed);
        let bound = builder
            .preemption_bound
            .map_or_else(|| "none".to_string(), |b| b.to_string());
        println!(
            "loom model {name}: {n} executions in {:.2} s (preemption bound {bound})",
            started.elapsed().as_secs_f64()
        );
        n
    }

    /// Runs the `#[ignore]`d test `test` of the current test binary in a child process and
    /// checks that it fails with `expected` in its output.
    ///
    /// For negative twins whose failure is a panic raised by loom itself (a causality
    /// violation): loom objects still alive at that point are dropped outside the model while
    /// unwinding, which aborts the process, so the failure must happen in a process of its own.
    pub fn fails_in_child(test: &str, expected: &str) {
        let exe = std::env::current_exe().expect("test binary path");
        let out = std::process::Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run the test binary");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{test} passed, but must fail:\n{text}"
        );
        assert!(
            text.contains(expected),
            "{test} failed without `{expected}`:\n{text}"
        );
        println!("loom model {test}: failed as it must ({expected})");
    }

    /// Records that some execution reached an outcome; read after the check to show that a
    /// documented window (or a bug in a deliberately broken variant) is reachable.
    #[derive(Clone, Default)]
    pub struct Reached(Arc<AtomicBool>);

    impl Reached {
        /// A flag not yet reached.
        pub fn new() -> Reached {
            Reached::default()
        }

        /// Marks the outcome as reached (write-only inside a model: never branch on it there).
        pub fn hit(&self) {
            self.0.store(true, Ordering::Relaxed);
        }

        /// Whether any execution reached it.
        pub fn was_hit(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }
}

#[cfg(loom)]
pub use harness::{check, fails_in_child, Bound, Reached};

/// loom's atomics behind a scheduling point, for the models to use instead of
/// `loom::sync::atomic`.
///
/// Why: loom 0.7's partial-order reduction remembers only the *last* access to an atomic, so
/// a load by thread A followed by a load and then a store by thread B (B's own load hides A's)
/// never makes loom try B's store before A's load; the same bug stops a freshly spawned thread
/// whose first operation is a load from being interleaved at all (tokio-rs/loom#392, #166).
/// Both patterns are exactly the protocols modelled here (single-writer load + store, `mark`'s
/// relaxed read before its `fetch_or`). Every operation of these wrappers is preceded by a
/// relaxed `fetch_add` on one per-execution ghost counter: all those RMWs conflict with each
/// other, so loom interleaves the threads at every operation (bounded only by the preemption
/// bound). A relaxed RMW on a variable nothing else reads creates no happens-before edge, so
/// the ghost hides no weak-memory outcome.
#[cfg(loom)]
pub mod atomic {
    pub use std::sync::atomic::Ordering;

    loom::lazy_static! {
        static ref SCHED: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
    }

    /// A scheduling point: loom may switch threads here.
    pub fn point() {
        SCHED.fetch_add(1, Ordering::Relaxed);
    }

    macro_rules! int_atomic {
        ($name:ident, $int:ty) => {
            /// `loom::sync::atomic::
            #[doc = stringify!($name)]
            /// ` with a scheduling point before every operation.
            #[derive(Debug)]
            pub struct $name(loom::sync::atomic::$name);

            impl $name {
                pub fn new(v: $int) -> Self {
                    Self(loom::sync::atomic::$name::new(v))
                }
                pub fn load(&self, o: Ordering) -> $int {
                    point();
                    self.0.load(o)
                }
                pub fn store(&self, v: $int, o: Ordering) {
                    point();
                    self.0.store(v, o)
                }
                pub fn swap(&self, v: $int, o: Ordering) -> $int {
                    point();
                    self.0.swap(v, o)
                }
                pub fn fetch_add(&self, v: $int, o: Ordering) -> $int {
                    point();
                    self.0.fetch_add(v, o)
                }
                pub fn fetch_or(&self, v: $int, o: Ordering) -> $int {
                    point();
                    self.0.fetch_or(v, o)
                }
                pub fn fetch_and(&self, v: $int, o: Ordering) -> $int {
                    point();
                    self.0.fetch_and(v, o)
                }
                pub fn compare_exchange(
                    &self,
                    current: $int,
                    new: $int,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$int, $int> {
                    point();
                    self.0.compare_exchange(current, new, success, failure)
                }
                pub fn compare_exchange_weak(
                    &self,
                    current: $int,
                    new: $int,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$int, $int> {
                    point();
                    self.0.compare_exchange_weak(current, new, success, failure)
                }
                pub fn fetch_update<F>(
                    &self,
                    set: Ordering,
                    fetch: Ordering,
                    f: F,
                ) -> Result<$int, $int>
                where
                    F: FnMut($int) -> Option<$int>,
                {
                    point();
                    self.0.fetch_update(set, fetch, f)
                }
            }
        };
    }

    /// `loom::sync::atomic::fence` after a scheduling point.
    pub fn fence(o: Ordering) {
        point();
        loom::sync::atomic::fence(o)
    }

    int_atomic!(AtomicU32, u32);
    int_atomic!(AtomicU64, u64);

    /// `loom::sync::atomic::AtomicPtr` with a scheduling point before every operation.
    #[derive(Debug)]
    pub struct AtomicPtr<T>(loom::sync::atomic::AtomicPtr<T>);

    impl<T> AtomicPtr<T> {
        pub fn new(p: *mut T) -> Self {
            Self(loom::sync::atomic::AtomicPtr::new(p))
        }
        pub fn load(&self, o: Ordering) -> *mut T {
            point();
            self.0.load(o)
        }
        pub fn swap(&self, p: *mut T, o: Ordering) -> *mut T {
            point();
            self.0.swap(p, o)
        }
        pub fn compare_exchange(
            &self,
            current: *mut T,
            new: *mut T,
            success: Ordering,
            failure: Ordering,
        ) -> Result<*mut T, *mut T> {
            point();
            self.0.compare_exchange(current, new, success, failure)
        }
    }
}

#[cfg(not(loom))]
#[test]
fn models_need_cfg_loom() {
    panic!(
        "the loom models are compiled only with loom's switch: \
         run `RUSTFLAGS=\"--cfg loom\" cargo test --release` in loom-models/"
    );
}
