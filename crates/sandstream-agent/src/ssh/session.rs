//! One SSH connection: authentication against the access file, then session channels
//! run as the agent's own commands (`Registry::start`, so they are spooled, listed and
//! limited like any other) and `direct-tcpip` channels connect from inside the sandbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty, Sig};
use sandstream_proto::v1::{ExecuteRequest, OutputEncoding, PtySize};
use tokio::sync::mpsc;

use crate::command::{Command, now_ms};
use crate::conns::ConnHandle;
use crate::output_log::{Channel as Stream, Next};
use crate::registry::Registry;
use crate::spec::CommandSpec;
use crate::ssh::access::Access;

/// Session channels one connection may have open (OpenSSH's sshd allows 10).
const MAX_CHANNELS: usize = 10;
/// Pending input writes per channel before the connection waits for the program.
const INPUT_QUEUE: usize = 64;
/// How long a forwarded connection may take to connect.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where Debian and others keep OpenSSH's sftp server (the `sftp` subsystem).
const SFTP_SERVERS: [&str; 3] =
    ["/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/lib/sftp-server"];

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) registry: Arc<Registry>,
    pub(crate) access_file: std::path::PathBuf,
    pub(crate) keepalive: Duration,
}

enum Input {
    Data(Vec<u8>),
    Eof,
}

#[derive(Default)]
struct Chan {
    /// `pty-req`'s terminal type and size.
    pty: Option<(String, PtySize)>,
    env: Vec<(String, String)>,
    command: Option<Arc<Command>>,
    input: Option<mpsc::Sender<Input>>,
}

/// The handler of one connection.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    conn: Arc<ConnHandle>,
    peer: Option<SocketAddr>,
    /// The user that logged in.
    user: Option<String>,
    channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<ConnHandle>, peer: Option<SocketAddr>) -> Conn {
        Conn { shared, conn, peer, user: None, channels: HashMap::new() }
    }

    fn accepted(&mut self, user: &str, how: &str) -> Auth {
        tracing::info!(peer = ?self.peer, user, how, "ssh login");
        self.user = Some(user.to_string());
        self.conn.authenticated();
        Auth::Accept
    }

    fn refused(&self, user: &str, how: &str) -> Auth {
        tracing::warn!(peer = ?self.peer, user, how, "ssh login refused");
        Auth::reject()
    }

    /// Starts `command` (`None`: the user's shell) on `channel` and streams its output.
    fn start(
        &mut self,
        channel: ChannelId,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(user) = self.user.clone() else { return session.channel_failure(channel) };
        let Some(chan) = self.channels.get_mut(&channel) else { return session.channel_failure(channel) };
        if chan.command.is_some() {
            return session.channel_failure(channel);
        }
        let cfg = self.shared.registry.exec_config();
        let mut env: HashMap<String, String> = chan.env.iter().cloned().collect();
        let pty = chan.pty.as_ref().map(|(term, size)| {
            if !term.is_empty() {
                env.insert("TERM".into(), term.clone());
            }
            *size
        });
        // With a terminal, an empty command is the login shell; without one, a login
        // shell reading its commands from the channel.
        let command = match command {
            Some(c) => c,
            None if pty.is_some() => String::new(),
            None => format!("exec {} -l", cfg.shell.display()),
        };
        let req = ExecuteRequest {
            command,
            env,
            keep_stdin_open: true,
            user,
            pty,
            encoding: OutputEncoding::Bytes as i32,
            ..Default::default()
        };
        let started = CommandSpec::parse(req, &cfg.default_cwd).and_then(|spec| self.shared.registry.start(spec));
        let command = match started {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = ?self.peer, error = %e, "ssh: cannot start the session's command");
                let _ = session.extended_data(channel, 1, format!("sandstream: {e}\r\n").into_bytes());
                return session.channel_failure(channel);
            }
        };
        tracing::info!(peer = ?self.peer, command_id = %command.id, pid = command.pid, "ssh session started");
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        tokio::spawn(feed(command.clone(), rx));
        tokio::spawn(pump(session.handle(), channel, command.clone(), chan.pty.is_some(), self.shared.keepalive));
        chan.command = Some(command);
        chan.input = Some(tx);
        session.channel_success(channel)
    }

    fn command(&self, channel: ChannelId) -> Option<&Arc<Command>> {
        self.channels.get(&channel)?.command.as_ref()
    }
}

impl Drop for Conn {
    /// A connection that goes away hangs up its sessions' programs, as sshd does.
    fn drop(&mut self) {
        for chan in self.channels.values() {
            if let Some(c) = chan.command.as_ref().filter(|c| c.is_running()) {
                let _ = c.signal(Signal::SIGHUP);
            }
        }
    }
}

/// Writes a channel's input into its command, in order.
async fn feed(command: Arc<Command>, mut rx: mpsc::Receiver<Input>) {
    while let Some(input) = rx.recv().await {
        let done = match input {
            Input::Data(d) => command.write_stdin(d).await,
            Input::Eof => command.close_stdin(),
        };
        if done.is_err() {
            // The program closed its input or ended: what follows has nowhere to go.
            return;
        }
    }
}

