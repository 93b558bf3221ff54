//! Binding, serving and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sandstream_proto::v1::exec_service_server::ExecServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::Auth;
use crate::config::AgentConfig;
use crate::error::{AgentError, Result};
use crate::registry::Registry;
use crate::service::AgentService;

/// Largest message the agent accepts (stdin writes, command text).
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest HTTP/2 frame the agent accepts.
const MAX_FRAME_BYTES: u32 = 1 << 20;
/// How long connections may stay open after every command ended during shutdown.
const CONNECTION_LINGER: Duration = Duration::from_secs(2);

/// Binds the listening socket (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| AgentError::io(format!("bind {addr}"), e))
}

/// Serves until `shutdown` resolves, then stops taking commands, terminates running
/// ones (SIGTERM, then SIGKILL after the grace), lets their streams end and returns.
pub async fn serve(cfg: AgentConfig, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let registry = Registry::new(cfg.exec.clone())?;
    registry.start_standby();
    let (stop_tx, stop_rx) = watch::channel(false);
    let service = AgentService {
        registry: registry.clone(),
        auth: Arc::new(Auth::new(cfg.token.clone(), cfg.sandbox_id.clone())),
        keepalive: cfg.keepalive,
        shutdown: stop_rx,
    };
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let grace = cfg.shutdown_grace;
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let on_shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: terminating running commands");
        let _ = stop_tx.send(true);
        registry.terminate_all(grace).await;
        let _ = drained_tx.send(());
    };
    // Once commands are gone, clients get a short while to read their last messages;
    // a client that never closes its connection does not hold the agent up.
    let linger = async move {
        if drained_rx.await.is_ok() {
            tokio::time::sleep(CONNECTION_LINGER).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(4096))
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(8 << 20))
        // Lets clients send large stdin writes in few frames. (How large the frames the
        // agent sends may be is the client's setting; see proto/PROTOCOL.md.)
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .add_service(ExecServiceServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(incoming, on_shutdown);
    tokio::select! {
        r = server => r.map_err(|e| AgentError::io("serve gRPC", std::io::Error::other(e))),
        _ = linger => {
            tracing::warn!("clients kept connections open after shutdown; closing them");
            Ok(())
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT: binds, prints `listening on ADDR` on stdout
/// (so a supervisor that asked for port 0 learns the port), and serves.
pub async fn run(cfg: AgentConfig) -> Result<()> {
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr().map_err(|e| AgentError::io("local address", e))?;
    println!("listening on {addr}");
    tracing::info!(%addr, sandbox_id = cfg.sandbox_id.as_deref().unwrap_or(""), "agent ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::io("install SIGTERM handler", e))?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    serve(cfg, listener, shutdown).await
}
