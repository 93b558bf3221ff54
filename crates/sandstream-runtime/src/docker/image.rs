//! Template directories as Docker images: each is imported once (a tar of the directory
//! streamed to the Engine's import endpoint, the equivalent of `docker import`) and
//! tagged after what identifies that version of the template, then reused.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{USER_ID, WORKDIR, api_err};
use crate::error::{Error, Result};

/// The repository every template image is tagged in.
pub(crate) const REPOSITORY: &str = "sandstream-template";
/// Label on every template image, so they can be told from other images.
pub(crate) const LABEL: &str = "sandstream.template";
/// Label on every template image: the template directory it was imported from (its
/// path's bytes in hex), so an image whose template is gone or changed can be found.
pub(crate) const SOURCE_LABEL: &str = "sandstream.template.source";
/// The default template's completion marker (see template.rs).
const MARKER: &str = ".sandstream-template";

/// The image tag of `template`: a hash of its path and of its marker's contents and
/// mtime (a template rebuilt in place gets a new marker), or, for a directory without a
/// marker, of the directory's own mtime. Templates are immutable once used; a changed
/// template must change its marker (or be a new directory) to be imported again.
pub(crate) fn tag_for(template: &Path) -> Result<String> {
    let mut h = Sha256::new();
    h.update(template.as_os_str().as_encoded_bytes());
    h.update([0]);
    let marker = template.join(MARKER);
    let stamp = match std::fs::metadata(&marker) {
        Ok(meta) => {
            h.update(std::fs::read(&marker).map_err(|e| Error::io(format!("read {}", marker.display()), e))?);
            meta
        }
        Err(_) => std::fs::metadata(template).map_err(|_| Error::TemplateMissing(template.to_path_buf()))?,
    };
    h.update(stamp.mtime().to_le_bytes());
    h.update(stamp.mtime_nsec().to_le_bytes());
    Ok(format!("{REPOSITORY}:{}", &hex::encode(h.finalize())[..16]))
}

/// The template directory an image's [`SOURCE_LABEL`] names.
pub(crate) fn source_of(label: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(hex::decode(label).ok()?)))
}

/// Paths the image must have whatever the template holds, added after the template's
/// own entries: the sandbox user's home, owned by it (the agent runs
/// commands there), and a world-writable sticky /tmp under the tmpfs.
fn prepare_overlay(dir: &Path) -> Result<()> {
    let mk = |p: PathBuf, mode: u32| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&p)
            .map_err(|e| Error::io(format!("create {}", p.display()), e))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", p.display()), e))?;
        Ok::<_, Error>(p)
    };
    let home = mk(dir.join(WORKDIR.trim_start_matches('/')), 0o755)?;
    nix::unistd::chown(&home, Some(nix::unistd::Uid::from_raw(USER_ID)), Some(nix::unistd::Gid::from_raw(USER_ID)))
        .map_err(|e| Error::io(format!("chown {}", home.display()), e.into()))?;
    mk(dir.join("tmp"), 0o1777)?;
    mk(dir.join(".sandstream"), 0o755)?;
    Ok(())
}

/// Imports `template` as `tag`. `scratch` is a fresh directory for the extra entries.
pub(crate) async fn import(docker: &Docker, template: &Path, tag: &str, scratch: &Path) -> Result<()> {
    prepare_overlay(scratch)?;
    let extra = [WORKDIR, "/tmp", "/.sandstream"].map(|p| format!(".{p}"));
    // Docker refuses an archive naming a path twice: the extra entries come first, and
    // the template's own versions of them (and what is under them) are left out. GNU
    // tar's --no-recursion and --exclude apply to the names after them.
    let mut tar = tokio::process::Command::new("tar")
        .args(["--create", "--file=-", "--numeric-owner", "--one-file-system", "--directory"])
        .arg(scratch)
        .arg("--no-recursion")
        .args(&extra)
        .args(["--recursion", "--anchored"])
        .args(extra.iter().map(|p| format!("--exclude={p}")))
        .arg("--directory")
        .arg(template)
        .arg(".")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Command { command: "tar".into(), detail: e.to_string() })?;
    let stdout =
        tar.stdout.take().ok_or_else(|| Error::Command { command: "tar".into(), detail: "no stdout".into() })?;
    let body = futures_util::stream::unfold(stdout, |mut out| async move {
        let mut buf = vec![0u8; 256 << 10];
        match out.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), out))
            }
            Err(e) => Some((Err(e), out)),
        }
    });
    let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(version.into()),
        changes: vec![
            format!("LABEL {LABEL}=1"),
            format!("LABEL {SOURCE_LABEL}={}", hex::encode(template.as_os_str().as_encoded_bytes())),
        ],
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    let mut failure = None;
    while let Some(item) = progress.next().await {
        if let Err(e) = item {
            failure = Some(api_err(&format!("docker import {} as {tag}", template.display()))(e));
            break;
        }
    }
    drop(progress);
    let out =
        tar.wait_with_output().await.map_err(|e| Error::Command { command: "tar".into(), detail: e.to_string() })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !out.status.success() {
        // What was imported may be cut short: do not keep it.
        let _ = docker.remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
        return Err(Error::Command {
            command: format!("tar --create --directory {}", template.display()),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_marker() {
        let dir = tempfile_dir();
        let a = tag_for(&dir).expect("tag");
        assert!(a.starts_with("sandstream-template:") && a.len() == REPOSITORY.len() + 17, "{a}");
        assert_eq!(tag_for(&dir).expect("tag"), a, "stable");
        std::fs::write(dir.join(MARKER), "v1").expect("marker");
        let b = tag_for(&dir).expect("tag");
        assert_ne!(a, b);
        std::fs::write(dir.join(MARKER), "v2").expect("marker");
        assert_ne!(tag_for(&dir).expect("tag"), b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).expect("random");
        let d = std::env::temp_dir().join(format!("ss-tag-{}", hex::encode(r)));
        std::fs::create_dir(&d).expect("mkdir");
        d
    }
}
