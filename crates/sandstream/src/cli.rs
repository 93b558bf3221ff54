//! Subcommands and their flags, and what each one runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sandstream_runner::RunnerConfig;
use sandstream_server::{Server, ServerConfig};

/// Sandstream: a self-hosted code sandbox that streams every byte live.
#[derive(Parser)]
#[command(name = "sandstream", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the server and one local runner in one process: API, socket.io and the web
    /// page on --listen, state in --data-dir.
    Up(UpArgs),
    /// Run the server alone; runners join with `sandstream runner --server URL`.
    Server(ServerArgs),
    /// Run a runner that offers this host's sandboxes to a server.
    Runner(RunnerArgs),
    /// Create, list and revoke tenant API keys (needs the admin key).
    Keys(crate::client::KeysArgs),
    /// Print a one-time link that signs a browser in to the playground as an API key.
    ///
    /// Asks a running server (--server) with the key in SANDSTREAM_API_KEY or --api-key
    /// for a link for that key; an admin key may ask for another key's (--key-id). The
    /// link works once, within 24 hours; stdout has the link alone.
    LoginLink(crate::client::LoginLinkArgs),
    /// Copy files and directories between this machine and a sandbox.
    ///
    /// `sandstream cp LOCAL SANDBOX:PATH` uploads, `sandstream cp SANDBOX:PATH LOCAL`
    /// downloads, as `docker cp` does: a file copied onto an existing directory goes
    /// inside it under its own name; a directory copied onto an existing directory goes
    /// inside it too (end SRC with `/.` to copy only its contents) and otherwise becomes
    /// DEST. Permission bits are kept; symlinks in a downloaded tree are recreated as
    /// symlinks, those in an uploaded one are skipped. Uses the server in
    /// SANDSTREAM_API_URL (or --server) with the key in SANDSTREAM_API_KEY (or
    /// --api-key) that owns the sandbox. Exits non-zero on any failure.
    Cp(crate::cp::CpArgs),
    /// Create, list and kill sandboxes of a server (SANDSTREAM_API_URL or --server) with
    /// the key in SANDSTREAM_API_KEY (or --api-key). Exits 1 on any failure, with one line
    /// on stderr saying why.
    Sandbox(crate::sandbox_cmd::SandboxArgs),
    /// Run a command in a sandbox: `sandstream exec ID -- CMD…`.
    ///
    /// The command's stdout and stderr come out on this process's stdout and stderr,
    /// byte for byte as it writes them, and this process exits with its exit code: 128+N
    /// when signal N ended it, 124 when --timeout did, 125 when sandstream could not run
    /// it (an unknown sandbox, a wrong key, no server, an unknown user or cwd) or lost it,
    /// with one line on stderr saying why. Ctrl-C (SIGINT) and SIGTERM are sent to the
    /// command's process group and sandstream waits for its end; a second one kills it,
    /// a third stops waiting.
    /// When this process's stdout is closed (`| head`), the command gets SIGPIPE. A
    /// broken connection is resumed without losing or repeating output.
    Exec(crate::exec::ExecArgs),
    /// Open an interactive terminal in a sandbox: `sandstream shell ID [-- CMD…]`.
    ///
    /// Runs the user's login shell (or CMD) on a pseudo-terminal in the sandbox, of this
    /// terminal's size (80x24 when there is none), with TERM from this environment. When
    /// stdin is a terminal it goes into raw mode, so every key (Ctrl-C, Ctrl-D, arrows)
    /// reaches the sandbox as its bytes, and its settings come back when sandstream
    /// exits, however it exits. Otherwise stdin's bytes are typed as they come, and its
    /// end closes nothing: the session lasts until the shell exits (type `exit`).
    /// Output comes out on stdout unchanged; a resized terminal (SIGWINCH) resizes the
    /// sandbox's; a broken connection is resumed without losing or repeating output.
    /// Exits with the shell's exit code (128+N when signal N ended it), or 125 when
    /// sandstream could not start it (an unknown sandbox, a wrong key, no server, an
    /// unknown user or cwd) or lost it, with one line on stderr saying why. SIGTERM and
    /// SIGHUP hang the shell up and exit 128+N.
    Shell(crate::shell::ShellArgs),
    /// Log in to a sandbox with OpenSSH: `sandstream ssh ID [-- CMD…]`.
    ///
    /// Asks the server for a password that works for this sandbox alone (for --timeout
    /// seconds, as --user) and runs `ssh -p PORT USER@HOST [CMD…]` with it, given through
    /// SSH_ASKPASS: an interactive login shell on a terminal, or CMD with its exit code.
    /// Needs the OpenSSH client (`ssh`, or --ssh). Exits with ssh's exit code: the remote
    /// command's, or 255 when SSH failed; 1 when no credential could be made.
    Ssh(crate::ssh::SshArgs),
    /// Add, list and remove this host's sandbox templates: root filesystems imported from
    /// a directory or a tarball (such as `docker export` writes).
    Template(TemplateArgs),
    /// Run the in-sandbox agent (gRPC ExecService). The runner starts it inside each
    /// sandbox from the static `sandstream-agent` binary; this is the same program.
    Agent(sandstream_agent::AgentArgs),
}

