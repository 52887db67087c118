//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct WriteConflictCollector {
    store: Option<&'static Store>,
}

impl WriteConflictCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        WriteConflictCollector { store: Some(store) }
    }
}
