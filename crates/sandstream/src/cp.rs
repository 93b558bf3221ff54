//! `sandstream cp`: copies a file or a directory between this machine and a sandbox,
//! docker-cp style, over the server's files routes (API.md, "Files"): an upload walks
//! the local tree and PUTs each file, a download lists each directory and GETs each file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use crate::rest::{ApiFlags, Rest, server_message};

#[derive(Args)]
pub(crate) struct CpArgs {
    /// What to copy: a local path, or SANDBOX:PATH (a path in the sandbox; a relative one
    /// is relative to the user's home).
    src: String,
    /// Where to: SANDBOX:PATH when SRC is local, a local path when SRC is in a sandbox.
    dest: String,
    #[command(flatten)]
    api: ApiFlags,
    /// Who reads and writes in the sandbox: `root`, a user name or a uid (default: the
    /// sandbox's user). Files written are theirs.
    #[arg(long, short)]
    user: Option<String>,
}

/// One end of a copy.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Local(PathBuf),
    Remote { sandbox: String, path: String },
}

/// `SANDBOX:PATH` when the part before the first `:` is a name without `/` (so
/// `./a:b` and `/tmp/a:b` stay local paths), a local path otherwise.
fn parse_end(s: &str) -> End {
    match s.split_once(':') {
        Some((sandbox, path)) if !sandbox.is_empty() && !sandbox.contains('/') && !sandbox.starts_with('.') => {
            End::Remote { sandbox: sandbox.to_string(), path: if path.is_empty() { ".".into() } else { path.into() } }
        }
        _ => End::Local(PathBuf::from(s)),
    }
}

/// A name from a listing, as one local path component: nothing that climbs out of the
/// directory it is written into (the sandbox is not trusted).
fn safe_name(name: &str) -> anyhow::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("the sandbox listed an entry named {name:?}, which cannot be copied");
    }
    Ok(name)
}

/// The last component of a sandbox path (`/a/b/` is `b`).
fn remote_base(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}

fn join_remote(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// "copy the directory's contents, not the directory" (docker's `SRC/.`).
fn contents_only(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// The files routes of one sandbox.
struct Files {
    rest: Rest,
    sandbox: String,
    user: Option<String>,
}

/// Totals of a copy.
#[derive(Default)]
struct Copied {
    files: u64,
    bytes: u64,
}

impl Files {
    fn url(&self, route: &str, params: &[(&str, &str)]) -> anyhow::Result<reqwest::Url> {
        let mut url =
            reqwest::Url::parse(&format!("{}/api/v1/sandboxes/{}/files{route}", self.rest.base, self.sandbox))
                .with_context(|| format!("server address {}", self.rest.base))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(user) = &self.user {
                q.append_pair("user", user);
            }
        }
        Ok(url)
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
        self.rest.send(req).await.with_context(|| what.to_string())
    }

    /// The entry at `path`, or `None` when there is none.
    async fn stat(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let req = self.rest.http.get(self.url("/stat", &[("path", path)])?).bearer_auth(&self.rest.key);
        let resp = req.send().await.with_context(|| format!("reach {}", self.rest.base))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            bail!("stat {}:{path}: {status}: {}", self.sandbox, server_message(&text));
        }
        Ok(Some(resp.json().await.context("stat answer")?))
    }

    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let req = self.rest.http.get(self.url("/list", &[("path", path), ("depth", "1")])?);
        let listing: Value = self.send(req, &format!("list {}:{path}", self.sandbox)).await?.json().await?;
        Ok(listing["entries"].as_array().cloned().unwrap_or_default())
    }

    async fn mkdir(&self, path: &str, mode: u32) -> anyhow::Result<()> {
        let body = serde_json::json!({"path": path, "user": self.user, "mode": format!("{mode:o}")});
        let req = self.rest.http.post(self.rest.url(&format!("/sandboxes/{}/files/mkdir", self.sandbox))).json(&body);
        self.send(req, &format!("mkdir {}:{path}", self.sandbox)).await?;
        Ok(())
    }

    /// PUTs local file `from` as `to`, streamed, with its permission bits.
    async fn upload(&self, from: &Path, to: &str, copied: &mut Copied) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = tokio::fs::File::open(from).await.with_context(|| format!("open {}", from.display()))?;
        let meta = file.metadata().await.with_context(|| format!("stat {}", from.display()))?;
        let mode = format!("{:o}", meta.permissions().mode() & 0o7777);
        let req = self
            .rest
            .http
            .put(self.url("", &[("path", to), ("mode", &mode)])?)
            .header(reqwest::header::CONTENT_LENGTH, meta.len())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::from(file));
        self.send(req, &format!("write {}:{to}", self.sandbox)).await?;
        copied.files += 1;
        copied.bytes += meta.len();
        Ok(())
    }

    /// GETs `from` into local file `to`: into a temporary file beside it first, renamed
    /// over `to` once every byte arrived, so a failed download leaves `to` as it was.
    async fn download(&self, from: &str, to: &Path, mode: u32, copied: &mut Copied) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        use tokio::io::AsyncWriteExt;
        let mut resp = self
            .send(self.rest.http.get(self.url("", &[("path", from)])?), &format!("read {}:{from}", self.sandbox))
            .await?;
        let dir = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.sandstream-cp-{}", std::process::id()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await
            .with_context(|| format!("create {}", tmp.display()))?;
        let result: anyhow::Result<u64> = async {
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.with_context(|| format!("read {}:{from}", self.sandbox))? {
                file.write_all(&chunk).await.with_context(|| format!("write {}", tmp.display()))?;
                n += chunk.len() as u64;
            }
            file.flush().await?;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777)).await?;
            tokio::fs::rename(&tmp, to).await.with_context(|| format!("rename to {}", to.display()))?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) => {
                copied.files += 1;
                copied.bytes += n;
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }
}

