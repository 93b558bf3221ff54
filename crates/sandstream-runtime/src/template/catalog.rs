//! Templates users import from a directory or a tarball, by name, in
//! `CACHE/templates/`:
//!
//! ```text
//! templates/                  0700: host users cannot reach the files in it
//!   NAME -> .versions/NAME@V  the name: a symlink, swapped atomically on --replace
//!   .versions/NAME@V/         one immutable version, with its ready mark
//!   .versions/NAME@V.building being imported (with NAME@V.lock held by the importer)
//!   .versions/NAME@V.trash    unused, being deleted
//!   .catalog.lock             held exclusively to change names and to collect garbage
//!   .use.lock                 held shared from resolving a name until the sandbox's
//!                             overlay is mounted (`TemplateLease`)
//! ```
//!
//! A sandbox's overlay takes a version directory (never the name) as its lower layer, so
//! replacing or removing a name leaves running sandboxes on the version they started
//! with. A version no name points to is deleted once no mount namespace on the host has
//! it mounted and no lease is held (`collect_template_garbage`).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use super::extract::{self, Writer};
use super::{READY_MARK, TemplateError};

const DIR: &str = "templates";
const VERSIONS: &str = ".versions";
const CATALOG_LOCK: &str = ".catalog.lock";
const USE_LOCK: &str = ".use.lock";
const BUILDING: &str = ".building";
const TRASH: &str = ".trash";

/// The built-in template's name and the name rule are the runner protocol's.
pub use sandstream_runner_protocol::{DEFAULT_TEMPLATE, is_valid_template_name};

fn check_name(name: &str) -> Result<(), TemplateError> {
    if !is_valid_template_name(name) {
        return Err(TemplateError::InvalidName(name.to_string()));
    }
    if name == DEFAULT_TEMPLATE {
        return Err(TemplateError::Reserved);
    }
    Ok(())
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Replace a template of the same name (running sandboxes keep the old version).
    pub replace: bool,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub name: String,
    pub version: String,
    /// The new version's directory.
    pub path: PathBuf,
    /// The version this one replaced, if any.
    pub replaced: Option<String>,
    /// Files, directories and links written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes and sockets left out.
    pub skipped_devices: Vec<String>,
    /// Files whose setuid or setgid bit was dropped.
    pub stripped_setid: Vec<String>,
}

/// One imported template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    pub name: String,
    /// `legacy` for a directory placed at `templates/NAME` by hand.
    pub version: String,
    /// The directory sandboxes get as their lower layer.
    pub path: PathBuf,
    /// Seconds since the epoch.
    pub imported_at: Option<u64>,
}

/// What a removal did.
#[derive(Debug, Clone)]
pub struct RemoveReport {
    pub version: String,
    /// Running sandboxes still use the removed version; its files go once they end.
    pub still_in_use: bool,
}

/// What a garbage collection did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Versions (and interrupted imports) deleted.
    pub removed: Vec<String>,
    /// Unnamed versions kept because a sandbox uses them.
    pub in_use: Vec<String>,
}

/// A template resolved to its version directory, held so that the version is not
/// collected before the sandbox made from it has mounted it. Drop it once `create`
/// returned.
#[derive(Debug)]
pub struct TemplateLease {
    path: PathBuf,
    _lock: Flock<std::fs::File>,
}

impl TemplateLease {
    /// The version directory (absolute), for `SandboxSpec::template`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TemplateError {
    let context = context.into();
    move |source| TemplateError::Io { context, source }
}

fn templates_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join(DIR)
}

/// Creates `templates/` and `.versions/`, both 0700: templates keep their owners and
/// modes, so a host user whose uid owns files in a template must not be able to reach
/// (and change) them.
fn ensure_layout(cache_dir: &Path) -> Result<PathBuf, TemplateError> {
    let dir = templates_dir(cache_dir);
    for d in [dir.clone(), dir.join(VERSIONS)] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(io(format!("create {}", d.display())))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("chmod {}", d.display())))?;
    }
    Ok(dir)
}

