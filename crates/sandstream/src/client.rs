//! Admin subcommands that call a running server over its HTTP API: `keys` and
//! `login-link` (the user commands are in `cp.rs`, `sandbox_cmd.rs`, `exec.rs` and `shell.rs`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::rest::{key_or_admin_key, server_message};

#[derive(Args)]
pub(crate) struct KeysArgs {
    /// The server.
    #[arg(long, visible_alias = "server", env = "SANDSTREAM_API_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// The admin key (default: read from --data-dir/admin-key).
    #[arg(long, env = "SANDSTREAM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long, env = "SANDSTREAM_DATA_DIR", default_value = "/var/lib/sandstream")]
    data_dir: PathBuf,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Subcommand)]
pub(crate) enum KeysAction {
    /// Create a tenant key; prints it once.
    Create { name: String },
    /// List keys.
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Args)]
pub(crate) struct LoginLinkArgs {
    /// The server, as this machine reaches it; the link printed starts with it.
    #[arg(long, visible_alias = "url", env = "SANDSTREAM_API_URL", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// The API key the link signs in as (default: the admin key in --data-dir/admin-key).
    #[arg(long, env = "SANDSTREAM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// With an admin key: make the link for this other key instead (an id from
    /// `sandstream keys list`).
    #[arg(long)]
    key_id: Option<String>,
    /// Where the admin key is read from when no key is given.
    #[arg(long, env = "SANDSTREAM_DATA_DIR", default_value = "/var/lib/sandstream")]
    data_dir: PathBuf,
}

/// Sends `req` with `key`: the answer's JSON (`Null` for an empty body), or an error with
/// the status and the server's message.
async fn call(req: reqwest::RequestBuilder, key: &str, url: &str) -> anyhow::Result<serde_json::Value> {
    let resp = req.bearer_auth(key).send().await.with_context(|| format!("reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{status}: {}", server_message(&text));
    }
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

pub(crate) async fn keys(a: KeysArgs) -> anyhow::Result<()> {
    let key = key_or_admin_key(a.api_key, &a.data_dir)?;
    let http = reqwest::Client::new();
    let url = a.url.trim_end_matches('/');
    let req = match &a.action {
        KeysAction::Create { name } => http.post(format!("{url}/api/v1/keys")).json(&serde_json::json!({"name": name})),
        KeysAction::List => http.get(format!("{url}/api/v1/keys")),
        KeysAction::Revoke { id } => http.delete(format!("{url}/api/v1/keys/{id}")),
    };
    match call(req, &key, url).await? {
        serde_json::Value::Null => println!("done"),
        v => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    Ok(())
}

/// Asks the server for a one-time login link (`POST /api/v1/login-links`) and prints it
/// on the address this machine reached the server at: the server only knows the
/// address it is bound to, which a browser may not reach (behind a proxy, on 0.0.0.0).
pub(crate) async fn login_link(a: LoginLinkArgs) -> anyhow::Result<()> {
    let key = key_or_admin_key(a.api_key, &a.data_dir)?;
    let url = a.server.trim_end_matches('/');
    let body = match &a.key_id {
        Some(id) => serde_json::json!({"keyId": id}),
        None => serde_json::json!({}),
    };
    let req = reqwest::Client::new().post(format!("{url}/api/v1/login-links")).json(&body);
    let link = call(req, &key, url).await?;
    let (Some(path), Some(key_id), Some(expires)) =
        (link["path"].as_str(), link["keyId"].as_str(), link["expiresAt"].as_str())
    else {
        anyhow::bail!("{url} answered without a link: {link}");
    };
    println!("{url}{path}");
    eprintln!("A one-time link for key {key_id}: it signs one browser in, once, until {expires}.");
    Ok(())
}