pub(crate) async fn cp(a: CpArgs) -> anyhow::Result<()> {
    let rest = Rest::new(&a.api)?;
    let (local, sandbox, path, up) = match (parse_end(&a.src), parse_end(&a.dest)) {
        (End::Local(l), End::Remote { sandbox, path }) => (l, sandbox, path, true),
        (End::Remote { sandbox, path }, End::Local(l)) => (l, sandbox, path, false),
        (End::Local(_), End::Local(_)) => {
            bail!("neither {} nor {} names a sandbox: one must be SANDBOX:PATH", a.src, a.dest)
        }
        (End::Remote { .. }, End::Remote { .. }) => {
            bail!("both ends are in sandboxes: one of them must be a local path")
        }
    };
    let files = Files { rest, sandbox, user: a.user };
    // A missing or foreign sandbox is said as such, not as a missing path.
    let sb = files.rest.http.get(files.rest.url(&format!("/sandboxes/{}", files.sandbox)));
    files.send(sb, &format!("sandbox {}", files.sandbox)).await?;
    let mut copied = Copied::default();
    if up {
        upload(&files, &a.src, &local, &path, &mut copied).await?;
        eprintln!("copied {} file(s), {} bytes, to {}:{path}", copied.files, copied.bytes, files.sandbox);
    } else {
        download(&files, &path, &local, &mut copied).await?;
        eprintln!("copied {} file(s), {} bytes, to {}", copied.files, copied.bytes, local.display());
    }
    Ok(())
}

async fn upload(files: &Files, src: &str, local: &Path, dest: &str, copied: &mut Copied) -> anyhow::Result<()> {
    let meta = std::fs::metadata(local).with_context(|| src.to_string())?;
    let there = files.stat(dest).await?;
    let dest_is_dir = there.as_ref().is_some_and(|e| e["type"] == "dir");
    let base = local.file_name().map(|n| n.to_string_lossy().into_owned());
    if meta.is_file() {
        let target = match base {
            Some(name) if dest_is_dir || dest.ends_with('/') => join_remote(dest, &name),
            _ => dest.to_string(),
        };
        return files.upload(local, &target, copied).await;
    }
    if !meta.is_dir() {
        bail!("{src} is neither a file nor a directory");
    }
    let target = match (&there, base) {
        (Some(e), _) if e["type"] != "dir" => {
            bail!("{}:{dest} is not a directory; cannot copy directory {src} onto it", files.sandbox)
        }
        (Some(_), Some(name)) if !contents_only(src) => join_remote(dest, &name),
        _ => dest.to_string(),
    };
    upload_dir(files, local, target, copied).await
}

