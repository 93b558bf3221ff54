//! Accepting HTTP connections without letting idle or slow clients use the server up.
//! `axum::serve` sets no header-read timeout and takes every connection: 20,000 idle
//! TCP connections (slowloris) used the process's file limit, `/healthz` timed out and
//! the embedded runner could not open files. Here each connection must send its request
//! head within [`HEADER_READ_TIMEOUT`] (also between keep-alive requests), one address
//! holds at most [`PER_ADDRESS`] connections, and all together stay well under the file
//! limit; a connection past a limit is closed at once, so the accept backlog never fills.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower::ServiceExt;

/// Time a client has to send a request's head, from connecting or from the end of its
/// previous response.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections one address holds at once.
pub(crate) const PER_ADDRESS: usize = 256;
/// Time open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Raises this process's soft file limit to its hard limit (the runner under `up` and
/// SQLite share it) and returns how many connections to allow: half of it.
pub(crate) fn connection_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() => hard,
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    usize::try_from(soft / 2).unwrap_or(usize::MAX).clamp(64, 1 << 20)
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One open connection's place in [`Counts`]; given back on drop.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_address.remove(&self.ip);
            }
        }
    }
}

fn admit(counts: &Arc<Mutex<Counts>>, ip: IpAddr, limit: usize) -> Option<Slot> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    let mine = c.by_address.get(&ip).copied().unwrap_or(0);
    if c.total >= limit || mine >= PER_ADDRESS {
        return None;
    }
    c.total += 1;
    *c.by_address.entry(ip).or_default() += 1;
    Some(Slot { counts: counts.clone(), ip })
}

/// Serves `router` on `listener` until `shutdown` resolves; then open connections get
/// [`SHUTDOWN_GRACE`] to finish. Each request carries its peer's `ConnectInfo`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = connection_limit();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut refused = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or a connection reset before accept):
                    // wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = admit(&counts, peer.ip(), limit) else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(address = %peer.ip(), refused, "connection limit reached; closing new connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _slot = slot;
            // hyper's header timeout starts once it knows the HTTP version, which takes
            // the first bytes: a connection that sends none is dropped here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(10));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
        // Reap finished connection tasks as we go, so the set stays the size of what runs.
        while tasks.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_at_most_its_share_and_slots_come_back() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let held: Vec<Slot> = (0..PER_ADDRESS).map(|_| admit(&counts, a, 10_000).expect("room")).collect();
        assert!(admit(&counts, a, 10_000).is_none(), "past the per-address limit");
        let other = admit(&counts, b, 10_000).expect("another address has room");
        drop(held);
        assert!(admit(&counts, a, 10_000).is_some(), "slots come back on drop");
        drop(other);
        // The total limit holds across addresses.
        let _one = admit(&counts, a, 1).expect("first");
        assert!(admit(&counts, b, 1).is_none());
    }
}
