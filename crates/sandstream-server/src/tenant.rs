//! A tenant's end. A key is a tenant: no other key can reach its sandboxes, so once it is
//! revoked none would be left to stop the ones it made (and whoever holds their agents'
//! tokens could go on using them until their timeout). Its sockets are closed and its
//! sandboxes killed with it.

use std::sync::Arc;

use socketioxide::SocketIo;

use crate::registry::Registry;
use crate::store::{Result, StateStore};

/// Revokes key `key_id` and tears its tenant down: its sessions, its sockets, its
/// sandboxes (each killed on its runner, in parallel; one that fails is logged). False
/// when there was no live key `key_id`.
pub(crate) async fn revoke(
    store: &dyn StateStore,
    io: &SocketIo,
    registry: &Arc<Registry>,
    key_id: &str,
) -> Result<bool> {
    if !store.revoke_key(key_id)? {
        return Ok(false);
    }
    let closed = crate::hub::disconnect_key(io, key_id);
    let mut kills = tokio::task::JoinSet::new();
    for sb in store.sandboxes_of(key_id)? {
        let registry = registry.clone();
        kills.spawn(async move { (registry.kill_sandbox(&sb).await, sb.id) });
    }
    let mut killed = 0;
    while let Some(done) = kills.join_next().await {
        match done {
            Ok((Ok(()), _)) => killed += 1,
            Ok((Err(e), sandbox_id)) => {
                tracing::error!(%sandbox_id, error = %e, "could not kill a revoked key's sandbox")
            }
            Err(e) => tracing::error!(error = %e, "a kill of a revoked key's sandbox failed"),
        }
    }
    tracing::info!(%key_id, sockets_closed = closed, sandboxes_killed = killed, "key revoked");
    Ok(true)
}
