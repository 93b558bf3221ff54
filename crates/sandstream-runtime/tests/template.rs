//! Templates, for real: the default one built by mmdebstrap from this host's apt sources
//! (or reused from the cache) runs Python, Node and `pip install`; templates imported from
//! a directory or a tarball keep what a root filesystem needs, run in real sandboxes, are
//! replaced without disturbing the sandboxes running on them, and a hostile tarball
//! writes nothing outside its template. Needs root; the sandbox tests also need runc,
//! iproute2, iptables, busybox-static and the static agent (SANDSTREAM_STATIC_AGENT), and
//! the default template's test network access to the package registries. scripts/test.sh
//! provides them all.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use sandstream_runtime::{
    Egress, ImportOptions, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec, TemplateError,
    collect_template_garbage, ensure_default_template, import_template, lease_template, list_templates,
    remove_template,
};
use support::lock::sandbox_tests_lock;
use support::{busybox_template, exec_with_token, static_agent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_template_runs_python_node_and_pip_install() {
    let Some(agent) = static_agent() else { return };
    let _lock = sandbox_tests_lock(false);
    // The same cache as `sandstream up` (scripts/test.sh sets it), so one build serves all.
    let cache = std::env::var_os("SANDSTREAM_CACHE_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("templates"), PathBuf::from);
    let mut lines = 0usize;
    let template = tokio::task::block_in_place(|| {
        ensure_default_template(&cache, |line| {
            lines += 1;
            eprintln!("template: {line}");
        })
    })
    .expect("default template");
    assert!(lines >= 1, "building or finding the template reports progress");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = OciRuntime::new(OciConfig::new(dir.path().join("state"), agent)).expect("runtime");
    let spec = SandboxSpec { template, limits: Limits::default(), env: vec![], egress: Egress::Allow };
    let sb = tokio::task::block_in_place(|| runtime.create(&spec)).expect("create");

    let run = |cmd: &'static str| exec_with_token(sb.agent_addr, &sb.token, cmd, 300_000);
    let got = run("python3 -c 'import sys; print(sys.version_info[:2] >= (3, 9))'; node -e 'console.log(6 * 7)'; npm --version >/dev/null && echo npm-ok").await.expect("execute");
    assert_eq!((got.stdout.as_str(), got.exit_code), ("True\n42\nnpm-ok\n", 0), "stderr: {}", got.stderr);

    // A real install from the package registry, through the sandbox's NAT egress.
    let got = run(
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --disable-pip-version-check -q six==1.16.0 && /tmp/venv/bin/python -c 'import six; print(six.__version__)'",
    )
    .await
    .expect("execute");
    let killed = tokio::task::block_in_place(|| runtime.kill(&sb.id));
    assert_eq!(
        (got.stdout.as_str(), got.exit_code),
        ("1.16.0\n", 0),
        "pip install inside the sandbox failed: {}",
        got.stderr
    );
    killed.expect("kill");
}

fn needs_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "template imports keep owners: this test needs root");
    eprintln!("skipped: needs root");
    false
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every entry under `dir`, as paths relative to it (sorted; symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("under dir").display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn versions(cache: &Path) -> Vec<String> {
    tree(&cache.join("templates/.versions")).into_iter().filter(|p| !p.contains('/')).collect()
}

#[test]
fn a_directory_imports_with_owners_modes_and_links_and_is_removed() {
    if !needs_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = busybox_template(dir.path());
    std::fs::create_dir_all(root.join("home/user")).expect("mkdir");
    std::fs::write(root.join("home/user/notes"), "mine\n").expect("write");
    nix::unistd::chown(&root.join("home/user/notes"), Some(1000.into()), Some(1000.into())).expect("chown");
    std::fs::set_permissions(root.join("home/user/notes"), PermissionsExt::from_mode(0o640)).expect("chmod");
    std::fs::write(root.join("bin/setuid-tool"), "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(root.join("bin/setuid-tool"), PermissionsExt::from_mode(0o4755)).expect("chmod");
    std::fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd.hard")).expect("link");
    std::os::unix::fs::symlink("/etc/passwd", root.join("etc/abs-link")).expect("symlink");
    nix::unistd::mkfifo(&root.join("tmp/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o620)).expect("mkfifo");
    sh(Command::new("mknod").arg(root.join("dev/null-ish")).args(["c", "1", "3"]));
    let cache = dir.path().join("cache");

    let report = import_template(&cache, "bb-dir", &root, &ImportOptions::default()).expect("import");
    assert_eq!(report.skipped_devices, ["/dev/null-ish"], "{report:?}");
    assert_eq!(report.stripped_setid, ["/bin/setuid-tool"], "{report:?}");
    assert!(report.replaced.is_none());
    let t = report.path.clone();
    assert_eq!(std::fs::metadata(cache.join("templates")).expect("stat").mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&t).expect("stat").mode() & 0o777, 0o755, "a root directory anyone traverses");
    let notes = std::fs::metadata(t.join("home/user/notes")).expect("notes");
    assert_eq!((notes.uid(), notes.gid(), notes.mode() & 0o7777), (1000, 1000, 0o640));
    assert_eq!(std::fs::read_to_string(t.join("home/user/notes")).expect("read"), "mine\n");
    let shadow = std::fs::metadata(t.join("etc/shadow")).expect("shadow");
    assert_eq!(shadow.mode() & 0o777, 0o600, "modes are kept");
    assert_eq!(
        std::fs::metadata(root.join("etc/shadow")).expect("src").mtime(),
        shadow.mtime(),
        "mtimes are kept (Python's .pyc caches compare them)"
    );
    assert_eq!(std::fs::metadata(t.join("bin/setuid-tool")).expect("su").mode() & 0o7777, 0o755, "setuid dropped");
    assert_eq!(
        std::fs::metadata(t.join("etc/passwd")).expect("passwd").ino(),
        std::fs::metadata(t.join("etc/passwd.hard")).expect("hard").ino(),
        "hard links stay links"
    );
    assert_eq!(std::fs::read_link(t.join("etc/abs-link")).expect("link"), Path::new("/etc/passwd"));
    assert_eq!(std::fs::read_link(t.join("bin/sh")).expect("sh"), Path::new("/bin/busybox"));
    assert!(std::fs::symlink_metadata(t.join("tmp/fifo")).expect("fifo").file_type().is_fifo());
    assert!(!t.join("dev/null-ish").exists(), "device nodes are left out");

    let listed = list_templates(&cache).expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].name.as_str(), listed[0].version.as_str()), ("bb-dir", report.version.as_str()));
    assert!(listed[0].imported_at.is_some());

    // The rules on names, and on registering a name twice.
    match import_template(&cache, "bb-dir", &root, &ImportOptions::default()) {
        Err(e @ TemplateError::Exists(_)) => assert!(e.to_string().contains("--replace"), "{e}"),
        other => panic!("a second import of a name must be refused: {other:?}"),
    }
    assert!(matches!(
        import_template(&cache, "default", &root, &ImportOptions::default()),
        Err(TemplateError::Reserved)
    ));
    for bad in ["", "../x", "a/b", "a b", &"x".repeat(65)] {
        assert!(
            matches!(
                import_template(&cache, bad, &root, &ImportOptions::default()),
                Err(TemplateError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("etc")).expect("mkdir");
    match import_template(&cache, "no-shell", &empty, &ImportOptions::default()) {
        Err(e @ TemplateError::NotARootfs { .. }) => assert!(e.to_string().contains("/bin/sh"), "{e}"),
        other => panic!("a tree without /bin/sh is no root filesystem: {other:?}"),
    }
    assert_eq!(versions(&cache), [format!("bb-dir@{}", report.version)], "failed imports leave nothing");

    let removed = remove_template(&cache, "bb-dir").expect("remove");
    assert!(!removed.still_in_use);
    assert!(list_templates(&cache).expect("list").is_empty());
    assert!(versions(&cache).is_empty(), "an unused version is deleted: {:?}", versions(&cache));
    match remove_template(&cache, "bb-dir") {
        Err(e @ TemplateError::NotFound { .. }) => assert!(e.to_string().contains("default"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hand_placed_template_directory_is_checked_before_use_and_can_be_replaced() {
    if !needs_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("templates")).expect("mkdir");
    // What the runner looked up before imports existed: templates/NAME with a mark.
    let placed = cache.join("templates/by-hand");
    std::fs::rename(busybox_template(dir.path()), &placed).expect("place");
    std::fs::write(placed.join(".sandstream-template"), "").expect("mark");
    let listed = list_templates(&cache).expect("list");
    assert_eq!((listed[0].name.as_str(), listed[0].version.as_str()), ("by-hand", "legacy"));
    assert_eq!(lease_template(&cache, "by-hand").expect("lease").path(), placed.canonicalize().expect("abs"));

    // The runtime prepares /home/user on the host: a /home leading out is refused.
    std::fs::remove_dir(placed.join("home")).expect("rmdir");
    std::os::unix::fs::symlink("/", placed.join("home")).expect("symlink");
    match lease_template(&cache, "by-hand") {
        Err(e @ TemplateError::NotARootfs { .. }) => assert!(e.to_string().contains("/home"), "{e}"),
        other => panic!("{other:?}"),
    }

    let source = dir.path().join("new");
    std::fs::create_dir(&source).expect("mkdir");
    let fresh = busybox_template(&source);
    let report = import_template(&cache, "by-hand", &fresh, &ImportOptions { replace: true }).expect("replace");
    assert_eq!(report.replaced.as_deref(), Some("legacy"));
    assert!(!placed.is_dir() || placed.is_symlink(), "the hand-placed directory became a version");
    assert_eq!(versions(&cache), [format!("by-hand@{}", report.version)], "and, unused, was deleted");
}

/// A tar archive written byte by byte, so it can hold what no honest tool writes.
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn octal(field: &mut [u8], value: u64) {
        let s = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }

    fn entry(mut self, name: &str, kind: u8, mode: u32, link: &str, data: &[u8]) -> RawTar {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        Self::octal(&mut h[100..108], u64::from(mode));
        Self::octal(&mut h[108..116], 0);
        Self::octal(&mut h[116..124], 0);
        Self::octal(&mut h[124..136], data.len() as u64);
        Self::octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if kind == b'3' {
            Self::octal(&mut h[329..337], 1);
            Self::octal(&mut h[337..345], 3);
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    fn dir(self, name: &str) -> RawTar {
        self.entry(name, b'5', 0o755, "", b"")
    }

    fn file(self, name: &str, mode: u32, data: &[u8]) -> RawTar {
        self.entry(name, b'0', mode, "", data)
    }

    fn symlink(self, name: &str, target: &str) -> RawTar {
        self.entry(name, b'2', 0o777, target, b"")
    }

    fn hardlink(self, name: &str, target: &str) -> RawTar {
        self.entry(name, b'1', 0o644, target, b"")
    }

    /// The smallest tree that passes the root filesystem check.
    fn rootfs() -> RawTar {
        RawTar::default().dir("./").dir("./bin/").file("./bin/sh", 0o755, b"#!not really a shell\n")
    }

    fn write(mut self, path: &Path) -> PathBuf {
        self.0.extend_from_slice(&[0u8; 1024]);
        std::fs::write(path, &self.0).expect("write tarball");
        path.to_path_buf()
    }
}

#[test]
fn hostile_tarballs_write_nothing_outside_their_template() {
    if !needs_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), "host file\n").expect("write");
    let out = outside.display().to_string();
    let out_rel = format!("{}{}", "../".repeat(12), out.trim_start_matches('/'));
    let before_outside = tree(&outside);
    let tars = dir.path().join("tars");
    std::fs::create_dir(&tars).expect("mkdir");

    let refused: Vec<(&str, RawTar, &str)> = vec![
        ("dotdot", RawTar::rootfs().file("../escape", 0o644, b"x"), "`..`"),
        ("dotdot-deep", RawTar::rootfs().file("./bin/../../../escape", 0o644, b"x"), "`..`"),
        ("symlink-then-file", RawTar::rootfs().symlink("./evil", &out).file("./evil/pwned", 0o644, b"x"), "symlink"),
        (
            "relative-symlink-then-file",
            RawTar::rootfs().symlink("./evil", &out_rel).file("./evil/pwned", 0o644, b"x"),
            "symlink",
        ),
        (
            "symlink-then-dir-then-file",
            RawTar::rootfs().symlink("./evil", &out).dir("./evil/sub/").file("./evil/sub/pwned", 0o644, b"x"),
            "symlink",
        ),
        ("hardlink-dotdot", RawTar::rootfs().hardlink("./pwned", &format!("{out_rel}/secret")), "`..`"),
        (
            "hardlink-through-symlink",
            RawTar::rootfs().symlink("./evil", &out).hardlink("./pwned", "evil/secret"),
            "symlink",
        ),
        ("hardlink-absolute", RawTar::rootfs().hardlink("./pwned", &format!("{out}/secret")), "does not exist"),
        ("home-symlink", RawTar::rootfs().symlink("./home", "/"), "/home"),
        ("tmp-symlink", RawTar::rootfs().symlink("./tmp", &out), "/tmp"),
        ("no-shell", RawTar::default().dir("./etc/").file("./etc/hostname", 0o644, b"x\n"), "/bin/sh"),
        ("file-over-dir", RawTar::rootfs().dir("./etc/").file("./etc", 0o644, b"x"), "directory"),
    ];
    for (name, tar, why) in refused {
        let path = tar.write(&tars.join(format!("{name}.tar")));
        let err = import_template(&cache, name, &path, &ImportOptions::default()).expect_err(name);
        assert!(err.to_string().contains(why), "{name}: {err}");
        assert_eq!(tree(&outside), before_outside, "{name} wrote outside the template");
        assert_eq!(std::fs::metadata(outside.join("secret")).expect("secret").nlink(), 1, "{name} linked a host file");
        assert!(list_templates(&cache).expect("list").is_empty(), "{name} was registered");
        assert!(versions(&cache).is_empty(), "{name} left {:?}", versions(&cache));
    }
    for p in tree(dir.path()) {
        assert!(!p.ends_with("escape") && !p.ends_with("pwned"), "{p} was written");
    }
    assert!(!Path::new("/escape").exists() && !Path::new("/pwned").exists());

    // Accepted, made harmless: an absolute member lands inside; a device node is left
    // out; setuid is dropped; a symlink replaced by a directory is not followed.
    let tar = RawTar::rootfs()
        .file(&format!("{out}/abs"), 0o644, b"inside\n")
        .entry("./dev/sda", b'3', 0o660, "", b"")
        .file("./bin/su", 0o4755, b"#!/bin/sh\n")
        .symlink("./later", &out)
        .dir("./later/")
        .file("./later/inside", 0o644, b"inside\n")
        .write(&tars.join("harmless.tar"));
    // gzip-compressed, as `docker export | gzip` gives.
    sh(Command::new("gzip").arg("-k").arg(&tar));
    let report =
        import_template(&cache, "harmless", &tar.with_extension("tar.gz"), &ImportOptions::default()).expect("import");
    let t = report.path;
    assert_eq!(std::fs::read_to_string(t.join(out.trim_start_matches('/')).join("abs")).expect("abs"), "inside\n");
    assert_eq!(report.skipped_devices, ["./dev/sda"]);
    assert_eq!(report.stripped_setid, ["./bin/su"]);
    assert_eq!(std::fs::metadata(t.join("bin/su")).expect("su").mode() & 0o7777, 0o755);
    assert!(std::fs::symlink_metadata(t.join("later")).expect("later").is_dir());
    assert_eq!(std::fs::read_to_string(t.join("later/inside")).expect("inside"), "inside\n");
    assert_eq!(tree(&outside), before_outside, "nothing written outside");

    // Not a tarball at all.
    std::fs::write(tars.join("junk.tar"), vec![0x42u8; 4096]).expect("write");
    match import_template(&cache, "junk", &tars.join("junk.tar"), &ImportOptions::default()) {
        Err(e @ TemplateError::Format { .. }) => assert!(e.to_string().contains("not a tar archive"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(versions(&cache).len(), 1, "{:?}", versions(&cache));
}

/// A busybox root filesystem with `/marker` holding `marker`, as a plain tarball (what
/// `docker export` writes).
fn busybox_tarball(dir: &Path, name: &str, marker: &str) -> PathBuf {
    let work = dir.join(name);
    std::fs::create_dir(&work).expect("mkdir");
    let root = busybox_template(&work);
    std::fs::write(root.join("marker"), marker).expect("marker");
    let tar = dir.join(format!("{name}.tar"));
    sh(Command::new("tar").arg("-C").arg(&root).args(["--numeric-owner", "-cf"]).arg(&tar).arg("."));
    tar
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_tarball_runs_and_replacing_it_keeps_running_sandboxes_on_their_version() {
    let Some(agent) = static_agent() else { return };
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let _lock = sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let v1 = busybox_tarball(dir.path(), "v1", "first version\n");
    let v2 = busybox_tarball(dir.path(), "v2", "second version\n");
    let runtime = OciRuntime::new(OciConfig::new(dir.path().join("state"), agent)).expect("runtime");
    let create = |name: &str| {
        let lease = lease_template(&cache, name).expect("lease");
        let spec = SandboxSpec {
            template: lease.path().to_path_buf(),
            limits: Limits::default(),
            env: vec![],
            egress: Egress::Allow,
        };
        // The lease is held until the overlay is mounted.
        tokio::task::block_in_place(|| runtime.create(&spec)).expect("create")
    };
    let cat = async |sb: &sandstream_runtime::Sandbox| {
        let out = exec_with_token(sb.agent_addr, &sb.token, "cat /marker && id -u", 10_000).await.expect("exec");
        assert_eq!(out.exit_code, 0, "{out:?}");
        out.stdout
    };

    let first = import_template(&cache, "bb", &v1, &ImportOptions::default()).expect("import");
    let old = create("bb");
    assert_eq!(cat(&old).await, "first version\n1000\n");
    // The sandbox's lower layer is the version's copy owned by the sandboxes' id range,
    // beside it; the version itself stays host root's (the Docker backend imports it).
    let ids = runtime.mapped_ids();
    let copies = cache.join(format!("templates/.versions/.mapped-{}-{}", ids.uid_base, ids.gid_base));
    let owner = |p: PathBuf| std::fs::symlink_metadata(&p).map(|m| (m.uid(), m.gid())).expect("stat");
    assert_eq!(owner(copies.join(format!("bb@{}/marker", first.version))), (ids.uid_base, ids.gid_base));
    assert_eq!(owner(first.path.join("marker")), (0, 0), "the template is never shifted in place");

    assert!(matches!(import_template(&cache, "bb", &v2, &ImportOptions::default()), Err(TemplateError::Exists(_))));
    let second = import_template(&cache, "bb", &v2, &ImportOptions { replace: true }).expect("replace");
    assert_eq!(second.replaced.as_deref(), Some(first.version.as_str()));
    let gc = collect_template_garbage(&cache).expect("gc");
    assert_eq!(gc.in_use, [format!("bb@{}", first.version)], "a running sandbox keeps its version: {gc:?}");
    assert!(first.path.join("marker").exists());

    let new = create("bb");
    assert_eq!(cat(&new).await, "second version\n1000\n");
    assert_eq!(cat(&old).await, "first version\n1000\n", "the old sandbox still runs on the old version");

    let removed = remove_template(&cache, "bb").expect("remove");
    assert!(removed.still_in_use, "{removed:?}");
    assert!(matches!(lease_template(&cache, "bb"), Err(TemplateError::NotFound { .. })));
    assert_eq!(cat(&new).await, "second version\n1000\n", "removing a name stops no sandbox");

    for sb in [old, new] {
        tokio::task::block_in_place(|| runtime.kill(&sb.id)).expect("kill");
    }
    let gc = collect_template_garbage(&cache).expect("gc");
    assert!(gc.in_use.is_empty(), "{gc:?}");
    // Both versions, and each one's mapped copy with it.
    let mut removed = gc.removed.clone();
    removed.sort();
    let want = |v: &str| format!("bb@{v}");
    let mut expected = vec![want(&first.version), want(&first.version), want(&second.version), want(&second.version)];
    expected.sort();
    assert_eq!(removed, expected, "{gc:?}");
    assert!(versions(&cache).is_empty(), "{:?}", versions(&cache));
    assert!(!copies.exists(), "the mapped copies went with their versions");
}
