//! The registries the fuzz inputs run against.
//!
//! A registry's store is never freed (by design: handles are plain `&'static` references), so
//! a fuzzer cannot afford one per input: a few thousand would exhaust the process's memory
//! mappings. Consecutive inputs share one instead, and the checks are written against the
//! state before each input, so they hold whatever earlier inputs did. Every so many inputs a
//! fresh registry takes over, which bounds the size of the exposition (and so the cost of
//! parsing it) while leaving enough inputs for the cardinality caps to fill up. Retired
//! registries stay reachable, so LeakSanitizer does not report their stores as leaks.

use std::sync::Mutex;

use elastickv_metrics::Registry;

/// A registry shared by consecutive inputs and replaced after a fixed number of them.
pub struct Rotating {
    node_id: &'static str,
    inputs: usize,
    /// Inputs the newest registry has served, and every registry made so far.
    state: Mutex<(usize, Vec<Registry>)>,
}

impl Rotating {
    /// Registries labelled `node_id`, each serving `inputs` inputs.
    pub const fn new(node_id: &'static str, inputs: usize) -> Rotating {
        Rotating {
            node_id,
            inputs,
            state: Mutex::new((0, Vec::new())),
        }
    }

    /// The registry for the next input.
    pub fn next(&self) -> Registry {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (served, all) = &mut *state;
        if all.is_empty() || *served >= self.inputs {
            all.push(Registry::new(self.node_id, "127.0.0.1:0"));
            *served = 0;
        }
        *served += 1;
        all.last().cloned().expect("a registry was just made")
    }
}
