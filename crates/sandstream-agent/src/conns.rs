//! Bounds on the agent's TCP connections, above all on those that have not
//! authenticated yet.
//!
//! Security: anyone who can reach the agent's port can open connections without a
//! token. Unbounded, about 4,200 idle ones used up the agent's file descriptors (a
//! sandbox's limit is often 1024), accepts failed, and real clients timed out before
//! receiving the HTTP/2 SETTINGS frame. So a connection is *pre-auth* until a request on
//! it has passed the token check (`auth.rs`, which calls [`ConnHandle::authenticated`]);
//! pre-auth connections are bounded in number, in total and per source address, and in
//! time. When the table is full the **oldest** pre-auth connection is evicted, never the
//! new one: a real client that authenticates promptly always gets through, even when
//! every connection comes from one address (as through the host's published port).
//! Authenticated connections do not count against those bounds; they have their own.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// The bounds. All are far below the agent's file descriptor limit, so connections can
/// never starve commands (pipes, spool files) or further accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Pre-auth connections in all.
    pub(crate) pre_auth: usize,
    /// Pre-auth connections from one source address.
    pub(crate) pre_auth_per_ip: usize,
    /// Authenticated connections; past it, new connections are closed at once.
    pub(crate) authenticated: usize,
    /// Longest a connection may stay pre-auth.
    pub(crate) pre_auth_timeout: Duration,
    /// A connection that sent nothing this long after it was accepted is closed.
    pub(crate) first_bytes_timeout: Duration,
}

impl ConnLimits {
    /// Bounds for an agent that may hold `nofile` file descriptors: an eighth of them for
    /// pre-auth connections, a quarter for authenticated ones (128 and 256 with the usual
    /// 1024), leaving the rest for commands.
    pub(crate) fn for_fd_limit(nofile: u64) -> ConnLimits {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        let pre_auth = (nofile / 8).clamp(16, 512);
        ConnLimits {
            pre_auth,
            pre_auth_per_ip: pre_auth / 2,
            authenticated: (nofile / 4).clamp(16, 4096),
            pre_auth_timeout: Duration::from_secs(10),
            first_bytes_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Pre-auth connections by id (ids grow, so the first is the oldest).
    pre_auth: BTreeMap<u64, (IpAddr, Arc<ConnHandle>)>,
    /// Ids of the pre-auth connections of each source address.
    by_ip: HashMap<IpAddr, BTreeSet<u64>>,
    authenticated: HashSet<u64>,
}

impl Table {
    /// Takes `id` out of the pre-auth set; whether it was in it.
    fn remove_pre_auth(&mut self, id: u64) -> Option<Arc<ConnHandle>> {
        let (ip, handle) = self.pre_auth.remove(&id)?;
        if let Some(ids) = self.by_ip.get_mut(&ip) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        Some(handle)
    }

    fn evict(&mut self, id: u64) {
        if let Some(handle) = self.remove_pre_auth(id) {
            handle.evicted.store(true, Ordering::Release);
            // A stored permit: the connection's task sees it even if not waiting yet.
            handle.evict.notify_one();
        }
    }
}

/// Every connection of the agent.
#[derive(Debug)]
pub(crate) struct ConnTable {
    limits: ConnLimits,
    table: Mutex<Table>,
}

/// One connection's entry, shared by its task and (through request extensions) by the
/// token check. Dropping the [`Admitted`] guard removes it from the table.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    id: u64,
    table: std::sync::Weak<ConnTable>,
    authenticated: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
}

impl ConnHandle {
    /// A request on this connection passed the token check: it no longer counts as
    /// pre-auth and is no longer subject to eviction or the pre-auth deadline.
    pub(crate) fn authenticated(&self) {
        if self.authenticated.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(table) = self.table.upgrade() {
            let mut t = table.lock();
            // An evicted connection is on its way out; it is not counted again.
            if t.remove_pre_auth(self.id).is_some() {
                t.authenticated.insert(self.id);
            }
        }
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire) && !self.evicted.load(Ordering::Acquire)
    }

    /// Resolves once the table evicted this connection to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// A connection in the table; removed from it when dropped.
#[derive(Debug)]
pub(crate) struct Admitted(pub(crate) Arc<ConnHandle>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(table) = self.0.table.upgrade() {
            let mut t = table.lock();
            t.remove_pre_auth(self.0.id);
            t.authenticated.remove(&self.0.id);
        }
    }
}

/// Counts, for tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnCounts {
    pub(crate) pre_auth: usize,
    pub(crate) authenticated: usize,
}

