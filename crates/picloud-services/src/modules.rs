//! Where the module resolver finds the modules a script imports: the running app's own
//! scripts of kind `module`, and no other app's.

use std::sync::Arc;

use picloud_store::{Script, Store, StoreError};

use crate::{CallContext, ServiceError, ServiceResult};

pub struct ModuleService {
    store: Arc<dyn Store>,
}

impl ModuleService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The module `name` of the caller's app; `None` when it has none of that name.
    pub async fn lookup(&self, ctx: &CallContext, name: &str) -> ServiceResult<Option<Script>> {
        match self.store.get_module(&ctx.app_id, name).await {
            Ok(script) => Ok(Some(script)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(ServiceError::Store(e)),
        }
    }
}
