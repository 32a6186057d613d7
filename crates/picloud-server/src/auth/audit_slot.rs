//! What one admin request did, filled in while it is handled: the caller extractor
//! names the actor, the access guard the app, and the audit middleware
//! (`admin::audit::record`) reads it back to finish the entry. It lives with auth,
//! the side that fills it, so that the audit middleware depends on auth and not the
//! other way round.

use std::sync::Arc;

use parking_lot::Mutex;
use picloud_core::access::Principal;
use picloud_core::{ApiKeyId, AppId, UserId};

/// Who did it and to which app, as far as the request got.
#[derive(Debug, Default)]
pub struct Collected {
    pub user_id: Option<UserId>,
    pub key_id: Option<ApiKeyId>,
    pub app_id: Option<AppId>,
}

/// Shared between the middleware and the request's extractors (cloning shares it).
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Collected>>);

impl AuditSlot {
    pub fn set_actor(&self, principal: &Principal) {
        let mut c = self.0.lock();
        c.user_id = Some(principal.user_id.clone());
        c.key_id = principal.key.as_ref().map(|k| k.key_id.clone());
    }

    pub fn set_app(&self, app: &AppId) {
        self.0.lock().app_id = Some(app.clone());
    }

    /// What was collected, leaving the slot empty.
    pub fn take(&self) -> Collected {
        std::mem::take(&mut *self.0.lock())
    }
}
