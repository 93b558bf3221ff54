//! Connections to the sandboxes' agents: one HTTP/2 connection per sandbox, shared by
//! all its executions and file transfers, each call carrying the sandbox's token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::file_service_client::FileServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::store::SandboxRow;

/// HTTP/2 flow-control windows of the connection to each agent, and of each stream on it.
const AGENT_CONNECTION_WINDOW: u32 = 2 << 20;
const AGENT_STREAM_WINDOW: u32 = 1 << 20;

#[derive(Clone)]
pub(crate) struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub(crate) type AgentClient = ExecServiceClient<InterceptedService<Channel, Bearer>>;
/// The agent's `FileService` (protocol v1.3), over the same connection.
pub(crate) type FileClient = FileServiceClient<InterceptedService<Channel, Bearer>>;

/// Largest message taken from an agent: output and file chunks are far smaller; a
/// directory listing is the largest (`ListDir` answers in one message).
const MAX_MESSAGE: usize = 16 << 20;

/// The connection to each sandbox's agent, by sandbox id (with the address it is to).
#[derive(Default)]
pub(crate) struct Agents {
    channels: Mutex<HashMap<String, (String, Channel)>>,
}

impl Agents {
    /// A client of `sb`'s agent, over the sandbox's one connection (made on first use,
    /// and again when the sandbox's address changed).
    pub(crate) fn client(&self, sb: &SandboxRow) -> Result<AgentClient, String> {
        let (channel, bearer) = self.channel(sb)?;
        Ok(ExecServiceClient::with_interceptor(channel, bearer).max_decoding_message_size(MAX_MESSAGE))
    }

    /// A `FileService` client of `sb`'s agent, over the same connection as [`Self::client`].
    pub(crate) fn files(&self, sb: &SandboxRow) -> Result<FileClient, String> {
        let (channel, bearer) = self.channel(sb)?;
        Ok(FileServiceClient::with_interceptor(channel, bearer).max_decoding_message_size(MAX_MESSAGE))
    }

    fn channel(&self, sb: &SandboxRow) -> Result<(Channel, Bearer), String> {
        let endpoint = format!("http://{}:{}", sb.host, sb.port);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(&sb.id) {
            Some((e, ch)) if *e == endpoint => ch.clone(),
            _ => {
                let ch = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| format!("agent address {endpoint}: {e}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .keep_alive_while_idle(true)
                    // Output the server has not taken yet waits in the agent's spool, not
                    // here: these windows bound what a sandbox's connection can buffer in
                    // the server's memory (2 MiB), and on a local network they still
                    // carry far more than the server can store and emit.
                    .initial_connection_window_size(Some(AGENT_CONNECTION_WINDOW))
                    .initial_stream_window_size(Some(AGENT_STREAM_WINDOW))
                    .connect_lazy();
                channels.insert(sb.id.clone(), (endpoint, ch.clone()));
                ch
            }
        };
        let token = format!("Bearer {}", sb.token).parse().map_err(|_| "sandbox token is not ASCII".to_string())?;
        Ok((channel, Bearer(token)))
    }

    /// Drops the connection to a sandbox that is gone or moved.
    pub(crate) fn forget(&self, sandbox_id: &str) {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(sandbox_id);
    }
}
