//! SSH into the sandbox (`--ssh-listen`, port 2222 in a sandbox): a stock OpenSSH client
//! gets a shell on a terminal, remote commands with their exit codes, `sftp` and `scp`
//! (through OpenSSH's own `sftp-server`, when the sandbox has it) and local port
//! forwarding, each session running as the user who logged in, as the agent's own
//! commands (`session.rs`). Who may log in is the access file (`access.rs`).
//!
//! Security: anyone who reaches the port can try. Connections are bounded like the gRPC
//! port's (`conns.rs`: pre-auth ones in number, per source and in time, oldest evicted),
//! every refused attempt is logged and answered only after `AUTH_REJECTION` (russh keeps
//! the time constant), and a connection gets at most `MAX_AUTH_ATTEMPTS` tries.

mod access;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::Config;
use russh::{MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conns::{Admitted, ConnLimits, ConnTable};
use crate::error::{AgentError, Result};
use crate::registry::Registry;
pub(crate) use session::Shared;

/// How long a refused login attempt takes to be answered.
const AUTH_REJECTION: Duration = Duration::from_secs(1);
/// Login attempts per connection.
const MAX_AUTH_ATTEMPTS: usize = 6;
/// A silent client is asked whether it is there after this long, and dropped after
/// three unanswered asks.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How long a connection may take to log in: a person types a password (OpenSSH's
/// `LoginGraceTime` is 120 s). Floods are bounded by eviction, not by this.
const LOGIN_GRACE: Duration = Duration::from_secs(60);

/// SSH's own connection bounds beside the gRPC port's (`grpc`, from the descriptor
/// limit): half as many pre-auth connections, a quarter as many logged-in ones (each
/// session is a command), and [`LOGIN_GRACE`] to log in.
pub(crate) fn limits(grpc: ConnLimits) -> ConnLimits {
    ConnLimits {
        pre_auth: (grpc.pre_auth / 2).max(8),
        pre_auth_per_ip: (grpc.pre_auth_per_ip / 2).max(4),
        authenticated: (grpc.authenticated / 4).max(8),
        pre_auth_timeout: LOGIN_GRACE,
        first_bytes_timeout: grpc.first_bytes_timeout,
    }
}

/// The server's configuration, with a host key made now: a sandbox's key lives as long
/// as its agent.
fn server_config() -> Result<Config> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AgentError::Config(format!("no random bytes for the SSH host key: {e}")))?;
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed));
    Ok(Config {
        server_id: russh::SshId::Standard("SSH-2.0-Sandstream".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        auth_rejection_time: AUTH_REJECTION,
        // OpenSSH asks with "none" first to learn the methods: no need to wait for that.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: 3,
        // Keystrokes go out at once.
        nodelay: true,
        ..Default::default()
    })
}

/// Serves SSH on `listener` until `closing` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) -> Result<()> {
    let config = Arc::new(server_config()?);
    let table = ConnTable::new(limits);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = closing.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match table.admit(peer.ip()) {
                    Some(admitted) => {
                        conns.spawn(connection(stream, peer, admitted, shared.clone(), config.clone(), limits));
                    }
                    None => tracing::warn!(%peer, "too many authenticated ssh connections; closed a new one"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shared: Arc<Shared>,
    config: Arc<Config>,
    limits: ConnLimits,
) {
    let conn = admitted.0.clone();
    let handler = session::Conn::new(shared, conn.clone(), Some(peer));
    // The version exchange: a client that sends nothing is gone within the pre-auth time.
    let started = tokio::select! {
        r = tokio::time::timeout(limits.pre_auth_timeout, russh::server::run_stream(config, stream, handler)) => r,
        () = conn.evicted() => return,
    };
    let mut running = match started {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "ssh connection ended before its session began");
            return;
        }
        Err(_) => return,
    };
    let handle = running.handle();
    let deadline = tokio::time::sleep(limits.pre_auth_timeout);
    tokio::pin!(deadline);
    let mut deadline_passed = false;
    let why = loop {
        tokio::select! {
            r = &mut running => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "ssh connection ended with an error");
                }
                return;
            }
            () = conn.evicted() => break "evicted to make room for a newer connection",
            () = &mut deadline, if !deadline_passed => {
                deadline_passed = true;
                if !conn.is_authenticated() {
                    break "did not log in in time";
                }
            }
        }
    };
    tracing::debug!(%peer, why, "closing an ssh connection");
    let _ = handle.disconnect(russh::Disconnect::ByApplication, why.into(), String::new()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
}

/// Everything the SSH server needs from the agent.
pub(crate) fn shared(registry: Arc<Registry>, access_file: PathBuf, keepalive: Duration) -> Arc<Shared> {
    Arc::new(Shared { registry, access_file, keepalive })
}
