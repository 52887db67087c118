//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct PebbleCollector {
    store: Option<&'static Store>,
}

impl PebbleCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        PebbleCollector { store: Some(store) }
    }
}

pub(crate) fn set_fsm_apply_sync_mode(_store: &'static Store, _label: &str) {}
