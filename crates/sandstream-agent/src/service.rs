//! The gRPC face of the agent: `ExecService`. Every handler checks the token first,
//! then maps the request onto the registry.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use sandstream_proto::v1::exec_service_server::ExecService;
use sandstream_proto::v1::{
    AttachRequest, CloseStdinRequest, CloseStdinResponse, CommandInfo, CommandOutput, EventKind, ExecuteRequest,
    ExitStatus, ListRequest, ListResponse, OpenSessionRequest, OutputEncoding, ResizePtyRequest, ResizePtyResponse,
    SignalRequest, SignalResponse, StartResponse, WriteStdinRequest, WriteStdinResponse,
};
use tokio::sync::{broadcast, watch};
use tonic::{Request, Response, Status};

use crate::auth::{Auth, connection_authenticated};
use crate::command::Command;
use crate::error::AgentError;
use crate::events::{self, OutputStream};
use crate::exit::ExitInfo;
use crate::registry::{Lifecycle, Registry};
use crate::spec::CommandSpec;

/// The `ExecService` implementation.
#[derive(Debug, Clone)]
pub(crate) struct AgentService {
    pub(crate) registry: Arc<Registry>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) keepalive: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl AgentService {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        crate::auth::authorize(&self.auth, request)
    }

    fn start_command(&self, req: ExecuteRequest) -> Result<Arc<Command>, Status> {
        let spec = CommandSpec::parse(req, &self.registry.exec_config().default_cwd)?;
        Ok(self.registry.start(spec)?)
    }
}

fn encoding(value: i32) -> Result<OutputEncoding, Status> {
    OutputEncoding::try_from(value).map_err(|_| Status::invalid_argument(format!("unknown output encoding {value}")))
}

fn info(c: &Command) -> CommandInfo {
    let totals = c.log.totals();
    let exit: Option<ExitInfo> = c.log.exit();
    let ended = exit.as_ref().map(|e| events::ended(c, e, totals));
    CommandInfo {
        command_id: c.id.clone(),
        command: c.command.clone(),
        cwd: c.cwd.display().to_string(),
        user: c.user.clone(),
        pid: c.pid,
        running: exit.is_none(),
        status: ended.as_ref().map_or(ExitStatus::Unspecified as i32, |e| e.status),
        exit_code: ended.as_ref().map_or(0, |e| e.exit_code),
        signal: ended.as_ref().map_or(0, |e| e.signal),
        stdout_bytes: totals.stdout,
        stderr_bytes: totals.stderr,
        started_at_ms: c.started_at_ms,
        finished_at_ms: exit.as_ref().map_or(0, |e| e.finished_at_ms),
        truncated: c.log.cut().is_some(),
        oom_killed: ended.as_ref().is_some_and(|e| e.oom_killed),
        output_limit_reached: ended.as_ref().is_some_and(|e| e.output_limit_reached),
        error: ended.map(|e| e.error).unwrap_or_default(),
        pty: c.pty_size().map(crate::pty::Size::to_proto),
    }
}

#[tonic::async_trait]
impl ExecService for AgentService {
    type OpenSessionStream = OutputStream;
    type ExecuteStream = OutputStream;
    type AttachStream = OutputStream;

    async fn open_session(&self, request: Request<OpenSessionRequest>) -> Result<Response<OutputStream>, Status> {
        let field_token = request.get_ref().token.clone();
        self.auth.check(request.metadata(), Some(&field_token))?;
        self.auth.check_sandbox(&request.get_ref().sandbox_id)?;
        connection_authenticated(&request);
        let mut events = self.registry.subscribe();
        let mut shutdown = self.shutdown.clone();
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let keepalive = self.keepalive;
        let stream = async_stream::stream! {
            yield Ok(CommandOutput { kind: EventKind::SessionOpened as i32, ..Default::default() });
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(Lifecycle::Started(c)) => yield Ok(events::started(&c)),
                        Ok(Lifecycle::Ended(c)) => {
                            if let Some(exit) = c.log.exit() {
                                let mut end = events::ended(&c, &exit, c.log.totals());
                                // Lifecycle only: no output bytes travel on the session.
                                end.end = false;
                                yield Ok(end);
                            }
                        }
                        // A session that fell behind has missed events; List is authoritative.
                        Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "session stream lagged"),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(keepalive) => yield Ok(events::keepalive("")),
                    _ = &mut stopped => return,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn execute(&self, request: Request<ExecuteRequest>) -> Result<Response<OutputStream>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let enc = encoding(req.encoding)?;
        let command = self.start_command(req)?;
        Ok(Response::new(events::command_stream(command, 0, 0, enc, self.keepalive)))
    }

    async fn start(&self, request: Request<ExecuteRequest>) -> Result<Response<StartResponse>, Status> {
        self.authorize(&request)?;
        let command = self.start_command(request.into_inner())?;
        Ok(Response::new(StartResponse { command_id: command.id.clone(), pid: command.pid }))
    }

    async fn attach(&self, request: Request<AttachRequest>) -> Result<Response<OutputStream>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let enc = encoding(req.encoding)?;
        let command = self.registry.get(&req.command_id)?;
        let totals = command.log.totals();
        for (channel, offset, total) in
            [("stdout", req.stdout_offset, totals.stdout), ("stderr", req.stderr_offset, totals.stderr)]
        {
            if offset > total {
                return Err(AgentError::OffsetOutOfRange { id: command.id.clone(), channel, offset, total }.into());
            }
        }
        Ok(Response::new(events::command_stream(command, req.stdout_offset, req.stderr_offset, enc, self.keepalive)))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.authorize(&request)?;
        let commands = self.registry.list().iter().map(|c| info(c)).collect();
        Ok(Response::new(ListResponse { commands }))
    }

    async fn signal(&self, request: Request<SignalRequest>) -> Result<Response<SignalResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let signal = if req.signal == 0 {
            Signal::SIGKILL
        } else {
            Signal::try_from(req.signal)
                .map_err(|_| Status::invalid_argument(format!("{} is not a Linux signal number", req.signal)))?
        };
        self.registry.get(&req.command_id)?.signal(signal)?;
        Ok(Response::new(SignalResponse {}))
    }

    async fn write_stdin(&self, request: Request<WriteStdinRequest>) -> Result<Response<WriteStdinResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let command = self.registry.get(&req.command_id)?;
        command.write_stdin(req.data.to_vec()).await?;
        Ok(Response::new(WriteStdinResponse {}))
    }

    async fn close_stdin(&self, request: Request<CloseStdinRequest>) -> Result<Response<CloseStdinResponse>, Status> {
        self.authorize(&request)?;
        self.registry.get(&request.get_ref().command_id)?.close_stdin()?;
        Ok(Response::new(CloseStdinResponse {}))
    }

    async fn resize_pty(&self, request: Request<ResizePtyRequest>) -> Result<Response<ResizePtyResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let size = req.size.ok_or_else(|| Status::invalid_argument("size is missing"))?;
        let size = crate::pty::Size::parse(size)?;
        self.registry.get(&req.command_id)?.resize(size)?;
        Ok(Response::new(ResizePtyResponse {}))
    }
}