/// Sends a command's output to its channel (stderr as extended data, unless on a
/// terminal, where there is one stream), then its exit status, EOF and close.
async fn pump(handle: Handle, channel: ChannelId, command: Arc<Command>, on_pty: bool, idle: Duration) {
    let mut cursor = command.log.cursor(0, 0);
    loop {
        let sent = match cursor.next(idle).await {
            Ok(Next::Chunk { channel: Stream::Stderr, data, .. }) if !on_pty => {
                handle.extended_data(channel, 1, data).await.is_ok()
            }
            Ok(Next::Chunk { data, .. }) => handle.data(channel, data).await.is_ok(),
            Ok(Next::Cut { reason, dropped }) => {
                let note = format!("\r\n[sandstream: output cut: {reason}; {dropped} later bytes were dropped]\r\n");
                handle.extended_data(channel, 1, note.into_bytes()).await.is_ok()
            }
            Ok(Next::Idle) => true,
            Ok(Next::End { exit, .. }) => {
                let code = u32::try_from(exit.exit_code()).unwrap_or(255);
                let _ = handle.exit_status_request(channel, code).await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
                return;
            }
            Err(e) => {
                tracing::error!(command_id = %command.id, error = %e, "ssh: reading the output failed");
                let _ = handle.close(channel).await;
                return;
            }
        };
        if !sent {
            return;
        }
    }
}

fn signal_of(sig: &Sig) -> Option<Signal> {
    Some(match sig {
        Sig::ABRT => Signal::SIGABRT,
        Sig::ALRM => Signal::SIGALRM,
        Sig::FPE => Signal::SIGFPE,
        Sig::HUP => Signal::SIGHUP,
        Sig::ILL => Signal::SIGILL,
        Sig::INT => Signal::SIGINT,
        Sig::KILL => Signal::SIGKILL,
        Sig::PIPE => Signal::SIGPIPE,
        Sig::QUIT => Signal::SIGQUIT,
        Sig::SEGV => Signal::SIGSEGV,
        Sig::TERM => Signal::SIGTERM,
        Sig::USR1 => Signal::SIGUSR1,
        Sig::Custom(_) => return None,
    })
}

fn pty_size(cols: u32, rows: u32) -> PtySize {
    // A client that sends 0 (unknown) gets the classic 80x24.
    PtySize { cols: if cols == 0 { 80 } else { cols }, rows: if rows == 0 { 24 } else { rows } }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if Access::read(&self.shared.access_file).password_ok(user, password, now_ms()) {
            Ok(self.accepted(user, "password"))
        } else {
            Ok(self.refused(user, "password"))
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only keys that would be accepted are worth the client's signature.
        if Access::read(&self.shared.access_file).key_ok(user, offer.public_key, now_ms()) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if Access::read(&self.shared.access_file).key_ok(user, key.public_key, now_ms()) {
            Ok(self.accepted(user, "publickey"))
        } else {
            Ok(self.refused(user, "publickey"))
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.user.is_none() {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        } else if self.channels.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
        } else {
            // Requests and data arrive through this handler, not the channel object.
            self.channels.insert(channel.id(), Chan::default());
            reply.accept().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Ok(port) = u16::try_from(port) else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        if self.user.is_none() {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        let host = host.to_string();
        let peer = self.peer;
        // Connected from the agent, inside the sandbox's network namespace: the
        // sandbox's own egress rules apply, as to any program in it.
        tokio::spawn(async move {
            let connected =
                tokio::time::timeout(FORWARD_CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port)))
                    .await;
            match connected {
                Ok(Ok(mut tcp)) => {
                    reply.accept().await;
                    let _ = tcp.set_nodelay(true);
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(?peer, %host, port, error = %e, "ssh: forwarded connection failed");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
                Err(_) => {
                    tracing::info!(?peer, %host, port, "ssh: forwarded connection timed out");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(chan) if chan.command.is_none() => {
                chan.pty = Some((term.chars().take(64).collect(), pty_size(cols, rows)));
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // What OpenSSH clients send by default (SendEnv LANG LC_*), as sshd's AcceptEnv.
        let wanted = name == "LANG" || name.starts_with("LC_");
        match self.channels.get_mut(&channel) {
            Some(chan) if wanted && chan.env.len() < 64 && value.len() <= 4096 && !value.contains('\0') => {
                chan.env.push((name.to_string(), value.to_string()));
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start(channel, None, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Some(command), session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match SFTP_SERVERS.iter().find(|p| name == "sftp" && std::path::Path::new(p).exists()) {
            Some(server) => self.start(channel, Some(format!("exec {server}")), session),
            None => session.channel_failure(channel),
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.command(channel)
            && let Ok(size) = crate::pty::Size::parse(pty_size(cols, rows))
        {
            let _ = c.resize(size);
        }
        Ok(())
    }

    async fn signal(&mut self, channel: ChannelId, sig: Sig, _session: &mut Session) -> Result<(), Self::Error> {
        if let (Some(c), Some(s)) = (self.command(channel), signal_of(&sig)) {
            let _ = c.signal(s);
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.clone()) {
            let _ = tx.send(Input::Data(data.to_vec())).await;
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        // On a terminal, end of input is the user's business (^D); on pipes it closes stdin.
        if let Some(chan) = self.channels.get(&channel)
            && chan.pty.is_none()
            && let Some(tx) = chan.input.clone()
        {
            let _ = tx.send(Input::Eof).await;
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(chan) = self.channels.remove(&channel)
            && let Some(c) = chan.command.filter(|c| c.is_running())
        {
            let _ = c.signal(Signal::SIGHUP);
        }
        Ok(())
    }
}
