//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct DynamoDbObserver {
    store: Option<&'static Store>,
}

impl DynamoDbObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        DynamoDbObserver { store: Some(store) }
    }
}
