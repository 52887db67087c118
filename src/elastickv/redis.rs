//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct RedisObserver {
    store: Option<&'static Store>,
}

impl RedisObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        RedisObserver { store: Some(store) }
    }
}
