//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct RaftObserver {
    store: Option<&'static Store>,
}

impl RaftObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        RaftObserver { store: Some(store) }
    }
}

/// STUB.
#[derive(Clone, Copy, Default)]
pub struct RaftProposalObserver {
    store: Option<&'static Store>,
}

impl RaftProposalObserver {
    pub(crate) fn new(store: &'static Store, _group: u64) -> Self {
        RaftProposalObserver { store: Some(store) }
    }
}
