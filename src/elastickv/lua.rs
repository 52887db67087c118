//! STUB: being written.

use crate::storage::Store;

/// STUB.
#[derive(Clone, Default)]
pub struct LuaScriptObserver {
    store: Option<&'static Store>,
}

impl LuaScriptObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        LuaScriptObserver { store: Some(store) }
    }
}

/// STUB.
#[derive(Clone, Copy, Default)]
pub struct LuaFastPathObserver {
    store: Option<&'static Store>,
}

impl LuaFastPathObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        LuaFastPathObserver { store: Some(store) }
    }
}