fn lock(path: &Path, how: FlockArg) -> Result<Flock<std::fs::File>, TemplateError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    Flock::lock(f, how)
        .map_err(|(_, e)| TemplateError::Io { context: format!("lock {}", path.display()), source: e.into() })
}

/// Tries `how` (a non-blocking lock) until `patience` runs out.
fn lock_within(path: &Path, how: FlockArg, patience: Duration) -> Result<Option<Flock<std::fs::File>>, TemplateError> {
    let start = Instant::now();
    loop {
        match lock(path, how) {
            Ok(l) => return Ok(Some(l)),
            Err(TemplateError::Io { source, .. }) if source.raw_os_error() == Some(nix::libc::EWOULDBLOCK) => {}
            Err(e) => return Err(e),
        }
        if start.elapsed() >= patience {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_version() -> Result<String, TemplateError> {
    let random =
        crate::sandbox::random_hex(3).map_err(|e| io("random version id")(std::io::Error::other(e.to_string())))?;
    Ok(format!("{}-{random}", now_secs()))
}

/// What a name points to now.
enum Current {
    /// `templates/NAME -> .versions/NAME@V`.
    Version { version: String, path: PathBuf },
    /// A directory with a ready mark at `templates/NAME` itself, placed by hand.
    Legacy(PathBuf),
}

impl Current {
    fn path(&self) -> &Path {
        match self {
            Current::Version { path, .. } | Current::Legacy(path) => path,
        }
    }

    fn version(&self) -> &str {
        match self {
            Current::Version { version, .. } => version,
            Current::Legacy(_) => "legacy",
        }
    }
}

fn resolve(dir: &Path, name: &str) -> Result<Option<Current>, TemplateError> {
    let at = dir.join(name);
    let md = match std::fs::symlink_metadata(&at) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("stat {}", at.display()))(e)),
    };
    if md.is_symlink() {
        let target = std::fs::read_link(&at).map_err(io(format!("readlink {}", at.display())))?;
        // Only links this module made count: `.versions/NAME@VERSION`.
        let mut parts = target.components();
        let ok_prefix = parts.next().is_some_and(|c| c.as_os_str() == VERSIONS);
        let leaf = parts.next().and_then(|c| c.as_os_str().to_str()).map(str::to_string);
        let Some(leaf) = leaf.filter(|_| ok_prefix && parts.next().is_none()) else { return Ok(None) };
        let Some(version) = leaf.strip_prefix(&format!("{name}@")).map(str::to_string) else { return Ok(None) };
        let path = dir.join(VERSIONS).join(&leaf);
        return Ok(path.join(READY_MARK).is_file().then_some(Current::Version { version, path }));
    }
    Ok((md.is_dir() && at.join(READY_MARK).is_file()).then_some(Current::Legacy(at)))
}

fn names_in(dir: &Path) -> Result<Vec<String>, TemplateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("read {}", dir.display()))(e)),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_valid_template_name(n) && n != DEFAULT_TEMPLATE)
        .collect();
    names.sort();
    Ok(names)
}

fn not_found(cache_dir: &Path, name: &str) -> TemplateError {
    let names = names_in(&templates_dir(cache_dir)).unwrap_or_default();
    let available = std::iter::once(DEFAULT_TEMPLATE.to_string()).chain(names).collect::<Vec<_>>().join(", ");
    TemplateError::NotFound { name: name.to_string(), available }
}

fn read_mark(path: &Path) -> (Option<String>, Option<u64>) {
    let text = std::fs::read_to_string(path.join(READY_MARK)).unwrap_or_default();
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
    (field("version"), field("imported").and_then(|v| v.parse().ok()))
}