#[derive(Args)]
pub(crate) struct ServerArgs {
    /// Address for the API, socket.io and the web page.
    #[arg(long, env = "SANDSTREAM_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where the SQLite database, the admin key and the runner secret live.
    #[arg(long, env = "SANDSTREAM_DATA_DIR", default_value = "/var/lib/sandstream")]
    data_dir: PathBuf,
    /// The built web page (default: web/dist next to the binary's checkout).
    #[arg(long, env = "SANDSTREAM_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Largest code + files + stdin one exec request may carry, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_code_bytes: usize,
    /// Most bytes of output one exec execution keeps, install and run together: past it
    /// the output is cut with a note on stderr and the program is stopped (status
    /// `error`). It bounds what one execution stores in the database and sends to
    /// browsers.
    #[arg(long, default_value_t = 16 << 20)]
    max_output_bytes: u64,
    /// Largest file one upload (`PUT /api/v1/sandboxes/{id}/files`, `sandstream cp`) may
    /// write, in bytes; past it the upload is refused with 413 and nothing is written.
    #[arg(long, env = "SANDSTREAM_MAX_FILE_UPLOAD_BYTES", default_value_t = sandstream_server::DEFAULT_MAX_FILE_UPLOAD_BYTES)]
    max_file_upload_bytes: u64,
    /// A runner silent for this many ms has its sandboxes marked lost.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_timeout_ms: u64,
    /// Most memory one sandbox may ask for, in MiB (default: this host's memory).
    #[arg(long)]
    max_sandbox_memory_mb: Option<u32>,
    /// Most CPUs one sandbox may ask for (default: this host's CPUs).
    #[arg(long)]
    max_sandbox_cpu: Option<f64>,
    /// Longest a sandbox may live from its creation, however its timeout is extended, in ms.
    #[arg(long, default_value_t = 24 * 3600 * 1000)]
    max_sandbox_lifetime_ms: u64,
    /// Most sandboxes one API key has at once; past it creates answer 429.
    #[arg(long, default_value_t = 50)]
    max_sandboxes_per_key: u32,
    /// Most memory one API key's sandboxes have together, in MiB (default: this host's memory).
    #[arg(long)]
    max_memory_mb_per_key: Option<u64>,
    /// Most disk one API key's sandboxes have together (their `diskMb`; a create without it
    /// counts as the runners' default disk), in MiB; past it creates answer 429. The default
    /// is fifty sandboxes of the default 10 GiB disk.
    #[arg(long, default_value_t = sandstream_server::DEFAULT_DISK_MB_PER_KEY)]
    max_disk_mb_per_key: u64,
    /// Requests per second one API key may make, sustained (0: no limit); past it, 429.
    #[arg(long, default_value_t = 100.0)]
    requests_per_second: f64,
    /// Requests one API key may make at once above its rate.
    #[arg(long, default_value_t = 400.0)]
    request_burst: f64,
    /// Wrong API keys one address may send in a minute; past them it gets 429 until the
    /// minute ends.
    #[arg(long, default_value_t = 20)]
    auth_failures_per_minute: u32,
    /// Days a finished execution (with its output) and an ended sandbox are kept in the
    /// database; then a GET of it answers 404 (0: no age limit). Running executions and
    /// live sandboxes are never deleted.
    #[arg(long, default_value_t = sandstream_server::DEFAULT_RETENTION_DAYS)]
    retention_days: u32,
    /// Most MiB the database may use: past it the oldest finished executions and their
    /// output are deleted first, whatever their age, and the space goes back to the file
    /// system (0: no size limit). Checked every 10 s.
    #[arg(long, default_value_t = sandstream_server::DEFAULT_RETENTION_MB)]
    retention_mb: u64,
}

