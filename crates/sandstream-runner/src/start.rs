//! Starting a runner: the control API, the link to the server, and the background
//! duties (template collection, the reaper of dead and expired sandboxes). The one
//! place that composes `Runner` with `control` and `link`, which only know `Runner`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::RunnerConfig;
use crate::record::now_ms;
use crate::runner::Runner;

/// Ticks of the half-second reaper between refreshes of the pooled sandboxes' deadlines.
const POOL_REFRESH_EVERY: u32 = 120;

/// A started runner: its control API address and state.
pub struct RunnerHandle {
    pub control_url: String,
    pub runner: Arc<Runner>,
}

/// Sets the runner up (runtime, default template, sandboxes left by a previous run),
/// serves the control API and starts registering with the server. Blocks while the
/// default template builds on first use.
pub async fn start(cfg: RunnerConfig) -> anyhow::Result<RunnerHandle> {
    let runner = tokio::task::spawn_blocking(move || Runner::new(cfg)).await??;
    let runner = Arc::new(runner);
    if runner.cfg.warm_pool > 0 {
        let filler = runner.clone();
        std::thread::Builder::new().name("warm-pool".into()).spawn(move || filler.fill_pool())?;
    }
    let listener = tokio::net::TcpListener::bind(runner.cfg.listen)
        .await
        .with_context(|| format!("bind the runner control API on {}", runner.cfg.listen))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() { runner.cfg.advertise_host.clone() } else { local.ip().to_string() };
    let control_url = format!("http://{host}:{}", local.port());
    let app = crate::control::app(runner.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "runner control API stopped");
        }
    });
    tokio::spawn(crate::link::run(runner.clone(), control_url.clone()));
    tokio::spawn(collect_templates(runner.clone()));
    tokio::spawn(reap_expired(runner.clone()));
    tracing::info!(control = %control_url, "runner ready");
    Ok(RunnerHandle { control_url, runner })
}

/// Every minute: deletes template versions no name points to once no sandbox uses them
/// (a replaced or removed template whose last sandbox ended), then what the backend
/// kept of versions that are gone (the Docker Engine's images of them).
async fn collect_templates(runner: Arc<Runner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let cache = runner.cfg.cache_dir.clone();
        match tokio::task::spawn_blocking(move || sandstream_runtime::collect_template_garbage(&cache)).await {
            Ok(Ok(report)) if !report.removed.is_empty() => {
                tracing::info!(removed = ?report.removed, "removed unused template versions");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not remove unused template versions"),
            Err(e) => tracing::warn!(error = %e, "template collection task failed"),
        }
        let runtime = runner.runtime.clone();
        match tokio::task::spawn_blocking(move || runtime.collect_template_images()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not remove the images of unused template versions"),
            Err(e) => tracing::warn!(error = %e, "template image collection task failed"),
        }
    }
}

/// Every half second: removes the sandboxes whose agent died (so one is reported gone
/// within about a second: a client's exec and `/connection` no longer wait for a dead
/// address) and kills those past their time to live; every [`POOL_REFRESH_EVERY`]
/// ticks, pushes the pooled sandboxes' deadlines on.
async fn reap_expired(runner: Arc<Runner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tick.tick().await;
        ticks = ticks.wrapping_add(1);
        let r = runner.clone();
        let refresh_pool = ticks.is_multiple_of(POOL_REFRESH_EVERY);
        let pass = tokio::task::spawn_blocking(move || {
            r.remove_dead();
            if refresh_pool {
                r.refresh_pool_deadlines();
            }
        });
        if let Err(e) = pass.await {
            tracing::warn!(error = %e, "dead-sandbox pass failed");
        }
        // Killing blocks (runc, iptables); looking does not, and usually finds nothing.
        let now = now_ms();
        if runner.expired(now).is_empty() {
            continue;
        }
        let r = runner.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || r.kill_expired(now)).await {
            tracing::warn!(error = %e, "time-to-live pass failed");
        }
    }
}