/// Imports the root filesystem at `source` (a directory, or a `.tar`/`.tar.gz` tarball
/// such as `docker export` writes) as template `name` under `cache_dir`. The files are
/// written into a `.building` directory, checked (an executable `/bin/sh`; see
/// `extract.rs` for what a tarball is never allowed to do), synced and only then
/// published: a half-imported template is never visible, and a failed import leaves
/// nothing. An existing name is an error unless `options.replace`; sandboxes running on
/// the replaced version keep it.
pub fn import_template(
    cache_dir: &Path,
    name: &str,
    source: &Path,
    options: &ImportOptions,
) -> Result<ImportReport, TemplateError> {
    check_name(name)?;
    let src_md = std::fs::metadata(source).map_err(io(format!("{}", source.display())))?;
    if !src_md.is_dir() && !src_md.is_file() {
        return Err(TemplateError::Format {
            origin: source.to_path_buf(),
            detail: "neither a directory nor a tarball".into(),
        });
    }
    let dir = ensure_layout(cache_dir)?;
    if !options.replace && resolve(&dir, name)?.is_some() {
        return Err(TemplateError::Exists(name.to_string()));
    }
    let version = new_version()?;
    let leaf = format!("{name}@{version}");
    let versions = dir.join(VERSIONS);
    // Held until the import ends, so a collection knows this `.building` is not
    // abandoned.
    let build_lock_path = versions.join(format!("{leaf}.lock"));
    let build_lock = lock(&build_lock_path, FlockArg::LockExclusive)?;
    let building = versions.join(format!("{leaf}{BUILDING}"));
    let result = build(&building, name, &version, source, src_md.is_dir(), &dir)
        .and_then(|w| publish(&dir, name, &leaf, &building, options.replace).map(|replaced| (w, replaced)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    let _ = std::fs::remove_file(&build_lock_path);
    drop(build_lock);
    let (stats, replaced) = result?;
    if let Err(e) = collect_template_garbage(cache_dir) {
        tracing::warn!(error = %e, "could not remove unused template versions");
    }
    Ok(ImportReport {
        name: name.to_string(),
        version,
        path: versions.join(&leaf),
        replaced,
        entries: stats.entries,
        bytes: stats.bytes,
        skipped_devices: stats.skipped,
        stripped_setid: stats.stripped,
    })
}

fn build(
    building: &Path,
    name: &str,
    version: &str,
    source: &Path,
    is_dir: bool,
    store: &Path,
) -> Result<extract::Stats, TemplateError> {
    std::fs::DirBuilder::new().mode(0o755).create(building).map_err(io(format!("create {}", building.display())))?;
    std::fs::set_permissions(building, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("chmod {}", building.display())))?;
    let mut w = Writer::new(building, source)?;
    if is_dir {
        let skip = std::fs::metadata(store).ok().map(|m| (m.dev(), m.ino()));
        extract::from_dir(&mut w, source, skip)?;
    } else {
        extract::from_tarball(&mut w, source)?;
    }
    w.check_rootfs().map_err(|why| TemplateError::NotARootfs { origin: source.to_path_buf(), why })?;
    let mark = format!("name={name}\nversion={version}\nimported={}\n", now_secs());
    let attrs = extract::Attrs { mode: 0o644, uid: 0, gid: 0, mtime: now_secs() as i64 };
    w.put(READY_MARK, &[READY_MARK.into()], extract::Node::File(&mut mark.as_bytes()), attrs)?;
    w.sync()?;
    Ok(std::mem::take(&mut w.stats))
}

/// Under the catalog lock: moves the built version into place and points `name` at it.
/// Returns the version it replaced.
fn publish(
    dir: &Path,
    name: &str,
    leaf: &str,
    building: &Path,
    replace: bool,
) -> Result<Option<String>, TemplateError> {
    let _catalog = lock(&dir.join(CATALOG_LOCK), FlockArg::LockExclusive)?;
    let current = resolve(dir, name)?;
    if current.is_some() && !replace {
        return Err(TemplateError::Exists(name.to_string()));
    }
    let versions = dir.join(VERSIONS);
    let target = versions.join(leaf);
    std::fs::rename(building, &target).map_err(io(format!("move the template to {}", target.display())))?;
    if let Some(Current::Legacy(path)) = &current {
        // A symlink cannot be renamed over a directory: the hand-placed one becomes an
        // ordinary unnamed version first.
        let kept = versions.join(format!("{name}@legacy-{}", new_version()?));
        std::fs::rename(path, &kept).map_err(io(format!("move {}", path.display())))?;
    }
    let tmp = dir.join(format!(".{leaf}.link"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new(VERSIONS).join(leaf), &tmp).map_err(io(format!("link {}", tmp.display())))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(io(format!("name the template {name}")))?;
    sync_dir(dir);
    Ok(current.map(|c| c.version().to_string()))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The imported templates under `cache_dir`, by name (the built-in `default` is not one).
pub fn list_templates(cache_dir: &Path) -> Result<Vec<TemplateInfo>, TemplateError> {
    let dir = templates_dir(cache_dir);
    let mut out = Vec::new();
    for name in names_in(&dir)? {
        if let Some(current) = resolve(&dir, &name)? {
            let (_, imported_at) = read_mark(current.path());
            out.push(TemplateInfo {
                name,
                version: current.version().to_string(),
                path: current.path().to_path_buf(),
                imported_at,
            });
        }
    }
    Ok(out)
}

/// Removes the name `name`. Sandboxes running on it keep working; its files are deleted
/// once none uses them (now, if none does).
pub fn remove_template(cache_dir: &Path, name: &str) -> Result<RemoveReport, TemplateError> {
    check_name(name)?;
    let dir = templates_dir(cache_dir);
    if !dir.is_dir() {
        return Err(not_found(cache_dir, name));
    }
    let removed = {
        let _catalog = lock(&dir.join(CATALOG_LOCK), FlockArg::LockExclusive)?;
        let Some(current) = resolve(&dir, name)? else { return Err(not_found(cache_dir, name)) };
        match &current {
            Current::Version { .. } => {
                std::fs::remove_file(dir.join(name)).map_err(io(format!("remove {}", dir.join(name).display())))?
            }
            Current::Legacy(path) => {
                let kept = dir.join(VERSIONS).join(format!("{name}@legacy-{}", new_version()?));
                std::fs::rename(path, &kept).map_err(io(format!("move {}", path.display())))?;
            }
        }
        sync_dir(&dir);
        current
    };
    let gc = collect_template_garbage(cache_dir)?;
    let leaf_prefix = format!("{name}@");
    Ok(RemoveReport {
        version: removed.version().to_string(),
        still_in_use: gc.in_use.iter().any(|v| v.starts_with(&leaf_prefix)),
    })
}

/// Resolves `name` to its current version and holds it (see [`TemplateLease`]).
pub fn lease_template(cache_dir: &Path, name: &str) -> Result<TemplateLease, TemplateError> {
    check_name(name)?;
    let dir = templates_dir(cache_dir);
    if !dir.is_dir() {
        return Err(not_found(cache_dir, name));
    }
    let use_lock = lock(&dir.join(USE_LOCK), FlockArg::LockShared)?;
    let Some(current) = resolve(&dir, name)? else { return Err(not_found(cache_dir, name)) };
    if let Current::Legacy(path) = &current {
        // Placed by hand, never checked by an import: checked now (nothing is written).
        Writer::new(path, path)?
            .check_rootfs()
            .map_err(|why| TemplateError::NotARootfs { origin: path.clone(), why })?;
    }
    // Absolute and without symlinks, as the mount table will show it.
    let path = std::fs::canonicalize(current.path()).map_err(io(format!("resolve {}", current.path().display())))?;
    Ok(TemplateLease { path, _lock: use_lock })
}

/// Deletes versions no name points to and no sandbox uses (mounted in any mount
/// namespace on this host, or leased), and imports that were interrupted. A version in
/// use is kept for a later collection; `sandstream runner` collects every minute.
pub fn collect_template_garbage(cache_dir: &Path) -> Result<GcReport, TemplateError> {
    let dir = templates_dir(cache_dir);
    let versions = dir.join(VERSIONS);
    if !versions.is_dir() {
        return Ok(GcReport::default());
    }
    let mut report = GcReport::default();
    {
        let _catalog = lock(&dir.join(CATALOG_LOCK), FlockArg::LockExclusive)?;
        let named: Vec<PathBuf> = names_in(&dir)?
            .iter()
            .filter_map(|n| resolve(&dir, n).ok().flatten())
            .map(|c| c.path().to_path_buf())
            .collect();
        let mut unnamed = Vec::new();
        let entries = std::fs::read_dir(&versions).map_err(io(format!("read {}", versions.display())))?;
        for e in entries.flatten() {
            let leaf = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if let Some(base) = leaf.strip_suffix(BUILDING) {
                // Abandoned when its importer no longer holds its lock.
                let lock_path = versions.join(format!("{base}.lock"));
                if let Some(_held) = lock_within(&lock_path, FlockArg::LockExclusiveNonblock, Duration::ZERO)? {
                    let trash = versions.join(format!("{base}{TRASH}"));
                    if std::fs::rename(&path, &trash).is_ok() {
                        report.removed.push(leaf.clone());
                    }
                    let _ = std::fs::remove_file(&lock_path);
                }
            } else if !leaf.ends_with(TRASH)
                && !leaf.ends_with(".lock")
                && !super::mapped::is_copies_dir(&leaf)
                && e.file_type().is_ok_and(|t| t.is_dir())
                && !named.iter().any(|n| n == &path)
            {
                unnamed.push((leaf, path));
            }
        }
        let copies = [&versions, &dir].into_iter().any(|d| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_str().is_some_and(super::mapped::is_copies_dir))
        });
        if !unnamed.is_empty() || copies {
            // No lease may be between resolving a name and mounting it while versions
            // are judged by the mount table; past a short wait, collect another time.
            match lock_within(&dir.join(USE_LOCK), FlockArg::LockExclusiveNonblock, Duration::from_secs(2))? {
                None => report.in_use.extend(unnamed.into_iter().map(|(leaf, _)| leaf)),
                Some(_uses) => {
                    let paths: Vec<PathBuf> =
                        unnamed.iter().map(|(_, p)| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
                    let mounted = super::mounts::mounted_anywhere(&paths);
                    for ((leaf, path), busy) in unnamed.into_iter().zip(mounted) {
                        if busy {
                            report.in_use.push(leaf);
                            continue;
                        }
                        let trash = versions.join(format!("{leaf}{TRASH}"));
                        std::fs::rename(&path, &trash).map_err(io(format!("move {}", path.display())))?;
                        report.removed.push(leaf);
                    }
                    // The mapped copies (`mapped.rs`) of versions gone now or earlier,
                    // and of hand-placed templates moved away, once unused.
                    let salt = new_version()?;
                    for d in [&versions, &dir] {
                        let trash = |name: &str| versions.join(format!("{name}.mapped-{salt}{TRASH}"));
                        report.removed.extend(super::mapped::collect_orphans(d, trash));
                    }
                }
            }
        }
    }
    // Deleting can take a while: done without the locks (a trash directory is no
    // version any more). std's remove_dir_all never follows symlinks (CVE-2022-21658).
    let entries = std::fs::read_dir(&versions).map_err(io(format!("read {}", versions.display())))?;
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(TRASH) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => {}
                // Another collection (a `template rm` beside the runner's pass) deleted it
                // first: what this one set out to do is done.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io(format!("remove {}", e.path().display()))(err)),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "py-3_12", &"x".repeat(64)] {
            assert!(is_valid_template_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "..", "ü", "a.b", &"x".repeat(65)] {
            assert!(!is_valid_template_name(bad), "{bad}");
        }
        assert!(matches!(check_name("default"), Err(TemplateError::Reserved)));
    }
}
