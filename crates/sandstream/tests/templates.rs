//! Templates end to end, as a user meets them: `sandstream template add` imports a busybox
//! root filesystem tarball (a marker file in it), `sandstream up` offers it, a sandbox
//! created over REST with that template has the marker's exact bytes; an unknown template
//! is refused with a 400 naming the ones there are; `--replace` and `template rm` leave
//! running sandboxes on the version they started with. The same on the `oci` backend and
//! on the `docker` one (which imports the template directory as an image). Needs root,
//! runc, iproute2, iptables, busybox-static, the static agent (SANDSTREAM_STATIC_AGENT),
//! the default template (built into SANDSTREAM_CACHE_DIR on first use) and, for the docker
//! test, a Docker Engine (SANDSTREAM_DOCKER_SOCKET); scripts/test.sh provides them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{EventKind, ExecuteRequest, OutputEncoding};
use serde_json::{Value, json};

#[path = "support/api.rs"]
mod api;
#[path = "../../sandstream-runtime/tests/support/lock.rs"]
mod lock;

const KEY: &str = "ss_templates_e2e_admin_key";

fn sandstream() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandstream"));
    c.env_remove("SANDSTREAM_AGENT_TOKEN").env_remove("SANDSTREAM_AGENT_TOKEN_FILE");
    c
}

fn template_cmd(cache: &Path, args: &[&str]) -> Output {
    sandstream().arg("template").args(args).arg("--cache-dir").arg(cache).output().expect("run sandstream template")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A busybox root filesystem with `/marker` holding `marker`, as a gzip tarball.
fn busybox_tarball(dir: &Path, name: &str, marker: &[u8]) -> PathBuf {
    let root = dir.join(name);
    for d in ["bin", "etc", "home", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    let out = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .output()
        .expect("chroot");
    assert!(out.status.success(), "busybox --install: {out:?}");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
        .expect("passwd");
    std::fs::write(root.join("marker"), marker).expect("marker");
    let tar = dir.join(format!("{name}.tar.gz"));
    let out = Command::new("tar").arg("-C").arg(&root).args(["--numeric-owner", "-czf"]).arg(&tar).arg(".").output();
    assert!(out.expect("tar").status.success());
    tar
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills the sandboxes it holds through the server when dropped (declared after the
/// server, so dropped before it), so a failed assertion leaves none running.
struct Sandboxes {
    base: String,
    ids: Vec<String>,
}

impl Drop for Sandboxes {
    fn drop(&mut self) {
        let (base, ids) = (self.base.clone(), std::mem::take(&mut self.ids));
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                for id in ids {
                    let _ = api(reqwest::Method::DELETE, format!("{base}/api/v1/sandboxes/{id}"), None).await;
                }
            });
        })
        .join();
    }
}

/// Removes the template (and its unused versions) from the shared cache when dropped.
struct TemplateName<'a> {
    cache: &'a Path,
    name: String,
}

impl Drop for TemplateName<'_> {
    fn drop(&mut self) {
        let _ = template_cmd(self.cache, &["rm", &self.name]);
        let _ = sandstream_runtime::collect_template_garbage(self.cache);
    }
}

async fn api(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    api::call(KEY, method, url, body).await
}

/// `cat /marker` in the sandbox `id`, through its agent: stdout's exact bytes.
async fn marker_of(base: &str, id: &str) -> Vec<u8> {
    let (status, conn) = api(reqwest::Method::GET, format!("{base}/api/v1/sandboxes/{id}/connection"), None).await;
    assert_eq!(status, 200, "{conn}");
    let (host, port, token) = (
        conn["host"].as_str().expect("host"),
        conn["port"].as_u64().expect("port"),
        conn["token"].as_str().expect("token"),
    );
    let mut client = ExecServiceClient::connect(format!("http://{host}:{port}")).await.expect("connect to the agent");
    let mut req = tonic::Request::new(ExecuteRequest {
        command: "cat /marker".into(),
        encoding: OutputEncoding::Bytes as i32,
        timeout: 10_000,
        ..Default::default()
    });
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let mut stream = client.execute(req).await.expect("execute").into_inner();
    let (mut out, mut exit) = (Vec::new(), None);
    while let Some(m) = stream.message().await.expect("stream") {
        if m.kind == EventKind::Output as i32 && m.channel == 0 {
            out.extend_from_slice(&m.data);
        } else if m.kind == EventKind::End as i32 {
            exit = Some(m.exit_code);
        }
    }
    assert_eq!(exit, Some(0), "cat /marker failed; stdout {:?}", text(&out));
    out
}

