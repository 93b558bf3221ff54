//! FileService against a real agent running as root with `--run-as 65534:65534` (the
//! default user), as in a sandbox: every request runs with the credentials of the user
//! it names, so the kernel, not the agent, decides what each may touch.
//!
//! The large round trip is 256 MiB; `SANDSTREAM_FILES_LARGE_MIB=1024` makes it 1 GiB.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use sandstream_proto::v1::file_service_client::FileServiceClient;
use sandstream_proto::v1::{
    EntryInfo, FileType, FsEventType, ListDirRequest, MakeDirRequest, MoveRequest, ReadRequest, RemoveRequest,
    StatRequest, WatchDirEvent, WatchDirRequest, WatchEventKind, WriteRequest,
};
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Files = FileServiceClient<InterceptedService<Channel, Bearer>>;

const NOBODY: u32 = 65534;

/// An agent as root whose default user is 65534, its workdir (the default user's
/// relative paths) owned by that user.
fn start(extra: &[&str]) -> Agent {
    start_with(extra, |_| {})
}

fn start_with(extra: &[&str], customize: impl FnOnce(&mut std::process::Command)) -> Agent {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (per-user credentials, tmpfs mounts)");
    let mut args = vec!["--run-as", "65534:65534"];
    args.extend_from_slice(extra);
    let agent = Agent::start_customized(PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")), &args, &[], customize);
    std::fs::set_permissions(agent.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(agent.workdir(), Some(NOBODY), Some(NOBODY)).expect("chown");
    agent
}

async fn files(agent: &Agent) -> Files {
    files_with_token(agent, TOKEN).await
}

async fn files_with_token(agent: &Agent, token: &str) -> Files {
    FileServiceClient::with_interceptor(channel(agent.addr).await, Bearer(token.to_string()))
        .max_decoding_message_size(64 << 20)
}

fn first(path: &str, user: &str, mode: u32, data: Vec<u8>) -> WriteRequest {
    WriteRequest { path: path.into(), user: user.into(), mode, data: data.into() }
}

/// Writes `data` to `path` as `user` in messages of `chunk` bytes.
async fn write(
    c: &mut Files,
    path: &str,
    user: &str,
    mode: u32,
    data: &[u8],
    chunk: usize,
) -> Result<EntryInfo, tonic::Status> {
    let mut messages = vec![first(path, user, mode, Vec::new())];
    messages.extend(data.chunks(chunk).map(|c| WriteRequest { data: c.to_vec().into(), ..Default::default() }));
    let r = c.write(tokio_stream::iter(messages)).await?;
    Ok(r.into_inner().entry.expect("entry"))
}

/// Reads `path` as `user`: the first message's entry and the bytes, checking offsets.
async fn read(
    c: &mut Files,
    path: &str,
    user: &str,
    offset: u64,
    length: u64,
) -> Result<(EntryInfo, Vec<u8>), tonic::Status> {
    let req = ReadRequest { path: path.into(), user: user.into(), offset, length };
    let mut stream = c.read(req).await?.into_inner();
    let head = stream.next().await.expect("a first message")?;
    let entry = head.entry.expect("the first message carries the entry");
    let mut data = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        assert!(msg.entry.is_none());
        assert_eq!(msg.offset, offset + data.len() as u64, "chunks continue exactly");
        assert!(msg.data.len() <= 1 << 20);
        data.extend_from_slice(&msg.data);
    }
    Ok((entry, data))
}

fn err<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("an error");
    (e.code(), e.message().to_string())
}

/// Deterministic pseudo-random bytes (xorshift), `n` of them from `seed`.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

