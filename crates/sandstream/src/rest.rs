//! What every user command that calls a server shares: the `--server`, `--api-key` and
//! `--data-dir` flags, and one request with the server's error message on failure.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::Value;

/// The server a command calls and the key it calls with.
#[derive(Args, Clone)]
#[command(next_help_heading = "Server")]
pub(crate) struct ApiFlags {
    /// The server.
    #[arg(
        long,
        visible_alias = "url",
        env = "SANDSTREAM_API_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub server: String,
    /// The API key that owns the sandbox (default: the admin key in --data-dir/admin-key).
    #[arg(long, env = "SANDSTREAM_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Where the admin key is read from when no key is given.
    #[arg(long, env = "SANDSTREAM_DATA_DIR", default_value = "/var/lib/sandstream", global = true)]
    pub data_dir: PathBuf,
}

/// A server and a key, ready to call.
pub(crate) struct Rest {
    pub http: reqwest::Client,
    /// The server's address without a trailing `/`.
    pub base: String,
    pub key: String,
}

impl Rest {
    /// The server and key of `flags` (the admin key of a local server when no key is given).
    pub(crate) fn new(flags: &ApiFlags) -> anyhow::Result<Self> {
        let key = key_or_admin_key(flags.api_key.clone(), &flags.data_dir)?;
        Ok(Self { http: reqwest::Client::new(), base: flags.server.trim_end_matches('/').to_string(), key })
    }

    /// `{base}/api/v1{route}`.
    pub(crate) fn url(&self, route: &str) -> String {
        format!("{}/api/v1{route}", self.base)
    }

    /// `{base}/api/v1/sandboxes/{id}/{tail…}`, with `id` one path segment whatever it holds.
    pub(crate) fn sandbox_url(&self, id: &str, tail: &[&str]) -> anyhow::Result<reqwest::Url> {
        let mut url =
            reqwest::Url::parse(&self.url("/sandboxes")).with_context(|| format!("server address {}", self.base))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("server address {} cannot have a path", self.base))?
            .push(id)
            .extend(tail);
        Ok(url)
    }

    /// Sends `req` with the key: the answer when it is a success, else an error with the
    /// status and the server's message (`404 Not Found: sandbox sb-… not found`).
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req.bearer_auth(&self.key).send().await.with_context(|| format!("reach {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        anyhow::bail!("{status}: {}", server_message(&text))
    }

    /// As [`Self::send`], with the answer's body as text.
    pub(crate) async fn text(&self, req: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let resp = self.send(req).await?;
        resp.text().await.with_context(|| format!("read the answer of {}", self.base))
    }

    /// As [`Self::send`], with the answer's JSON (`Null` for an empty body, a string for
    /// one that is not JSON).
    pub(crate) async fn json(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let text = self.text(req).await?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// `key`, or the admin key a local server keeps in `data_dir`.
pub(crate) fn key_or_admin_key(key: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(k) = key.filter(|k| !k.is_empty()) {
        return Ok(k);
    }
    let path = data_dir.join("admin-key");
    let key = std::fs::read_to_string(&path)
        .with_context(|| format!("no --api-key, no SANDSTREAM_API_KEY and no {}", path.display()))?;
    Ok(key.trim().to_string())
}

/// The `message` of the API's JSON error shape, or the body as it is.
pub(crate) fn server_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| text.to_string())
}

/// A `K=V` flag's value; a bare `K` takes this process's own `K`, as `docker run -e K` does.
pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("{s:?} has no name before `=`")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None if s.is_empty() => Err("an empty name".into()),
        None => match std::env::var(s) {
            Ok(v) => Ok((s.to_string(), v)),
            Err(_) => Err(format!("{s} has no `=VALUE` and is not set here")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags_split_at_the_first_equals_sign() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("").is_err());
        assert!(parse_env("SANDSTREAM_SURELY_UNSET_VARIABLE").is_err());
    }

    #[test]
    fn error_answers_say_the_servers_message() {
        let body = r#"{"status":"error","code":"not_found","message":"sandbox sb-1 not found"}"#;
        assert_eq!(server_message(body), "sandbox sb-1 not found");
        assert_eq!(server_message("bad gateway"), "bad gateway");
    }
}
