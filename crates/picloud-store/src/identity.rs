//! Identity rules every backend applies inside its own writes (no SQL here).

use picloud_core::SessionId;

use crate::{StoreError, StoreResult, User, UserPatch};

/// The `Conflict` message for a change that would leave the instance without an
/// enabled instance admin (nobody could then manage users, or undo the change).
pub const LAST_ADMIN: &str = "this is the last enabled instance admin; make another admin first";

/// Whether applying `patch` to `user` takes an enabled instance admin away. A store
/// that sees `true` must find another enabled admin in the same transaction, under a
/// lock that every such change takes, or refuse with [`LAST_ADMIN`].
pub fn removes_enabled_admin(user: &User, patch: &UserPatch) -> bool {
    is_enabled_admin(user) && (patch.is_admin == Some(false) || patch.disabled == Some(true))
}

/// Whether deleting `user` takes an enabled instance admin away (see
/// [`removes_enabled_admin`]).
pub fn is_enabled_admin(user: &User) -> bool {
    user.is_admin && !user.disabled
}

/// Whether applying `patch` ends the user's sessions: a disable (for good, so that
/// enabling the user again revives none) or a new password (all but the patch's
/// `keep_session`). Stores bump the user's `session_epoch` in the same write.
pub fn ends_sessions(patch: &UserPatch) -> bool {
    patch.password_hash.is_some() || patch.disabled == Some(true)
}

/// The session that outlives `patch` when it [ends sessions](ends_sessions): the
/// patch's `keep_session` for a new password; none for a disable, which ends every
/// session for good.
pub fn kept_session(patch: &UserPatch) -> Option<&SessionId> {
    if patch.disabled == Some(true) {
        None
    } else {
        patch.keep_session.as_ref()
    }
}

/// The `Conflict` message for a password change whose proof of the old password went
/// stale: another change landed first.
pub const PASSWORD_CHANGED: &str =
    "the password was changed by another request meanwhile; sign in again";

/// Checks `patch`'s precondition against the locked row (see
/// [`UserPatch::if_password_hash`]).
pub fn check_precondition(user: &User, patch: &UserPatch) -> StoreResult<()> {
    match &patch.if_password_hash {
        Some(expected) if *expected != user.password_hash => {
            Err(StoreError::Conflict(PASSWORD_CHANGED.to_owned()))
        }
        _ => Ok(()),
    }
}