impl ServerArgs {
    fn limits(&self) -> sandstream_server::Limits {
        let mut l = sandstream_server::Limits::default();
        if let Some(mb) = self.max_sandbox_memory_mb {
            l.max_memory_mb = mb;
        }
        if let Some(cpu) = self.max_sandbox_cpu {
            l.max_cpu = cpu;
        }
        if let Some(mb) = self.max_memory_mb_per_key {
            l.max_memory_mb_per_key = mb;
        }
        l.max_disk_mb_per_key = self.max_disk_mb_per_key;
        l.max_lifetime_ms = self.max_sandbox_lifetime_ms;
        l.max_sandboxes_per_key = self.max_sandboxes_per_key;
        l.requests_per_sec = self.requests_per_second;
        l.burst = self.request_burst;
        l.auth_failures = self.auth_failures_per_minute;
        l
    }
}

#[derive(Args)]
pub(crate) struct HostArgs {
    /// Address clients use to reach this host's sandboxes (default: its first
    /// non-loopback IPv4 address).
    #[arg(long, env = "SANDSTREAM_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// Most sandboxes on this host.
    #[arg(long, default_value_t = 100)]
    capacity: u32,
    /// Templates: the default one is built here on first use; `sandstream template add`
    /// imports others here.
    #[arg(long, env = "SANDSTREAM_CACHE_DIR", default_value = "/var/cache/sandstream")]
    cache_dir: PathBuf,
    /// The static agent (scripts/build-agent.sh) bound into every sandbox.
    #[arg(long, env = "SANDSTREAM_AGENT_BINARY")]
    agent_binary: Option<PathBuf>,
    /// OCI runtime binary: runc, crun, runsc or youki (the oci backend).
    #[arg(long, default_value = "runc")]
    oci_runtime: PathBuf,
    /// Leave the host's cgroup filesystem as it is. By default the oci backend remounts
    /// it with `favordynmods` when it starts: host-wide, it makes creates 5-25 ms faster
    /// and forks and exits dearer, and recent kernels keep it until reboot.
    #[arg(long, env = "SANDSTREAM_NO_CGROUP_FAVORDYNMODS")]
    no_cgroup_favordynmods: bool,
    /// What runs sandboxes: `oci` (an OCI runtime binary, driven directly) or `docker`
    /// (a Docker Engine through its API; scripts/docker.sh starts one).
    #[arg(long, env = "SANDSTREAM_BACKEND", value_enum, default_value_t = BackendArg::Oci)]
    backend: BackendArg,
    /// The Docker Engine's API socket (the docker backend).
    #[arg(long, env = "SANDSTREAM_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    /// Ready sandboxes to keep for the default template (default limits, no env), so
    /// creating one takes milliseconds.
    #[arg(long, env = "SANDSTREAM_WARM_POOL", default_value_t = 0)]
    warm_pool: u32,
    /// Private networks sandboxes may reach, comma-separated CIDRs (e.g. an internal
    /// package mirror's). By default RFC 1918's networks, 100.64.0.0/10 and this host's
    /// LAN are closed to them (the host's resolvers stay open on port 53).
    #[arg(long, env = "SANDSTREAM_ALLOW_PRIVATE_EGRESS", value_delimiter = ',')]
    allow_private_egress: Vec<sandstream_runtime::Cidr>,
    /// A sandbox's disk in MiB when its create does not say (`diskMb`): what its writable
    /// layer (home, installed packages, command output) may take on this host, with 64
    /// inodes per MiB. Pooled sandboxes have it.
    #[arg(long, env = "SANDSTREAM_DEFAULT_DISK_MB", default_value_t = sandstream_runner_protocol::DEFAULT_DISK_MB)]
    default_disk_mb: u32,
    /// The largest `diskMb` a create may ask for on this host. Disks are sparse files in
    /// the state dir, so their sum may exceed the host's free space: keep this and the
    /// capacity such that it does not, or accept ENOSPC when the host fills.
    #[arg(long, env = "SANDSTREAM_MAX_DISK_MB", default_value_t = sandstream_runner_protocol::DEFAULT_MAX_DISK_MB)]
    max_disk_mb: u32,
    /// Flows one sandbox may hold open on this host (entries in its connection-tracking
    /// table, which every sandbox and the host share); new ones past it are refused. It
    /// may open as many at once and a quarter as many a minute after, so connections it
    /// closed count too. Keep it times the sandboxes this host runs below the table's
    /// size (/proc/sys/net/netfilter/nf_conntrack_max).
    #[arg(
        long,
        env = "SANDSTREAM_MAX_FLOWS_PER_SANDBOX",
        default_value_t = sandstream_runtime::DEFAULT_MAX_FLOWS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(sandstream_runtime::MAX_FLOWS_LIMIT))
    )]
    max_flows_per_sandbox: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BackendArg {
    Oci,
    Docker,
}