/// Creates `to` and copies the tree under local directory `from` into it, directory by
/// directory (no recursion, so a deep tree cannot exhaust the stack).
async fn upload_dir(files: &Files, from: &Path, to: String, copied: &mut Copied) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = vec![(from.to_path_buf(), to)];
    while let Some((local, remote)) = dirs.pop() {
        let mode = std::fs::metadata(&local).with_context(|| format!("{}", local.display()))?.permissions().mode();
        files.mkdir(&remote, mode & 0o7777).await?;
        let mut entries = std::fs::read_dir(&local)
            .with_context(|| format!("read {}", local.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("read {}", local.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let kind = e.file_type().with_context(|| format!("{}", path.display()))?;
            if kind.is_dir() {
                dirs.push((path, join_remote(&remote, &name)));
            } else if kind.is_file() {
                files.upload(&path, &join_remote(&remote, &name), copied).await?;
            } else {
                eprintln!("skipped {}: only files and directories are copied into a sandbox", path.display());
            }
        }
    }
    Ok(())
}

async fn download(files: &Files, src: &str, local: &Path, copied: &mut Copied) -> anyhow::Result<()> {
    let Some(entry) = files.stat(src).await? else {
        bail!("{}:{src}: no such file or directory", files.sandbox);
    };
    let local_is_dir = local.is_dir();
    let name = remote_base(src);
    let mode = entry["mode"].as_u64().unwrap_or(0o644) as u32;
    if entry["type"] != "dir" {
        let target = if local_is_dir || local.to_string_lossy().ends_with('/') {
            local.join(safe_name(name)?)
        } else {
            local.to_path_buf()
        };
        return files.download(src, &target, mode, copied).await;
    }
    let target = if local.exists() && !local_is_dir {
        bail!("{} is not a directory; cannot copy directory {}:{src} onto it", local.display(), files.sandbox);
    } else if local_is_dir && !contents_only(src) {
        local.join(safe_name(name)?)
    } else {
        local.to_path_buf()
    };
    let mut dirs = vec![(src.to_string(), target, mode)];
    while let Some((remote, local, mode)) = dirs.pop() {
        make_local_dir(&local, mode)?;
        for e in files.list(&remote).await? {
            let name = safe_name(e["name"].as_str().unwrap_or_default())?.to_string();
            let path = join_remote(&remote, &name);
            let to = local.join(&name);
            let mode = e["mode"].as_u64().unwrap_or(0o644) as u32;
            match e["type"].as_str() {
                Some("dir") => dirs.push((path, to, mode)),
                Some("file") => files.download(&path, &to, mode, copied).await?,
                Some("symlink") => {
                    let target = e["symlinkTarget"].as_str().unwrap_or_default();
                    std::os::unix::fs::symlink(target, &to).with_context(|| format!("symlink {}", to.display()))?;
                }
                _ => eprintln!("skipped {}:{path}: not a file, directory or symlink", files.sandbox),
            }
        }
    }
    Ok(())
}

/// Creates local directory `dir` (when it is not one already) with `mode`.
fn make_local_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(mode & 0o7777 | 0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() && !dir.is_symlink() => {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7777 | 0o700));
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("create directory {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_is_remote_when_it_starts_with_a_sandbox_name() {
        let remote = |s: &str, p: &str| End::Remote { sandbox: s.into(), path: p.into() };
        assert_eq!(parse_end("sb-0123456789:/tmp/x"), remote("sb-0123456789", "/tmp/x"));
        assert_eq!(parse_end("sb-0123456789:rel/x"), remote("sb-0123456789", "rel/x"));
        assert_eq!(parse_end("sb-0123456789:"), remote("sb-0123456789", "."));
        for local in ["/tmp/a:b", "./a:b", "a/b:c", "plain", ":x", ".hidden:x"] {
            assert_eq!(parse_end(local), End::Local(local.into()), "{local}");
        }
    }

    #[test]
    fn listed_names_never_leave_their_directory() {
        for bad in ["", ".", "..", "a/b", "../etc", "x\0y"] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_name("..a").expect("a name"), "..a");
        assert_eq!(remote_base("/a/b/"), "b");
        assert_eq!(join_remote("/a/", "b"), "/a/b");
        assert!(contents_only("/a/.") && contents_only(".") && !contents_only("/a/.b"));
    }
}