impl ConnTable {
    pub(crate) fn new(limits: ConnLimits) -> Arc<ConnTable> {
        Arc::new(ConnTable { limits, table: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn counts(&self) -> ConnCounts {
        let t = self.lock();
        ConnCounts { pre_auth: t.pre_auth.len(), authenticated: t.authenticated.len() }
    }

    /// Admits a new connection from `ip` as pre-auth, evicting the oldest pre-auth
    /// connection of the same address, then the oldest of all, while over the bounds.
    /// `None` (close it) only when the authenticated connections are at their bound.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut t = self.lock();
        if t.authenticated.len() >= self.limits.authenticated {
            return None;
        }
        while t.by_ip.get(&ip).is_some_and(|ids| ids.len() >= self.limits.pre_auth_per_ip.max(1)) {
            let Some(oldest) = t.by_ip.get(&ip).and_then(|ids| ids.first().copied()) else { break };
            t.evict(oldest);
        }
        while t.pre_auth.len() >= self.limits.pre_auth.max(1) {
            let Some(oldest) = t.pre_auth.keys().next().copied() else { break };
            t.evict(oldest);
        }
        let id = t.next_id;
        t.next_id += 1;
        let handle = Arc::new(ConnHandle {
            id,
            table: Arc::downgrade(self),
            authenticated: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        t.pre_auth.insert(id, (ip, handle.clone()));
        t.by_ip.entry(ip).or_default().insert(id);
        Some(Admitted(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pre_auth: usize, per_ip: usize, authenticated: usize) -> ConnLimits {
        ConnLimits {
            pre_auth,
            pre_auth_per_ip: per_ip,
            authenticated,
            pre_auth_timeout: Duration::from_secs(10),
            first_bytes_timeout: Duration::from_secs(3),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn the_oldest_pre_auth_connection_of_the_same_address_is_evicted_first() {
        let table = ConnTable::new(limits(4, 2, 8));
        let a1 = table.admit(ip(1)).expect("admitted");
        let b1 = table.admit(ip(2)).expect("admitted");
        let a2 = table.admit(ip(1)).expect("admitted");
        let a3 = table.admit(ip(1)).expect("admitted");
        assert!(a1.0.evicted.load(Ordering::Acquire), "a1 was the oldest of 10.0.0.1");
        assert!(!b1.0.evicted.load(Ordering::Acquire) && !a2.0.evicted.load(Ordering::Acquire));
        assert_eq!(table.counts(), ConnCounts { pre_auth: 3, authenticated: 0 });
        // Full in total: the oldest of all goes.
        let _c1 = table.admit(ip(3)).expect("admitted");
        let _d1 = table.admit(ip(4)).expect("admitted");
        assert!(b1.0.evicted.load(Ordering::Acquire));
        assert!(!a3.0.evicted.load(Ordering::Acquire));
        assert_eq!(table.counts().pre_auth, 4);
    }

    #[test]
    fn authenticated_connections_leave_the_pre_auth_bounds_but_have_their_own() {
        let table = ConnTable::new(limits(2, 2, 2));
        let a = table.admit(ip(1)).expect("admitted");
        a.0.authenticated();
        let b = table.admit(ip(1)).expect("admitted");
        let _c = table.admit(ip(1)).expect("admitted");
        let _d = table.admit(ip(1)).expect("admitted");
        assert!(a.0.is_authenticated() && !a.0.evicted.load(Ordering::Acquire), "never evicted once authenticated");
        assert!(b.0.evicted.load(Ordering::Acquire));
        // An evicted connection that authenticates late is not counted.
        b.0.authenticated();
        assert!(!b.0.is_authenticated());
        assert_eq!(table.counts(), ConnCounts { pre_auth: 2, authenticated: 1 });
        let e = table.admit(ip(2)).expect("admitted");
        e.0.authenticated();
        assert!(table.admit(ip(3)).is_none(), "authenticated connections are at their bound");
        drop(e);
        assert!(table.admit(ip(3)).is_some(), "a closed connection frees its place");
    }

    #[test]
    fn bounds_stay_well_below_the_fd_limit() {
        let l = ConnLimits::for_fd_limit(1024);
        assert_eq!((l.pre_auth, l.pre_auth_per_ip, l.authenticated), (128, 64, 256));
        let big = ConnLimits::for_fd_limit(1 << 20);
        assert_eq!((big.pre_auth, big.authenticated), (512, 4096));
    }
}