#[derive(Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Args)]
pub(crate) struct RunnerArgs {
    /// The server, e.g. http://10.0.0.1:3000.
    #[arg(long, env = "SANDSTREAM_SERVER")]
    server: String,
    /// The server's runner secret (its DATA_DIR/runner-secret).
    #[arg(long, env = "SANDSTREAM_RUNNER_SECRET", hide_env_values = true)]
    secret: String,
    /// Address of this runner's control API, which the server calls.
    #[arg(long, default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// Name shown in the server's runner list (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Sandbox bundles and the runner's id.
    #[arg(long, env = "SANDSTREAM_RUNNER_STATE_DIR", default_value = "/var/lib/sandstream-runner")]
    state_dir: PathBuf,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Args)]
pub(crate) struct TemplateArgs {
    /// The template cache of this host's runner (its --cache-dir).
    #[arg(long, env = "SANDSTREAM_CACHE_DIR", default_value = "/var/cache/sandstream", global = true)]
    cache_dir: PathBuf,
    #[command(subcommand)]
    action: TemplateAction,
}

#[derive(Subcommand)]
pub(crate) enum TemplateAction {
    /// Import a directory or a tarball (.tar, .tar.gz) as template NAME.
    ///
    /// The root filesystem needs /bin/sh; a tarball from `docker export CONTAINER` works
    /// as it is. Device nodes and setuid/setgid bits are left out; members that would
    /// write outside the template (`..`, through symlinks) refuse the import. Runners
    /// using this cache offer the template from their next heartbeat.
    Add {
        /// 1 to 64 letters, digits, `_` or `-` (`default` is the built-in template).
        name: String,
        /// A directory or a tarball.
        path: PathBuf,
        /// Replace an existing template of that name; sandboxes running on it keep the old
        /// version until they end.
        #[arg(long)]
        replace: bool,
    },
    /// List the templates in the cache.
    List,
    /// Remove template NAME.
    ///
    /// Sandboxes running on it keep working; its files are deleted once they have ended.
    Rm { name: String },
}

pub(crate) async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(a) => up(a).await,
        Command::Server(a) => server(a).await,
        Command::Runner(a) => runner(a).await,
        Command::Keys(a) => crate::client::keys(a).await,
        Command::LoginLink(a) => crate::client::login_link(a).await,
        Command::Cp(a) => crate::cp::cp(a).await,
        Command::Sandbox(a) => crate::sandbox_cmd::sandbox(a).await,
        Command::Ssh(a) => crate::ssh::run(a).await,
        Command::Template(a) => tokio::task::spawn_blocking(move || template(a)).await?,
        Command::Agent(_) | Command::Exec(_) | Command::Shell(_) => unreachable!("handled before the runtime starts"),
    }
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(Path::to_path_buf)
}

