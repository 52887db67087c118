//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct DispatchCollector {
    store: Option<&'static Store>,
}

impl DispatchCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        DispatchCollector { store: Some(store) }
    }
}
