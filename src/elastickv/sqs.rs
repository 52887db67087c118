//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct SqsMetrics {
    store: Option<&'static Store>,
}

impl SqsMetrics {
    pub(crate) fn new(store: &'static Store) -> Self {
        SqsMetrics { store: Some(store) }
    }
}

/// STUB.
#[derive(Clone, Default)]
pub struct SqsDepthObserver {
    metrics: SqsMetrics,
}

impl SqsDepthObserver {
    pub(crate) fn new(metrics: SqsMetrics) -> Self {
        SqsDepthObserver { metrics }
    }
}