/// `web/dist` of the checkout a `target/{debug,release}/sandstream` was built in, or
/// `web` next to an installed binary.
fn default_web_dir() -> Option<PathBuf> {
    let dir = exe_dir()?;
    [dir.join("../../web/dist"), dir.join("web")].into_iter().find(|d| d.join("index.html").is_file())
}

fn default_agent_binary() -> Option<PathBuf> {
    let dir = exe_dir()?;
    [dir.join("sandstream-agent"), dir.join("../x86_64-unknown-linux-gnu/release/sandstream-agent")]
        .into_iter()
        .find(|p| p.is_file())
}

fn server_config(a: &ServerArgs) -> ServerConfig {
    let mut cfg = ServerConfig::new(a.listen, a.data_dir.clone());
    cfg.web_dir = a.web_dir.clone().or_else(default_web_dir);
    cfg.api_key = std::env::var("SANDSTREAM_API_KEY").ok().filter(|k| !k.is_empty());
    cfg.runner_secret = std::env::var("SANDSTREAM_RUNNER_SECRET").ok().filter(|k| !k.is_empty());
    cfg.max_code_bytes = a.max_code_bytes;
    cfg.max_output_bytes = a.max_output_bytes;
    cfg.max_file_upload_bytes = a.max_file_upload_bytes;
    cfg.heartbeat_timeout = Duration::from_millis(a.heartbeat_timeout_ms);
    cfg.limits = a.limits();
    cfg.retention = sandstream_server::Retention::from_flags(a.retention_days, a.retention_mb);
    cfg
}

/// The host flags that can be checked alone, before anything is bound or built.
fn check_host_args(host: &HostArgs) -> anyhow::Result<()> {
    sandstream_runner_protocol::check_disk_mb(host.default_disk_mb, host.max_disk_mb)
        .map_err(|e| anyhow::anyhow!("--default-disk-mb must be within --max-disk-mb: {e}"))
}

