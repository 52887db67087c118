//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct LeaseReadObserver {
    store: Option<&'static Store>,
}

impl LeaseReadObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        LeaseReadObserver { store: Some(store) }
    }
}
