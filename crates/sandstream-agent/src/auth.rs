//! Sandbox token checks. Every RPC calls [`Auth::check`] before doing anything.

use std::sync::Arc;

use sandstream_proto::secret::constant_time_eq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::conns::ConnHandle;
use crate::error::{AgentError, Result};

/// The check every RPC but `OpenSession` makes first: the request's bearer token. Once
/// it passes, the request's connection is no longer pre-auth (`conns.rs`); only then, so
/// that connections without the token stay bounded.
pub(crate) fn authorize<T>(auth: &Auth, request: &Request<T>) -> std::result::Result<(), Status> {
    auth.check(request.metadata(), None).map_err(|e| {
        tracing::warn!(error = %e, "rejected request");
        Status::from(e)
    })?;
    connection_authenticated(request);
    Ok(())
}

/// A request passed the token check: its connection is no longer pre-auth.
pub(crate) fn connection_authenticated<T>(request: &Request<T>) {
    if let Some(conn) = request.extensions().get::<Arc<ConnHandle>>() {
        conn.authenticated();
    }
}

/// The token (and optionally the sandbox id) this agent accepts.
#[derive(Debug)]
pub(crate) struct Auth {
    token: String,
    sandbox_id: Option<String>,
}

impl Auth {
    pub(crate) fn new(token: String, sandbox_id: Option<String>) -> Self {
        Auth { token, sandbox_id }
    }

    /// Accepts `authorization: Bearer <token>` metadata, or `field_token` (the seed's
    /// `OpenSessionRequest.token`) when the metadata is absent.
    pub(crate) fn check(&self, metadata: &MetadataMap, field_token: Option<&str>) -> Result<()> {
        let presented = match metadata.get("authorization") {
            Some(v) => {
                let v = v.to_str().map_err(|_| AgentError::MissingToken)?;
                let (scheme, token) = v.split_once(' ').ok_or(AgentError::MissingToken)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AgentError::MissingToken);
                }
                token.trim()
            }
            None => field_token.filter(|t| !t.is_empty()).ok_or(AgentError::MissingToken)?,
        };
        if constant_time_eq(presented.as_bytes(), self.token.as_bytes()) { Ok(()) } else { Err(AgentError::BadToken) }
    }

    /// `OpenSession` names a sandbox; it must be this agent's when one is configured.
    pub(crate) fn check_sandbox(&self, sandbox_id: &str) -> Result<()> {
        match &self.sandbox_id {
            Some(expected) if !sandbox_id.is_empty() && sandbox_id != expected => {
                Err(AgentError::WrongSandbox { expected: expected.clone(), got: sandbox_id.to_string() })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii"));
        m
    }

    #[test]
    fn bearer_token_is_checked() {
        let auth = Auth::new("s3cret".into(), None);
        assert!(auth.check(&md("Bearer s3cret"), None).is_ok());
        assert!(auth.check(&md("bearer s3cret"), None).is_ok());
        assert!(matches!(auth.check(&md("Bearer s3cre"), None), Err(AgentError::BadToken)));
        assert!(matches!(auth.check(&md("Basic s3cret"), None), Err(AgentError::MissingToken)));
        assert!(matches!(auth.check(&MetadataMap::new(), None), Err(AgentError::MissingToken)));
        assert!(matches!(auth.check(&MetadataMap::new(), Some("")), Err(AgentError::MissingToken)));
    }

    #[test]
    fn field_token_only_counts_without_metadata() {
        let auth = Auth::new("s3cret".into(), None);
        assert!(auth.check(&MetadataMap::new(), Some("s3cret")).is_ok());
        // A wrong header is not rescued by a right field.
        assert!(auth.check(&md("Bearer wrong"), Some("s3cret")).is_err());
    }

    #[test]
    fn sandbox_id_must_match_when_configured() {
        let auth = Auth::new("t".into(), Some("sbx-1".into()));
        assert!(auth.check_sandbox("sbx-1").is_ok());
        assert!(auth.check_sandbox("").is_ok());
        assert!(matches!(auth.check_sandbox("sbx-2"), Err(AgentError::WrongSandbox { .. })));
    }
}
