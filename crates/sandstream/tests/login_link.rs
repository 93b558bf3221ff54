//! `sandstream login-link` against a real `sandstream server` (no runner: a link needs
//! none): the link it prints signs a browser in once, as the key that asked; a tenant's
//! key cannot ask for another key's link, the admin key can.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

#[path = "support/api.rs"]
mod api;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sandstream() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandstream"));
    for var in ["SANDSTREAM_API_KEY", "SANDSTREAM_API_URL", "SANDSTREAM_DATA_DIR", "SANDSTREAM_RUNNER_SECRET"] {
        c.env_remove(var);
    }
    c
}

/// `sandstream server` on a free port with its state in `dir`: the process and its URL.
fn start_server(dir: &std::path::Path) -> (Proc, String) {
    let mut child = sandstream()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Sandstream ready at ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let proc = Proc(child);
    let url = rx.recv_timeout(Duration::from_secs(120)).expect("the server became ready");
    (proc, url)
}

fn login_link(args: &[&str]) -> Output {
    sandstream().arg("login-link").args(args).output().expect("run login-link")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Opens `url` as a browser does, without following the redirect: the status, the
/// session cookie set (`name=value`), and the body.
async fn open(url: &str) -> (u16, Option<String>, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let resp = http.get(url).send().await.expect("GET the link");
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(String::from);
    (status, cookie, resp.text().await.expect("body"))
}

/// What `cookie` may do: `POST /api/v1/keys` is 201 for an admin's session, 403 for a
/// tenant's, 401 for none.
async fn session_kind(url: &str, cookie: &str) -> u16 {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/keys"))
        .header("cookie", cookie)
        .json(&json!({"name": "probe"}))
        .send()
        .await
        .expect("POST /api/v1/keys");
    resp.status().as_u16()
}

#[tokio::test]
async fn login_link_prints_a_one_time_link_for_the_key_that_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, url) = start_server(dir.path());
    let admin = std::fs::read_to_string(dir.path().join("admin-key")).expect("admin-key").trim().to_string();
    let (status, made) =
        api::call(&admin, reqwest::Method::POST, format!("{url}/api/v1/keys"), Some(json!({"name": "cli"}))).await;
    assert_eq!(status, 201, "{made}");
    let (tenant, tenant_id) = (made["key"].as_str().expect("key"), made["id"].as_str().expect("id"));

    // A tenant's own link: stdout is the link alone, on the address given.
    let out = login_link(&["--server", &format!("{url}/"), "--api-key", tenant]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let link = text(&out.stdout);
    let link = link.strip_suffix('\n').expect("one line");
    assert!(link.starts_with(&format!("{url}/?token=")) && !link.contains('\n'), "{link}");
    assert!(text(&out.stderr).contains(&format!("A one-time link for key {tenant_id}")), "{}", text(&out.stderr));
    let (status, cookie, _) = open(link).await;
    assert_eq!(status, 303);
    assert_eq!(session_kind(&url, &cookie.expect("a session cookie")).await, 403, "signed in as the tenant");
    let (status, cookie, page) = open(link).await;
    assert_eq!((status, cookie), (401, None), "the link worked twice");
    assert!(page.contains("sandstream login-link"), "{page}");

    // A tenant cannot ask for another key's link.
    let admin_link = login_link(&["--server", &url, "--api-key", tenant, "--key-id", "key_0123456789abcdef"]);
    assert!(!admin_link.status.success());
    assert_eq!(
        text(&admin_link.stderr).trim(),
        "sandstream: 403 Forbidden: only an admin key can make a login link for another key"
    );
    assert!(admin_link.stdout.is_empty());

    // The admin key (read from the data dir when none is given) can, and the link is the tenant's.
    let out = sandstream()
        .args(["login-link", "--server", &url, "--key-id", tenant_id, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, cookie, _) = open(text(&out.stdout).trim()).await;
    assert_eq!(status, 303);
    assert_eq!(session_kind(&url, &cookie.expect("a session cookie")).await, 403, "the link is the tenant's");
    // Positive control: the admin's own link is an admin's session.
    let out = login_link(&["--url", &url, "--api-key", &admin]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, cookie, _) = open(text(&out.stdout).trim()).await;
    assert_eq!(session_kind(&url, &cookie.expect("a session cookie")).await, 201);

    // A wrong key and no key at all are refused in words.
    let out = login_link(&["--server", &url, "--api-key", "ss_wrong"]);
    assert_eq!(text(&out.stderr).trim(), "sandstream: 401 Unauthorized: unknown or revoked API key");
    let out = login_link(&["--server", &url, "--data-dir", "/nonexistent-sandstream"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no --api-key, no SANDSTREAM_API_KEY and no /nonexistent-sandstream/admin-key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn login_link_help_names_its_flags() {
    let out = sandstream().args(["login-link", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for want in
        ["--server", "[default: http://127.0.0.1:3000]", "--api-key", "SANDSTREAM_API_KEY", "--key-id", "24 hours"]
    {
        assert!(help.contains(want), "login-link --help lacks {want}: {help}");
    }
    let out = sandstream().arg("--help").output().expect("run");
    assert!(text(&out.stdout).contains("login-link"), "{}", text(&out.stdout));
}