#[tokio::test]
async fn text_and_binary_files_round_trip_as_the_default_user() {
    let agent = start(&[]);
    let mut c = files(&agent).await;
    let work = agent.workdir();

    // A relative path is the default user's (its workdir); parents are made.
    let e = write(&mut c, "notes/a.txt", "", 0, b"hello\n", 1 << 20).await.expect("write");
    let target = work.join("notes/a.txt");
    assert_eq!(e.path, target.display().to_string());
    assert_eq!((e.name.as_str(), e.size, e.mode, e.uid, e.gid), ("a.txt", 6, 0o644, NOBODY, NOBODY));
    assert_eq!(std::fs::read(&target).expect("on disk"), b"hello\n");
    for p in [&target, &work.join("notes")] {
        let m = std::fs::metadata(p).expect("meta");
        assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{} is the user's", p.display());
    }
    let (entry, data) = read(&mut c, "notes/a.txt", "", 0, 0).await.expect("read");
    assert_eq!((data.as_slice(), entry.size, entry.r#type), (&b"hello\n"[..], 6, FileType::File as i32));

    // Random bytes in uneven chunks, byte-exact.
    let bin = noise(7, (3 << 20) + 12345);
    let e = write(&mut c, &work.join("bin").display().to_string(), "", 0o600, &bin, 700_000).await.expect("write");
    assert_eq!((e.size, e.mode), (bin.len() as u64, 0o600));
    let (_, back) = read(&mut c, "bin", "", 0, 0).await.expect("read");
    assert_eq!(hex::encode(Sha256::digest(&back)), hex::encode(Sha256::digest(&bin)));
    // From an offset, a length; a rewrite without a mode keeps the file's.
    let (_, part) = read(&mut c, "bin", "", 1_000_000, 2_000_000).await.expect("read");
    assert_eq!(part, bin[1_000_000..3_000_000]);
    let (_, tail) = read(&mut c, "bin", "", bin.len() as u64 - 10, 0).await.expect("read");
    assert_eq!(tail, bin[bin.len() - 10..]);
    let (_, none) = read(&mut c, "bin", "", bin.len() as u64, 0).await.expect("read at the end");
    assert!(none.is_empty());
    assert_eq!(
        err(read(&mut c, "bin", "", bin.len() as u64 + 1, 0).await),
        (
            Code::OutOfRange,
            format!(
                "{}: offset {} is past the end of the file ({} bytes)",
                work.join("bin").display(),
                bin.len() + 1,
                bin.len()
            )
        )
    );
    let e = write(&mut c, "bin", "", 0, b"short", 1 << 20).await.expect("rewrite");
    assert_eq!((e.size, e.mode), (5, 0o600));

    // Errors: typed, the path first.
    assert_eq!(
        err(read(&mut c, "notes", "", 0, 0).await),
        (Code::FailedPrecondition, format!("{}: is a directory", work.join("notes").display()))
    );
    assert_eq!(
        err(read(&mut c, "absent", "", 0, 0).await),
        (Code::NotFound, format!("{}: no such file or directory", work.join("absent").display()))
    );
    assert_eq!(err(read(&mut c, "", "", 0, 0).await), (Code::InvalidArgument, "path is empty".into()));
    assert_eq!(err(read(&mut c, "a\0b", "", 0, 0).await), (Code::InvalidArgument, "path contains a NUL byte".into()));
    assert_eq!(
        err(read(&mut c, "/dev/null", "", 0, 0).await),
        (Code::FailedPrecondition, "/dev/null: not a regular file".into())
    );
    assert_eq!(err(write(&mut c, "bad-mode", "", 0o10644, b"", 1).await).0, Code::InvalidArgument);
    assert_eq!(
        err(read(&mut c, "x", "nosuchuser", 0, 0).await),
        (Code::InvalidArgument, "unknown user nosuchuser".into())
    );
    // A later message that names a file is refused and nothing is written.
    let msgs = vec![first("twice", "", 0, b"a".to_vec()), first("other", "", 0, b"b".to_vec())];
    assert_eq!(c.write(tokio_stream::iter(msgs)).await.expect_err("refused").code(), Code::InvalidArgument);
    assert!(!work.join("twice").exists() && !work.join("other").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&work).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no temporary file is left: {leftovers:?}");
}

#[tokio::test]
async fn a_large_file_round_trips_byte_exact_with_bounded_agent_memory() {
    let mib: usize = std::env::var("SANDSTREAM_FILES_LARGE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let agent = start(&[]);
    let mut c = files(&agent).await;
    let size = mib << 20;
    // Sent as generated: the test does not hold the file either.
    let chunk = 1 << 20;
    let mut sent = Sha256::new();
    let mut messages = vec![first("big.bin", "", 0, Vec::new())];
    let stream = async_stream::stream! {
        yield messages.remove(0);
        for i in 0..(size / chunk) {
            yield WriteRequest { data: noise(i as u64 + 1, chunk).into(), ..Default::default() };
        }
    };
    for i in 0..(size / chunk) {
        sent.update(noise(i as u64 + 1, chunk));
    }
    let e = c.write(stream).await.expect("write").into_inner().entry.expect("entry");
    assert_eq!(e.size, size as u64);
    let mut stream =
        c.read(ReadRequest { path: "big.bin".into(), ..Default::default() }).await.expect("read").into_inner();
    let mut got = Sha256::new();
    let mut n = 0u64;
    while let Some(msg) = stream.next().await {
        let msg = msg.expect("chunk");
        assert_eq!(msg.offset, n);
        n += msg.data.len() as u64;
        got.update(&msg.data);
    }
    assert_eq!(n, size as u64);
    assert_eq!(hex::encode(got.finalize()), hex::encode(sent.finalize()));
    let (_, hwm_kib) = agent.rss_kib();
    eprintln!("agent VmHWM after a {mib} MiB round trip: {} MiB", hwm_kib / 1024);
    assert!(hwm_kib < 64 * 1024, "the agent's peak RSS was {hwm_kib} KiB for a {mib} MiB file");
}

#[tokio::test]
async fn list_stat_make_dir_move_and_remove() {
    let agent = start(&[]);
    let mut c = files(&agent).await;
    let work = agent.workdir();
    let mk = |path: &str| MakeDirRequest { path: path.into(), ..Default::default() };

    let r = c.make_dir(mk("a/b/c")).await.expect("mkdir").into_inner();
    assert!(r.created);
    let e = r.entry.expect("entry");
    assert_eq!((e.r#type, e.mode, e.uid), (FileType::Dir as i32, 0o755, NOBODY));
    assert!(!c.make_dir(mk("a/b/c")).await.expect("again").into_inner().created, "it existed");
    let r = c.make_dir(MakeDirRequest { path: "m".into(), mode: 0o700, ..Default::default() }).await.expect("mkdir");
    assert_eq!(r.into_inner().entry.expect("entry").mode, 0o700);
    write(&mut c, "a/f.txt", "", 0, b"f", 1).await.expect("write");
    write(&mut c, "a/b/g.txt", "", 0, b"gg", 1).await.expect("write");
    std::os::unix::fs::symlink("/etc", work.join("a/link")).expect("symlink");
    assert_eq!(
        err(c.make_dir(mk("a/f.txt")).await),
        (Code::AlreadyExists, format!("{}: already exists", work.join("a/f.txt").display()))
    );

    let list = |depth: u32| ListDirRequest { path: "a".into(), depth, ..Default::default() };
    let names = |entries: Vec<EntryInfo>| {
        entries.into_iter().map(|e| e.path.replace(&format!("{}/", work.display()), "")).collect::<Vec<_>>()
    };
    let one = c.list_dir(list(0)).await.expect("list").into_inner().entries;
    assert_eq!(names(one), ["a/b", "a/f.txt", "a/link"]);
    let all = c.list_dir(list(5)).await.expect("list").into_inner().entries;
    assert_eq!(names(all.clone()), ["a/b", "a/b/c", "a/b/g.txt", "a/f.txt", "a/link"], "symlinks are not followed");
    let link = all.iter().find(|e| e.name == "link").expect("link");
    assert_eq!((link.r#type, link.symlink_target.as_str()), (FileType::Symlink as i32, "/etc"));
    let st = c.stat(StatRequest { path: "a/link".into(), ..Default::default() }).await.expect("stat").into_inner();
    assert_eq!(st.entry.expect("entry").symlink_target, "/etc");
    assert_eq!(
        err(c.list_dir(ListDirRequest { path: "a/f.txt".into(), ..Default::default() }).await),
        (Code::FailedPrecondition, format!("{}: not a directory", work.join("a/f.txt").display()))
    );

    // Move: the destination's parents are made.
    let mv = |s: &str, d: &str| MoveRequest { source: s.into(), destination: d.into(), ..Default::default() };
    let moved = c.r#move(mv("a/f.txt", "x/y/z.txt")).await.expect("move").into_inner().entry.expect("entry");
    assert_eq!((moved.path, moved.size), (work.join("x/y/z.txt").display().to_string(), 1));
    assert!(!work.join("a/f.txt").exists());
    assert_eq!(
        err(c.r#move(mv("a/f.txt", "q")).await),
        (Code::NotFound, format!("{}: no such file or directory", work.join("a/f.txt").display()))
    );

    // Remove: recursive only when asked; a symlink, not its target.
    let rm = |p: &str, recursive: bool| RemoveRequest { path: p.into(), recursive, ..Default::default() };
    assert_eq!(
        err(c.remove(rm("a", false)).await),
        (Code::FailedPrecondition, format!("{}: directory not empty", work.join("a").display()))
    );
    c.remove(rm("a/link", false)).await.expect("remove link");
    assert!(Path::new("/etc/passwd").exists());
    c.remove(rm("a/b/g.txt", false)).await.expect("remove file");
    c.remove(rm("a", true)).await.expect("remove tree");
    assert!(!work.join("a").exists());
    assert_eq!(err(c.remove(rm("a", true)).await).0, Code::NotFound);

    // A tree 20,000 deep (deeper than any path), made by the user, goes as well.
    let top = work.join("deep");
    std::fs::create_dir(&top).expect("mkdir");
    {
        use nix::fcntl::{OFlag, open, openat};
        use nix::sys::stat::{Mode, mkdirat};
        let mut fd = open(&top, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("open");
        for _ in 0..20_000 {
            mkdirat(&fd, c"d", Mode::S_IRWXU).expect("mkdirat");
            nix::unistd::fchownat(&fd, c"d", Some(NOBODY.into()), Some(NOBODY.into()), nix::fcntl::AtFlags::empty())
                .expect("chown");
            fd = openat(&fd, c"d", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("openat");
        }
    }
    std::os::unix::fs::chown(&top, Some(NOBODY), Some(NOBODY)).expect("chown");
    c.remove(rm("deep", true)).await.expect("remove the deep tree");
    assert!(!top.exists());
    // A tree the user may not empty stays, with the first failure named.
    std::fs::create_dir_all(work.join("mixed/rootonly")).expect("mkdir");
    std::fs::write(work.join("mixed/rootonly/f"), b"").expect("write");
    std::os::unix::fs::chown(work.join("mixed"), Some(NOBODY), Some(NOBODY)).expect("chown");
    let (code, msg) = err(c.remove(rm("mixed", true)).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.starts_with(&format!("{}: permission denied", work.join("mixed").display())), "{msg}");
    assert!(work.join("mixed/rootonly/f").exists());
}

#[tokio::test]
async fn symlinks_to_what_the_user_may_not_read_are_refused() {
    let token_dir = tempfile::tempdir().expect("tempdir");
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::set_permissions(token_dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tf = token_file.clone();
    let agent = start_with(&[], move |cmd| {
        cmd.env_remove("SANDSTREAM_AGENT_TOKEN").arg("--token-file").arg(&tf);
    });
    let mut c = files(&agent).await;
    let work = agent.workdir();
    let secret = agent.dir.path().join("secret");
    std::fs::write(&secret, b"root only").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let spool = agent.dir.path().join("spool");
    for (name, target) in [
        ("to-secret", secret.as_path()),
        ("to-token", token_file.as_path()),
        ("to-environ", Path::new("/proc/1/environ")),
        ("to-spool", spool.as_path()),
        ("to-etc", Path::new("/etc")),
    ] {
        std::os::unix::fs::symlink(target, work.join(name)).expect("symlink");
    }
    for name in ["to-secret", "to-token", "to-environ"] {
        let (code, msg) = err(read(&mut c, name, "", 0, 0).await);
        assert_eq!((code, msg), (Code::PermissionDenied, format!("{}: permission denied", work.join(name).display())));
    }
    let (code, _) = err(c.list_dir(ListDirRequest { path: "to-spool".into(), ..Default::default() }).await);
    assert_eq!(code, Code::PermissionDenied);
    // Writing through a symlink into a root-owned directory: refused, nothing made.
    assert_eq!(err(write(&mut c, "to-etc/planted", "", 0, b"x", 1).await).0, Code::PermissionDenied);
    assert!(!Path::new("/etc/planted").exists());
    assert_eq!(err(write(&mut c, &secret.display().to_string(), "", 0, b"x", 1).await).0, Code::PermissionDenied);
    assert_eq!(std::fs::read(&secret).expect("secret"), b"root only");
    // Root may: the same links, as root.
    let as_root = |name: &str| work.join(name).display().to_string();
    assert_eq!(read(&mut c, &as_root("to-secret"), "root", 0, 0).await.expect("root reads").1, b"root only");
    assert_eq!(read(&mut c, &as_root("to-token"), "root", 0, 0).await.expect("root").1, TOKEN.as_bytes());
    // (This test's /proc/1 may belong to a process root here may not trace; the agent's
    // own environment is root's to read, and not the default user's.)
    let environ = format!("/proc/{}/environ", agent.pid());
    assert_eq!(
        err(read(&mut c, &environ, "", 0, 0).await),
        (Code::PermissionDenied, format!("{environ}: permission denied"))
    );
    let (_, env) = read(&mut c, &environ, "root", 0, 0).await.expect("root reads the agent's environment");
    assert!(env.windows(19).any(|w| w == b"SANDSTREAM_LOG=warn"), "{}", String::from_utf8_lossy(&env));
    // Root's relative paths are its home's.
    let (code, msg) = err(read(&mut c, "to-secret", "root", 0, 0).await);
    assert_eq!((code, msg), (Code::NotFound, "/root/to-secret: no such file or directory".into()));
    // What root writes is root's.
    let e = write(&mut c, &work.join("by-root").display().to_string(), "root", 0, b"r", 1).await.expect("write");
    assert_eq!((e.uid, e.gid), (0, 0));
    // A uid by number, with no passwd entry: its credentials exactly.
    let e = c.stat(StatRequest { path: work.display().to_string(), user: "4242".into() }).await.expect("stat");
    assert_eq!(e.into_inner().entry.expect("entry").uid, NOBODY);
    assert_eq!(
        err(write(&mut c, &work.join("by-4242").display().to_string(), "4242", 0, b"", 1).await).0,
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn a_full_disk_is_resource_exhausted_and_leaves_no_file() {
    let agent = start(&[]);
    let mut c = files(&agent).await;
    let full = agent.workdir().join("full");
    std::fs::create_dir(&full).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0755,uid=65534,gid=65534", "tmpfs"])
        .arg(&full)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a 1 MiB tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(full.clone());
    write(&mut c, "full/old", "", 0, b"previous", 1).await.expect("a small file fits");
    let (code, msg) = err(write(&mut c, "full/big", "", 0, &noise(3, 3 << 20), 1 << 20).await);
    assert_eq!(
        (code, msg),
        (Code::ResourceExhausted, format!("{}: no space left on device", full.join("big").display()))
    );
    // Replacing a file: the old one stays whole.
    let (code, _) = err(write(&mut c, "full/old", "", 0, &noise(4, 3 << 20), 1 << 20).await);
    assert_eq!(code, Code::ResourceExhausted);
    let mut left: Vec<_> = std::fs::read_dir(&full).expect("ls").flatten().map(|e| e.file_name()).collect();
    left.sort();
    assert_eq!(left, ["old"], "no target and no temporary file");
    assert_eq!(std::fs::read(full.join("old")).expect("old"), b"previous");
}

#[tokio::test]
async fn a_cancelled_write_leaves_nothing_and_the_target_as_it_was() {
    let agent = start(&[]);
    let mut c = files(&agent).await;
    let work = agent.workdir();
    write(&mut c, "kept", "", 0, b"before", 1).await.expect("write");
    // The client goes away mid-stream (its connection drops, as when its process dies):
    // the request stream fails on the agent's side.
    let proxy = Proxy::start(agent.addr).await;
    let mut via_proxy = FileServiceClient::with_interceptor(channel(proxy.addr).await, Bearer(TOKEN.into()));
    let (tx, rx) = tokio::sync::mpsc::channel::<WriteRequest>(4);
    tx.send(first("kept", "", 0, noise(5, 1 << 20))).await.expect("send");
    let task = tokio::spawn(async move { via_proxy.write(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    let temps = || temporary_files(&work);
    wait_until(|| temps() == 1, "the temporary file appears").await;
    tx.send(WriteRequest { data: noise(6, 1 << 20).into(), ..Default::default() }).await.expect("send");
    proxy.cut();
    assert!(task.await.expect("joined").is_err(), "the write failed for the client");
    drop(tx);
    wait_until(|| temps() == 0, "the temporary file is removed").await;
    assert_eq!(std::fs::read(work.join("kept")).expect("kept"), b"before");
    let names: Vec<_> = std::fs::read_dir(&work).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["kept"]);
}

#[tokio::test]
async fn a_write_whose_client_drops_the_call_leaves_nothing() {
    let agent = start(&[]);
    let mut c = files(&agent).await;
    let work = agent.workdir();
    write(&mut c, "kept", "", 0, b"before", 1).await.expect("write");
    let temps = || temporary_files(&work);
    // The client gives up on the call (as the server does past its upload limit): its
    // request stream is still open, the call is dropped, and HTTP/2 resets the stream.
    // Each round leaves the agent in a different place: waiting for the next message, or
    // writing the last one.
    for round in 0..20u64 {
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteRequest>(4);
        tx.send(first("kept", "", 0, noise(round, 256 << 10))).await.expect("send");
        let mut client = c.clone();
        let call = tokio::spawn(async move { client.write(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
        wait_until(|| temps() == 1, "the temporary file appears").await;
        for i in 0..round % 4 {
            tx.send(WriteRequest { data: noise(100 + i, 1 << 20).into(), ..Default::default() }).await.expect("send");
        }
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        call.abort();
        let _ = call.await;
        wait_until(|| temps() == 0, "the temporary file is removed").await;
        assert_eq!(std::fs::read(work.join("kept")).expect("kept"), b"before", "round {round}");
        drop(tx);
    }
    let names: Vec<_> = std::fs::read_dir(&work).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["kept"]);
}

/// How many Write temporary files are in `dir`.
fn temporary_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sandstream-tmp"))
        .count()
}

/// Polls `cond` every 20 ms for up to 20 s (a liveness wait, not a timing assertion).
async fn wait_until(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn every_file_call_needs_the_token() {
    let agent = start(&[]);
    for token in ["", "wrong-token-0123456789"] {
        let mut c = files_with_token(&agent, token).await;
        let stat = c.stat(StatRequest { path: "/".into(), ..Default::default() }).await;
        assert_eq!(stat.expect_err("no token").code(), Code::Unauthenticated);
        assert_eq!(err(read(&mut c, "/etc/passwd", "", 0, 0).await).0, Code::Unauthenticated);
        assert_eq!(err(write(&mut c, "f", "", 0, b"x", 1).await).0, Code::Unauthenticated);
        let watch = c.watch_dir(WatchDirRequest { path: "/".into(), ..Default::default() }).await;
        assert_eq!(watch.expect_err("no token").code(), Code::Unauthenticated);
        let rm = c.remove(RemoveRequest { path: "/tmp".into(), recursive: true, ..Default::default() }).await;
        assert_eq!(rm.expect_err("no token").code(), Code::Unauthenticated);
    }
    assert!(!agent.workdir().join("f").exists());
    let mut c = files(&agent).await;
    c.stat(StatRequest { path: "/".into(), ..Default::default() }).await.expect("with the token");
}

#[tokio::test]
async fn watch_reports_a_commands_changes_in_order() {
    let agent = start(&["--keepalive-ms", "300"]);
    let mut c = files(&agent).await;
    let mut exec = agent.client().await;
    c.make_dir(MakeDirRequest { path: "w".into(), ..Default::default() }).await.expect("mkdir");
    let req = WatchDirRequest { path: "w".into(), recursive: true, ..Default::default() };
    let mut events = c.watch_dir(req).await.expect("watch").into_inner();
    let next = |e: Option<Result<WatchDirEvent, tonic::Status>>| e.expect("an event").expect("ok");
    assert_eq!(next(events.next().await).kind, WatchEventKind::Started as i32);
    // Silence: keepalives.
    assert_eq!(next(events.next().await).kind, WatchEventKind::Keepalive as i32);
    let done =
        run(&mut exec, "cd w && printf hi > f && mv f g && chmod 600 g && rm g && mkdir sub && printf x > sub/h").await;
    assert_eq!(done.end().exit_code, 0, "{}", done.stderr_str());
    use FsEventType::*;
    let expect = |t: FsEventType, n: &str| (t as i32, n.to_string());
    let mut seen = Vec::new();
    // Until sub/h shows up: it was made in a directory that had just appeared, so it
    // comes from the new directory's scan or its watch (CREATE, perhaps twice, and
    // WRITE only if the watch was in place before the file was closed).
    while !seen.contains(&expect(Create, "sub/h")) {
        let e = next(
            tokio::time::timeout(Duration::from_secs(20), events.next())
                .await
                .unwrap_or_else(|_| panic!("no more events after {seen:?}")),
        );
        if e.kind == WatchEventKind::Filesystem as i32 {
            seen.push((e.r#type, e.name));
        }
    }
    assert_eq!(
        seen[..7],
        [
            expect(Create, "f"),
            expect(Write, "f"),
            expect(Rename, "f"),
            expect(Create, "g"),
            expect(Chmod, "g"),
            expect(Remove, "g"),
            expect(Create, "sub")
        ]
    );
    assert_eq!(seen[7..], [expect(Create, "sub/h")], "{seen:?}");
    // The new directory is watched now.
    assert_eq!(run(&mut exec, "printf y >> w/sub/h").await.end().exit_code, 0);
    loop {
        let e = next(tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("an event in time"));
        if e.kind == WatchEventKind::Filesystem as i32 && (e.r#type, e.name.as_str()) != (Create as i32, "sub/h") {
            assert_eq!((e.r#type, e.name.as_str()), (Write as i32, "sub/h"));
            break;
        }
    }
    // The stream ends when the directory goes.
    c.remove(RemoveRequest { path: "w".into(), recursive: true, ..Default::default() }).await.expect("rm");
    while let Some(e) = events.next().await {
        let e = e.expect("ok");
        assert_ne!(e.kind, WatchEventKind::Started as i32);
    }
}

#[tokio::test]
async fn an_agent_that_is_not_root_acts_only_as_itself() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (to start the agent as another uid)");
    let agent = Agent::start_customized(PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")), &[], &[], |cmd| {
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let spool = args.iter().position(|a| a == "--spool-dir").map(|i| PathBuf::from(&args[i + 1])).expect("spool");
        let dir = spool.parent().expect("the agent's dir").to_path_buf();
        for d in [dir.clone(), dir.join("work")] {
            std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        std::os::unix::process::CommandExt::uid(cmd, NOBODY);
        std::os::unix::process::CommandExt::gid(cmd, NOBODY);
    });
    let mut c = files(&agent).await;
    let e = write(&mut c, "mine", "", 0, b"x", 1).await.expect("its own user");
    assert_eq!((e.uid, e.path), (NOBODY, agent.workdir().join("mine").display().to_string()));
    let by_uid = c.stat(StatRequest { path: agent.workdir().display().to_string(), user: NOBODY.to_string() }).await;
    assert_eq!(by_uid.expect("its own uid by number").into_inner().entry.expect("entry").uid, NOBODY);
    let (code, msg) = err(read(&mut c, "/etc/hostname", "root", 0, 0).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::PermissionDenied, "the agent runs as uid 65534, not root, and can act only as that user, not as uid 0")
    );
}