async fn create(base: &str, template: &str) -> (u16, Value) {
    api(reqwest::Method::POST, format!("{base}/api/v1/sandboxes"), Some(json!({"template": template}))).await
}

async fn templates(base: &str) -> Value {
    let (status, list) = api(reqwest::Method::GET, format!("{base}/api/v1/templates"), None).await;
    assert_eq!(status, 200, "{list}");
    list
}

fn has(list: &Value, name: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|t| t["name"] == name && t["runners"].as_array().is_some_and(|r| r.len() == 1)))
}

#[test]
fn template_help_and_refusals_are_clear() {
    let out = sandstream().args(["template", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for want in ["add", "list", "rm", "--cache-dir", "[default: /var/cache/sandstream]"] {
        assert!(help.contains(want), "template --help lacks {want}: {help}");
    }
    let out = sandstream().args(["template", "add", "--help"]).output().expect("run");
    let help = text(&out.stdout);
    for want in ["<NAME>", "<PATH>", "--replace", "docker export", "/bin/sh"] {
        assert!(help.contains(want), "template add --help lacks {want}: {help}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let refused = [
        (vec!["add", "default", "/nonexistent"], "`default` is reserved"),
        (vec!["add", "a b", "/nonexistent"], "is not valid"),
        (vec!["add", "fine", "/nonexistent/rootfs.tar"], "/nonexistent/rootfs.tar"),
        (vec!["rm", "nothing-here"], "template nothing-here does not exist; templates here: default"),
    ];
    for (args, says) in refused {
        let out = template_cmd(&cache, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    let out = template_cmd(&cache, &["list"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "NAME  VERSION  IMPORTED\n", "an empty cache lists nothing");
}

fn static_agent() -> Option<String> {
    match std::env::var("SANDSTREAM_STATIC_AGENT") {
        Ok(a) => Some(a),
        Err(_) if std::env::var_os("CI").is_some() => panic!("SANDSTREAM_STATIC_AGENT is not set; run scripts/test.sh"),
        Err(_) => {
            eprintln!("skipped: SANDSTREAM_STATIC_AGENT is not set (scripts/test.sh sets it)");
            None
        }
    }
}

fn docker_socket() -> PathBuf {
    std::env::var_os("SANDSTREAM_DOCKER_SOCKET").map_or_else(|| "/var/run/docker.sock".into(), PathBuf::from)
}

/// One call to the Docker Engine API: the status line and the body.
fn docker_call(method: &str, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(docker_socket()).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// Whether a Docker Engine answers `GET /_ping` on its socket.
fn docker_answers() -> bool {
    docker_call("GET", "/_ping").is_some_and(|(status, _)| status.contains(" 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_tarball_serves_sandboxes_through_up_and_rest() {
    let Some(agent) = static_agent() else { return };
    flow(&agent, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_tarball_serves_sandboxes_on_the_docker_backend() {
    let Some(agent) = static_agent() else { return };
    if !docker_answers() {
        let msg = format!("no Docker Engine answers on {} (run scripts/docker.sh)", docker_socket().display());
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        return eprintln!("skipped: {msg}");
    }
    let socket = docker_socket();
    flow(&agent, &["--backend", "docker", "--docker-socket", socket.to_str().expect("utf-8")]).await;
}

/// The whole story, with `up` started with `backend_args`.
async fn flow(agent: &str, backend_args: &[&str]) {
    let docker = !backend_args.is_empty();
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let _lock = lock::sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    // The cache `up` uses anyway (the default template is built there once per machine);
    // this test's template has a name of its own and is removed at the end.
    let cache: PathBuf =
        std::env::var_os("SANDSTREAM_CACHE_DIR").map_or_else(|| "/var/cache/sandstream".into(), PathBuf::from);
    let name = format!("e2e-{}", random_hex(5));
    let guard = TemplateName { cache: &cache, name: name.clone() };
    // Not UTF-8 and with a NUL: the bytes must arrive exactly.
    let first: Vec<u8> = [b"first ".as_slice(), name.as_bytes(), b"\n\xff\xfe\x00end"].concat();
    let second: Vec<u8> = [b"second ".as_slice(), name.as_bytes(), b"\n"].concat();
    let v1 = busybox_tarball(dir.path(), "v1", &first);
    let v2 = busybox_tarball(dir.path(), "v2", &second);

    let out = template_cmd(&cache, &["add", &name, v1.to_str().expect("utf-8")]);
    assert!(out.status.success(), "template add: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("imported template {name}")), "{}", text(&out.stdout));
    let out = template_cmd(&cache, &["add", &name, v1.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a second add of the same name must fail");
    assert!(text(&out.stderr).contains("already exists (replace it with --replace)"), "{}", text(&out.stderr));
    let out = template_cmd(&cache, &["list"]);
    assert!(out.status.success() && text(&out.stdout).lines().any(|l| l.starts_with(&format!("{name} "))), "{out:?}");

    let mut up = sandstream()
        .args(["up", "--listen", "127.0.0.1:0", "--agent-binary", agent])
        .args(backend_args)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--cache-dir")
        .arg(&cache)
        .env("SANDSTREAM_API_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn up");
    let stdout = up.stdout.take().expect("stdout");
    let _up = Proc(up);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Sandstream ready at ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(900)).expect("sandstream up became ready");
    let mut sandboxes = Sandboxes { base: base.clone(), ids: Vec::new() };

    // The runner reported the template when it registered.
    let list = templates(&base).await;
    assert!(has(&list, &name) && has(&list, "default"), "{list}");

    let (status, sb) = create(&base, &name).await;
    assert_eq!(status, 201, "{sb}");
    assert_eq!(sb["template"], name.as_str());
    let old = sb["id"].as_str().expect("id").to_string();
    sandboxes.ids.push(old.clone());
    assert_eq!(marker_of(&base, &old).await, first);

    // An unknown template: 400, naming the templates there are; nothing created.
    let (status, err) = create(&base, "e2e-no-such-template").await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "bad_request", "{err}");
    let message = err["message"].as_str().expect("message");
    assert!(message.contains("\"e2e-no-such-template\" does not exist"), "{message}");
    assert!(
        message.contains("available templates: ") && message.contains("default") && message.contains(&name),
        "{message}"
    );
    let (_, mine) = api(reqwest::Method::GET, format!("{base}/api/v1/sandboxes"), None).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "a refused create left something: {mine}");

    // --replace: new sandboxes get the new version; the running one keeps its own.
    let out = template_cmd(&cache, &["add", &name, v2.to_str().expect("utf-8"), "--replace"]);
    assert!(out.status.success(), "template add --replace: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("replaced version"), "{}", text(&out.stdout));
    let (status, sb) = create(&base, &name).await;
    assert_eq!(status, 201, "{sb}");
    let new = sb["id"].as_str().expect("id").to_string();
    sandboxes.ids.push(new.clone());
    assert_eq!(marker_of(&base, &new).await, second);
    assert_eq!(marker_of(&base, &old).await, first, "the first sandbox still runs on the first version");

    // rm: the server stops offering it within a heartbeat; running sandboxes go on (on
    // the oci backend, on the version directories, kept while mounted; the docker
    // backend's containers run on images of their own).
    let out = template_cmd(&cache, &["rm", &name]);
    assert!(out.status.success(), "template rm: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).contains("sandboxes still run on it"), !docker, "{}", text(&out.stdout));
    let start = Instant::now();
    while has(&templates(&base).await, &name) {
        assert!(start.elapsed() < Duration::from_secs(30), "the runner still reports {name}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, err) = create(&base, &name).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(marker_of(&base, &old).await, first);
    assert_eq!(marker_of(&base, &new).await, second);

    // The docker backend imported each version as an image: removed with the test.
    let images: Vec<String> = if docker {
        sandboxes
            .ids
            .iter()
            .filter_map(|id| docker_call("GET", &format!("/containers/{id}/json")))
            .filter_map(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .filter_map(|c| c["Config"]["Image"].as_str().map(str::to_string))
            .collect()
    } else {
        Vec::new()
    };
    for id in std::mem::take(&mut sandboxes.ids) {
        let (status, _) = api(reqwest::Method::DELETE, format!("{base}/api/v1/sandboxes/{id}"), None).await;
        assert_eq!(status, 204);
    }
    if docker {
        assert_eq!(images.len(), 2, "two versions, two images: {images:?}");
        assert_ne!(images[0], images[1], "a replaced template is a new image");
        for image in images {
            assert!(image.starts_with("sandstream-template:"), "{image}");
            let (status, body) = docker_call("DELETE", &format!("/images/{image}")).expect("docker rmi");
            assert!(status.contains(" 200"), "docker rmi {image}: {status} {body}");
        }
    }
    // With its sandboxes gone, both versions are deleted.
    let gc = sandstream_runtime::collect_template_garbage(&cache).expect("collect");
    assert!(gc.in_use.iter().all(|v| !v.starts_with(&format!("{name}@"))), "{gc:?}");
    let left: Vec<String> = std::fs::read_dir(cache.join("templates/.versions"))
        .expect("versions")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}@")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(guard);
}