fn runner_config(
    host: HostArgs,
    server_url: String,
    secret: String,
    listen: SocketAddr,
    name: Option<String>,
    state_dir: PathBuf,
) -> anyhow::Result<RunnerConfig> {
    check_host_args(&host)?;
    let agent_binary = host
        .agent_binary
        .or_else(default_agent_binary)
        .context("no static agent found: build it with scripts/build-agent.sh or pass --agent-binary")?;
    let advertise_host = host
        .advertise_host
        .or_else(sandstream_runner::default_advertise_host)
        .context("this host has no non-loopback IPv4 address; pass --advertise-host")?;
    let name = name
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "runner".into());
    Ok(RunnerConfig {
        server_url,
        secret,
        name,
        listen,
        advertise_host,
        capacity: host.capacity,
        state_dir,
        cache_dir: host.cache_dir,
        agent_binary,
        oci_runtime: host.oci_runtime,
        cgroup_favordynmods: !host.no_cgroup_favordynmods,
        backend: match host.backend {
            BackendArg::Oci => sandstream_runner::Backend::Oci,
            BackendArg::Docker => sandstream_runner::Backend::Docker { socket: host.docker_socket },
        },
        heartbeat_interval: Duration::from_secs(2),
        warm_pool: host.warm_pool,
        private_egress: host.allow_private_egress,
        default_disk_mb: host.default_disk_mb,
        max_disk_mb: host.max_disk_mb,
        max_flows_per_sandbox: host.max_flows_per_sandbox,
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

fn announce(server: &Server) -> anyhow::Result<()> {
    if let Some(key) = &server.created_admin_key {
        println!("Admin API key (shown once; also in the data dir's admin-key file): {key}");
    }
    println!("Open the playground: {}", server.login_url()?);
    Ok(())
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    check_host_args(&a.host)?;
    let mut cfg = server_config(&a.server);
    // The local runner's default disk is what a create without `diskMb` gets.
    cfg.limits.default_disk_mb = a.host.default_disk_mb;
    let data_dir = cfg.data_dir.clone();
    let server = Server::bind(cfg, true).await?;
    let base = server.base_url().to_string();
    let runner_cfg = runner_config(
        a.host,
        base.clone(),
        server.runner_secret().to_string(),
        ([127, 0, 0, 1], 0).into(),
        Some("local".into()),
        data_dir.join("runner"),
    )?;
    let ready = server.ready_probe();
    let serving = tokio::spawn(server_task(server));
    tracing::info!("starting the local runner (the first start builds the default template, which takes minutes)");
    let handle = sandstream_runner::start(runner_cfg).await?;
    while !ready() {
        if serving.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !serving.is_finished() {
        println!("Sandstream ready at {base}");
    }
    let result = serving.await.context("server task")?;
    let runner = handle.runner.clone();
    tokio::task::spawn_blocking(move || runner.drain_pool()).await?;
    result
}

async fn server_task(server: Server) -> anyhow::Result<()> {
    announce(&server)?;
    server.serve(shutdown_signal()).await
}

async fn server(a: ServerArgs) -> anyhow::Result<()> {
    let server = Server::bind(server_config(&a), false).await?;
    let base = server.base_url().to_string();
    announce(&server)?;
    println!("Runner secret for `sandstream runner --secret`: in {}", a.data_dir.join("runner-secret").display());
    println!("Sandstream ready at {base}");
    server.serve(shutdown_signal()).await
}

async fn runner(a: RunnerArgs) -> anyhow::Result<()> {
    let cfg = runner_config(a.host, a.server, a.secret, a.listen, a.name, a.state_dir)?;
    let handle = sandstream_runner::start(cfg).await?;
    println!("Runner ready; control API at {}", handle.control_url);
    shutdown_signal().await;
    let runner = handle.runner.clone();
    tokio::task::spawn_blocking(move || runner.drain_pool()).await?;
    Ok(())
}

fn template(a: TemplateArgs) -> anyhow::Result<()> {
    let cache = &a.cache_dir;
    match a.action {
        TemplateAction::Add { name, path, replace } => {
            let options = sandstream_runtime::ImportOptions { replace };
            if sandstream_runtime::is_valid_template_name(&name) && name != sandstream_runtime::DEFAULT_TEMPLATE {
                eprintln!("importing {} as template {name}", path.display());
            }
            let r = sandstream_runtime::import_template(cache, &name, &path, &options)?;
            println!(
                "imported template {name} (version {}): {} entries, {:.1} MiB",
                r.version,
                r.entries,
                r.bytes as f64 / f64::from(1 << 20)
            );
            if !r.skipped_devices.is_empty() {
                println!(
                    "  left out {} device node(s) (a sandbox gets its own /dev): {}",
                    r.skipped_devices.len(),
                    sample(&r.skipped_devices)
                );
            }
            if !r.stripped_setid.is_empty() {
                println!(
                    "  dropped the setuid/setgid bit of {} file(s) (they do nothing in a sandbox): {}",
                    r.stripped_setid.len(),
                    sample(&r.stripped_setid)
                );
            }
            if let Some(old) = r.replaced {
                println!("  replaced version {old}; sandboxes running on it keep it until they end");
            }
            println!("Runners with --cache-dir {} offer it from their next heartbeat.", cache.display());
        }
        TemplateAction::List => {
            let mut rows = Vec::new();
            if sandstream_runtime::default_template_dir(cache).is_some() {
                rows.push(("default".to_string(), "built in".to_string(), "-".to_string()));
            }
            for t in sandstream_runtime::list_templates(cache)? {
                rows.push((t.name, t.version, t.imported_at.map_or_else(|| "-".into(), utc)));
            }
            let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
            let v = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(7);
            println!("{:w$}  {:v$}  IMPORTED", "NAME", "VERSION");
            for (name, version, at) in rows {
                println!("{name:w$}  {version:v$}  {at}");
            }
        }
        TemplateAction::Rm { name } => {
            let r = sandstream_runtime::remove_template(cache, &name)?;
            if r.still_in_use {
                println!("removed template {name}; sandboxes still run on it, and its files go once they end");
            } else {
                println!("removed template {name}");
            }
        }
    }
    Ok(())
}

/// The first few of `items`, for a one-line summary.
fn sample(items: &[String]) -> String {
    let mut s = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(", …");
    }
    s
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_795_465_179), "2026-11-23 20:19:39 UTC");
    }
}
