//! The runner's side of the server link: register, then send heartbeats; register again
//! whenever the server has forgotten this runner.

use std::sync::Arc;
use std::time::Duration;

use crate::runner::Runner;
use sandstream_runner_protocol::{Heartbeat, HeartbeatReply, Register, Registered};

pub(crate) async fn run(runner: Arc<Runner>, control_url: String) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let server = runner.cfg.server_url.trim_end_matches('/').to_string();
    let mut last_error = String::new();
    loop {
        let current = runner.id.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = match current {
            None => register(&runner, &http, &server, &control_url).await,
            Some(id) => heartbeat(&runner, &http, &server, &id).await,
        };
        match result {
            Ok(()) if !last_error.is_empty() => {
                tracing::info!(server = %server, "server reachable again");
                last_error.clear();
            }
            Ok(()) => {}
            Err(e) => {
                let e = format!("{e:#}");
                if e != last_error {
                    tracing::warn!(server = %server, error = %e, "cannot reach the server; retrying");
                    last_error = e;
                }
            }
        }
        // A sandbox found dead is reported at once, not at the next tick.
        tokio::select! {
            () = tokio::time::sleep(runner.cfg.heartbeat_interval) => {}
            () = runner.heartbeat_now.notified() => {}
        }
    }
}

async fn register(runner: &Runner, http: &reqwest::Client, server: &str, control_url: &str) -> anyhow::Result<()> {
    let stored = std::fs::read_to_string(runner.cfg.state_dir.join("runner-id")).ok().map(|s| s.trim().to_string());
    let body = Register {
        id: stored.filter(|s| !s.is_empty()),
        name: runner.cfg.name.clone(),
        control_url: control_url.to_string(),
        advertise_host: runner.cfg.advertise_host.clone(),
        capacity: runner.cfg.capacity,
        backend: runner.cfg.backend.name().into(),
        templates: Some(runner.templates()),
    };
    let resp = http.post(format!("{server}/api/v1/runners")).bearer_auth(&runner.cfg.secret).json(&body).send().await?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("register: {status}: {}", resp.text().await.unwrap_or_default());
    }
    let reg: Registered = resp.json().await?;
    std::fs::write(runner.cfg.state_dir.join("runner-id"), &reg.id)?;
    tracing::info!(runner_id = %reg.id, server = %server, "registered with the server");
    *runner.id.lock().unwrap_or_else(|p| p.into_inner()) = Some(reg.id.clone());
    heartbeat(runner, http, server, &reg.id).await
}

async fn heartbeat(runner: &Runner, http: &reqwest::Client, server: &str, id: &str) -> anyhow::Result<()> {
    let taken_at = crate::record::now_ms();
    let body = Heartbeat { sandboxes: runner.list(), templates: Some(runner.templates()), taken_at: Some(taken_at) };
    let resp = http
        .post(format!("{server}/api/v1/runners/{id}/heartbeat"))
        .bearer_auth(&runner.cfg.secret)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        tracing::info!(runner_id = %id, "the server does not know this runner; registering again");
        *runner.id.lock().unwrap_or_else(|p| p.into_inner()) = None;
        return Ok(());
    }
    if !status.is_success() {
        anyhow::bail!("heartbeat: {status}: {}", resp.text().await.unwrap_or_default());
    }
    let reply: HeartbeatReply = resp.json().await?;
    for sid in reply.kill {
        tracing::info!(sandbox_id = %sid, "the server does not know this sandbox; removing it");
        let r = runner_kill(runner, sid.clone()).await;
        if let Err(e) = r {
            tracing::warn!(sandbox_id = %sid, error = %e, "could not remove an unknown sandbox");
        }
    }
    Ok(())
}

async fn runner_kill(runner: &Runner, id: String) -> anyhow::Result<()> {
    // Runner methods block; this one is short, but runc and iptables are processes.
    tokio::task::block_in_place(|| runner.kill(&id)).map_err(anyhow::Error::from)
}
