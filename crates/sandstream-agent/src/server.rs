//! Binding, serving and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sandstream_proto::v1::exec_service_server::ExecServiceServer;
use sandstream_proto::v1::file_service_server::FileServiceServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::Routes;
use tower::ServiceExt;

use crate::auth::Auth;
use crate::config::AgentConfig;
use crate::conns::{Admitted, ConnLimits, ConnTable};
use crate::error::{AgentError, Result};
use crate::files::{AgentCreds, FileServer, Pool, Users};
use crate::registry::Registry;
use crate::service::AgentService;

/// Largest message the agent accepts (stdin writes, command text).
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest FileService message the agent accepts: a Write chunk (1 MiB is the usual;
/// proto/PROTOCOL.md) with room to spare.
const MAX_FILE_REQUEST_BYTES: usize = 4 << 20;
/// Largest HTTP/2 frame the agent accepts.
const MAX_FRAME_BYTES: u32 = 1 << 20;
/// How long connections may stay open after every command ended during shutdown.
const CONNECTION_LINGER: Duration = Duration::from_secs(2);
/// Pause after a failed accept (no descriptors left, say) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Binds the listening socket (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| AgentError::io(format!("bind {addr}"), e))
}

/// Serves until `shutdown` resolves, then stops taking commands, terminates running
/// ones (SIGTERM, then SIGKILL after the grace), lets their streams end and returns.
pub async fn serve(cfg: AgentConfig, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    serve_with_ssh(cfg, listener, None, shutdown).await
}

/// [`serve`], and SSH on `ssh` (`ssh/`) until shutdown begins.
async fn serve_with_ssh(
    cfg: AgentConfig,
    listener: TcpListener,
    ssh: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    for warning in &cfg.warnings {
        tracing::warn!("{warning}");
    }
    let registry = Registry::new(cfg.exec.clone())?;
    registry.start_standby();
    let (stop_tx, stop_rx) = watch::channel(false);
    let auth = Arc::new(Auth::new(cfg.token.clone(), cfg.sandbox_id.clone()));
    let service = AgentService {
        registry: registry.clone(),
        auth: auth.clone(),
        keepalive: cfg.keepalive,
        shutdown: stop_rx.clone(),
    };
    let agent_creds = AgentCreds::current().map_err(|e| AgentError::io("read the agent's credentials", e))?;
    let pool = Pool::start(agent_creds).map_err(|e| AgentError::io("start the file threads", e))?;
    let users = Users { run_as: cfg.exec.run_as, workdir: cfg.exec.default_cwd.clone() };
    let files = FileServer::new(auth, pool, users, cfg.keepalive);
    // Both services on one port, with the same token check and connection accounting.
    let service = Routes::new(ExecServiceServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(FileServiceServer::new(files).max_decoding_message_size(MAX_FILE_REQUEST_BYTES))
        .prepare();
    let limits = ConnLimits::for_fd_limit(fd_limit());
    tracing::debug!(?limits, "connection limits");
    if let (Some(ssh_listener), Some(ssh)) = (ssh, &cfg.ssh) {
        let shared = crate::ssh::shared(registry.clone(), ssh.access_file.clone(), cfg.keepalive);
        let closing = stop_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::ssh::serve(ssh_listener, shared, crate::ssh::limits(limits), closing).await {
                tracing::error!(error = %e, "ssh server failed");
            }
        });
    }
    let table = ConnTable::new(limits);
    let grace = cfg.shutdown_grace;
    let on_shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: terminating running commands");
        let _ = stop_tx.send(true);
        registry.terminate_all(grace).await;
    };
    tokio::pin!(on_shutdown);
    // Connections keep being served while commands end, so their streams can deliver
    // their end messages; then each is closed gracefully (HTTP/2 GOAWAY).
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut on_shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match table.admit(peer.ip()) {
                    Some(admitted) => {
                        conns.spawn(serve_connection(stream, admitted, service.clone(), limits, closing_rx.clone()));
                    }
                    None => tracing::warn!(%peer, "too many authenticated connections; closed a new one"),
                },
                Err(e) => {
                    // Out of descriptors or memory: retrying at once would spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Once commands are gone, clients get a short while to read their last messages;
    // a client that never closes its connection does not hold the agent up.
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(CONNECTION_LINGER, drained).await.is_err() {
        tracing::warn!("clients kept connections open after shutdown; closing them");
        conns.shutdown().await;
    }
    Ok(())
}

