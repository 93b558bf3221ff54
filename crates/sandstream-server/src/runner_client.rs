//! The one client of a runner's control API: typed calls, each answer read back through
//! the protocol's status mapping (`ErrorCode::from_status`, the runner's own mapping's
//! inverse), so what a refusal means is decided in one place.

use sandstream_runner_protocol::{AddSshAccess, CreateSandbox, ErrorBody, ErrorCode, RunnerSandbox, SetTimeout};
use serde::de::DeserializeOwned;

/// Why a call to a runner did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No answer (connection refused, reset, timed out).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The runner answered with an error.
    #[error("{}: {message}", code.as_str())]
    Refused { code: ErrorCode, message: String },
    /// A success whose body is not what the protocol says.
    #[error("unreadable answer: {0}")]
    BadAnswer(String),
}

pub(crate) struct RunnerClient {
    http: reqwest::Client,
    secret: String,
}

impl RunnerClient {
    pub(crate) fn new(http: reqwest::Client, secret: String) -> Self {
        RunnerClient { http, secret }
    }

    /// `POST /sandboxes`.
    pub(crate) async fn create(&self, control_url: &str, req: &CreateSandbox) -> Result<RunnerSandbox, CallError> {
        let resp = self.send(self.http.post(format!("{control_url}/sandboxes")).json(req)).await?;
        resp.json().await.map_err(|e| CallError::BadAnswer(e.to_string()))
    }

    /// `POST /sandboxes/{id}/timeout`.
    pub(crate) async fn set_timeout(&self, control_url: &str, id: &str, timeout_ms: u64) -> Result<(), CallError> {
        self.send(self.http.post(format!("{control_url}/sandboxes/{id}/timeout")).json(&SetTimeout { timeout_ms }))
            .await
            .map(drop)
    }

    /// `POST /sandboxes/{id}/ssh-access` (adds), or with `replace_passwords` `PUT` (the
    /// sandbox's passwords are replaced by those in `req`).
    pub(crate) async fn ssh_access(
        &self,
        control_url: &str,
        id: &str,
        req: &AddSshAccess,
        replace_passwords: bool,
    ) -> Result<(), CallError> {
        let url = format!("{control_url}/sandboxes/{id}/ssh-access");
        let call = if replace_passwords { self.http.put(url) } else { self.http.post(url) };
        self.send(call.json(req)).await.map(drop)
    }

    /// `DELETE /sandboxes/{id}`.
    pub(crate) async fn kill(&self, control_url: &str, id: &str) -> Result<(), CallError> {
        self.send(self.http.delete(format!("{control_url}/sandboxes/{id}"))).await.map(drop)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let resp = req.bearer_auth(&self.secret).send().await.map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = ErrorCode::from_status(status.as_u16());
        let message = match json::<ErrorBody>(resp).await {
            Ok(body) => body.message,
            Err(_) => format!("status {status}"),
        };
        Err(CallError::Refused { code, message })
    }
}

async fn json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, reqwest::Error> {
    resp.json().await
}