/// The soft `RLIMIT_NOFILE` (1024 if it cannot be read).
fn fd_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one, so connections and commands have
/// room (the connection bounds in `conns.rs` are computed from it). Returns the limit.
pub(crate) fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Serves one connection over HTTP/2 until it ends, is evicted (`conns.rs`), stays
/// pre-auth too long, sent nothing in time, or the agent shuts down.
async fn serve_connection(
    stream: TcpStream,
    admitted: Admitted,
    service: Routes,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let conn = admitted.0.clone();
    let pre_auth_deadline = tokio::time::sleep(limits.pre_auth_timeout);
    tokio::pin!(pre_auth_deadline);
    // Security: a connection that sends nothing costs the agent a descriptor for free.
    let mut first = [0u8; 1];
    tokio::select! {
        r = tokio::time::timeout(limits.first_bytes_timeout, stream.peek(&mut first)) => {
            if r.is_err() {
                tracing::debug!("closed a connection that sent nothing");
                return;
            }
        }
        () = conn.evicted() => return,
    }
    let for_requests = conn.clone();
    let hyper_service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // The token check marks the connection authenticated through this handle.
        request.extensions_mut().insert(for_requests.clone());
        service.clone().oneshot(request)
    });
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(4096)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        // Lets clients send large stdin writes in few frames. (How large the frames the
        // agent sends may be is the client's setting; see proto/PROTOCOL.md.)
        .max_frame_size(MAX_FRAME_BYTES);
    let served = http2.serve_connection(TokioIo::new(stream), hyper_service);
    tokio::pin!(served);
    let mut deadline_checked = false;
    let mut closing_started = false;
    loop {
        tokio::select! {
            r = &mut served => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = conn.evicted() => {
                tracing::debug!("closed the oldest unauthenticated connection to make room");
                return;
            }
            () = &mut pre_auth_deadline, if !deadline_checked => {
                deadline_checked = true;
                if !conn.is_authenticated() {
                    tracing::debug!("closed a connection that did not authenticate in time");
                    return;
                }
            }
            _ = closing.wait_for(|c| *c), if !closing_started => {
                closing_started = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT: binds, prints `listening on ADDR` on stdout
/// (so a supervisor that asked for port 0 learns the port), and serves.
pub async fn run(cfg: AgentConfig) -> Result<()> {
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr().map_err(|e| AgentError::io("local address", e))?;
    let ssh = match &cfg.ssh {
        Some(ssh) => Some(bind(ssh.listen).await?),
        None => None,
    };
    // One write: a reader that stops after the first line does not make the second fail.
    match &ssh {
        Some(l) => {
            let ssh_addr = l.local_addr().map_err(|e| AgentError::io("local address", e))?;
            print!("listening on {addr}\nssh listening on {ssh_addr}\n");
        }
        None => println!("listening on {addr}"),
    }
    tracing::info!(%addr, sandbox_id = cfg.sandbox_id.as_deref().unwrap_or(""), "agent ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::io("install SIGTERM handler", e))?;
    let deadline_file = cfg.deadline_file.clone();
    let deadline = async move {
        match deadline_file {
            Some(path) => crate::deadline::reached(path).await,
            None => std::future::pending().await,
        }
    };
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            () = deadline => {}
        }
    };
    serve_with_ssh(cfg, listener, ssh, shutdown).await
}
